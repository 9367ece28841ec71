//! `runway aws whoami`: who each hop of the chain is, by GetCallerIdentity
//! with that hop's credentials. For debugging trust policies: no secret is
//! printed, only ARNs, accounts and how each hop was obtained.

use crate::aws::chain::Hop;
use crate::aws::sts::CallerIdentity;

/// One line per hop: index, how it was obtained, account, ARN.
pub fn render(hops: &[Hop], identities: &[Result<CallerIdentity, String>]) -> String {
    let mut out = String::new();
    for (i, (hop, identity)) in hops.iter().zip(identities).enumerate() {
        let target = hop
            .role_arn
            .as_deref()
            .map(|r| format!(" -> {r}"))
            .unwrap_or_default();
        match identity {
            Ok(id) => out.push_str(&format!(
                "hop {i}: {}{target}\n  account: {}\n  arn:     {}\n  user id: {}\n",
                hop.via, id.account, id.arn, id.user_id
            )),
            Err(e) => out.push_str(&format!(
                "hop {i}: {}{target}\n  GetCallerIdentity failed: {e}\n",
                hop.via
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::chain::Session;
    use aws_credential_types::Credentials;

    #[test]
    fn every_hop_is_listed_without_secrets() {
        let creds = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "t");
        let hop = |role: Option<&str>, via| Hop {
            role_arn: role.map(str::to_string),
            via,
            session: Session {
                credentials: creds.clone(),
                arn: None,
            },
        };
        let hops = vec![
            hop(
                Some("arn:aws:iam::1:role/base"),
                "AssumeRoleWithWebIdentity",
            ),
            hop(Some("arn:aws:iam::2:role/B"), "AssumeRole"),
        ];
        let ids = vec![
            Ok(CallerIdentity {
                account: "1".into(),
                arn: "arn:aws:sts::1:assumed-role/base/s".into(),
                user_id: "AROA:s".into(),
            }),
            Err("AccessDenied".to_string()),
        ];
        let out = render(&hops, &ids);
        assert!(
            out.starts_with("hop 0: AssumeRoleWithWebIdentity -> arn:aws:iam::1:role/base\n"),
            "{out}"
        );
        assert!(out.contains("arn:     arn:aws:sts::1:assumed-role/base/s"));
        assert!(out.contains(
            "hop 1: AssumeRole -> arn:aws:iam::2:role/B\n  GetCallerIdentity failed: AccessDenied"
        ));
        assert!(!out.contains("SECRET") && !out.contains("TOKEN") && !out.contains("AKID"));
    }
}

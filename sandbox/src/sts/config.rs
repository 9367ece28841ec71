//! What the fake STS knows about the account: its roles and their trust
//! policies, the OIDC provider it accepts web identity tokens from, and the
//! ambient (static) access keys a chain may start from.
//!
//! A role's trust policy is reduced to what STS decides on: who may assume it
//! (`trusted`), and whether the policy grants `sts:TagSession` and
//! `sts:SetSourceIdentity`. The YAML form (for `runway-sandbox sts --config`)
//! is the same structure, every field but `name` optional.

use serde::{Deserialize, Serialize};

/// Trusts any valid web identity token from the configured issuer
/// (a trust policy with `Federated: <oidc provider>` and
/// `sts:AssumeRoleWithWebIdentity`).
pub const TRUST_WEB_IDENTITY: &str = "web-identity";
/// Trusts every authenticated caller and every valid web identity token.
pub const TRUST_ANYONE: &str = "*";

/// The default packed-size budget, in estimated bytes; see `rules::packed_size`.
pub const DEFAULT_PACKED_BUDGET: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsConfig {
    /// The one account every role lives in (12 digits).
    pub account_id: String,
    /// The `iss` web identity tokens must carry (the OIDC provider's URL).
    pub issuer: String,
    /// The `aud` web identity tokens must carry.
    pub audience: String,
    pub roles: Vec<RoleConfig>,
    /// Long-lived access keys (an IAM user, or the node's instance profile)
    /// that may sign AssumeRole and GetCallerIdentity: the "ambient
    /// credentials" a chain can start from. Assuming a role from these is not
    /// role chaining.
    pub static_credentials: Vec<StaticCredential>,
    /// The packed-size budget (estimated bytes of tags and session policy)
    /// behind `PackedPolicySize` and `PackedPolicyTooLarge`.
    pub packed_budget: usize,
    /// Check each SigV4 signature against the signing key's secret
    /// (`SignatureDoesNotMatch` when wrong). On by default.
    pub verify_signatures: bool,
}

impl Default for StsConfig {
    fn default() -> Self {
        Self {
            account_id: "111122223333".into(),
            issuer: "https://oidc.sandbox.runway.dev".into(),
            audience: "sts.amazonaws.com".into(),
            roles: Vec::new(),
            static_credentials: Vec::new(),
            packed_budget: DEFAULT_PACKED_BUDGET,
            verify_signatures: true,
        }
    }
}

impl StsConfig {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub fn role_arn(&self, name: &str) -> String {
        format!("arn:aws:iam::{}:role/{name}", self.account_id)
    }

    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn with_role(mut self, role: RoleConfig) -> Self {
        self.roles.push(role);
        self
    }

    pub fn with_static_credential(mut self, credential: StaticCredential) -> Self {
        self.static_credentials.push(credential);
        self
    }

    /// A small account for `runway-sandbox sts` without `--config`: a base
    /// role for the pod's web identity, and two roles chained from it, the
    /// second without `sts:TagSession` (the case that makes
    /// configure-aws-credentials loop).
    pub fn demo() -> Self {
        let base = Self::default().role_arn("runner-base");
        let deploy = Self::default().role_arn("deploy");
        Self::default()
            .with_role(RoleConfig::new("runner-base").trusting(TRUST_WEB_IDENTITY))
            .with_role(
                RoleConfig::new("deploy")
                    .trusting(&base)
                    .trusting(StaticCredential::demo().principal_arn),
            )
            .with_role(
                RoleConfig::new("ecr-push")
                    .trusting(&base)
                    .trusting(&deploy)
                    .without_tag_session(),
            )
            .with_static_credential(StaticCredential::demo())
    }

    /// The account the STS tests share (`rules_tests` and
    /// `tests/fake_sts.rs`), so both judge the same trust policies:
    /// base (web identity) -> a -> b; `untagged` and `no-source` refuse what
    /// their names say; `long` allows 12 h and also trusts the static
    /// [`StaticCredential::demo`] user, whose keys the account holds.
    pub fn test_chain() -> Self {
        let arn = |name: &str| Self::default().role_arn(name);
        let user = StaticCredential::demo();
        Self::default()
            .with_role(RoleConfig::new("base").trusting_web_identity())
            .with_role(RoleConfig::new("a").trusting(arn("base")))
            .with_role(RoleConfig::new("b").trusting(arn("a")))
            .with_role(
                RoleConfig::new("untagged")
                    .trusting(arn("base"))
                    .without_tag_session(),
            )
            .with_role(
                RoleConfig::new("no-source")
                    .trusting(arn("base"))
                    .without_set_source_identity(),
            )
            .with_role(
                RoleConfig::new("long")
                    .trusting(&user.principal_arn)
                    .trusting(arn("base"))
                    .with_max_session_duration(43200),
            )
            .with_static_credential(user)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// The role name; its ARN is `arn:aws:iam::<account>:role/<name>`.
    pub name: String,
    /// Who may assume it: [`TRUST_WEB_IDENTITY`], [`TRUST_ANYONE`], a role
    /// ARN (any session of that role), or a static credential's principal ARN.
    pub trusted: Vec<String>,
    /// The trust policy allows `sts:TagSession`.
    pub allow_tag_session: bool,
    /// The trust policy allows `sts:SetSourceIdentity`.
    pub allow_set_source_identity: bool,
    /// The role's MaxSessionDuration in seconds (3600..43200 on AWS).
    pub max_session_duration: u32,
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self::new("")
    }
}

impl RoleConfig {
    /// Trusted by nobody yet; allows TagSession and SetSourceIdentity; 1 h.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            trusted: Vec::new(),
            allow_tag_session: true,
            allow_set_source_identity: true,
            max_session_duration: 3600,
        }
    }

    pub fn trusting(mut self, principal: impl Into<String>) -> Self {
        self.trusted.push(principal.into());
        self
    }

    pub fn trusting_web_identity(self) -> Self {
        self.trusting(TRUST_WEB_IDENTITY)
    }

    pub fn without_tag_session(mut self) -> Self {
        self.allow_tag_session = false;
        self
    }

    pub fn without_set_source_identity(mut self) -> Self {
        self.allow_set_source_identity = false;
        self
    }

    pub fn with_max_session_duration(mut self, seconds: u32) -> Self {
        self.max_session_duration = seconds;
        self
    }
}

/// A long-lived access key and the principal it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// e.g. `arn:aws:iam::111122223333:user/ci`; what GetCallerIdentity
    /// returns and what a role's `trusted` must name.
    pub principal_arn: String,
}

impl StaticCredential {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        principal_arn: impl Into<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            principal_arn: principal_arn.into(),
        }
    }

    /// AWS's documentation example key, as the IAM user `sandbox`.
    pub fn demo() -> Self {
        Self::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "arn:aws:iam::111122223333:user/sandbox",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_config_fills_defaults_and_refuses_unknown_fields() {
        let yaml = r#"
account_id: "444455556666"
roles:
  - name: base
    trusted: [web-identity]
  - name: deploy
    trusted: ["arn:aws:iam::444455556666:role/base"]
    allow_tag_session: false
static_credentials:
  - access_key_id: AKIAEXAMPLE
    secret_access_key: secret
    principal_arn: arn:aws:iam::444455556666:user/ci
"#;
        let config: StsConfig = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(config.issuer, "https://oidc.sandbox.runway.dev");
        assert_eq!(config.packed_budget, DEFAULT_PACKED_BUDGET);
        let deploy = config.role("deploy").unwrap();
        assert!(!deploy.allow_tag_session);
        assert!(deploy.allow_set_source_identity);
        assert_eq!(deploy.max_session_duration, 3600);
        assert_eq!(
            config.role_arn("deploy"),
            "arn:aws:iam::444455556666:role/deploy"
        );

        let typo = "roles:\n  - name: x\n    allow_tag_sesion: false\n";
        let err = serde_yaml::from_str::<StsConfig>(typo)
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_tag_sesion"), "{err}");
    }

    #[test]
    fn demo_has_a_role_without_tag_session() {
        let demo = StsConfig::demo();
        assert!(!demo.role("ecr-push").unwrap().allow_tag_session);
        assert_eq!(
            demo.role("runner-base").unwrap().trusted,
            vec![TRUST_WEB_IDENTITY]
        );
    }
}

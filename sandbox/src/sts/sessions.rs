//! The credentials the fake has issued, by access key id, and what each
//! session remembers for the next hop: role, session name, source identity,
//! transitive tags, expiry and whether it came from role chaining.
//!
//! Invariant: access key ids are unique (random, `ASIA` + 16 of `[A-Z2-7]`
//! like AWS's temporary keys); a session is never removed, so an expired key
//! is told apart from an unknown one (ExpiredToken vs InvalidClientTokenId).

use std::collections::HashMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::Rng;

use super::rules::Grant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub account_id: String,
    pub role_arn: String,
    pub role_name: String,
    pub session_name: String,
    pub source_identity: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tags: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
    pub chained: bool,
}

impl Session {
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub fn arn(&self) -> String {
        format!(
            "arn:aws:sts::{}:assumed-role/{}/{}",
            self.account_id, self.role_name, self.session_name
        )
    }

    /// `AROA...:<session>`: the role's unique id and the session name.
    pub fn assumed_role_id(&self) -> String {
        format!("{}:{}", role_id(&self.role_arn), self.session_name)
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// A role's stable unique id (`AROA` + 17 characters), derived from its ARN
/// so the same role always has the same id, as on AWS.
pub fn role_id(role_arn: &str) -> String {
    unique_id("AROA", role_arn)
}

/// A principal's stable unique id: `prefix` (`AROA` role, `AIDA` user) and
/// 17 characters derived from its ARN.
pub fn unique_id(prefix: &str, arn: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    // FNV-1a, widened: stable across runs and platforms, unlike std's hasher.
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in arn.bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let mut id = String::from(prefix);
    for _ in 0..17 {
        id.push(ALPHABET[(hash % 32) as usize] as char);
        hash /= 32;
    }
    id
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

#[derive(Debug, Default)]
pub struct Sessions {
    by_key: HashMap<String, Session>,
}

impl Sessions {
    /// Issues credentials for `grant`, valid until `expires_at`.
    pub fn issue(&mut self, account_id: &str, grant: &Grant, expires_at: DateTime<Utc>) -> Session {
        let access_key_id = loop {
            let key = format!(
                "ASIA{}",
                random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
            );
            if !self.by_key.contains_key(&key) {
                break key;
            }
        };
        let secret_access_key = random_from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
            40,
        );
        let token_bytes: Vec<u8> = (0..96).map(|_| rand::random::<u8>()).collect();
        let session_token = format!(
            "FwoGZXIvYXdzE{}",
            base64::engine::general_purpose::STANDARD.encode(token_bytes)
        );
        let session = Session {
            access_key_id: access_key_id.clone(),
            secret_access_key,
            session_token,
            account_id: account_id.to_owned(),
            role_arn: grant.role_arn.clone(),
            role_name: grant.role_name.clone(),
            session_name: grant.session_name.clone(),
            source_identity: grant.source_identity.clone(),
            tags: grant.tags.clone(),
            transitive_tags: grant.transitive_tags.clone(),
            expires_at,
            chained: grant.chained,
        };
        self.by_key.insert(access_key_id, session.clone());
        session
    }

    pub fn get(&self, access_key_id: &str) -> Option<&Session> {
        self.by_key.get(access_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            role_arn: "arn:aws:iam::111122223333:role/A".into(),
            role_name: "A".into(),
            session_name: "s".into(),
            duration_seconds: 900,
            tags: vec![("k".into(), "v".into())],
            transitive_tags: vec![("k".into(), "v".into())],
            source_identity: Some("me".into()),
            chained: true,
            packed_policy_size: None,
        }
    }

    #[test]
    fn issued_sessions_are_found_by_key_and_remember_the_grant() {
        let mut sessions = Sessions::default();
        let now = Utc::now();
        let a = sessions.issue("111122223333", &grant(), now);
        let b = sessions.issue("111122223333", &grant(), now);
        assert_ne!(a.access_key_id, b.access_key_id);
        assert!(a.access_key_id.starts_with("ASIA") && a.access_key_id.len() == 20);
        assert_eq!(a.secret_access_key.len(), 40);
        let found = sessions.get(&a.access_key_id).unwrap();
        assert_eq!(found.arn(), "arn:aws:sts::111122223333:assumed-role/A/s");
        assert_eq!(
            found.transitive_tags,
            vec![("k".to_string(), "v".to_string())]
        );
        assert!(found.chained);
        assert!(found.expired(now));
        assert!(!found.expired(now - chrono::Duration::seconds(1)));
    }

    #[test]
    fn role_ids_are_stable_and_distinct() {
        let a = role_id("arn:aws:iam::1:role/A");
        assert_eq!(a, role_id("arn:aws:iam::1:role/A"));
        assert_ne!(a, role_id("arn:aws:iam::1:role/B"));
        assert!(a.starts_with("AROA") && a.len() == 21);
    }
}

//! A string that must never reach a log line, a `Debug` dump or an error
//! message: PATs, installation, registration, admin and queue tokens, private
//! keys, JIT configs.
//!
//! `Debug` and `Display` print `***`. The only ways to the value are
//! [`Secret::expose`] (for building a header or a pod's Secret) and
//! `Serialize`, which writes the real value because wire structs must
//! round-trip byte for byte; never serialize a wire struct into a log.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string. Cloning is cheap (shared, immutable).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// The secret value, for the one place that has to send it somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// Removes anything that looks like a GitHub token or a JWT from text that
/// came from a server (error bodies), and caps its length, so that an error
/// message can be shown and logged even if the server echoed a credential.
pub(crate) fn redact(text: &str) -> String {
    const MAX_CHARS: usize = 512;
    let mut out = String::with_capacity(text.len().min(MAX_CHARS));
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if looks_like_credential(word) {
            out.push_str("***");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | '=') {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    if out.chars().count() > MAX_CHARS {
        let cut: String = out.chars().take(MAX_CHARS).collect();
        return format!("{cut}...");
    }
    out
}

fn looks_like_credential(word: &str) -> bool {
    // GitHub's token prefixes (personal, OAuth, user-to-server, server-to-server,
    // refresh, fine-grained) and JWTs (base64url of `{"` is `eyJ`).
    const PREFIXES: [&str; 7] = ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "eyJ"];
    word.len() >= 20 && PREFIXES.iter().any(|p| word.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new("ghp_supersecretvalue1234567890");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "ghp_supersecretvalue1234567890");
    }

    #[test]
    fn debug_of_a_containing_struct_hides_the_value() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let holder = Holder {
            token: Secret::new("value-that-must-not-leak"),
        };
        let printed = format!("{holder:?} {holder:#?}");
        assert!(!printed.contains("value-that-must-not-leak"), "{printed}");
    }

    #[test]
    fn serde_round_trips_the_real_value() {
        let secret: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(secret.expose(), "abc");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"abc\"");
    }

    #[test]
    fn redact_removes_tokens_and_jwts() {
        let text = "bad credentials ghs_16C7e42F292c6912E7710c838347Ae178B4a for \
                    eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl, see docs";
        let redacted = redact(text);
        assert_eq!(redacted, "bad credentials *** for ***, see docs");
    }

    #[test]
    fn redact_keeps_ordinary_text_and_caps_length() {
        assert_eq!(
            redact("Runner group \"x\" not found."),
            "Runner group \"x\" not found."
        );
        let long = "a ".repeat(1000);
        let redacted = redact(&long);
        assert!(
            redacted.ends_with("...") && redacted.len() <= 515,
            "{redacted}"
        );
    }
}

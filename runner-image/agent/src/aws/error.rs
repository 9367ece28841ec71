//! What `runway aws` reports when it stops, and the exit code for each case:
//! 2 bad input or config, 3 refused by `aws.allowedRoles`, 4 refused by AWS,
//! 5 gave up after retries. Messages name the setting or policy to change.
//!
//! The TagSession hint is built here, once, for both `always` (the error) and
//! `auto` (the warning), so users see the same statement either way.

use crate::aws::config::ConfigError;
use crate::aws::session_name::TemplateError;
use crate::aws::tags::TagError;

pub const EXIT_BAD_INPUT: u8 = 2;
pub const EXIT_NOT_ALLOWED: u8 = 3;
pub const EXIT_AWS_REFUSED: u8 = 4;
pub const EXIT_GAVE_UP: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{setting}: {source}")]
    Template {
        setting: String,
        #[source]
        source: TemplateError,
    },
    #[error("{setting}: {source}")]
    Tags {
        setting: String,
        #[source]
        source: TagError,
    },
    #[error("{0}")]
    BadInput(String),
    #[error(
        "role {role} is not allowed for this scale set: it matches none of `aws.allowedRoles` ({patterns}); \
         add a pattern for it to the scale set's `aws.allowedRoles` values"
    )]
    NotAllowed { role: String, patterns: String },
    #[error("cannot read the web identity token {path} (AWS_WEB_IDENTITY_TOKEN_FILE): {error}")]
    TokenFile { path: String, error: String },
    #[error("no AWS identity in this pod: {0}")]
    NoIdentity(String),
    #[error("{}", tag_session_denied(role, caller.as_deref(), sts_message, *untaggable))]
    TagSessionDenied {
        role: String,
        caller: Option<String>,
        sts_message: String,
        /// True when no tags were sent: the caller's own transitive tags
        /// (EKS Pod Identity) need TagSession, so `never` cannot help.
        untaggable: bool,
    },
    #[error("AWS refused {action} for {role}: {code}: {message}")]
    Refused {
        action: &'static str,
        role: String,
        code: String,
        message: String,
    },
    #[error(
        "AWS refused {role}: PackedPolicyTooLarge: the session tags and policy use {}% of STS's packed size even with only the transitive tags ({message}); \
         send fewer tags (`aws.sessionTags`, `--tag`) or a shorter session policy (`aws.sessionPolicy`, `--policy`)",
        percent.map(|p| p.to_string()).unwrap_or_else(|| "more than 100".into())
    )]
    PackedPolicyTooLarge {
        role: String,
        percent: Option<u32>,
        message: String,
    },
    #[error(
        "gave up on {action} for {role} after {attempts} attempts: {code}: {message} \
         (STS kept throttling or failing; try again later)"
    )]
    GaveUp {
        action: &'static str,
        role: String,
        attempts: u32,
        code: String,
        message: String,
    },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: String },
}

impl AwsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_)
            | Self::Template { .. }
            | Self::Tags { .. }
            | Self::BadInput(_)
            | Self::TokenFile { .. }
            | Self::NoIdentity(_)
            | Self::Write { .. } => EXIT_BAD_INPUT,
            Self::NotAllowed { .. } => EXIT_NOT_ALLOWED,
            Self::TagSessionDenied { .. }
            | Self::Refused { .. }
            | Self::PackedPolicyTooLarge { .. } => EXIT_AWS_REFUSED,
            Self::GaveUp { .. } => EXIT_GAVE_UP,
        }
    }
}

/// The caller as an IAM principal for a trust policy, from what we know (the
/// previous hop's role) or else from STS's message (`User: arn:... is not`).
/// An assumed-role session ARN becomes its role ARN; a role path, which the
/// session ARN does not carry, is then unknown.
pub fn caller_principal(known: Option<&str>, sts_message: &str) -> Option<String> {
    if let Some(known) = known {
        return Some(known.to_string());
    }
    let arn = sts_message
        .split("User: ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() == 6
        && parts[2] == "sts"
        && let Some(rest) = parts[5].strip_prefix("assumed-role/")
    {
        let role = rest.split('/').next()?;
        return Some(format!("arn:{}:iam::{}:role/{role}", parts[1], parts[4]));
    }
    Some(arn.to_string())
}

/// The trust-policy statement that lets `caller` tag sessions of a role.
pub fn trust_statement(caller: &str) -> String {
    format!(
        "{{\n  \"Effect\": \"Allow\",\n  \"Principal\": {{ \"AWS\": \"{caller}\" }},\n  \"Action\": [\"sts:AssumeRole\", \"sts:TagSession\"]\n}}"
    )
}

/// The user-facing TagSession message: what happened, the statement to add,
/// and the setting that avoids tags altogether.
pub fn tag_session_denied(
    role: &str,
    caller: Option<&str>,
    sts_message: &str,
    untaggable: bool,
) -> String {
    let caller = caller.unwrap_or("<the calling role's ARN>");
    let why = if untaggable {
        "no tags were sent, but the calling session carries transitive session tags (from an earlier \
         hop's `aws.transitiveTagKeys`, or the six EKS Pod Identity adds), so STS still needs sts:TagSession"
    } else {
        "runway sent session tags and the role's trust policy does not allow sts:TagSession"
    };
    let alternative = if untaggable {
        "Turning session tags off cannot help here: allow sts:TagSession, or send no transitive \
         tags on earlier hops (`aws.transitiveTagKeys`)."
            .to_string()
    } else {
        "Or do not send session tags: set `aws.sessionTagging: never` in the scale set's values, \
         or pass `--session-tagging never` (action input `session-tagging: never`)."
            .to_string()
    };
    format!(
        "AWS refused to tag the session for {role}: {why}.\n\
         STS said: {sts_message}\n\
         Add this statement to the trust policy of {role}:\n{}\n{alternative}",
        trust_statement(caller)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: &str = "User: arn:aws:sts::111122223333:assumed-role/arc-runner-base/gh_1_build \
        is not authorized to perform: sts:TagSession on resource: arn:aws:iam::111122223333:role/B";

    #[test]
    fn the_caller_comes_from_the_chain_or_the_message() {
        assert_eq!(
            caller_principal(Some("arn:aws:iam::1:role/path/A"), DENIED).as_deref(),
            Some("arn:aws:iam::1:role/path/A")
        );
        assert_eq!(
            caller_principal(None, DENIED).as_deref(),
            Some("arn:aws:iam::111122223333:role/arc-runner-base")
        );
        assert_eq!(
            caller_principal(None, "User: arn:aws:iam::1:user/ci is not authorized").as_deref(),
            Some("arn:aws:iam::1:user/ci")
        );
        assert_eq!(caller_principal(None, "Access denied"), None);
    }

    #[test]
    fn the_hint_shows_the_statement_and_the_setting() {
        let msg = tag_session_denied(
            "arn:aws:iam::1:role/B",
            Some("arn:aws:iam::1:role/A"),
            DENIED,
            false,
        );
        let json_start = msg.find('{').unwrap();
        let json_end = msg.rfind('}').unwrap();
        let statement: serde_json::Value =
            serde_json::from_str(&msg[json_start..=json_end]).unwrap();
        assert_eq!(statement["Effect"], "Allow");
        assert_eq!(statement["Principal"]["AWS"], "arn:aws:iam::1:role/A");
        assert_eq!(
            statement["Action"],
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
        );
        assert!(msg.contains("aws.sessionTagging: never"), "{msg}");
        assert!(msg.contains("--session-tagging never"), "{msg}");
        assert!(msg.contains(DENIED), "{msg}");

        let msg = tag_session_denied("arn:aws:iam::1:role/B", None, DENIED, true);
        assert!(msg.contains("Pod Identity"), "{msg}");
        assert!(!msg.contains("--session-tagging never"), "{msg}");
    }

    #[test]
    fn exit_codes_are_distinct_per_class() {
        let not_allowed = AwsError::NotAllowed {
            role: "r".into(),
            patterns: "p".into(),
        };
        assert_eq!(not_allowed.exit_code(), EXIT_NOT_ALLOWED);
        assert!(not_allowed.to_string().contains("aws.allowedRoles"));
        let gave_up = AwsError::GaveUp {
            action: "AssumeRole",
            role: "r".into(),
            attempts: 4,
            code: "Throttling".into(),
            message: "Rate exceeded".into(),
        };
        assert_eq!(gave_up.exit_code(), EXIT_GAVE_UP);
        let refused = AwsError::Refused {
            action: "AssumeRole",
            role: "r".into(),
            code: "AccessDenied".into(),
            message: "no".into(),
        };
        assert_eq!(refused.exit_code(), EXIT_AWS_REFUSED);
        assert_eq!(AwsError::BadInput("x".into()).exit_code(), EXIT_BAD_INPUT);
    }
}

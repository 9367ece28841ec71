//! Session tags from the job's GitHub context, named as
//! aws-actions/configure-aws-credentials names them (so trust and permission
//! policies written for it keep working), and which of them each hop sends.
//!
//! Invariants of a [`TagSet`]: at most 50 tags, keys unique ignoring case,
//! values from STS's character set `[\p{L}\p{Z}\p{N}_.:/=+\-@]` (others become
//! `_`, as configure-aws-credentials does) and at most 256 characters;
//! transitive keys are among the tags.

use crate::aws::session_name::GithubContext;

pub const MAX_TAGS: usize = 50;
pub const MAX_VALUE_CHARS: usize = 256;

/// Tag name -> the `GITHUB_*` variable it carries (`None`: a constant).
const KNOWN: &[(&str, Option<&str>)] = &[
    ("GitHub", None),
    ("Repository", Some("GITHUB_REPOSITORY")),
    ("Workflow", Some("GITHUB_WORKFLOW")),
    ("Action", Some("GITHUB_ACTION")),
    ("Actor", Some("GITHUB_ACTOR")),
    ("Commit", Some("GITHUB_SHA")),
    ("Branch", Some("GITHUB_REF")),
    ("EventName", Some("GITHUB_EVENT_NAME")),
    ("BaseRef", Some("GITHUB_BASE_REF")),
    ("HeadRef", Some("GITHUB_HEAD_REF")),
    ("RunId", Some("GITHUB_RUN_ID")),
    ("RunNumber", Some("GITHUB_RUN_NUMBER")),
    ("RunAttempt", Some("GITHUB_RUN_ATTEMPT")),
    ("Job", Some("GITHUB_JOB")),
    ("TriggeringActor", Some("GITHUB_TRIGGERING_ACTOR")),
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TagError {
    #[error("unknown session tag `{name}`; known: {}", known_names())]
    Unknown { name: String },
    #[error("session tag `{name}` is listed twice (tag keys are case-insensitive)")]
    Duplicate { name: String },
    #[error("{count} session tags; STS allows at most {MAX_TAGS}")]
    TooMany { count: usize },
    #[error("transitive tag key `{key}` is not among the session tags")]
    TransitiveNotATag { key: String },
}

fn known_names() -> String {
    KNOWN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// The tags the configuration asks for, with their values for this job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagSet {
    pub tags: Vec<Tag>,
    pub transitive_keys: Vec<String>,
}

fn allowed(c: char) -> bool {
    // \p{L} \p{N} \p{Z} (Z: separators, which excludes control whitespace).
    c.is_alphabetic()
        || c.is_numeric()
        || (c.is_whitespace() && !c.is_control())
        || "_.:/=+-@".contains(c)
}

/// STS's tag value rules: disallowed characters become `_`, cut to 256.
pub fn sanitize_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .take(MAX_VALUE_CHARS)
        .collect()
}

/// Builds the tag set. Tags whose variable is unset (BaseRef outside pull
/// requests) are left out, and so is their transitive key.
pub fn build(
    names: &[String],
    transitive_keys: &[String],
    ctx: &GithubContext,
) -> Result<TagSet, TagError> {
    let mut seen: Vec<String> = Vec::new();
    let mut set = TagSet::default();
    for name in names {
        let (canonical, var) = KNOWN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| TagError::Unknown { name: name.clone() })?;
        if seen.iter().any(|s| s.eq_ignore_ascii_case(canonical)) {
            return Err(TagError::Duplicate { name: name.clone() });
        }
        seen.push(canonical.to_string());
        let value = match var {
            None => Some("Actions".to_string()),
            Some(var) => ctx.var(var).map(sanitize_value),
        };
        if let Some(value) = value {
            set.tags.push(Tag {
                key: canonical.to_string(),
                value,
            });
        }
    }
    if set.tags.len() > MAX_TAGS {
        return Err(TagError::TooMany {
            count: set.tags.len(),
        });
    }
    for key in transitive_keys {
        let canonical = seen
            .iter()
            .find(|s| s.eq_ignore_ascii_case(key.trim()))
            .ok_or_else(|| TagError::TransitiveNotATag { key: key.clone() })?;
        if set.transitive_keys.iter().any(|k| k == canonical) {
            return Err(TagError::Duplicate { name: key.clone() });
        }
        if set.tags.iter().any(|t| &t.key == canonical) {
            set.transitive_keys.push(canonical.clone());
        }
    }
    Ok(set)
}

/// What one AssumeRole sends: the set minus keys the caller's session already
/// carries as transitive tags (setting those again is an STS error).
pub fn for_hop(set: &TagSet, inherited: &[String]) -> TagSet {
    let inherited = |k: &str| inherited.iter().any(|i| i.eq_ignore_ascii_case(k));
    TagSet {
        tags: set
            .tags
            .iter()
            .filter(|t| !inherited(&t.key))
            .cloned()
            .collect(),
        transitive_keys: set
            .transitive_keys
            .iter()
            .filter(|k| !inherited(k))
            .cloned()
            .collect(),
    }
}

/// The set after PackedPolicyTooLarge: only the transitive tags, which later
/// hops' policies may rely on; the others are informational.
pub fn required_only(set: &TagSet) -> TagSet {
    TagSet {
        tags: set
            .tags
            .iter()
            .filter(|t| set.transitive_keys.contains(&t.key))
            .cloned()
            .collect(),
        transitive_keys: set.transitive_keys.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> GithubContext {
        let pairs = [
            ("GITHUB_REPOSITORY", "acme/web"),
            ("GITHUB_WORKFLOW", "CI <main> #1"),
            ("GITHUB_RUN_ID", "987"),
            ("GITHUB_ACTOR", "octocat"),
            ("GITHUB_JOB", "build"),
            ("GITHUB_REF", "refs/heads/main"),
        ];
        GithubContext::from_env(&move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_carry_sanitized_values_in_configured_order() {
        let set = build(
            &names(&["repository", "Workflow", "RunId", "GitHub", "Branch"]),
            &names(&["repository"]),
            &ctx(),
        )
        .unwrap();
        let got: Vec<(&str, &str)> = set
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Repository", "acme/web"),
                ("Workflow", "CI _main_ _1"),
                ("RunId", "987"),
                ("GitHub", "Actions"),
                ("Branch", "refs/heads/main"),
            ]
        );
        assert_eq!(set.transitive_keys, vec!["Repository"]);
    }

    #[test]
    fn unset_variables_drop_the_tag_and_its_transitive_key() {
        let set = build(&names(&["Actor", "BaseRef"]), &names(&["BaseRef"]), &ctx()).unwrap();
        assert_eq!(set.tags.len(), 1);
        assert!(set.transitive_keys.is_empty());
    }

    #[test]
    fn values_are_cut_to_256_and_keep_unicode_letters() {
        assert_eq!(
            sanitize_value(&"é".repeat(300)).chars().count(),
            MAX_VALUE_CHARS
        );
        assert_eq!(sanitize_value("a\tb c;d日"), "a_b c_d日");
    }

    #[test]
    fn configuration_errors() {
        let c = ctx();
        assert_eq!(
            build(&names(&["Repo"]), &[], &c),
            Err(TagError::Unknown {
                name: "Repo".into()
            })
        );
        assert_eq!(
            build(&names(&["Actor", "actor"]), &[], &c),
            Err(TagError::Duplicate {
                name: "actor".into()
            })
        );
        assert_eq!(
            build(&names(&["Actor"]), &names(&["Job"]), &c),
            Err(TagError::TransitiveNotATag { key: "Job".into() })
        );
        let many: Vec<String> = KNOWN.iter().map(|(n, _)| n.to_string()).collect();
        assert!(build(&many, &[], &c).is_ok());
    }

    #[test]
    fn inherited_transitive_keys_are_not_sent_again() {
        let set = build(
            &names(&["Repository", "Actor"]),
            &names(&["Repository"]),
            &ctx(),
        )
        .unwrap();
        let hop = for_hop(&set, &names(&["repository"]));
        assert_eq!(
            hop.tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["Actor"]
        );
        assert!(hop.transitive_keys.is_empty());
        assert_eq!(for_hop(&set, &[]), set);
    }

    #[test]
    fn required_only_keeps_the_transitive_tags() {
        let set = build(
            &names(&["Repository", "Actor", "Job"]),
            &names(&["Job"]),
            &ctx(),
        )
        .unwrap();
        let kept = required_only(&set);
        assert_eq!(
            kept.tags.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
            vec!["Job"]
        );
        assert_eq!(kept.transitive_keys, vec!["Job"]);
    }
}

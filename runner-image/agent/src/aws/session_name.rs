//! Session names and source identities from a template such as
//! `{workflow}_{run_number}_{job}` and the job's `GITHUB_*` env.
//!
//! Invariant: what [`render`] returns always satisfies STS's rule for
//! RoleSessionName and SourceIdentity: 2..64 characters from `[\w+=,.@-]`
//! (ASCII word characters). Other characters become `-`; when the result is
//! too long the longest substituted values are shortened first, so the run
//! number and the job survive a long workflow name.

use std::collections::BTreeMap;

/// The job's GitHub context, read from the `GITHUB_*` env the runner sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GithubContext {
    vars: BTreeMap<&'static str, String>,
}

/// Template placeholder -> the env var it reads. `sha` is shortened to 7.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("repository", "GITHUB_REPOSITORY"),
    ("workflow", "GITHUB_WORKFLOW"),
    ("job", "GITHUB_JOB"),
    ("run_id", "GITHUB_RUN_ID"),
    ("run_number", "GITHUB_RUN_NUMBER"),
    ("run_attempt", "GITHUB_RUN_ATTEMPT"),
    ("actor", "GITHUB_ACTOR"),
    ("sha", "GITHUB_SHA"),
    ("ref_name", "GITHUB_REF_NAME"),
    ("event_name", "GITHUB_EVENT_NAME"),
];

/// Every `GITHUB_*` variable that templates or tags read.
const VARS: &[&str] = &[
    "GITHUB_REPOSITORY",
    "GITHUB_WORKFLOW",
    "GITHUB_JOB",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_NUMBER",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_ACTOR",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_REF_NAME",
    "GITHUB_EVENT_NAME",
    "GITHUB_ACTION",
    "GITHUB_BASE_REF",
    "GITHUB_HEAD_REF",
    "GITHUB_TRIGGERING_ACTOR",
];

impl GithubContext {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let vars = VARS
            .iter()
            .filter_map(|name| env(name).filter(|v| !v.is_empty()).map(|v| (*name, v)))
            .collect();
        Self { vars }
    }

    /// The raw value of a `GITHUB_*` variable, if set and not empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn placeholder(&self, name: &str) -> Option<String> {
        if name == "repo" {
            // The repository without its owner: shorter, and usually enough.
            let full = self.var("GITHUB_REPOSITORY")?;
            return Some(full.rsplit('/').next().unwrap_or(full).to_string());
        }
        let (_, var) = PLACEHOLDERS.iter().find(|(p, _)| *p == name)?;
        let value = self.var(var).unwrap_or_default();
        Some(if name == "sha" {
            value.chars().take(7).collect()
        } else {
            value.to_string()
        })
    }
}

pub const MIN_LEN: usize = 2;
pub const MAX_LEN: usize = 64;
/// Used when the template renders to less than two characters (outside
/// GitHub Actions every placeholder is empty).
pub const FALLBACK: &str = "runway";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error(
        "unknown placeholder `{{{name}}}`; known: {{repository}}, {{repo}}, {{workflow}}, {{job}}, {{run_id}}, {{run_number}}, {{run_attempt}}, {{actor}}, {{sha}}, {{ref_name}}, {{event_name}}"
    )]
    UnknownPlaceholder { name: String },
    #[error("unclosed `{{` in the template")]
    Unclosed,
}

enum Piece {
    Literal(String),
    Value(String),
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Replaces every character STS refuses with `-`, without doubling dashes.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_allowed(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out
}

/// Renders the template with the context's values, sanitized and fitted to
/// STS's 2..64 characters.
pub fn render(template: &str, ctx: &GithubContext) -> Result<String, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Literal(sanitize(&rest[..open])));
        }
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or(TemplateError::Unclosed)?;
        let name = after[..close].trim();
        let value = ctx
            .placeholder(name)
            .ok_or_else(|| TemplateError::UnknownPlaceholder {
                name: name.to_string(),
            })?;
        pieces.push(Piece::Value(sanitize(&value)));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(sanitize(rest)));
    }
    fit(&mut pieces);
    let out: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Literal(s) | Piece::Value(s) => s.as_str(),
        })
        .collect();
    // Separators around empty values are noise: `_5_` from `{workflow}_5_{job}`.
    let out = out.trim_matches(|c| c == '_' || c == '-').to_string();
    if out.len() < MIN_LEN {
        return Ok(FALLBACK.to_string());
    }
    Ok(out.chars().take(MAX_LEN).collect())
}

/// Shortens the longest values, one character at a time, until the whole fits.
fn fit(pieces: &mut [Piece]) {
    let len = |pieces: &[Piece]| -> usize {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(s) | Piece::Value(s) => s.len(),
            })
            .sum()
    };
    while len(pieces) > MAX_LEN {
        let longest = pieces
            .iter_mut()
            .filter_map(|p| match p {
                Piece::Value(s) if !s.is_empty() => Some(s),
                _ => None,
            })
            .max_by_key(|s| s.len());
        match longest {
            Some(s) => {
                s.pop();
            }
            // Only literals left: the final cut in `render` handles it.
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> GithubContext {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        GithubContext::from_env(&move |k: &str| {
            pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn valid(s: &str) -> bool {
        (MIN_LEN..=MAX_LEN).contains(&s.len()) && s.chars().all(is_allowed)
    }

    #[test]
    fn templates_render_and_sanitize() {
        let c = ctx(&[
            ("GITHUB_WORKFLOW", "Build & Deploy"),
            ("GITHUB_RUN_NUMBER", "42"),
            ("GITHUB_JOB", "deploy"),
            ("GITHUB_REPOSITORY", "acme/web-app"),
            ("GITHUB_SHA", "0123456789abcdef"),
            ("GITHUB_ACTOR", "octo cat"),
            ("GITHUB_REF_NAME", "feature/x"),
        ]);
        let cases = [
            ("{workflow}_{run_number}_{job}", "Build-Deploy_42_deploy"),
            ("{repository}@{sha}", "acme-web-app@0123456"),
            ("{repo}.{actor}", "web-app.octo-cat"),
            ("gh-{ref_name}", "gh-feature-x"),
            ("{ run_id }x{job}", "xdeploy"),
            ("plain", "plain"),
        ];
        for (template, want) in cases {
            let got = render(template, &c).unwrap();
            assert_eq!(got, want, "{template}");
            assert!(valid(&got), "{got}");
        }
    }

    #[test]
    fn long_values_are_shortened_longest_first() {
        let c = ctx(&[
            ("GITHUB_WORKFLOW", &"w".repeat(100)),
            ("GITHUB_RUN_NUMBER", "1234"),
            ("GITHUB_JOB", "build-and-push"),
        ]);
        let got = render(DEFAULT_TEMPLATE_FOR_TEST, &c).unwrap();
        assert_eq!(got.len(), MAX_LEN);
        assert!(got.ends_with("_1234_build-and-push"), "{got}");
        assert!(valid(&got));
    }
    const DEFAULT_TEMPLATE_FOR_TEST: &str = crate::aws::config::DEFAULT_SESSION_NAME;

    #[test]
    fn empty_context_falls_back_to_a_valid_name() {
        for template in ["{workflow}_{run_number}_{job}", "{job}", "x", ""] {
            let got = render(template, &GithubContext::default()).unwrap();
            assert!(valid(&got), "{template:?} -> {got:?}");
        }
        assert_eq!(
            render("{job}", &GithubContext::default()).unwrap(),
            FALLBACK
        );
    }

    #[test]
    fn non_ascii_and_long_literals_stay_valid() {
        let c = ctx(&[("GITHUB_JOB", "déploiement-日本")]);
        let got = render("{job}", &c).unwrap();
        assert_eq!(got, "d-ploiement");
        let got = render(&"literal-".repeat(20), &c).unwrap();
        assert!(valid(&got), "{got}");
    }

    #[test]
    fn template_errors_are_reported() {
        assert_eq!(
            render("{workflw}", &GithubContext::default()),
            Err(TemplateError::UnknownPlaceholder {
                name: "workflw".into()
            })
        );
        assert_eq!(
            render("{job", &GithubContext::default()),
            Err(TemplateError::Unclosed)
        );
    }
}

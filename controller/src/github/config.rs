//! `githubConfigUrl`: which organization, repository or enterprise the runners
//! register with, and where that GitHub's REST API lives.
//!
//! Hosted GitHub (`github.com`, `*.ghe.com`, `github.localhost`) serves REST at
//! `https://api.<host>`; any other host is GitHub Enterprise Server with REST at
//! `<scheme>://<host>[:port]/api/v3`. Plain `http://` is accepted only for
//! Enterprise Server hosts (internal instances, local test services).

use std::fmt;
use std::str::FromStr;

use url::Url;

const ACCEPTED_FORMS: &str = "https://<host>/<org>, https://<host>/<org>/<repo> \
                              or https://<host>/enterprises/<enterprise>";

/// Where runners register: the three scopes GitHub's scale-set service knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Organization { org: String },
    Repository { owner: String, repo: String },
    Enterprise { enterprise: String },
}

impl Scope {
    /// The REST path (relative to the REST base) that issues a runner
    /// registration token for this scope.
    pub fn registration_token_path(&self) -> String {
        match self {
            Scope::Organization { org } => {
                format!("/orgs/{org}/actions/runners/registration-token")
            }
            Scope::Repository { owner, repo } => {
                format!("/repos/{owner}/{repo}/actions/runners/registration-token")
            }
            Scope::Enterprise { enterprise } => {
                format!("/enterprises/{enterprise}/actions/runners/registration-token")
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Organization { org } => write!(f, "organization {org}"),
            Scope::Repository { owner, repo } => write!(f, "repository {owner}/{repo}"),
            Scope::Enterprise { enterprise } => write!(f, "enterprise {enterprise}"),
        }
    }
}

/// A parsed `githubConfigUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubConfig {
    config_url: String,
    scope: Scope,
    rest_base: Url,
    hosted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("githubConfigUrl {input:?} is not a valid URL ({reason}); expected {ACCEPTED_FORMS}")]
    NotAUrl { input: String, reason: String },
    #[error("githubConfigUrl {input:?} {problem}; expected {ACCEPTED_FORMS}")]
    Invalid {
        input: String,
        problem: &'static str,
    },
    #[error(
        "githubConfigUrl {input:?} uses http:// for hosted GitHub ({host}), which only serves \
         https; expected {ACCEPTED_FORMS}"
    )]
    PlainHttpForHosted { input: String, host: String },
}

impl GitHubConfig {
    /// Parses a `githubConfigUrl` as written in the scale set's values.
    /// Errors quote the input with any credentials in it masked: they end
    /// up in status conditions, Events and logs.
    pub fn parse(input: &str) -> Result<Self, ConfigError> {
        let shown = redact_userinfo(input);
        let invalid = |problem| ConfigError::Invalid {
            input: shown.clone(),
            problem,
        };
        let trimmed = input.trim();
        let without_slash = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let url = Url::parse(without_slash).map_err(|e| ConfigError::NotAUrl {
            input: shown.clone(),
            reason: e.to_string(),
        })?;

        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_ascii_lowercase(),
            _ => return Err(invalid("has no host")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment"));
        }

        let hosted = is_hosted(&host);
        match url.scheme() {
            "https" => {}
            "http" if hosted => {
                return Err(ConfigError::PlainHttpForHosted {
                    input: shown.clone(),
                    host,
                });
            }
            "http" => tracing::warn!(
                host = %host,
                "githubConfigUrl uses plain http://; tokens travel unencrypted. \
                 Use this only for internal instances and local test services"
            ),
            _ => return Err(invalid("must start with https://")),
        }

        let path = url.path();
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return Err(invalid("has no organization, or an empty path segment"));
        }
        let scope = match segments.as_slice() {
            [org] => Scope::Organization {
                org: (*org).to_owned(),
            },
            [first, enterprise] if first.eq_ignore_ascii_case("enterprises") => Scope::Enterprise {
                enterprise: (*enterprise).to_owned(),
            },
            [owner, repo] => Scope::Repository {
                owner: (*owner).to_owned(),
                repo: (*repo).to_owned(),
            },
            _ => return Err(invalid("has too many path segments")),
        };

        let rest_base = rest_base(&url, &host, hosted)
            .ok_or_else(|| invalid("has a host that HTTP requests cannot name"))?;
        Ok(Self {
            config_url: url.as_str().trim_end_matches('/').to_owned(),
            scope,
            rest_base,
            hosted,
        })
    }

    /// The URL exactly as the runner-registration call must echo it
    /// (trailing `/` dropped).
    pub fn config_url(&self) -> &str {
        &self.config_url
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The REST API base: path `/` for hosted GitHub, `/api/v3` for
    /// Enterprise Server.
    pub fn rest_base(&self) -> &Url {
        &self.rest_base
    }

    /// Hosted GitHub (github.com, GHE.com, github.localhost) rather than
    /// GitHub Enterprise Server.
    pub fn is_hosted(&self) -> bool {
        self.hosted
    }
}

impl FromStr for GitHubConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// `input` with whatever precedes the last `@` of its authority replaced by
/// `***` (`https://user:token@github.com/org` -> `https://***@github.com/org`),
/// for quoting a URL that may carry credentials in errors and logs. Works on
/// text, so that an unparsable URL is masked too: everything from the
/// scheme's `://` to the last `@` goes, even an `@` in a path.
pub fn redact_userinfo(input: &str) -> String {
    let start = input.find("://").map_or(0, |i| i + "://".len());
    let rest = input.get(start..).unwrap_or_default();
    match rest.rfind('@') {
        Some(at) => format!(
            "{}***{}",
            input.get(..start).unwrap_or_default(),
            rest.get(at..).unwrap_or_default()
        ),
        None => input.to_owned(),
    }
}

fn is_hosted(host: &str) -> bool {
    host == "github.com"
        || host == "www.github.com"
        || host == "github.localhost"
        || host.ends_with(".ghe.com")
}

/// `None` when the base is not also a valid `http::Uri`: `url` accepts hosts
/// holding `{`, `}`, `"` or a backtick, which the HTTP stack refuses, and
/// every request is built from this base.
fn rest_base(url: &Url, host: &str, hosted: bool) -> Option<Url> {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let base = if hosted {
        // www.github.com is an alias of github.com; its API has no `www.`.
        let api_host = host.strip_prefix("www.").unwrap_or(host);
        format!("https://api.{api_host}{port}")
    } else {
        format!("{}://{host}{port}/api/v3", url.scheme())
    };
    let base = Url::parse(&base).ok()?;
    base.as_str().parse::<http::Uri>().ok()?;
    Some(base)
}

#[cfg(test)]
/// Mutated `githubConfigUrl`s: a scheme, a host made of characters `url`
/// and `http` disagree on, a known suffix and a path; or any string at all.
pub(crate) fn mutated_config_urls() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let host_char = prop::sample::select(vec![
        'a', 'z', '0', '.', '-', '_', '~', '{', '}', '"', '`', '%', '[', ']', ':', '@', '!', '$',
        '&', '\'', '(', ')', '*', '+', ',', ';', '=', 'ü', '\u{0}', ' ', '/', '?', '#', '\\', '|',
        '^', '<', '>',
    ]);
    let host = prop::collection::vec(host_char, 0..12).prop_map(String::from_iter);
    let scheme = prop::sample::select(vec!["https://", "http://", "HTTPS://", "ftp://", ""]);
    let suffix = prop::sample::select(vec![
        "",
        "github.com",
        ".ghe.com",
        ".example.com",
        ":8443",
        ":0",
        ":99999",
        "[::1]",
    ]);
    let path = "[a-zA-Z0-9/{}%._~-]{0,20}";
    prop_oneof![
        4 => (scheme, host, suffix, path).prop_map(|(s, h, x, p)| format!("{s}{h}{x}/{p}")),
        1 => any::<String>(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(o: &str) -> Scope {
        Scope::Organization { org: o.into() }
    }
    fn repo(o: &str, r: &str) -> Scope {
        Scope::Repository {
            owner: o.into(),
            repo: r.into(),
        }
    }
    fn ent(e: &str) -> Scope {
        Scope::Enterprise {
            enterprise: e.into(),
        }
    }

    #[test]
    fn accepted_urls() {
        // (input, scope, REST base, hosted, config url echoed to GitHub)
        let cases = [
            (
                "https://github.com/my-org",
                org("my-org"),
                "https://api.github.com/",
                true,
                "https://github.com/my-org",
            ),
            (
                "https://github.com/my-org/",
                org("my-org"),
                "https://api.github.com/",
                true,
                "https://github.com/my-org",
            ),
            (
                "https://github.com/my-org/my-repo",
                repo("my-org", "my-repo"),
                "https://api.github.com/",
                true,
                "https://github.com/my-org/my-repo",
            ),
            (
                "https://github.com/enterprises/acme",
                ent("acme"),
                "https://api.github.com/",
                true,
                "https://github.com/enterprises/acme",
            ),
            (
                "https://github.com/Enterprises/acme/",
                ent("acme"),
                "https://api.github.com/",
                true,
                "https://github.com/Enterprises/acme",
            ),
            (
                "https://www.github.com/my-org",
                org("my-org"),
                "https://api.github.com/",
                true,
                "https://www.github.com/my-org",
            ),
            (
                "https://GitHub.com/my-org",
                org("my-org"),
                "https://api.github.com/",
                true,
                "https://github.com/my-org",
            ),
            (
                "https://acme.ghe.com/my-org",
                org("my-org"),
                "https://api.acme.ghe.com/",
                true,
                "https://acme.ghe.com/my-org",
            ),
            (
                "https://github.localhost/my-org",
                org("my-org"),
                "https://api.github.localhost/",
                true,
                "https://github.localhost/my-org",
            ),
            (
                "https://ghes.example.com/my-org/my-repo",
                repo("my-org", "my-repo"),
                "https://ghes.example.com/api/v3",
                false,
                "https://ghes.example.com/my-org/my-repo",
            ),
            (
                "https://ghes.example.com:8443/enterprises/e",
                ent("e"),
                "https://ghes.example.com:8443/api/v3",
                false,
                "https://ghes.example.com:8443/enterprises/e",
            ),
            (
                "http://127.0.0.1:4000/my-org",
                org("my-org"),
                "http://127.0.0.1:4000/api/v3",
                false,
                "http://127.0.0.1:4000/my-org",
            ),
            (
                "http://ghes.internal/my-org/",
                org("my-org"),
                "http://ghes.internal/api/v3",
                false,
                "http://ghes.internal/my-org",
            ),
            // An org literally named "enterprises" is still an org.
            (
                "https://github.com/enterprises",
                org("enterprises"),
                "https://api.github.com/",
                true,
                "https://github.com/enterprises",
            ),
        ];
        for (input, scope, rest, hosted, echoed) in cases {
            let config = GitHubConfig::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(config.scope(), &scope, "{input}");
            assert_eq!(config.rest_base().as_str(), rest, "{input}");
            assert_eq!(config.is_hosted(), hosted, "{input}");
            assert_eq!(config.config_url(), echoed, "{input}");
        }
    }

    #[test]
    fn rejected_urls_quote_the_accepted_forms() {
        let cases = [
            "",
            "github.com/my-org",
            "https://github.com",
            "https://github.com/",
            "https://github.com//repo",
            "https://github.com/a/b/c",
            "https://github.com/my-org//",
            "https://github.com/my-org?x=1",
            "https://github.com/my-org#frag",
            "https://user:pw@ghes.example.com/my-org",
            "ftp://ghes.example.com/my-org",
            "http://github.com/my-org",
            "http://www.github.com/my-org",
            "http://acme.ghe.com/my-org",
            "http://github.localhost/my-org",
        ];
        for input in cases {
            let err = GitHubConfig::parse(input).expect_err(input).to_string();
            assert!(err.contains("githubConfigUrl"), "{input}: {err}");
            assert!(
                err.contains("https://<host>/<org>")
                    && err.contains("https://<host>/<org>/<repo>")
                    && err.contains("https://<host>/enterprises/<enterprise>"),
                "{input}: {err}"
            );
        }
    }

    #[test]
    fn credentials_in_the_url_are_never_quoted() {
        let cases = [
            (
                "https://user:ghp_s3cret@ghes.example.com/my-org",
                "https://***@ghes.example.com/my-org",
            ),
            (
                "https://ghp_s3cret@github.com/my-org",
                "https://***@github.com/my-org",
            ),
            (
                "http://x:ghp_s3cret@github.com/my-org",
                "http://***@github.com/my-org",
            ),
            // Unparsable: an unencoded `/` or `@` in the password, no scheme.
            (
                "https://user:ghp_s3/cret@github.com/my-org",
                "https://***@github.com/my-org",
            ),
            (
                "https://user:ghp@s3cret@github.com/my-org",
                "https://***@github.com/my-org",
            ),
            ("user:ghp_s3cret@github.com/my-org", "***@github.com/my-org"),
            ("ftp://u:ghp_s3cret@host/my-org", "ftp://***@host/my-org"),
        ];
        for (input, shown) in cases {
            assert_eq!(redact_userinfo(input), shown, "{input}");
            let err = GitHubConfig::parse(input).expect_err(input).to_string();
            assert!(!err.contains("s3cret") && !err.contains("s3/cret"), "{err}");
            assert!(err.contains(shown), "{input}: {err}");
        }
        for plain in ["https://github.com/my-org", "not a url", ""] {
            assert_eq!(redact_userinfo(plain), plain);
        }
    }

    #[test]
    fn hosts_the_http_stack_refuses_are_rejected() {
        // `url` accepts these host characters; `http::Uri` does not, and
        // every request is built as an `http::Uri` from the REST base.
        for input in [
            "https://ghes{.example.com/my-org",
            "https://ghes}.example.com/my-org",
            "https://ghes\".example.com/my-org",
            "https://ghes`.example.com/my-org",
            "https://acme{.ghe.com/my-org",
        ] {
            let err = GitHubConfig::parse(input).expect_err(input).to_string();
            assert!(err.contains("githubConfigUrl"), "{input}: {err}");
            assert!(err.contains("host"), "{input}: {err}");
        }
    }

    #[test]
    fn registration_token_paths() {
        assert_eq!(
            org("o").registration_token_path(),
            "/orgs/o/actions/runners/registration-token"
        );
        assert_eq!(
            repo("o", "r").registration_token_path(),
            "/repos/o/r/actions/runners/registration-token"
        );
        assert_eq!(
            ent("e").registration_token_path(),
            "/enterprises/e/actions/runners/registration-token"
        );
    }
}

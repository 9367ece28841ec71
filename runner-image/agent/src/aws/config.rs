//! The settings of `runway aws`: the scale set's mounted config file (the
//! chart renders its `aws:` values there verbatim), `RUNWAY_AWS_*` env and
//! command-line flags, merged in that order (a flag beats env beats the file).
//!
//! Pure: the caller reads the file and the environment and hands in text and a
//! lookup function. Every value remembers where it came from, so an error names
//! the exact setting to fix (`aws.sessionPolicy` in the file, `--policy`, or
//! `RUNWAY_AWS_SESSION_POLICY`). `allowedRoles` is read from the file only: it
//! is the scale set's policy, which a job step's flags or env must not widen.

use std::fmt;

use serde::Deserialize;

/// Where the mounted config lives unless `RUNWAY_AWS_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/runway/aws/config.yaml";
pub const CONFIG_PATH_ENV: &str = "RUNWAY_AWS_CONFIG";

pub const DEFAULT_SESSION_NAME: &str = "{workflow}_{run_number}_{job}";
pub const DEFAULT_SESSION_TAGS: &[&str] = &["Repository", "Workflow", "RunId", "Actor", "Job"];
pub const DEFAULT_DURATION: u32 = 3600;
/// STS's bounds on DurationSeconds for any AssumeRole* call.
pub const MIN_DURATION: u32 = 900;
pub const MAX_DURATION: u32 = 43_200;
/// STS's bound on the plaintext of an inline session policy.
pub const MAX_POLICY_CHARS: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SessionTagging {
    /// Never send session tags.
    Never,
    /// Send tags; a TagSession AccessDenied fails at once with the fix.
    Always,
    /// Send tags; on a TagSession AccessDenied retry that hop once untagged and warn.
    Auto,
}

impl SessionTagging {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" => Some(Self::Never),
            "always" => Some(Self::Always),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }
}

/// The config file, exactly the chart's `aws:` keys. Unknown keys are errors:
/// a misspelt `sesionTagging` must not silently fall back to the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileConfig {
    pub region: Option<String>,
    pub allowed_roles: Option<Vec<String>>,
    pub session_tagging: Option<SessionTagging>,
    pub session_tags: Option<Vec<String>>,
    pub transitive_tag_keys: Option<Vec<String>>,
    pub session_name: Option<String>,
    pub max_session_duration: Option<u32>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub session_policy: Option<String>,
}

/// Values given on the command line; `None`/empty means "not given".
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub region: Option<String>,
    pub session_tagging: Option<SessionTagging>,
    pub tags: Vec<String>,
    pub transitive_tag_keys: Vec<String>,
    pub session_name: Option<String>,
    pub duration: Option<u32>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
}

/// One setting, by the three names a user may know it under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub file: &'static str,
    pub env: &'static str,
    pub flag: &'static str,
}

macro_rules! key {
    ($name:ident, $file:literal, $env:literal, $flag:literal) => {
        pub const $name: Key = Key {
            file: $file,
            env: $env,
            flag: $flag,
        };
    };
}
key!(REGION, "region", "RUNWAY_AWS_REGION", "--region");
key!(ALLOWED_ROLES, "allowedRoles", "", "");
key!(
    SESSION_TAGGING,
    "sessionTagging",
    "RUNWAY_AWS_SESSION_TAGGING",
    "--session-tagging"
);
key!(
    SESSION_TAGS,
    "sessionTags",
    "RUNWAY_AWS_SESSION_TAGS",
    "--tag"
);
key!(
    TRANSITIVE_TAG_KEYS,
    "transitiveTagKeys",
    "RUNWAY_AWS_TRANSITIVE_TAG_KEYS",
    "--transitive-tag-key"
);
key!(
    SESSION_NAME,
    "sessionName",
    "RUNWAY_AWS_SESSION_NAME",
    "--session-name"
);
key!(
    DURATION,
    "maxSessionDuration",
    "RUNWAY_AWS_MAX_SESSION_DURATION",
    "--duration"
);
key!(
    SOURCE_IDENTITY,
    "sourceIdentity",
    "RUNWAY_AWS_SOURCE_IDENTITY",
    "--source-identity"
);
key!(
    EXTERNAL_ID,
    "externalId",
    "RUNWAY_AWS_EXTERNAL_ID",
    "--external-id"
);
key!(
    SESSION_POLICY,
    "sessionPolicy",
    "RUNWAY_AWS_SESSION_POLICY",
    "--policy"
);

/// Which layer a value came from, to name it in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Default,
    File,
    Env,
    Flag,
}

/// Names a setting as the user wrote it, e.g. "`--policy`" or "`aws.sessionPolicy`".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub key: Key,
    pub origin: Origin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Flag => write!(f, "`{}`", self.key.flag),
            Origin::Env => write!(f, "`{}`", self.key.env),
            Origin::File | Origin::Default => write!(f, "`aws.{}`", self.key.file),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the AWS config {path} (set by the scale set's `aws:` values) is invalid: {message}")]
    File { path: String, message: String },
    #[error("{setting}: `{value}` is not one of never, always, auto")]
    Tagging { setting: Source, value: String },
    #[error("{setting}: `{value}` is not a number of seconds")]
    NotANumber { setting: Source, value: String },
    #[error("{setting}: {value} seconds is outside STS's {MIN_DURATION}..{MAX_DURATION}")]
    Duration { setting: Source, value: u32 },
    #[error(
        "{setting}: the session policy has {chars} characters; STS allows at most {MAX_POLICY_CHARS}"
    )]
    PolicyTooLong { setting: Source, chars: usize },
    #[error("{setting}: the session policy is not JSON: {message}")]
    PolicyNotJson { setting: Source, message: String },
    #[error(
        "{setting}: `{value}` is not a valid ExternalId (2..1224 characters from letters, digits and _+=,.@:/-)"
    )]
    ExternalId { setting: Source, value: String },
}

/// The merged settings for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub region: Option<String>,
    /// Glob patterns; empty means every role is allowed.
    pub allowed_roles: Vec<String>,
    pub tagging: SessionTagging,
    pub tagging_source: Source,
    pub tag_names: Vec<String>,
    pub tags_source: Source,
    pub transitive_tag_keys: Vec<String>,
    pub transitive_source: Source,
    pub session_name: String,
    pub session_name_source: Source,
    pub duration: u32,
    pub duration_source: Source,
    pub source_identity: Option<String>,
    pub source_identity_source: Source,
    pub external_id: Option<String>,
    pub policy: Option<String>,
}

/// Parses the config file's text. Empty text (an empty `aws:` map) is defaults.
pub fn parse_file(path: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| ConfigError::File {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    if value.is_null() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_value(value).map_err(|e| ConfigError::File {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Picks the highest layer that has a value: flag, then env, then file.
fn pick<T>(key: Key, flag: Option<T>, env: Option<T>, file: Option<T>, default: T) -> (T, Source) {
    let (value, origin) = match (flag, env, file) {
        (Some(v), _, _) => (v, Origin::Flag),
        (None, Some(v), _) => (v, Origin::Env),
        (None, None, Some(v)) => (v, Origin::File),
        (None, None, None) => (default, Origin::Default),
    };
    (value, Source { key, origin })
}

/// Empty strings mean "none" at every layer (the chart renders `""`).
fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn list(s: Option<String>) -> Option<Vec<String>> {
    s.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
}

fn non_empty_vec(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

/// Merges the three layers and checks what can be checked without GitHub's
/// env (templates and tags are checked where they are rendered).
pub fn merge(
    file: FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    flags: Flags,
) -> Result<Settings, ConfigError> {
    let env_str = |key: Key| non_empty(env(key.env));

    let region = non_empty(flags.region)
        .or_else(|| env_str(REGION))
        .or_else(|| non_empty(file.region));

    let env_tagging = match env_str(SESSION_TAGGING) {
        Some(v) => Some(SessionTagging::parse(&v).ok_or(ConfigError::Tagging {
            setting: Source {
                key: SESSION_TAGGING,
                origin: Origin::Env,
            },
            value: v,
        })?),
        None => None,
    };
    let (tagging, tagging_source) = pick(
        SESSION_TAGGING,
        flags.session_tagging,
        env_tagging,
        file.session_tagging,
        SessionTagging::Auto,
    );

    let (tag_names, tags_source) = pick(
        SESSION_TAGS,
        non_empty_vec(flags.tags),
        list(env_str(SESSION_TAGS)),
        file.session_tags,
        DEFAULT_SESSION_TAGS.iter().map(|s| s.to_string()).collect(),
    );
    let (transitive_tag_keys, transitive_source) = pick(
        TRANSITIVE_TAG_KEYS,
        non_empty_vec(flags.transitive_tag_keys),
        list(env_str(TRANSITIVE_TAG_KEYS)),
        file.transitive_tag_keys,
        Vec::new(),
    );
    let (session_name, session_name_source) = pick(
        SESSION_NAME,
        non_empty(flags.session_name),
        env_str(SESSION_NAME),
        non_empty(file.session_name),
        DEFAULT_SESSION_NAME.to_string(),
    );

    let env_duration = match env_str(DURATION) {
        Some(v) => Some(
            v.trim()
                .parse::<u32>()
                .map_err(|_| ConfigError::NotANumber {
                    setting: Source {
                        key: DURATION,
                        origin: Origin::Env,
                    },
                    value: v,
                })?,
        ),
        None => None,
    };
    let (duration, duration_source) = pick(
        DURATION,
        flags.duration,
        env_duration,
        file.max_session_duration,
        DEFAULT_DURATION,
    );
    if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
        return Err(ConfigError::Duration {
            setting: duration_source,
            value: duration,
        });
    }

    let (source_identity, source_identity_source) = pick(
        SOURCE_IDENTITY,
        non_empty(flags.source_identity),
        env_str(SOURCE_IDENTITY),
        non_empty(file.source_identity),
        String::new(),
    );
    let (external_id, external_id_source) = pick(
        EXTERNAL_ID,
        non_empty(flags.external_id),
        env_str(EXTERNAL_ID),
        non_empty(file.external_id),
        String::new(),
    );
    let external_id = non_empty(Some(external_id));
    if let Some(id) = external_id.as_ref().filter(|id| !valid_external_id(id)) {
        return Err(ConfigError::ExternalId {
            setting: external_id_source,
            value: id.clone(),
        });
    }
    let (policy, policy_source) = pick(
        SESSION_POLICY,
        non_empty(flags.policy),
        env_str(SESSION_POLICY),
        non_empty(file.session_policy),
        String::new(),
    );
    let policy = non_empty(Some(policy));
    if let Some(p) = &policy {
        check_policy(p, policy_source)?;
    }

    Ok(Settings {
        region,
        allowed_roles: file.allowed_roles.unwrap_or_default(),
        tagging,
        tagging_source,
        tag_names,
        tags_source,
        transitive_tag_keys,
        transitive_source,
        session_name,
        session_name_source,
        duration,
        duration_source,
        source_identity: non_empty(Some(source_identity)),
        source_identity_source,
        external_id,
        policy,
    })
}

fn valid_external_id(id: &str) -> bool {
    (2..=1224).contains(&id.chars().count())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

fn check_policy(policy: &str, source: Source) -> Result<(), ConfigError> {
    let chars = policy.chars().count();
    if chars > MAX_POLICY_CHARS {
        return Err(ConfigError::PolicyTooLong {
            setting: source,
            chars,
        });
    }
    serde_json::from_str::<serde_json::Value>(policy)
        .map(|_| ())
        .map_err(|e| ConfigError::PolicyNotJson {
            setting: source,
            message: e.to_string(),
        })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

//! Where the credentials go: `export` lines, `$GITHUB_ENV` (with
//! `::add-mask::` first, so the runner hides them in logs), JSON in the
//! shape of an AWS `credential_process`, or a named profile in the shared
//! config and credentials files.
//!
//! Rendering is pure; the few writes are at the bottom. Secrets appear only
//! in what the chosen output requires, never in logs or errors.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::aws::error::AwsError;

/// The JSON an AWS `credential_process` prints (Version 1).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessJson {
    pub version: u8,
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// RFC 3339; absent means "never expires" to the SDKs, so only static
    /// keys omit it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

pub fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn process_json(creds: &Credentials) -> String {
    let json = ProcessJson {
        version: 1,
        access_key_id: creds.access_key_id().to_string(),
        secret_access_key: creds.secret_access_key().to_string(),
        session_token: creds.session_token().map(str::to_string),
        expiration: creds.expiry().map(rfc3339),
    };
    // Serializing plain strings cannot fail.
    serde_json::to_string(&json).unwrap_or_default()
}

/// Name -> value of the variables every output sets.
pub fn variables(creds: &Credentials, region: &str) -> Vec<(&'static str, String)> {
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", creds.access_key_id().to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            creds.secret_access_key().to_string(),
        ),
    ];
    if let Some(token) = creds.session_token() {
        vars.push(("AWS_SESSION_TOKEN", token.to_string()));
    }
    vars.push(("AWS_REGION", region.to_string()));
    vars.push(("AWS_DEFAULT_REGION", region.to_string()));
    vars
}

fn is_secret(name: &str) -> bool {
    matches!(
        name,
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN"
    )
}

/// Quotes for POSIX shells (and Python's shlex, which the AWS CLI uses for
/// `credential_process`), leaving plain words as they are.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

pub fn env_lines(creds: &Credentials, region: &str) -> String {
    variables(creds, region)
        .into_iter()
        .map(|(k, v)| format!("export {k}={}\n", shell_quote(&v)))
        .collect()
}

/// `(stdout, appended to $GITHUB_ENV)`: masks go to stdout before the values
/// reach any later step.
pub fn github_env(creds: &Credentials, region: &str) -> (String, String) {
    let vars = variables(creds, region);
    let masks = vars
        .iter()
        .filter(|(k, _)| is_secret(k))
        .map(|(_, v)| format!("::add-mask::{v}\n"))
        .collect();
    let lines = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    (masks, lines)
}

/// A GitHub workflow command's data: `%`, CR and LF are escaped.
pub fn workflow_command_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The account of an ARN (`arn:aws:sts::111122223333:assumed-role/...`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// Replaces (or with `None` removes) one `[header]` section of an INI file,
/// keeping everything else as it was.
pub fn upsert_section(text: &str, header: &str, entries: Option<&[(String, String)]>) -> String {
    let wanted = format!("[{header}]");
    let mut out = String::new();
    let mut skipping = false;
    let mut written = false;
    let write_section = |out: &mut String| {
        if let Some(entries) = entries {
            out.push_str(&wanted);
            out.push('\n');
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = trimmed == wanted;
            if skipping && !written {
                write_section(&mut out);
                written = true;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !written && entries.is_some() {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        write_section(&mut out);
    }
    out
}

/// `[default]` or `[profile NAME]`: the config file's section names.
pub fn config_header(profile: &str) -> String {
    if profile == "default" {
        "default".into()
    } else {
        format!("profile {profile}")
    }
}

/// The shared files, as the SDKs find them.
pub fn shared_file(env: &dyn Fn(&str) -> Option<String>, var: &str, default: &str) -> PathBuf {
    let home = env("HOME").unwrap_or_else(|| "/root".into());
    match env(var).filter(|v| !v.is_empty()) {
        Some(p) if p == "~" => PathBuf::from(home),
        Some(p) => match p.strip_prefix("~/") {
            Some(rest) => Path::new(&home).join(rest),
            None => PathBuf::from(p),
        },
        None => Path::new(&home).join(".aws").join(default),
    }
}

fn write_error(path: &Path, e: std::io::Error) -> AwsError {
    AwsError::Write {
        path: path.display().to_string(),
        error: e.to_string(),
    }
}

/// Rewrites one section of a shared file, creating it (mode 0600) if needed.
pub fn edit_file(
    path: &Path,
    header: &str,
    entries: Option<&[(String, String)]>,
) -> Result<(), AwsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(write_error(path, e)),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    }
    let text = upsert_section(&current, header, entries);
    // Write a sibling, then rename: a reader never sees half a file.
    let tmp = path.with_extension("runway-tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| write_error(&tmp, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| write_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| write_error(path, e))
}

/// Appends lines to a file the runner reads after the step (`$GITHUB_ENV`).
pub fn append(path: &Path, text: &str) -> Result<(), AwsError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| write_error(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| write_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds() -> Credentials {
        Credentials::new(
            "ASIAEXAMPLE",
            "se/cr+et=",
            Some("to'ken".into()),
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000)),
            "test",
        )
    }

    #[test]
    fn process_json_matches_the_aws_cli_shape() {
        let v: serde_json::Value = serde_json::from_str(&process_json(&creds())).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Version": 1,
                "AccessKeyId": "ASIAEXAMPLE",
                "SecretAccessKey": "se/cr+et=",
                "SessionToken": "to'ken",
                "Expiration": "2027-01-15T08:00:00Z",
            })
        );
        let static_keys = Credentials::new("AKIA", "s", None, None, "t");
        let v: serde_json::Value = serde_json::from_str(&process_json(&static_keys)).unwrap();
        assert!(v.get("Expiration").is_none() && v.get("SessionToken").is_none());
    }

    #[test]
    fn env_lines_are_shell_safe() {
        let out = env_lines(&creds(), "eu-central-1");
        assert!(
            out.contains("export AWS_SESSION_TOKEN='to'\\''ken'\n"),
            "{out}"
        );
        assert!(
            out.contains("export AWS_SECRET_ACCESS_KEY=se/cr+et=\n"),
            "{out}"
        );
        assert!(out.contains("export AWS_REGION=eu-central-1\n"));
        assert_eq!(shell_quote("{workflow}_{job}"), "'{workflow}_{job}'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn github_env_masks_every_secret_first() {
        let (stdout, file) = github_env(&creds(), "us-east-1");
        assert_eq!(
            stdout,
            "::add-mask::ASIAEXAMPLE\n::add-mask::se/cr+et=\n::add-mask::to'ken\n"
        );
        assert!(file.contains("AWS_SESSION_TOKEN=to'ken\n"));
        assert!(file.contains("AWS_DEFAULT_REGION=us-east-1\n"));
        assert!(!stdout.contains("us-east-1"));
    }

    #[test]
    fn sections_are_replaced_added_and_removed() {
        let text = "[default]\nregion = us-east-1\n\n[profile ci]\nregion = x\nfoo = bar\n[profile other]\nregion = y\n";
        let entries = vec![("region".to_string(), "eu-west-1".to_string())];
        let replaced = upsert_section(text, "profile ci", Some(&entries));
        assert_eq!(
            replaced,
            "[default]\nregion = us-east-1\n\n[profile ci]\nregion = eu-west-1\n[profile other]\nregion = y\n"
        );
        let added = upsert_section("[default]\nregion = a\n", "profile new", Some(&entries));
        assert_eq!(
            added,
            "[default]\nregion = a\n\n[profile new]\nregion = eu-west-1\n"
        );
        let removed = upsert_section(text, "profile ci", None);
        assert_eq!(
            removed,
            "[default]\nregion = us-east-1\n\n[profile other]\nregion = y\n"
        );
        assert_eq!(
            upsert_section("", "x", Some(&entries)),
            "[x]\nregion = eu-west-1\n"
        );
        assert_eq!(config_header("default"), "default");
        assert_eq!(config_header("ci"), "profile ci");
    }

    #[test]
    fn shared_files_follow_the_sdk_env() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/runner".to_string()),
            "AWS_CONFIG_FILE" => Some("~/custom/config".to_string()),
            _ => None,
        };
        assert_eq!(
            shared_file(&env, "AWS_CONFIG_FILE", "config"),
            PathBuf::from("/home/runner/custom/config")
        );
        assert_eq!(
            shared_file(&env, "AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            PathBuf::from("/home/runner/.aws/credentials")
        );
        assert_eq!(
            account_of("arn:aws:sts::111122223333:assumed-role/A/s"),
            Some("111122223333")
        );
        assert_eq!(workflow_command_data("a%b\nc"), "a%25b%0Ac");
    }
}

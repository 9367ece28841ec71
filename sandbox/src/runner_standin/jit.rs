//! The encoded JIT config, as the controller puts it into the runner pod
//! (`ACTIONS_RUNNER_INPUT_JITCONFIG`): base64 of a JSON map from runner file
//! name to that file's base64. The stand-in reads `.runner` (who it is and
//! where the service is) and `.credentials` (the client id it comes online
//! with). Parsing is lenient like a real runner's (unknown fields are
//! ignored); what it needs and does not find is a typed error that names
//! the file and field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde::Deserialize;
use url::{Host, Url};

/// What the stand-in needs from its JIT config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitConfig {
    pub runner_id: i64,
    pub runner_name: String,
    pub scale_set_id: i64,
    /// `.runner` ServerUrl, the tenant's Actions service.
    pub server_url: String,
    /// Where the stand-in connects: scheme, host and port of the server URL.
    pub origin: Origin,
    /// `.credentials` data.clientId.
    pub credential: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JitError {
    #[error("ACTIONS_RUNNER_INPUT_JITCONFIG is not set or empty")]
    Missing,
    #[error("the JIT config {what} is not base64: {reason}")]
    Base64 { what: &'static str, reason: String },
    #[error("the JIT config {what} is not the JSON expected: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("the JIT config has no {0} file")]
    MissingFile(&'static str),
    #[error("the JIT config's {file} has no usable {field}")]
    MissingField {
        file: &'static str,
        field: &'static str,
    },
    #[error("the JIT config's .runner ServerUrl {url:?} is not usable: {reason}")]
    ServerUrl { url: String, reason: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunnerFile {
    #[serde(default)]
    agent_id: Option<i64>,
    #[serde(default)]
    agent_name: Option<String>,
    #[serde(default)]
    runner_scale_set_id: Option<i64>,
    #[serde(default)]
    server_url: Option<String>,
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    data: Option<CredentialsData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsData {
    #[serde(default)]
    client_id: Option<String>,
}

fn base64(what: &'static str, text: &str) -> Result<Vec<u8>, JitError> {
    let text = text.trim();
    STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|e| JitError::Base64 {
            what,
            reason: e.to_string(),
        })
}

fn json<T: serde::de::DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, JitError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|e| JitError::Json {
        what,
        reason: e.to_string(),
    })
}

/// Decodes the encoded JIT config.
pub fn decode(encoded: &str) -> Result<JitConfig, JitError> {
    if encoded.trim().is_empty() {
        return Err(JitError::Missing);
    }
    let files: BTreeMap<String, String> = json("itself", &base64("itself", encoded)?)?;
    let file = |name: &'static str| {
        files
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .ok_or(JitError::MissingFile(name))
    };
    let runner: RunnerFile = json(".runner", &base64(".runner", file(".runner")?)?)?;
    let credentials: CredentialsFile = json(
        ".credentials",
        &base64(".credentials", file(".credentials")?)?,
    )?;
    let missing = |file, field| JitError::MissingField { file, field };
    let runner_id = runner
        .agent_id
        .filter(|id| *id > 0)
        .ok_or(missing(".runner", "AgentId"))?;
    let runner_name = runner
        .agent_name
        .filter(|n| !n.trim().is_empty())
        .ok_or(missing(".runner", "AgentName"))?;
    let server_url = runner
        .server_url
        .filter(|u| !u.trim().is_empty())
        .ok_or(missing(".runner", "ServerUrl"))?;
    let credential = credentials
        .data
        .and_then(|d| d.client_id)
        .filter(|c| !c.trim().is_empty())
        .ok_or(missing(".credentials", "data.clientId"))?;
    Ok(JitConfig {
        runner_id,
        runner_name,
        scale_set_id: runner.runner_scale_set_id.unwrap_or_default(),
        origin: origin(&server_url)?,
        server_url,
        credential,
    })
}

/// Scheme, host and port of the server URL. Only loopback hosts: the
/// sandbox sends traffic to 127.0.0.0/8 and nowhere else.
pub fn origin(server_url: &str) -> Result<Origin, JitError> {
    let bad = |reason: &str| JitError::ServerUrl {
        url: server_url.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(server_url.trim()).map_err(|e| bad(&e.to_string()))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("the scheme is neither http nor https")),
    };
    let host = match url.host() {
        Some(Host::Ipv4(ip)) if IpAddr::V4(ip).is_loopback() => ip.to_string(),
        Some(Host::Ipv6(ip)) if IpAddr::V6(ip).is_loopback() => ip.to_string(),
        Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => "127.0.0.1".to_string(),
        _ => return Err(bad("the host is not a loopback address")),
    };
    let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
    Ok(Origin { tls, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(runner: &str, credentials: &str) -> String {
        let files = serde_json::json!({
            ".runner": STANDARD.encode(runner),
            ".credentials": STANDARD.encode(credentials),
        });
        STANDARD.encode(files.to_string())
    }

    const RUNNER: &str = r#"{"AgentId":101,"AgentName":"arm-abc","PoolId":0,"RunnerScaleSetId":1,
        "ServerUrl":"http://127.0.0.1:4567/_services/pipelines/1/","GitHubUrl":"x","WorkFolder":"_work",
        "Ephemeral":true,"DisableUpdate":true,"SomethingNew":[1,2]}"#;
    const CREDENTIALS: &str =
        r#"{"scheme":"OAuth","data":{"clientId":"abc123","authorizationUrl":"u"}}"#;

    #[test]
    fn a_config_from_the_fake_decodes() {
        let config = decode(&encode(RUNNER, CREDENTIALS)).expect("decodes");
        assert_eq!(
            config,
            JitConfig {
                runner_id: 101,
                runner_name: "arm-abc".into(),
                scale_set_id: 1,
                server_url: "http://127.0.0.1:4567/_services/pipelines/1/".into(),
                origin: Origin {
                    tls: false,
                    host: "127.0.0.1".into(),
                    port: 4567
                },
                credential: "abc123".into(),
            }
        );
        // Whitespace around it (a Secret written by hand) is fine.
        let padded = format!("  {}\n", encode(RUNNER, CREDENTIALS));
        assert!(decode(&padded).is_ok());
    }

    #[test]
    fn bad_configs_name_what_is_wrong() {
        let no_id = RUNNER.replace("\"AgentId\":101,", "");
        let null_name = RUNNER.replace("\"arm-abc\"", "null");
        let no_client = CREDENTIALS.replace("\"clientId\":\"abc123\",", "");
        let only_runner =
            STANDARD.encode(serde_json::json!({".runner": STANDARD.encode(RUNNER)}).to_string());
        let cases: Vec<(String, JitError)> = vec![
            ("".into(), JitError::Missing),
            (
                encode(&no_id, CREDENTIALS),
                JitError::MissingField {
                    file: ".runner",
                    field: "AgentId",
                },
            ),
            (
                encode(&null_name, CREDENTIALS),
                JitError::MissingField {
                    file: ".runner",
                    field: "AgentName",
                },
            ),
            (
                encode(RUNNER, &no_client),
                JitError::MissingField {
                    file: ".credentials",
                    field: "data.clientId",
                },
            ),
            (only_runner, JitError::MissingFile(".credentials")),
        ];
        for (input, want) in cases {
            assert_eq!(decode(&input), Err(want), "{input}");
        }
        assert!(matches!(
            decode("not base64 !!"),
            Err(JitError::Base64 { what: "itself", .. })
        ));
        assert!(matches!(
            decode(&STANDARD.encode("[1]")),
            Err(JitError::Json { what: "itself", .. })
        ));
        assert!(matches!(
            decode(&encode("{", CREDENTIALS)),
            Err(JitError::Json {
                what: ".runner",
                ..
            })
        ));
    }

    #[test]
    fn only_loopback_server_urls() {
        let ok = [
            ("http://127.0.0.1:80/x", false, "127.0.0.1", 80),
            ("https://127.0.0.2/x", true, "127.0.0.2", 443),
            ("http://localhost:9/", false, "127.0.0.1", 9),
            ("http://[::1]:7/", false, "::1", 7),
        ];
        for (url, tls, host, port) in ok {
            assert_eq!(
                origin(url),
                Ok(Origin {
                    tls,
                    host: host.into(),
                    port
                }),
                "{url}"
            );
        }
        for url in [
            "http://10.0.0.1/",
            "https://api.github.com/",
            "ftp://127.0.0.1/",
            "nonsense",
        ] {
            assert!(
                matches!(origin(url), Err(JitError::ServerUrl { .. })),
                "{url}"
            );
        }
        assert_eq!(
            Origin {
                tls: false,
                host: "::1".into(),
                port: 7
            }
            .authority(),
            "[::1]:7"
        );
    }
}

//! The AWS SDK side: one `SdkConfig` for the run, an STS client per hop signed
//! with the previous hop's credentials, and the classification of SDK errors
//! into the [`ErrorKind`]s that [`chain::decide`](crate::aws::chain::decide)
//! understands.
//!
//! The SDK's own retries are off (`RetryConfig::disabled`): the chain decides
//! every retry, so the number of calls STS sees is exactly ours. The endpoint
//! comes from aws-config (`AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, or the
//! profile), HTTPS from rustls with ring.

use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use crate::aws::chain::{
    AssumeRoleRequest, ErrorKind, Session, Sts, StsFailure, WebIdentityRequest,
};

/// The SDK's HTTPS client on rustls + ring (the default would pull aws-lc).
pub fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(15))
        .build()
}

/// The run's SDK configuration: no credentials of its own (each hop brings
/// its signer), no SDK retries, bounded timeouts.
pub async fn sdk_config(region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .http_client(http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts())
        .no_credentials()
        .load()
        .await
}

/// STS through the SDK.
pub struct SdkSts {
    config: SdkConfig,
}

/// Who a set of credentials is, as GetCallerIdentity says.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

impl SdkSts {
    pub fn new(config: SdkConfig) -> Self {
        Self { config }
    }

    fn client(&self, signer: Option<&Credentials>) -> aws_sdk_sts::Client {
        let mut builder = aws_sdk_sts::config::Builder::from(&self.config);
        if let Some(signer) = signer {
            builder = builder.credentials_provider(signer.clone());
        }
        aws_sdk_sts::Client::from_conf(builder.build())
    }

    pub async fn get_caller_identity(
        &self,
        creds: &Credentials,
    ) -> Result<CallerIdentity, StsFailure> {
        let out = self
            .client(Some(creds))
            .get_caller_identity()
            .send()
            .await
            .map_err(failure)?;
        Ok(CallerIdentity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
            user_id: out.user_id().unwrap_or_default().to_string(),
        })
    }
}

impl Sts for SdkSts {
    async fn assume_role_with_web_identity(
        &self,
        req: &WebIdentityRequest,
    ) -> Result<Session, StsFailure> {
        // Unsigned: the operation's only auth scheme is "no auth".
        let out = self
            .client(None)
            .assume_role_with_web_identity()
            .role_arn(&req.role_arn)
            .role_session_name(&req.session_name)
            .web_identity_token(&req.token)
            .duration_seconds(req.duration as i32)
            .set_policy(req.policy.clone())
            .send()
            .await
            .map_err(failure)?;
        session(out.credentials(), out.assumed_role_user().map(|u| u.arn()))
    }

    async fn assume_role(
        &self,
        caller: &Credentials,
        req: &AssumeRoleRequest,
    ) -> Result<Session, StsFailure> {
        let tags = req
            .tags
            .tags
            .iter()
            .map(|t| {
                aws_sdk_sts::types::Tag::builder()
                    .key(&t.key)
                    .value(&t.value)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StsFailure {
                kind: ErrorKind::Other,
                code: "BuildRequest".into(),
                message: e.to_string(),
            })?;
        let out = self
            .client(Some(caller))
            .assume_role()
            .role_arn(&req.role_arn)
            .role_session_name(&req.session_name)
            .duration_seconds(req.duration as i32)
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!req.tags.transitive_keys.is_empty()).then(|| req.tags.transitive_keys.clone()),
            )
            .set_source_identity(req.source_identity.clone())
            .set_external_id(req.external_id.clone())
            .set_policy(req.policy.clone())
            .send()
            .await
            .map_err(failure)?;
        session(out.credentials(), out.assumed_role_user().map(|u| u.arn()))
    }
}

fn session(
    creds: Option<&aws_sdk_sts::types::Credentials>,
    arn: Option<&str>,
) -> Result<Session, StsFailure> {
    let creds = creds.ok_or_else(|| StsFailure {
        kind: ErrorKind::Other,
        code: "NoCredentials".into(),
        message: "STS answered without credentials".into(),
    })?;
    let expiry = SystemTime::try_from(*creds.expiration()).ok();
    Ok(Session {
        credentials: Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_string()),
            expiry,
            "runway-aws",
        ),
        arn: arn.map(str::to_string),
    })
}

/// Turns an SDK error into a failure the chain can decide on. Timeouts and
/// dispatch failures (connection refused, DNS) count as transport errors.
fn failure<E>(err: SdkError<E>) -> StsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let context = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) => StsFailure {
            kind: ErrorKind::Transport,
            code: "Timeout".into(),
            message: context,
        },
        SdkError::DispatchFailure(_) => StsFailure {
            kind: ErrorKind::Transport,
            code: "DispatchFailure".into(),
            message: context,
        },
        SdkError::ServiceError(service) => {
            let code = service.err().code().map(str::to_string);
            let message = service
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or(context);
            let status = service.raw().status().as_u16();
            StsFailure {
                kind: classify(code.as_deref(), &message, Some(status)),
                code: code.unwrap_or_else(|| format!("HTTP {status}")),
                message,
            }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            StsFailure {
                kind: classify(None, &context, Some(status)),
                code: format!("HTTP {status}"),
                message: context,
            }
        }
        _ => StsFailure {
            kind: ErrorKind::Other,
            code: "Request".into(),
            message: context,
        },
    }
}

/// STS error code (and HTTP status) -> what the chain may do about it.
pub fn classify(code: Option<&str>, message: &str, status: Option<u16>) -> ErrorKind {
    match code {
        Some("AccessDenied" | "AccessDeniedException") if message.contains("sts:TagSession") => {
            ErrorKind::TagSessionDenied
        }
        Some("AccessDenied" | "AccessDeniedException") => ErrorKind::AccessDenied,
        Some("ValidationError" | "ValidationException") => ErrorKind::Validation,
        Some("PackedPolicyTooLarge") => ErrorKind::PackedPolicyTooLarge {
            percent: percent_in(message),
        },
        Some(
            "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "SlowDown"
            | "PriorRequestNotComplete",
        ) => ErrorKind::Throttled,
        // IDPCommunicationError: STS could not reach the OIDC issuer; AWS
        // documents it as retryable.
        Some(
            "InternalFailure" | "InternalError" | "ServiceUnavailable" | "IDPCommunicationError",
        ) => ErrorKind::ServerError,
        _ => match status {
            Some(429) => ErrorKind::Throttled,
            Some(500..=599) => ErrorKind::ServerError,
            _ => ErrorKind::Other,
        },
    }
}

/// "Packed size of session tags consumes 142% of allotted space." -> 142.
pub fn percent_in(message: &str) -> Option<u32> {
    let end = message.find('%')?;
    let digits: String = message[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_table() {
        let tag = "User: arn:aws:sts::1:assumed-role/A/s is not authorized to perform: sts:TagSession on resource: arn:aws:iam::1:role/B";
        let cases: Vec<(Option<&str>, &str, Option<u16>, ErrorKind)> = vec![
            (
                Some("AccessDenied"),
                tag,
                Some(403),
                ErrorKind::TagSessionDenied,
            ),
            (
                Some("AccessDenied"),
                "not authorized to perform: sts:AssumeRole",
                Some(403),
                ErrorKind::AccessDenied,
            ),
            (
                Some("ValidationError"),
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
                Some(400),
                ErrorKind::Validation,
            ),
            (
                Some("PackedPolicyTooLarge"),
                "Packed size of session tags consumes 142% of allotted space.",
                Some(400),
                ErrorKind::PackedPolicyTooLarge { percent: Some(142) },
            ),
            (
                Some("Throttling"),
                "Rate exceeded",
                Some(400),
                ErrorKind::Throttled,
            ),
            (
                Some("IDPCommunicationError"),
                "",
                Some(400),
                ErrorKind::ServerError,
            ),
            (
                Some("InternalFailure"),
                "",
                Some(500),
                ErrorKind::ServerError,
            ),
            (None, "", Some(503), ErrorKind::ServerError),
            (None, "", Some(429), ErrorKind::Throttled),
            (
                Some("InvalidIdentityToken"),
                "",
                Some(400),
                ErrorKind::Other,
            ),
            (
                Some("ExpiredTokenException"),
                "",
                Some(400),
                ErrorKind::Other,
            ),
            (Some("Whatever"), "", Some(502), ErrorKind::ServerError),
        ];
        for (code, message, status, want) in cases {
            assert_eq!(classify(code, message, status), want, "{code:?} {status:?}");
        }
    }

    #[test]
    fn percentages_are_read_from_messages() {
        assert_eq!(
            percent_in("Packed size of session tags consumes 142% of allotted space."),
            Some(142)
        );
        assert_eq!(percent_in("uses 99%"), Some(99));
        assert_eq!(percent_in("too large"), None);
        assert_eq!(percent_in("%"), None);
    }
}

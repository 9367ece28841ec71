//! The errors STS answers with: HTTP status, `Type`, `Code` and `Message`,
//! with AWS's own texts (AWS.md) so clients match on exactly what they will
//! see from AWS.

/// One STS error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `Sender` for 4xx (the caller must change the request), `Receiver` for
    /// 5xx, as in STS's `<Error><Type>`.
    pub fn kind(&self) -> &'static str {
        if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        }
    }

    /// `1 validation error detected: ...`, or `N validation errors detected:
    /// a; b` (AWS's Coral validation format). `violations` must not be empty.
    pub fn validation(violations: &[String]) -> Self {
        let n = violations.len();
        let plural = if n == 1 { "error" } else { "errors" };
        Self::new(
            400,
            "ValidationError",
            format!(
                "{n} validation {plural} detected: {}",
                violations.join("; ")
            ),
        )
    }

    /// A ValidationError that is not about the shape of one field.
    pub fn validation_message(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationError", message)
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValue", message)
    }

    /// `User: <caller> is not authorized to perform: <action> on resource: <resource>`.
    pub fn not_authorized(caller_arn: &str, action: &str, resource: &str) -> Self {
        Self::new(
            403,
            "AccessDenied",
            format!(
                "User: {caller_arn} is not authorized to perform: {action} on resource: {resource}"
            ),
        )
    }

    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(403, "AccessDenied", message)
    }

    pub fn packed_too_large(percent: u32, what: &str) -> Self {
        Self::new(
            400,
            "PackedPolicyTooLarge",
            format!("Packed size of {what} consumes {percent}% of allotted space."),
        )
    }

    pub fn invalid_identity_token(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidIdentityToken", message)
    }

    pub fn expired_web_identity(now: i64, exp: i64) -> Self {
        // AWS's text, missing space included.
        Self::new(
            400,
            "ExpiredTokenException",
            format!(
                "Token expired: current date/time {now} must be before the expiration date/time{exp}"
            ),
        )
    }

    pub fn invalid_client_token() -> Self {
        Self::new(
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    }

    pub fn expired_token() -> Self {
        Self::new(
            400,
            "ExpiredToken",
            "The security token included in the request is expired",
        )
    }

    pub fn signature_mismatch() -> Self {
        Self::new(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details.",
        )
    }

    pub fn missing_authentication() -> Self {
        Self::new(
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    }

    pub fn incomplete_signature(message: impl Into<String>) -> Self {
        Self::new(400, "IncompleteSignature", message)
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version 2011-06-15"),
        )
    }

    pub fn missing_action() -> Self {
        Self::new(400, "MissingAction", "Missing Action")
    }

    pub fn throttling() -> Self {
        Self::new(400, "Throttling", "Rate exceeded")
    }

    pub fn internal_failure() -> Self {
        Self::new(
            500,
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
        )
    }

    pub fn service_unavailable() -> Self {
        Self::new(503, "ServiceUnavailable", "Service is unavailable")
    }
}

//! Who may POST payloads to `runway serve`: the bearer token of a mounted
//! Secret, or an ES256 JWT signed by the dispatcher's key whose public half
//! is mounted (KUBE-ACTIONS.md "Entry points" 4).
//!
//! [`authenticate`] is the whole decision: pure, with the clock passed in,
//! so every rule below is a row of a table test. Invariants:
//! - Anything but a verified credential is an [`AuthFailure`]; the caller
//!   answers 401 before reading the body, so nothing runs.
//! - JWTs: ES256 only (the header's `alg` is checked before anything else,
//!   so `none`, HS256 signed with the public key, RS256, ... never reach a
//!   verifier); `exp` required; `exp` at most [`MAX_LIFETIME`] after now and,
//!   with `iat`, `exp - iat` at most [`MAX_LIFETIME`]; `sub` equal to the
//!   configured runner URN; `nbf`/`iat` not in the future. [`LEEWAY`] absorbs
//!   clock skew on every time check.
//! - A JWT is bound to one request: it must carry `jti` (a unique id, at
//!   most [`MAX_JTI_LEN`] bytes) and `body_sha256` (the lowercase hex
//!   SHA-256 of the exact body bytes). [`authenticate`] checks that both are
//!   there and well-formed; [`check_body`] compares the hash once the body
//!   is read; the `jti` is then checked and recorded by
//!   [`super::replay::ReplayCache`] (a `jti` seen before is refused for the
//!   token's lifetime). Bearer tokens carry neither.
//! - `aud` is checked only when an audience is configured
//!   (`--jwt-audience`): the dispatcher's key is dedicated to this runner
//!   fleet and `sub` already binds a token to one runner, so an audience is
//!   an extra, opt-in binding.
//! - The bearer token is compared in constant time; no failure message
//!   contains the presented credential.

use std::fmt;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// The longest a JWT may live: `exp` at most this far after now (and after
/// `iat`).
pub const MAX_LIFETIME_SECS: i64 = 300;
/// Clock skew allowed on every time check, in seconds.
pub const LEEWAY_SECS: i64 = 30;
/// [`MAX_LIFETIME_SECS`] as a duration, for docs and messages.
pub const MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);
/// [`LEEWAY_SECS`] as a duration.
pub const LEEWAY: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest `jti` accepted, in bytes: it bounds what the replay cache
/// remembers per token.
pub const MAX_JTI_LEN: usize = 128;

/// What verifies a JWT: the dispatcher's public key and the claims it must
/// carry.
#[derive(Clone)]
pub struct JwtConfig {
    pub key: DecodingKey,
    /// The `sub` every token must carry.
    pub runner_urn: String,
    /// When set, `aud` must be (or contain) it.
    pub audience: Option<String>,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("runner_urn", &self.runner_urn)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The accepted credentials at one moment. At least one is set (checked
/// when the server starts); `token` is `None` too while the token file
/// cannot be read, which fails bearer tokens closed.
#[derive(Clone, Default)]
pub struct AuthConfig {
    pub token: Option<String>,
    pub jwt: Option<JwtConfig>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("jwt", &self.jwt)
            .finish()
    }
}

/// Who a request came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The holder of the mounted bearer token.
    Token,
    /// A JWT's verified subject (the runner URN), and what binds the token
    /// to one request.
    Jwt { subject: String, binding: Binding },
}

/// The claims that bind a JWT to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// `jti`: refused when seen before, until the token expires.
    pub jti: String,
    /// `body_sha256`: 64 lowercase hex digits.
    pub body_sha256: String,
    /// `exp`, seconds since the epoch: how long to remember the `jti`.
    pub exp: i64,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Token => f.write_str("bearer token"),
            Principal::Jwt { subject, .. } => write!(f, "jwt sub={subject}"),
        }
    }
}

/// Why a request is not authenticated. Messages never include the
/// credential; [`AuthFailure::reason`] is the metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing Authorization header: send `Authorization: Bearer <token or JWT>`")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("wrong bearer token")]
    WrongToken,
    #[error("bearer tokens are not accepted right now: the token file cannot be read")]
    TokenUnavailable,
    #[error("not a valid JWT: {0}")]
    BadJwt(String),
    #[error("JWT algorithm {0} is not accepted: only ES256")]
    Algorithm(String),
    #[error("JWT signature does not verify against the configured public key")]
    BadSignature,
    #[error("JWT has no `exp` claim: it is required")]
    MissingExpiry,
    #[error("JWT expired {0}s ago")]
    Expired(i64),
    #[error(
        "JWT lives too long: `exp` must be at most {MAX_LIFETIME_SECS}s after now and after `iat` ({0})"
    )]
    TooLong(String),
    #[error("JWT is not valid yet: {0}")]
    NotYetValid(String),
    #[error("JWT `sub` {got:?} is not this runner's URN")]
    WrongSubject { got: Option<String> },
    #[error("JWT `aud` does not include the configured audience")]
    WrongAudience,
    #[error("JWT claim `{0}` must be a number (seconds since the epoch)")]
    BadClaim(&'static str),
    #[error(
        "JWT has no `{0}` claim: every JWT must carry `jti` (an id unique to the request) and `body_sha256` (the lowercase hex SHA-256 of the request body)"
    )]
    MissingClaim(&'static str),
    #[error("JWT claim `{claim}` must be {expected}")]
    ClaimFormat {
        claim: &'static str,
        expected: &'static str,
    },
    #[error(
        "JWT claim `body_sha256` does not match the SHA-256 of the request body: sign a token for the exact bytes sent"
    )]
    BodyMismatch,
    #[error(
        "JWT claim `jti` was used before: a token is good for one request; sign a new one with its own `jti`"
    )]
    Replayed,
}

impl AuthFailure {
    /// The `reason` label of `runway_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::WrongToken => "wrong_token",
            AuthFailure::TokenUnavailable => "token_unavailable",
            AuthFailure::BadJwt(_) => "bad_jwt",
            AuthFailure::Algorithm(_) => "algorithm",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired(_) => "expired",
            AuthFailure::TooLong(_) => "lifetime",
            AuthFailure::BodyMismatch => "body_hash",
            AuthFailure::Replayed => "replay",
            AuthFailure::MissingExpiry
            | AuthFailure::MissingClaim(_)
            | AuthFailure::ClaimFormat { .. }
            | AuthFailure::NotYetValid(_)
            | AuthFailure::WrongSubject { .. }
            | AuthFailure::WrongAudience
            | AuthFailure::BadClaim(_) => "claims",
        }
    }
}

/// Decides whether the `Authorization` header value `header` is accepted by
/// `config` at `now`.
pub fn authenticate(
    header: Option<&str>,
    config: &AuthConfig,
    now: DateTime<Utc>,
) -> Result<Principal, AuthFailure> {
    let header = header.ok_or(AuthFailure::Missing)?;
    let credential = bearer(header)?;
    if let Some(token) = &config.token
        && constant_time_eq(credential.as_bytes(), token.as_bytes())
    {
        return Ok(Principal::Token);
    }
    let jwt_shaped = credential.split('.').count() == 3;
    match (&config.token, &config.jwt) {
        (_, Some(jwt)) if jwt_shaped => verify_jwt(credential, jwt, now),
        (Some(_), _) => Err(AuthFailure::WrongToken),
        (None, Some(_)) => Err(AuthFailure::BadJwt(
            "expected header.payload.signature".into(),
        )),
        (None, None) => Err(AuthFailure::TokenUnavailable),
    }
}

/// The credential of `Bearer <credential>` (the scheme is case-insensitive).
fn bearer(header: &str) -> Result<&str, AuthFailure> {
    let (scheme, rest) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthFailure::Malformed("expected `Bearer <credential>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed("the scheme must be Bearer"));
    }
    let credential = rest.trim();
    if credential.is_empty() {
        return Err(AuthFailure::Malformed("the credential is empty"));
    }
    Ok(credential)
}

/// Equality whose time depends only on the lengths, never on where the
/// first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..longest {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn verify_jwt(
    token: &str,
    config: &JwtConfig,
    now: DateTime<Utc>,
) -> Result<Principal, AuthFailure> {
    // The algorithm first: a token is only ever verified as ES256.
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        // `none` and unknown names fail to parse as an Algorithm.
        ErrorKind::Json(_) => algorithm_name(token).map_or_else(
            || AuthFailure::BadJwt(e.to_string()),
            AuthFailure::Algorithm,
        ),
        _ => AuthFailure::BadJwt(e.to_string()),
    })?;
    if header.alg != Algorithm::ES256 {
        return Err(AuthFailure::Algorithm(format!("{:?}", header.alg)));
    }
    // The library checks the signature only; every claim is checked below
    // against the `now` passed in.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(token, &config.key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthFailure::Algorithm(format!("{:?}", header.alg)),
            _ => AuthFailure::BadJwt(e.to_string()),
        })?
        .claims;
    check_claims(&claims, config, now.timestamp())?;
    let binding = binding(&claims)?;
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Principal::Jwt { subject, binding })
}

/// `jti` and `body_sha256`, checked for shape (on claims whose times
/// [`check_claims`] accepted, so `exp` is there).
fn binding(claims: &Value) -> Result<Binding, AuthFailure> {
    let exp = time_claim(claims, "exp")?.ok_or(AuthFailure::MissingExpiry)?;
    let jti = match claims.get("jti") {
        None | Some(Value::Null) => return Err(AuthFailure::MissingClaim("jti")),
        Some(Value::String(jti)) if !jti.is_empty() && jti.len() <= MAX_JTI_LEN => jti.clone(),
        Some(_) => {
            return Err(AuthFailure::ClaimFormat {
                claim: "jti",
                expected: "a non-empty string of at most 128 bytes",
            });
        }
    };
    let body_sha256 = match claims.get("body_sha256") {
        None | Some(Value::Null) => return Err(AuthFailure::MissingClaim("body_sha256")),
        Some(Value::String(hash))
            if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            hash.clone()
        }
        Some(_) => {
            return Err(AuthFailure::ClaimFormat {
                claim: "body_sha256",
                expected: "64 lowercase hex digits (the SHA-256 of the request body)",
            });
        }
    };
    Ok(Binding {
        jti,
        body_sha256,
        exp,
    })
}

/// Whether `body` is the one the principal's JWT was signed for (always,
/// for a bearer token).
pub fn check_body(principal: &Principal, body: &[u8]) -> Result<(), AuthFailure> {
    match principal {
        Principal::Token => Ok(()),
        Principal::Jwt { binding, .. } if binding.body_sha256 == sha256_hex(body) => Ok(()),
        Principal::Jwt { .. } => Err(AuthFailure::BodyMismatch),
    }
}

/// Lowercase hex SHA-256, the form of `body_sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// The header's `alg` as written, when it is a string (for the message
/// about an algorithm the library does not even know, like `none`).
fn algorithm_name(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_string)
}

/// The claim rules, on verified claims, at `now` (seconds since the epoch).
fn check_claims(claims: &Value, config: &JwtConfig, now: i64) -> Result<(), AuthFailure> {
    let exp = time_claim(claims, "exp")?.ok_or(AuthFailure::MissingExpiry)?;
    let iat = time_claim(claims, "iat")?;
    let nbf = time_claim(claims, "nbf")?;
    // The claims are any i64 the signer chose: saturate, never overflow.
    if exp.saturating_add(LEEWAY_SECS) < now {
        return Err(AuthFailure::Expired(now.saturating_sub(exp)));
    }
    if exp > now.saturating_add(MAX_LIFETIME_SECS + LEEWAY_SECS) {
        return Err(AuthFailure::TooLong(format!(
            "`exp` is {}s after now",
            exp.saturating_sub(now)
        )));
    }
    if let Some(iat) = iat {
        if exp.saturating_sub(iat) > MAX_LIFETIME_SECS {
            return Err(AuthFailure::TooLong(format!(
                "`exp - iat` is {}s",
                exp.saturating_sub(iat)
            )));
        }
        if iat > now.saturating_add(LEEWAY_SECS) {
            return Err(AuthFailure::NotYetValid(format!(
                "`iat` is {}s in the future",
                iat.saturating_sub(now)
            )));
        }
    }
    if let Some(nbf) = nbf
        && nbf > now.saturating_add(LEEWAY_SECS)
    {
        return Err(AuthFailure::NotYetValid(format!(
            "`nbf` is {}s in the future",
            nbf.saturating_sub(now)
        )));
    }
    let sub = claims.get("sub").and_then(Value::as_str);
    if sub != Some(config.runner_urn.as_str()) {
        return Err(AuthFailure::WrongSubject {
            got: sub.map(str::to_string),
        });
    }
    if let Some(audience) = &config.audience {
        let matches = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !matches {
            return Err(AuthFailure::WrongAudience);
        }
    }
    Ok(())
}

/// A NumericDate claim in whole seconds (fractions dropped); absent is
/// `None`, any other type an error.
fn time_claim(claims: &Value, name: &'static str) -> Result<Option<i64>, AuthFailure> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or(AuthFailure::BadClaim(name)),
        Some(_) => Err(AuthFailure::BadClaim(name)),
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;

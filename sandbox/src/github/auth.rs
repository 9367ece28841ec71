//! Credentials the fake hands out and checks: PATs, GitHub App JWTs
//! (RS256, verified with the app's registered public key), installation
//! tokens, registration tokens, the Actions service admin token (a real HS256
//! JWT whose `exp` clients read) and message queue tokens.
//!
//! Every issued token is remembered with its expiry as an `Instant`, so TTLs
//! of a few milliseconds work in tests and `expire_*` can end them on demand.
//! The admin JWT's `exp` claim is the expiry rounded up to the next second
//! (JWT times are whole seconds); the remembered `Instant` is what counts.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

use super::state::Scope;

/// GitHub's registration tokens live one hour.
pub const REGISTRATION_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// GitHub refuses App JWTs that expire more than 10 minutes ahead; one more
/// minute allows for clock skew.
const MAX_APP_JWT_LIFETIME_SECS: u64 = 11 * 60;
const ADMIN_ISSUER: &str = "runway-fake-github";

/// A GitHub App the fake knows: JWTs whose `iss` is `app_id` or `client_id`
/// and that verify with `public_key_pem` (PKCS#1 or SPKI PEM) may create
/// tokens for `installation_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeApp {
    pub app_id: u64,
    pub client_id: String,
    pub installation_id: u64,
    pub public_key_pem: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    #[error("the request has no Authorization header")]
    Missing,
    #[error("the Authorization header is not `{0} <token>`")]
    Malformed(&'static str),
    #[error("bad credentials")]
    Unknown,
    #[error("the token has expired")]
    Expired,
    #[error("the JWT is not valid: {0}")]
    InvalidJwt(String),
    #[error("no GitHub App has the issuer {0:?}")]
    UnknownIssuer(String),
    #[error("installation {0} does not belong to this GitHub App")]
    WrongInstallation(u64),
    #[error("the token belongs to another Actions service tenant")]
    WrongTenant,
}

/// The admin token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    pub iss: String,
    /// The githubConfigUrl path it was issued for.
    pub sub: String,
    /// The Actions service tenant.
    pub tid: u32,
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Deserialize)]
struct AppClaims {
    iss: serde_json::Value,
    exp: u64,
}

/// What a message queue token grants: one session of one scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGrant {
    pub scale_set_id: i64,
    pub session_id: String,
}

struct RegisteredApp {
    app: FakeApp,
    key: Option<DecodingKey>,
}

pub struct TokenStore {
    admin_secret: Vec<u8>,
    pats: HashSet<String>,
    apps: Vec<RegisteredApp>,
    installation_tokens: HashMap<String, Instant>,
    registration_tokens: HashMap<String, (Scope, Instant)>,
    admin_tokens: HashMap<String, Instant>,
    queue_tokens: HashMap<String, (QueueGrant, Instant)>,
}

pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

fn live(expires: Instant, now: Instant) -> Result<(), AuthError> {
    if now < expires {
        Ok(())
    } else {
        Err(AuthError::Expired)
    }
}

fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// The token of `Authorization: <scheme> <token>` for any of `schemes`
/// (compared without case).
fn token_of<'h>(
    headers: &'h HeaderMap,
    schemes: &[&str],
    expected: &'static str,
) -> Result<&'h str, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed(expected))?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthError::Malformed(expected))?;
    let token = token.trim();
    if schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) && !token.is_empty() {
        Ok(token)
    } else {
        Err(AuthError::Malformed(expected))
    }
}

/// `Authorization: Bearer <token>` (REST also takes GitHub's `token <token>`).
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    token_of(headers, &["Bearer", "token"], "Bearer")
}

/// `Authorization: RemoteAuth <registration token>`.
pub fn remote_auth(headers: &HeaderMap) -> Result<&str, AuthError> {
    token_of(headers, &["RemoteAuth"], "RemoteAuth")
}

impl TokenStore {
    pub fn new(admin_secret: Vec<u8>) -> Self {
        Self {
            admin_secret,
            pats: HashSet::new(),
            apps: Vec::new(),
            installation_tokens: HashMap::new(),
            registration_tokens: HashMap::new(),
            admin_tokens: HashMap::new(),
            queue_tokens: HashMap::new(),
        }
    }

    pub fn add_pat(&mut self, token: &str) {
        self.pats.insert(token.to_string());
    }

    /// Registers an app. A public key that does not parse is kept as no key:
    /// every JWT of that app then fails verification (401), which is what
    /// GitHub does with a key that does not match.
    pub fn add_app(&mut self, app: FakeApp) -> Result<(), AuthError> {
        let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes());
        let error = key
            .as_ref()
            .err()
            .map(|e| AuthError::InvalidJwt(format!("the app's public key: {e}")));
        self.apps.retain(|a| a.app.app_id != app.app_id);
        self.apps.push(RegisteredApp { app, key: key.ok() });
        error.map_or(Ok(()), Err)
    }

    /// Checks an App JWT presented to create a token for `installation_id`.
    pub fn verify_app_jwt(
        &self,
        jwt: &str,
        installation_id: u64,
        now_unix: u64,
    ) -> Result<(), AuthError> {
        let unverified = jsonwebtoken::dangerous::insecure_decode::<AppClaims>(jwt)
            .map_err(|e| AuthError::InvalidJwt(e.to_string()))?;
        let issuer = match &unverified.claims.iss {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let registered = self
            .apps
            .iter()
            .find(|a| a.app.app_id.to_string() == issuer || a.app.client_id == issuer)
            .ok_or_else(|| AuthError::UnknownIssuer(issuer.clone()))?;
        let key = registered
            .key
            .as_ref()
            .ok_or_else(|| AuthError::InvalidJwt("the app has no usable public key".into()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let verified =
            jsonwebtoken::decode::<AppClaims>(jwt, key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    _ => AuthError::InvalidJwt(e.to_string()),
                }
            })?;
        if verified.claims.exp > now_unix + MAX_APP_JWT_LIFETIME_SECS {
            return Err(AuthError::InvalidJwt(
                "'exp' is too far in the future".into(),
            ));
        }
        if registered.app.installation_id != installation_id {
            return Err(AuthError::WrongInstallation(installation_id));
        }
        Ok(())
    }

    pub fn issue_installation_token(&mut self, now: Instant, ttl: Duration) -> String {
        let token = format!("ghs_{}", random_string(36));
        self.installation_tokens
            .insert(token.clone(), expiry(now, ttl));
        token
    }

    /// A REST credential: a PAT, or an installation token that has not expired.
    pub fn check_rest_token(&self, token: &str, now: Instant) -> Result<(), AuthError> {
        if self.pats.contains(token) {
            return Ok(());
        }
        live(
            *self
                .installation_tokens
                .get(token)
                .ok_or(AuthError::Unknown)?,
            now,
        )
    }

    pub fn issue_registration_token(&mut self, scope: Scope, now: Instant) -> String {
        let token = random_string(29).to_ascii_uppercase();
        self.registration_tokens
            .insert(token.clone(), (scope, expiry(now, REGISTRATION_TOKEN_TTL)));
        token
    }

    pub fn registration_scope(&self, token: &str, now: Instant) -> Result<Scope, AuthError> {
        let (scope, expires) = self
            .registration_tokens
            .get(token)
            .ok_or(AuthError::Unknown)?;
        live(*expires, now)?;
        Ok(scope.clone())
    }

    /// A signed admin JWT for a tenant.
    pub fn issue_admin_token(
        &mut self,
        tenant: u32,
        scope: &Scope,
        now: Instant,
        now_unix: u64,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let jti = random_string(20);
        let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let claims = AdminClaims {
            iss: ADMIN_ISSUER.to_string(),
            sub: scope.path(),
            tid: tenant,
            jti: jti.clone(),
            iat: now_unix,
            exp: now_unix.saturating_add(ttl_secs.max(1)),
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.admin_secret),
        )
        .map_err(|e| AuthError::InvalidJwt(e.to_string()))?;
        self.admin_tokens.insert(jti, expiry(now, ttl));
        Ok(token)
    }

    pub fn verify_admin_token(&self, token: &str, now: Instant) -> Result<AdminClaims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<AdminClaims>(
            token,
            &DecodingKey::from_secret(&self.admin_secret),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::InvalidJwt(e.to_string()),
        })?;
        live(
            *self
                .admin_tokens
                .get(&data.claims.jti)
                .ok_or(AuthError::Unknown)?,
            now,
        )?;
        Ok(data.claims)
    }

    pub fn issue_queue_token(&mut self, grant: QueueGrant, now: Instant, ttl: Duration) -> String {
        let token = random_string(48);
        self.queue_tokens
            .insert(token.clone(), (grant, expiry(now, ttl)));
        token
    }

    pub fn queue_grant(&self, token: &str, now: Instant) -> Result<QueueGrant, AuthError> {
        let (grant, expires) = self.queue_tokens.get(token).ok_or(AuthError::Unknown)?;
        live(*expires, now)?;
        Ok(grant.clone())
    }

    pub fn expire_installation_tokens(&mut self, now: Instant) {
        self.installation_tokens.values_mut().for_each(|e| *e = now);
    }

    pub fn expire_admin_tokens(&mut self, now: Instant) {
        self.admin_tokens.values_mut().for_each(|e| *e = now);
    }

    pub fn expire_queue_tokens(&mut self, now: Instant) {
        self.queue_tokens.values_mut().for_each(|(_, e)| *e = now);
    }
}

/// A fixed RSA key pair for tests of GitHub App authentication (generated
/// once for this purpose; it protects nothing). Use it with
/// [`FakeApp::example`].
pub const EXAMPLE_APP_PRIVATE_KEY_PEM: &str = include_str!("testdata/example-app.private-key.pem");
pub const EXAMPLE_APP_PUBLIC_KEY_PEM: &str = include_str!("testdata/example-app.public-key.pem");

impl FakeApp {
    /// App 1001 (client id `Iv1.example`), installation 2002, whose private
    /// key is [`EXAMPLE_APP_PRIVATE_KEY_PEM`].
    pub fn example() -> FakeApp {
        FakeApp {
            app_id: 1001,
            client_id: "Iv1.example".to_string(),
            installation_id: 2002,
            public_key_pem: EXAMPLE_APP_PUBLIC_KEY_PEM.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[derive(Serialize)]
    struct Claims {
        iss: String,
        iat: u64,
        exp: u64,
    }

    fn unix_now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn app_jwt(iss: &str, iat: u64, exp: u64) -> String {
        let key = EncodingKey::from_rsa_pem(EXAMPLE_APP_PRIVATE_KEY_PEM.as_bytes())
            .expect("the example key parses");
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &Claims {
                iss: iss.into(),
                iat,
                exp,
            },
            &key,
        )
        .expect("signs")
    }

    fn store() -> TokenStore {
        let mut store = TokenStore::new(b"secret".to_vec());
        store
            .add_app(FakeApp::example())
            .expect("the example public key parses");
        store
    }

    #[test]
    fn app_jwts_are_checked_for_issuer_expiry_signature_and_installation() {
        let store = store();
        let now = unix_now();
        assert_eq!(
            store.verify_app_jwt(&app_jwt("1001", now - 60, now + 540), 2002, now),
            Ok(())
        );
        assert_eq!(
            store.verify_app_jwt(&app_jwt("Iv1.example", now - 60, now + 540), 2002, now),
            Ok(())
        );
        assert_eq!(
            store.verify_app_jwt(&app_jwt("999", now - 60, now + 540), 2002, now),
            Err(AuthError::UnknownIssuer("999".into()))
        );
        assert_eq!(
            store.verify_app_jwt(&app_jwt("1001", now - 700, now - 100), 2002, now),
            Err(AuthError::Expired)
        );
        assert_eq!(
            store.verify_app_jwt(&app_jwt("1001", now - 60, now + 540), 3003, now),
            Err(AuthError::WrongInstallation(3003))
        );
        assert!(matches!(
            store.verify_app_jwt(&app_jwt("1001", now, now + 3600), 2002, now),
            Err(AuthError::InvalidJwt(_))
        ));
        let mut tampered = app_jwt("1001", now - 60, now + 540);
        let last = tampered.pop().expect("non-empty");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            store.verify_app_jwt(&tampered, 2002, now),
            Err(AuthError::InvalidJwt(_))
        ));
        assert!(matches!(
            store.verify_app_jwt("not a jwt", 2002, now),
            Err(AuthError::InvalidJwt(_))
        ));
    }

    #[test]
    fn an_app_with_a_bad_key_is_kept_but_never_verifies() {
        let mut store = TokenStore::new(b"secret".to_vec());
        let bad = FakeApp {
            public_key_pem: "nonsense".into(),
            ..FakeApp::example()
        };
        assert!(store.add_app(bad).is_err());
        let now = unix_now();
        assert!(matches!(
            store.verify_app_jwt(&app_jwt("1001", now - 60, now + 540), 2002, now),
            Err(AuthError::InvalidJwt(_))
        ));
    }

    #[test]
    fn rest_tokens_are_pats_or_live_installation_tokens() {
        let mut store = store();
        let now = Instant::now();
        store.add_pat("ghp_test");
        assert_eq!(store.check_rest_token("ghp_test", now), Ok(()));
        assert_eq!(
            store.check_rest_token("ghp_other", now),
            Err(AuthError::Unknown)
        );
        let token = store.issue_installation_token(now, Duration::from_secs(10));
        assert!(token.starts_with("ghs_"));
        assert_eq!(store.check_rest_token(&token, now), Ok(()));
        assert_eq!(
            store.check_rest_token(&token, now + Duration::from_secs(10)),
            Err(AuthError::Expired)
        );
        let other = store.issue_installation_token(now, Duration::from_secs(10));
        store.expire_installation_tokens(now);
        assert_eq!(store.check_rest_token(&other, now), Err(AuthError::Expired));
        assert_eq!(
            store.check_rest_token("ghp_test", now),
            Ok(()),
            "PATs do not expire"
        );
    }

    #[test]
    fn admin_tokens_are_jwts_with_exp_and_expire_to_the_instant() {
        let mut store = store();
        let now = Instant::now();
        let unix = unix_now();
        let scope = Scope::Organization("my-org".into());
        let token = store
            .issue_admin_token(3, &scope, now, unix, Duration::from_millis(1500))
            .expect("signed");
        let unverified =
            jsonwebtoken::dangerous::insecure_decode::<AdminClaims>(&token).expect("a JWT");
        assert_eq!(
            unverified.claims.exp,
            unix + 2,
            "rounded up to whole seconds"
        );
        assert_eq!(
            (unverified.claims.tid, unverified.claims.sub.as_str()),
            (3, "my-org")
        );
        assert_eq!(store.verify_admin_token(&token, now).map(|c| c.tid), Ok(3));
        assert_eq!(
            store.verify_admin_token(&token, now + Duration::from_millis(1500)),
            Err(AuthError::Expired)
        );
        let fresh = store
            .issue_admin_token(3, &scope, now, unix, Duration::from_secs(60))
            .expect("signed");
        store.expire_admin_tokens(now);
        assert_eq!(
            store.verify_admin_token(&fresh, now),
            Err(AuthError::Expired)
        );
        let foreign = TokenStore::new(b"other".to_vec())
            .issue_admin_token(3, &scope, now, unix, Duration::from_secs(60))
            .expect("signed");
        assert!(matches!(
            store.verify_admin_token(&foreign, now),
            Err(AuthError::InvalidJwt(_))
        ));
    }

    #[test]
    fn registration_and_queue_tokens() {
        let mut store = store();
        let now = Instant::now();
        let scope = Scope::Repository {
            owner: "o".into(),
            repo: "r".into(),
        };
        let registration = store.issue_registration_token(scope.clone(), now);
        assert_eq!(store.registration_scope(&registration, now), Ok(scope));
        assert_eq!(
            store.registration_scope(&registration, now + REGISTRATION_TOKEN_TTL),
            Err(AuthError::Expired)
        );
        let grant = QueueGrant {
            scale_set_id: 4,
            session_id: "s".into(),
        };
        let queue = store.issue_queue_token(grant.clone(), now, Duration::from_millis(20));
        assert_eq!(store.queue_grant(&queue, now), Ok(grant));
        assert_eq!(
            store.queue_grant(&queue, now + Duration::from_millis(20)),
            Err(AuthError::Expired)
        );
        assert_eq!(store.queue_grant("nope", now), Err(AuthError::Unknown));
    }

    #[test]
    fn authorization_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), Err(AuthError::Missing));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Ok("abc"));
        assert_eq!(
            remote_auth(&headers),
            Err(AuthError::Malformed("RemoteAuth"))
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("token abc"));
        assert_eq!(bearer(&headers), Ok("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("RemoteAuth xyz"),
        );
        assert_eq!(remote_auth(&headers), Ok("xyz"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), Err(AuthError::Malformed("Bearer")));
    }
}

//! The fake's OIDC provider: an ES256 key pair made per fake, tokens minted
//! with it (what a projected ServiceAccount token would be), and the checks
//! STS makes on a web identity token, in STS's order and words: a JWT at all,
//! a registered issuer, a valid signature, the audience, the expiry.
//!
//! The clock is passed in (`now`, Unix seconds) so expiry is testable
//! without waiting.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::Value;

use super::fault::Fault;

#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("generating the fake OIDC provider's ES256 key: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("loading the fake OIDC provider's ES256 key: {0}")]
    Load(#[from] jsonwebtoken::errors::Error),
}

/// What STS takes from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub audience: String,
    pub issuer: String,
}

pub struct Issuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    public_key_pem: String,
    kid: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    pub fn generate() -> Result<Issuer, TokenKeyError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let public_key_pem = pair.public_key_pem();
        Ok(Issuer {
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?,
            decoding: DecodingKey::from_ec_pem(public_key_pem.as_bytes())?,
            public_key_pem,
            kid: format!("sandbox-{:08x}", rand::random::<u32>()),
        })
    }

    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// Signs `claims` as they are (no claim added or checked).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        // Serialising a JSON value with a valid key cannot fail.
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .unwrap_or_else(|e| panic!("signing a web identity token: {e}"))
    }

    /// STS's checks, against `issuer` and `audience` at time `now`.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<VerifiedToken, Fault> {
        let not_jwt = || {
            Fault::invalid_identity_token(
                "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)",
            )
        };
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .map_err(|_| not_jwt())?
            .claims;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if iss != issuer {
            return Err(Fault::invalid_identity_token(format!(
                "No OpenIDConnect provider found in your account for {iss}"
            )));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<Value>(token, &self.decoding, &validation).map_err(|_| {
            Fault::invalid_identity_token(
                "The ID Token's signature could not be verified with any key of the OpenID Connect provider",
            )
        })?;
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !audiences.contains(&audience) {
            return Err(Fault::invalid_identity_token("Incorrect token audience"));
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or_else(not_jwt)?;
        if now >= exp {
            return Err(Fault::expired_web_identity(now, exp));
        }
        Ok(VerifiedToken {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            audience: audience.to_owned(),
            issuer: issuer.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://oidc.example";
    const AUD: &str = "sts.amazonaws.com";

    fn claims(exp: i64) -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "system:serviceaccount:ns:sa", "exp": exp})
    }

    #[test]
    fn checks_issuer_signature_audience_and_expiry_in_order() {
        let issuer = Issuer::generate().unwrap();
        let ok = issuer
            .verify(&issuer.sign(&claims(100)), ISS, AUD, 99)
            .unwrap();
        assert_eq!(ok.subject, "system:serviceaccount:ns:sa");

        let err = |token: &str, now| issuer.verify(token, ISS, AUD, now).unwrap_err();
        let e = err("not-a-jwt", 0);
        assert_eq!(e.code, "InvalidIdentityToken");
        assert!(
            e.message
                .starts_with("The ID Token provided is not a valid JWT")
        );

        let mut bad_iss = claims(100);
        bad_iss["iss"] = json!("https://elsewhere");
        let e = err(&issuer.sign(&bad_iss), 0);
        assert_eq!(
            e.message,
            "No OpenIDConnect provider found in your account for https://elsewhere"
        );

        let other = Issuer::generate().unwrap();
        let e = err(&other.sign(&claims(100)), 0);
        assert_eq!(e.code, "InvalidIdentityToken");
        assert!(e.message.contains("signature"), "{}", e.message);

        let mut bad_aud = claims(100);
        bad_aud["aud"] = json!(["other"]);
        assert_eq!(
            err(&issuer.sign(&bad_aud), 0).message,
            "Incorrect token audience"
        );

        let e = err(&issuer.sign(&claims(100)), 100);
        assert_eq!(e.code, "ExpiredTokenException");
        assert_eq!(
            e.message,
            "Token expired: current date/time 100 must be before the expiration date/time100"
        );
    }
}

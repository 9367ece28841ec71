use base64::Engine as _;
use chrono::TimeZone as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const URN: &str = "urn:runway:runner:prod/rs-1";
const TOKEN: &str = "s3cret-token-value";
const NOW: i64 = 1_800_000_000;
const JTI: &str = "req-0001";
/// The SHA-256 of the body `{}`.
const BODY_HASH: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

struct Keys {
    signing: EncodingKey,
    other: EncodingKey,
    public_pem: String,
}

fn keys() -> &'static Keys {
    static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Keys {
            signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            other: EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
            public_pem: pair.public_key_pem(),
        }
    })
}

fn jwt_config(audience: Option<&str>) -> JwtConfig {
    JwtConfig {
        key: DecodingKey::from_ec_pem(keys().public_pem.as_bytes()).unwrap(),
        runner_urn: URN.into(),
        audience: audience.map(str::to_string),
    }
}

fn both() -> AuthConfig {
    AuthConfig {
        token: Some(TOKEN.into()),
        jwt: Some(jwt_config(None)),
    }
}

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(NOW, 0).unwrap()
}

fn es256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &keys().signing).unwrap()
}

fn bearer_of(token: &str) -> String {
    format!("Bearer {token}")
}

/// A valid claim set, with `changes` merged over it (null removes a claim).
fn claims(changes: serde_json::Value) -> serde_json::Value {
    let mut base = json!({
        "sub": URN, "iat": NOW - 10, "exp": NOW + 120, "jti": JTI, "body_sha256": BODY_HASH,
    });
    for (key, value) in changes.as_object().unwrap() {
        if value.is_null() {
            base.as_object_mut().unwrap().remove(key);
        } else {
            base[key] = value.clone();
        }
    }
    base
}

fn b64(value: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// (case, header, config, expected)
type Case = (
    &'static str,
    Option<String>,
    AuthConfig,
    Result<Principal, AuthFailure>,
);

#[test]
fn authenticate_table() {
    let jwt_until = |exp: i64| {
        Ok(Principal::Jwt {
            subject: URN.into(),
            binding: Binding {
                jti: JTI.into(),
                body_sha256: BODY_HASH.into(),
                exp,
            },
        })
    };
    let jwt_subject = || jwt_until(NOW + 120);
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(json!({})),
        // The classic confusion: the public key used as an HMAC secret.
        &EncodingKey::from_secret(keys().public_pem.as_bytes()),
    )
    .unwrap();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(json!({})),
        &keys().other,
    )
    .unwrap();
    let good = es256(claims(json!({})));
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let forged = b64(&claims(json!({"sub": "urn:runway:runner:other"})));
        format!("{}.{}.{}", parts[0], forged, parts[2])
    };

    let table: Vec<Case> = vec![
        ("no header", None, both(), Err(AuthFailure::Missing)),
        (
            "no scheme",
            Some(TOKEN.into()),
            both(),
            Err(AuthFailure::Malformed("expected `Bearer <credential>`")),
        ),
        (
            "basic scheme",
            Some(format!("Basic {TOKEN}")),
            both(),
            Err(AuthFailure::Malformed("the scheme must be Bearer")),
        ),
        (
            "empty credential",
            Some("Bearer  ".into()),
            both(),
            Err(AuthFailure::Malformed("expected `Bearer <credential>`")),
        ),
        (
            "right token",
            Some(bearer_of(TOKEN)),
            both(),
            Ok(Principal::Token),
        ),
        (
            "scheme is case-insensitive",
            Some(format!("bearer {TOKEN}")),
            both(),
            Ok(Principal::Token),
        ),
        (
            "wrong token",
            Some(bearer_of("s3cret-token-valuX")),
            both(),
            Err(AuthFailure::WrongToken),
        ),
        (
            "token prefix",
            Some(bearer_of("s3cret")),
            both(),
            Err(AuthFailure::WrongToken),
        ),
        (
            "token longer",
            Some(bearer_of(&format!("{TOKEN}x"))),
            both(),
            Err(AuthFailure::WrongToken),
        ),
        (
            "token file unreadable, no JWT key",
            Some(bearer_of(TOKEN)),
            AuthConfig::default(),
            Err(AuthFailure::TokenUnavailable),
        ),
        (
            "a token when only JWTs are accepted",
            Some(bearer_of(TOKEN)),
            AuthConfig {
                token: None,
                jwt: Some(jwt_config(None)),
            },
            Err(AuthFailure::BadJwt(
                "expected header.payload.signature".into(),
            )),
        ),
        (
            "a JWT when only tokens are accepted",
            Some(bearer_of(&good)),
            AuthConfig {
                token: Some(TOKEN.into()),
                jwt: None,
            },
            Err(AuthFailure::WrongToken),
        ),
        (
            "valid ES256 JWT",
            Some(bearer_of(&good)),
            both(),
            jwt_subject(),
        ),
        (
            "HS256 signed with the public key",
            Some(bearer_of(&hs256)),
            both(),
            Err(AuthFailure::Algorithm("HS256".into())),
        ),
        (
            "alg none",
            Some(bearer_of(&unsigned)),
            both(),
            Err(AuthFailure::Algorithm("none".into())),
        ),
        (
            "signed by another key",
            Some(bearer_of(&wrong_key)),
            both(),
            Err(AuthFailure::BadSignature),
        ),
        (
            "claims changed after signing",
            Some(bearer_of(&tampered)),
            both(),
            Err(AuthFailure::BadSignature),
        ),
        (
            "garbage with two dots",
            Some(bearer_of("a.b.c")),
            both(),
            Err(AuthFailure::BadJwt(String::new())),
        ),
        (
            "no exp",
            Some(bearer_of(&es256(claims(json!({"exp": null}))))),
            both(),
            Err(AuthFailure::MissingExpiry),
        ),
        (
            "exp not a number",
            Some(bearer_of(&es256(claims(json!({"exp": "soon"}))))),
            both(),
            Err(AuthFailure::BadClaim("exp")),
        ),
        (
            "expired beyond the leeway",
            Some(bearer_of(&es256(claims(
                json!({"iat": NOW - 200, "exp": NOW - 31}),
            )))),
            both(),
            Err(AuthFailure::Expired(31)),
        ),
        (
            "expired within the leeway",
            Some(bearer_of(&es256(claims(
                json!({"iat": NOW - 200, "exp": NOW - 30}),
            )))),
            both(),
            jwt_until(NOW - 30),
        ),
        (
            "exp exactly 5 min ahead",
            Some(bearer_of(&es256(claims(
                json!({"iat": null, "exp": NOW + 300}),
            )))),
            both(),
            jwt_until(NOW + 300),
        ),
        (
            "exp more than 5 min (+ leeway) ahead",
            Some(bearer_of(&es256(claims(
                json!({"iat": null, "exp": NOW + 331}),
            )))),
            both(),
            Err(AuthFailure::TooLong("`exp` is 331s after now".into())),
        ),
        (
            "exp - iat over 5 min",
            Some(bearer_of(&es256(claims(
                json!({"iat": NOW - 100, "exp": NOW + 201}),
            )))),
            both(),
            Err(AuthFailure::TooLong("`exp - iat` is 301s".into())),
        ),
        (
            "iat in the future",
            Some(bearer_of(&es256(claims(
                json!({"iat": NOW + 60, "exp": NOW + 120}),
            )))),
            both(),
            Err(AuthFailure::NotYetValid(
                "`iat` is 60s in the future".into(),
            )),
        ),
        (
            "nbf in the future",
            Some(bearer_of(&es256(claims(json!({"nbf": NOW + 45}))))),
            both(),
            Err(AuthFailure::NotYetValid(
                "`nbf` is 45s in the future".into(),
            )),
        ),
        (
            "wrong sub",
            Some(bearer_of(&es256(claims(
                json!({"sub": "urn:runway:runner:other"}),
            )))),
            both(),
            Err(AuthFailure::WrongSubject {
                got: Some("urn:runway:runner:other".into()),
            }),
        ),
        (
            "no sub",
            Some(bearer_of(&es256(claims(json!({"sub": null}))))),
            both(),
            Err(AuthFailure::WrongSubject { got: None }),
        ),
        (
            "aud ignored when none is configured",
            Some(bearer_of(&es256(claims(json!({"aud": "anything"}))))),
            both(),
            jwt_subject(),
        ),
        (
            "aud required when configured",
            Some(bearer_of(&good)),
            AuthConfig {
                token: None,
                jwt: Some(jwt_config(Some("runway-serve"))),
            },
            Err(AuthFailure::WrongAudience),
        ),
        (
            "aud list containing the configured one",
            Some(bearer_of(&es256(claims(
                json!({"aud": ["x", "runway-serve"]}),
            )))),
            AuthConfig {
                token: None,
                jwt: Some(jwt_config(Some("runway-serve"))),
            },
            jwt_subject(),
        ),
        (
            "no jti",
            Some(bearer_of(&es256(claims(json!({"jti": null}))))),
            both(),
            Err(AuthFailure::MissingClaim("jti")),
        ),
        (
            "jti not a string",
            Some(bearer_of(&es256(claims(json!({"jti": 7}))))),
            both(),
            Err(AuthFailure::ClaimFormat {
                claim: "jti",
                expected: "a non-empty string of at most 128 bytes",
            }),
        ),
        (
            "jti empty",
            Some(bearer_of(&es256(claims(json!({"jti": ""}))))),
            both(),
            Err(AuthFailure::ClaimFormat {
                claim: "jti",
                expected: "a non-empty string of at most 128 bytes",
            }),
        ),
        (
            "jti over 128 bytes",
            Some(bearer_of(&es256(claims(json!({"jti": "x".repeat(129)}))))),
            both(),
            Err(AuthFailure::ClaimFormat {
                claim: "jti",
                expected: "a non-empty string of at most 128 bytes",
            }),
        ),
        (
            "no body_sha256",
            Some(bearer_of(&es256(claims(json!({"body_sha256": null}))))),
            both(),
            Err(AuthFailure::MissingClaim("body_sha256")),
        ),
        (
            "body_sha256 in upper case",
            Some(bearer_of(&es256(claims(
                json!({"body_sha256": BODY_HASH.to_uppercase()}),
            )))),
            both(),
            Err(AuthFailure::ClaimFormat {
                claim: "body_sha256",
                expected: "64 lowercase hex digits (the SHA-256 of the request body)",
            }),
        ),
        (
            "body_sha256 too short",
            Some(bearer_of(&es256(claims(
                json!({"body_sha256": &BODY_HASH[..63]}),
            )))),
            both(),
            Err(AuthFailure::ClaimFormat {
                claim: "body_sha256",
                expected: "64 lowercase hex digits (the SHA-256 of the request body)",
            }),
        ),
        (
            "times are checked before the binding",
            Some(bearer_of(&es256(claims(
                json!({"jti": null, "iat": NOW - 200, "exp": NOW - 31}),
            )))),
            both(),
            Err(AuthFailure::Expired(31)),
        ),
    ];
    for (case, header, config, expected) in table {
        let got = authenticate(header.as_deref(), &config, now());
        match (&got, &expected) {
            // The library's wording of a parse error is not ours to pin.
            (Err(AuthFailure::BadJwt(_)), Err(AuthFailure::BadJwt(want))) if want.is_empty() => {}
            _ => assert_eq!(got, expected, "{case}"),
        }
    }
}

#[test]
fn a_jwt_is_good_for_the_body_it_names_only() {
    assert_eq!(sha256_hex(b"{}"), BODY_HASH);
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let principal = authenticate(Some(&bearer_of(&es256(claims(json!({}))))), &both(), now())
        .expect("a valid JWT");
    // (body, accepted)
    let table: [(&[u8], bool); 4] = [
        (b"{}", true),
        (b"{} ", false),
        (b"", false),
        (b"{\"actions\": []}", false),
    ];
    for (body, accepted) in table {
        let got = check_body(&principal, body);
        let want = if accepted {
            Ok(())
        } else {
            Err(AuthFailure::BodyMismatch)
        };
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(body));
    }
    // A bearer token is not bound to a body.
    assert_eq!(check_body(&Principal::Token, b"anything"), Ok(()));
    let message = AuthFailure::BodyMismatch.to_string();
    assert!(message.contains("`body_sha256`"), "{message}");
    assert!(AuthFailure::Replayed.to_string().contains("`jti`"));
}

#[test]
fn failure_messages_never_contain_the_credential() {
    let wrong = "Bearer not-the-token-1234";
    let failure = authenticate(Some(wrong), &both(), now()).unwrap_err();
    assert!(
        !failure.to_string().contains("not-the-token-1234"),
        "{failure}"
    );
    assert!(
        !format!("{:?}", both()).contains(TOKEN),
        "Debug redacts the token"
    );
}

#[test]
fn failure_reasons_are_metric_labels() {
    let table = [
        (AuthFailure::Missing, "missing"),
        (AuthFailure::WrongToken, "wrong_token"),
        (AuthFailure::BadSignature, "bad_signature"),
        (AuthFailure::Algorithm("HS256".into()), "algorithm"),
        (AuthFailure::Expired(5), "expired"),
        (AuthFailure::TooLong(String::new()), "lifetime"),
        (AuthFailure::WrongSubject { got: None }, "claims"),
        (AuthFailure::MissingClaim("jti"), "claims"),
        (AuthFailure::BodyMismatch, "body_hash"),
        (AuthFailure::Replayed, "replay"),
    ];
    for (failure, reason) in table {
        assert_eq!(failure.reason(), reason, "{failure}");
    }
}

#[test]
fn constant_time_eq_table() {
    let table: [(&[u8], &[u8], bool); 6] = [
        (b"", b"", true),
        (b"abc", b"abc", true),
        (b"abc", b"abd", false),
        (b"abc", b"ab", false),
        (b"ab", b"abc", false),
        (b"abc\0", b"abc", false),
    ];
    for (a, b, equal) in table {
        assert_eq!(constant_time_eq(a, b), equal, "{a:?} vs {b:?}");
    }
}

#[test]
fn extreme_time_claims_are_refused_not_overflowed() {
    let config = jwt_config(None);
    let check = |changes| check_claims(&claims(changes), &config, NOW);
    assert!(matches!(
        check(json!({"exp": i64::MAX})),
        Err(AuthFailure::TooLong(_))
    ));
    assert!(matches!(
        check(json!({"exp": i64::MIN})),
        Err(AuthFailure::Expired(i64::MAX))
    ));
    assert!(matches!(
        check(json!({"exp": 1.0e300})),
        Err(AuthFailure::TooLong(_))
    ));
    assert!(matches!(
        check(json!({"iat": i64::MIN})),
        Err(AuthFailure::TooLong(_))
    ));
    // `now` itself at the ends of the range (a clock gone wrong).
    assert!(check_claims(&claims(json!({})), &config, i64::MAX).is_err());
    assert!(check_claims(&claims(json!({})), &config, i64::MIN).is_err());
}

/// Any `Authorization` header, and any (verified) claim values at any
/// time: a principal or a typed failure, never a panic.
#[test]
fn any_header_or_claims_give_a_principal_or_a_failure() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let config = Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    };
    let header = prop_oneof![
        "[ -~]{0,80}",
        "(Bearer|bearer|Basic|) [A-Za-z0-9._=-]{0,60}",
        "Bearer [A-Za-z0-9_-]{0,20}\\.[A-Za-z0-9_-]{0,20}\\.[A-Za-z0-9_-]{0,20}",
        any::<String>(),
    ];
    let result = TestRunner::new(config.clone()).run(&proptest::option::of(header), |header| {
        let _ = authenticate(header.as_deref(), &both(), now());
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }

    let time = || {
        prop_oneof![
            Just(json!(null)),
            any::<i64>().prop_map(|n| json!(n)),
            (NOW - 1_000..NOW + 1_000).prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            any::<u64>().prop_map(|n| json!(n)),
            "[0-9a-z]{0,5}".prop_map(|s| json!(s)),
        ]
    };
    let claim_set = (
        time(),
        time(),
        time(),
        prop_oneof![Just(json!(URN)), Just(json!(null)), Just(json!(7))],
        prop_oneof![any::<i64>(), NOW - 1_000..NOW + 1_000],
    );
    let jwt = jwt_config(Some("aud"));
    let result = TestRunner::new(config).run(&claim_set, |(exp, iat, nbf, sub, at)| {
        let claims = json!({"exp": exp, "iat": iat, "nbf": nbf, "sub": sub, "aud": "aud"});
        let verdict = check_claims(&claims, &jwt, at);
        if verdict.is_ok() {
            // Accepted means a bounded lifetime around `at`.
            let exp = claims["exp"].as_i64();
            prop_assert!(exp.is_some_and(|e| e >= at.saturating_sub(LEEWAY_SECS)));
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

//! AWS Signature Version 4, as far as STS needs it: read the `Authorization`
//! header to learn who signed, and recompute the signature with that key's
//! secret to catch a client that signs wrongly.
//!
//! SHA-256 comes from rustls' ring provider (already in the tree for TLS);
//! HMAC is built on it per RFC 2104, so the sandbox needs no extra crate.

use http::HeaderMap;
use rustls::SupportedCipherSuite;

use super::fault::Fault;

const SCHEME: &str = "AWS4-HMAC-SHA256";

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    /// `None` when the request is unsigned; IncompleteSignature when the
    /// header is there but malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Authorization>, Fault> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value
            .to_str()
            .map_err(|_| Fault::incomplete_signature("Authorization header is not ASCII"))?;
        Authorization::parse(value).map(Some)
    }

    pub fn parse(header: &str) -> Result<Authorization, Fault> {
        let incomplete = |what: &str| {
            Fault::incomplete_signature(format!(
                "Authorization header requires '{what}' parameter. Authorization={header}"
            ))
        };
        let rest = header.strip_prefix(SCHEME).ok_or_else(|| {
            Fault::incomplete_signature(format!("Unsupported AWS 'algorithm': {header}"))
        })?;
        let mut credential = None;
        let mut signed_headers = None;
        let mut signature = None;
        for part in rest.split(',') {
            let Some((name, value)) = part.trim().split_once('=') else {
                continue;
            };
            match name {
                "Credential" => credential = Some(value),
                "SignedHeaders" => signed_headers = Some(value),
                "Signature" => signature = Some(value),
                _ => {}
            }
        }
        let credential = credential.ok_or_else(|| incomplete("Credential"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
            return Err(Fault::incomplete_signature(format!(
                "Credential should be scoped to a valid region and service: {credential}"
            )));
        };
        Ok(Authorization {
            access_key_id: access_key_id.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers: signed_headers
                .ok_or_else(|| incomplete("SignedHeaders"))?
                .split(';')
                .map(str::to_owned)
                .collect(),
            signature: signature.ok_or_else(|| incomplete("Signature"))?.to_owned(),
        })
    }

    /// Recomputes the signature of this request with `secret`.
    pub fn verify(
        &self,
        secret: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> bool {
        let Some(amz_date) = headers.get("x-amz-date").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let canonical = canonical_request(method, path, query, headers, &self.signed_headers, body);
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        );
        let string_to_sign = format!(
            "{SCHEME}\n{amz_date}\n{scope}\n{}",
            hex(&sha256(canonical.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), self.date.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        hex(&hmac(&key, string_to_sign.as_bytes())) == self.signature
    }
}

fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    signed: &[String],
    body: &[u8],
) -> String {
    let mut pairs: Vec<(String, String)> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let canonical_query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| hex(&sha256(body)));
    let path = if path.is_empty() { "/" } else { path };
    format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        signed.join(";")
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn uri_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sha256(data: &[u8]) -> Vec<u8> {
    let SupportedCipherSuite::Tls13(suite) =
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
    else {
        unreachable!("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite")
    };
    suite.common.hash_provider.hash(data).as_ref().to_vec()
}

/// HMAC-SHA256 (RFC 2104, block size 64).
fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    inner.extend_from_slice(message);
    let mut outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// AWS's published example (IAM ListUsers, "get-vanilla"-style GET
    /// from the SigV4 documentation).
    #[test]
    fn verifies_awss_documented_example_signature() {
        let header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
            SignedHeaders=content-type;host;x-amz-date, \
            Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        let auth = Authorization::parse(header).unwrap();
        assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
        assert_eq!(auth.service, "iam");
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let query = Some("Action=ListUsers&Version=2010-05-08");
        assert!(auth.verify(secret, "GET", "/", query, &headers, b""));
        assert!(!auth.verify("wrong", "GET", "/", query, &headers, b""));
        assert!(!auth.verify(secret, "GET", "/", Some("Action=ListRoles"), &headers, b""));
    }

    #[test]
    fn malformed_headers_are_incomplete_signatures() {
        for bad in [
            "Basic abc",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/sts, SignedHeaders=host, Signature=00",
        ] {
            assert_eq!(
                Authorization::parse(bad).unwrap_err().code,
                "IncompleteSignature",
                "{bad}"
            );
        }
    }
}

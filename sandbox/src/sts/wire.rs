//! STS's wire format: the AWS Query protocol in (form-encoded parameters,
//! lists as `Tags.member.N.Key`), XML out, shaped as STS answers (API
//! reference, version 2011-06-15) so the real SDKs parse it.
//!
//! Parsing only checks what the protocol itself requires (action, numbers,
//! required members); every other rule lives in `rules`.

use std::collections::BTreeMap;

use super::fault::Fault;

pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The form parameters of one request, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Query string and form body together (a body parameter wins).
    pub fn parse(query: Option<&str>, body: &[u8]) -> Params {
        let mut map = BTreeMap::new();
        if let Some(query) = query {
            map.extend(url::form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        map.extend(url::form_urlencoded::parse(body).into_owned());
        Params(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn required(&self, name: &str, member: &str) -> Result<String, Fault> {
        self.get(name).map(str::to_owned).ok_or_else(|| {
            Fault::validation(&[format!(
                "Value null at '{member}' failed to satisfy constraint: Member must not be null"
            )])
        })
    }

    /// `DurationSeconds`: an integer; one outside u32 is reported with the
    /// bound it breaks (900..43200), as AWS would, not wrapped or clamped.
    fn duration(&self, name: &str, member: &str) -> Result<Option<u32>, Fault> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let violation = |constraint: &str| {
            Fault::validation(&[format!(
                "Value '{raw}' at '{member}' failed to satisfy constraint: {constraint}"
            )])
        };
        let n: i64 = raw
            .parse()
            .map_err(|_| violation("Member must be a number"))?;
        u32::try_from(n).map(Some).map_err(|_| {
            violation(if n < 0 {
                "Member must have value greater than or equal to 900"
            } else {
                "Member must have value less than or equal to 43200"
            })
        })
    }

    /// `Prefix.member.1`, `Prefix.member.2`, ... up to the first gap.
    fn list(&self, prefix: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.get(&format!("{prefix}.member.{i}")).map(str::to_owned))
            .collect()
    }

    fn tags(&self) -> Result<Vec<(String, String)>, Fault> {
        let mut tags = Vec::new();
        for i in 1.. {
            let key = self.get(&format!("Tags.member.{i}.Key"));
            let value = self.get(&format!("Tags.member.{i}.Value"));
            match (key, value) {
                (None, None) => break,
                (Some(k), Some(v)) => tags.push((k.to_owned(), v.to_owned())),
                (None, _) => return Err(null_member(&format!("tags.{i}.member.key"))),
                (_, None) => return Err(null_member(&format!("tags.{i}.member.value"))),
            }
        }
        Ok(tags)
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.0.keys().any(|k| k.starts_with(prefix))
    }
}

fn null_member(member: &str) -> Fault {
    Fault::validation(&[format!(
        "Value null at '{member}' failed to satisfy constraint: Member must not be null"
    )])
}

/// AssumeRole's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssumeRoleParams {
    pub role_arn: String,
    pub role_session_name: String,
    pub duration_seconds: Option<u32>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

/// AssumeRoleWithWebIdentity's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebIdentityParams {
    pub role_arn: String,
    pub role_session_name: String,
    pub web_identity_token: String,
    pub duration_seconds: Option<u32>,
    pub policy: Option<String>,
    pub policy_arns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    AssumeRole(AssumeRoleParams),
    AssumeRoleWithWebIdentity(WebIdentityParams),
    GetCallerIdentity,
}

impl Request {
    pub fn parse(params: &Params) -> Result<Request, Fault> {
        let action = params.get("Action").ok_or_else(Fault::missing_action)?;
        match action {
            "AssumeRole" => Ok(Request::AssumeRole(AssumeRoleParams {
                role_arn: params.required("RoleArn", "roleArn")?,
                role_session_name: params.required("RoleSessionName", "roleSessionName")?,
                duration_seconds: params.duration("DurationSeconds", "durationSeconds")?,
                tags: params.tags()?,
                transitive_tag_keys: params.list("TransitiveTagKeys"),
                source_identity: params.get("SourceIdentity").map(str::to_owned),
                external_id: params.get("ExternalId").map(str::to_owned),
                policy: params.get("Policy").map(str::to_owned),
                policy_arns: policy_arns(params),
            })),
            "AssumeRoleWithWebIdentity" => {
                // Not in this operation's API at all; AWS would ignore them,
                // the fake refuses them so a client that sends them is caught.
                for foreign in [
                    "Tags.",
                    "TransitiveTagKeys.",
                    "SourceIdentity",
                    "ExternalId",
                ] {
                    if params.has_prefix(foreign) {
                        return Err(Fault::validation_message(format!(
                            "AssumeRoleWithWebIdentity does not take {}: session tags come from the token's claims",
                            foreign.trim_end_matches('.')
                        )));
                    }
                }
                Ok(Request::AssumeRoleWithWebIdentity(WebIdentityParams {
                    role_arn: params.required("RoleArn", "roleArn")?,
                    role_session_name: params.required("RoleSessionName", "roleSessionName")?,
                    web_identity_token: params.required("WebIdentityToken", "webIdentityToken")?,
                    duration_seconds: params.duration("DurationSeconds", "durationSeconds")?,
                    policy: params.get("Policy").map(str::to_owned),
                    policy_arns: policy_arns(params),
                }))
            }
            "GetCallerIdentity" => Ok(Request::GetCallerIdentity),
            other => Err(Fault::invalid_action(other)),
        }
    }
}

fn policy_arns(params: &Params) -> Vec<String> {
    (1..)
        .map_while(|i| {
            params
                .get(&format!("PolicyArns.member.{i}.arn"))
                .map(str::to_owned)
        })
        .collect()
}

/// What AssumeRole and AssumeRoleWithWebIdentity return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsResult {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// `2026-11-21T20:06:46Z`.
    pub expiration: String,
    pub assumed_role_id: String,
    pub arn: String,
    pub packed_policy_size: Option<u32>,
    pub source_identity: Option<String>,
}

impl CredentialsResult {
    /// `SessionTokenSize`: the session token's length in bytes.
    fn session_token_size(&self) -> usize {
        self.session_token.len()
    }
}

/// The web identity part of AssumeRoleWithWebIdentity's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebIdentityExtra {
    pub subject: String,
    pub audience: String,
    pub provider: String,
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn element(name: &str, value: &str) -> String {
    format!("<{name}>{}</{name}>", escape(value))
}

fn credentials_body(result: &CredentialsResult) -> String {
    let mut body = String::new();
    body.push_str("<Credentials>");
    body.push_str(&element("AccessKeyId", &result.access_key_id));
    body.push_str(&element("SecretAccessKey", &result.secret_access_key));
    body.push_str(&element("SessionToken", &result.session_token));
    body.push_str(&element("Expiration", &result.expiration));
    body.push_str("</Credentials><AssumedRoleUser>");
    body.push_str(&element("AssumedRoleId", &result.assumed_role_id));
    body.push_str(&element("Arn", &result.arn));
    body.push_str("</AssumedRoleUser>");
    if let Some(size) = result.packed_policy_size {
        body.push_str(&element("PackedPolicySize", &size.to_string()));
    }
    if let Some(source) = &result.source_identity {
        body.push_str(&element("SourceIdentity", source));
    }
    // STS's newer fields (SDK models from 2026): the fake reports the packed
    // percentage as the token's utilization, since its tokens carry no tags.
    if let Some(size) = result.packed_policy_size {
        body.push_str(&element("SessionTokenUtilization", &size.to_string()));
    }
    body.push_str(&element(
        "SessionTokenSize",
        &result.session_token_size().to_string(),
    ));
    body
}

fn envelope(action: &str, result: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{XMLNS}\">\n  <{action}Result>{result}</{action}Result>\n  \
         <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata>\n</{action}Response>\n",
        escape(request_id)
    )
}

pub fn assume_role_response(result: &CredentialsResult, request_id: &str) -> String {
    envelope("AssumeRole", &credentials_body(result), request_id)
}

pub fn web_identity_response(
    result: &CredentialsResult,
    extra: &WebIdentityExtra,
    request_id: &str,
) -> String {
    let mut body = element("SubjectFromWebIdentityToken", &extra.subject);
    body.push_str(&element("Audience", &extra.audience));
    body.push_str(&credentials_body(result));
    body.push_str(&element("Provider", &extra.provider));
    envelope("AssumeRoleWithWebIdentity", &body, request_id)
}

pub fn caller_identity_response(
    user_id: &str,
    account: &str,
    arn: &str,
    request_id: &str,
) -> String {
    let body = format!(
        "{}{}{}",
        element("UserId", user_id),
        element("Account", account),
        element("Arn", arn)
    );
    envelope("GetCallerIdentity", &body, request_id)
}

pub fn error_response(fault: &Fault, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{}</Type>\n    <Code>{}</Code>\n    \
         <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        fault.kind(),
        fault.code,
        escape(&fault.message),
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_tags_from_form_body() {
        let body =
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2FA\
&RoleSessionName=s1&Tags.member.1.Key=Repo&Tags.member.1.Value=org%2Frepo\
&Tags.member.2.Key=Empty&Tags.member.2.Value=&TransitiveTagKeys.member.1=Repo&DurationSeconds=900";
        let Request::AssumeRole(p) = Request::parse(&Params::parse(None, body)).unwrap() else {
            panic!("not AssumeRole")
        };
        assert_eq!(p.role_arn, "arn:aws:iam::1:role/A");
        assert_eq!(
            p.tags,
            vec![
                ("Repo".into(), "org/repo".into()),
                ("Empty".into(), String::new())
            ]
        );
        assert_eq!(p.transitive_tag_keys, vec!["Repo".to_string()]);
        assert_eq!(p.duration_seconds, Some(900));
    }

    #[test]
    fn get_query_works_and_missing_members_are_null_errors() {
        let params = Params::parse(Some("Action=GetCallerIdentity&Version=2011-06-15"), b"");
        assert_eq!(Request::parse(&params).unwrap(), Request::GetCallerIdentity);
        let err = Request::parse(&Params::parse(Some("Action=AssumeRole"), b"")).unwrap_err();
        assert_eq!(err.code, "ValidationError");
        assert_eq!(
            err.message,
            "1 validation error detected: Value null at 'roleArn' failed to satisfy constraint: Member must not be null"
        );
        let err = Request::parse(&Params::parse(
            Some("Action=AssumeRole&RoleArn=a&RoleSessionName=b&DurationSeconds=-1"),
            b"",
        ))
        .unwrap_err();
        assert_eq!(
            err.message,
            "1 validation error detected: Value '-1' at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900"
        );
        let err = Request::parse(&Params::parse(Some("Action=Nope"), b"")).unwrap_err();
        assert_eq!(err.code, "InvalidAction");
        let err = Request::parse(&Params::parse(
            Some("Action=AssumeRoleWithWebIdentity&RoleArn=a&RoleSessionName=b&WebIdentityToken=c&Tags.member.1.Key=k"),
            b"",
        ))
        .unwrap_err();
        assert_eq!(err.code, "ValidationError");
    }

    #[test]
    fn error_xml_is_escaped_and_typed() {
        let xml = error_response(&Fault::invalid_identity_token("a <b> & 'c'"), "rid");
        assert!(xml.contains("<Type>Sender</Type>"));
        assert!(xml.contains("<Code>InvalidIdentityToken</Code>"));
        assert!(xml.contains("<Message>a &lt;b&gt; &amp; &apos;c&apos;</Message>"));
        assert!(xml.contains("<RequestId>rid</RequestId>"));
        let xml = error_response(&Fault::internal_failure(), "rid");
        assert!(xml.contains("<Type>Receiver</Type>"));
    }
}

//! Every STS decision, as pure functions of the account configuration, the
//! caller and the request: field validation, trust, `sts:TagSession` and
//! `sts:SetSourceIdentity`, transitive tags, the role-chaining hour, and the
//! packed size. Nothing here does I/O or reads a clock.
//!
//! Order of checks, as AWS does it: shape of each field (ValidationError,
//! every violation listed), then trust (AccessDenied), then the trust
//! policy's extra actions, then the semantics of tags, duration and size.
//!
//! Packed size. AWS compresses session tags and the session policy into a
//! fixed-size blob and reports the share used; its algorithm is not public.
//! The fake uses a deterministic estimate instead:
//! `Σ over the new session's tags (inherited transitive + own) of
//! (key bytes + value bytes + 2)` plus `ceil(bytes / 2)` of the inline
//! policy and of each policy ARN (text compresses about 2:1), against [`StsConfig::packed_budget`] (2048 by
//! default). The percentage is `ceil(estimate * 100 / budget)`; above 100 the
//! request fails. So a dozen typical GitHub tags use ~25%, six full-length
//! tags (128 + 256) are over, and so is a 2048-character policy with a
//! handful of long tags.

use super::config::{RoleConfig, StsConfig, TRUST_ANYONE, TRUST_WEB_IDENTITY};
use super::fault::Fault;
use super::wire::{AssumeRoleParams, WebIdentityParams};

pub const MAX_TAGS: usize = 50;
pub const CHAIN_LIMIT_SECONDS: u32 = 3600;
const MIN_DURATION: u32 = 900;
const MAX_DURATION: u32 = 43200;
const DEFAULT_DURATION: u32 = 3600;
const TAG_OVERHEAD: usize = 2;

pub const SESSION_NAME_PATTERN: &str = r"[\w+=,.@-]*";
pub const EXTERNAL_ID_PATTERN: &str = r"[\w+=,.@:/-]*";
pub const TAG_KEY_PATTERN: &str = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+";
pub const TAG_VALUE_PATTERN: &str = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*";

pub const CHAIN_LIMIT_MESSAGE: &str = "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.";
pub const ROLE_MAX_MESSAGE: &str =
    "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.";
pub const DUPLICATE_TAGS_MESSAGE: &str =
    "Duplicate tag keys found. Please note that Tag keys are case insensitive.";

/// Who signed an AssumeRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The ARN AWS names in AccessDenied: `arn:aws:sts::A:assumed-role/R/S`
    /// for a session, the principal ARN for a static key.
    pub arn: String,
    /// What a trust policy names: the role ARN for a session, the principal
    /// ARN for a static key.
    pub principal: String,
    /// The caller is a role session, so this AssumeRole is role chaining.
    pub is_role_session: bool,
    /// Transitive tags the caller's session carries.
    pub transitive_tags: Vec<(String, String)>,
    pub source_identity: Option<String>,
}

/// What a successful assume decides about the new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role_arn: String,
    pub role_name: String,
    pub session_name: String,
    pub duration_seconds: u32,
    /// Every tag of the session: inherited transitive ones, then its own.
    pub tags: Vec<(String, String)>,
    /// The tags later hops inherit.
    pub transitive_tags: Vec<(String, String)>,
    pub source_identity: Option<String>,
    /// Role chaining: the session was assumed with a role session.
    pub chained: bool,
    /// `PackedPolicySize`, present when tags or a policy were involved.
    pub packed_policy_size: Option<u32>,
}

/// `arn:aws:iam::<account>:role/<path/>name` -> (account, name).
pub fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let path_and_name = resource.strip_prefix("role/")?;
    let name = path_and_name.rsplit('/').next()?;
    (!account.is_empty() && !name.is_empty()).then_some((account, name))
}

/// `arn:aws:sts::A:assumed-role/R/S` -> `arn:aws:iam::A:role/R`.
pub fn role_of_assumed_role_arn(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:aws:sts::")?;
    let (account, resource) = rest.split_once(':')?;
    let role_and_session = resource.strip_prefix("assumed-role/")?;
    let (role, _session) = role_and_session.rsplit_once('/')?;
    Some(format!("arn:aws:iam::{account}:role/{role}"))
}

fn is_word(c: char) -> bool {
    // Java's `\w` (AWS validates with Java regexes): ASCII only.
    c.is_ascii_alphanumeric() || c == '_'
}

fn session_name_char(c: char) -> bool {
    is_word(c) || "+=,.@-".contains(c)
}

fn external_id_char(c: char) -> bool {
    is_word(c) || "+=,.@:/-".contains(c)
}

fn is_unicode_separator(c: char) -> bool {
    // \p{Z}: space separators plus the line and paragraph separators.
    matches!(
        c,
        ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

pub fn tag_char(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || is_unicode_separator(c) || "_.:/=+-@".contains(c)
}

/// Length and pattern violations of one string field, in AWS's words.
fn check_field(
    out: &mut Vec<String>,
    member: &str,
    value: &str,
    (min, max): (usize, usize),
    allowed: fn(char) -> bool,
    pattern: &str,
) {
    let len = value.chars().count();
    let shown = value.replace('\'', "\\'");
    if len < min {
        out.push(violation(
            &shown,
            member,
            &format!("have length greater than or equal to {min}"),
        ));
    }
    if len > max {
        out.push(violation(
            &shown,
            member,
            &format!("have length less than or equal to {max}"),
        ));
    }
    if !value.chars().all(allowed) {
        out.push(violation(
            &shown,
            member,
            &format!("satisfy regular expression pattern: {pattern}"),
        ));
    }
}

/// One violation as AWS words it: `Member must <constraint>`.
fn violation(shown: &str, member: &str, constraint: &str) -> String {
    format!("Value '{shown}' at '{member}' failed to satisfy constraint: Member must {constraint}")
}

fn check_duration(out: &mut Vec<String>, duration: Option<u32>) {
    let Some(d) = duration else { return };
    let shown = d.to_string();
    if d < MIN_DURATION {
        out.push(violation(
            &shown,
            "durationSeconds",
            &format!("have value greater than or equal to {MIN_DURATION}"),
        ));
    }
    if d > MAX_DURATION {
        out.push(violation(
            &shown,
            "durationSeconds",
            &format!("have value less than or equal to {MAX_DURATION}"),
        ));
    }
}

fn check_policies(out: &mut Vec<String>, policy: Option<&str>, policy_arns: &[String]) {
    if let Some(policy) = policy {
        let len = policy.chars().count();
        if len == 0 || len > 2048 {
            let bound = if len == 0 {
                "greater than or equal to 1"
            } else {
                "less than or equal to 2048"
            };
            let shown = format!("{}...", policy.chars().take(40).collect::<String>());
            out.push(violation(&shown, "policy", &format!("have length {bound}")));
        }
    }
    if policy_arns.len() > 10 {
        out.push(violation(
            &format!("{policy_arns:?}"),
            "policyArns",
            "have length less than or equal to 10",
        ));
    }
}

/// The two fields both AssumeRole calls lead with, checked in STS's order.
fn check_role_and_session(v: &mut Vec<String>, role_arn: &str, role_session_name: &str) {
    check_field(v, "roleArn", role_arn, (20, 2048), |_| true, "");
    check_field(
        v,
        "roleSessionName",
        role_session_name,
        (2, 64),
        session_name_char,
        SESSION_NAME_PATTERN,
    );
}

/// One ValidationError naming every violation, or none.
fn validation_result(violations: &[String]) -> Result<(), Fault> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Fault::validation(violations))
    }
}

/// The ValidationError for AssumeRole's fields, if any field is malformed.
pub fn validate_assume_role(p: &AssumeRoleParams) -> Result<(), Fault> {
    let mut v = Vec::new();
    check_role_and_session(&mut v, &p.role_arn, &p.role_session_name);
    check_duration(&mut v, p.duration_seconds);
    if p.tags.len() > MAX_TAGS {
        v.push(violation(
            &format!("[{} tags]", p.tags.len()),
            "tags",
            &format!("have length less than or equal to {MAX_TAGS}"),
        ));
    }
    for (i, (key, value)) in p.tags.iter().enumerate() {
        let n = i + 1;
        check_field(
            &mut v,
            &format!("tags.{n}.member.key"),
            key,
            (1, 128),
            tag_char,
            TAG_KEY_PATTERN,
        );
        check_field(
            &mut v,
            &format!("tags.{n}.member.value"),
            value,
            (0, 256),
            tag_char,
            TAG_VALUE_PATTERN,
        );
    }
    if p.transitive_tag_keys.len() > MAX_TAGS {
        v.push(violation(
            &format!("[{} keys]", p.transitive_tag_keys.len()),
            "transitiveTagKeys",
            &format!("have length less than or equal to {MAX_TAGS}"),
        ));
    }
    for (i, key) in p.transitive_tag_keys.iter().enumerate() {
        let member = format!("transitiveTagKeys.{}.member", i + 1);
        check_field(&mut v, &member, key, (1, 128), tag_char, TAG_KEY_PATTERN);
    }
    if let Some(source) = &p.source_identity {
        check_field(
            &mut v,
            "sourceIdentity",
            source,
            (2, 64),
            session_name_char,
            SESSION_NAME_PATTERN,
        );
    }
    if let Some(external) = &p.external_id {
        check_field(
            &mut v,
            "externalId",
            external,
            (2, 1224),
            external_id_char,
            EXTERNAL_ID_PATTERN,
        );
    }
    check_policies(&mut v, p.policy.as_deref(), &p.policy_arns);
    validation_result(&v)
}

/// The ValidationError for AssumeRoleWithWebIdentity's fields, if any.
pub fn validate_web_identity(p: &WebIdentityParams) -> Result<(), Fault> {
    let mut v = Vec::new();
    check_role_and_session(&mut v, &p.role_arn, &p.role_session_name);
    // The token is not echoed back: it is a credential.
    let token_len = p.web_identity_token.chars().count();
    if !(4..=20000).contains(&token_len) {
        v.push(format!(
            "Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000 (was {token_len})"
        ));
    }
    check_duration(&mut v, p.duration_seconds);
    check_policies(&mut v, p.policy.as_deref(), &p.policy_arns);
    validation_result(&v)
}

/// Does `role` trust this caller? `principal` is a role ARN or principal ARN.
pub fn trusts(role: &RoleConfig, principal: &str) -> bool {
    role.trusted
        .iter()
        .any(|t| t == TRUST_ANYONE || (t != TRUST_WEB_IDENTITY && t == principal))
}

pub fn trusts_web_identity(role: &RoleConfig) -> bool {
    role.trusted
        .iter()
        .any(|t| t == TRUST_ANYONE || t == TRUST_WEB_IDENTITY)
}

/// The estimated packed bytes of a session's tags and policy (module docs).
pub fn packed_size(
    tags: &[(String, String)],
    policy: Option<&str>,
    policy_arns: &[String],
) -> usize {
    let tags: usize = tags
        .iter()
        .map(|(k, v)| k.len() + v.len() + TAG_OVERHEAD)
        .sum();
    let policies: usize = policy
        .into_iter()
        .chain(policy_arns.iter().map(String::as_str))
        .map(|p| p.len().div_ceil(2))
        .sum();
    tags + policies
}

pub fn packed_percent(size: usize, budget: usize) -> u32 {
    let budget = budget.max(1);
    u32::try_from((size * 100).div_ceil(budget)).unwrap_or(u32::MAX)
}

fn same_key(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// `Some(percent)` when tags or a policy are involved; PackedPolicyTooLarge over 100.
fn check_packed(
    config: &StsConfig,
    tags: &[(String, String)],
    policy: Option<&str>,
    policy_arns: &[String],
) -> Result<Option<u32>, Fault> {
    if tags.is_empty() && policy.is_none() && policy_arns.is_empty() {
        return Ok(None);
    }
    let percent = packed_percent(packed_size(tags, policy, policy_arns), config.packed_budget);
    if percent > 100 {
        let what = if tags.is_empty() {
            "session policies"
        } else {
            "session tags"
        };
        return Err(Fault::packed_too_large(percent, what));
    }
    Ok(Some(percent))
}

/// Decides an AssumeRole signed by `caller`.
pub fn decide_assume_role(
    config: &StsConfig,
    caller: &Caller,
    p: &AssumeRoleParams,
) -> Result<Grant, Fault> {
    validate_assume_role(p)?;
    let role = parse_role_arn(&p.role_arn)
        .filter(|(account, _)| *account == config.account_id)
        .and_then(|(_, name)| config.role(name))
        .filter(|role| trusts(role, &caller.principal))
        // AWS does not say whether the role exists: a missing role and an
        // untrusting one get the same AccessDenied.
        .ok_or_else(|| Fault::not_authorized(&caller.arn, "sts:AssumeRole", &p.role_arn))?;

    let tagging = !p.tags.is_empty()
        || !p.transitive_tag_keys.is_empty()
        || !caller.transitive_tags.is_empty();
    if tagging && !role.allow_tag_session {
        return Err(Fault::not_authorized(
            &caller.arn,
            "sts:TagSession",
            &p.role_arn,
        ));
    }
    let source_identity = match (&caller.source_identity, &p.source_identity) {
        (Some(old), Some(new)) if old != new => {
            return Err(Fault::access_denied(format!(
                "User: {} is not authorized to perform: sts:SetSourceIdentity on resource: {}: the session's source identity '{old}' cannot be changed",
                caller.arn, p.role_arn
            )));
        }
        (old, new) => new.clone().or_else(|| old.clone()),
    };
    if source_identity.is_some() && !role.allow_set_source_identity {
        return Err(Fault::not_authorized(
            &caller.arn,
            "sts:SetSourceIdentity",
            &p.role_arn,
        ));
    }
    if let Some(new) = &p.source_identity
        && new.to_lowercase().starts_with("aws:")
    {
        return Err(Fault::validation_message(format!(
            "Invalid SourceIdentity '{new}': the prefix 'aws:' is reserved for AWS internal use"
        )));
    }

    for (i, (key, _)) in p.tags.iter().enumerate() {
        if p.tags[..i].iter().any(|(k, _)| same_key(k, key)) {
            return Err(Fault::invalid_parameter(DUPLICATE_TAGS_MESSAGE));
        }
        if caller.transitive_tags.iter().any(|(k, _)| same_key(k, key)) {
            return Err(Fault::invalid_parameter(format!(
                "Cannot set tag '{key}': the calling session already has it as a transitive tag, and transitive tags cannot be overridden in a role chain."
            )));
        }
    }
    if let Some(missing) = p
        .transitive_tag_keys
        .iter()
        .find(|t| !p.tags.iter().any(|(k, _)| same_key(k, t)))
    {
        return Err(Fault::invalid_parameter(format!(
            "The specified transitive tag key must be included in the requested tags: '{missing}' is not among them."
        )));
    }

    let chained = caller.is_role_session;
    let duration = p.duration_seconds.unwrap_or(DEFAULT_DURATION);
    if chained && duration > CHAIN_LIMIT_SECONDS {
        return Err(Fault::validation_message(CHAIN_LIMIT_MESSAGE));
    }
    if duration > role.max_session_duration {
        return Err(Fault::validation_message(ROLE_MAX_MESSAGE));
    }

    let mut tags = caller.transitive_tags.clone();
    tags.extend(p.tags.iter().cloned());
    let mut transitive_tags = caller.transitive_tags.clone();
    transitive_tags.extend(
        p.tags
            .iter()
            .filter(|(k, _)| p.transitive_tag_keys.iter().any(|t| same_key(t, k)))
            .cloned(),
    );
    let packed_policy_size = check_packed(config, &tags, p.policy.as_deref(), &p.policy_arns)?;
    Ok(Grant {
        role_arn: p.role_arn.clone(),
        role_name: role.name.clone(),
        session_name: p.role_session_name.clone(),
        duration_seconds: duration,
        tags,
        transitive_tags,
        source_identity,
        chained,
        packed_policy_size,
    })
}

/// Decides an AssumeRoleWithWebIdentity whose token has already been
/// verified (signature, issuer, audience, expiry).
pub fn decide_web_identity(config: &StsConfig, p: &WebIdentityParams) -> Result<Grant, Fault> {
    validate_web_identity(p)?;
    let role = parse_role_arn(&p.role_arn)
        .filter(|(account, _)| *account == config.account_id)
        .and_then(|(_, name)| config.role(name))
        .filter(|role| trusts_web_identity(role))
        .ok_or_else(|| {
            Fault::access_denied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
        })?;
    let duration = p.duration_seconds.unwrap_or(DEFAULT_DURATION);
    if duration > role.max_session_duration {
        return Err(Fault::validation_message(ROLE_MAX_MESSAGE));
    }
    let packed_policy_size = check_packed(config, &[], p.policy.as_deref(), &p.policy_arns)?;
    Ok(Grant {
        role_arn: p.role_arn.clone(),
        role_name: role.name.clone(),
        session_name: p.role_session_name.clone(),
        duration_seconds: duration,
        tags: Vec::new(),
        transitive_tags: Vec::new(),
        source_identity: None,
        chained: false,
        packed_policy_size,
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

//! The hop loop: the pod's identity, then each `--role` with AssumeRole signed
//! by the previous hop's credentials.
//!
//! What to do after a failed call is one pure function, [`decide`], and how
//! that changes the hop's state is another, [`HopState::after`]; the loop only
//! applies them. Every [`Next`] other than `Stop` strictly consumes a bounded
//! budget (transient retries, the one untagged retry, the one drop of the
//! optional tags), so a hop makes at most `max_attempts + 2` calls: no path
//! loops. STS is behind the [`Sts`] trait and time behind [`Pacer`], so tests
//! script failures and never wait on real backoff timers.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use aws_credential_types::Credentials;

use crate::aws::config::{MIN_DURATION, SessionTagging};
use crate::aws::error::{AwsError, caller_principal, tag_session_denied};
use crate::aws::tags::{self, TagSet};

/// STS's limit for a session assumed with role-session credentials.
pub const CHAINED_MAX_DURATION: u32 = 3600;

/// What a failed STS call was, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// AccessDenied naming `sts:TagSession`: the trust policy lacks it.
    TagSessionDenied,
    AccessDenied,
    Validation,
    PackedPolicyTooLarge {
        percent: Option<u32>,
    },
    Throttled,
    ServerError,
    /// Timeouts and connection failures: retryable like a 5xx.
    Transport,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsFailure {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: u32,
    pub tags: TagSet,
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    pub policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebIdentityRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: u32,
    pub token: String,
    pub policy: Option<String>,
}

/// One hop's result: its credentials and, for STS calls, the session's ARN.
#[derive(Debug, Clone)]
pub struct Session {
    pub credentials: Credentials,
    pub arn: Option<String>,
}

pub trait Sts {
    fn assume_role_with_web_identity(
        &self,
        req: &WebIdentityRequest,
    ) -> impl Future<Output = Result<Session, StsFailure>> + Send;
    fn assume_role(
        &self,
        caller: &Credentials,
        req: &AssumeRoleRequest,
    ) -> impl Future<Output = Result<Session, StsFailure>> + Send;
}

/// Time for backoff: real sleeps in the binary, recorded ones in tests.
pub trait Pacer {
    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send;
    /// A number in [0, 1) for the backoff's jitter.
    fn jitter(&self) -> f64;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Calls per hop for throttling, 5xx and transport errors, first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
        }
    }
}

/// "Equal jitter": half of the exponential delay is fixed, half random, so
/// retries spread out but never come back at once.
pub fn backoff_delay(retry: u32, policy: &RetryPolicy, jitter: f64) -> Duration {
    let exp = policy
        .base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
    let full = exp.min(policy.cap);
    full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
}

/// A hop's retry budget and what its current request carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HopState {
    pub transient_failures: u32,
    pub tags_sent: bool,
    /// Tags beyond the transitive ones are being sent.
    pub optional_tags_sent: bool,
    /// Transitive tags exist, so dropping the optional ones still sends tags.
    pub required_tags: bool,
    pub dropped_all_tags: bool,
    pub dropped_optional_tags: bool,
}

impl HopState {
    pub fn new(tags: &TagSet) -> Self {
        let required = tags
            .tags
            .iter()
            .any(|t| tags.transitive_keys.contains(&t.key));
        let optional = tags
            .tags
            .iter()
            .any(|t| !tags.transitive_keys.contains(&t.key));
        Self {
            tags_sent: !tags.tags.is_empty(),
            optional_tags_sent: optional,
            required_tags: required,
            ..Self::default()
        }
    }

    /// The state after acting on `next` (`Stop` leaves it unchanged).
    pub fn after(self, next: &Next) -> Self {
        match next {
            Next::Backoff { .. } => Self {
                transient_failures: self.transient_failures + 1,
                ..self
            },
            Next::RetryUntagged => Self {
                tags_sent: false,
                optional_tags_sent: false,
                dropped_all_tags: true,
                ..self
            },
            Next::RetryRequiredTagsOnly => Self {
                tags_sent: self.required_tags,
                optional_tags_sent: false,
                dropped_optional_tags: true,
                ..self
            },
            Next::Stop(_) => self,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait, then send the same request again (`retry` counts from 1).
    Backoff {
        retry: u32,
    },
    RetryUntagged,
    RetryRequiredTagsOnly,
    Stop(Stop),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `untaggable`: no tags were sent, yet TagSession was needed.
    TagSessionDenied {
        untaggable: bool,
    },
    Refused,
    PackedPolicyTooLarge,
    GaveUp,
}

/// What to do after a failed call. AccessDenied and ValidationError are
/// final; a TagSession denial is retried untagged once, only in `auto`;
/// PackedPolicyTooLarge drops the optional tags once; throttling, 5xx and
/// transport errors back off until `max_attempts` calls were made.
pub fn decide(kind: &ErrorKind, state: &HopState, mode: SessionTagging, max_attempts: u32) -> Next {
    match kind {
        ErrorKind::TagSessionDenied if !state.tags_sent => {
            Next::Stop(Stop::TagSessionDenied { untaggable: true })
        }
        ErrorKind::TagSessionDenied if mode == SessionTagging::Auto && !state.dropped_all_tags => {
            Next::RetryUntagged
        }
        ErrorKind::TagSessionDenied => Next::Stop(Stop::TagSessionDenied { untaggable: false }),
        ErrorKind::AccessDenied | ErrorKind::Validation | ErrorKind::Other => {
            Next::Stop(Stop::Refused)
        }
        ErrorKind::PackedPolicyTooLarge { .. }
            if state.optional_tags_sent && !state.dropped_optional_tags =>
        {
            Next::RetryRequiredTagsOnly
        }
        ErrorKind::PackedPolicyTooLarge { .. } => Next::Stop(Stop::PackedPolicyTooLarge),
        ErrorKind::Throttled | ErrorKind::ServerError | ErrorKind::Transport => {
            if state.transient_failures + 1 < max_attempts {
                Next::Backoff {
                    retry: state.transient_failures + 1,
                }
            } else {
                Next::Stop(Stop::GaveUp)
            }
        }
    }
}

/// Something the user should read on stderr; none carries a secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    DurationClamped {
        role: String,
        requested: u32,
    },
    RetryingUntagged {
        role: String,
        hint: String,
    },
    DroppedOptionalTags {
        role: String,
        percent: Option<u32>,
    },
    Retrying {
        action: &'static str,
        role: String,
        code: String,
        retry: u32,
        delay: Duration,
    },
}

impl Note {
    pub fn is_warning(&self) -> bool {
        !matches!(self, Note::Retrying { .. })
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::DurationClamped { role, requested } => write!(
                f,
                "asking for {CHAINED_MAX_DURATION} s instead of {requested} s for {role}: STS allows at most 1 hour \
                 for a role assumed with role-session credentials (role chaining); \
                 use `runway aws credential-process` for credentials that refresh past that"
            ),
            Note::RetryingUntagged { role, hint } => {
                write!(
                    f,
                    "retrying {role} once WITHOUT session tags (session tagging `auto`) after this refusal:\n{hint}"
                )
            }
            Note::DroppedOptionalTags { role, percent } => write!(
                f,
                "PackedPolicyTooLarge for {role} ({}% of the packed size): retrying with only the transitive session tags",
                percent
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "over 100".into())
            ),
            Note::Retrying {
                action,
                role,
                code,
                retry,
                delay,
            } => write!(
                f,
                "{action} for {role}: {code}; retry {retry} in {} ms",
                delay.as_millis()
            ),
        }
    }
}

/// Where the chain starts.
pub enum Start {
    /// IRSA: the projected token, exchanged with AssumeRoleWithWebIdentity.
    WebIdentity { role_arn: String, token: String },
    /// Credentials some other provider resolved (Pod Identity, env, profile).
    Credentials {
        credentials: Credentials,
        /// The source, for `whoami` and messages ("EKS Pod Identity", ...).
        source: &'static str,
        /// Whether these are role-session credentials, which makes every
        /// AssumeRole after them role chaining (1 h at most).
        role_session: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChainSpec {
    pub roles: Vec<String>,
    pub session_name: String,
    /// Asked for the last hop; the others get STS's minimum, being used once
    /// seconds later to sign the next hop.
    pub duration: u32,
    pub tagging: SessionTagging,
    pub tags: TagSet,
    /// Sent on the first AssumeRole only: STS carries it along the chain.
    pub source_identity: Option<String>,
    pub external_id: Option<String>,
    /// Applies to the last hop's credentials, the ones the job uses.
    pub policy: Option<String>,
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone)]
pub struct Hop {
    /// The role assumed, or `None` for credentials taken as they were.
    pub role_arn: Option<String>,
    pub via: &'static str,
    pub session: Session,
}

/// Runs the chain. Notes are handed out as they happen, so the user sees a
/// retry while it waits, and the warnings even when a later hop fails.
pub async fn run<S: Sts, P: Pacer>(
    sts: &S,
    pacer: &P,
    start: Start,
    spec: &ChainSpec,
    notes: &mut (dyn FnMut(Note) + Send),
) -> Result<Vec<Hop>, AwsError> {
    let mut hops: Vec<Hop> = Vec::new();
    let last_index = spec.roles.len();
    let (mut caller, mut caller_role, mut role_session) = match start {
        Start::WebIdentity { role_arn, token } => {
            let only = spec.roles.is_empty();
            let req = WebIdentityRequest {
                role_arn: role_arn.clone(),
                session_name: spec.session_name.clone(),
                duration: if only { spec.duration } else { MIN_DURATION },
                token,
                policy: if only { spec.policy.clone() } else { None },
            };
            let ctx = HopContext {
                action: "AssumeRoleWithWebIdentity",
                role: &role_arn,
                caller: None,
            };
            let (session, _) = attempt(pacer, spec, &ctx, TagSet::default(), notes, |_| {
                sts.assume_role_with_web_identity(&req)
            })
            .await?;
            hops.push(Hop {
                role_arn: Some(role_arn.clone()),
                via: "AssumeRoleWithWebIdentity",
                session: session.clone(),
            });
            (session.credentials, Some(role_arn), true)
        }
        Start::Credentials {
            credentials,
            source,
            role_session,
        } => {
            hops.push(Hop {
                role_arn: None,
                via: source,
                session: Session {
                    credentials: credentials.clone(),
                    arn: None,
                },
            });
            (credentials, None, role_session)
        }
    };

    let mut inherited: Vec<String> = Vec::new();
    for (i, role) in spec.roles.iter().enumerate() {
        let last = i + 1 == last_index;
        let wanted = if last { spec.duration } else { MIN_DURATION };
        let duration = if role_session && wanted > CHAINED_MAX_DURATION {
            notes(Note::DurationClamped {
                role: role.clone(),
                requested: wanted,
            });
            CHAINED_MAX_DURATION
        } else {
            wanted
        };
        let tags = match spec.tagging {
            SessionTagging::Never => TagSet::default(),
            SessionTagging::Always | SessionTagging::Auto => tags::for_hop(&spec.tags, &inherited),
        };
        let base = AssumeRoleRequest {
            role_arn: role.clone(),
            session_name: spec.session_name.clone(),
            duration,
            tags: TagSet::default(),
            source_identity: if i == 0 {
                spec.source_identity.clone()
            } else {
                None
            },
            external_id: spec.external_id.clone(),
            policy: if last { spec.policy.clone() } else { None },
        };
        let ctx = HopContext {
            action: "AssumeRole",
            role,
            caller: caller_role.as_deref(),
        };
        let signer = &caller;
        let (session, sent) = attempt(pacer, spec, &ctx, tags, notes, |tags| {
            let req = AssumeRoleRequest {
                tags: tags.clone(),
                ..base.clone()
            };
            async move { sts.assume_role(signer, &req).await }
        })
        .await?;
        inherited.extend(sent.transitive_keys);
        hops.push(Hop {
            role_arn: Some(role.clone()),
            via: "AssumeRole",
            session: session.clone(),
        });
        caller = session.credentials;
        caller_role = Some(role.clone());
        role_session = true;
    }
    Ok(hops)
}

struct HopContext<'a> {
    action: &'static str,
    role: &'a str,
    /// The caller's role ARN when the chain knows it, for the trust hint.
    caller: Option<&'a str>,
}

/// Calls until success or [`decide`] says stop; returns the tags that went
/// out with the successful call.
async fn attempt<P, F, Fut>(
    pacer: &P,
    spec: &ChainSpec,
    ctx: &HopContext<'_>,
    mut tags: TagSet,
    notes: &mut (dyn FnMut(Note) + Send),
    mut call: F,
) -> Result<(Session, TagSet), AwsError>
where
    P: Pacer,
    F: FnMut(&TagSet) -> Fut,
    Fut: Future<Output = Result<Session, StsFailure>>,
{
    let mut state = HopState::new(&tags);
    loop {
        let failure = match call(&tags).await {
            Ok(session) => return Ok((session, tags)),
            Err(failure) => failure,
        };
        let next = decide(&failure.kind, &state, spec.tagging, spec.retry.max_attempts);
        tracing::debug!(action = ctx.action, role = ctx.role, code = %failure.code, ?next, "STS call failed");
        match next {
            Next::Backoff { retry } => {
                let delay = backoff_delay(retry, &spec.retry, pacer.jitter());
                notes(Note::Retrying {
                    action: ctx.action,
                    role: ctx.role.to_string(),
                    code: failure.code.clone(),
                    retry,
                    delay,
                });
                pacer.sleep(delay).await;
            }
            Next::RetryUntagged => {
                let caller = caller_principal(ctx.caller, &failure.message);
                notes(Note::RetryingUntagged {
                    role: ctx.role.to_string(),
                    hint: tag_session_denied(ctx.role, caller.as_deref(), &failure.message, false),
                });
                tags = TagSet::default();
            }
            Next::RetryRequiredTagsOnly => {
                let percent = match failure.kind {
                    ErrorKind::PackedPolicyTooLarge { percent } => percent,
                    _ => None,
                };
                notes(Note::DroppedOptionalTags {
                    role: ctx.role.to_string(),
                    percent,
                });
                tags = tags::required_only(&tags);
            }
            Next::Stop(stop) => return Err(stop_error(stop, failure, ctx, state)),
        }
        state = state.after(&next);
    }
}

fn stop_error(stop: Stop, failure: StsFailure, ctx: &HopContext<'_>, state: HopState) -> AwsError {
    match stop {
        Stop::TagSessionDenied { untaggable } => AwsError::TagSessionDenied {
            role: ctx.role.to_string(),
            caller: caller_principal(ctx.caller, &failure.message),
            sts_message: failure.message,
            untaggable,
        },
        Stop::Refused => AwsError::Refused {
            action: ctx.action,
            role: ctx.role.to_string(),
            code: failure.code,
            message: failure.message,
        },
        Stop::PackedPolicyTooLarge => AwsError::PackedPolicyTooLarge {
            role: ctx.role.to_string(),
            percent: match failure.kind {
                ErrorKind::PackedPolicyTooLarge { percent } => percent,
                _ => None,
            },
            message: failure.message,
        },
        Stop::GaveUp => AwsError::GaveUp {
            action: ctx.action,
            role: ctx.role.to_string(),
            attempts: state.transient_failures + 1,
            code: failure.code,
            message: failure.message,
        },
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;

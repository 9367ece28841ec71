//! Tests of the decision table, its termination bound, and the hop loop with
//! a scripted STS and a recording pacer (no real timers).

use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;
use crate::aws::tags::Tag;

const MODES: [SessionTagging; 3] = [
    SessionTagging::Never,
    SessionTagging::Always,
    SessionTagging::Auto,
];
const KINDS: [ErrorKind; 8] = [
    ErrorKind::TagSessionDenied,
    ErrorKind::AccessDenied,
    ErrorKind::Validation,
    ErrorKind::PackedPolicyTooLarge { percent: Some(142) },
    ErrorKind::Throttled,
    ErrorKind::ServerError,
    ErrorKind::Transport,
    ErrorKind::Other,
];

fn tagged() -> HopState {
    HopState {
        tags_sent: true,
        optional_tags_sent: true,
        ..HopState::default()
    }
}

#[test]
fn decision_table() {
    use Next::*;
    let untagged = HopState::default();
    let retried_untagged = tagged().after(&RetryUntagged);
    let required_only = HopState {
        required_tags: true,
        ..tagged()
    }
    .after(&RetryRequiredTagsOnly);
    let three_failures = HopState {
        transient_failures: 3,
        ..tagged()
    };
    let cases: Vec<(ErrorKind, HopState, SessionTagging, Next)> = vec![
        (
            ErrorKind::TagSessionDenied,
            tagged(),
            SessionTagging::Auto,
            RetryUntagged,
        ),
        (
            ErrorKind::TagSessionDenied,
            tagged(),
            SessionTagging::Always,
            Stop(super::Stop::TagSessionDenied { untaggable: false }),
        ),
        (
            ErrorKind::TagSessionDenied,
            retried_untagged,
            SessionTagging::Auto,
            Stop(super::Stop::TagSessionDenied { untaggable: true }),
        ),
        (
            ErrorKind::TagSessionDenied,
            untagged,
            SessionTagging::Never,
            Stop(super::Stop::TagSessionDenied { untaggable: true }),
        ),
        (
            ErrorKind::TagSessionDenied,
            required_only,
            SessionTagging::Auto,
            RetryUntagged,
        ),
        (
            ErrorKind::AccessDenied,
            tagged(),
            SessionTagging::Auto,
            Stop(super::Stop::Refused),
        ),
        (
            ErrorKind::Validation,
            tagged(),
            SessionTagging::Auto,
            Stop(super::Stop::Refused),
        ),
        (
            ErrorKind::Other,
            untagged,
            SessionTagging::Never,
            Stop(super::Stop::Refused),
        ),
        (
            ErrorKind::PackedPolicyTooLarge { percent: Some(142) },
            tagged(),
            SessionTagging::Always,
            RetryRequiredTagsOnly,
        ),
        (
            ErrorKind::PackedPolicyTooLarge { percent: Some(120) },
            required_only,
            SessionTagging::Always,
            Stop(super::Stop::PackedPolicyTooLarge),
        ),
        (
            ErrorKind::PackedPolicyTooLarge { percent: None },
            untagged,
            SessionTagging::Never,
            Stop(super::Stop::PackedPolicyTooLarge),
        ),
        (
            ErrorKind::Throttled,
            tagged(),
            SessionTagging::Auto,
            Backoff { retry: 1 },
        ),
        (
            ErrorKind::ServerError,
            HopState {
                transient_failures: 2,
                ..untagged
            },
            SessionTagging::Never,
            Backoff { retry: 3 },
        ),
        (
            ErrorKind::Transport,
            three_failures,
            SessionTagging::Auto,
            Stop(super::Stop::GaveUp),
        ),
    ];
    for (kind, state, mode, want) in cases {
        assert_eq!(
            decide(&kind, &state, mode, 4),
            want,
            "{kind:?} {state:?} {mode:?}"
        );
    }
}

/// Every sequence of errors, from every starting state and mode, ends in
/// `Stop` within `max_attempts + 2` calls: nothing can loop.
#[test]
fn no_error_sequence_loops() {
    let max_attempts = 4;
    let bound = max_attempts as usize + 2;
    let starts = [
        HopState::default(),
        tagged(),
        HopState {
            required_tags: true,
            ..tagged()
        },
        HopState {
            tags_sent: true,
            required_tags: true,
            ..HopState::default()
        },
    ];
    let total = KINDS.len().pow(bound as u32);
    let mut longest = 0;
    for mode in MODES {
        for start in starts {
            for n in 0..total {
                let mut state = start;
                let mut code = n;
                let mut calls = 0;
                loop {
                    calls += 1;
                    assert!(
                        calls <= bound,
                        "more than {bound} calls: {mode:?} {start:?} #{n}"
                    );
                    let kind = &KINDS[code % KINDS.len()];
                    code /= KINDS.len();
                    let next = decide(kind, &state, mode, max_attempts);
                    if let Next::Stop(_) = next {
                        break;
                    }
                    state = state.after(&next);
                }
                longest = longest.max(calls);
            }
        }
    }
    // The bound is reached (so the test could fail if it were lower).
    assert_eq!(longest, bound);
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let policy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
    };
    assert_eq!(backoff_delay(1, &policy, 0.0), Duration::from_millis(50));
    assert_eq!(backoff_delay(1, &policy, 1.0), Duration::from_millis(100));
    assert_eq!(backoff_delay(2, &policy, 0.0), Duration::from_millis(100));
    assert_eq!(backoff_delay(3, &policy, 0.5), Duration::from_millis(300));
    assert_eq!(backoff_delay(9, &policy, 1.0), Duration::from_millis(500));
    assert_eq!(
        backoff_delay(u32::MAX, &policy, 0.0),
        Duration::from_millis(250)
    );
}

// ---- the loop, against a scripted STS ----

fn creds(id: &str) -> Credentials {
    Credentials::new(
        id,
        format!("secret-{id}"),
        Some(format!("token-{id}")),
        None,
        "test",
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Call {
    WebIdentity(WebIdentityRequest),
    AssumeRole {
        signer: String,
        req: AssumeRoleRequest,
    },
}

#[derive(Default)]
struct ScriptedSts {
    /// Failures to return, in order, for AssumeRole and for
    /// AssumeRoleWithWebIdentity; an empty script means success.
    assume: Mutex<VecDeque<ErrorKind>>,
    web: Mutex<VecDeque<ErrorKind>>,
    calls: Mutex<Vec<Call>>,
}

impl ScriptedSts {
    fn with(script: &[ErrorKind]) -> Self {
        Self {
            assume: Mutex::new(script.iter().cloned().collect()),
            ..Self::default()
        }
    }
    fn web_with(script: &[ErrorKind]) -> Self {
        Self {
            web: Mutex::new(script.iter().cloned().collect()),
            ..Self::default()
        }
    }
    fn next(&self, script: &Mutex<VecDeque<ErrorKind>>, role: &str) -> Result<Session, StsFailure> {
        match script.lock().unwrap().pop_front() {
            None => Ok(Session { credentials: creds(role.rsplit('/').next().unwrap()), arn: None }),
            Some(kind) => Err(StsFailure {
                code: format!("{kind:?}"),
                message: match kind {
                    ErrorKind::TagSessionDenied => "User: arn:aws:sts::1:assumed-role/A/s is not authorized to perform: sts:TagSession".into(),
                    _ => "nope".into(),
                },
                kind,
            }),
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Sts for ScriptedSts {
    async fn assume_role_with_web_identity(
        &self,
        req: &WebIdentityRequest,
    ) -> Result<Session, StsFailure> {
        self.calls
            .lock()
            .unwrap()
            .push(Call::WebIdentity(req.clone()));
        self.next(&self.web, &req.role_arn)
    }
    async fn assume_role(
        &self,
        caller: &Credentials,
        req: &AssumeRoleRequest,
    ) -> Result<Session, StsFailure> {
        self.calls.lock().unwrap().push(Call::AssumeRole {
            signer: caller.access_key_id().to_string(),
            req: req.clone(),
        });
        self.next(&self.assume, &req.role_arn)
    }
}

#[derive(Default)]
struct RecordingPacer {
    slept: Mutex<Vec<Duration>>,
}

impl Pacer for RecordingPacer {
    async fn sleep(&self, delay: Duration) {
        self.slept.lock().unwrap().push(delay);
    }
    fn jitter(&self) -> f64 {
        0.5
    }
}

fn tag_set() -> TagSet {
    TagSet {
        tags: vec![
            Tag {
                key: "Repository".into(),
                value: "acme/web".into(),
            },
            Tag {
                key: "Actor".into(),
                value: "octocat".into(),
            },
        ],
        transitive_keys: vec!["Repository".into()],
    }
}

fn spec(roles: &[&str], tagging: SessionTagging) -> ChainSpec {
    ChainSpec {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        session_name: "ci_7_build".into(),
        duration: 7200,
        tagging,
        tags: tag_set(),
        source_identity: Some("octocat".into()),
        external_id: None,
        policy: Some("{}".into()),
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        },
    }
}

fn web_identity() -> Start {
    Start::WebIdentity {
        role_arn: "arn:aws:iam::1:role/base".into(),
        token: "jwt".into(),
    }
}

fn assume_roles(calls: &[Call]) -> Vec<&AssumeRoleRequest> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::AssumeRole { req, .. } => Some(req),
            _ => None,
        })
        .collect()
}

/// A web identity start chained to role B in `tagging` mode, no waits
/// recorded: the result, and every note the chain gave.
async fn run_to_b(
    sts: &ScriptedSts,
    tagging: SessionTagging,
) -> (Result<Vec<Hop>, AwsError>, Vec<Note>) {
    let mut notes = vec![];
    let result = run(
        sts,
        &RecordingPacer::default(),
        web_identity(),
        &spec(&["arn:aws:iam::1:role/B"], tagging),
        &mut |n| notes.push(n),
    )
    .await;
    (result, notes)
}

#[tokio::test]
async fn a_three_hop_chain_signs_each_hop_with_the_previous() {
    let sts = ScriptedSts::default();
    let pacer = RecordingPacer::default();
    let mut notes = Vec::new();
    let spec = spec(
        &["arn:aws:iam::1:role/A", "arn:aws:iam::1:role/B"],
        SessionTagging::Auto,
    );
    let hops = run(&sts, &pacer, web_identity(), &spec, &mut |n| notes.push(n))
        .await
        .unwrap();
    assert_eq!(hops.len(), 3);
    assert_eq!(hops[2].session.credentials.access_key_id(), "B");
    let calls = sts.calls();
    let Call::WebIdentity(first) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (first.duration, first.policy.as_deref()),
        (MIN_DURATION, None)
    );
    let Call::AssumeRole { signer, req: a } = &calls[1] else {
        panic!()
    };
    assert_eq!(signer, "base");
    assert_eq!(a.duration, MIN_DURATION);
    assert_eq!(a.tags, tag_set());
    assert_eq!(a.source_identity.as_deref(), Some("octocat"));
    assert_eq!(a.policy, None);
    let Call::AssumeRole { signer, req: b } = &calls[2] else {
        panic!()
    };
    assert_eq!(signer, "A");
    // Repository is inherited as transitive from A: sent again it would fail.
    assert_eq!(
        b.tags
            .tags
            .iter()
            .map(|t| t.key.as_str())
            .collect::<Vec<_>>(),
        vec!["Actor"]
    );
    assert!(b.tags.transitive_keys.is_empty());
    assert_eq!(b.source_identity, None);
    assert_eq!(b.policy.as_deref(), Some("{}"));
    // 7200 on the chained last hop is clamped, with a note.
    assert_eq!(b.duration, CHAINED_MAX_DURATION);
    assert_eq!(
        notes,
        vec![Note::DurationClamped {
            role: "arn:aws:iam::1:role/B".into(),
            requested: 7200
        }]
    );
    assert!(pacer.slept.lock().unwrap().is_empty());
}

#[tokio::test]
async fn tag_session_denied_per_mode() {
    // always: one call, the error carries the statement to add.
    let sts = ScriptedSts::with(&[ErrorKind::TagSessionDenied]);
    let err = run_to_b(&sts, SessionTagging::Always).await.0.unwrap_err();
    assert_eq!(assume_roles(&sts.calls()).len(), 1);
    let msg = err.to_string();
    assert!(
        msg.contains("\"AWS\": \"arn:aws:iam::1:role/base\""),
        "{msg}"
    );
    assert_eq!(err.exit_code(), crate::aws::error::EXIT_AWS_REFUSED);

    // auto: a second call without tags, and a warning with the same statement.
    let sts = ScriptedSts::with(&[ErrorKind::TagSessionDenied]);
    let (result, notes) = run_to_b(&sts, SessionTagging::Auto).await;
    result.unwrap();
    let calls = sts.calls();
    let sent = assume_roles(&calls);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].tags, tag_set());
    assert_eq!(sent[1].tags, TagSet::default());
    assert!(
        matches!(&notes[1], Note::RetryingUntagged { hint, .. } if hint.contains("sts:TagSession"))
    );

    // never: no tags at all, one call.
    let sts = ScriptedSts::default();
    run_to_b(&sts, SessionTagging::Never).await.0.unwrap();
    let calls = sts.calls();
    assert_eq!(assume_roles(&calls)[0].tags, TagSet::default());
}

#[tokio::test]
async fn packed_policy_too_large_drops_optional_tags_once() {
    let too_large = ErrorKind::PackedPolicyTooLarge { percent: Some(142) };
    let sts = ScriptedSts::with(&[too_large, too_large]);
    let err = run_to_b(&sts, SessionTagging::Always).await.0.unwrap_err();
    let calls = sts.calls();
    let sent = assume_roles(&calls);
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].tags.tags.len(),
        1,
        "only the transitive Repository tag"
    );
    assert!(err.to_string().contains("142%"), "{err}");
}

#[tokio::test]
async fn throttling_backs_off_then_gives_up() {
    let role = ["arn:aws:iam::1:role/B"];
    let sts = ScriptedSts::web_with(&[ErrorKind::Throttled; 4]);
    let pacer = RecordingPacer::default();
    let err = run(
        &sts,
        &pacer,
        web_identity(),
        &spec(&role, SessionTagging::Never),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    // The web identity hop is the one throttled: 4 calls, 3 waits, growing.
    assert_eq!(sts.calls().len(), 4);
    assert_eq!(
        *pacer.slept.lock().unwrap(),
        vec![
            Duration::from_millis(75),
            Duration::from_millis(150),
            Duration::from_millis(300)
        ]
    );
    assert_eq!(err.exit_code(), crate::aws::error::EXIT_GAVE_UP);
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

#[tokio::test]
async fn ambient_user_credentials_are_not_clamped() {
    let sts = ScriptedSts::default();
    let start = Start::Credentials {
        credentials: creds("user"),
        source: "environment",
        role_session: false,
    };
    let mut notes = vec![];
    let hops = run(
        &sts,
        &RecordingPacer::default(),
        start,
        &spec(&["arn:aws:iam::1:role/B"], SessionTagging::Never),
        &mut |n| notes.push(n),
    )
    .await
    .unwrap();
    assert_eq!(hops[0].via, "environment");
    assert_eq!(assume_roles(&sts.calls())[0].duration, 7200);
    assert!(notes.is_empty());
}

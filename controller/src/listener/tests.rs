//! The loop against a scripted twin of the service, in paused tokio time:
//! the order of calls per message, what each error leads to, and the
//! backoff between attempts, measured in virtual time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::github::queue::ScaleSetMessage;
use crate::github::secret::Secret;
use crate::github::wire::{
    JobMessage, RunnerScaleSet, RunnerScaleSetSession, RunnerScaleSetStatistic,
};

type MakeError = fn() -> Error;

/// What one poll answers.
enum Poll {
    Message(ScaleSetMessage),
    Fail(MakeError),
}

#[derive(Default)]
struct Script {
    creates: VecDeque<MakeError>,
    deletes: VecDeque<MakeError>,
    polls: VecDeque<Poll>,
    acquires: VecDeque<MakeError>,
    acks: VecDeque<MakeError>,
    /// Per save, in order: whether it fails (then: success).
    saves: VecDeque<bool>,
    scale_set: Option<MakeError>,
    /// Every call, in order, as text.
    log: Vec<String>,
    /// Virtual time of each create attempt.
    create_times: Vec<Instant>,
    sessions: u32,
}

#[derive(Clone, Default)]
struct Twin(Arc<Mutex<Script>>);

impl Twin {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap()
    }

    fn log(&self) -> Vec<String> {
        self.script().log.clone()
    }

    fn record(&self, entry: String) {
        self.script().log.push(entry);
    }
}

fn session(n: u32) -> RunnerScaleSetSession {
    RunnerScaleSetSession {
        session_id: format!("s{n}"),
        owner_name: "runway".into(),
        runner_scale_set: None,
        message_queue_url: "http://queue.test/m".into(),
        message_queue_access_token: Secret::new("q"),
        statistics: Some(RunnerScaleSetStatistic {
            total_assigned_jobs: 1,
            ..RunnerScaleSetStatistic::default()
        }),
    }
}

impl ScaleSetService for Twin {
    async fn create_session(&self, _: i64, _: &str) -> Result<RunnerScaleSetSession, Error> {
        let mut script = self.script();
        script.log.push("create".into());
        script.create_times.push(Instant::now());
        if let Some(make) = script.creates.pop_front() {
            return Err(make());
        }
        script.sessions += 1;
        Ok(session(script.sessions))
    }

    async fn refresh_session(&self, _: i64, id: &str) -> Result<RunnerScaleSetSession, Error> {
        self.record(format!("refresh {id}"));
        Ok(session(1))
    }

    async fn delete_session(&self, _: i64, id: &str) -> Result<(), Error> {
        let mut script = self.script();
        script.log.push(format!("delete {id}"));
        script
            .deletes
            .pop_front()
            .map_or(Ok(()), |make| Err(make()))
    }

    async fn get_message(
        &self,
        _: i64,
        _: &mut RunnerScaleSetSession,
        last_message_id: i64,
        max_capacity: u32,
    ) -> Result<Option<ScaleSetMessage>, Error> {
        let next = {
            let mut script = self.script();
            script
                .log
                .push(format!("poll {last_message_id} cap {max_capacity}"));
            script.polls.pop_front()
        };
        match next {
            Some(Poll::Message(message)) => Ok(Some(message)),
            Some(Poll::Fail(make)) => Err(make()),
            None => {
                // The service holds an empty poll.
                tokio::time::sleep(Duration::from_secs(50)).await;
                Ok(None)
            }
        }
    }

    async fn acknowledge_message(
        &self,
        _: i64,
        _: &mut RunnerScaleSetSession,
        message_id: i64,
    ) -> Result<(), Error> {
        let mut script = self.script();
        script.log.push(format!("ack {message_id}"));
        script.acks.pop_front().map_or(Ok(()), |make| Err(make()))
    }

    async fn acquire_jobs(
        &self,
        _: i64,
        _: &mut RunnerScaleSetSession,
        ids: &[i64],
    ) -> Result<Vec<i64>, Error> {
        let mut script = self.script();
        script.log.push(format!("acquire {ids:?}"));
        script
            .acquires
            .pop_front()
            .map_or(Ok(ids.to_vec()), |make| Err(make()))
    }

    async fn scale_set(&self, id: i64) -> Result<RunnerScaleSet, Error> {
        let mut script = self.script();
        script.log.push("get scale set".into());
        match script.scale_set {
            Some(make) => Err(make()),
            None => Ok(RunnerScaleSet {
                id,
                name: "set".into(),
                runner_group_id: 1,
                runner_group_name: "default".into(),
                labels: Vec::new(),
                runner_setting: Default::default(),
                created_on: None,
                runner_jit_config_url: None,
                statistics: None,
            }),
        }
    }
}

/// A checkpoint writing into the twin's log; fails while `saves` has items.
#[derive(Clone)]
struct Saves(Twin);

impl Checkpoint for Saves {
    async fn save(&self, session_id: Option<&str>, last_message_id: i64) -> Result<(), BoxError> {
        let mut script = self.0.script();
        script
            .log
            .push(format!("save {session_id:?} {last_message_id}"));
        match script.saves.pop_front() {
            Some(true) => Err("the API server is away".into()),
            _ => Ok(()),
        }
    }
}

fn conflict() -> Error {
    Error::SessionConflict {
        operation: "create".into(),
        message: "taken".into(),
    }
}

fn not_found() -> Error {
    Error::ScaleSetNotFound {
        operation: "op".into(),
        message: "gone".into(),
    }
}

fn unavailable() -> Error {
    Error::Status {
        operation: "op".into(),
        status: 503,
        message: "down".into(),
    }
}

fn bare_404() -> Error {
    Error::Status {
        operation: "create".into(),
        status: 404,
        message: "Not Found".into(),
    }
}

fn expired() -> Error {
    Error::SessionExpired {
        operation: "poll".into(),
        message: "expired".into(),
    }
}

fn job_message(id: i64, assigned: i64, jobs: &str) -> ScaleSetMessage {
    ScaleSetMessage {
        message_id: id,
        statistics: Some(RunnerScaleSetStatistic {
            total_assigned_jobs: assigned,
            ..RunnerScaleSetStatistic::default()
        }),
        jobs: JobMessage::decode_body(jobs).unwrap(),
    }
}

const TWO_AVAILABLE: &str = r#"[{"messageType":"JobAvailable","runnerRequestId":1,"acquireJobUrl":""},
    {"messageType":"JobAvailable","runnerRequestId":2,"acquireJobUrl":""}]"#;

fn config() -> ListenerConfig {
    ListenerConfig::new(
        7,
        "runway",
        Limits {
            min_runners: 1,
            max_runners: Some(5),
        },
    )
}

struct Started {
    twin: Twin,
    task: tokio::task::JoinHandle<Result<(), ListenerError>>,
    demand: watch::Receiver<Demand>,
    stop: watch::Sender<bool>,
}

fn start(twin: &Twin, config: ListenerConfig, resume: Resume) -> Started {
    let (demand_tx, demand) = watch::channel(Demand::default());
    let (stop, stop_rx) = watch::channel(false);
    let listener = Listener::new(twin.clone(), Saves(twin.clone()), config, demand_tx);
    let task = tokio::spawn(async move { listener.run(resume, stop_rx).await });
    Started {
        twin: twin.clone(),
        task,
        demand,
        stop,
    }
}

impl Started {
    /// Lets the listener run until the log has `n` entries (virtual time).
    async fn until_log(&self, n: usize) {
        for _ in 0..100_000 {
            if self.twin.log().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the log stayed at {:#?}", self.twin.log());
    }

    /// Waits until the twin's log has `expected` from position `from` on,
    /// and checks those entries.
    async fn expect_log(&self, from: usize, expected: &[&str]) {
        self.until_log(from + expected.len()).await;
        assert_eq!(
            self.twin.log()[from..from + expected.len()],
            strings(expected)
        );
    }

    async fn stop(self) -> Result<(), ListenerError> {
        self.stop.send_replace(true);
        self.task.await.unwrap()
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_message_is_acquired_published_checkpointed_then_acknowledged() {
    let twin = Twin::default();
    twin.script()
        .polls
        .push_back(Poll::Message(job_message(5, 0, TWO_AVAILABLE)));
    let mut started = start(&twin, config(), Resume::default());
    started.until_log(8).await;
    assert_eq!(started.demand.borrow_and_update().desired, 1);
    assert_eq!(started.stop().await.map_err(|e| e.to_string()), Ok(()));
    let log = twin.log();
    assert_eq!(
        log[..7],
        strings(&[
            "create",
            "save Some(\"s1\") 0",
            "poll 0 cap 5",
            "acquire [1, 2]",
            "save Some(\"s1\") 5",
            "ack 5",
            "poll 5 cap 5",
        ])
    );
    // Shutdown, after however many empty polls.
    assert_eq!(log[log.len() - 2..], strings(&["delete s1", "save None 5"]));
}

#[tokio::test(start_paused = true)]
async fn the_session_statistics_give_the_first_demand_and_an_empty_poll_resends_it() {
    let twin = Twin::default();
    let mut started = start(&twin, config(), Resume::default());
    started.until_log(3).await;
    let first = started.demand.borrow_and_update().clone();
    assert_eq!(first.desired, 2, "min 1 + 1 assigned in the session");
    // Two empty (50 s) polls later the same demand was sent again.
    started.until_log(5).await;
    assert!(started.demand.has_changed().unwrap());
    assert_eq!(*started.demand.borrow_and_update(), first);
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_recorded_session_is_deleted_before_creating_one() {
    let twin = Twin::default();
    let resume = Resume {
        session_id: Some("old".into()),
        last_message_id: 41,
    };
    let started = start(&twin, config(), resume);
    started
        .expect_log(
            0,
            &[
                "delete old",
                "create",
                "save Some(\"s1\") 41",
                "poll 41 cap 5",
            ],
        )
        .await;
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_conflict_with_a_recorded_session_deletes_it_again_and_retries() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script.deletes.push_back(unavailable);
        script.creates.push_back(conflict);
    }
    let resume = Resume {
        session_id: Some("old".into()),
        last_message_id: 0,
    };
    let started = start(&twin, config(), resume);
    started
        .expect_log(
            0,
            &[
                "delete old",
                "create",
                "delete old",
                "create",
                "save Some(\"s1\") 0",
            ],
        )
        .await;
    let times = twin.script().create_times.clone();
    assert!(
        times[1] - times[0] >= Duration::from_millis(500),
        "backed off"
    );
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn conflicts_back_off_exponentially_with_jitter_up_to_the_cap() {
    let twin = Twin::default();
    twin.script().creates.extend([conflict as MakeError; 12]);
    let started = start(&twin, config(), Resume::default());
    started.until_log(13).await;
    let times = twin.script().create_times.clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let backoff = Backoff::default();
    for (i, gap) in gaps.iter().enumerate() {
        let failures = i as u32 + 1;
        let low = backoff.delay(failures, 0.0);
        let high = backoff.delay(failures, 1.0);
        assert!(
            *gap >= low && *gap <= high + Duration::from_millis(20),
            "gap {i}: {gap:?} not in {low:?}..{high:?}"
        );
    }
    assert!(gaps.last().unwrap() <= &(backoff.cap + Duration::from_millis(20)));
    assert!(!started.task.is_finished());
    assert!(!twin.log().iter().any(|l| l.starts_with("delete")));
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn poll_failures_back_off_and_a_success_resets_the_backoff() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script.polls.extend((0..6).map(|_| Poll::Fail(unavailable)));
        script
            .polls
            .push_back(Poll::Message(job_message(3, 2, "[]")));
    }
    let mut started = start(&twin, config(), Resume::default());
    let begun = Instant::now();
    started
        .demand
        .wait_for(|d| d.desired == 3)
        .await
        .expect("the demand after the failures");
    // 1 + 2 + 4 + 8 + 16 + 32 s at most, half at least.
    let waited = Instant::now() - begun;
    assert!(waited >= Duration::from_secs(31), "{waited:?}");
    assert!(waited <= Duration::from_secs(64), "{waited:?}");
    let polls: Vec<String> = twin
        .log()
        .into_iter()
        .filter(|l| l.starts_with("poll"))
        .take(8)
        .collect();
    assert_eq!(polls[..7], vec!["poll 0 cap 5".to_owned(); 7]);
    assert_eq!(polls.get(7).map(String::as_str), Some("poll 3 cap 5"));
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_acquire_leaves_the_message_unacknowledged_for_redelivery() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script.acquires.push_back(unavailable);
        script
            .polls
            .push_back(Poll::Message(job_message(5, 0, TWO_AVAILABLE)));
        script
            .polls
            .push_back(Poll::Message(job_message(5, 0, TWO_AVAILABLE)));
    }
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            2,
            &[
                "poll 0 cap 5",
                "acquire [1, 2]",
                "poll 0 cap 5",
                "acquire [1, 2]",
                "save Some(\"s1\") 5",
                "ack 5",
            ],
        )
        .await;
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_checkpoint_still_acknowledges_and_is_retried() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script
            .polls
            .push_back(Poll::Message(job_message(5, 0, "[]")));
        script.saves.extend([false, true]);
    }
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            0,
            &[
                "create",
                "save Some(\"s1\") 0",
                "poll 0 cap 5",
                "save Some(\"s1\") 5",
                "ack 5",
                "save Some(\"s1\") 5",
                "poll 5 cap 5",
            ],
        )
        .await;
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_message_is_skipped_not_redelivered_forever() {
    let twin = Twin::default();
    twin.script()
        .polls
        .push_back(Poll::Fail(|| Error::UnexpectedMessageType {
            message_id: 9,
            message_type: "SomethingElse".into(),
        }));
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            2,
            &[
                "poll 0 cap 5",
                "save Some(\"s1\") 9",
                "ack 9",
                "poll 9 cap 5",
            ],
        )
        .await;
    started.stop().await.unwrap();
}

fn undecodable_9() -> Error {
    Error::UndecodableMessage {
        operation: "poll".into(),
        message_id: 9,
        problem: "the body is not a JSON array of job messages".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_message_that_never_decodes_is_skipped_after_the_bound_and_reported() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        for _ in 0..3 {
            script.polls.push_back(Poll::Fail(undecodable_9));
        }
        script
            .polls
            .push_back(Poll::Message(job_message(10, 2, TWO_AVAILABLE)));
    }
    let (demand_tx, mut demand) = watch::channel(Demand::default());
    let (stop, stop_rx) = watch::channel(false);
    let metrics = crate::metrics::Metrics::new();
    let config = ListenerConfig {
        max_message_tries: 3,
        ..config()
    };
    let listener = Listener::new(twin.clone(), Saves(twin.clone()), config, demand_tx)
        .with_metrics(metrics.clone());
    let task = tokio::spawn(async move { listener.run(Resume::default(), stop_rx).await });
    let started = Started {
        twin: twin.clone(),
        task,
        demand: demand.clone(),
        stop,
    };
    started
        .expect_log(
            2,
            &[
                "poll 0 cap 5",
                "poll 0 cap 5",
                "poll 0 cap 5",
                "save Some(\"s1\") 9",
                "ack 9",
                "poll 9 cap 5",
                "acquire [1, 2]",
                "save Some(\"s1\") 10",
                "ack 10",
            ],
        )
        .await;
    let seen = demand.borrow_and_update().clone();
    assert_eq!(seen.skipped_total, 1);
    assert_eq!(
        seen.skipped,
        [SkippedMessage {
            message_id: 9,
            tries: 3,
            reason: "the body is not a JSON array of job messages".into(),
        }]
    );
    assert_eq!(seen.desired, 3, "the next message was served");
    assert_eq!(metrics.undecodable_messages(), [("message", 1)].into());
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_message_that_decodes_on_a_later_try_is_handled_not_skipped() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script.polls.push_back(Poll::Fail(undecodable_9));
        script
            .polls
            .push_back(Poll::Message(job_message(9, 2, TWO_AVAILABLE)));
    }
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            2,
            &[
                "poll 0 cap 5",
                "poll 0 cap 5",
                "acquire [1, 2]",
                "save Some(\"s1\") 9",
                "ack 9",
            ],
        )
        .await;
    assert_eq!(started.demand.borrow().skipped_total, 0);
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_job_message_is_counted_and_the_rest_is_served() {
    let twin = Twin::default();
    let jobs = r#"[{"messageType":"JobAvailable","runnerRequestId":"1"},
        {"messageType":"JobAvailable","runnerRequestId":2,"acquireJobUrl":null}]"#;
    twin.script()
        .polls
        .push_back(Poll::Message(job_message(4, 1, jobs)));
    let (demand_tx, _demand) = watch::channel(Demand::default());
    let (stop, stop_rx) = watch::channel(false);
    let metrics = crate::metrics::Metrics::new();
    let listener = Listener::new(twin.clone(), Saves(twin.clone()), config(), demand_tx)
        .with_metrics(metrics.clone());
    let task = tokio::spawn(async move { listener.run(Resume::default(), stop_rx).await });
    let started = Started {
        twin: twin.clone(),
        task,
        demand: _demand,
        stop,
    };
    started
        .expect_log(
            2,
            &[
                "poll 0 cap 5",
                "acquire [2]",
                "save Some(\"s1\") 4",
                "ack 4",
            ],
        )
        .await;
    assert_eq!(metrics.undecodable_messages(), [("element", 1)].into());
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_replaced_after_a_backoff() {
    let twin = Twin::default();
    twin.script().polls.push_back(Poll::Fail(expired));
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            0,
            &[
                "create",
                "save Some(\"s1\") 0",
                "poll 0 cap 5",
                "delete s1",
                "create",
                "save Some(\"s2\") 0",
                "poll 0 cap 5",
            ],
        )
        .await;
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_deleted_scale_set_ends_the_listener() {
    let twin = Twin::default();
    twin.script().polls.push_back(Poll::Fail(not_found));
    let started = start(&twin, config(), Resume::default());
    let error = started.task.await.unwrap().unwrap_err();
    assert_eq!(error.metric_label(), "scale_set_not_found");
    assert_eq!(
        twin.log(),
        strings(&[
            "create",
            "save Some(\"s1\") 0",
            "poll 0 cap 5",
            "save None 0"
        ])
    );
}

#[tokio::test(start_paused = true)]
async fn a_bare_404_on_create_is_checked_against_the_scale_set() {
    let twin = Twin::default();
    {
        let mut script = twin.script();
        script.creates.push_back(bare_404);
        script.scale_set = Some(not_found);
    }
    let started = start(&twin, config(), Resume::default());
    let error = started.task.await.unwrap().unwrap_err();
    assert!(matches!(
        error,
        ListenerError::ScaleSetNotFound {
            scale_set_id: 7,
            ..
        }
    ));

    // A 404 while the scale set exists is retried.
    let twin = Twin::default();
    twin.script().creates.push_back(bare_404);
    let started = start(&twin, config(), Resume::default());
    started
        .expect_log(
            0,
            &["create", "get scale set", "create", "save Some(\"s1\") 0"],
        )
        .await;
    started.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn unusable_credentials_stop_the_listener() {
    let twin = Twin::default();
    twin.script()
        .creates
        .push_back(|| Error::Credentials(crate::github::CredentialsError::Missing));
    let started = start(&twin, config(), Resume::default());
    let error = started.task.await.unwrap().unwrap_err();
    assert_eq!(error.metric_label(), "client");
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_backoff_returns_at_once() {
    let twin = Twin::default();
    twin.script().creates.extend([conflict as MakeError; 20]);
    let started = start(&twin, config(), Resume::default());
    started.until_log(8).await;
    let before = Instant::now();
    started.stop().await.unwrap();
    assert!(Instant::now() - before < Duration::from_millis(10));
    // No session of ours to delete.
    assert!(!twin.log().iter().any(|l| l.starts_with("delete")));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_shutdown_sender_stops_the_listener() {
    let twin = Twin::default();
    let started = start(&twin, config(), Resume::default());
    started.until_log(3).await;
    drop(started.stop);
    started.task.await.unwrap().unwrap();
    assert!(twin.log().contains(&"delete s1".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn new_limits_change_desired_and_the_polled_capacity_without_a_new_session() {
    let twin = Twin::default();
    let (limits_tx, limits_rx) = watch::channel(Limits {
        min_runners: 1,
        max_runners: Some(5),
    });
    let (demand_tx, mut demand) = watch::channel(Demand::default());
    let (stop, stop_rx) = watch::channel(false);
    let listener = Listener::new(twin.clone(), Saves(twin.clone()), config(), demand_tx)
        .with_limits(limits_rx);
    let task = tokio::spawn(async move { listener.run(Resume::default(), stop_rx).await });
    tokio::time::timeout(
        Duration::from_secs(3600),
        demand.wait_for(|d| d.desired == 2),
    )
    .await
    .expect("the demand within an hour of virtual time")
    .unwrap();
    limits_tx.send_replace(Limits {
        min_runners: 3,
        max_runners: Some(4),
    });
    tokio::time::timeout(
        Duration::from_secs(3600),
        demand.wait_for(|d| d.desired == 4),
    )
    .await
    .expect("the demand within an hour of virtual time")
    .unwrap();
    let started = Started {
        twin: twin.clone(),
        task,
        demand,
        stop,
    };
    started
        .expect_log(
            0,
            &[
                "create",
                "save Some(\"s1\") 0",
                "poll 0 cap 5",
                "poll 0 cap 4",
            ],
        )
        .await;
    // Without a sender the limits stay as they are; listening goes on.
    drop(limits_tx);
    started
        .expect_log(4, &["poll 0 cap 4", "poll 0 cap 4"])
        .await;
    started.stop().await.unwrap();
    assert_eq!(
        twin.log().iter().filter(|l| *l == "create").count(),
        1,
        "no new session"
    );
}

#[test]
fn error_labels() {
    let error = ListenerError::ScaleSetNotFound {
        scale_set_id: 3,
        source: not_found(),
    };
    assert_eq!(error.metric_label(), "scale_set_not_found");
    assert!(error.to_string().contains("must be created again"));
    let error = ListenerError::SessionConflict {
        scale_set_id: 3,
        attempts: 4,
        source: conflict(),
    };
    assert_eq!(error.metric_label(), "session_conflict");
    let error = ListenerError::Client {
        scale_set_id: 3,
        source: unavailable(),
    };
    assert_eq!(error.metric_label(), "client");
}

#[tokio::test]
async fn memory_checkpoint_keeps_the_last_save() {
    let checkpoint = MemoryCheckpoint::default();
    assert_eq!(checkpoint.resume(), Resume::default());
    checkpoint.save(Some("s"), 4).await.unwrap();
    checkpoint.clone().save(None, 6).await.unwrap();
    assert_eq!(
        checkpoint.resume(),
        Resume {
            session_id: None,
            last_message_id: 6
        }
    );
    assert_eq!(checkpoint.saves(), 2);
}

#[test]
fn listeners_run_in_spawned_tasks() {
    fn assert_send<T: Send + 'static>(_: &T) {}
    let (demand, _) = watch::channel(Demand::default());
    let listener = Listener::new(
        Twin::default(),
        MemoryCheckpoint::default(),
        config(),
        demand,
    );
    let (_, stop) = watch::channel(false);
    let future = async move { listener.run(Resume::default(), stop).await };
    assert_send(&future);
}

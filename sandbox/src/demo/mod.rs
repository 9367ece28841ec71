//! `runway-sandbox demo`: the real controller binary against a throw-away
//! control plane with a real node, and the fake GitHub. Jobs are queued in
//! waves; the runner pods run on the node (kubelet, containerd), the
//! stand-in runner in each takes a job and runs its steps; a table shows the
//! runner pods scale up, stop at `maxRunners`, and come back down to
//! `minRunners`. With `--player` the node is left out and the [`Player`]
//! plays the kubelet and the runners instead.
//!
//! The run ends by itself. [`check`] (pure) decides from what was seen
//! whether an invariant broke: more live runner pods than `maxRunners`, a
//! job started twice, a JIT Secret or a runner registration left without
//! its pod, not back to `minRunners` in time, or the controller died.
//!
//! The [`Stage`] it plays on is shared with the benchmarks.

mod invariants;
mod table;

use std::time::Duration;

use crate::play::{JobStart, PlayOptions, Player, PodWatch};
use crate::stage::{Stage, StageError, StageOptions};

pub use invariants::{RunRecord, Violation, check, orphans};
use table::Table;
pub use table::{Observation, table_header, table_row};

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub stage: StageOptions,
    /// Jobs queued per wave.
    pub waves: Vec<usize>,
    /// Pause after a wave's jobs are all done.
    pub pause: Duration,
    pub play: PlayOptions,
    /// Longest wait for one wave's jobs to be done.
    pub wave_timeout: Duration,
    /// Longest wait to come back to `minRunners` after the last wave.
    pub settle_timeout: Duration,
    /// The steps of each job, for the stand-in runner on the node (`{n}`:
    /// the job's number in its wave).
    pub steps: Vec<String>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            stage: StageOptions {
                sandbox: "demo".into(),
                namespace: "runway-demo".into(),
                scale_set: "arm-builders".into(),
                min_runners: 1,
                max_runners: 10,
                kube_qps: 50,
                kube_burst: 100,
                leader_elect: true,
                status_interval_secs: Some(1),
                long_poll: Duration::from_secs(5),
                node: true,
            },
            waves: vec![4, 12, 6],
            pause: Duration::from_secs(3),
            play: PlayOptions {
                start_delay: Duration::from_secs(1),
                job_duration: Duration::from_secs(4),
                ..PlayOptions::default()
            },
            wave_timeout: Duration::from_secs(120),
            // On the node, runner pods deleted while the kubelet is still
            // creating them take up to ~40 s to go on 2 cores.
            settle_timeout: Duration::from_secs(120),
            steps: vec![
                "echo \"job {n} on $RUNNER_NAME\"".into(),
                "runway --version".into(),
                "sleep 3".into(),
            ],
        }
    }
}

/// Runs the demo (Ctrl-C stops it); the record says what was seen, and
/// [`check`] over it what broke.
pub async fn run(options: &DemoOptions) -> Result<RunRecord, StageError> {
    tokio::select! {
        result = run_demo(options) => result,
        _ = tokio::signal::ctrl_c() => Err(StageError::Interrupted),
    }
}

async fn run_demo(options: &DemoOptions) -> Result<RunRecord, StageError> {
    let stage = Stage::start(&options.stage).await?;
    println!(
        "scale set {:?} (id {}) in namespace {}: minRunners {}, maxRunners {}; waves of {:?} jobs",
        stage.scale_set,
        stage.scale_set_id,
        stage.namespace,
        options.stage.min_runners,
        options.stage.max_runners,
        options.waves
    );
    // On the node, the kubelet and the stand-in runners do the work; the
    // demo only watches. Without it, the player plays both.
    let player = (!stage.on_node()).then(|| stage.player(options.play.clone()));
    let watch = PodWatch::start(stage.client.clone(), &stage.namespace, &stage.scale_set);
    let mut table = Table::new(&stage, &watch);
    println!("{}", table_header());
    let min = usize::try_from(options.stage.min_runners).unwrap_or(0);

    table
        .until("minRunners idle runners", options.settle_timeout, |o| {
            o.pods.idle >= min
        })
        .await?;
    for (index, &jobs) in options.waves.iter().enumerate() {
        if index > 0 {
            table.pause(options.pause).await?;
        }
        if stage.on_node() {
            let steps: Vec<&str> = options.steps.iter().map(String::as_str).collect();
            stage.queue_jobs_with_steps(jobs, &steps)?;
        } else {
            stage.queue_jobs(jobs)?;
        }
        table.note(format!("wave {}: {jobs} jobs queued", index + 1));
        table
            .until(
                &format!("wave {} done", index + 1),
                options.wave_timeout,
                |o| o.jobs.open() == 0,
            )
            .await?;
    }
    let settle_start = table.started.elapsed();
    table.note("all jobs done; waiting for minRunners".into());
    let back = table
        .until("back to minRunners", options.settle_timeout, |o| {
            o.pods.live() == min && o.pods.total() == min && o.desired == Some(min as i64)
        })
        .await;
    let back_to_min_after = back.ok().map(|_| table.started.elapsed() - settle_start);

    // Garbage collection of JIT Secrets takes a moment: wait for a clean
    // state, but judge whatever is there after the wait.
    let _ = stage
        .until("no orphans", Duration::from_secs(30), || async {
            let left = stage.leftovers().await.ok()?;
            orphans(&left).is_empty().then_some(())
        })
        .await;
    let leftovers = stage.leftovers().await?;
    let rows = std::mem::take(&mut table.rows);
    let controller_exit =
        (!stage.controller().is_running()).then(|| "exited during the demo".to_string());
    let record = RunRecord {
        min_runners: min,
        max_runners: usize::try_from(options.stage.max_runners).unwrap_or(0),
        observations: rows,
        peak_live_pods: watch.peak_live(),
        starts: match &player {
            Some(player) => player.starts(),
            None => reported_starts(&stage),
        },
        leftovers,
        back_to_min_after,
        controller_exit,
    };
    print_summary(&record, player.as_ref(), &watch, &stage);
    Ok(record)
}

/// The job starts the stand-in runners reported to the fake (one report per
/// job and runner that ran it).
fn reported_starts(stage: &Stage) -> Vec<JobStart> {
    stage
        .fake
        .snapshot()
        .jobs
        .iter()
        .filter(|j| j.scale_set_id == stage.scale_set_id)
        .filter_map(|j| {
            let report = stage.fake.job_report(j.runner_request_id)?;
            Some(JobStart {
                runner_request_id: j.runner_request_id,
                runner_name: report.runner_name,
            })
        })
        .collect()
}

fn print_summary(record: &RunRecord, player: Option<&Player>, watch: &PodWatch, stage: &Stage) {
    let jobs = stage.job_counts();
    println!();
    println!("summary:");
    println!(
        "  jobs: {} done, {} open; runner pods at most {} live at once (maxRunners {})",
        jobs.done,
        jobs.open(),
        record.peak_live_pods,
        record.max_runners
    );
    println!(
        "  runner pods created: {} for {} jobs and minRunners {}",
        watch.first_seen().len(),
        jobs.done + jobs.open(),
        record.min_runners
    );
    if player.is_none() {
        let reports: Vec<_> = record
            .starts
            .iter()
            .filter_map(|s| stage.fake.job_report(s.runner_request_id))
            .collect();
        let succeeded = reports.iter().filter(|r| r.result == "succeeded").count();
        println!(
            "  on the node: {} jobs ran their steps in runner containers ({} succeeded); e.g. {:?}",
            reports.len(),
            succeeded,
            reports
                .first()
                .and_then(|r| r.output_tail.iter().find(|l| l.starts_with("job ")))
                .cloned()
                .unwrap_or_default()
        );
    }
    if let Some(player) = player {
        let stats = player.stats();
        println!(
            "  player: {} pods set Running, {} jobs started, {} completed, {} pods terminated, {} jobs abandoned, {} errors{}",
            stats.pods_set_running,
            stats.jobs_started,
            stats.jobs_completed,
            stats.pods_terminated,
            stats.jobs_abandoned,
            stats.errors,
            stats
                .last_error
                .as_deref()
                .map(|e| format!(" (last: {e})"))
                .unwrap_or_default()
        );
    }
    match record.back_to_min_after {
        Some(after) => println!(
            "  back to minRunners ({}) {:.1} s after the last job was done",
            record.min_runners,
            after.as_secs_f64()
        ),
        None => println!("  NOT back to minRunners ({})", record.min_runners),
    }
    println!(
        "  left: {} pods, {} JIT Secrets, {} registrations",
        record.leftovers.pods.len(),
        record.leftovers.jit_secrets.len(),
        record.leftovers.registrations.len()
    );
    println!(
        "  controller log: {}",
        stage.controller().log_path().display()
    );
}

//! `runway-sandbox demo`: the real controller binary against a throw-away
//! control plane and the fake GitHub. Jobs are queued in waves; the
//! [`Player`] plays the kubelet and the runners; a table shows the runner
//! pods scale up, stop at `maxRunners`, and come back down to `minRunners`.
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

use crate::play::{PlayOptions, Player};
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
            },
            waves: vec![4, 12, 6],
            pause: Duration::from_secs(3),
            play: PlayOptions {
                start_delay: Duration::from_secs(1),
                job_duration: Duration::from_secs(4),
                ..PlayOptions::default()
            },
            wave_timeout: Duration::from_secs(120),
            settle_timeout: Duration::from_secs(60),
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
    let player = stage.player(options.play.clone());
    let mut table = Table::new(&stage, &player);
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
        stage.queue_jobs(jobs)?;
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
        peak_live_pods: player.watch().peak_live(),
        starts: player.starts(),
        leftovers,
        back_to_min_after,
        controller_exit,
    };
    print_summary(&record, &player, &stage);
    Ok(record)
}

fn print_summary(record: &RunRecord, player: &Player, stage: &Stage) {
    let stats = player.stats();
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
        player.watch().first_seen().len(),
        jobs.done + jobs.open(),
        record.min_runners
    );
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

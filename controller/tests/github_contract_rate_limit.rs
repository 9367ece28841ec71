//! The client's own rate limit, seen from the server: a burst of JIT configs
//! (a scale-up of hundreds of runners) sent all at once through a client
//! limited to 200 requests/s with bursts of 20 must reach the fake at no more
//! than that rate, and every runner must be registered.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_options, client_with, limiter, pat, scale_set, start_fake};
use runway_sandbox::github::Endpoint;
use tokio::task::JoinSet;

const RUNNERS: usize = 500;
const PER_SECOND: u32 = 200;
const BURST: u32 = 20;
/// Allowed arrival jitter at the window edges: on a loaded 2-core machine a
/// request that waits for a core arrives late and bunches with later ones.
/// An unpaced burst lands all 500 within well under a second, so 100 ms
/// still tells a limiter from none.
const JITTER_MS: u32 = 100;

/// The most requests that arrived within any window of `width`.
fn max_in_window(times: &[Instant], width: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..sorted.len() {
        while sorted[end] - sorted[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[test]
fn the_window_counts_what_it_should() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let times = [at(0), at(10), at(999), at(1000), at(1500), at(1999)];
    // [0, 1000) holds 3; [999, 1999) holds 3; [1000, 2000) holds 3.
    assert_eq!(max_in_window(&times, Duration::from_secs(1)), 3);
    assert_eq!(max_in_window(&times, Duration::from_millis(1001)), 4);
    assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_jit_configs_stays_within_the_client_rate_limit() {
    let fake = start_fake().await;
    let mut options = client_options();
    options.rate_limiter = Arc::new(limiter(PER_SECOND, BURST));
    let client = client_with(&fake, "my-org", pat(), options);
    let set = scale_set(&client, "burst").await;
    // Setup spent a few of the burst's tokens (same host): the burst below is
    // at most 20, so the pacing bound stays a lower bound.

    let started = Instant::now();
    let mut requests = JoinSet::new();
    for i in 0..RUNNERS {
        let client = client.clone();
        requests.spawn(async move {
            client
                .generate_jit_config(set.id, &format!("burst-{i:03}"), "_work")
                .await
        });
    }
    let mut registered = Vec::with_capacity(RUNNERS);
    while let Some(joined) = requests.join_next().await {
        let jit = joined.expect("the task ran").expect("a JIT config");
        registered.push(jit.runner.id);
    }
    let elapsed = started.elapsed();

    let times = fake.request_times(Endpoint::GenerateJitConfig);
    assert_eq!(times.len(), RUNNERS, "one request per runner, no retries");
    let busiest = max_in_window(&times, Duration::from_secs(1));
    let span = times
        .iter()
        .max()
        .unwrap()
        .duration_since(*times.iter().min().unwrap());
    println!(
        "{RUNNERS} JIT configs in {elapsed:?} (first to last arrival {span:?}); \
         at most {busiest} in any 1 s window; limit {PER_SECOND}/s, burst {BURST}"
    );

    // The limit holds: a window sees at most the burst plus a second of the
    // sustained rate (the limiter itself allows 20 + 199 in a half-open
    // second), give or take arrival jitter: a timer that wakes late or a
    // request that waits for one of the 2 cores moves a few arrivals across
    // a window edge. 100 ms of jitter at 200/s is 20 requests.
    let jitter = (PER_SECOND * JITTER_MS / 1000) as usize;
    assert!(
        busiest <= (PER_SECOND + BURST) as usize + jitter,
        "{busiest} requests in one second"
    );
    // ... and the limiter is what paced it: (500 - 20) / 200 = 2.4 s at least.
    let paced = Duration::from_secs_f64(f64::from(RUNNERS as u32 - BURST) / f64::from(PER_SECOND));
    assert!(
        span >= paced - Duration::from_millis(50),
        "the burst took only {span:?}"
    );
    // Generous: only a hang or a retry storm takes this long.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");

    registered.sort();
    registered.dedup();
    assert_eq!(registered.len(), RUNNERS);
    let snapshot = fake.snapshot();
    assert_eq!(snapshot.runners.len(), RUNNERS);
    assert!(snapshot.runners.iter().all(|r| r.scale_set_id == set.id));
    assert_eq!(
        snapshot.scale_sets[0].statistics.total_registered_runners,
        RUNNERS as i64
    );
}

//! `bench node` end to end on a small scale: its own sandbox with a real
//! node, the real controller binary, a few pods and one job cold and warm.
//! It takes about 85 s (22 s of it starting the sandbox, most of the rest
//! the kubelet removing pods between parts).

use std::time::Duration;

use runway_sandbox::bench::Spread;
use runway_sandbox::bench::node::{NodeOptions, node};

fn sane(name: &str, values: &[Duration], count: usize) {
    let s = Spread::of(values);
    assert_eq!(s.count, count, "{name}: {values:?}");
    assert!(
        Duration::ZERO < s.p50 && s.p50 <= s.p99 && s.p99 <= s.max,
        "{name}: {s:?}"
    );
    assert!(s.max < Duration::from_secs(120), "{name}: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_node_measures_every_number_beside_its_baseline() {
    let options = NodeOptions {
        sandbox: "bench-node-test".into(),
        pods: 3,
        batch: 3,
        jobs: 1,
        max_pods: 6,
        ..NodeOptions::default()
    };
    let report = node(&options).await.expect("bench node finishes");
    let text = report.render();
    eprintln!("{text}");
    sane("runner pods", &report.runner_pods, 3);
    sane("base pods", &report.base_pods, 3);
    sane("cold started", &report.cold_started, 1);
    sane("cold reported", &report.cold_reported, 1);
    sane("warm started", &report.warm_started, 1);
    sane("warm reported", &report.warm_reported, 1);
    assert!(report.cold_started[0] <= report.cold_reported[0]);
    assert!(report.warm_started[0] <= report.warm_reported[0]);
    let c = &report.capacity;
    assert_eq!((c.tried, c.running), (6, 6), "{c:?}");
    assert!(c.limited_by.contains("--max-pods 6"), "{c:?}");
    assert!(c.mem_available_before_kib.is_some() && c.mem_available_after_kib.is_some());
    assert!(text.contains("ratio runner/baseline") && text.contains("ratio cold/warm"));
}

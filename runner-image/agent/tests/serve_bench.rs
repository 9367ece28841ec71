//! `bench kube-actions` from the agent's tests, where Cargo builds the real
//! `runway` binary: cold `runway kube get` latency and `runway serve`
//! actions/s on a throw-away control plane of its own. Ignored by default
//! (about a minute, and a second control plane on the machine); run with
//! `cargo test -p runway-agent --test serve_bench -- --ignored --nocapture`.

use std::path::Path;

use runway_sandbox::bench::kube_actions::kube_actions;

#[tokio::test]
#[ignore = "a benchmark: starts its own control plane; run explicitly"]
async fn kube_actions_bench() {
    let actions = std::env::var("RUNWAY_BENCH_ACTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let report = kube_actions(Path::new(env!("CARGO_BIN_EXE_runway")), actions)
        .await
        .expect("bench kube-actions");
    print!("{}", report.render());
    // One at a time nothing contends, so every action must succeed. The
    // concurrent run's failures (state ConfigMap conflicts) are reported in
    // the table, not failed on: they are what the benchmark measures.
    assert_eq!(
        report.sequential.failed,
        0,
        "every sequential action succeeded:\n{}",
        report.render()
    );
}

use super::*;

/// The lines of `text` that belong to metric `name` (its samples and its
/// HELP/TYPE lines), in order.
fn lines_of<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            let line = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']))
        })
        .collect()
}

#[test]
fn empty_registry_renders_nothing() {
    assert_eq!(Metrics::new().render(), "");
}

#[test]
fn kube_counters_split_writes_from_reads() {
    let metrics = Metrics::new();
    for (verb, resource) in [
        ("get", "pods"),
        ("list", "pods"),
        ("watch", "pods"),
        ("create", "pods"),
        ("create", "pods"),
        ("update", "runnerscalesets/status"),
        ("patch", "configmaps"),
        ("delete", "pods"),
        ("deletecollection", "pods"),
    ] {
        metrics.kube_request(verb, resource);
    }

    let key = |v: &str, r: &str| (v.to_owned(), r.to_owned());
    assert_eq!(
        metrics.kube_writes(),
        BTreeMap::from([
            (key("create", "pods"), 2),
            (key("delete", "pods"), 1),
            (key("deletecollection", "pods"), 1),
            (key("patch", "configmaps"), 1),
            (key("update", "runnerscalesets/status"), 1),
        ])
    );
    let requests = metrics.kube_requests();
    assert_eq!(requests.values().sum::<u64>(), 9);
    assert_eq!(requests[&key("get", "pods")], 1);
    assert_eq!(requests[&key("create", "pods")], 2);

    let text = metrics.render();
    assert_eq!(
        lines_of(&text, "runway_kube_writes_total"),
        [
            "# HELP runway_kube_writes_total Requests to the Kubernetes API server that change state (create, update, patch, delete, deletecollection), by verb and resource.",
            "# TYPE runway_kube_writes_total counter",
            r#"runway_kube_writes_total{verb="create",resource="pods"} 2"#,
            r#"runway_kube_writes_total{verb="delete",resource="pods"} 1"#,
            r#"runway_kube_writes_total{verb="deletecollection",resource="pods"} 1"#,
            r#"runway_kube_writes_total{verb="patch",resource="configmaps"} 1"#,
            r#"runway_kube_writes_total{verb="update",resource="runnerscalesets/status"} 1"#,
        ]
    );
    assert!(text.contains("runway_kube_requests_total{verb=\"watch\",resource=\"pods\"} 1\n"));
    assert!(!text.contains("runway_kube_writes_total{verb=\"get\""));
}

#[test]
fn github_counter_has_endpoint_and_code() {
    let metrics = Metrics::new();
    metrics.github_request("get_message", 200);
    metrics.github_request("get_message", 200);
    metrics.github_request("get_message", 202);
    metrics.github_request("generate_jit_config", 409);

    assert_eq!(
        lines_of(&metrics.render(), "runway_github_requests_total"),
        [
            "# HELP runway_github_requests_total Responses from GitHub, by endpoint and HTTP status code.",
            "# TYPE runway_github_requests_total counter",
            r#"runway_github_requests_total{endpoint="generate_jit_config",code="409"} 1"#,
            r#"runway_github_requests_total{endpoint="get_message",code="200"} 2"#,
            r#"runway_github_requests_total{endpoint="get_message",code="202"} 1"#,
        ]
    );
    assert_eq!(metrics.github_requests()[&("get_message", 200)], 2);
}

#[test]
fn undecodable_messages_counter_has_a_kind() {
    let metrics = Metrics::new();
    assert!(
        !metrics
            .render()
            .contains("runway_github_messages_undecodable_total")
    );
    metrics.message_undecodable("element");
    metrics.message_undecodable("element");
    metrics.message_undecodable("message");

    assert_eq!(
        lines_of(
            &metrics.render(),
            "runway_github_messages_undecodable_total"
        ),
        [
            "# HELP runway_github_messages_undecodable_total Scale-set queue messages that could not be decoded: kind element (one job message, left out) or message (a whole message, skipped).",
            "# TYPE runway_github_messages_undecodable_total counter",
            r#"runway_github_messages_undecodable_total{kind="element"} 2"#,
            r#"runway_github_messages_undecodable_total{kind="message"} 1"#,
        ]
    );
}

#[test]
fn scale_set_gauges_and_counters() {
    let metrics = Metrics::new();
    let set = metrics.scale_set("ci", "linux");
    set.set_statistics(&ScaleSetStatistics {
        assigned_jobs: 5,
        running_jobs: 3,
        registered_runners: 4,
        busy_runners: 3,
        idle_runners: 1,
    });
    set.set_limits(1, 10);
    set.set_desired_runners(6);
    set.job_started();
    set.job_started();
    set.job_completed();

    let text = metrics.render();
    let labels = r#"{name="linux",namespace="ci"}"#;
    for (metric, value) in [
        ("gha_assigned_jobs", 5),
        ("gha_running_jobs", 3),
        ("gha_registered_runners", 4),
        ("gha_busy_runners", 3),
        ("gha_idle_runners", 1),
        ("gha_min_runners", 1),
        ("gha_max_runners", 10),
        ("gha_desired_runners", 6),
        ("gha_started_jobs_total", 2),
        ("gha_completed_jobs_total", 1),
    ] {
        let lines = lines_of(&text, metric);
        let kind = if metric.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert_eq!(lines.len(), 3, "{metric}: {lines:?}");
        assert!(lines[0].starts_with(&format!("# HELP {metric} ")));
        assert_eq!(lines[1], format!("# TYPE {metric} {kind}"));
        assert_eq!(lines[2], format!("{metric}{labels} {value}"));
    }
    assert_eq!(
        lines_of(&text, "gha_assigned_jobs")[0],
        "# HELP gha_assigned_jobs Number of jobs assigned to this scale set."
    );
}

#[test]
fn unset_gauges_are_absent_but_counters_start_at_zero() {
    let metrics = Metrics::new();
    metrics.scale_set("ci", "linux").set_desired_runners(0);

    let text = metrics.render();
    assert!(lines_of(&text, "gha_min_runners").is_empty());
    assert!(lines_of(&text, "gha_assigned_jobs").is_empty());
    assert!(text.contains("gha_desired_runners{name=\"linux\",namespace=\"ci\"} 0\n"));
    assert!(text.contains("gha_started_jobs_total{name=\"linux\",namespace=\"ci\"} 0\n"));
    assert!(
        text.contains(
            "gha_job_startup_duration_seconds_count{name=\"linux\",namespace=\"ci\"} 0\n"
        )
    );
}

#[test]
fn startup_histogram_is_cumulative_with_arc_buckets() {
    let metrics = Metrics::new();
    let set = metrics.scale_set("ci", "linux");
    set.observe_startup(Duration::from_millis(500)); // le 0.5 (bounds are inclusive)
    set.observe_startup(Duration::from_secs(7)); // le 7
    set.observe_startup(Duration::from_secs(7200)); // +Inf only

    let text = metrics.render();
    let lines = lines_of(&text, "gha_job_startup_duration_seconds_bucket");
    assert_eq!(lines.len(), STARTUP_BUCKETS.len() + 1);
    let l = r#"name="linux",namespace="ci""#;
    for expected in [
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="0.01"}} 0"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="0.1"}} 0"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="0.5"}} 1"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="6"}} 1"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="7"}} 2"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="3600"}} 2"#),
        format!(r#"gha_job_startup_duration_seconds_bucket{{{l},le="+Inf"}} 3"#),
        format!(r#"gha_job_startup_duration_seconds_sum{{{l}}} 7207.5"#),
        format!(r#"gha_job_startup_duration_seconds_count{{{l}}} 3"#),
    ] {
        assert!(
            text.lines().any(|line| line == expected),
            "missing {expected}\n{text}"
        );
    }
    // HELP and TYPE once, before the first bucket.
    let family = lines_of(&text, "gha_job_startup_duration_seconds");
    assert_eq!(
        family,
        [
            "# HELP gha_job_startup_duration_seconds Time spent waiting for workflow job to get started on the runner owned by the scale set (in seconds).",
            "# TYPE gha_job_startup_duration_seconds histogram",
        ]
    );
    let help = text
        .find("# TYPE gha_job_startup_duration_seconds histogram")
        .expect("TYPE line");
    let first_bucket = text
        .find("gha_job_startup_duration_seconds_bucket")
        .expect("a bucket");
    assert!(help < first_bucket);
}

#[test]
fn label_values_are_escaped() {
    let metrics = Metrics::new();
    metrics.scale_set("ns", "a\"b\\c\nd").set_desired_runners(2);
    metrics.kube_request("get", "weird\"res");

    let text = metrics.render();
    assert!(
        text.contains("gha_desired_runners{name=\"a\\\"b\\\\c\\nd\",namespace=\"ns\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("runway_kube_requests_total{verb=\"get\",resource=\"weird\\\"res\"} 1\n")
    );
    // Every sample stays on one line: no raw newline inside a label value.
    for line in text.lines() {
        assert!(
            line.starts_with('#')
                || line
                    .rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
            "bad line {line:?}"
        );
    }
}

#[test]
fn help_text_is_escaped() {
    assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
}

#[test]
fn output_is_sorted_and_stable() {
    let metrics = Metrics::new();
    metrics.kube_request("list", "pods");
    metrics.github_request("get_message", 200);
    metrics.scale_set("b", "z").set_desired_runners(1);
    metrics.scale_set("a", "z").set_desired_runners(2);
    metrics.scale_set("a", "y").set_desired_runners(3);

    let text = metrics.render();
    assert_eq!(text, metrics.render());

    let families: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| line.split(' ').next().unwrap_or_default())
        .collect();
    let mut sorted = families.clone();
    sorted.sort();
    assert_eq!(families, sorted);
    assert_eq!(families.first(), Some(&"gha_completed_jobs_total"));
    assert_eq!(families.last(), Some(&"runway_kube_requests_total"));

    // Series sorted by (namespace, name).
    assert_eq!(
        lines_of(&text, "gha_desired_runners")[2..],
        [
            r#"gha_desired_runners{name="y",namespace="a"} 3"#,
            r#"gha_desired_runners{name="z",namespace="a"} 2"#,
            r#"gha_desired_runners{name="z",namespace="b"} 1"#,
        ]
    );
}

#[test]
fn removed_scale_set_disappears() {
    let metrics = Metrics::new();
    let keep = metrics.scale_set("ci", "keep");
    let gone = metrics.scale_set("ci", "gone");
    keep.set_desired_runners(1);
    gone.set_desired_runners(2);
    gone.job_started();
    gone.observe_startup(Duration::from_secs(3));

    metrics.remove_scale_set("ci", "gone");
    let text = metrics.render();
    assert!(!text.contains("\"gone\""), "{text}");
    assert!(text.contains("gha_desired_runners{name=\"keep\",namespace=\"ci\"} 1\n"));

    // A handle taken before the removal no longer shows up; a new one
    // starts from zero.
    gone.job_started();
    assert!(!metrics.render().contains("\"gone\""));
    metrics.scale_set("ci", "gone");
    assert!(
        metrics
            .render()
            .contains("gha_started_jobs_total{name=\"gone\",namespace=\"ci\"} 0\n")
    );

    // Removing an unknown scale set is a no-op.
    metrics.remove_scale_set("ci", "never");
}

#[test]
fn clones_share_the_registry_across_threads() {
    let metrics = Metrics::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let metrics = metrics.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    metrics.kube_request("create", "pods");
                    metrics.scale_set("ci", "linux").job_completed();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    assert_eq!(
        metrics.kube_writes()[&("create".into(), "pods".into())],
        4000
    );
    assert!(
        metrics
            .render()
            .contains("gha_completed_jobs_total{name=\"linux\",namespace=\"ci\"} 4000\n")
    );
}

fn http_client() -> reqwest::Client {
    // Plain HTTP only, but reqwest (without a default crypto provider here)
    // still wants a TLS configuration.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .expect("a reqwest client")
}

#[tokio::test]
async fn serves_metrics_and_healthz_on_a_free_port() {
    let metrics = Metrics::new();
    metrics.kube_request("list", "pods");
    let server = bind("127.0.0.1:0".parse().expect("address"), metrics.clone())
        .await
        .expect("bind");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    let http = http_client();
    // Counted after the server started: the render is live, not a snapshot.
    metrics.scale_set("ci", "linux").set_desired_runners(4);
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some(CONTENT_TYPE)
    );
    let body = response.text().await.expect("body");
    assert!(body.contains("runway_kube_requests_total{verb=\"list\",resource=\"pods\"} 1\n"));
    assert!(body.contains("gha_desired_runners{name=\"linux\",namespace=\"ci\"} 4\n"));

    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    assert_eq!(health.text().await.expect("body"), "ok");

    let missing = http
        .get(format!("http://{addr}/nope"))
        .send()
        .await
        .expect("GET /nope");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);

    stop.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("server stops after shutdown")
        .expect("server task")
        .expect("server result");
}

#[tokio::test]
async fn bind_reports_the_address_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = bind(addr, Metrics::new())
        .await
        .err()
        .expect("second bind fails");
    assert!(matches!(err, MetricsServerError::Bind { addr: a, .. } if a == addr));
    assert!(err.to_string().contains(&addr.to_string()));
}

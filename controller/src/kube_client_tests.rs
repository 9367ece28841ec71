use super::*;

#[test]
fn classifies_like_the_api_server() {
    let cases: &[(Method, &str, Option<&str>, &str, &str)] = &[
        // core group, namespaced
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods",
            None,
            "list",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods",
            Some("&labelSelector=a%3Db"),
            "list",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods",
            Some("&watch=true&resourceVersion=1"),
            "watch",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods",
            Some("watch=1"),
            "watch",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods",
            Some("watch=false"),
            "list",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods/p-1",
            None,
            "get",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods/p-1",
            Some("watch=true"),
            "get",
            "pods",
        ),
        (
            Method::POST,
            "/api/v1/namespaces/ci/pods",
            None,
            "create",
            "pods",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/ci/pods/p-1",
            None,
            "update",
            "pods",
        ),
        (
            Method::PATCH,
            "/api/v1/namespaces/ci/pods/p-1",
            None,
            "patch",
            "pods",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/ci/pods/p-1",
            None,
            "delete",
            "pods",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/ci/pods",
            None,
            "deletecollection",
            "pods",
        ),
        // subresources
        (
            Method::PATCH,
            "/api/v1/namespaces/ci/pods/p-1/status",
            None,
            "patch",
            "pods/status",
        ),
        (
            Method::POST,
            "/api/v1/namespaces/ci/pods/p-1/eviction",
            None,
            "create",
            "pods/eviction",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods/p-1/log",
            Some("container=runner"),
            "get",
            "pods/log",
        ),
        (
            Method::POST,
            "/api/v1/namespaces/ci/serviceaccounts/default/token",
            None,
            "create",
            "serviceaccounts/token",
        ),
        // cluster-scoped, all namespaces
        (Method::GET, "/api/v1/nodes", None, "list", "nodes"),
        (
            Method::GET,
            "/api/v1/pods",
            Some("watch=true"),
            "watch",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/namespaces",
            None,
            "list",
            "namespaces",
        ),
        (
            Method::POST,
            "/api/v1/namespaces",
            None,
            "create",
            "namespaces",
        ),
        (
            Method::GET,
            "/api/v1/namespaces/ci",
            None,
            "get",
            "namespaces",
        ),
        (
            Method::DELETE,
            "/api/v1/namespaces/ci",
            None,
            "delete",
            "namespaces",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/ci/status",
            None,
            "update",
            "namespaces/status",
        ),
        (
            Method::PUT,
            "/api/v1/namespaces/ci/finalize",
            None,
            "update",
            "namespaces/finalize",
        ),
        // named groups
        (
            Method::GET,
            "/apis/actions.runway.dev/v1alpha1/namespaces/ci/runnerscalesets",
            Some("watch=true"),
            "watch",
            "runnerscalesets",
        ),
        (
            Method::PATCH,
            "/apis/actions.runway.dev/v1alpha1/namespaces/ci/runnerscalesets/linux/status",
            Some("fieldManager=runway"),
            "patch",
            "runnerscalesets/status",
        ),
        (
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/ci/leases/runway",
            None,
            "update",
            "leases",
        ),
        (
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/ci/events",
            None,
            "create",
            "events",
        ),
        (
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.actions.runway.dev",
            None,
            "get",
            "customresourcedefinitions",
        ),
        // legacy verb prefixes
        (
            Method::GET,
            "/api/v1/watch/namespaces/ci/pods",
            None,
            "watch",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/watch/namespaces/ci/pods/p-1",
            None,
            "watch",
            "pods",
        ),
        (
            Method::GET,
            "/api/v1/proxy/namespaces/ci/pods/p-1/some/path",
            None,
            "proxy",
            "pods",
        ),
        // trailing slash
        (
            Method::GET,
            "/api/v1/namespaces/ci/pods/",
            None,
            "list",
            "pods",
        ),
        // not resources: discovery, version, anything else
        (Method::GET, "/api", None, "get", ""),
        (Method::GET, "/api/v1", None, "get", ""),
        (Method::GET, "/apis", None, "get", ""),
        (Method::GET, "/apis/actions.runway.dev", None, "get", ""),
        (
            Method::GET,
            "/apis/actions.runway.dev/v1alpha1",
            None,
            "get",
            "",
        ),
        (Method::GET, "/version", None, "get", ""),
        (Method::GET, "/openapi/v2", None, "get", ""),
        (Method::POST, "/", None, "post", ""),
    ];
    for (method, path, query, verb, resource) in cases {
        assert_eq!(
            classify(method, path, *query),
            RequestKind {
                verb,
                resource: resource.to_string()
            },
            "{method} {path}?{}",
            query.unwrap_or_default()
        );
    }
}

#[test]
fn rate_limit_options() {
    let opts = |qps, burst| KubeClientOptions { qps, burst };
    assert!(limiter(&opts(0.0, 0)).expect("unlimited").is_none());
    assert!(limiter(&opts(-1.0, 10)).expect("unlimited").is_none());
    assert!(
        limiter(&opts(f32::INFINITY, 10))
            .expect("unlimited")
            .is_none()
    );
    assert!(limiter(&opts(50.0, 100)).expect("limited").is_some());
    assert!(limiter(&opts(0.5, 1)).expect("limited").is_some());
    let err = limiter(&opts(5.0, 0)).expect_err("burst 0 rejected");
    assert!(err.to_string().contains("burst"), "{err}");
    assert!(limiter(&opts(f32::NAN, 1)).is_err());
    assert!(limiter(&opts(f32::MIN_POSITIVE, 1)).is_err());
}

#[test]
fn default_options() {
    assert_eq!(
        KubeClientOptions::default(),
        KubeClientOptions {
            qps: 50.0,
            burst: 100
        }
    );
}

/// The sandbox's admin configuration (the shared real control plane).
async fn sandbox_config() -> (runway_sandbox::TestNamespace, kube::Config) {
    let ns = runway_sandbox::test_namespace().await;
    let config = ns
        .plane()
        .admin_config()
        .await
        .expect("sandbox admin config");
    (ns, config)
}

#[tokio::test]
async fn counts_requests_by_verb_and_resource() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

    let (ns, config) = sandbox_config().await;
    let metrics = Metrics::new();
    let client = build(config, &KubeClientOptions::default(), metrics.clone()).expect("client");
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, ns.name());

    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("counted".into()),
            ..Default::default()
        },
        data: Some([("a".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    api.patch(
        "counted",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
    )
    .await
    .expect("patch");
    api.get("counted").await.expect("get");
    api.delete("counted", &DeleteParams::default())
        .await
        .expect("delete");
    api.list(&ListParams::default()).await.expect("list");

    let key = |verb: &str| (verb.to_owned(), "configmaps".to_owned());
    let requests = metrics.kube_requests();
    for verb in ["create", "patch", "get", "delete", "list"] {
        assert_eq!(requests.get(&key(verb)), Some(&1), "{verb}: {requests:?}");
    }
    assert_eq!(requests.values().sum::<u64>(), 5, "{requests:?}");
    assert_eq!(
        metrics.kube_writes(),
        [key("create"), key("delete"), key("patch")]
            .into_iter()
            .map(|k| (k, 1))
            .collect()
    );
    assert!(
        metrics
            .render()
            .contains("runway_kube_writes_total{verb=\"patch\",resource=\"configmaps\"} 1\n")
    );
}

#[tokio::test]
async fn waits_for_tokens_over_the_limit() {
    use k8s_openapi::api::core::v1::Namespace;

    let (ns, config) = sandbox_config().await;
    let metrics = Metrics::new();
    let opts = KubeClientOptions { qps: 5.0, burst: 1 };
    let client = build(config, &opts, metrics.clone()).expect("client");
    let api: kube::Api<Namespace> = kube::Api::all(client);

    // One token at once, then one every 200 ms: ten requests need at
    // least 9 x 200 ms. Only the lower bound is a behaviour; the upper
    // depends on the machine.
    let started = std::time::Instant::now();
    let gets = (0..10).map(|_| api.get(ns.name()));
    for result in futures::future::join_all(gets).await {
        result.expect("get namespace");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1600),
        "10 requests at 5 qps took only {elapsed:?}"
    );
    assert_eq!(
        metrics.kube_requests(),
        [(("get".to_owned(), "namespaces".to_owned()), 10)].into()
    );
}

#[test]
fn only_writes_other_than_leases_are_fenced() {
    let kind = |verb: &'static str, resource: &str| RequestKind {
        verb,
        resource: resource.to_owned(),
    };
    // (verb, resource, fenced)
    let table = [
        ("create", "pods", true),
        ("create", "secrets", true),
        ("patch", "runnerscalesets/status", true),
        ("update", "runnerscalesets", true),
        ("delete", "pods", true),
        ("deletecollection", "pods", true),
        ("create", "events", true),
        ("get", "pods", false),
        ("list", "pods", false),
        ("watch", "pods", false),
        ("create", "leases", false),
        ("update", "leases", false),
        ("get", "", false),
    ];
    for (verb, resource, expected) in table {
        assert_eq!(fenced(&kind(verb, resource)), expected, "{verb} {resource}");
    }
}

#[tokio::test]
async fn a_closed_fence_refuses_writes_after_the_token_wait_but_not_reads() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::PostParams;

    let (ns, config) = sandbox_config().await;
    let metrics = Metrics::new();
    let (open_until, until) =
        tokio::sync::watch::channel(Some(tokio::time::Instant::now() + Duration::from_secs(60)));
    // One token per second, none spare: the second create waits for its
    // token, and the fence closes while it waits.
    let opts = KubeClientOptions { qps: 1.0, burst: 1 };
    let client =
        build_fenced(config, &opts, metrics.clone(), Fence::from_channel(until)).expect("client");
    let api: kube::Api<ConfigMap> = kube::Api::namespaced(client, ns.name());
    let cm = |name: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };

    api.create(&PostParams::default(), &cm("first"))
        .await
        .expect("a write while leading");
    let (params, queued_cm) = (PostParams::default(), cm("queued"));
    let (queued, ()) = tokio::join!(api.create(&params, &queued_cm), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        open_until.send_replace(None);
    });
    let error = queued.expect_err("a write queued while leading, sent after the loss");
    assert!(
        error
            .to_string()
            .contains("no longer holds the leader Lease"),
        "{error}"
    );
    assert!(api.get_opt("queued").await.expect("a read").is_none());
    assert!(api.get_opt("first").await.expect("a read").is_some());
    assert_eq!(
        metrics.kube_writes(),
        [(("create".to_owned(), "configmaps".to_owned()), 1)].into()
    );
}

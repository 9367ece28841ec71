//! ARC's `proxy` setting, against a real forward proxy on 127.0.0.1
//! (`runway_sandbox::http_proxy`) that demands credentials and counts what
//! it carries.
//!
//! The fake GitHub speaks plain HTTP, so the proxy sees every request inside
//! its tunnels: "every call went through the proxy" is `proxy.requests()`
//! equal to the fake's own request count, and with the proxy down or the
//! credentials wrong, the fake sees nothing at all. With TLS (the fake's
//! `tls` option), the proxy sees only tunnels.
//!
//! Two levels: the client with explicit settings, and a `RunnerScaleSet`
//! whose `spec.proxy` (and its credential Secret) `run_scale_set` must apply.

mod common;

use std::time::Duration;

use common::scale_set::{SECRET, WAIT, options};
use common::{
    client_options, client_with, example_app, fake_options, scale_set, scale_set_spec, start_fake,
    start_fake_with,
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use runway_controller::crd::{self, ProxyServer, RunnerScaleSet};
use runway_controller::github::{
    AppIdentifier, ClientOptions, DEFAULT_RUNNER_GROUP_ID, ProxyConfig, ProxySettings,
};
use runway_controller::scale_set::{SupervisorError, Totals, run_scale_set};
use runway_sandbox::github::{FakeApp, FakeGitHub, FakeOptions, NewJob};
use runway_sandbox::http_proxy::HttpProxy;
use runway_sandbox::{TestNamespace, test_namespace, wait};
use tokio::sync::watch;

const USER: &str = "runway";
/// Characters that must be percent-encoded in a URL's user-info.
const PASSWORD: &str = "pr0xy:s3cret@/";
const PROXY_SECRET: &str = "proxy-auth";

/// Every request the fake GitHub received, on any endpoint.
fn github_requests(fake: &FakeGitHub) -> u64 {
    fake.counters().values().sum()
}

async fn proxy() -> HttpProxy {
    HttpProxy::start(Some((USER, PASSWORD)))
        .await
        .expect("the test proxy starts")
}

/// `http://runway:<password>@127.0.0.1:PORT`, the password percent-encoded.
fn with_credentials(url: &str, password: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(USER).unwrap();
    url.set_password(Some(password)).unwrap();
    url.into()
}

/// A port on 127.0.0.1 nothing listens on: the proxy is down.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn proxied(http_url: Option<String>, https_url: Option<String>) -> ClientOptions {
    let mut options = client_options();
    options.transport.proxy = ProxyConfig::Explicit(ProxySettings {
        http_url,
        https_url,
        no_proxy: vec![],
    });
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_of_the_client_goes_through_the_proxy_with_its_credentials() {
    let proxy = proxy().await;
    let fake = start_fake().await;
    fake.add_app(FakeApp::example());
    let url = with_credentials(&proxy.url(), PASSWORD);
    let client = client_with(
        &fake,
        "my-org",
        example_app(AppIdentifier::AppId(FakeApp::example().app_id)),
        proxied(Some(url), None),
    );

    // The installation token and the registration-token exchange (octocrab),
    // then the Actions service.
    let set = scale_set(&client, "proxied").await;
    let session = client.create_session(set.id, "runway-test").await.unwrap();
    fake.queue_job(set.id, NewJob::default());
    client
        .generate_jit_config(set.id, "proxied-runner", "_work")
        .await
        .unwrap();
    client
        .delete_session(set.id, &session.session_id)
        .await
        .unwrap();

    let through_proxy = proxy.requests();
    let reached = github_requests(&fake);
    eprintln!(
        "client: {reached} requests reached GitHub, {through_proxy} through the proxy in {} tunnels",
        proxy.tunnels()
    );
    assert!(reached >= 6, "{:?}", fake.counters());
    assert_eq!(through_proxy, reached, "{:?}", fake.counters());
    assert!(proxy.tunnels() >= 1);
    assert_eq!(proxy.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_proxy_down_calls_fail_and_nothing_reaches_github() {
    let fake = start_fake().await;
    let url = with_credentials(&closed_port_url().await, PASSWORD);
    let client = client_with(&fake, "my-org", common::pat(), proxied(Some(url), None));

    let error = client
        .create_scale_set("unreachable", DEFAULT_RUNNER_GROUP_ID, &[])
        .await
        .unwrap_err();
    let text = format!("{error}\n{error:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert_eq!(github_requests(&fake), 0, "{:?}", fake.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_proxy_credentials_are_refused_and_not_bypassed() {
    let proxy = proxy().await;
    let fake = start_fake().await;
    let url = with_credentials(&proxy.url(), "wrong");
    let client = client_with(&fake, "my-org", common::pat(), proxied(Some(url), None));

    client
        .create_scale_set("refused", DEFAULT_RUNNER_GROUP_ID, &[])
        .await
        .unwrap_err();
    assert!(proxy.refused() >= 1);
    assert_eq!(proxy.tunnels(), 0);
    assert_eq!(github_requests(&fake), 0, "{:?}", fake.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_github_goes_through_the_https_proxy_and_only_it() {
    let proxy = proxy().await;
    let fake = start_fake_with(FakeOptions {
        tls: true,
        ..fake_options()
    })
    .await;
    let ca = fake.ca_cert_pem().expect("a TLS fake has a CA");
    // `http.url` is for http:// GitHub URLs only: down, and never used here.
    let mut options = proxied(
        Some(closed_port_url().await),
        Some(with_credentials(&proxy.url(), PASSWORD)),
    );
    options.transport.extra_root_ca_pem = Some(ca.into_bytes());
    let client = client_with(&fake, "my-org", common::pat(), options);

    let set = scale_set(&client, "over-tls").await;
    client.scale_set(set.id).await.unwrap();
    assert!(proxy.tunnels() >= 1, "no CONNECT reached the proxy");
    assert_eq!(proxy.requests(), 0, "TLS is opaque to the proxy");
    assert_eq!(proxy.refused(), 0);
    assert!(github_requests(&fake) >= 3, "{:?}", fake.counters());
}

// End to end: `spec.proxy` on a RunnerScaleSet.

/// A namespace with the CRD, the GitHub credentials Secret, the proxy's
/// credentials Secret and a fake; the `RunnerScaleSet` `name` carries
/// `proxy`.
async fn stored_with_proxy(
    name: &str,
    proxy: crd::ProxyConfig,
) -> (TestNamespace, FakeGitHub, RunnerScaleSet) {
    let ns = test_namespace().await;
    common::install_crd(&ns.client()).await;
    let fake = start_fake().await;
    let secrets: Api<Secret> = ns.api();
    for (secret, data) in [
        (SECRET, vec![("github_token", common::PAT)]),
        (
            PROXY_SECRET,
            vec![("username", USER), ("password", PASSWORD)],
        ),
    ] {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(secret.into()),
                ..ObjectMeta::default()
            },
            string_data: Some(
                data.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ),
            ..Secret::default()
        };
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create a Secret");
    }
    let mut spec = scale_set_spec(&fake, SECRET, 0, Some(2));
    spec.proxy = Some(proxy);
    let api: Api<RunnerScaleSet> = ns.api();
    let rss = api
        .create(&PostParams::default(), &RunnerScaleSet::new(name, spec))
        .await
        .expect("create the RunnerScaleSet");
    (ns, fake, rss)
}

fn http_proxy(url: String, secret: &str) -> crd::ProxyConfig {
    crd::ProxyConfig {
        http: Some(ProxyServer {
            url,
            credential_secret_ref: Some(secret.into()),
        }),
        ..crd::ProxyConfig::default()
    }
}

/// Runs the scale set until it ends by itself or `within` passes.
async fn run_briefly(
    ns: &TestNamespace,
    rss: RunnerScaleSet,
    within: Duration,
) -> Option<Result<(), SupervisorError>> {
    let (_stop, stop_rx) = watch::channel(false);
    let (totals, _) = watch::channel(Totals::default());
    tokio::time::timeout(
        within,
        run_scale_set(ns.client(), rss, options(totals), stop_rx),
    )
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_set_with_spec_proxy_reaches_github_only_through_it() {
    let proxy = proxy().await;
    let (ns, fake, rss) =
        stored_with_proxy("proxied-e2e", http_proxy(proxy.url(), PROXY_SECRET)).await;
    let (stop, stop_rx) = watch::channel(false);
    let (totals, _) = watch::channel(Totals::default());
    let task = tokio::spawn(run_scale_set(ns.client(), rss, options(totals), stop_rx));

    // Scale set, session, a job: a runner's JIT config.
    let api: Api<RunnerScaleSet> = ns.api();
    let id = wait::until("status.scaleSetId", WAIT, || async {
        api.get("proxied-e2e").await.ok()?.status?.scale_set_id
    })
    .await
    .unwrap();
    fake.queue_job(id, NewJob::default());
    wait::until("a registered runner", WAIT, || async {
        (!fake.snapshot().runners.is_empty()).then_some(())
    })
    .await
    .unwrap();
    stop.send_replace(true);
    task.await
        .expect("run_scale_set does not panic")
        .expect("run_scale_set stops cleanly");

    // A request the proxy counted may still be on its way to the fake.
    let reached = wait::until("the proxy's count to equal GitHub's", WAIT, || async {
        let reached = github_requests(&fake);
        (proxy.requests() == reached).then_some(reached)
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: proxy carried {}, GitHub received {:?}",
            proxy.requests(),
            fake.counters()
        )
    });
    eprintln!(
        "e2e: {reached} requests reached GitHub, {} through the proxy in {} tunnels",
        proxy.requests(),
        proxy.tunnels()
    );
    assert!(reached >= 5, "{:?}", fake.counters());
    assert_eq!(proxy.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_set_whose_proxy_is_down_never_reaches_github() {
    let down = closed_port_url().await;
    let (ns, fake, rss) = stored_with_proxy("proxy-down-e2e", http_proxy(down, PROXY_SECRET)).await;

    let ended = run_briefly(&ns, rss, Duration::from_secs(30)).await;
    assert!(
        matches!(ended, Some(Err(_))),
        "run_scale_set must fail, not bypass the proxy: {ended:?}"
    );
    assert_eq!(github_requests(&fake), 0, "{:?}", fake.counters());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_proxy_secret_is_an_error_naming_the_setting() {
    let proxy = proxy().await;
    let spec = crd::ProxyConfig {
        https: Some(ProxyServer {
            url: proxy.url(),
            credential_secret_ref: Some("absent".into()),
        }),
        ..crd::ProxyConfig::default()
    };
    let (ns, fake, rss) = stored_with_proxy("proxy-secret-e2e", spec).await;

    let ended = run_briefly(&ns, rss, Duration::from_secs(30)).await;
    let Some(Err(error)) = ended else {
        panic!("run_scale_set must fail on a missing proxy Secret: {ended:?}");
    };
    assert_eq!(error.metric_label(), "proxy", "{error}");
    assert!(
        error
            .to_string()
            .starts_with("spec.proxy.https.credentialSecretRef: Secret "),
        "{error}"
    );
    assert_eq!(github_requests(&fake), 0);
    assert_eq!(proxy.tunnels() + proxy.requests(), 0);
}

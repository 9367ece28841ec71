//! `runway serve`, the real binary, against the sandbox's real API server:
//! - requests with a missing, wrong, expired or wrongly signed credential
//!   (and JWTs with the wrong `sub`, HS256, or a too-long `exp`) get 401 and
//!   nothing runs: the target pod is still there and no state is recorded;
//! - a valid bearer token and a valid ES256 JWT each run a `delete_pod`;
//!   the same payload again is `skipped`, also by a restarted server; a bad
//!   payload is 400 naming the field;
//! - two replicas with `--lease`, sent the same payload at once, delete the
//!   pod exactly once; after the leader is SIGKILLed the standby takes over
//!   and the same payload is `skipped`; a restarted replica stands by (503
//!   naming the leader, not ready).
//!
//! HTTP is spoken over a plain TcpStream: the requests are tiny, and it
//! keeps the test free of a TLS-capable client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::PostParams;
use runway_sandbox::{TestNamespace, test_namespace};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const TOKEN: &str = "test-token-0123456789abcdef";
const URN: &str = "urn:runway:runner:test/rs-serve";
const STATE: &str = "runway-kubeactions-state";
const DEADLINE: Duration = Duration::from_secs(20);

/// The files a server reads, and the keys tests sign with.
struct Files {
    _dir: TempDir,
    token: PathBuf,
    allowlist: PathBuf,
    public_key: PathBuf,
    signing: EncodingKey,
    other: EncodingKey,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(ns: &TestNamespace) -> Files {
    let dir = std::env::temp_dir().join(format!("runway-serve-{}", ns.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let allowlist = dir.join("allowlist.yaml");
    std::fs::write(
        &allowlist,
        format!(
            "actions:\n  pods: [get, delete]\nnamespaces: [{}]\n",
            ns.name()
        ),
    )
    .unwrap();
    let public_key = dir.join("dispatcher.pub.pem");
    std::fs::write(&public_key, pair.public_key_pem()).unwrap();
    Files {
        token,
        allowlist,
        public_key,
        signing: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        other: EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap(),
        _dir: TempDir(dir),
    }
}

/// One `runway serve` process; killed when dropped.
struct Serve {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Serve {
    async fn start(ns: &TestNamespace, files: &Files, extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_runway"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--namespace", ns.name()])
            .arg("--token-file")
            .arg(&files.token)
            .arg("--jwt-public-key")
            .arg(&files.public_key)
            .args(["--runner-urn", URN])
            .arg("--allowlist")
            .arg(&files.allowlist)
            .args(extra)
            .env("KUBECONFIG", ns.plane().kubeconfig_path())
            .env("RUNWAY_LOG", "info")
            .env_remove("RUNWAY_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn runway serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.strip_prefix("runway serve: listening on ")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().unwrap());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = match tokio::time::timeout(DEADLINE, addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "runway serve did not print its address; its stderr:\n{}",
                log.lock().unwrap()
            ),
        };
        Serve { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn post(&self, auth: Option<&str>, body: &str) -> Reply {
        request(self.addr, "POST", "/v1/actions", auth, body).await
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, None, "").await
    }

    /// SIGKILL: the process cannot release its Lease.
    fn kill(&mut self) {
        let pid = self.child.id().expect("still running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .expect("SIGKILL");
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(auth) = auth {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the request finished in time")
        .expect("the request");
    let text = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, rest) = text.split_once("\r\n\r\n").expect("a full reply");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
    body
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn bearer(credential: &str) -> String {
    format!("Bearer {credential}")
}

fn jwt(key: &EncodingKey, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap()
}

fn delete_pod_payload(ns: &str, id: &str, pod: &str) -> String {
    json!({"actions": [{
        "metadata": {"id": id, "version": 1},
        "action_type": "delete_pod",
        "resource": {"api_version": "v1", "kind": "Pod", "namespace": ns, "name": pod},
        "timestamp": {"seconds": now(), "nanos": 0},
    }]})
    .to_string()
}

async fn create_pod(ns: &TestNamespace, name: &str) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap();
    let api: Api<Pod> = ns.api();
    api.create(&PostParams::default(), &pod)
        .await
        .expect("create the target pod");
}

async fn pod_exists(ns: &TestNamespace, name: &str) -> bool {
    let api: Api<Pod> = ns.api();
    api.get_opt(name).await.expect("read the pod").is_some()
}

/// Polls until the pod is gone (an unscheduled pod goes at once; the poll
/// only absorbs the API server's latency).
async fn wait_gone(ns: &TestNamespace, name: &str) {
    let start = std::time::Instant::now();
    while pod_exists(ns, name).await {
        assert!(start.elapsed() < DEADLINE, "pod {name} still exists");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state ConfigMap's records (empty when it does not exist).
async fn records(ns: &TestNamespace) -> std::collections::BTreeMap<String, String> {
    let api: Api<ConfigMap> = ns.api();
    api.get_opt(STATE)
        .await
        .expect("read the state ConfigMap")
        .and_then(|cm| cm.data)
        .unwrap_or_default()
}

fn statuses(reply: &Reply) -> Vec<String> {
    reply.json()["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {}", reply.body))
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn bad_credentials_get_401_and_nothing_runs() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "target").await;
    let serve = Serve::start(&ns, &files, &[]).await;
    let payload = delete_pod_payload(ns.name(), "refused", "target");
    let t = now();
    let claims = |sub: &str, iat: i64, exp: i64| json!({"sub": sub, "iat": iat, "exp": exp});
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(URN, t, t + 60),
        &EncodingKey::from_secret(TOKEN.as_bytes()),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "missing"),
        ("wrong token", Some(bearer("not-the-token")), "wrong_token"),
        ("not bearer", Some(format!("Basic {TOKEN}")), "malformed"),
        (
            "expired JWT",
            Some(bearer(&jwt(&files.signing, claims(URN, t - 400, t - 120)))),
            "expired",
        ),
        (
            "JWT signed by another key",
            Some(bearer(&jwt(&files.other, claims(URN, t, t + 60)))),
            "bad_signature",
        ),
        (
            "JWT with the wrong sub",
            Some(bearer(&jwt(&files.signing, claims("urn:other", t, t + 60)))),
            "claims",
        ),
        ("HS256 JWT", Some(bearer(&hs256)), "algorithm"),
        (
            "JWT living over 5 min",
            Some(bearer(&jwt(&files.signing, claims(URN, t, t + 3600)))),
            "lifetime",
        ),
    ];
    for (case, auth, _) in &cases {
        let reply = serve.post(auth.as_deref(), &payload).await;
        assert_eq!(reply.status, 401, "{case}: {reply:?}\n{}", serve.log());
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            "{case}: {reply:?}"
        );
        assert!(reply.json()["error"].is_string(), "{case}: {reply:?}");
    }
    assert!(
        pod_exists(&ns, "target").await,
        "a refused request deleted the pod"
    );
    assert!(
        records(&ns).await.is_empty(),
        "a refused request was recorded"
    );
    let metrics = serve.get("/metrics").await.body;
    for (_, _, reason) in &cases {
        let expected = cases.iter().filter(|(_, _, r)| r == reason).count();
        let line = format!("runway_auth_failures_total{{reason=\"{reason}\"}} {expected}");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(!serve.log().contains(TOKEN), "the token was logged");
}

#[tokio::test]
async fn a_valid_token_or_jwt_runs_the_payload_once() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "by-token").await;
    create_pod(&ns, "by-jwt").await;
    let serve = Serve::start(&ns, &files, &[]).await;
    assert_eq!(serve.get("/liveness").await.status, 200);
    let ready = serve.get("/readiness").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json()["leader"], true);

    let by_token = delete_pod_payload(ns.name(), "tok", "by-token");
    let reply = serve.post(Some(&bearer(TOKEN)), &by_token).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", serve.log());
    assert_eq!(statuses(&reply), ["succeeded"], "{reply:?}");
    wait_gone(&ns, "by-token").await;
    // The audit line names the dispatched action.
    let log = serve.log();
    assert!(
        log.lines().any(|l| l.contains("\"audit\":\"runway.kube\"")
            && l.contains("\"source\":\"payload tok/1\"")),
        "{log}"
    );

    let t = now();
    let token = jwt(
        &files.signing,
        json!({"sub": URN, "iat": t, "exp": t + 240}),
    );
    let by_jwt = delete_pod_payload(ns.name(), "jwt", "by-jwt");
    let reply = serve.post(Some(&bearer(&token)), &by_jwt).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", serve.log());
    assert_eq!(statuses(&reply), ["succeeded"], "{reply:?}");
    wait_gone(&ns, "by-jwt").await;

    // The same (id, version) again: recorded, so skipped.
    let again = serve.post(Some(&bearer(TOKEN)), &by_token).await;
    assert_eq!(statuses(&again), ["skipped"], "{again:?}");
    assert_eq!(records(&ns).await.len(), 2);

    let bad = json!({"actions": [{"metadata": {"id": "x"}, "action_type": "delete_pod"}]});
    let reply = serve.post(Some(&bearer(TOKEN)), &bad.to_string()).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let field = reply.json()["field"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(field.starts_with("actions[0]"), "{reply:?}");

    let metrics = serve.get("/metrics").await.body;
    for line in [
        "runway_actions_total{action_type=\"delete_pod\",status=\"succeeded\"} 2",
        "runway_actions_total{action_type=\"delete_pod\",status=\"skipped\"} 1",
        "runway_action_duration_seconds_count 2",
        "runway_leader 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    // And after a restart: the record is in the ConfigMap, not the process.
    drop(serve);
    let serve = Serve::start(&ns, &files, &[]).await;
    let after_restart = serve.post(Some(&bearer(&token)), &by_jwt).await;
    assert_eq!(statuses(&after_restart), ["skipped"], "{after_restart:?}");
}

/// Polls the replicas' readiness until exactly one is ready; its index.
async fn leader_of(replicas: &[&Serve]) -> usize {
    let start = std::time::Instant::now();
    loop {
        let mut ready = Vec::new();
        for (i, serve) in replicas.iter().enumerate() {
            if serve.get("/readiness").await.status == 200 {
                ready.push(i);
            }
        }
        if let [one] = ready[..] {
            return one;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "ready replicas: {ready:?}; logs:\n{}",
            replicas
                .iter()
                .map(|s| s.log())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn replicas_with_a_lease_execute_once_across_failover_and_restart() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "once").await;
    let lease = ["--lease", "runway-serve", "--lease-duration", "2"];
    let with_id = |id: &'static str| [&lease[..], &["--identity", id]].concat();
    let a = Serve::start(&ns, &files, &with_id("serve-a")).await;
    let b = Serve::start(&ns, &files, &with_id("serve-b")).await;
    let mut replicas = [a, b];
    let first = leader_of(&[&replicas[0], &replicas[1]]).await;
    let leader_id = ["serve-a", "serve-b"][first];

    let payload = delete_pod_payload(ns.name(), "once", "once");
    let auth = bearer(TOKEN);
    let (ra, rb) = tokio::join!(
        replicas[0].post(Some(&auth), &payload),
        replicas[1].post(Some(&auth), &payload)
    );
    let mut succeeded = 0;
    for reply in [&ra, &rb] {
        match reply.status {
            200 => {
                for status in statuses(reply) {
                    assert!(status == "succeeded" || status == "skipped", "{reply:?}");
                    succeeded += usize::from(status == "succeeded");
                }
            }
            503 => {
                assert!(reply.header("retry-after").is_some(), "{reply:?}");
                assert_eq!(reply.json()["leader"], leader_id, "{reply:?}");
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
    }
    assert_eq!(succeeded, 1, "exactly one execution: {ra:?} {rb:?}");
    wait_gone(&ns, "once").await;
    let recorded = records(&ns).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded.values().all(|r| r.contains("succeeded")),
        "{recorded:?}"
    );

    // The leader dies without releasing; the standby takes over once the
    // Lease expires, and the same payload is not run again.
    replicas[first].kill();
    let standby = 1 - first;
    let start = std::time::Instant::now();
    while replicas[standby].get("/readiness").await.status != 200 {
        assert!(
            start.elapsed() < DEADLINE,
            "no takeover:\n{}",
            replicas[standby].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = replicas[standby].post(Some(&auth), &payload).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(statuses(&reply), ["skipped"], "{reply:?}");

    // The dead replica restarts: it stands by, names the leader, is not
    // ready, and runs nothing.
    let restarted = Serve::start(&ns, &files, &with_id(["serve-a", "serve-b"][first])).await;
    let reply = restarted.post(Some(&auth), &payload).await;
    assert_eq!(reply.status, 503, "{reply:?}\n{}", restarted.log());
    assert_eq!(
        reply.json()["leader"],
        ["serve-a", "serve-b"][standby],
        "{reply:?}"
    );
    assert_eq!(restarted.get("/readiness").await.status, 503);
    let recorded = records(&ns).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
}

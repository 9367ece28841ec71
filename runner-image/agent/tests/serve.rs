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
//! - a JWT is good once, and only for the body whose SHA-256 it carries;
//! - a client sending headers a byte a second (or nothing) is cut off after
//!   `--header-timeout` while others are served; `--max-connections` makes
//!   the next connection wait;
//! - 1,000 refused actions leave the state ConfigMap untouched;
//! - `--tls-cert`/`--tls-key` serve HTTPS (a rotated certificate is picked
//!   up without restart, plain HTTP gets no answer); settings that cannot
//!   work exit 2 naming the flag.
//!
//! HTTP is spoken by hand over a TcpStream (or a rustls stream): the
//! requests are tiny, and the slow-client tests need the raw socket.

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
                    let addr = addr.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
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
        let stream = TcpStream::connect(addr).await?;
        exchange(stream, &head(addr, method, path, auth, body), body).await
    };
    let raw = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("the request finished in time")
        .expect("the request");
    parse_reply(raw)
}

/// A request's head, with `Connection: close`.
/// A connection with the head of `POST /v1/actions` (bearer token, the
/// length of `body`) sent and nothing of the body yet.
async fn post_head(addr: SocketAddr, body: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = head(addr, "POST", "/v1/actions", Some(&bearer(TOKEN)), body);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

fn head(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Writes `head` and `body` on `stream`, reads until the server closes.
async fn exchange<S>(mut stream: S, head: &str, body: &str) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(raw)
}

fn parse_reply(raw: Vec<u8>) -> Reply {
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

/// Lowercase hex SHA-256, computed here, not by the crate under test.
fn sha256_hex(body: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A valid JWT for one request: `body` with id `jti`.
fn bound_jwt(files: &Files, jti: &str, body: &str) -> String {
    let t = now();
    jwt(
        &files.signing,
        json!({"sub": URN, "iat": t, "exp": t + 240, "jti": jti, "body_sha256": sha256_hex(body)}),
    )
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

    let by_jwt = delete_pod_payload(ns.name(), "jwt", "by-jwt");
    let token = bound_jwt(&files, "first", &by_jwt);
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
    let token = bound_jwt(&files, "after-restart", &by_jwt);
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

/// The metrics line `runway_auth_failures_total{reason="<reason>"} <n>`.
async fn auth_failures(serve: &Serve, reason: &str) -> u64 {
    let metrics = serve.get("/metrics").await.body;
    let prefix = format!("runway_auth_failures_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_jwt_is_good_once_and_only_for_the_body_it_names() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "named").await;
    create_pod(&ns, "other").await;
    let serve = Serve::start(&ns, &files, &[]).await;
    let named = delete_pod_payload(ns.name(), "named", "named");
    let other = delete_pod_payload(ns.name(), "other", "other");
    let token = bearer(&bound_jwt(&files, "one-request", &named));

    // The token sent with another body: 401, the token is not used up, and
    // nothing runs.
    let reply = serve.post(Some(&token), &other).await;
    assert_eq!(reply.status, 401, "{reply:?}\n{}", serve.log());
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("body_sha256"), "{error}");
    assert_eq!(auth_failures(&serve, "body_hash").await, 1);

    // With its own body it runs.
    let reply = serve.post(Some(&token), &named).await;
    assert_eq!(reply.status, 200, "{reply:?}\n{}", serve.log());
    assert_eq!(statuses(&reply), ["succeeded"], "{reply:?}");
    wait_gone(&ns, "named").await;

    // Replayed, even with the same body: 401 naming `jti`.
    let reply = serve.post(Some(&token), &named).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let error = reply.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("jti"), "{error}");
    assert_eq!(auth_failures(&serve, "replay").await, 1);

    // A JWT without the binding claims is refused before the body is read.
    let t = now();
    let unbound = jwt(&files.signing, json!({"sub": URN, "iat": t, "exp": t + 60}));
    let reply = serve.post(Some(&bearer(&unbound)), &other).await;
    assert_eq!(reply.status, 401, "{reply:?}");

    assert!(pod_exists(&ns, "other").await, "a refused request ran");
    let recorded = records(&ns).await;
    assert_eq!(
        recorded.keys().collect::<Vec<_>>(),
        ["named.v1"],
        "only the accepted request was recorded"
    );
}

/// Sends `text` one byte a second on a new connection; the time from the
/// connection to the server closing it (None: still open at `give_up`).
async fn trickle(addr: SocketAddr, text: &'static str, give_up: Duration) -> Option<Duration> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for byte in text.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Everything sent: keep the connection open (never `\r\n\r\n`).
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(give_up, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    writer.abort();
    closed
}

#[tokio::test]
async fn a_client_sending_headers_a_byte_a_second_is_cut_off_and_others_are_served() {
    let ns = test_namespace().await;
    let files = files(&ns);
    let serve = Serve::start(&ns, &files, &["--header-timeout", "2"]).await;
    let addr = serve.addr;
    let slow = tokio::spawn(trickle(
        addr,
        "POST /v1/actions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n",
        Duration::from_secs(15),
    ));
    // Meanwhile other clients are served at once.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let asked = std::time::Instant::now();
        assert_eq!(serve.get("/liveness").await.status, 200);
        assert!(
            asked.elapsed() < Duration::from_millis(1_500),
            "{:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let closed = slow
        .await
        .unwrap()
        .expect("the slow client was never cut off");
    assert!(
        (Duration::from_millis(1_800)..Duration::from_secs(5)).contains(&closed),
        "cut off after {closed:?}, want about 2 s"
    );
    // An idle connection (no byte at all) is closed as well.
    let idle = trickle(addr, "", Duration::from_secs(15)).await;
    assert!(
        idle.is_some_and(|d| d < Duration::from_secs(5)),
        "idle: {idle:?}"
    );
}

#[tokio::test]
async fn max_connections_makes_the_next_connection_wait() {
    let ns = test_namespace().await;
    let files = files(&ns);
    let serve = Serve::start(
        &ns,
        &files,
        &["--max-connections", "2", "--header-timeout", "60"],
    )
    .await;
    let addr = serve.addr;
    // Two connections that send nothing hold both slots.
    let first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(head(addr, "GET", "/liveness", None, "").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(2), third.read_to_end(&mut raw)).await;
    assert!(
        waited.is_err() && raw.is_empty(),
        "the third connection was served past --max-connections 2: {:?}",
        String::from_utf8_lossy(&raw)
    );
    // One slot frees: the third is served.
    drop(first);
    tokio::time::timeout(DEADLINE, third.read_to_end(&mut raw))
        .await
        .expect("served once a slot freed")
        .unwrap();
    let reply = parse_reply(raw);
    assert_eq!(reply.status, 200, "{reply:?}");
    drop(second);
}

/// `count` actions of one kind of refusal: (action_type, kind, age in
/// seconds).
fn refused_payload(ns: &str, prefix: &str, count: usize, refusal: (&str, &str, i64)) -> String {
    let (action_type, kind, age) = refusal;
    let api_version = if kind == "Deployment" {
        "apps/v1"
    } else {
        "v1"
    };
    let actions: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "metadata": {"id": format!("{prefix}-{i}"), "version": 1},
                "action_type": action_type,
                "resource": {"api_version": api_version, "kind": kind, "namespace": ns, "name": "p"},
                "timestamp": {"seconds": now() - age, "nanos": 0},
            })
        })
        .collect();
    json!({ "actions": actions }).to_string()
}

#[tokio::test]
async fn a_thousand_refused_actions_leave_the_state_configmap_untouched() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "p").await;
    let serve = Serve::start(&ns, &files, &[]).await;
    let auth = bearer(TOKEN);
    // One action that runs, so the ConfigMap exists.
    let get = json!({"actions": [{
        "metadata": {"id": "ran", "version": 1},
        "action_type": "get_pod",
        "resource": {"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"},
        "timestamp": {"seconds": now(), "nanos": 0},
    }]});
    let reply = serve.post(Some(&auth), &get.to_string()).await;
    assert_eq!(statuses(&reply), ["succeeded"], "{reply:?}");
    let api: Api<ConfigMap> = ns.api();
    let before = api.get(STATE).await.unwrap();

    // (action_type, kind, age): denied by the allowlist (pods only), kind
    // mismatch, expired, from the future.
    let refusals = [
        ("delete_config_map", "ConfigMap", 0, "rejected"),
        ("delete_pod", "Deployment", 0, "rejected"),
        ("delete_pod", "Pod", 600, "expired"),
        ("delete_pod", "Pod", -600, "rejected"),
    ];
    for (i, (action_type, kind, age, want)) in refusals.into_iter().enumerate() {
        let body = refused_payload(ns.name(), &format!("r{i}"), 250, (action_type, kind, age));
        let reply = serve.post(Some(&auth), &body).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let got = statuses(&reply);
        assert_eq!(got.len(), 250);
        assert!(
            got.iter().all(|s| s == want),
            "{action_type} {kind} {age}: {got:?}"
        );
    }
    assert!(pod_exists(&ns, "p").await);
    let after = api.get(STATE).await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the state ConfigMap was written"
    );
    assert_eq!(after.data, before.data);
    let metrics = serve.get("/metrics").await.body;
    let line = "runway_actions_total{action_type=\"delete_config_map\",status=\"rejected\"} 250";
    assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
}

/// A self-signed certificate for 127.0.0.1 and its key, in PEM.
fn certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// GET `path` over TLS, trusting only `cert_pem`.
async fn https_get(addr: SocketAddr, cert_pem: &str, path: &str) -> std::io::Result<Reply> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let tls = connector.connect(name, tcp).await?;
        exchange(tls, &head(addr, "GET", path, None, ""), "").await
    };
    let raw = tokio::time::timeout(DEADLINE, exchange)
        .await
        .map_err(std::io::Error::other)??;
    Ok(parse_reply(raw))
}

#[tokio::test]
async fn https_with_a_rotating_certificate_and_no_plain_http() {
    let ns = test_namespace().await;
    let files = files(&ns);
    let dir = files.token.parent().unwrap().to_path_buf();
    let (cert_a, key_a) = certificate();
    let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_path, &cert_a).unwrap();
    std::fs::write(&key_path, &key_a).unwrap();
    let serve = Serve::start(
        &ns,
        &files,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    )
    .await;
    let reply = https_get(serve.addr, &cert_a, "/liveness").await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = async {
        let stream = TcpStream::connect(serve.addr).await?;
        exchange(stream, &head(serve.addr, "GET", "/liveness", None, ""), "").await
    };
    let raw = tokio::time::timeout(DEADLINE, plain)
        .await
        .expect("the server closed the plain connection")
        .unwrap_or_default();
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&raw)
    );

    // The Secret rotates (files replaced by rename, as a Secret's symlink
    // swap): the next connection gets the new certificate, no restart.
    let (cert_b, key_b) = certificate();
    for (path, text) in [(&key_path, &key_b), (&cert_path, &cert_b)] {
        let next = path.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, path).unwrap();
    }
    let reply = https_get(serve.addr, &cert_b, "/liveness").await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        https_get(serve.addr, &cert_a, "/liveness").await.is_err(),
        "the old certificate is still served"
    );
}

#[tokio::test]
async fn tls_settings_that_cannot_work_exit_2_naming_the_flag() {
    let ns = test_namespace().await;
    let files = files(&ns);
    let dir = files.token.parent().unwrap().to_path_buf();
    let (cert_a, _) = certificate();
    let (_, key_b) = certificate();
    let (cert, key) = (dir.join("a.crt"), dir.join("b.key"));
    std::fs::write(&cert, &cert_a).unwrap();
    std::fs::write(&key, &key_b).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // (flags, words stderr must hold)
    let cases: [(Vec<&str>, &[&str]); 3] = [
        (vec!["--tls-cert", cert], &["--tls-key"]),
        (vec!["--tls-key", key], &["--tls-cert"]),
        (
            vec!["--tls-cert", cert, "--tls-key", key],
            &["--tls-key", "does not match", "--tls-cert"],
        ),
    ];
    for (flags, words) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_runway"))
            .args(["serve", "--listen", "127.0.0.1:0", "--namespace", ns.name()])
            .arg("--token-file")
            .arg(&files.token)
            .arg("--allowlist")
            .arg(&files.allowlist)
            .args(&flags)
            .env("KUBECONFIG", ns.plane().kubeconfig_path())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(DEADLINE, out)
            .await
            .expect("runway serve exited")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        for word in words {
            assert!(stderr.contains(word), "{flags:?}: {word} in {stderr}");
        }
    }
}

#[tokio::test]
async fn a_body_slower_than_the_body_timeout_gets_408() {
    let ns = test_namespace().await;
    let files = files(&ns);
    let serve = Serve::start(&ns, &files, &["--body-timeout", "1"]).await;
    let body = delete_pod_payload(ns.name(), "slow", "slow");
    let mut stream = post_head(serve.addr, &body).await;
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answered a stalled body")
        .unwrap();
    let waited = started.elapsed();
    let reply = parse_reply(raw);
    assert_eq!(reply.status, 408, "{reply:?}");
    assert!(
        reply.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("--body-timeout")),
        "{reply:?}"
    );
    assert!(
        (Duration::from_millis(800)..Duration::from_secs(4)).contains(&waited),
        "{waited:?}"
    );
    assert!(records(&ns).await.is_empty());
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_accepts_no_more() {
    let ns = test_namespace().await;
    let files = files(&ns);
    create_pod(&ns, "p").await;
    let mut serve = Serve::start(&ns, &files, &[]).await;
    let body = json!({"actions": [{
        "metadata": {"id": "in-flight", "version": 1},
        "action_type": "get_pod",
        "resource": {"api_version": "v1", "kind": "Pod", "namespace": ns.name(), "name": "p"},
        "timestamp": {"seconds": now(), "nanos": 0},
    }]})
    .to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = post_head(serve.addr, &body).await;
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = serve.child.id().expect("running") as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
    // The listener closes: a new connection is refused.
    let start = std::time::Instant::now();
    while TcpStream::connect(serve.addr).await.is_ok() {
        assert!(start.elapsed() < DEADLINE, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The request in flight still gets its answer.
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("answered")
        .unwrap();
    let reply = parse_reply(raw);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(statuses(&reply), ["succeeded"], "{reply:?}");
    let exited = tokio::time::timeout(DEADLINE, serve.child.wait())
        .await
        .expect("exited after the request")
        .unwrap();
    assert!(exited.success(), "{exited:?}\n{}", serve.log());
}

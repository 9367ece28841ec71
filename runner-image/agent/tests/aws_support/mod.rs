//! Shared by the `aws_*` integration tests: a job's environment in a fresh
//! temp dir (token file, scale-set config, HOME), and the real `runway`
//! binary run against a fake (or moto) STS with backoff shrunk to 1 ms.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};

use runway_sandbox::sts::{FakeSts, LoggedRequest};

pub const GITHUB: &[(&str, &str)] = &[
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_REPOSITORY", "acme/web"),
    ("GITHUB_WORKFLOW", "CI"),
    ("GITHUB_RUN_ID", "9001"),
    ("GITHUB_RUN_NUMBER", "17"),
    ("GITHUB_RUN_ATTEMPT", "1"),
    ("GITHUB_ACTOR", "octocat"),
    ("GITHUB_JOB", "build"),
    ("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567"),
    ("GITHUB_REF", "refs/heads/main"),
    ("GITHUB_REF_NAME", "main"),
    ("GITHUB_EVENT_NAME", "push"),
];

/// Trailing arguments for credentials as JSON on stdout.
pub const JSON: &[&str] = &["--output", "json"];
/// The same, asking for a 2 h session (over the 1 h role-chaining limit).
pub const JSON_FOR_2H: &[&str] = &["--duration", "7200", "--output", "json"];

/// The session name `{workflow}_{run_number}_{job}` renders to for [`GITHUB`].
pub const SESSION_NAME: &str = "CI_17_build";

/// A job step's world: its own directory, removed on drop.
pub struct Job {
    pub dir: PathBuf,
    pub endpoint: String,
    pub role_arn: String,
    extra: Vec<(String, String)>,
    removed: Vec<String>,
}

impl Job {
    /// `config` is the scale set's `aws:` config file text.
    pub fn new(endpoint: &str, role_arn: &str, token: &str, config: &str) -> Job {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runway-aws-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(dir.join("token"), token).unwrap();
        std::fs::write(dir.join("config.yaml"), config).unwrap();
        Job {
            dir,
            endpoint: endpoint.to_string(),
            role_arn: role_arn.to_string(),
            extra: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// A job whose pod identity is IRSA on the fake's `base` role, with a
    /// token the fake minted for `subject`.
    pub fn for_fake(sts: &FakeSts, subject: &str, config: &str) -> Job {
        Job::new(
            &sts.endpoint(),
            &sts.role_arn("base"),
            &sts.mint_web_identity_token(subject),
            config,
        )
    }

    pub fn env(mut self, key: &str, value: &str) -> Job {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }

    /// Leaves a variable out, e.g. `AWS_ROLE_ARN` for a pod without IRSA.
    pub fn without(mut self, key: &str) -> Job {
        self.removed.push(key.to_string());
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Every variable the binary sees (nothing is inherited but PATH).
    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = GITHUB
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = |p: &str| self.dir.join(p).display().to_string();
        vars.extend([
            (
                "PATH".to_string(),
                std::env::var("PATH").unwrap_or_default(),
            ),
            ("HOME".into(), dir("home")),
            ("AWS_ENDPOINT_URL_STS".into(), self.endpoint.clone()),
            ("AWS_ROLE_ARN".into(), self.role_arn.clone()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE".into(), dir("token")),
            ("AWS_REGION".into(), "eu-central-1".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("RUNWAY_AWS_CONFIG".into(), dir("config.yaml")),
            ("RUNWAY_AWS_BACKOFF_BASE_MS".into(), "1".into()),
        ]);
        vars.extend(self.extra.iter().cloned());
        vars.retain(|(k, _)| !self.removed.contains(k));
        vars
    }

    pub async fn runway(&self, args: &[&str]) -> Run {
        let started = std::time::Instant::now();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_runway"))
            .args(args)
            .env_clear()
            .envs(self.vars())
            .output()
            .await
            .expect("run runway");
        Run::new(output, started.elapsed())
    }

    /// `runway aws <command> --role <roles[0]> --role <roles[1]> … <extra…>`.
    pub async fn aws(&self, command: &str, roles: &[&str], extra: &[&str]) -> Run {
        let mut args = vec!["aws", command];
        for role in roles {
            args.extend(["--role", role]);
        }
        args.extend(extra);
        self.runway(&args).await
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: std::time::Duration,
}

impl Run {
    fn new(output: Output, elapsed: std::time::Duration) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed,
        }
    }

    #[track_caller]
    pub fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stderr says `needle`, showing all of stderr when it does not.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "{needle:?} not in stderr:\n{}",
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// The request log, restricted to one action.
pub fn requests(sts: &FakeSts, action: &str) -> Vec<LoggedRequest> {
    sts.requests()
        .into_iter()
        .filter(|r| r.action == action)
        .collect()
}

pub fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

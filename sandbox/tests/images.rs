//! The sandbox's container images: built twice (the second time from the
//! cache), then imported into a throw-away containerd of this test's own and
//! run with `ctr run`, with no network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use runway_sandbox::images::{self, BuiltImage, Imported, Inputs};

/// A folder of this test's own under the system temp dir, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("runway-images-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The `runway` binary if this target dir has one (`cargo build -p runway`);
/// otherwise this crate's own binary, another dynamic Rust program, stands
/// in: what is tested is that its libraries come along.
fn runway_binary() -> PathBuf {
    let sandbox_bin = PathBuf::from(env!("CARGO_BIN_EXE_runway-sandbox"));
    let runway = sandbox_bin.with_file_name("runway");
    if runway.is_file() {
        runway
    } else {
        sandbox_bin
    }
}

fn inputs(cache: &Path) -> Inputs {
    // Until the stand-in runner exists, this crate's binary takes its place.
    let standin = PathBuf::from(env!("CARGO_BIN_EXE_runway-sandbox"));
    let mut inputs = Inputs::new(runway_binary(), standin);
    inputs.cache_dir = cache.to_path_buf();
    let k8s_tree = runway_sandbox::paths::cache_root()
        .join("k8s/src/kubernetes-1.20.2/build/pause/linux/pause.c");
    if !inputs.pause_c.is_file() && k8s_tree.is_file() {
        // install-deps.sh copies pause.c on its next run; the source tree it
        // unpacked has it already.
        inputs.pause_c = k8s_tree;
    }
    inputs
}

fn build_all_twice(cache: &Path) -> Vec<BuiltImage> {
    let inputs = inputs(cache);
    let started = Instant::now();
    let first = images::build_all(&inputs).expect("first build");
    let first_time = started.elapsed();
    let mtimes: Vec<_> = first
        .iter()
        .map(|b| {
            fs::metadata(&b.tarball)
                .expect("tarball")
                .modified()
                .expect("mtime")
        })
        .collect();
    let started = Instant::now();
    let second = images::build_all(&inputs).expect("second build");
    let second_time = started.elapsed();
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert!(!a.cached, "{}: first build in an empty cache", a.name);
        assert!(b.cached, "{}: second build comes from the cache", b.name);
        assert_eq!(a.tarball, b.tarball);
        assert_eq!(a.image_id, b.image_id);
        let mtime = fs::metadata(&b.tarball)
            .expect("tarball")
            .modified()
            .expect("mtime");
        assert_eq!(
            mtime, mtimes[i],
            "{}: the cached tarball was not rewritten",
            b.name
        );
        eprintln!("{}: {} bytes, image id {}", a.name, a.size, a.image_id);
    }
    eprintln!("first build {first_time:?}, second build {second_time:?}");
    let names: Vec<&str> = second.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, images::ALL);
    second
}

#[test]
fn every_image_builds_once_and_then_comes_from_the_cache() {
    let dir = TempDir::new("cache");
    build_all_twice(&dir.0);
}

/// A containerd of this test's own: its root, state, socket and config in a
/// temp dir. Dropping it stops it, its shims and unmounts what it mounted.
struct Containerd {
    dir: TempDir,
    child: Child,
    socket: PathBuf,
}

impl Containerd {
    fn start() -> Self {
        let dir = TempDir::new("containerd");
        let d = &dir.0;
        let socket = d.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  # This machine's root lacks CAP_SYS_RESOURCE: runc cannot lower
  # oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  sandbox_image = "{pause}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
            opt = d.join("opt").display(),
            pause = images::PAUSE,
        );
        fs::write(d.join("config.toml"), config).expect("write config");
        let log = fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let me = Self { dir, child, socket };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if me.socket.exists() && me.ctr(&["version"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.0.join("containerd.log")).unwrap_or_default()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.socket)
            .args(["-n", "k8s.io"])
            .args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ctr")
    }

    /// `ctr run --rm` with no network (a namespace with only loopback).
    fn run(&self, image: &str, id: &str, extra: &[&str], argv: &[&str]) -> Output {
        let id = format!("{id}-{}", std::process::id());
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.push(image);
        args.push(&id);
        args.extend_from_slice(argv);
        self.ctr(&args)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Shims outlive containerd; ours name our socket on their command line.
        let ours = self.socket.to_string_lossy().into_owned();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&ours) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        // Unmount whatever is still mounted below our folder, deepest first.
        let prefix = self.dir.0.to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn images_import_into_containerd_and_run() {
    if !is_root() {
        eprintln!("skipped: running containers with containerd needs root");
        return;
    }
    assert!(
        Path::new("/usr/bin/containerd").is_file(),
        "containerd is not installed; run: bash {}",
        runway_sandbox::paths::install_script().display()
    );
    let cache = TempDir::new("import-cache");
    let built = images::build_all(&inputs(&cache.0)).expect("build");
    let containerd = Containerd::start();

    for image in &built {
        let first = images::import(&containerd.socket, image)
            .unwrap_or_else(|e| panic!("{e}\ncontainerd log:\n{}", containerd.log()));
        assert_eq!(first, Imported::Imported, "{}", image.name);
        let again = images::import(&containerd.socket, image).expect("import again");
        assert_eq!(
            again,
            Imported::AlreadyPresent,
            "{}: listed with its digest",
            image.name
        );
    }

    let base = containerd.run(images::BASE, "base", &[], &["sh", "-c", "echo ok; id -u"]);
    assert!(base.status.success(), "{}", text(&base));
    assert_eq!(
        String::from_utf8_lossy(&base.stdout),
        "ok\n0\n",
        "{}",
        text(&base)
    );

    // The runner image runs as 1001 in /home/runner by its own config.
    let runner = containerd.run(
        images::RUNNER,
        "runner",
        &[],
        &["sh", "-c", "echo ok; id -u; pwd; id -Gn runner"],
    );
    assert!(runner.status.success(), "{}", text(&runner));
    assert_eq!(
        String::from_utf8_lossy(&runner.stdout),
        "ok\n1001\n/home/runner\nrunner docker\n",
        "{}",
        text(&runner)
    );
    // The dynamic binaries found their libraries and loader.
    let help = containerd.run(
        images::RUNNER,
        "runway-help",
        &[],
        &["/usr/local/bin/runway", "--help"],
    );
    assert!(help.status.success(), "{}", text(&help));
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("Usage"),
        "{}",
        text(&help)
    );
    let standin = containerd.run(
        images::RUNNER,
        "run-sh",
        &[],
        &["/home/runner/run.sh", "--help"],
    );
    assert!(
        standin.status.success(),
        "run.sh execs the stand-in: {}",
        text(&standin)
    );

    let pause = containerd.run(images::PAUSE, "pause", &[], &["/pause", "-v"]);
    assert!(pause.status.success(), "{}", text(&pause));
    assert!(
        String::from_utf8_lossy(&pause.stdout).contains("pause"),
        "{}",
        text(&pause)
    );

    // The dind stand-in stays up until SIGTERM, then exits 0.
    let id = format!("dind-{}", std::process::id());
    let mut dind = containerd
        .command(&["run", "--rm", images::DIND, &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ctr run dind");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = containerd.ctr(&["tasks", "ls"]);
        let listing = String::from_utf8_lossy(&tasks.stdout).into_owned();
        if listing
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "dind never ran: {listing}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        dind.try_wait().expect("wait"),
        None,
        "dind stays up until told to stop"
    );
    let kill = containerd.ctr(&["tasks", "kill", "--signal", "SIGTERM", &id]);
    assert!(kill.status.success(), "{}", text(&kill));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = dind.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = containerd.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
            panic!("dind ignored SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = dind.wait_with_output().expect("output");
    assert!(
        status.success(),
        "dind exits 0 on SIGTERM: {status}\n{}",
        text(&out)
    );
}

//! The four images the sandbox's node runs, as layers and run configs.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::archive::RunConfig;
use super::layer::{Layer, Source};
use super::{BASE, DIND, ImageError, Inputs, PAUSE, RUNNER, libs};

/// ARC's runner image runs as `runner`, uid and gid 1001.
pub const RUNNER_UID: u64 = 1001;
/// The `docker` group of ARC's runner image.
pub const DOCKER_GID: u64 = 123;
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
runner:x:1001:1001:runner:/home/runner:/bin/sh\n";
const GROUP: &str = "root:x:0:\n\
docker:x:123:runner\n\
runner:x:1001:\n";

/// The runner pod's command: actions/runner's image starts `run.sh`; ours
/// runs the stand-in runner in its place.
const RUN_SH: &str = "#!/bin/sh\n\
# Stand-in for actions/runner's run.sh: runs Runway's stand-in runner.\n\
exec /usr/local/bin/runway-runner-standin \"$@\"\n";

/// The dind sidecar's stand-in: stays up until SIGTERM, then exits 0, as
/// dockerd does. As PID 1 a shell ignores SIGTERM unless it traps it.
const DIND_ENTRYPOINT: &str = "#!/bin/sh\n\
# Stand-in for docker:dind: keeps the pod's sidecar running until stopped.\n\
trap 'echo \"dind stand-in: stopping\"; exit 0' TERM INT\n\
echo \"dind stand-in: running\"\n\
while :; do sleep 3600 & wait $!; done\n";

/// One image before it is built: its name, its only layer, how it runs.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: &'static str,
    pub layer: Layer,
    pub run: RunConfig,
}

fn bad_path(image: &str) -> impl Fn(String) -> ImageError + '_ {
    move |reason| ImageError::BadPath {
        image: image.to_string(),
        reason,
    }
}

fn require(image: &str, path: &Path, hint: &str) -> Result<(), ImageError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ImageError::MissingInput {
            image: image.to_string(),
            path: path.to_path_buf(),
            hint: hint.to_string(),
        })
    }
}

fn install_hint() -> String {
    format!(
        "install it with: bash {}",
        crate::paths::install_script().display()
    )
}

pub fn spec(name: &str, inputs: &Inputs) -> Result<Spec, ImageError> {
    match name {
        PAUSE => pause(inputs),
        BASE => Ok(Spec {
            name: BASE,
            layer: base_layer(BASE, inputs)?,
            run: RunConfig {
                env: vec![PATH_ENV.into()],
                cmd: vec!["/bin/sh".into()],
                ..Default::default()
            },
        }),
        RUNNER => runner(inputs),
        DIND => dind(inputs),
        other => Err(ImageError::UnknownImage {
            image: other.to_string(),
        }),
    }
}

fn pause(inputs: &Inputs) -> Result<Spec, ImageError> {
    require(PAUSE, &inputs.pause_c, &install_hint())?;
    let mut layer = Layer::new();
    let source = Source::CompiledC {
        source: inputs.pause_c.clone(),
        flags: ["-static", "-O2"].map(String::from).to_vec(),
    };
    layer
        .file("pause", source, 0o755, 0, 0)
        .map_err(bad_path(PAUSE))?;
    Ok(Spec {
        name: PAUSE,
        layer,
        run: RunConfig {
            entrypoint: vec!["/pause".into()],
            env: vec![PATH_ENV.into()],
            ..Default::default()
        },
    })
}

/// busybox-static with its applets, root and `runner`, `/tmp`, a home.
fn base_layer(image: &'static str, inputs: &Inputs) -> Result<Layer, ImageError> {
    require(image, &inputs.busybox, &install_hint())?;
    let bad = bad_path(image);
    let mut layer = Layer::new();
    layer
        .file(
            "bin/busybox",
            Source::Path(inputs.busybox.clone()),
            0o755,
            0,
            0,
        )
        .map_err(&bad)?;
    for applet in applets(image, &inputs.busybox)? {
        if applet != "bin/busybox" {
            layer.symlink(&applet, "/bin/busybox").map_err(&bad)?;
        }
    }
    for dir in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "usr/local/bin",
        "etc",
        "var",
        "proc",
        "sys",
        "dev",
    ] {
        layer.dir(dir, 0o755, 0, 0).map_err(&bad)?;
    }
    layer.dir("root", 0o700, 0, 0).map_err(&bad)?;
    layer.dir("tmp", 0o1777, 0, 0).map_err(&bad)?;
    layer
        .dir("home/runner", 0o755, RUNNER_UID, RUNNER_UID)
        .map_err(&bad)?;
    layer
        .file("etc/passwd", Source::Bytes(PASSWD.into()), 0o644, 0, 0)
        .map_err(&bad)?;
    layer
        .file("etc/group", Source::Bytes(GROUP.into()), 0o644, 0, 0)
        .map_err(&bad)?;
    Ok(layer)
}

/// `busybox --list-full`: one applet path a line (`usr/bin/awk`).
fn applets(image: &str, busybox: &Path) -> Result<Vec<String>, ImageError> {
    let mut cmd = Command::new(busybox);
    cmd.arg("--list-full");
    let stdout = super::run(image, &mut cmd)?;
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Adds `binary` at `at` and every shared library it needs (with the
/// loader) at the absolute path `ldd` names.
fn add_dynamic(layer: &mut Layer, image: &str, binary: &Path, at: &str) -> Result<(), ImageError> {
    layer
        .file(at, Source::Path(binary.to_path_buf()), 0o755, 0, 0)
        .map_err(bad_path(image))?;
    for lib in libs::needed(image, binary)? {
        let path = lib.to_string_lossy().into_owned();
        layer
            .file(&path, Source::Path(lib), 0o755, 0, 0)
            .map_err(bad_path(image))?;
    }
    Ok(())
}

fn runner(inputs: &Inputs) -> Result<Spec, ImageError> {
    let hint = "build it with `cargo build` (bin `runway` of runner-image/agent, bin `runway-runner-standin` of the sandbox crate)";
    require(RUNNER, &inputs.runway, hint)?;
    require(RUNNER, &inputs.runner_standin, hint)?;
    let mut layer = base_layer(RUNNER, inputs)?;
    add_dynamic(&mut layer, RUNNER, &inputs.runway, "usr/local/bin/runway")?;
    add_dynamic(
        &mut layer,
        RUNNER,
        &inputs.runner_standin,
        "usr/local/bin/runway-runner-standin",
    )?;
    layer
        .file(
            "home/runner/run.sh",
            Source::Bytes(RUN_SH.into()),
            0o755,
            RUNNER_UID,
            RUNNER_UID,
        )
        .map_err(bad_path(RUNNER))?;
    Ok(Spec {
        name: RUNNER,
        layer,
        run: RunConfig {
            cmd: vec!["/home/runner/run.sh".into()],
            env: vec![PATH_ENV.into()],
            user: RUNNER_UID.to_string(),
            working_dir: "/home/runner".into(),
            ..Default::default()
        },
    })
}

fn dind(inputs: &Inputs) -> Result<Spec, ImageError> {
    let mut layer = base_layer(DIND, inputs)?;
    layer
        .file(
            "usr/local/bin/dockerd-entrypoint.sh",
            Source::Bytes(DIND_ENTRYPOINT.into()),
            0o755,
            0,
            0,
        )
        .map_err(bad_path(DIND))?;
    Ok(Spec {
        name: DIND,
        layer,
        run: RunConfig {
            entrypoint: vec!["/usr/local/bin/dockerd-entrypoint.sh".into()],
            env: vec![PATH_ENV.into()],
            ..Default::default()
        },
    })
}

/// The default places of the inputs on this machine.
pub fn default_pause_c() -> PathBuf {
    crate::paths::k8s_bin_dir().join("pause.c")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::layer::Kind;

    fn inputs(dir: &Path) -> Inputs {
        // Any dynamic program stands in for the two Rust binaries here.
        let ls = PathBuf::from("/bin/ls");
        Inputs {
            runway: ls.clone(),
            runner_standin: ls,
            pause_c: dir.join("pause.c"),
            busybox: PathBuf::from("/bin/busybox"),
            cache_dir: dir.join("cache"),
        }
    }

    #[test]
    fn runner_layer_has_base_binaries_their_libraries_and_run_sh() {
        let spec = spec(RUNNER, &inputs(Path::new("/nonexistent"))).expect("runner spec");
        let e = spec.layer.entries();
        assert!(matches!(e["bin/busybox"].kind, Kind::File(_)));
        assert_eq!(e["bin/sh"].kind, Kind::Symlink("/bin/busybox".into()));
        assert_eq!((e["tmp"].mode, e["tmp"].uid), (0o1777, 0));
        assert_eq!((e["home/runner"].uid, e["home/runner"].gid), (1001, 1001));
        assert!(e.contains_key("usr/local/bin/runway"));
        assert!(e.contains_key("usr/local/bin/runway-runner-standin"));
        assert!(
            e.keys()
                .any(|k| k.starts_with("lib64/ld-linux") || k.contains("/ld-linux")),
            "the dynamic loader goes in: {:?}",
            e.keys().filter(|k| k.contains("lib")).collect::<Vec<_>>()
        );
        assert!(e.keys().any(|k| k.ends_with("/libc.so.6")));
        let Kind::File(Source::Bytes(run_sh)) = &e["home/runner/run.sh"].kind else {
            panic!("run.sh is not inline bytes");
        };
        assert!(
            String::from_utf8_lossy(run_sh).contains("exec /usr/local/bin/runway-runner-standin")
        );
        assert_eq!(spec.run.user, "1001");
        assert_eq!(spec.run.working_dir, "/home/runner");
        assert_eq!(spec.run.cmd, vec!["/home/runner/run.sh".to_string()]);
    }

    #[test]
    fn passwd_and_group_name_runner_and_docker() {
        assert!(
            PASSWD
                .lines()
                .any(|l| l == "runner:x:1001:1001:runner:/home/runner:/bin/sh")
        );
        assert!(GROUP.lines().any(|l| l.starts_with("docker:x:123:")));
        assert!(GROUP.lines().any(|l| l == "runner:x:1001:"));
    }

    #[test]
    fn pause_without_its_source_says_to_run_the_install_script() {
        let err = spec(PAUSE, &inputs(Path::new("/nonexistent"))).expect_err("no pause.c");
        let message = err.to_string();
        assert!(message.contains("pause.c"), "{message}");
        assert!(message.contains("install-deps.sh"), "{message}");
    }

    #[test]
    fn unknown_image_is_named() {
        let err = spec("runway.local/nope:1", &inputs(Path::new("/x"))).expect_err("unknown");
        assert!(err.to_string().contains("runway.local/nope:1"));
    }
}

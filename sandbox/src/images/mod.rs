//! Container images for the sandbox's real node, built on this machine
//! because nothing can be pulled from a registry, and imported into its
//! containerd.
//!
//! Each image is one layer assembled in Rust (no docker, no buildah) and
//! written as a tarball that is both a docker-archive (`manifest.json`) and
//! an OCI image layout (`index.json`), which `ctr images import` reads. The
//! bytes depend only on the inputs (entries sorted, mtime 0, owners as
//! given), so the same inputs give the same image ID.
//!
//! The images ([`PAUSE`], [`BASE`], [`RUNNER`], [`DIND`]) start from Debian's
//! busybox-static rather than a Debian root filesystem: one 2 MB static
//! program gives `sh` and the usual tools, where a debootstrapped root is
//! ~150 MB, takes minutes and needs dpkg and a package mirror. Dynamic Rust
//! programs go in with the libraries `ldd` names and the dynamic loader.
//!
//! Built tarballs are cached under `~/.cache/runway/images/`, named by the
//! SHA-256 of their inputs (every path, mode and owner, the bytes of every
//! file, the run config): a second build with unchanged inputs only reads
//! and hashes the inputs and writes nothing.

mod archive;
mod catalog;
mod ctr;
mod layer;
mod libs;

use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use archive::RunConfig;
pub use catalog::{DOCKER_GID, RUNNER_UID, Spec};
pub use ctr::{Imported, import, import_with};
pub use layer::{Entry, Kind, Layer, Source};

/// The pod sandbox ("pause") image: `pause.c` of Kubernetes' tree, static.
pub const PAUSE: &str = "runway.local/pause:3.2";
/// busybox-static, `/etc/passwd` with root and `runner` (1001), `/tmp`.
pub const BASE: &str = "runway.local/base:dev";
/// [`BASE`] + `runway` + the stand-in runner + `/home/runner/run.sh`,
/// running as 1001 in `/home/runner` like ARC's runner image.
pub const RUNNER: &str = "runway.local/runner:dev";
/// [`BASE`] + an entrypoint that stays up until SIGTERM: a docker:dind
/// stand-in for the runner pod's sidecar.
pub const DIND: &str = "runway.local/dind:dev";
/// Every image, in build order.
pub const ALL: [&str; 4] = [PAUSE, BASE, RUNNER, DIND];

/// Bump when the way images are written changes, so cached tarballs of the
/// old format are not reused.
const FORMAT: &str = "runway-images/1";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {image}: {path} is missing; {hint}")]
    MissingInput {
        image: String,
        path: PathBuf,
        hint: String,
    },
    #[error("image {image}: cannot read {path}: {source}")]
    Read {
        image: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image {image}: cannot write {path}: {source}")]
    Write {
        image: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("image {image}: cannot add /{entry} to the layer: {source}")]
    LayerEntry {
        image: String,
        entry: String,
        source: std::io::Error,
    },
    #[error("image {image}: cannot run `{command}`: {source}")]
    Spawn {
        image: String,
        command: String,
        source: std::io::Error,
    },
    #[error("image {image}: `{command}` failed ({status}): {stderr}")]
    Command {
        image: String,
        command: String,
        status: String,
        stderr: String,
    },
    #[error("image {image}: {binary} needs {library}, which ldd cannot find on this machine")]
    MissingLibrary {
        image: String,
        binary: PathBuf,
        library: String,
    },
    #[error("image {image}: bad layer entry {reason}")]
    BadPath { image: String, reason: String },
    #[error(
        "image {image}: no such image; the sandbox builds {PAUSE}, {BASE}, {RUNNER} and {DIND}"
    )]
    UnknownImage { image: String },
    #[error("image {image}: no OCI name for this machine's architecture {arch}")]
    Architecture { image: String, arch: &'static str },
}

/// Where the inputs of the images are.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The `runway` binary (runner-image/agent).
    pub runway: PathBuf,
    /// The stand-in runner binary (`runway-runner-standin`).
    pub runner_standin: PathBuf,
    /// Kubernetes' `build/pause/linux/pause.c`, copied by install-deps.sh.
    pub pause_c: PathBuf,
    /// Debian's busybox-static.
    pub busybox: PathBuf,
    /// Where built tarballs are kept.
    pub cache_dir: PathBuf,
}

impl Inputs {
    /// The two Runway binaries given; everything else at its usual place.
    pub fn new(runway: impl Into<PathBuf>, runner_standin: impl Into<PathBuf>) -> Self {
        Self {
            runway: runway.into(),
            runner_standin: runner_standin.into(),
            pause_c: catalog::default_pause_c(),
            busybox: PathBuf::from("/bin/busybox"),
            cache_dir: crate::paths::cache_root().join("images"),
        }
    }
}

/// A built image tarball, ready for [`import`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    pub name: String,
    pub tarball: PathBuf,
    /// The config digest (what `crictl images` shows as IMAGE ID).
    pub image_id: String,
    /// The manifest digest (what `ctr images ls` shows as DIGEST).
    pub manifest_digest: String,
    /// Size of the tarball in bytes.
    pub size: u64,
    /// True when the tarball came from the cache.
    #[serde(skip)]
    pub cached: bool,
}

/// Builds every image (see [`ALL`]).
pub fn build_all(inputs: &Inputs) -> Result<Vec<BuiltImage>, ImageError> {
    ALL.iter().map(|name| build(name, inputs)).collect()
}

/// Builds one image by name, or returns the cached tarball for the same
/// inputs.
pub fn build(name: &str, inputs: &Inputs) -> Result<BuiltImage, ImageError> {
    let spec = catalog::spec(name, inputs)?;
    build_spec(&spec, &inputs.cache_dir)
}

fn oci_arch(image: &str) -> Result<&'static str, ImageError> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("amd64"),
        "aarch64" => Ok("arm64"),
        arch => Err(ImageError::Architecture {
            image: image.to_string(),
            arch,
        }),
    }
}

/// The file-name stem of an image: `runway.local/runner:dev` -> `runner-dev`.
fn stem(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    last.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// An error writing `path` while building `image`.
fn write_error(image: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + use<> {
    let (image, path) = (image.to_string(), path.to_path_buf());
    move |source| ImageError::Write {
        image,
        path,
        source,
    }
}

/// Builds `spec` into `cache_dir`, unless a tarball for the same inputs is
/// there already.
pub fn build_spec(spec: &Spec, cache_dir: &Path) -> Result<BuiltImage, ImageError> {
    let image = spec.name;
    let arch = oci_arch(image)?;
    let mut hasher = Sha256::new();
    hasher.update(FORMAT);
    hasher.update(b"\0");
    hasher.update(image);
    hasher.update(b"\0");
    hasher.update(arch);
    hasher.update(b"\0");
    hasher.update(serde_json::to_vec(&spec.run).unwrap_or_default());
    hasher.update(b"\0");
    spec.layer.input_digest(image, &mut hasher)?;
    let key = archive::hex(&hasher.finalize());
    let prefix = format!("{}-", stem(image));
    let base = format!("{prefix}{key}");
    let tarball = cache_dir.join(format!("{base}.tar"));
    let record = cache_dir.join(format!("{base}.json"));

    if let Some(built) = cached(&tarball, &record) {
        return Ok(built);
    }

    let write_err = |path: &Path| write_error(image, path);
    fs::create_dir_all(cache_dir).map_err(write_err(cache_dir))?;
    let scratch = cache_dir.join(format!(".build-{base}-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(write_err(&scratch))?;
    let result = write_image(spec, arch, &scratch, &tarball, &record);
    let _ = fs::remove_dir_all(&scratch);
    let built = result?;
    prune(cache_dir, &prefix, &base);
    Ok(built)
}

fn cached(tarball: &Path, record: &Path) -> Option<BuiltImage> {
    let text = fs::read(record).ok()?;
    let mut built: BuiltImage = serde_json::from_slice(&text).ok()?;
    let size = fs::metadata(tarball).ok()?.len();
    if size != built.size {
        return None;
    }
    built.tarball = tarball.to_path_buf();
    built.cached = true;
    Some(built)
}

fn write_image(
    spec: &Spec,
    arch: &str,
    scratch: &Path,
    tarball: &Path,
    record: &Path,
) -> Result<BuiltImage, ImageError> {
    let image = spec.name;
    let write_err = |path: &Path| write_error(image, path);
    // The layer goes to a scratch file first: the archive names it by its
    // digest, known only once it is written.
    let layer_path = scratch.join("layer.tar");
    let layer_file = fs::File::options()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&layer_path)
        .map_err(write_err(&layer_path))?;
    let hashing = spec.layer.write_tar(
        image,
        scratch,
        layer::Hashing::new(BufWriter::new(layer_file)),
    )?;
    let layer_blob = archive::LayerBlob {
        digest: format!("sha256:{}", archive::hex(&hashing.hasher.finalize())),
        size: hashing.size,
    };
    let mut layer_file = hashing
        .inner
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(write_err(&layer_path))?;
    layer_file
        .seek(SeekFrom::Start(0))
        .map_err(write_err(&layer_path))?;

    let meta = archive::metadata(image, arch, &spec.run, &layer_blob);
    let partial = scratch.join("image.tar");
    let out = fs::File::create(&partial).map_err(write_err(&partial))?;
    let out = archive::write(
        BufWriter::new(out),
        &meta,
        &layer_blob,
        std::io::BufReader::new(layer_file),
    )
    .map_err(write_err(&partial))?;
    let out = out
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(write_err(&partial))?;
    out.sync_all().map_err(write_err(&partial))?;
    let size = out.metadata().map_err(write_err(&partial))?.len();
    fs::rename(&partial, tarball).map_err(write_err(tarball))?;

    let built = BuiltImage {
        name: image.to_string(),
        tarball: tarball.to_path_buf(),
        image_id: meta.config_digest,
        manifest_digest: meta.manifest_digest,
        size,
        cached: false,
    };
    // The record is written last: a tarball without one is rebuilt.
    let partial_record = scratch.join("record.json");
    let mut f = fs::File::create(&partial_record).map_err(write_err(&partial_record))?;
    f.write_all(&serde_json::to_vec_pretty(&built).unwrap_or_default())
        .map_err(write_err(&partial_record))?;
    fs::rename(&partial_record, record).map_err(write_err(record))?;
    Ok(built)
}

/// Removes older builds of the same image (their inputs changed), so the
/// cache holds one tarball per image. Best effort.
fn prune(cache_dir: &Path, prefix: &str, keep: &str) {
    let Ok(dir) = fs::read_dir(cache_dir) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let is_build = rest.len() == 64 + 4 && (rest.ends_with(".tar") || rest.ends_with(".json"));
        if is_build && !name.starts_with(keep) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Runs a command to completion; its stdout, or a typed error with stderr.
pub(crate) fn run(image: &str, cmd: &mut Command) -> Result<String, ImageError> {
    let command = format!("{cmd:?}").replace('"', "");
    let output = cmd.output().map_err(|source| ImageError::Spawn {
        image: image.to_string(),
        command: command.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(ImageError::Command {
            image: image.to_string(),
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_table() {
        assert_eq!(stem("runway.local/runner:dev"), "runner-dev");
        assert_eq!(stem("runway.local/pause:3.2"), "pause-3.2");
        assert_eq!(stem("plain"), "plain");
    }

    fn tiny(user: &str) -> Spec {
        let mut layer = Layer::new();
        layer
            .file("etc/motd", Source::Bytes(b"hi\n".to_vec()), 0o644, 0, 0)
            .expect("file");
        Spec {
            name: BASE,
            layer,
            run: RunConfig {
                user: user.into(),
                ..Default::default()
            },
        }
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("runway-images-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn second_build_is_a_cache_hit_and_a_changed_input_is_not() {
        let dir = temp_dir("cache");
        let first = build_spec(&tiny("0"), &dir).expect("first");
        assert!(!first.cached);
        let second = build_spec(&tiny("0"), &dir).expect("second");
        assert!(second.cached);
        assert_eq!(first.image_id, second.image_id);
        assert_eq!(first.tarball, second.tarball);
        let third = build_spec(&tiny("1001"), &dir).expect("third");
        assert!(!third.cached);
        assert_ne!(third.image_id, first.image_id);
        assert!(
            !first.tarball.exists(),
            "the older build of the same image is pruned"
        );
        // A fresh build of the same inputs in another folder gives the same
        // bytes: the digest is a function of the inputs alone.
        let other = temp_dir("cache-other");
        let again = build_spec(&tiny("1001"), &other).expect("again");
        assert_eq!(
            fs::read(&again.tarball).expect("a"),
            fs::read(&third.tarball).expect("b")
        );
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&other);
    }
}

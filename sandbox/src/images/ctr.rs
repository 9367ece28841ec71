//! Importing built images into a containerd through its `ctr` client.
//!
//! `ctr -n k8s.io images import` (containerd 1.6) reads the tarball's OCI
//! index, names the image from its `io.containerd.image.name` annotation and
//! unpacks it into the default snapshotter, which the CRI plugin needs to
//! start containers from it. `--all-platforms` is not needed: each image has
//! one manifest, for this machine's platform. The import is skipped when
//! `ctr images ls` lists the name with the manifest digest we built.

use std::path::Path;
use std::process::Command;

use super::{BuiltImage, ImageError};

/// The containerd namespace of the CRI plugin, where the kubelet looks.
pub const NAMESPACE: &str = "k8s.io";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// The image was imported (and unpacked).
    Imported,
    /// containerd had that name at that digest already.
    AlreadyPresent,
}

/// Imports `image` into the containerd listening on `socket`, with the `ctr`
/// on `PATH`.
pub fn import(socket: &Path, image: &BuiltImage) -> Result<Imported, ImageError> {
    import_with(Path::new("ctr"), socket, image)
}

/// [`import`] with a given `ctr` program.
pub fn import_with(ctr: &Path, socket: &Path, image: &BuiltImage) -> Result<Imported, ImageError> {
    let base = |cmd: &mut Command| {
        cmd.arg("--address").arg(socket).args(["-n", NAMESPACE]);
    };
    let mut ls = Command::new(ctr);
    base(&mut ls);
    ls.args(["images", "ls"]);
    let listing = super::run(&image.name, &mut ls)?;
    if listed(&listing, &image.name, &image.manifest_digest) {
        return Ok(Imported::AlreadyPresent);
    }
    let mut cmd = Command::new(ctr);
    base(&mut cmd);
    cmd.args(["images", "import"]).arg(&image.tarball);
    super::run(&image.name, &mut cmd)?;
    Ok(Imported::Imported)
}

/// Whether `ctr images ls` output (REF TYPE DIGEST SIZE PLATFORMS LABELS)
/// lists `name` with `digest`.
pub fn listed(output: &str, name: &str, digest: &str) -> bool {
    output.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let reference = fields.next();
        let digest_field = fields.nth(1);
        reference == Some(name) && digest_field == Some(digest)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LS: &str = "REF                     TYPE                                       DIGEST                                                                  SIZE    PLATFORMS   LABELS \n\
runway.local/base:dev   application/vnd.oci.image.manifest.v1+json sha256:aaaa 1.1 MiB linux/amd64 -      \n\
runway.local/pause:3.2  application/vnd.oci.image.manifest.v1+json sha256:bbbb 300.0 KiB linux/amd64 -\n";

    #[test]
    fn listed_table() {
        let cases = [
            (LS, "runway.local/base:dev", "sha256:aaaa", true),
            (LS, "runway.local/pause:3.2", "sha256:bbbb", true),
            // Same name, another build: import again.
            (LS, "runway.local/base:dev", "sha256:bbbb", false),
            (LS, "runway.local/runner:dev", "sha256:aaaa", false),
            // The header line is not an image.
            (LS, "REF", "DIGEST", false),
            ("", "runway.local/base:dev", "sha256:aaaa", false),
        ];
        for (output, name, digest, want) in cases {
            assert_eq!(listed(output, name, digest), want, "{name} {digest}");
        }
    }
}

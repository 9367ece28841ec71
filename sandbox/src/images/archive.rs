//! The image tarball: a docker-archive (`manifest.json`, the config, one
//! layer) that is also an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`), the way `docker save` writes it since Docker 25.
//! containerd's `ctr images import` reads the OCI side, so the manifest it
//! stores is ours and its digest is known before the import.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub(crate) const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYOUT: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// The creation time of every image: the epoch, so that the same inputs give
/// the same config digest.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// What a container of the image runs, as in the OCI config's `config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunConfig {
    #[serde(rename = "Entrypoint", skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(rename = "Cmd", skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(rename = "User", skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(rename = "WorkingDir", skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
}

#[derive(Serialize)]
struct Config<'a> {
    architecture: &'a str,
    os: &'a str,
    created: &'a str,
    config: &'a RunConfig,
    rootfs: RootFs,
    history: [History<'a>; 1],
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: [String; 1],
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

#[derive(Serialize)]
struct Platform {
    architecture: String,
    os: &'static str,
}

#[derive(Serialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: [Descriptor; 1],
}

#[derive(Serialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: [Descriptor; 1],
}

#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: [&'a str; 1],
    #[serde(rename = "Layers")]
    layers: [String; 1],
}

/// The layer as written, known by its digest and size.
pub struct LayerBlob {
    pub digest: String,
    pub size: u64,
}

/// The small JSON files of the archive and the digests that name the image.
pub struct Metadata {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub index: Vec<u8>,
    pub docker_manifest: Vec<u8>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

/// The config, OCI manifest, OCI index and docker `manifest.json` of an
/// image with one layer. `arch` is the OCI name (`amd64`, `arm64`).
pub fn metadata(name: &str, arch: &str, run: &RunConfig, layer: &LayerBlob) -> Metadata {
    let config = Config {
        architecture: arch,
        os: "linux",
        created: EPOCH,
        config: run,
        rootfs: RootFs {
            kind: "layers",
            diff_ids: [layer.digest.clone()],
        },
        history: [History {
            created: EPOCH,
            created_by: "runway-sandbox images",
        }],
    };
    // Serializing these structs cannot fail: no maps with non-string keys.
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let config_digest = sha256_digest(&config);
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST,
        config: Descriptor {
            media_type: MEDIA_CONFIG,
            digest: config_digest.clone(),
            size: config.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers: [Descriptor {
            media_type: MEDIA_LAYER,
            digest: layer.digest.clone(),
            size: layer.size,
            annotations: BTreeMap::new(),
            platform: None,
        }],
    };
    let manifest = serde_json::to_vec(&manifest).unwrap_or_default();
    let manifest_digest = sha256_digest(&manifest);
    let tag = name
        .rsplit_once(':')
        .map(|(_, tag)| tag)
        .unwrap_or("latest");
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_INDEX,
        manifests: [Descriptor {
            media_type: MEDIA_MANIFEST,
            digest: manifest_digest.clone(),
            size: manifest.len() as u64,
            annotations: BTreeMap::from([
                ("io.containerd.image.name", name.to_string()),
                ("org.opencontainers.image.ref.name", tag.to_string()),
            ]),
            platform: Some(Platform {
                architecture: arch.to_string(),
                os: "linux",
            }),
        }],
    };
    let index = serde_json::to_vec(&index).unwrap_or_default();
    let docker = [DockerManifest {
        config: blob_path(&config_digest),
        repo_tags: [name],
        layers: [blob_path(&layer.digest)],
    }];
    let docker_manifest = serde_json::to_vec(&docker).unwrap_or_default();
    Metadata {
        config,
        config_digest,
        manifest,
        manifest_digest,
        index,
        docker_manifest,
    }
}

/// Writes the archive: its entries in a fixed order, all `0644 root:root`
/// with mtime 0. `layer` yields exactly `layer_blob.size` bytes.
pub fn write<W: Write>(
    out: W,
    meta: &Metadata,
    layer_blob: &LayerBlob,
    layer: impl Read,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    let mut entries: Vec<(String, Box<dyn Read + '_>, u64)> = vec![
        (
            blob_path(&layer_blob.digest),
            Box::new(layer.take(layer_blob.size)),
            layer_blob.size,
        ),
        (
            blob_path(&meta.config_digest),
            Box::new(meta.config.as_slice()),
            meta.config.len() as u64,
        ),
        (
            blob_path(&meta.manifest_digest),
            Box::new(meta.manifest.as_slice()),
            meta.manifest.len() as u64,
        ),
        (
            "index.json".into(),
            Box::new(meta.index.as_slice()),
            meta.index.len() as u64,
        ),
        (
            "manifest.json".into(),
            Box::new(meta.docker_manifest.as_slice()),
            meta.docker_manifest.len() as u64,
        ),
        (
            "oci-layout".into(),
            Box::new(OCI_LAYOUT.as_bytes()),
            OCI_LAYOUT.len() as u64,
        ),
    ];
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, reader, size) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(0o644);
        header.set_size(size);
        tar.append_data(&mut header, path, reader)?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunConfig {
        RunConfig {
            cmd: vec!["/home/runner/run.sh".into()],
            user: "1001".into(),
            working_dir: "/home/runner".into(),
            ..RunConfig::default()
        }
    }

    #[test]
    fn archive_names_the_image_in_both_formats_and_links_its_blobs() {
        let layer_bytes = b"layer bytes".to_vec();
        let blob = LayerBlob {
            digest: sha256_digest(&layer_bytes),
            size: layer_bytes.len() as u64,
        };
        let meta = metadata("runway.local/runner:dev", "amd64", &run(), &blob);
        let tar_bytes = write(Vec::new(), &meta, &blob, layer_bytes.as_slice()).expect("write");

        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(tar_bytes.as_slice());
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            files.insert(path, data);
        }
        // Every blob is stored under its own digest.
        for (path, data) in &files {
            if let Some(hex_name) = path.strip_prefix("blobs/sha256/") {
                assert_eq!(sha256_digest(data), format!("sha256:{hex_name}"), "{path}");
            }
        }
        let docker: serde_json::Value =
            serde_json::from_slice(&files["manifest.json"]).expect("manifest.json");
        assert_eq!(docker[0]["RepoTags"][0], "runway.local/runner:dev");
        let config_path = docker[0]["Config"].as_str().expect("Config");
        let config: serde_json::Value =
            serde_json::from_slice(&files[config_path]).expect("config");
        assert_eq!(config["config"]["User"], "1001");
        assert_eq!(config["config"]["Cmd"][0], "/home/runner/run.sh");
        assert_eq!(config["rootfs"]["diff_ids"][0], blob.digest.as_str());
        assert!(files.contains_key(docker[0]["Layers"][0].as_str().expect("layer")));

        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).expect("index");
        let m = &index["manifests"][0];
        assert_eq!(
            m["annotations"]["io.containerd.image.name"],
            "runway.local/runner:dev"
        );
        assert_eq!(m["annotations"]["org.opencontainers.image.ref.name"], "dev");
        assert_eq!(m["digest"], meta.manifest_digest.as_str());
        let manifest: serde_json::Value =
            serde_json::from_slice(&files[&blob_path(&meta.manifest_digest)]).expect("manifest");
        assert_eq!(manifest["config"]["digest"], meta.config_digest.as_str());
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&files["oci-layout"]).expect("oci-layout"),
            serde_json::json!({"imageLayoutVersion": "1.0.0"})
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_digests_and_a_change_changes_them() {
        let blob = LayerBlob {
            digest: sha256_digest(b"x"),
            size: 1,
        };
        let a = metadata("runway.local/base:dev", "amd64", &run(), &blob);
        let b = metadata("runway.local/base:dev", "amd64", &run(), &blob);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        assert_eq!(a.config_digest, b.config_digest);
        let mut other = run();
        other.user = "0".into();
        let c = metadata("runway.local/base:dev", "amd64", &other, &blob);
        assert_ne!(a.config_digest, c.config_digest);
    }
}

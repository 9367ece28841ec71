//! One image layer as a list of entries (directories, regular files,
//! symlinks), written as a tar that is byte for byte the same for the same
//! entries: sorted by path, mtime 0, the uid/gid and mode given, no user or
//! group names, no extended attributes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// Where the bytes of a regular file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A file on this machine, read when the layer is hashed and written.
    Path(PathBuf),
    /// A C program compiled with `gcc <flags>` when the layer is written; the
    /// layer's input digest covers the flags and the source, not the output.
    CompiledC {
        source: PathBuf,
        flags: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Source),
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// The entries of one layer, keyed by their path relative to the root
/// (`bin/busybox`, no leading slash). Parent directories are added as
/// `0755 root:root` unless given explicitly.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
}

/// Turns `/usr/bin/x` or `usr/bin/x` into `usr/bin/x`; refuses `..`, `.`,
/// empty names and the root itself.
pub(crate) fn normalize(path: &str) -> Result<String, String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return Err("the path names the root, not an entry".to_string());
    }
    if let Some(bad) = parts.iter().find(|p| **p == ".." || **p == ".") {
        return Err(format!("`{bad}` is not allowed in a layer path"));
    }
    Ok(parts.join("/"))
}

impl Layer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    pub fn dir(&mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Result<&mut Self, String> {
        self.insert(
            path,
            Entry {
                kind: Kind::Dir,
                mode,
                uid,
                gid,
            },
        )
    }

    pub fn file(
        &mut self,
        path: &str,
        source: Source,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Result<&mut Self, String> {
        self.insert(
            path,
            Entry {
                kind: Kind::File(source),
                mode,
                uid,
                gid,
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, String> {
        let entry = Entry {
            kind: Kind::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        };
        self.insert(path, entry)
    }

    fn insert(&mut self, path: &str, entry: Entry) -> Result<&mut Self, String> {
        let path = normalize(path).map_err(|reason| format!("{path:?}: {reason}"))?;
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            match self.entries.get(up) {
                Some(Entry {
                    kind: Kind::Dir, ..
                }) => {}
                Some(_) => return Err(format!("{path:?}: its parent {up:?} is not a directory")),
                None => {
                    let dir = Entry {
                        kind: Kind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    };
                    self.entries.insert(up.to_string(), dir);
                }
            }
            parent = up;
        }
        if let Some(old) = self.entries.get(&path)
            && old.kind == Kind::Dir
            && entry.kind != Kind::Dir
            && self
                .entries
                .keys()
                .any(|k| k.starts_with(&format!("{path}/")))
        {
            return Err(format!("{path:?} is a directory with entries under it"));
        }
        self.entries.insert(path, entry);
        Ok(self)
    }

    /// The digest of everything that decides the layer's bytes: every path,
    /// kind, mode, owner, link target, and the bytes of every file (for a
    /// compiled program: its flags and source). Reads the files, writes
    /// nothing.
    pub fn input_digest(&self, image: &str, hasher: &mut Sha256) -> Result<(), ImageError> {
        for (path, entry) in &self.entries {
            hasher.update(path.as_bytes());
            hasher.update(format!(
                "\0{:o}\0{}\0{}\0",
                entry.mode, entry.uid, entry.gid
            ));
            match &entry.kind {
                Kind::Dir => hasher.update(b"dir"),
                Kind::Symlink(target) => {
                    hasher.update(b"symlink\0");
                    hasher.update(target.as_bytes());
                }
                Kind::File(Source::Bytes(bytes)) => {
                    hasher.update(b"file\0");
                    hasher.update(Sha256::digest(bytes));
                }
                Kind::File(Source::Path(file)) => {
                    hasher.update(b"file\0");
                    hasher.update(hash_file(image, file)?);
                }
                Kind::File(Source::CompiledC { source, flags }) => {
                    hasher.update(b"gcc\0");
                    for flag in flags {
                        hasher.update(flag.as_bytes());
                        hasher.update(b"\0");
                    }
                    hasher.update(hash_file(image, source)?);
                }
            }
            hasher.update(b"\n");
        }
        Ok(())
    }

    /// Writes the layer as a tar to `out`. `scratch` is a directory for the
    /// output of compiled programs.
    pub fn write_tar<W: Write>(
        &self,
        image: &str,
        scratch: &Path,
        out: W,
    ) -> Result<W, ImageError> {
        let mut tar = tar::Builder::new(out);
        for (path, entry) in &self.entries {
            let write_err = |source: io::Error| ImageError::LayerEntry {
                image: image.to_string(),
                entry: path.clone(),
                source,
            };
            let mut header = tar::Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(entry.uid);
            header.set_gid(entry.gid);
            header.set_mode(entry.mode);
            match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    tar.append_data(&mut header, format!("{path}/"), io::empty())
                        .map_err(write_err)?;
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target)
                        .map_err(write_err)?;
                }
                Kind::File(source) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    let (size, reader): (u64, Box<dyn Read>) = match source {
                        Source::Bytes(bytes) => (bytes.len() as u64, Box::new(bytes.as_slice())),
                        Source::Path(file) => open_sized(image, file)?,
                        Source::CompiledC { source, flags } => {
                            let binary = compile(image, source, flags, scratch, path)?;
                            open_sized(image, &binary)?
                        }
                    };
                    header.set_size(size);
                    // `take` keeps the entry at the size in its header even
                    // if the file grew since.
                    tar.append_data(&mut header, path, reader.take(size))
                        .map_err(write_err)?;
                }
            }
        }
        tar.into_inner().map_err(|source| ImageError::LayerEntry {
            image: image.to_string(),
            entry: "(end of the layer)".to_string(),
            source,
        })
    }
}

fn open_sized(image: &str, file: &Path) -> Result<(u64, Box<dyn Read>), ImageError> {
    let read_err = |source| ImageError::Read {
        image: image.to_string(),
        path: file.to_path_buf(),
        source,
    };
    let handle = File::open(file).map_err(read_err)?;
    let size = handle.metadata().map_err(read_err)?.len();
    Ok((size, Box::new(io::BufReader::new(handle))))
}

/// The SHA-256 of a file's bytes, read in blocks.
pub(crate) fn hash_file(image: &str, file: &Path) -> Result<[u8; 32], ImageError> {
    let read_err = |source| ImageError::Read {
        image: image.to_string(),
        path: file.to_path_buf(),
        source,
    };
    let mut handle = File::open(file).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = handle.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hasher.finalize().into())
}

fn compile(
    image: &str,
    source: &Path,
    flags: &[String],
    scratch: &Path,
    entry: &str,
) -> Result<PathBuf, ImageError> {
    let out = scratch.join(entry.replace('/', "_"));
    let mut cmd = Command::new("gcc");
    cmd.args(flags).arg("-o").arg(&out).arg(source);
    super::run(image, &mut cmd)?;
    Ok(out)
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct Hashing<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub size: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or_default();
        self.hasher.update(written);
        self.size = self.size.saturating_add(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry of a tar as read back.
    struct ReadBack {
        path: String,
        kind: tar::EntryType,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: String,
        data: Vec<u8>,
    }

    fn read_back(tar_bytes: &[u8]) -> Vec<ReadBack> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let header = entry.header().clone();
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            let link = entry
                .link_name()
                .expect("link")
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("data");
            out.push(ReadBack {
                path,
                kind: header.entry_type(),
                mode: header.mode().expect("mode"),
                uid: header.uid().expect("uid"),
                gid: header.gid().expect("gid"),
                mtime: header.mtime().expect("mtime"),
                link,
                data,
            });
        }
        out
    }

    fn sample() -> Layer {
        let mut layer = Layer::new();
        layer
            .file(
                "/usr/local/bin/tool",
                Source::Bytes(b"#!/bin/sh\n".to_vec()),
                0o755,
                0,
                0,
            )
            .expect("file");
        layer.dir("/home/runner", 0o755, 1001, 1001).expect("dir");
        layer.dir("tmp", 0o1777, 0, 0).expect("dir");
        layer.symlink("bin/sh", "/bin/busybox").expect("link");
        layer
    }

    #[test]
    fn normalize_table() {
        let cases = [
            ("/bin/sh", Ok("bin/sh")),
            ("bin//sh/", Ok("bin/sh")),
            ("/", Err(())),
            ("", Err(())),
            ("bin/../etc", Err(())),
            ("./bin", Err(())),
        ];
        for (input, want) in cases {
            let got = normalize(input).map_err(|_| ());
            assert_eq!(got.as_deref(), want.as_ref().map(|s| *s), "{input:?}");
        }
    }

    #[test]
    fn layer_holds_files_dirs_and_symlinks_with_their_modes_and_owners() {
        let bytes = sample()
            .write_tar("test", Path::new("/nonexistent"), Vec::new())
            .expect("tar");
        let got = read_back(&bytes);
        let summary: Vec<(String, tar::EntryType, u32, u64, u64)> = got
            .iter()
            .map(|e| (e.path.clone(), e.kind, e.mode, e.uid, e.gid))
            .collect();
        use tar::EntryType::{Directory, Regular, Symlink};
        assert_eq!(
            summary,
            vec![
                ("bin/".into(), Directory, 0o755, 0, 0),
                ("bin/sh".into(), Symlink, 0o777, 0, 0),
                ("home/".into(), Directory, 0o755, 0, 0),
                ("home/runner/".into(), Directory, 0o755, 1001, 1001),
                ("tmp/".into(), Directory, 0o1777, 0, 0),
                ("usr/".into(), Directory, 0o755, 0, 0),
                ("usr/local/".into(), Directory, 0o755, 0, 0),
                ("usr/local/bin/".into(), Directory, 0o755, 0, 0),
                ("usr/local/bin/tool".into(), Regular, 0o755, 0, 0),
            ]
        );
        assert!(got.iter().all(|e| e.mtime == 0), "every mtime is 0");
        let link = got.iter().find(|e| e.path == "bin/sh").expect("bin/sh");
        assert_eq!(link.link, "/bin/busybox");
        let tool = got
            .iter()
            .find(|e| e.path == "usr/local/bin/tool")
            .expect("tool");
        assert_eq!(tool.data, b"#!/bin/sh\n");
    }

    #[test]
    fn same_entries_in_any_order_give_the_same_bytes_and_digest() {
        let a = sample()
            .write_tar("test", Path::new("/x"), Vec::new())
            .expect("a");
        let mut reversed = Layer::new();
        reversed.symlink("bin/sh", "/bin/busybox").expect("link");
        reversed.dir("tmp", 0o1777, 0, 0).expect("dir");
        reversed.dir("home/runner", 0o755, 1001, 1001).expect("dir");
        reversed
            .file(
                "usr/local/bin/tool",
                Source::Bytes(b"#!/bin/sh\n".to_vec()),
                0o755,
                0,
                0,
            )
            .expect("file");
        let b = reversed
            .write_tar("test", Path::new("/x"), Vec::new())
            .expect("b");
        assert_eq!(Sha256::digest(&a), Sha256::digest(&b));

        let digest = |layer: &Layer| {
            let mut h = Sha256::new();
            layer.input_digest("test", &mut h).expect("digest");
            h.finalize()
        };
        assert_eq!(digest(&sample()), digest(&reversed));
        let mut changed = sample();
        changed.dir("home/runner", 0o755, 1002, 1001).expect("dir");
        assert_ne!(
            digest(&sample()),
            digest(&changed),
            "an owner change changes the digest"
        );
    }

    #[test]
    fn a_missing_file_is_named_with_its_image() {
        let mut layer = Layer::new();
        let missing = PathBuf::from("/nonexistent/runway-images/tool");
        layer
            .file("bin/tool", Source::Path(missing), 0o755, 0, 0)
            .expect("file");
        let err = layer
            .input_digest("runway.local/x:1", &mut Sha256::new())
            .expect_err("missing");
        let message = err.to_string();
        assert!(message.contains("runway.local/x:1"), "{message}");
        assert!(
            message.contains("/nonexistent/runway-images/tool"),
            "{message}"
        );
        let err = layer
            .write_tar("runway.local/x:1", Path::new("/x"), Vec::new())
            .expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/runway-images/tool"),
            "{err}"
        );
    }

    #[test]
    fn a_file_below_a_file_is_refused() {
        let mut layer = Layer::new();
        layer
            .file("bin", Source::Bytes(vec![]), 0o644, 0, 0)
            .expect("file");
        assert!(layer.symlink("bin/sh", "/bin/busybox").is_err());
    }
}

//! The shared libraries a dynamic program needs, as `ldd` reports them, so
//! that it runs in an image that has no C library of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImageError;

/// What one `ldd` output says.
#[derive(Debug, PartialEq, Eq)]
pub enum Needed {
    /// Absolute paths of the libraries and of the dynamic loader.
    Paths(Vec<PathBuf>),
    /// A library the loader cannot find on this machine.
    NotFound(String),
}

/// Reads `ldd`'s output: `libc.so.6 => /lib/.../libc.so.6 (0x...)` lines,
/// the loader as `/lib64/ld-linux-x86-64.so.2 (0x...)`, the vDSO (no file)
/// skipped, and "statically linked" / "not a dynamic executable" as none.
pub fn parse_ldd(output: &str) -> Needed {
    let mut paths = Vec::new();
    for line in output.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some((name, target)) = line.split_once("=>") {
            let target = target.trim();
            if target.starts_with("not found") {
                return Needed::NotFound(name.trim().to_string());
            }
            if let Some(path) = target
                .split_whitespace()
                .next()
                .filter(|p| p.starts_with('/'))
            {
                paths.push(PathBuf::from(path));
            }
        } else if let Some(path) = line
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            paths.push(PathBuf::from(path));
        }
    }
    paths.sort();
    paths.dedup();
    Needed::Paths(paths)
}

/// The libraries and loader `binary` needs, by absolute path on this machine.
pub fn needed(image: &str, binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let command = format!("ldd {}", binary.display());
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|source| ImageError::Spawn {
            image: image.to_string(),
            command: command.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // ldd exits 1 for a static program; that is not an error here.
    if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        return Err(ImageError::Command {
            image: image.to_string(),
            command,
            status: output.status.to_string(),
            stderr: stderr.trim().to_string(),
        });
    }
    match parse_ldd(&stdout) {
        Needed::Paths(paths) => Ok(paths),
        Needed::NotFound(library) => Err(ImageError::MissingLibrary {
            image: image.to_string(),
            binary: binary.to_path_buf(),
            library,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_table() {
        let p = |v: &[&str]| Needed::Paths(v.iter().map(PathBuf::from).collect());
        let cases = [
            (
                "\tlinux-vdso.so.1 (0x00007ffc8a5f2000)\n\
                 \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f08608f8000)\n\
                 \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f085ed3e000)\n\
                 \t/lib64/ld-linux-x86-64.so.2 (0x00007f086092b000)\n",
                p(&[
                    "/lib/x86_64-linux-gnu/libc.so.6",
                    "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                    "/lib64/ld-linux-x86-64.so.2",
                ]),
            ),
            ("\tstatically linked\n", p(&[])),
            ("", p(&[])),
            // Some ldd versions print the vDSO with an empty target.
            ("\tlinux-vdso.so.1 =>  (0x00007ffc8a5f2000)\n", p(&[])),
            (
                "\tlibfoo.so.2 => not found\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
                Needed::NotFound("libfoo.so.2".into()),
            ),
            // The same library twice (two names, one file) goes in once.
            (
                "\tlibc.so.6 => /lib/libc.so.6 (0x1)\n\tlibc.so.6 => /lib/libc.so.6 (0x1)\n",
                p(&["/lib/libc.so.6"]),
            ),
        ];
        for (output, want) in cases {
            assert_eq!(parse_ldd(output), want, "{output:?}");
        }
    }
}

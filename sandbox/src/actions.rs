//! The repository's reusable GitHub actions (`workflows/actions/<name>`) as
//! tests check them: `action.yml` parsed, its step's script, the linters
//! (action-validator, shellcheck; install-deps.sh installs both), and the
//! pieces a test needs to run the step as GitHub runs a bash step: a scratch
//! folder, executables on PATH, and `$GITHUB_OUTPUT` read as GitHub reads it.
//!
//! Tests are its only users, so a missing tool or file panics with what to
//! run, like [`crate::testing`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// One reusable action's `action.yml`.
pub struct ActionFile {
    pub path: PathBuf,
    pub yaml: Value,
}

/// `workflows/actions/<name>/action.yml`, parsed.
pub fn load(name: &str) -> ActionFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workflows/actions")
        .join(name)
        .join("action.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let yaml = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    ActionFile { path, yaml }
}

impl ActionFile {
    /// The composite action's (first) step.
    pub fn step(&self) -> &Value {
        &self.yaml["runs"]["steps"][0]
    }

    /// The step's `run:` script.
    pub fn script(&self) -> &str {
        self.step()["run"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: the step has no run script", self.path.display()))
    }

    /// action-validator's verdict on the file: Err with its report.
    pub fn validate(&self) -> Result<(), String> {
        let out = Command::new(action_validator())
            .arg(&self.path)
            .output()
            .expect("run action-validator");
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "action-validator refuses {}:\n{}{}",
            self.path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// shellcheck's verdict on the step's script (as bash, every severity):
    /// Err with its findings.
    pub fn shellcheck(&self) -> Result<(), String> {
        let dir = ScratchDir::new("shellcheck");
        let script = dir.path().join("step.sh");
        std::fs::write(&script, self.script()).expect("write the step script");
        let out = Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .arg(&script)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run shellcheck ({e}); run `bash sandbox/scripts/install-deps.sh`")
            });
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "shellcheck finds:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// action-validator from where install-deps.sh installs it, else PATH.
pub fn action_validator() -> PathBuf {
    let installed = crate::paths::cache_root().join("tools/bin/action-validator");
    if installed.is_file() {
        return installed;
    }
    on_path("action-validator").unwrap_or_else(|| {
        panic!(
            "action-validator is not installed ({} nor on PATH); run `bash sandbox/scripts/install-deps.sh`",
            installed.display()
        )
    })
}

/// `tool` as the shell would find it on PATH.
pub fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|f| f.is_file())
}

/// `$GITHUB_OUTPUT` as GitHub reads it: `name=value` lines and
/// `name<<DELIMITER` ... `DELIMITER` blocks.
pub fn parse_github_output(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((name, value)) = line.split_once('=') {
            out.insert(name.to_string(), value.to_string());
        }
    }
    out
}

/// Writes an executable script (a stand-in command) to `path`.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// A fresh temporary folder, removed when dropped (also when a test fails).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(purpose: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!(
            "runway-{purpose}-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        ScratchDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_output_reads_lines_and_delimited_blocks() {
        let out = parse_github_output("a=1\nresult<<EOF_x\n{\n  \"k\": 1\n}\nEOF_x\nb=x=y\n");
        assert_eq!(out["a"], "1");
        assert_eq!(out["result"], "{\n  \"k\": 1\n}");
        assert_eq!(out["b"], "x=y");
        assert_eq!(out.len(), 3);
    }
}

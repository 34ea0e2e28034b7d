//! Writing handoffs and the report under the run directory, atomically.
//!
//! A later process (or a later command) may read `<run_dir>/handoff/<phase>.json`
//! while the run goes on, so every file appears whole or not at all (temp + rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where the handoff of `phase` goes. Phase names are validated to `[A-Za-z0-9_-]+`,
/// so the name cannot escape the directory.
pub fn handoff_path(run_dir: &Path, phase: &str) -> PathBuf {
    run_dir.join("handoff").join(format!("{phase}.json"))
}

/// Where the whole report goes.
pub fn report_path(run_dir: &Path) -> PathBuf {
    run_dir.join("pipeline.json")
}

/// Serializes `value` as JSON (one line, trailing newline) to `path` via a temp file
/// in the same directory, creating the directory if needed.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let describe =
        |what: &str, e: &dyn std::fmt::Display| format!("cannot {what} {}: {e}", path.display());
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| describe("create the directory of", &e))?;
    let mut bytes = serde_json::to_vec(value).map_err(|e| describe("serialize", &e))?;
    bytes.push(b'\n');
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(describe("write", &e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_file_and_creates_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = handoff_path(dir.path(), "build");
        write_json_atomic(&path, &serde_json::json!({"a": 1})).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("build.json")]);
    }

    #[test]
    fn reports_unwritable_destination() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be.
        std::fs::write(dir.path().join("handoff"), b"x").unwrap();
        let err = write_json_atomic(&handoff_path(dir.path(), "b"), &1).unwrap_err();
        assert!(err.starts_with("cannot create the directory of"), "{err}");
    }
}

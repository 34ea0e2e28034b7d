//! Tests for the policy module as a whole: files on disk in temp dirs,
//! resolved through the public API.

mod builtins;
mod errors;
mod floor;
mod overrides;
mod resolution;

use std::path::PathBuf;

use tempfile::TempDir;

use super::*;

/// A temp dir with a host policy directory and a floor path in it.
pub(super) struct Fx {
    pub dir: TempDir,
    pub sources: PolicySources,
}

impl Fx {
    pub fn new() -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        let sources = PolicySources::new(host, dir.path().join("floor.toml"));
        Fx { dir, sources }
    }

    /// Writes a host policy `NAME.toml`.
    pub fn host(&self, name: &str, text: &str) -> PathBuf {
        let path = self.sources.host_dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes a file in the temp dir and returns its path as a string.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    pub fn load(&self, text: &str) -> Result<Policy, PolicyError> {
        let path = self.file("p.toml", text);
        resolve(&path, &self.sources)
    }

    pub fn err(&self, text: &str) -> PolicyError {
        match self.load(text) {
            Ok(p) => panic!("expected an error, got policy {p:?}"),
            Err(e) => e,
        }
    }

    pub fn builtin(&self, name: &str) -> Policy {
        resolve(name, &self.sources).unwrap()
    }
}

pub(super) fn vars() -> PathVars {
    PathVars {
        cwd: "/work/app".into(),
        home: "/home/dev".into(),
        job_dir: "/state/jobs/j1".into(),
        tmpdir: "/tmp".into(),
    }
}

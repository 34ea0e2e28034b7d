//! Runs one operation as a child `agent-exec` and takes its JSON answer.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;

use super::operations::Invocation;
use crate::response::{error_response, AppError, ErrorCode};

/// Where the child finds the store: the front end's own `--root`, if given
/// (else the child reads the same environment the front end did).
#[derive(Debug, Clone)]
pub struct OwnCli {
    exe: PathBuf,
    root: Option<PathBuf>,
}

/// The child's answer: its JSON, and whether it reported success.
pub struct Answer {
    pub json: Value,
    pub ok: bool,
}

impl OwnCli {
    pub fn new(root: Option<PathBuf>) -> std::io::Result<OwnCli> {
        Ok(OwnCli {
            exe: std::env::current_exe()?,
            root,
        })
    }

    /// Runs `invocation`; never fails: a child that cannot be run, or that
    /// printed no JSON, becomes an error answer.
    pub async fn call(&self, invocation: &Invocation) -> Answer {
        match self.try_call(invocation).await {
            Ok(answer) => answer,
            Err(e) => failure(ErrorCode::Internal, e),
        }
    }

    async fn try_call(&self, invocation: &Invocation) -> Result<Answer, String> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(root) = &self.root {
            args.push("--root".into());
            args.push(root.into());
        }
        // The job's environment and stdin go in files only we can read:
        // a command line is public to every local user.
        if invocation.args.iter().any(|a| a.contains('\0')) {
            return Ok(failure(
                ErrorCode::InvalidArgument,
                "a value holds a NUL byte".into(),
            ));
        }
        let private = if invocation.env.is_empty()
            && invocation.stdin.is_none()
            && invocation.masks.is_empty()
            && invocation.pipeline.is_none()
        {
            None
        } else {
            Some(PrivateDir::new().map_err(|e| format!("cannot make a private directory: {e}"))?)
        };
        let mut inv_args = invocation
            .args
            .iter()
            .map(OsString::from)
            .collect::<Vec<_>>();
        if let Some(dir) = &private {
            let mut extra: Vec<OsString> = Vec::new();
            if !invocation.env.is_empty() {
                // JSON: every key and value exactly as asked.
                let map: serde_json::Map<String, Value> = invocation
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let path = dir.write("env.json", Value::Object(map).to_string().as_bytes())?;
                extra.extend(["--env-json".into(), path.into_os_string()]);
            }
            if !invocation.masks.is_empty() {
                let list = serde_json::to_vec(&invocation.masks).unwrap_or_default();
                let path = dir.write("masks.json", &list)?;
                extra.extend(["--mask-json".into(), path.into_os_string()]);
            }
            if let Some(stdin) = &invocation.stdin {
                let path = dir.write("stdin", stdin.as_bytes())?;
                extra.extend(["--stdin-file".into(), path.into_os_string()]);
            }
            if let Some(yaml) = &invocation.pipeline {
                let path = dir.write("pipeline.yaml", yaml.as_bytes())?;
                extra.push(path.into_os_string());
            }
            // A pipeline file is the last argument (after `--`); the rest
            // go after the subcommand's name, before its other flags.
            if invocation.pipeline.is_some() {
                inv_args.extend(extra);
            } else {
                let at = 1.min(inv_args.len());
                inv_args.splice(at..at, extra);
            }
        }
        args.extend(inv_args);
        let mut command = tokio::process::Command::new(&self.exe);
        if let Some(cwd) = &invocation.cwd {
            command.current_dir(cwd);
        }
        let output = command
            .args(&args)
            // The API's secret is not its jobs' to inherit.
            .env_remove("AGENT_EXEC_SERVE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.exe.display()))?;
        drop(private);
        let json: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "agent-exec {} answered no JSON ({e}); exit status {}",
                invocation.args.first().map_or("", |s| s.as_str()),
                output.status
            )
        })?;
        let ok = json["ok"] == Value::Bool(true);
        Ok(Answer { json, ok })
    }
}

/// An error answer in the CLI's own shape.
pub fn failure(code: ErrorCode, message: String) -> Answer {
    let json =
        serde_json::to_value(error_response(AppError::new(code, message))).unwrap_or(Value::Null);
    Answer { json, ok: false }
}

/// A directory only this user can enter, removed with everything in it
/// when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let template = base.join("agent-exec-request.XXXXXX");
        let dir = nix::unistd::mkdtemp(&template).map_err(std::io::Error::from)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(PrivateDir(dir))
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    #[cfg(test)]
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_private_directory_is_private_and_goes_away() {
        let dir = PrivateDir::new().unwrap();
        let file = dir.write("env", b"A=\"1\"\n").unwrap();
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
    }
}

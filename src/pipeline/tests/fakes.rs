//! Job runners for tests: a scripted one that records timing, and one that really runs
//! `sh -c` (no sandbox) so substituted command lines are executed by a shell.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::pipeline::{CommandOutcome, CommandRequest, JobRunner};

/// What a scripted command does.
pub type Script = dyn Fn(&CommandRequest, &Scripted) -> Result<CommandOutcome, String> + Sync;

/// One call as the runner saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub req: CommandRequest,
    pub start: Instant,
    pub end: Instant,
}

pub struct Scripted {
    script: Box<Script>,
    pub calls: Mutex<Vec<Call>>,
    pub cancels: AtomicUsize,
    cancelled: Mutex<bool>,
    wake: Condvar,
}

impl Scripted {
    pub fn new(
        script: impl Fn(&CommandRequest, &Scripted) -> Result<CommandOutcome, String> + Sync + 'static,
    ) -> Scripted {
        Scripted {
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            cancels: AtomicUsize::new(0),
            cancelled: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// Blocks until `cancel_all` (or 10 s, so a broken scheduler fails instead of hanging).
    pub fn wait_for_cancel(&self) -> bool {
        let guard = self.cancelled.lock().unwrap();
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, Duration::from_secs(10), |c| !*c)
            .unwrap();
        *guard
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn call(&self, phase: &str, name: &str) -> Option<Call> {
        self.calls()
            .into_iter()
            .find(|c| c.req.phase == phase && c.req.name == name)
    }
}

impl JobRunner for Scripted {
    fn run_command(&self, req: &CommandRequest) -> Result<CommandOutcome, String> {
        let start = Instant::now();
        let out = (self.script)(req, self);
        self.calls.lock().unwrap().push(Call {
            req: req.clone(),
            start,
            end: Instant::now(),
        });
        out
    }

    fn cancel_all(&self) {
        self.cancels.fetch_add(1, Ordering::SeqCst);
        *self.cancelled.lock().unwrap() = true;
        self.wake.notify_all();
    }
}

/// An outcome with this exit code and a recognizable job id.
pub fn exited(req: &CommandRequest, code: i32) -> CommandOutcome {
    CommandOutcome {
        job_id: format!("job-{}-{}", req.phase, req.name),
        exit_code: Some(code),
        duration_ms: 7,
        stdout_log_path: format!("/logs/{}/{}/stdout.log", req.phase, req.name),
        stderr_log_path: format!("/logs/{}/{}/stderr.log", req.phase, req.name),
        resources: serde_json::json!({"cpu_user_ms": 1}),
        ..CommandOutcome::default()
    }
}

/// Runs `sh -c RUN` for real in `dir`, with only the request's env plus PATH.
pub struct Shell {
    pub dir: PathBuf,
    pub seen: Mutex<Vec<CommandRequest>>,
    pub cancelled: AtomicBool,
}

impl Shell {
    pub fn new(dir: PathBuf) -> Shell {
        Shell {
            dir,
            seen: Mutex::new(Vec::new()),
            cancelled: AtomicBool::new(false),
        }
    }
}

impl JobRunner for Shell {
    fn run_command(&self, req: &CommandRequest) -> Result<CommandOutcome, String> {
        self.seen.lock().unwrap().push(req.clone());
        let t0 = Instant::now();
        let status = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&req.run)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(&req.env)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("cannot start sh: {e}"))?;
        Ok(CommandOutcome {
            job_id: format!("sh-{}-{}", req.phase, req.index),
            exit_code: status.code(),
            signal: status.signal().map(|s| format!("signal {s}")),
            duration_ms: t0.elapsed().as_millis() as u64,
            ..CommandOutcome::default()
        })
    }

    fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

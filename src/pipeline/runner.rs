//! The seam between the scheduler and real sandboxed jobs.
//!
//! The scheduler decides what runs when; a [`JobRunner`] turns one command into one
//! sandboxed job and blocks until it is terminal. The CLI implements it with the job
//! store and supervisor; tests implement it with scripted fakes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Runs commands as jobs. Called from several threads at once (one per running phase).
pub trait JobRunner: Sync {
    /// Runs one command to completion (blocking) as a sandboxed job; `run` has references
    /// already substituted and is meant for `sh -c`. `Err` means the job could not be
    /// created or started (the message is shown to the user as the command's error).
    fn run_command(&self, req: &CommandRequest) -> Result<CommandOutcome, String>;

    /// Asks every running job to stop; called once, when the run is interrupted. From
    /// then on `run_command` calls (running or racing to start) must return promptly,
    /// with `interrupted: true` when they stopped a job.
    fn cancel_all(&self);
}

/// One command to run, with the effective settings (command overrides phase overrides
/// the file's top level).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// The pipeline run this job belongs to (for tagging jobs).
    pub run_id: String,
    pub phase: String,
    pub name: String,
    /// Position of the command in its phase, from 0.
    pub index: usize,
    pub run: String,
    pub policy: Option<String>,
    pub timeout: Option<Duration>,
    /// Phase `env` overlaid with the command's `env`.
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

/// How a job ended, as the runner observed it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandOutcome {
    pub job_id: String,
    pub exit_code: Option<i32>,
    /// Signal name (`"SIGKILL"`) when a signal ended the job.
    pub signal: Option<String>,
    pub timed_out: bool,
    /// The job was stopped by `cancel_all`.
    pub interrupted: bool,
    pub duration_ms: u64,
    pub stdout_log_path: String,
    pub stderr_log_path: String,
    /// Resource accounting (the job response's `resources` object).
    pub resources: serde_json::Value,
}

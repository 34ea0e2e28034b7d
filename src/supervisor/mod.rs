//! The per-job supervisor: one detached process per job, its control
//! single-threaded.
//!
//! A front end (the CLI's `run`/`start`, the pipeline runner) starts it
//! with [`launch`]: `agent-exec __supervise ID` in a session of its own,
//! the job's secrets on its stdin. The supervisor ([`process::main`]) then
//! owns the job from launch to result ([`supervise`]), and the front end
//! watches the store for the outcome like any other reader does.
//!
//! Everything the supervisor waits on (pipes, signals, deadlines) goes
//! through one `poll` on one thread ([`event_loop`]).

mod event_loop;
mod launch;
pub mod process;
mod supervise;

pub use launch::{launch, LaunchError, Supervisor};

/// A kill request left by `agent-exec kill` before it signals the supervisor.
pub const KILL_REQUEST: &str = "kill.json";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KillRequest {
    pub signal: i32,
    pub grace_ms: u64,
}

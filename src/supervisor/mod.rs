//! The per-job supervisor: one detached process per job, its control
//! single-threaded.
//!
//! `agent-exec run` and `start` fork it with [`launch`]; it leaves their
//! session ([`process`]) and owns the job from launch to result
//! ([`supervise`]); a caller that waits learns from a pipe when the result
//! is in the store.
//!
//! Everything the supervisor waits on (pipes, signals, deadlines) goes
//! through one `poll` on one thread ([`event_loop`]).

mod denials;
mod event_loop;
mod job_dir;
mod launch;
pub mod notify;
mod process;
mod proxy;
mod publish;
mod relay;
mod supervise;
mod tree;

pub use denials::Denial;
pub use launch::{launch, SpawnError, Supervisor, Waiting};
pub use proxy::{Destination, NetworkReport};

/// A kill request left by `agent-exec kill` before it signals the supervisor.
pub const KILL_REQUEST: &str = "kill.json";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KillRequest {
    pub signal: i32,
    pub grace_ms: u64,
}

//! What a front end asks for: one job, typed.
//!
//! The CLI builds a [`JobRequest`] from its flags (parsing durations and
//! sizes, reading `--env-file` and stdin), a pipeline from its YAML; both
//! then go through the same [`super::define::define`].

use std::path::PathBuf;
use std::time::Duration;

use crate::policy::Overrides;

/// One job as asked for, before the policy decides what it gets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRequest {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The working directory; `None`: the caller's. A relative path is
    /// taken from the caller's directory.
    pub cwd: Option<PathBuf>,
    /// Variables to set, in order (a later one wins).
    pub env: Vec<(String, String)>,
    /// Whether the caller's environment is passed: `None` lets the policy
    /// decide; `Some(true)` is refused by a policy that does not pass it.
    pub inherit_env: Option<bool>,
    /// `--mask`: an `env` key (its value is hidden) or a literal secret.
    pub masks: Vec<String>,
    /// The bytes the job reads on stdin; `None`: /dev/null.
    pub stdin: Option<Vec<u8>>,
    pub tags: Vec<String>,
    /// A policy name or path; `None`: `default`.
    pub policy: Option<String>,
    /// Sandbox changes asked of the policy (relative paths are taken from
    /// the job's working directory).
    pub overrides: Overrides,
    /// After SIGTERM, how long until the whole cgroup is killed.
    pub kill_after: Option<Duration>,
    /// Cap of each log file.
    pub log_cap: Option<u64>,
    /// Ports to forward from the host's loopback into the job's network.
    pub publish: Vec<crate::job::model::Publish>,
}

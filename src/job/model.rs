//! What a job is: its definition (`job.json`) and its state (`state.json`).
//!
//! The definition never changes after `create`; the state is rewritten
//! atomically (write + rename) by whoever owns the job at that moment: the
//! supervisor while it lives, a CLI process that finds the supervisor dead.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::output::StreamStats;
pub use crate::sandbox::SandboxSpec;

/// Lifecycle states. `created → running → exited | killed | timed_out | failed`, plus `lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Created,
    Running,
    Exited,
    Killed,
    TimedOut,
    Failed,
    Lost,
    /// Its record cannot be read (listed with the reason; it can be deleted).
    Corrupt,
}

impl State {
    pub fn is_terminal(self) -> bool {
        !matches!(self, State::Created | State::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
            State::Killed => "killed",
            State::TimedOut => "timed_out",
            State::Failed => "failed",
            State::Lost => "lost",
            State::Corrupt => "corrupt",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        [
            State::Created,
            State::Running,
            State::Exited,
            State::Killed,
            State::TimedOut,
            State::Failed,
            State::Lost,
            State::Corrupt,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How a terminal job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultKind {
    Success,
    ExitCode,
    Signal,
    Timeout,
    Oom,
    Killed,
    LaunchFailed,
    Lost,
}

/// Limits as the job was defined (after CLI parsing; policies later merge here).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct JobLimits {
    pub timeout_ms: Option<u64>,
    pub kill_after_ms: u64,
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    /// Per-log cap: output beyond it is counted but not stored.
    pub log_cap_bytes: u64,
}

/// Where the job's stdin comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StdinSpec {
    /// /dev/null: a job never waits on a terminal.
    Null,
    /// A file inside the job directory holding the bytes given at create time.
    File { path: String, bytes: u64 },
}

/// The definition of a job, as stored in `job.json`. Masked values appear as `***`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    pub job_id: String,
    pub argv: Vec<String>,
    pub cwd: String,
    /// Variables set with --env / --env-file (masked values replaced).
    pub env: BTreeMap<String, String>,
    pub inherit_env: bool,
    /// Names of the masks: env keys, or `literal#N` for literal values.
    pub masked: Vec<String>,
    pub stdin: StdinSpec,
    pub tags: Vec<String>,
    pub policy: String,
    /// The policy file, when the policy was named by path.
    #[serde(default)]
    pub policy_file: Option<PathBuf>,
    pub limits: JobLimits,
    /// The isolation resolved from `policy`.
    pub sandbox: SandboxSpec,
    pub created_at: String,
    pub created_at_ms: u64,
    /// True when `secrets.json` holds the unmasked argv/env until launch.
    pub has_secrets: bool,
    /// Ports of the job's network namespace forwarded from the host's loopback.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<Publish>,
}

/// `--publish PORT[:HOST_PORT]`: connections to the host's
/// `127.0.0.1:HOST_PORT` reach the job's `127.0.0.1:PORT`. Asked with host
/// port 0, any free one; recorded with the one it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Publish {
    /// The port the job listens on, in its own network namespace.
    pub port: u16,
    /// The host's loopback port that reaches it.
    pub host_port: u16,
}

impl JobSpec {
    /// The job as the host floor judges it: what it will be launched with.
    pub fn floor_subject(&self) -> crate::policy::FloorSubject<'_> {
        let s = &self.sandbox;
        crate::policy::FloorSubject {
            policy_name: &self.policy,
            policy_file: self.policy_file.as_deref(),
            landlock: s.landlock,
            enforcement: s.enforcement,
            cgroup: s.cgroup,
            seccomp: s.seccomp,
            namespaces: [
                s.user_ns,
                s.pid_ns,
                s.mount_ns,
                s.ipc_ns,
                s.uts_ns,
                s.cgroup_ns,
            ],
            network: s.network,
            timeout: self.limits.timeout_ms.map(std::time::Duration::from_millis),
            kill_after: Some(std::time::Duration::from_millis(self.limits.kill_after_ms)),
            memory: self.limits.memory_bytes,
            pids: self.limits.pids,
            cpu: self.limits.cpus,
            output_bytes: self.limits.log_cap_bytes,
            disk: s.disk,
            read: &s.read,
            write: &s.write,
            exec: &s.exec,
            env_inherit: self.inherit_env,
        }
    }
}

/// The clear-text values behind masks, needed until the job is launched.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Secrets {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Every value to be replaced in logs and JSON.
    pub mask_values: Vec<String>,
}

/// A process identity that survives pid reuse: pid plus its start time in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    pub start_time: u64,
}

/// Where a job's resource figures come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Accounting {
    Cgroup,
    Processes,
}

/// Resource accounting of a finished job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, JsonSchema)]
pub struct Resources {
    /// Where the figures come from: `cgroup` (every process the job ran,
    /// exactly) or `processes` (no cgroup for the job: CPU of every process
    /// reaped in its pid namespace, memory peak of its largest process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<Accounting>,
    /// CPU time in user mode of every process the job ran.
    pub cpu_user_ms: Option<u64>,
    /// CPU time in kernel mode of every process the job ran.
    pub cpu_system_ms: Option<u64>,
    /// Peak memory charged to the job's cgroup (without one: the largest
    /// process's resident set).
    pub memory_peak_bytes: Option<u64>,
    /// Peak number of processes in the job's cgroup; null where the kernel does not count it.
    pub pids_peak: Option<u64>,
    /// Largest resident set of the main process or a descendant it waited for (wait4).
    pub max_rss_bytes: Option<u64>,
    /// Processes still in the cgroup when the main process ended, killed by agent-exec.
    pub leftover_processes_killed: u64,
}

/// The end of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub result: ResultKind,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub duration_ms: u64,
    pub resources: Resources,
    pub stdout: StreamStats,
    pub stderr: StreamStats,
    /// A human-readable explanation for launch failures, lost jobs and kills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The launch failed because a required sandbox layer is unavailable.
    #[serde(default)]
    pub sandbox_unavailable: bool,
    /// What the job tried and the sandbox refused, with what would allow it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<crate::supervisor::Denial>,
    /// `network = proxy`: every destination the job asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::supervisor::NetworkReport>,
}

/// The mutable part of a job, as stored in `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: State,
    pub updated_at_ms: u64,
    #[serde(default)]
    pub supervisor: Option<ProcRef>,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// What the sandbox applied (written once the job is running).
    #[serde(default)]
    pub sandbox: Option<serde_json::Value>,
    /// Set when `kill` asked the job to stop: the result then reads `killed`.
    #[serde(default)]
    pub kill_requested: bool,
    /// Where the job's published ports are reachable (while it runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<Publish>,
    /// The job's v2 cgroup when it is not under the caller's own (a scope
    /// from the caller's systemd), for whoever finds its supervisor dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::path::PathBuf>,
}

impl JobStatus {
    pub fn created(now_ms: u64) -> JobStatus {
        JobStatus {
            state: State::Created,
            updated_at_ms: now_ms,
            supervisor: None,
            pid: None,
            started_at_ms: None,
            finished_at_ms: None,
            outcome: None,
            sandbox: None,
            kill_requested: false,
            published: Vec::new(),
            cgroup: None,
        }
    }
}

/// Job ids: 32 lowercase hex characters from the kernel's CSPRNG.
pub fn new_job_id() -> String {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: getrandom writes at most len bytes into the buffer we own.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn is_valid_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

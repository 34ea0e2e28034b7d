//! The effective policy: every file of an `extends` chain merged, every
//! value checked. This is what the supervisor and sandbox consume and what
//! `policy show` prints.
//!
//! JSON form: sizes are bytes (`memory_bytes`), durations milliseconds
//! (`timeout_ms`), `null` means "no limit" (or, for port lists, "any port").

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

pub use crate::sandbox::{CgroupNeed, Enforcement, NetMode, NetModeError, SeccompProfile};

/// A fully merged, validated policy.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Policy {
    /// The name it was asked for by (file stem for a path).
    pub name: String,
    /// Where the outermost file came from.
    pub source: PolicySource,
    /// Names of the policies it extends, nearest first.
    pub inherits: Vec<String>,
    pub description: String,
    pub enforcement: Enforcement,
    /// Whether a job may run without a cgroup of its own (`cgroup`).
    pub cgroup: CgroupNeed,
    pub limits: Limits,
    pub filesystem: Filesystem,
    pub network: Network,
    pub namespaces: Namespaces,
    pub env: EnvPolicy,
    pub seccomp: Seccomp,
    pub overrides: OverridePermissions,
}

/// Where a policy file was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicySource {
    /// Embedded in the binary from `policies/NAME.toml`.
    Builtin,
    /// From the host policy directory (shadows a built-in of the same name).
    Host { path: PathBuf },
    /// Named by path on the command line.
    File { path: PathBuf },
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicySource::Builtin => write!(f, "builtin"),
            PolicySource::Host { path } => write!(f, "host {}", path.display()),
            PolicySource::File { path } => write!(f, "file {}", path.display()),
        }
    }
}

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Limits {
    /// Wall-clock limit; then SIGTERM to the whole cgroup.
    #[serde(rename = "timeout_ms", serialize_with = "duration_ms")]
    #[schemars(with = "Option<u64>")]
    pub timeout: Option<Duration>,
    /// Grace after SIGTERM before everything in the cgroup is killed.
    #[serde(rename = "kill_after_ms", serialize_with = "duration_ms")]
    #[schemars(with = "Option<u64>")]
    pub kill_after: Option<Duration>,
    #[serde(rename = "memory_bytes")]
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    /// CPUs' worth of time (1.5 = one and a half cores).
    pub cpu: Option<f64>,
    /// RLIMIT_FSIZE.
    #[serde(rename = "file_size_bytes")]
    pub file_size: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// Cap of each of stdout.log and stderr.log; always set.
    pub output_bytes: u64,
    /// Size of each of the job's own directories: `/tmp`, `$TMPDIR`, `$JOB_DIR`.
    #[serde(rename = "disk_bytes")]
    pub disk: Option<u64>,
}

/// Path templates: absolute paths, or `$CWD`, `$HOME`, `$JOB_DIR`,
/// `$TMPDIR` optionally followed by `/more`. `write` and `exec` paths are
/// also readable. With `landlock = false` the filesystem is unrestricted
/// and the three access lists are empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Filesystem {
    /// Whether landlock filesystem rules are applied at all.
    pub landlock: bool,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Vec<PathBuf>,
    /// Private tmpfs mounts (need the mount namespace).
    pub tmpfs: Vec<PathBuf>,
    /// Hidden inside what the lists grant: an empty directory or an
    /// unopenable file over each (need the job's own root).
    pub deny: Vec<PathBuf>,
    /// Read-only inside what the lists let the job write.
    pub read_only: Vec<PathBuf>,
}

/// Network mode and, via landlock, the TCP ports a job may use.
/// A port list of `None` means any port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Network {
    pub mode: NetMode,
    pub connect_ports: Option<Vec<u16>>,
    pub bind_ports: Option<Vec<u16>>,
    /// Mode `proxy`: the hosts the job may reach (see [`crate::sandbox::ProxyRules`]).
    pub allow_domains: Vec<String>,
    /// Hosts the command line added (`--allow-domain`): public addresses only.
    pub added_domains: Vec<String>,
    pub deny_domains: Vec<String>,
    /// Names the proxy resolves to a fixed address.
    pub hosts: BTreeMap<String, std::net::IpAddr>,
}

/// Namespaces to unshare. The network namespace is not listed: it follows
/// `network.mode` (see [`Policy::net_namespace`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Namespaces {
    pub user: bool,
    pub pid: bool,
    pub mount: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    /// Hostname inside the UTS namespace.
    pub hostname: Option<String>,
}

/// Which environment variables reach the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EnvPolicy {
    /// Pass the caller's whole environment.
    pub inherit: bool,
    /// Names passed when `inherit` is false; a trailing `*` matches a prefix.
    pub allow: Vec<String>,
    /// Always set (after inheritance and the allow list).
    pub set: BTreeMap<String, String>,
}

impl EnvPolicy {
    /// Whether the caller's variable `name` is passed to the job.
    pub fn allows(&self, name: &str) -> bool {
        self.inherit
            || self
                .allow
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => name == pattern,
                })
    }
}

/// Syscall filter: a named profile plus extra denied syscalls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Seccomp {
    pub profile: SeccompProfile,
    pub deny: Vec<String>,
}

/// Which command-line overrides may loosen this policy. Tightening is
/// always allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct OverridePermissions {
    pub allow_read: bool,
    pub allow_write: bool,
    pub allow_exec: bool,
    pub net: bool,
    pub memory: bool,
    pub pids: bool,
    pub cpus: bool,
    pub timeout: bool,
}

impl Policy {
    /// What a file without `extends` starts from: every isolation layer on,
    /// nothing readable, no network, no inherited environment, nothing
    /// loosenable, no resource limit except the 64M log cap and a 5 s
    /// kill grace.
    pub(crate) fn base() -> Policy {
        Policy {
            name: String::new(),
            source: PolicySource::Builtin,
            inherits: Vec::new(),
            description: String::new(),
            enforcement: Enforcement::Strict,
            cgroup: CgroupNeed::Required,
            limits: Limits {
                timeout: None,
                kill_after: Some(Duration::from_secs(5)),
                memory: None,
                pids: None,
                cpu: None,
                file_size: None,
                open_files: None,
                output_bytes: 64 << 20,
                disk: None,
            },
            filesystem: Filesystem {
                landlock: true,
                read: Vec::new(),
                write: Vec::new(),
                exec: Vec::new(),
                tmpfs: Vec::new(),
                deny: Vec::new(),
                read_only: Vec::new(),
            },
            network: Network {
                mode: NetMode::None,
                connect_ports: None,
                bind_ports: None,
                allow_domains: Vec::new(),
                added_domains: Vec::new(),
                deny_domains: Vec::new(),
                hosts: BTreeMap::new(),
            },
            namespaces: Namespaces {
                user: true,
                pid: true,
                mount: true,
                ipc: true,
                uts: true,
                cgroup: true,
                hostname: None,
            },
            env: EnvPolicy {
                inherit: false,
                allow: Vec::new(),
                set: BTreeMap::new(),
            },
            seccomp: Seccomp {
                profile: SeccompProfile::Default,
                deny: Vec::new(),
            },
            overrides: OverridePermissions::default(),
        }
    }

    /// Whether the job gets its own network namespace (modes `none` and
    /// `loopback`).
    pub fn net_namespace(&self) -> bool {
        self.network.mode != NetMode::Host
    }

    /// The namespaces the job gets, in the order the response lists them.
    pub fn namespace_names(&self) -> Vec<&'static str> {
        let ns = &self.namespaces;
        [
            ("user", ns.user),
            ("pid", ns.pid),
            ("mount", ns.mount),
            ("ipc", ns.ipc),
            ("uts", ns.uts),
            ("net", self.net_namespace()),
            ("cgroup", ns.cgroup),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }
}

/// Renders a duration the way `units::parse_duration` reads it back.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `None` renders as `none`, matching the policy file syntax.
pub(crate) fn format_opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "none".to_string(), format_duration)
}

pub(crate) fn format_opt_size(s: Option<u64>) -> String {
    s.map_or_else(|| "none".to_string(), crate::units::format_size)
}

pub(crate) fn duration_ms<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

//! What the sandbox is asked to build for one job: the seam between the
//! policy (which decides) and the sandbox (which applies).
//!
//! The policy module turns a policy and a job's paths into a [`SandboxSpec`]
//! (`policy::sandbox_spec`); the job store keeps it in the job's definition;
//! the supervisor hands it to [`super::layers::Layers::prepare`]. The enums
//! here are the only spelling of each concept from the policy file to the
//! kernel: a policy's `network.mode = "loopback"` is this [`NetMode`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::seccomp::SeccompProfile;

/// What to do when the kernel cannot enforce a requested layer.
/// Ordered: `Strict` is the stronger guarantee.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Start anyway and report exactly what was not enforced.
    BestEffort,
    /// Refuse to start.
    Strict,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::BestEffort => "best_effort",
            Enforcement::Strict => "strict",
        }
    }
}

/// Whether a job of a caller other than the host's root, who may have no
/// cgroup to give it, may run without one (root's jobs always have one).
/// Ordered: `Required` is stronger.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CgroupNeed {
    /// Run without one: the pid namespace kills the tree, accounting comes
    /// from the processes, and each limit that needs a cgroup is reported
    /// as not applied.
    Optional,
    /// Refuse to start without one (under strict enforcement).
    #[default]
    Required,
}

impl CgroupNeed {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupNeed::Optional => "optional",
            CgroupNeed::Required => "required",
        }
    }
}

/// Network reach of a job. Ordered from narrowest to widest, so that
/// `a > b` means "a is looser than b".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// Own network namespace with no interface up.
    None,
    /// Own network namespace with `lo` up.
    Loopback,
    /// Own network namespace with `lo` up and a proxy on it that reaches
    /// the hosts the policy names, and only those.
    Proxy,
    /// The host's network.
    Host,
}

impl NetMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetMode::None => "none",
            NetMode::Loopback => "loopback",
            NetMode::Proxy => "proxy",
            NetMode::Host => "host",
        }
    }

    /// Whether the job gets a network namespace of its own.
    pub fn own_namespace(self) -> bool {
        self != NetMode::Host
    }

    /// Whether the job's namespace has `lo` up.
    pub fn has_loopback(self) -> bool {
        matches!(self, NetMode::Loopback | NetMode::Proxy)
    }
}

impl fmt::Display for NetMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `none`, `loopback`, `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetModeError(pub String);

impl fmt::Display for NetModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid network mode {:?} (expected none, loopback, proxy or host)",
            self.0
        )
    }
}

impl std::error::Error for NetModeError {}

impl FromStr for NetMode {
    type Err = NetModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(NetMode::None),
            "loopback" => Ok(NetMode::Loopback),
            "proxy" => Ok(NetMode::Proxy),
            "host" => Ok(NetMode::Host),
            _ => Err(NetModeError(s.to_string())),
        }
    }
}

/// The isolation of one job, resolved from its policy when the job is
/// defined: the job keeps the rules it was created under even if the
/// policy file changes later. Every path is absolute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Read also from `strict: bool`, as jobs recorded by earlier versions have it.
    #[serde(alias = "strict", deserialize_with = "enforcement_or_strict")]
    pub enforcement: Enforcement,
    /// Jobs recorded by earlier versions needed one.
    #[serde(default)]
    pub cgroup: CgroupNeed,
    pub user_ns: bool,
    pub pid_ns: bool,
    pub mount_ns: bool,
    pub ipc_ns: bool,
    pub uts_ns: bool,
    pub cgroup_ns: bool,
    pub hostname: Option<String>,
    /// Landlock filesystem rules apply (false: the filesystem is not restricted).
    pub landlock: bool,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Vec<PathBuf>,
    /// Private tmpfs mounts (need a mount namespace).
    pub tmpfs: Vec<PathBuf>,
    /// Hidden inside the grants (an empty directory, or an unopenable file).
    #[serde(default)]
    pub deny: Vec<PathBuf>,
    /// Read-only inside the write grants.
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
    /// Symlinks on the way to the grants, recreated in the job's view:
    /// (link, target as read).
    #[serde(default)]
    pub links: Vec<(PathBuf, PathBuf)>,
    /// The caller's own trees among the grants (working directory, write
    /// paths, what lies under `$HOME`): mounted idmapped when the job runs
    /// as another host user, so that the job works in them as their owner.
    #[serde(default)]
    pub own_trees: Vec<PathBuf>,
    /// Grants of the policy left out, and why (reported as not applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ungranted: Vec<String>,
    /// The job store, never visible inside even where a grant holds it.
    #[serde(default)]
    pub store: PathBuf,
    pub network: NetMode,
    /// TCP ports the job may connect to / bind (host network only; None = any).
    pub connect_ports: Option<Vec<u16>>,
    pub bind_ports: Option<Vec<u16>>,
    /// The hosts a job reaches through its proxy (`network = proxy` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<super::ProxyRules>,
    pub seccomp: SeccompProfile,
    /// Syscalls denied on top of the profile.
    pub seccomp_deny: Vec<String>,
    /// The size of each of the job's own directories (`/tmp`, `$TMPDIR`,
    /// `$JOB_DIR`); `None`: the kernel's tmpfs default (half the memory).
    #[serde(default = "disk_of_earlier_versions")]
    pub disk: Option<u64>,
    /// RLIMIT_FSIZE and RLIMIT_NOFILE.
    pub file_size: Option<u64>,
    pub open_files: Option<u64>,
    /// Which of the caller's variables reach the job: all of them, or those
    /// the allow-list names (a trailing `*` matches a prefix).
    pub env_inherit: bool,
    pub env_allow: Vec<String>,
    /// Variables the policy always sets.
    pub env_set: BTreeMap<String, String>,
    /// The job's private temporary directory ($TMPDIR).
    pub tmpdir: PathBuf,
    /// The job's own writable directory ($JOB_DIR), kept with its record.
    pub files: PathBuf,
}

/// Jobs recorded before `limits.disk` had 256 MiB tmpfs.
fn disk_of_earlier_versions() -> Option<u64> {
    Some(256 << 20)
}

/// `"strict"` / `"best_effort"`, or the `true` / `false` of earlier versions.
fn enforcement_or_strict<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Enforcement, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Named(Enforcement),
        Strict(bool),
    }
    Ok(match Either::deserialize(d)? {
        Either::Named(e) => e,
        Either::Strict(true) => Enforcement::Strict,
        Either::Strict(false) => Enforcement::BestEffort,
    })
}

impl SandboxSpec {
    /// Whether strict enforcement is asked for.
    pub fn strict(&self) -> bool {
        self.enforcement == Enforcement::Strict
    }

    /// Whether the job may start without a cgroup of its own: never for
    /// the host's root, who can always make one; for any other caller
    /// where the policy says so (or is best effort).
    pub fn cgroup_optional(&self, host_root: bool) -> bool {
        !host_root && (self.cgroup == CgroupNeed::Optional || !self.strict())
    }

    /// Whether the job gets a user namespace of its own: where the policy
    /// asks, and for a caller other than the host's root wherever it asks
    /// for any other namespace (only root may make those outside one).
    pub fn has_user_ns(&self, host_root: bool) -> bool {
        self.user_ns
            || (!host_root
                && (self.pid_ns
                    || self.mount_ns
                    || self.ipc_ns
                    || self.uts_ns
                    || self.cgroup_ns
                    || self.network.own_namespace()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job recorded by an earlier version stays readable (and killable).
    #[test]
    fn enforcement_reads_the_strict_flag_of_earlier_versions() {
        let spec = SandboxSpec {
            enforcement: Enforcement::Strict,
            cgroup: CgroupNeed::Required,
            user_ns: true,
            pid_ns: true,
            mount_ns: true,
            ipc_ns: true,
            uts_ns: true,
            cgroup_ns: true,
            hostname: None,
            landlock: true,
            read: vec![],
            write: vec![],
            exec: vec![],
            tmpfs: vec![],
            deny: vec![],
            read_only: vec![],
            links: vec![],
            own_trees: vec![],
            ungranted: vec![],
            store: "/s".into(),
            network: NetMode::None,
            connect_ports: None,
            bind_ports: None,
            proxy: None,
            seccomp: SeccompProfile::Default,
            seccomp_deny: vec![],
            disk: Some(1 << 20),
            file_size: None,
            open_files: None,
            env_inherit: false,
            env_allow: vec![],
            env_set: BTreeMap::new(),
            tmpdir: "/t".into(),
            files: "/f".into(),
        };
        let mut json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["enforcement"], "strict");
        let back: SandboxSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, spec);
        let fields = json.as_object_mut().unwrap();
        fields.remove("enforcement");
        for (old, now) in [
            (true, Enforcement::Strict),
            (false, Enforcement::BestEffort),
        ] {
            fields.insert("strict".into(), old.into());
            let read: SandboxSpec =
                serde_json::from_value(serde_json::Value::Object(fields.clone())).unwrap();
            assert_eq!(read.enforcement, now);
        }
    }
}

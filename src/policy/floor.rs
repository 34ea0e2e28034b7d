//! The host floor (`/etc/agent-exec/floor.toml`): what the administrator
//! allows any job on this host, whatever the policy or command line asks.
//!
//! A request beyond the floor is an error naming the field; it is never
//! silently narrowed to fit, so a job never runs with settings other than
//! the ones it reports. Absent keys impose nothing; a missing file is no
//! floor at all.
//!
//! ```toml
//! allow_permissive = false           # refuse policies with filesystem.landlock = false
//! allowed_policies = ["default", "untrusted", "/srv/ci/policy.toml"]
//!                                    # names match built-in/host policies only;
//!                                    # entries with '/' match policy files by path
//! network = "loopback"               # widest network.mode allowed
//! max_timeout = "2h"                 # also refuses timeout = "none"
//! max_memory = "4G"                  # also refuses memory = "none"
//! max_pids = 1024
//! max_cpu = 2.0
//! max_disk = "1G"                    # also refuses disk = "none"
//! writable = ["/home", "/tmp", "/var/tmp"]  # every write path must lie within one
//! require_seccomp = true             # refuse seccomp.profile = "none"
//! require_enforcement = "strict"     # refuse best_effort
//! require_cgroup = true              # refuse cgroup = "optional"; a best_effort
//!                                    #   job too needs its cgroup to start
//! require_namespaces = ["user", "pid", "mount"]
//! job_uid = 2000000000               # who a root caller's jobs are on the host
//! job_gid = 2000000000               #   (never root; this is the default)
//! ```

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use super::error::{PolicyError, PolicyErrorKind};
use super::model::{
    duration_ms, format_duration, format_opt_duration, format_opt_size, CgroupNeed, Enforcement,
    NetMode, Policy, PolicySource, SeccompProfile,
};
use super::parse::NS_FLAGS;
use super::paths::{check_template, ExpandedFilesystem};
use super::reader::{Doc, Item, Section};
use super::resolve::{read_capped, PolicySources};
use crate::sandbox::identity::{HostIdentity, DEFAULT_JOB_ID};

/// The host's limits on every job. `Default` is "no floor".
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Floor {
    /// The file it came from; `None` when there is no floor file.
    pub path: Option<PathBuf>,
    pub allow_permissive: bool,
    pub allowed_policies: Option<Vec<String>>,
    pub network: Option<NetMode>,
    #[serde(rename = "max_timeout_ms", serialize_with = "duration_ms")]
    #[schemars(with = "Option<u64>")]
    pub max_timeout: Option<Duration>,
    #[serde(rename = "max_memory_bytes")]
    pub max_memory: Option<u64>,
    pub max_pids: Option<u64>,
    pub max_cpu: Option<f64>,
    #[serde(rename = "max_disk_bytes")]
    pub max_disk: Option<u64>,
    pub writable: Option<Vec<PathBuf>>,
    /// Every read path must lie within one of these.
    pub readable: Option<Vec<PathBuf>>,
    /// Whether a job may receive the caller's whole environment.
    pub allow_env_inherit: bool,
    #[serde(rename = "max_output_bytes")]
    pub max_output: Option<u64>,
    pub require_seccomp: bool,
    pub require_enforcement: Option<Enforcement>,
    /// Whether every job must have a cgroup of its own.
    pub require_cgroup: bool,
    pub require_namespaces: Vec<String>,
    /// The unprivileged host user a root caller's jobs run as.
    pub job_identity: HostIdentity,
}

/// A job as the floor judges it: what its policy asks for, or what its
/// record says it will launch with.
#[derive(Debug, Clone)]
pub struct FloorSubject<'a> {
    pub policy_name: &'a str,
    /// The policy file, for a policy named by path.
    pub policy_file: Option<&'a Path>,
    pub landlock: bool,
    pub enforcement: Enforcement,
    pub cgroup: CgroupNeed,
    pub seccomp: SeccompProfile,
    /// user, pid, mount, ipc, uts, cgroup (the order of `NS_FLAGS`).
    pub namespaces: [bool; 6],
    pub network: NetMode,
    pub timeout: Option<Duration>,
    pub kill_after: Option<Duration>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpu: Option<f64>,
    pub output_bytes: u64,
    pub disk: Option<u64>,
    pub read: &'a [PathBuf],
    pub write: &'a [PathBuf],
    pub exec: &'a [PathBuf],
    pub env_inherit: bool,
}

impl<'a> FloorSubject<'a> {
    /// A policy (after overrides) with its paths expanded for one job.
    pub fn of_policy(p: &'a Policy, fs: &'a ExpandedFilesystem) -> FloorSubject<'a> {
        let ns = &p.namespaces;
        FloorSubject {
            policy_name: &p.name,
            policy_file: match &p.source {
                PolicySource::File { path } => Some(path),
                _ => None,
            },
            landlock: fs.landlock,
            enforcement: p.enforcement,
            cgroup: p.cgroup,
            seccomp: p.seccomp.profile,
            namespaces: [ns.user, ns.pid, ns.mount, ns.ipc, ns.uts, ns.cgroup],
            network: p.network.mode,
            timeout: p.limits.timeout,
            kill_after: p.limits.kill_after,
            memory: p.limits.memory,
            pids: p.limits.pids,
            cpu: p.limits.cpu,
            output_bytes: p.limits.output_bytes,
            disk: p.limits.disk,
            read: &fs.read,
            write: &fs.write,
            exec: &fs.exec,
            env_inherit: p.env.inherit,
        }
    }
}

impl Default for Floor {
    fn default() -> Self {
        Floor {
            path: None,
            allow_permissive: true,
            allowed_policies: None,
            network: None,
            max_timeout: None,
            max_memory: None,
            max_pids: None,
            max_cpu: None,
            max_disk: None,
            writable: None,
            readable: None,
            allow_env_inherit: true,
            max_output: None,
            require_seccomp: false,
            require_enforcement: None,
            require_cgroup: false,
            require_namespaces: Vec::new(),
            job_identity: HostIdentity {
                uid: DEFAULT_JOB_ID,
                gid: DEFAULT_JOB_ID,
            },
        }
    }
}

/// A policy (after overrides) asks for more than the floor allows.
/// Display: `host floor forbids limits.memory = 8G (the floor allows at most 4G)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorError {
    /// Dotted policy field (`limits.memory`, `filesystem.write`, `policy`).
    pub field: String,
    /// What was asked for, in policy-file syntax.
    pub requested: String,
    /// What the floor allows, as a phrase ("at most 4G").
    pub allowed: String,
}

impl fmt::Display for FloorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host floor forbids {} = {} (the floor allows {})",
            self.field, self.requested, self.allowed
        )
    }
}

impl std::error::Error for FloorError {}

const FLOOR_KEYS: &[&str] = &[
    "allow_permissive",
    "allowed_policies",
    "network",
    "max_timeout",
    "max_memory",
    "max_pids",
    "max_cpu",
    "max_disk",
    "writable",
    "readable",
    "allow_env_inherit",
    "max_output_bytes",
    "require_seccomp",
    "require_enforcement",
    "require_cgroup",
    "require_namespaces",
    "job_uid",
    "job_gid",
];

impl Floor {
    /// Reads the floor named by `sources.floor_path`.
    pub fn load_from(sources: &PolicySources) -> Result<Floor, PolicyError> {
        Floor::load(&sources.floor_path)
    }

    /// Reads a floor file; a missing file is no floor.
    pub fn load(path: &Path) -> Result<Floor, PolicyError> {
        let text = match read_capped(path, "host floor") {
            Ok(text) => text,
            Err(e) if e.kind == PolicyErrorKind::NotFound => return Ok(Floor::default()),
            Err(e) => return Err(e),
        };
        let mut floor = Floor::parse(&path.display().to_string(), &text)?;
        floor.path = Some(path.to_path_buf());
        Ok(floor)
    }

    /// Parses floor TOML; errors are reported under `file`.
    pub fn parse(file: &str, text: &str) -> Result<Floor, PolicyError> {
        let doc = Doc { name: file, text };
        let root = doc.parse()?;
        let top = Section::root(&doc, root.get_ref());
        top.deny_unknown(FLOOR_KEYS)?;
        let mut f = Floor::default();
        let get = |key: &str| top.get(key);
        if let Some(i) = get("allow_permissive") {
            f.allow_permissive = i.bool()?;
        }
        if let Some(i) = get("allowed_policies") {
            let names = i.strings()?;
            f.allowed_policies = Some(names.into_iter().map(|(s, _, _)| s).collect());
        }
        if let Some(i) = get("network") {
            f.network = Some(
                i.choice(&["none", "loopback", "host"])?
                    .parse()
                    .map_err(|e: super::model::NetModeError| i.bad_value(e.to_string()))?,
            );
        }
        if let Some(i) = get("max_timeout") {
            f.max_timeout = i.duration(false, false)?;
        }
        if let Some(i) = get("max_memory") {
            f.max_memory = i.size(false)?;
        }
        if let Some(i) = get("max_pids") {
            f.max_pids = i.count(false)?;
        }
        if let Some(i) = get("max_cpu") {
            f.max_cpu = i.positive_float(false)?;
        }
        if let Some(i) = get("writable") {
            f.writable = Some(absolute_paths(&i)?);
        }
        if let Some(i) = get("readable") {
            f.readable = Some(absolute_paths(&i)?);
        }
        if let Some(i) = get("allow_env_inherit") {
            f.allow_env_inherit = i.bool()?;
        }
        if let Some(i) = get("max_disk") {
            f.max_disk = i.size(false)?;
        }
        if let Some(i) = get("max_output_bytes") {
            f.max_output = i.size(false)?;
        }
        if let Some(i) = get("require_seccomp") {
            f.require_seccomp = i.bool()?;
        }
        if let Some(i) = get("require_cgroup") {
            f.require_cgroup = i.bool()?;
        }
        if let Some(i) = get("require_enforcement") {
            f.require_enforcement = Some(match i.choice(&["strict", "best_effort"])?.as_str() {
                "strict" => Enforcement::Strict,
                _ => Enforcement::BestEffort,
            });
        }
        for (key, slot) in [
            ("job_uid", &mut f.job_identity.uid),
            ("job_gid", &mut f.job_identity.gid),
        ] {
            if let Some(i) = get(key) {
                // Root (0) would undo the point; -1 is "no id" to the kernel.
                match i.count(false)?.map(u32::try_from) {
                    Some(Ok(id)) if id != u32::MAX => *slot = id,
                    _ => {
                        return Err(
                            i.bad_value(format!("{key} must be an id from 1 to {}", u32::MAX - 1))
                        )
                    }
                }
            }
        }
        if let Some(i) = get("require_namespaces") {
            for element in i.array()? {
                let name = element.choice(&NS_FLAGS)?;
                if !f.require_namespaces.contains(&name) {
                    f.require_namespaces.push(name);
                }
            }
        }
        Ok(f)
    }

    /// Checks a policy (after command-line overrides) and its expanded
    /// paths against the floor; the first excess is the error.
    pub fn check(&self, p: &Policy, fs: &ExpandedFilesystem) -> Result<(), FloorError> {
        self.check_subject(&FloorSubject::of_policy(p, fs))
    }

    /// Checks a job against the floor: when it is defined, and again when
    /// it is launched (its record may have been edited since).
    pub fn check_subject(&self, j: &FloorSubject<'_>) -> Result<(), FloorError> {
        let deny = |field: &str, requested: String, allowed: String| {
            Err(FloorError {
                field: field.to_string(),
                requested,
                allowed,
            })
        };

        if let Some(allowed) = &self.allowed_policies {
            let ok = allowed.iter().any(|entry| match j.policy_file {
                Some(path) => entry.contains('/') && Path::new(entry) == path,
                None => !entry.contains('/') && *entry == j.policy_name,
            });
            if !ok {
                let requested = match j.policy_file {
                    Some(path) => path.display().to_string(),
                    None => j.policy_name.to_string(),
                };
                return deny("policy", requested, format!("only {}", allowed.join(", ")));
            }
        }
        if !self.allow_permissive && !j.landlock {
            return deny(
                "filesystem.landlock",
                "false".into(),
                "only policies that confine the filesystem (allow_permissive = false)".into(),
            );
        }
        if let Some(required) = self.require_enforcement {
            if j.enforcement < required {
                return deny(
                    "enforcement",
                    j.enforcement.as_str().into(),
                    format!("only {}", required.as_str()),
                );
            }
        }
        if self.require_cgroup && j.cgroup == CgroupNeed::Optional {
            return deny(
                "cgroup",
                "optional".into(),
                "only required (the floor requires every job to have a cgroup)".into(),
            );
        }
        if self.require_seccomp && j.seccomp == SeccompProfile::None {
            return deny(
                "seccomp.profile",
                "none".into(),
                "only a seccomp filter (default or strict)".into(),
            );
        }
        for (name, enabled) in NS_FLAGS.iter().zip(j.namespaces) {
            if !enabled && self.require_namespaces.iter().any(|r| r == name) {
                return deny(
                    &format!("namespaces.{name}"),
                    "false".into(),
                    "only true (the floor requires this namespace)".into(),
                );
            }
        }
        if let Some(widest) = self.network {
            if j.network > widest {
                return deny(
                    "network.mode",
                    j.network.to_string(),
                    format!("at most {widest}"),
                );
            }
        }
        if let Some(max) = self.max_timeout {
            // The grace after SIGTERM is time the job lives on: it counts too.
            for (field, value) in [
                ("limits.timeout", j.timeout),
                ("limits.kill_after", j.kill_after),
            ] {
                if value.is_none_or(|t| t > max) {
                    return deny(
                        field,
                        format_opt_duration(value),
                        format!("at most {}", format_duration(max)),
                    );
                }
            }
        }
        if let Some(max) = self.max_memory {
            if j.memory.is_none_or(|m| m > max) {
                return deny(
                    "limits.memory",
                    format_opt_size(j.memory),
                    format!("at most {}", crate::units::format_size(max)),
                );
            }
        }
        if let Some(max) = self.max_pids {
            if j.pids.is_none_or(|n| n > max) {
                let requested = j.pids.map_or("none".into(), |n| n.to_string());
                return deny("limits.pids", requested, format!("at most {max}"));
            }
        }
        if let Some(max) = self.max_cpu {
            if j.cpu.is_none_or(|c| c > max) {
                let requested = j.cpu.map_or("none".into(), |c| c.to_string());
                return deny("limits.cpu", requested, format!("at most {max}"));
            }
        }
        if let Some(max) = self.max_disk {
            if j.disk.is_none_or(|d| d > max) {
                return deny(
                    "limits.disk",
                    format_opt_size(j.disk),
                    format!("at most {}", crate::units::format_size(max)),
                );
            }
        }
        if let Some(max) = self.max_output {
            if j.output_bytes > max {
                return deny(
                    "limits.output_bytes",
                    crate::units::format_size(j.output_bytes),
                    format!("at most {}", crate::units::format_size(max)),
                );
            }
        }
        if !self.allow_env_inherit && j.env_inherit {
            return deny(
                "env.inherit",
                "true".into(),
                "only false (allow_env_inherit = false)".into(),
            );
        }
        // Whatever the job may write or execute it may read as well.
        let readable: Vec<&PathBuf> = j.read.iter().chain(j.write).chain(j.exec).collect();
        let writable: Vec<&PathBuf> = j.write.iter().collect();
        for (field, roots, paths) in [
            ("filesystem.write", &self.writable, writable),
            ("filesystem.read", &self.readable, readable),
        ] {
            let Some(roots) = roots else {
                continue;
            };
            let roots: Vec<PathBuf> = roots.iter().map(|r| canonical(r)).collect();
            let listed = || {
                let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
                format!("only paths within {}", names.join(", "))
            };
            if !j.landlock {
                return deny(field, "/ (filesystem.landlock = false)".into(), listed());
            }
            for path in paths {
                let real = canonical(path);
                if !roots.iter().any(|r| real.starts_with(r)) {
                    return deny(field, real.display().to_string(), listed());
                }
            }
        }
        Ok(())
    }
}

/// The path with symlinks resolved when it exists, so that a link under
/// an allowed directory cannot point outside it; as written otherwise.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn absolute_paths(item: &Item<'_, '_>) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for element in item.array()? {
        let text = element.str()?;
        if text.starts_with('$') {
            return Err(element.bad_value(format!(
                "{}: the floor takes absolute paths only, found {text:?}",
                element.field
            )));
        }
        out.push(check_template(&element.field, text).map_err(|m| element.bad_value(m))?);
    }
    Ok(out)
}

//! Turning a job's [`SandboxSpec`] into everything the child will apply,
//! built in the parent before the clone: namespace flags, mount points as C
//! strings, the Landlock ruleset, the seccomp program, the capability plan.
//!
//! This is also where "what was applied" is decided honestly: a layer the
//! kernel cannot give is an error under strict enforcement, and a line in
//! `not_applied` under best effort. Nothing is reported that was not set up.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::caps::CapDropPlan;
use super::cgroup::LayoutKind;
use super::identity::{HostIdentity, IdmapUserns};
use super::landlock::{
    self, FsRules, LandlockStatus, NetRules, PathAccess, PreparedLandlock, Scopes,
};
use super::namespaces::NamespaceSet;
use super::rlimits::RlimitPlan;
use super::seccomp::{self, SeccompProfile, SeccompProgram};
use super::spec::{NetMode, SandboxSpec};
use super::view::RootPlan;

/// The uid/gid the job sees inside its user namespace.
pub const INSIDE_UID: u32 = 1000;
pub const INSIDE_GID: u32 = 1000;

/// Everything the child applies, in the order [`super::child`] applies it.
pub struct Layers {
    pub namespaces: NamespaceSet,
    /// The new root, when the filesystem is confined in a mount namespace.
    pub root: Option<RootPlan>,
    /// (inside uid, inside gid, outside uid, outside gid) for the user namespace.
    pub id_map: Option<(u32, u32, u32, u32)>,
    /// The ids the child switches to (of its user namespace, or host ids
    /// without one): a root caller's job is not root.
    pub switch_ids: Option<(u32, u32)>,
    pub fresh_proc: bool,
    pub tmpfs: Vec<CString>,
    /// Their size (`limits.disk`).
    pub tmpfs_bytes: Option<u64>,
    pub loopback: bool,
    /// `net = proxy`: the port of the job's loopback its proxy listens on.
    pub proxy_port: Option<u16>,
    pub hostname: Option<CString>,
    pub rlimits: RlimitPlan,
    pub caps: CapDropPlan,
    pub landlock: Option<PreparedLandlock>,
    /// This binary, which pid 1 of a pid namespace execs as the job's init.
    pub init_exe: Option<OwnedFd>,
    /// Mounts made by the child need their own rules (rules follow inodes).
    pub landlock_child_rules: Vec<(CString, PathAccess)>,
    pub seccomp: Option<SeccompProgram>,
    /// Whether the child sets `vm.memfd_noexec` for the job's pid namespace
    /// (root callers; for others seccomp seals every memfd).
    pub memfd_sysctl: bool,
    pub strict: bool,
    /// Where the job may execute programs (real paths), when the filesystem
    /// is confined; `None`: anywhere. The program lookup skips what lies
    /// elsewhere, as execvp skips what it cannot execute.
    pub exec_places: Option<ExecPlaces>,
    pub report: SandboxReport,
}

/// The places a confined job may execute from, and what is hidden in them.
#[derive(Debug, Clone)]
pub struct ExecPlaces {
    pub granted: Vec<std::path::PathBuf>,
    pub denied: Vec<std::path::PathBuf>,
}

impl ExecPlaces {
    /// Whether the job may execute the file at `real` (a path without symlinks).
    pub fn allow(&self, real: &Path) -> bool {
        self.granted.iter().any(|g| real.starts_with(g))
            && !self.denied.iter().any(|d| real.starts_with(d))
    }
}

/// The job's cgroup as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CgroupReport {
    /// Its own cgroup on a pure cgroup v2 host.
    V2,
    /// Its own cgroups on a hybrid host (v1 controllers, v2 for the tree).
    Hybrid,
    /// None: the caller may not create one and the policy lets the job run
    /// without (`cgroup = "optional"`, or best effort).
    None,
}

impl From<LayoutKind> for CgroupReport {
    fn from(kind: LayoutKind) -> CgroupReport {
        match kind {
            LayoutKind::V2 => CgroupReport::V2,
            LayoutKind::Hybrid => CgroupReport::Hybrid,
        }
    }
}

/// What the job's `sandbox` field says: the layers as applied.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SandboxReport {
    pub cgroup: CgroupReport,
    pub namespaces: Vec<&'static str>,
    /// Landlock ABI and how much of the ruleset the kernel enforces.
    pub landlock: LandlockReport,
    pub seccomp: SeccompProfile,
    pub no_new_privs: bool,
    /// Always `none`: every capability set is emptied before exec.
    pub capabilities: &'static str,
    pub network: NetMode,
    /// The job's uid and gid as it sees them.
    pub uid: u32,
    pub gid: u32,
    /// The job's uid and gid as the host sees them (what host file
    /// permissions judge).
    pub host_uid: u32,
    pub host_gid: u32,
    pub hostname: Option<String>,
    pub tmpfs: Vec<String>,
    pub limits: LimitsReport,
    /// Layers asked for but not applied (best effort), each with the reason.
    pub not_applied: Vec<String>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LandlockReport {
    pub abi: Option<u32>,
    /// `fully_enforced`, `partially_enforced`, `not_enforced`, or `not_applied` (the policy asks for none).
    pub status: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LimitsReport {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu: Option<f64>,
    pub timeout_s: Option<f64>,
    pub file_size_bytes: Option<u64>,
    pub open_files: Option<u64>,
    /// The size of each of the job's own directories (`/tmp`, `$TMPDIR`, `$JOB_DIR`).
    pub disk_bytes: Option<u64>,
}

/// Landlock's rules on the grants the new root opened: each grant gets the
/// rights of every list that names it.
fn root_rules<'a>(spec: &SandboxSpec, root: &'a RootPlan) -> Vec<landlock::OpenedRule<'a>> {
    let mut rules = Vec::new();
    for grant in &root.grants {
        for (list, access) in [
            (&spec.read, PathAccess::Read),
            (&spec.write, PathAccess::Write),
            (&spec.exec, PathAccess::Exec),
        ] {
            if list.contains(&grant.path) {
                rules.push(landlock::OpenedRule {
                    fd: std::os::fd::AsFd::as_fd(&grant.fd),
                    access,
                    is_dir: grant.is_dir,
                });
            }
        }
    }
    rules
}

/// A layer the kernel cannot provide under strict enforcement.
#[derive(Debug)]
pub struct Unavailable {
    pub layer: &'static str,
    pub message: String,
}

impl Layers {
    /// Prepares every layer of `spec` for a job running in `cwd`.
    /// `job_identity` is who a root caller's jobs are on the host.
    pub fn prepare(
        spec: &SandboxSpec,
        cwd: &Path,
        limits: LimitsReport,
        cgroup: Option<LayoutKind>,
        job_identity: HostIdentity,
    ) -> Result<Layers, Unavailable> {
        let mut not_applied = Vec::new();
        let net_ns = spec.network.own_namespace();
        let caller = HostIdentity::caller();
        let host_root = super::identity::caller_is_host_root();
        // Only root may create the other namespaces outside a user
        // namespace: a caller without root gets them inside one of its own,
        // where it maps nobody but itself.
        let user_ns = spec.has_user_ns(host_root);
        let namespaces = NamespaceSet {
            user: user_ns,
            pid: spec.pid_ns,
            mount: spec.mount_ns,
            ipc: spec.ipc_ns,
            uts: spec.uts_ns,
            cgroup: spec.cgroup_ns,
            net: net_ns,
        };
        // A confined filesystem in a mount namespace of its own gets a new
        // root holding only its grants; the grants it opens are Landlock's too.
        let new_root = spec.mount_ns && spec.landlock;
        // A root caller's job with a new root runs as an unprivileged host
        // user, working in the caller's trees through idmapped mounts.
        let unprivileged = host_root && new_root;
        let host = if unprivileged { job_identity } else { caller };
        let idmap = if unprivileged {
            Some(IdmapUserns::new(caller, host).map_err(|e| Unavailable {
                layer: "host identity",
                message: format!("cannot prepare the idmapped mounts: {e}"),
            })?)
        } else {
            None
        };
        let id_map = user_ns.then_some((INSIDE_UID, INSIDE_GID, host.uid, host.gid));
        let switch_ids = unprivileged.then_some(if user_ns {
            (INSIDE_UID, INSIDE_GID)
        } else {
            (host.uid, host.gid)
        });
        let root = if new_root {
            let userns = idmap.as_ref().map(|u| u.0.as_fd());
            Some(
                RootPlan::prepare(spec, userns, host, !host_root).map_err(|e| Unavailable {
                    layer: "new root",
                    message: e.to_string(),
                })?,
            )
        } else {
            None
        };
        drop(idmap);
        not_applied.extend(spec.ungranted.iter().cloned());
        // One entry for all of them: a directory that is not a repository
        // lacks every one of the built-ins' paths, and that is one fact.
        let unprotected: Vec<String> = root
            .iter()
            .flat_map(|r| &r.unprotected)
            .map(|p| p.display().to_string())
            .collect();
        if !unprotected.is_empty() {
            not_applied.push(format!(
                "read_only: {} do not exist, so the job could create them",
                unprotected.join(", ")
            ));
        }
        if root.is_none() && !(spec.deny.is_empty() && spec.read_only.is_empty()) {
            // The policy check makes this unreachable; keep the report honest anyway.
            not_applied
                .push("filesystem.deny and read_only: the job has no view of its own".into());
        }
        if root.is_none() && spec.disk.is_some() && spec.write.contains(&spec.files) {
            not_applied.push(
                "limits.disk: $JOB_DIR is a host directory, uncapped, without the job's own root"
                    .into(),
            );
        }
        for (path, e) in root.iter().flat_map(|r| &r.not_idmapped) {
            not_applied.push(format!(
                "idmapped mount of {}: {e} (the job works there as another user)",
                path.display()
            ));
        }

        // Without a new root: a private tmpfs over a directory that holds
        // the job's working directory or $TMPDIR would hide them from the
        // job: skip it and say so.
        let mut tmpfs = Vec::new();
        let mut tmpfs_paths = Vec::new();
        if let Some(root) = &root {
            tmpfs_paths = root
                .own_places()
                .iter()
                .filter(|(p, a)| *a == PathAccess::Write && !p.as_bytes().starts_with(b"/dev/"))
                .map(|(p, _)| PathBuf::from(p.to_string_lossy().into_owned()))
                .collect();
        } else if spec.mount_ns {
            for path in &spec.tmpfs {
                if cwd.starts_with(path) || spec.tmpdir.starts_with(path) {
                    not_applied.push(format!(
                        "tmpfs {}: it would hide the working directory or $TMPDIR",
                        path.display()
                    ));
                    continue;
                }
                if !path.is_dir() {
                    not_applied.push(format!("tmpfs {}: no such directory", path.display()));
                    continue;
                }
                tmpfs.push(cstring(path));
                tmpfs_paths.push(path.clone());
            }
        } else if !spec.tmpfs.is_empty() {
            not_applied
                .push("tmpfs: needs a mount namespace, which the policy does not ask for".into());
        }

        // pid 1 of a pid namespace execs this binary as the job's init.
        let init_exe = if spec.pid_ns {
            Some(super::init::open_exe().map_err(|e| Unavailable {
                layer: "pid namespace init",
                message: format!("cannot open agent-exec's own binary: {e}"),
            })?)
        } else {
            None
        };
        // Landlock must let the init be exec'd: a rule on that one file.
        let init_rule: Vec<landlock::OpenedRule<'_>> = init_exe
            .iter()
            .filter(|_| spec.landlock)
            .map(|exe| landlock::OpenedRule {
                fd: exe.as_fd(),
                access: PathAccess::Exec,
                is_dir: false,
            })
            .collect();

        let landlock_wanted = spec.landlock
            || (spec.network == NetMode::Host
                && (spec.connect_ports.is_some() || spec.bind_ports.is_some()));
        let mut landlock_child_rules = Vec::new();
        let landlock = if landlock_wanted {
            let fs = if spec.landlock {
                FsRules {
                    read: spec.read.clone(),
                    write: spec.write.clone(),
                    exec: spec.exec.clone(),
                }
            } else {
                // Only TCP rules asked for: leave the filesystem open.
                FsRules {
                    read: Vec::new(),
                    write: vec![PathBuf::from("/")],
                    exec: vec![PathBuf::from("/")],
                }
            };
            let restrict_tcp = spec.network == NetMode::Host
                && (spec.connect_ports.is_some() || spec.bind_ports.is_some());
            let net = NetRules {
                restrict_tcp,
                connect: spec.connect_ports.clone().unwrap_or_default(),
                bind: spec.bind_ports.clone().unwrap_or_default(),
            };
            let scopes = Scopes {
                abstract_unix: spec.landlock,
                signal: spec.landlock,
            };
            let prepared = match &root {
                Some(root) => {
                    let mut rules = root_rules(spec, root);
                    rules.extend(init_rule.iter().copied());
                    let missing: Vec<PathBuf> = root.missing.clone();
                    landlock::prepare_opened(&rules, &missing, &net, &scopes, spec.enforcement)
                }
                None => landlock::prepare(&fs, &init_rule, &net, &scopes, spec.enforcement),
            }
            .map_err(|e| Unavailable {
                layer: "landlock",
                message: e.to_string(),
            })?;
            for m in prepared.missing_features() {
                not_applied.push(format!("landlock: {m} (kernel ABI {:?})", prepared.abi()));
            }
            if let Some(root) = &root {
                landlock_child_rules = root
                    .own_places()
                    .into_iter()
                    .filter(|(p, _)| {
                        // /proc only where the policy reads it.
                        p.as_bytes() != b"/proc"
                            || spec.read.iter().any(|r| r == Path::new("/proc"))
                    })
                    .collect();
            } else if spec.landlock {
                if spec.pid_ns && spec.mount_ns && spec.read.iter().any(|p| p == Path::new("/proc"))
                {
                    landlock_child_rules.push((cstring(Path::new("/proc")), PathAccess::Read));
                }
                for t in &tmpfs {
                    landlock_child_rules.push((t.clone(), PathAccess::Write));
                }
            }
            Some(prepared)
        } else {
            None
        };

        // vm.memfd_noexec is the host root's to set, even for the job's own
        // pid namespace: for any other caller, seccomp makes every memfd
        // sealed against exec instead (what the sysctl would do).
        let memfd_sysctl = spec.pid_ns && host_root;
        let seal_memfds = spec.pid_ns && !host_root;
        if seal_memfds && spec.seccomp == SeccompProfile::None {
            let message = "vm.memfd_noexec: only root may set it, and seccomp, which would \
                           refuse executable memfds instead, is off (seccomp.profile = none)";
            if spec.strict() {
                return Err(Unavailable {
                    layer: "no executable memfds",
                    message: message.into(),
                });
            }
            not_applied.push(message.into());
        }
        let seccomp =
            seccomp::build(spec.seccomp, &spec.seccomp_deny, seal_memfds).map_err(|e| {
                Unavailable {
                    layer: "seccomp",
                    message: e.to_string(),
                }
            })?;

        let caps = CapDropPlan::detect().map_err(|e| Unavailable {
            layer: "capabilities",
            message: e.to_string(),
        })?;

        let landlock_report = LandlockReport {
            abi: landlock.as_ref().and_then(|l| l.abi()),
            status: match &landlock {
                Some(l) => enforcement_name(l.status()).to_string(),
                None => "not_applied".into(),
            },
        };
        let report = SandboxReport {
            cgroup: cgroup.map_or(CgroupReport::None, CgroupReport::from),
            namespaces: namespaces.names(),
            landlock: landlock_report,
            seccomp: spec.seccomp,
            no_new_privs: true,
            capabilities: "none",
            network: spec.network,
            uid: if user_ns { INSIDE_UID } else { host.uid },
            gid: if user_ns { INSIDE_GID } else { host.gid },
            host_uid: host.uid,
            host_gid: host.gid,
            hostname: if spec.uts_ns {
                spec.hostname.clone()
            } else {
                None
            },
            tmpfs: tmpfs_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            limits,
            not_applied,
        };
        drop(init_rule);
        Ok(Layers {
            init_exe,
            root,
            namespaces,
            id_map,
            switch_ids,
            fresh_proc: spec.pid_ns && spec.mount_ns,
            tmpfs,
            tmpfs_bytes: spec.disk,
            loopback: spec.network.has_loopback(),
            proxy_port: (spec.network == NetMode::Proxy).then_some(super::net_rules::PROXY_PORT),
            hostname: if spec.uts_ns {
                spec.hostname.as_deref().map(|h| cstring(Path::new(h)))
            } else {
                None
            },
            rlimits: RlimitPlan {
                core: 0,
                file_size: spec.file_size,
                open_files: spec.open_files,
                ..RlimitPlan::default()
            },
            caps,
            landlock,
            landlock_child_rules,
            seccomp,
            memfd_sysctl,
            strict: spec.strict(),
            exec_places: spec.landlock.then(|| ExecPlaces {
                granted: spec.exec.clone(),
                denied: spec.deny.clone(),
            }),
            report,
        })
    }
}

impl SandboxReport {
    /// Records what the child reported: the Landlock verdict it actually got
    /// and the best-effort layers the kernel refused.
    pub fn record_child(&mut self, landlock: Option<LandlockStatus>, not_applied: &[String]) {
        if let Some(status) = landlock {
            self.landlock.status = enforcement_name(status).to_string();
        }
        self.not_applied.extend(not_applied.iter().cloned());
    }
}

fn enforcement_name(s: LandlockStatus) -> &'static str {
    match s.status {
        landlock::Coverage::FullyEnforced => "fully_enforced",
        landlock::Coverage::PartiallyEnforced => "partially_enforced",
        landlock::Coverage::NotEnforced => "not_enforced",
    }
}

fn cstring(p: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    // Paths from policies and the kernel cannot hold NUL bytes; keep a safe fallback anyway.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent"))
}

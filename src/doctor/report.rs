//! The `doctor` report: host probes, the cgroup layout, and for every policy
//! whether this host can enforce it and what would be missing.

use schemars::JsonSchema;
use serde::Serialize;

use super::identity::{probe_identity, IdentityProbe};
use super::probe::{probe_host, HostProbe};
use crate::policy::{self, NetMode, Policy, PolicySources, SeccompProfile};
use crate::sandbox::cgroup::{dir_name, JobCgroup, Layout, LayoutKind, Limits};

/// What the cgroup side of this host offers.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CgroupProbe {
    pub available: bool,
    /// `v2` or `hybrid`; null when no cgroup2 hierarchy is mounted.
    pub layout: Option<LayoutKind>,
    /// Our own cgroup in the v2 hierarchy, under which job cgroups are made.
    pub v2_dir: Option<String>,
    /// Where each resource controller is usable (null: not available for limits).
    pub memory: Option<String>,
    pub pids: Option<String>,
    pub cpu: Option<String>,
    /// `cgroup.kill` exists in a job cgroup (kill a whole tree at once).
    pub cgroup_kill: bool,
    /// `cgroup.freeze` exists in a job cgroup (signal a tree without races).
    pub cgroup_freeze: bool,
    pub detail: String,
}

/// One policy's verdict on this host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PolicyVerdict {
    pub name: String,
    /// `strict` or `best_effort`.
    pub enforcement: String,
    /// Every layer the policy asks for is available here.
    pub enforceable: bool,
    /// Layers the policy asks for that this host lacks.
    pub missing: Vec<String>,
    /// The policy file could not be used at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorReport {
    pub cgroup: CgroupProbe,
    pub host: HostProbe,
    /// Who a job is on the host, and which of the caller's trees can be
    /// shown to it idmapped.
    pub identity: IdentityProbe,
    pub policies: Vec<PolicyVerdict>,
    /// The `default` policy can be fully enforced (the exit status says the same).
    pub default_enforceable: bool,
}

pub fn diagnose(sources: &PolicySources) -> DoctorReport {
    let host = probe_host();
    let cgroup = probe_cgroup();
    let identity = probe_identity(sources);
    let mut policies = Vec::new();
    let names: Vec<String> = match policy::list(sources) {
        Ok(list) => list.into_iter().map(|e| e.name).collect(),
        Err(_) => policy::builtin_names().map(String::from).collect(),
    };
    for name in names {
        match policy::resolve(&name, sources) {
            Ok(p) => policies.push(verdict(&p, &host, &cgroup, &identity)),
            Err(e) => policies.push(PolicyVerdict {
                name,
                enforcement: "unknown".into(),
                enforceable: false,
                missing: Vec::new(),
                error: Some(e.to_string()),
            }),
        }
    }
    let default_enforceable = policies
        .iter()
        .any(|p| p.name == "default" && p.enforceable);
    DoctorReport {
        cgroup,
        host,
        identity,
        policies,
        default_enforceable,
    }
}

fn verdict(
    p: &Policy,
    host: &HostProbe,
    cgroup: &CgroupProbe,
    identity: &IdentityProbe,
) -> PolicyVerdict {
    let mut missing = Vec::new();
    // A root caller's job with a new root works in the working directory
    // through an idmapped mount.
    let new_root = p.namespaces.mount && p.filesystem.landlock;
    if new_root && identity.unprivileged {
        for tree in identity.idmapped_mounts.iter().filter(|t| t.tree == "cwd") {
            if !tree.available {
                missing.push(format!(
                    "idmapped mount of the working directory {}",
                    tree.path
                ));
            }
        }
    }
    if !cgroup.available {
        missing.push("cgroup v2".to_string());
    }
    if p.limits.memory.is_some() && cgroup.memory.is_none() {
        missing.push("memory controller (memory limit)".into());
    }
    if p.limits.pids.is_some() && cgroup.pids.is_none() {
        missing.push("pids controller (pids limit)".into());
    }
    if p.limits.cpu.is_some() && cgroup.cpu.is_none() {
        missing.push("cpu controller (cpu limit)".into());
    }
    let ns = &host.namespaces;
    for (wanted, probe, name) in [
        (p.namespaces.user, &ns.user.available, "user namespace"),
        (p.namespaces.pid, &ns.pid.available, "pid namespace"),
        (p.namespaces.mount, &ns.mount.available, "mount namespace"),
        (p.namespaces.ipc, &ns.ipc.available, "ipc namespace"),
        (p.namespaces.uts, &ns.uts.available, "uts namespace"),
        (
            p.namespaces.cgroup,
            &ns.cgroup.available,
            "cgroup namespace",
        ),
        (
            p.network.mode != NetMode::Host,
            &ns.net.available,
            "network namespace",
        ),
    ] {
        if wanted && !*probe {
            missing.push(name.to_string());
        }
    }
    let wants_landlock = p.filesystem.landlock
        || p.network.connect_ports.is_some()
        || p.network.bind_ports.is_some();
    if wants_landlock {
        match host.landlock.abi {
            None => missing.push("landlock".into()),
            Some(abi) => {
                if p.filesystem.landlock && abi < 6 {
                    missing.push(format!(
                        "landlock ABI 6 (abstract unix and signal scoping); this kernel has {abi}"
                    ));
                }
                if p.network.mode == NetMode::Host
                    && (p.network.connect_ports.is_some() || p.network.bind_ports.is_some())
                    && abi < 4
                {
                    missing.push(format!("landlock ABI 4 (TCP rules); this kernel has {abi}"));
                }
            }
        }
    }
    if p.seccomp.profile != SeccompProfile::None && !host.seccomp.available {
        missing.push("seccomp".into());
    }
    PolicyVerdict {
        name: p.name.clone(),
        enforcement: p.enforcement.as_str().to_string(),
        // best_effort policies start anyway, but "enforceable" means every layer is there.
        enforceable: missing.is_empty(),
        missing,
        error: None,
    }
}

/// Makes (and removes) a probe cgroup to see which files a job cgroup gets.
fn probe_cgroup() -> CgroupProbe {
    let layout = match Layout::detect() {
        Ok(l) => l,
        Err(e) => {
            return CgroupProbe {
                available: false,
                layout: None,
                v2_dir: None,
                memory: None,
                pids: None,
                cpu: None,
                cgroup_kill: false,
                cgroup_freeze: false,
                detail: e.to_string(),
            }
        }
    };
    let name = format!("doctor-{}", std::process::id());
    let (kill, freeze, detail) = match JobCgroup::create(&layout, &name, &Limits::default(), false)
    {
        Ok(c) => {
            let kill = c.v2_dir().join("cgroup.kill").exists();
            let freeze = c.v2_dir().join("cgroup.freeze").exists();
            c.remove();
            (
                kill,
                freeze,
                format!(
                    "job cgroups are created as {}",
                    layout.v2_own.join(dir_name("<job id>")).display()
                ),
            )
        }
        Err(e) => (false, false, format!("cannot create a job cgroup: {e}")),
    };
    let controller = |name: &str| -> Option<String> {
        match layout.kind {
            LayoutKind::Hybrid => layout.v1_own.get(name).map(|p| p.display().to_string()),
            LayoutKind::V2 => std::fs::read_to_string(layout.v2_own.join("cgroup.controllers"))
                .ok()
                .filter(|c| c.split_whitespace().any(|x| x == name))
                .map(|_| layout.v2_own.display().to_string()),
        }
    };
    CgroupProbe {
        available: kill || freeze || detail.starts_with("job cgroups"),
        layout: Some(layout.kind),
        v2_dir: Some(layout.v2_own.display().to_string()),
        memory: controller("memory"),
        pids: controller("pids"),
        cpu: controller("cpu"),
        cgroup_kill: kill,
        cgroup_freeze: freeze,
        detail,
    }
}

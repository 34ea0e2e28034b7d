//! The `doctor` report: host probes, the cgroup layout, and for every policy
//! whether this host can enforce it and what would be missing.

use schemars::JsonSchema;
use serde::Serialize;

use super::identity::{probe_identity, IdentityProbe};
use super::probe::{probe_host, HostProbe};
use crate::policy::{
    self, CgroupNeed, Enforcement, NetMode, Policy, PolicySources, SeccompProfile,
};
use crate::sandbox::cgroup::{dir_name, JobCgroup, Layout, LayoutKind, Limits};
use crate::sandbox::identity::HostIdentity;

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
    /// Layers the policy asks for that this host lacks, without which a
    /// strict policy does not start.
    pub missing: Vec<String>,
    /// What a job under this policy reports as not applied here, and
    /// starts without (a policy with `cgroup = "optional"` on a host that
    /// gives the caller no cgroup).
    pub not_applied: Vec<String>,
    /// The policy file could not be used at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Who asks: jobs of a caller without root run as the caller, in user
/// namespaces of its own, with the cgroup the host delegates to it, if any.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CallerProbe {
    pub uid: u32,
    pub gid: u32,
    pub root: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorReport {
    pub caller: CallerProbe,
    pub cgroup: CgroupProbe,
    pub host: HostProbe,
    /// Who a job is on the host, and which of the caller's trees can be
    /// shown to it idmapped.
    pub identity: IdentityProbe,
    pub policies: Vec<PolicyVerdict>,
    /// The `default` policy can be fully enforced (the exit status says the same).
    pub default_enforceable: bool,
    /// How to get what this host does not give the caller now.
    pub advice: Vec<String>,
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
                not_applied: Vec::new(),
                error: Some(e.to_string()),
            }),
        }
    }
    let default_enforceable = policies
        .iter()
        .any(|p| p.name == "default" && p.enforceable);
    let me = HostIdentity::caller();
    let caller = CallerProbe {
        uid: me.uid,
        gid: me.gid,
        root: crate::sandbox::identity::caller_is_host_root(),
    };
    let advice = advice(&caller, &host, &cgroup);
    DoctorReport {
        caller,
        cgroup,
        host,
        identity,
        policies,
        default_enforceable,
        advice,
    }
}

/// What to do about each layer the caller lacks, in the words of the
/// setting that gives it.
fn advice(caller: &CallerProbe, host: &HostProbe, cgroup: &CgroupProbe) -> Vec<String> {
    let mut out = Vec::new();
    let userns = &host.namespaces.user;
    if !userns.available {
        let mut how = vec![];
        if userns.max_user_namespaces == Some(0) {
            how.push("sysctl -w user.max_user_namespaces=15000");
        }
        if userns.unprivileged_userns_clone == Some(0) {
            how.push("sysctl -w kernel.unprivileged_userns_clone=1");
        }
        if userns.apparmor_restrict_unprivileged_userns == Some(1) {
            how.push(
                "an AppArmor profile that allows `userns,` for agent-exec \
                 (/etc/apparmor.d/agent-exec: `abi <abi/4.0>, profile agent-exec \
                 /usr/local/bin/agent-exec flags=(unconfined) { userns, }`), or \
                 sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
            );
        }
        if how.is_empty() {
            how.push("a kernel and container runtime that allow unprivileged user namespaces");
        }
        out.push(format!(
            "user namespaces: {} (every namespace, the new root and the fresh init of a \
             caller without root come from one); to allow them, as root: {}",
            userns.detail,
            how.join("; or ")
        ));
    }
    if !cgroup.available || cgroup.memory.is_none() || cgroup.pids.is_none() {
        let what = if cgroup.available {
            let lacking: Vec<&str> = [("memory", &cgroup.memory), ("pids", &cgroup.pids)]
                .into_iter()
                .filter(|(_, c)| c.is_none())
                .map(|(n, _)| n)
                .collect();
            format!(
                "the {} controller of your cgroup is not yours",
                lacking.join(" and ")
            )
        } else {
            format!("no cgroup of your own ({})", cgroup.detail)
        };
        let how = if caller.root {
            "mount cgroup2 (mount -t cgroup2 none /sys/fs/cgroup) and enable the memory, \
             pids and cpu controllers"
                .to_string()
        } else {
            "run agent-exec from a cgroup you own: on systemd hosts `systemd-run --user \
             --scope -p Delegate=yes agent-exec …`, or a user service with Delegate=yes; \
             elsewhere root can delegate one, as systemd does, by giving you a cgroup \
             directory with its cgroup.procs, cgroup.subtree_control and (hybrid hosts) \
             the same directory in the memory and pids hierarchies, and starting your \
             session in it"
                .to_string()
        };
        out.push(format!(
            "cgroups: {what}. Policies with cgroup = \"optional\" (default, ci) run without: \
             the pid namespace kills the job's tree, CPU and the memory peak come from its \
             processes, pids becomes RLIMIT_NPROC, and the memory and cpu limits are not \
             applied; cgroup = \"required\" (untrusted) refuses. To get one: {how}"
        ));
    }
    out
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
    // Without its cgroup (or one of its controllers) a policy that may go
    // without still runs, and its jobs say what was not applied.
    let host_root = crate::sandbox::identity::caller_is_host_root();
    let may_go_without = !host_root
        && (p.cgroup == CgroupNeed::Optional || p.enforcement == Enforcement::BestEffort);
    let mut not_applied = Vec::new();
    let mut lacks = |what: String| {
        if may_go_without {
            not_applied.push(what);
        } else {
            missing.push(what);
        }
    };
    if !cgroup.available {
        lacks("a cgroup of its own (tree kill and accounting through the pid namespace)".into());
    }
    // In the job's own user namespace a pids limit holds without a cgroup.
    let ns = &p.namespaces;
    let any_namespace =
        ns.pid || ns.mount || ns.ipc || ns.uts || ns.cgroup || p.network.mode.own_namespace();
    let pids_by_rlimit = ns.user || (!host_root && any_namespace);
    for (limited, controller, name) in [
        (p.limits.memory.is_some(), &cgroup.memory, "memory"),
        (
            p.limits.pids.is_some() && !pids_by_rlimit,
            &cgroup.pids,
            "pids",
        ),
        (p.limits.cpu.is_some(), &cgroup.cpu, "cpu"),
    ] {
        if limited && (!cgroup.available || controller.is_none()) {
            lacks(format!("{name} controller ({name} limit)"));
        }
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
        not_applied,
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
    // Every controller asked for, each allowed to be missing: what is left
    // out is what a job could not have (a controller not delegated to us).
    let probe_limits = Limits {
        memory_bytes: Some(1 << 40),
        pids: Some(1 << 20),
        cpus: Some(1024.0),
    };
    // As a job's supervisor does: under our own cgroup, or (a caller
    // without root whose cgroup is root's) in a scope from its systemd,
    // which this process then stays in until it exits.
    let (kill, freeze, detail, unusable) =
        match JobCgroup::create_or_ask_systemd(&layout, &name, &probe_limits, true) {
            Ok(c) => {
                let kill = c.v2_dir().join("cgroup.kill").exists();
                let freeze = c.v2_dir().join("cgroup.freeze").exists();
                let unusable: Vec<&str> = c.not_applied().iter().map(|(limit, _)| *limit).collect();
                let detail = if c.v2_dir().parent() == Some(layout.v2_own.as_path()) {
                    format!(
                        "job cgroups are created as {}",
                        layout.v2_own.join(dir_name("<job id>")).display()
                    )
                } else {
                    format!(
                        "job cgroups are created in a delegated scope from your systemd, \
                         as {}",
                        c.v2_dir().display()
                    )
                };
                c.remove();
                (kill, freeze, detail, unusable)
            }
            Err(e) => (
                false,
                false,
                format!("cannot create a job cgroup: {e}"),
                vec!["limits.memory", "limits.pids", "limits.cpu"],
            ),
        };
    let controller = |name: &str| -> Option<String> {
        if unusable.contains(&format!("limits.{name}").as_str()) {
            return None;
        }
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

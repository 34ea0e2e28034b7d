//! Who a job would be on this host, and whether the caller's trees can be
//! shown to it idmapped (a root caller's jobs need both; see
//! `sandbox::identity`).

use std::os::fd::AsFd;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Serialize;

use crate::policy::{Floor, PolicySources};
use crate::sandbox::identity::{HostIdentity, IdmapUserns};
use crate::sandbox::view::can_idmap;

/// One tree a job typically works in, and whether it can be idmapped.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IdmapProbe {
    /// `cwd` (doctor's working directory) or `home`.
    pub tree: String,
    pub path: String,
    pub available: bool,
    pub detail: String,
}

/// The job's host identity.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct IdentityProbe {
    /// Jobs with a new root run as `uid`/`gid` instead of the caller (the
    /// caller is root); false: jobs run as the caller.
    pub unprivileged: bool,
    /// The host uid and gid a job with a new root runs as.
    pub uid: u32,
    pub gid: u32,
    /// Where they come from: the host floor's `job_uid`/`job_gid`, or the
    /// built-in default.
    pub source: String,
    /// The trees probed for idmapped mounts (empty when jobs run as the caller).
    pub idmapped_mounts: Vec<IdmapProbe>,
    pub detail: String,
}

pub fn probe_identity(sources: &PolicySources) -> IdentityProbe {
    let caller = HostIdentity::caller();
    let (floor, source) = match Floor::load_from(sources) {
        Ok(f) => {
            let source = match &f.path {
                Some(p) => format!("host floor {}", p.display()),
                None => "built-in default (no host floor)".to_string(),
            };
            (f, source)
        }
        Err(e) => {
            return IdentityProbe {
                unprivileged: caller.uid == 0,
                uid: caller.uid,
                gid: caller.gid,
                source: "unreadable host floor".into(),
                idmapped_mounts: Vec::new(),
                detail: format!("the host floor cannot be used, so no job starts: {e}"),
            }
        }
    };
    let job = floor.job_identity;
    if caller.uid != 0 {
        return IdentityProbe {
            unprivileged: false,
            uid: caller.uid,
            gid: caller.gid,
            source: "the caller".into(),
            idmapped_mounts: Vec::new(),
            detail: "jobs run as the caller: only root can give them another host identity".into(),
        };
    }
    let trees: Vec<(&str, PathBuf)> = [
        ("cwd", std::env::current_dir().ok()),
        ("home", std::env::var_os("HOME").map(PathBuf::from)),
    ]
    .into_iter()
    .filter_map(|(name, p)| Some((name, p?.canonicalize().ok()?)))
    .collect();
    let userns = IdmapUserns::new(caller, job);
    let idmapped_mounts = trees
        .into_iter()
        .map(|(tree, path)| {
            let outcome = match &userns {
                Ok(ns) => can_idmap(&path, ns.0.as_fd()),
                Err(e) => Err(e.to_string()),
            };
            IdmapProbe {
                tree: tree.into(),
                path: path.display().to_string(),
                available: outcome.is_ok(),
                detail: match outcome {
                    Ok(()) => "idmapped mounts work here: the job owns what the caller owns".into(),
                    Err(e) => format!(
                        "cannot idmap this tree ({e}): a strict policy refuses a job that is \
                         granted it; best_effort runs it and reports the tree as not applied"
                    ),
                },
            }
        })
        .collect();
    IdentityProbe {
        unprivileged: true,
        uid: job.uid,
        gid: job.gid,
        source,
        idmapped_mounts,
        detail: "a root caller's jobs with a new root run as this unprivileged host user".into(),
    }
}

//! Resource controllers on a hybrid host: one v1 directory per controller.
//!
//! The child is cloned into the controller-less v2 cgroup and then, before
//! the parent lets it run, written into each v1 `cgroup.procs` here.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::{create_under, dir_name, read_keyed, read_u64, remove_dir_retrying, write_limit};
use super::{CgroupError, Controllers, Limits, Unapplied, Usage};

/// memory and pids always (their peaks are part of every result); cpu only when limited.
pub(crate) struct V1Controllers {
    dirs: BTreeMap<&'static str, PathBuf>,
}

impl V1Controllers {
    /// Creates the job's directory in each controller it uses. With
    /// `optional`, a controller the caller may not use (not mounted, or not
    /// delegated to a caller without root) is left out, and each limit it
    /// would have applied is returned as not applied.
    pub(crate) fn create(
        own: &BTreeMap<String, PathBuf>,
        name: &str,
        limits: &Limits,
        optional: bool,
    ) -> Result<(V1Controllers, Vec<Unapplied>), CgroupError> {
        let mut wanted: Vec<&'static str> = vec!["memory", "pids"];
        if limits.cpus.is_some() {
            wanted.push("cpu");
        }
        let mut created = V1Controllers {
            dirs: BTreeMap::new(),
        };
        let mut not_applied = Vec::new();
        for controller in wanted {
            let limited = match controller {
                "memory" => limits.memory_bytes.is_some(),
                "pids" => limits.pids.is_some(),
                _ => true,
            };
            let Some(own_dir) = own.get(controller) else {
                if limited && !optional {
                    created.remove();
                    return Err(CgroupError::Unsupported(match controller {
                        "memory" => "the v1 memory controller is not mounted: cannot limit memory",
                        "pids" => "the v1 pids controller is not mounted: cannot limit pids",
                        _ => "the v1 cpu controller is not mounted: cannot limit cpus",
                    }));
                }
                if limited {
                    not_applied.push(super::unapplied_limit(
                        controller,
                        "its v1 controller is not mounted",
                    ));
                }
                continue;
            };
            match create_under(own_dir, name) {
                Ok(dir) => {
                    created.dirs.insert(controller, dir);
                }
                Err(CgroupError::Create(path, e)) if optional && super::is_denied(&e) => {
                    if limited {
                        not_applied.push(super::unapplied_limit(
                            controller,
                            &format!("cannot create {}: {e}", path.display()),
                        ));
                    }
                }
                Err(e) => {
                    created.remove();
                    return Err(e);
                }
            }
        }
        Ok((created, not_applied))
    }

    pub(crate) fn existing(own: &BTreeMap<String, PathBuf>, name: &str) -> V1Controllers {
        let mut dirs = BTreeMap::new();
        for controller in ["memory", "pids", "cpu"] {
            if let Some(own_dir) = own.get(controller) {
                let dir = own_dir.join(dir_name(name));
                if dir.is_dir() {
                    dirs.insert(controller, dir);
                }
            }
        }
        V1Controllers { dirs }
    }
}

impl Controllers for V1Controllers {
    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        if let (Some(bytes), Some(dir)) = (limits.memory_bytes, self.dirs.get("memory")) {
            write_limit(
                dir.join("memory.limit_in_bytes"),
                &bytes.to_string(),
                "memory",
            )?;
            // Without this the job could spill past its limit into swap.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_limit(memsw, &bytes.to_string(), "memory+swap")?;
            }
        }
        if let (Some(pids), Some(dir)) = (limits.pids, self.dirs.get("pids")) {
            write_limit(dir.join("pids.max"), &pids.to_string(), "pids")?;
        }
        if let (Some(cpus), Some(dir)) = (limits.cpus, self.dirs.get("cpu")) {
            let period: u64 = 100_000;
            let quota = ((cpus * period as f64).round() as u64).max(1000);
            write_limit(dir.join("cpu.cfs_period_us"), &period.to_string(), "cpu")?;
            write_limit(dir.join("cpu.cfs_quota_us"), &quota.to_string(), "cpu")?;
        }
        Ok(())
    }

    fn peaks(&self, usage: &mut Usage) {
        if let Some(dir) = self.dirs.get("memory") {
            usage.memory_peak_bytes = read_u64(&dir.join("memory.max_usage_in_bytes"));
        }
        if let Some(dir) = self.dirs.get("pids") {
            usage.pids_peak = read_u64(&dir.join("pids.peak"));
        }
    }

    fn oom_kills(&self) -> u64 {
        self.dirs.get("memory").map_or(0, |dir| {
            read_keyed(&dir.join("memory.oom_control"), "oom_kill").unwrap_or(0)
        })
    }

    fn remove(&self) {
        // Only our own directories: their parent is the caller's cgroup.
        for dir in self.dirs.values() {
            remove_dir_retrying(dir);
        }
    }

    fn self_join_files(&self) -> io::Result<Vec<fs::File>> {
        self.dirs
            .values()
            .map(|dir| {
                fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("tasks"))
            })
            .collect()
    }
}

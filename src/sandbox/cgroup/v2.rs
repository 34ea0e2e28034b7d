//! Resource controllers on a pure cgroup v2 host: files in the job's own directory.
//!
//! Controllers must be enabled in `cgroup.subtree_control` of every ancestor
//! between our own cgroup and the job's. The kernel refuses that for a
//! non-root cgroup that still holds processes ("no internal processes"), in
//! which case limits cannot be applied and we say so instead of pretending.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{read_keyed, read_u64, write_limit};
use super::{CgroupError, Controllers, Limits, Unapplied, Usage};

pub(crate) struct V2Controllers {
    dir: PathBuf,
    /// The controllers enabled for the job's cgroup: only their files exist
    /// in it, so only their limits are written and their peaks read.
    enabled: Vec<&'static str>,
}

impl V2Controllers {
    /// With `optional`, a controller that cannot be enabled leaves its
    /// limit out, returned as not applied.
    pub(crate) fn new(
        own: &Path,
        job_dir: &Path,
        limits: &Limits,
        optional: bool,
    ) -> Result<(V2Controllers, Vec<Unapplied>), CgroupError> {
        let mut not_applied = Vec::new();
        let wanted: Vec<&'static str> = [
            ("memory", true),
            ("pids", true),
            ("cpu", limits.cpus.is_some()),
        ]
        .iter()
        .filter(|(_, w)| *w)
        .map(|(c, _)| *c)
        .collect();
        let needs = |c: &str| match c {
            "memory" => limits.memory_bytes.is_some(),
            "pids" => limits.pids.is_some(),
            _ => limits.cpus.is_some(),
        };
        let mut enabled = Vec::new();
        for controller in wanted {
            let source = match enable(own, controller) {
                Ok(()) => {
                    enabled.push(controller);
                    continue;
                }
                Err(source) => source,
            };
            let control_file = own.join("cgroup.subtree_control");
            if needs(controller) && optional {
                let why = format!("cannot enable it in {}: {source}", control_file.display());
                not_applied.push(super::unapplied_limit(controller, &why));
            } else if needs(controller) {
                return Err(CgroupError::Limit {
                    what: match controller {
                        "memory" => "memory",
                        "pids" => "pids",
                        _ => "cpu",
                    },
                    path: control_file,
                    source,
                });
            }
            // Accounting only: without the controller its peak reads as
            // unknown.
        }
        Ok((
            V2Controllers {
                dir: job_dir.to_path_buf(),
                enabled,
            },
            not_applied,
        ))
    }

    pub(crate) fn existing(dir: &Path) -> V2Controllers {
        V2Controllers {
            dir: dir.to_path_buf(),
            enabled: vec!["memory", "pids", "cpu"],
        }
    }

    fn has(&self, controller: &str) -> bool {
        self.enabled.contains(&controller)
    }
}

fn enable(parent: &Path, controller: &str) -> io::Result<()> {
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
    if enabled.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    fs::write(
        parent.join("cgroup.subtree_control"),
        format!("+{controller}"),
    )
}

impl Controllers for V2Controllers {
    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        if let (Some(bytes), true) = (limits.memory_bytes, self.has("memory")) {
            write_limit(self.dir.join("memory.max"), &bytes.to_string(), "memory")?;
            let swap = self.dir.join("memory.swap.max");
            if swap.exists() {
                write_limit(swap, "0", "memory swap")?;
            }
        }
        if let (Some(pids), true) = (limits.pids, self.has("pids")) {
            write_limit(self.dir.join("pids.max"), &pids.to_string(), "pids")?;
        }
        if let (Some(cpus), true) = (limits.cpus, self.has("cpu")) {
            let period: u64 = 100_000;
            let quota = ((cpus * period as f64).round() as u64).max(1000);
            write_limit(
                self.dir.join("cpu.max"),
                &format!("{quota} {period}"),
                "cpu",
            )?;
        }
        Ok(())
    }

    fn peaks(&self, usage: &mut Usage) {
        usage.memory_peak_bytes = read_u64(&self.dir.join("memory.peak"));
        usage.pids_peak = read_u64(&self.dir.join("pids.peak"));
    }

    fn oom_kills(&self) -> u64 {
        read_keyed(&self.dir.join("memory.events"), "oom_kill").unwrap_or(0)
    }

    fn remove(&self) {
        // The v2 directory is the job directory itself: JobCgroup removes it.
    }

    fn self_join_files(&self) -> io::Result<Vec<fs::File>> {
        Ok(Vec::new()) // CLONE_INTO_CGROUP reaches every controller
    }
}

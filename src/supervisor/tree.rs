//! The job's process tree as the supervisor reaches it.
//!
//! With a cgroup of its own (always for root; for other callers where the
//! host delegates one) every process of the job is in it, whatever it
//! forked or however it detached. Without one (a caller the host delegates
//! nothing to), the job's pid namespace is the tree: its init forwards the
//! signals it is sent to every process of the namespace, and its death
//! takes them all with it. Without a pid namespace either (`permissive`),
//! only the job's process group is reached, and the sandbox report says so.

use std::cell::Cell;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::sandbox::cgroup::{JobCgroup, Usage};

pub(super) enum JobTree {
    Cgroup(JobCgroup),
    /// pid 1 of the job's pid namespace (our child, and our init: it
    /// forwards signals to the namespace).
    Namespace {
        init: i32,
        reaped: Cell<bool>,
    },
    /// The job's first process, leader of the session and process group it
    /// made; processes that leave the group are out of reach.
    Group {
        leader: i32,
        reaped: Cell<bool>,
    },
}

impl JobTree {
    /// Sends `signal` to every process of the job it can reach.
    pub(super) fn signal_all(&self, signal: Signal) {
        match self {
            JobTree::Cgroup(cgroup) => {
                cgroup.signal_all(signal);
            }
            // The init has a handler for every signal it forwards, so the
            // kernel delivers them to it from outside its namespace; SIGKILL
            // ends it, and the namespace with it.
            JobTree::Namespace { init, reaped } => {
                if !reaped.get() {
                    // SAFETY: our own child, not yet reaped (its pid is still its own).
                    unsafe { libc::kill(*init, signal as i32) };
                }
            }
            // A process group outlives its leader while it has members, and
            // its id is not reused until then.
            JobTree::Group { leader, reaped } => {
                // Once the leader is reaped and its group empty, the id may
                // be anyone's.
                if reaped.get() && group_members(*leader) == 0 {
                    return;
                }
                // SAFETY: signalling the job's own process group.
                unsafe { libc::kill(-*leader, signal as i32) };
            }
        }
    }

    /// Kills every process of the job it can reach at once.
    pub(super) fn kill_all(&self) {
        match self {
            JobTree::Cgroup(cgroup) => cgroup.kill_all(),
            _ => self.signal_all(Signal::SIGKILL),
        }
    }

    /// The main process was reaped: kills what it left behind and returns
    /// how many processes that was (those the init already counted are not
    /// counted again).
    pub(super) fn kill_leftovers(&self) -> u64 {
        match self {
            JobTree::Cgroup(cgroup) => {
                let left = cgroup.pids().len() as u64;
                if left > 0 {
                    cgroup.kill_all();
                }
                left
            }
            // The init counted them; its exit killed them.
            JobTree::Namespace { reaped, .. } => {
                reaped.set(true);
                0
            }
            JobTree::Group { leader, reaped } => {
                reaped.set(true);
                let left = group_members(*leader);
                if left > 0 {
                    self.kill_all();
                }
                left
            }
        }
    }

    /// What the cgroup measured, after the last process is gone (nothing
    /// without one: the caller fills in what the processes told).
    pub(super) fn usage(&self) -> Usage {
        match self {
            JobTree::Cgroup(cgroup) => {
                cgroup.wait_empty(Duration::from_secs(5));
                cgroup.usage()
            }
            _ => Usage::default(),
        }
    }

    pub(super) fn has_cgroup(&self) -> bool {
        matches!(self, JobTree::Cgroup(_))
    }

    /// Removes the job's cgroups, if it has any.
    pub(super) fn remove(&self) {
        if let JobTree::Cgroup(cgroup) = self {
            cgroup.remove();
        }
    }
}

/// How many processes are in process group `pgid` (from `/proc/*/stat`).
fn group_members(pgid: i32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<i32>().ok()
                })
                == Some(pgid)
        })
        .count() as u64
}

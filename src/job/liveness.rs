//! Is the job's supervisor still alive, and what to do when it is not.
//!
//! A pid alone can be reused; a pid plus its start time (field 22 of
//! `/proc/PID/stat`) cannot. A supervisor that died without recording a
//! result leaves a job that must not run on unsupervised: whoever notices
//! first kills what is left in its cgroup and records `lost`.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

use super::index::{Index, Row};
use super::model::{JobStatus, Outcome, ProcRef, ResultKind, State};
use super::store::{Store, StoreResult};
use crate::sandbox::cgroup::{JobCgroup, Layout};
use crate::timefmt::now_ms;

/// Grace for a `start` that claimed the lock but has not recorded its supervisor yet.
const UNRECORDED_START_GRACE_MS: u64 = 30_000;

/// The identity of a live process, if it is alive and not a zombie.
pub fn proc_ref(pid: i32) -> Option<ProcRef> {
    let (start_time, state) = stat_fields(pid)?;
    (state != 'Z' && state != 'X').then_some(ProcRef { pid, start_time })
}

/// (start time, state letter) from /proc/PID/stat.
fn stat_fields(pid: i32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start_time = fields.get(19)?.parse().ok()?; // field 22 overall
    Some((start_time, state))
}

/// Whether the process recorded as `r` is still the same, living process.
pub fn is_alive(r: &ProcRef) -> bool {
    matches!(stat_fields(r.pid), Some((start, state)) if start == r.start_time && state != 'Z' && state != 'X')
}

/// A pidfd for `r` that is guaranteed to refer to that process (not a reused pid).
pub fn pidfd_of(r: &ProcRef) -> Option<OwnedFd> {
    let fd = pidfd_open(r.pid)?;
    // Checked after opening: if the identity still matches now, the pidfd pins that process.
    is_alive(r).then_some(fd)
}

/// A pidfd for whatever process has `pid` now: safe as is for ourselves and for a child we
/// have not reaped (its pid cannot be reused); see [`pidfd_of`] for anyone else.
pub fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh descriptor we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The supervisor responsible for a non-terminal job, if one was recorded.
pub fn supervisor_of(store: &Store, id: &str, status: &JobStatus) -> Option<ProcRef> {
    status.supervisor.or_else(|| store.start_lock_owner(id))
}

/// Checks a non-terminal job's supervisor; if it is gone, cleans up and records `lost`.
/// Returns the (possibly updated) status.
pub fn reconcile(store: &Store, id: &str, status: JobStatus) -> StoreResult<JobStatus> {
    if !supervisor_gone(store, id, &status) {
        return Ok(status);
    }
    let latest = store.read_status(id)?;
    if latest.state.is_terminal() {
        return Ok(latest);
    }
    Ok(mark_lost(store, id, latest))
}

/// Whether `status` is of a job that should be running and whose
/// supervisor is gone (what [`reconcile`] would mark lost), changing
/// nothing: for `gc --dry-run`.
pub fn supervisor_gone(store: &Store, id: &str, status: &JobStatus) -> bool {
    if status.state.is_terminal() {
        return false;
    }
    if status.state == State::Created && !store.has_start_lock(id) {
        return false; // never started: nothing supervises it, by design
    }
    match supervisor_of(store, id, status) {
        Some(sup) => !is_alive(&sup),
        None => {
            let claimed_at = store.start_claimed_at_ms(id).unwrap_or(0);
            now_ms().saturating_sub(claimed_at) >= UNRECORDED_START_GRACE_MS
        }
    }
}

/// When a job whose supervisor died was last known alive: its last state
/// record, or the last output its supervisor stored, whichever is later.
/// A job found long after is not "finished now", which would keep it
/// another retention window.
pub fn last_known_alive_ms(store: &Store, id: &str, status: &JobStatus) -> u64 {
    let dir = store.job_dir(id);
    ["stdout.log", "stderr.log"]
        .iter()
        .filter_map(|log| fs::metadata(dir.join(log)).ok()?.modified().ok())
        .filter_map(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .chain([status.updated_at_ms, status.started_at_ms.unwrap_or(0)])
        .max()
        .unwrap_or(0)
        .min(now_ms())
}

pub fn mark_lost(store: &Store, id: &str, mut status: JobStatus) -> JobStatus {
    let mut killed = 0;
    if let Ok(layout) = Layout::detect() {
        // Under our cgroup, or where the supervisor recorded it (a scope).
        let cgroup = status
            .cgroup
            .as_deref()
            .and_then(|dir| JobCgroup::reattach_at(&layout, id, dir))
            .unwrap_or_else(|| JobCgroup::reattach(&layout, id));
        if cgroup.v2_dir().is_dir() {
            killed = cgroup.pids().len() as u64;
            cgroup.kill_all();
            cgroup.wait_empty(std::time::Duration::from_secs(5));
            cgroup.remove();
        }
    }
    let now = now_ms();
    let last_alive = last_known_alive_ms(store, id, &status);
    let sup = status
        .supervisor
        .map(|s| format!(" (pid {})", s.pid))
        .unwrap_or_default();
    status.state = State::Lost;
    status.updated_at_ms = now;
    status.finished_at_ms = Some(last_alive);
    status.outcome = Some(Outcome {
        result: ResultKind::Lost,
        exit_code: None,
        signal: None,
        timed_out: false,
        oom_killed: false,
        duration_ms: status
            .started_at_ms
            .map(|s| last_alive.saturating_sub(s))
            .unwrap_or(0),
        resources: super::model::Resources {
            leftover_processes_killed: killed,
            ..Default::default()
        },
        stdout: Default::default(),
        stderr: Default::default(),
        message: Some(format!(
            "the supervisor{sup} died without recording a result (last known alive at {}); {killed} process(es) left in the job's cgroup were killed",
            crate::timefmt::rfc3339(last_alive)
        )),
        sandbox_unavailable: false,
        denials: Vec::new(),
        network: None,
    });
    // If the store cannot take the write (full disk), the answer is still honest.
    let _ = store.write_status(id, &status);
    // Nobody will start it again: secrets kept for its start go too.
    let _ = std::fs::remove_file(store.job_dir(id).join(super::store::SECRETS_FILE));
    status
}

/// The jobs not over yet (created or running in the index), checked
/// against their records and supervisors, as they are now.
///
/// With `write`, a job whose supervisor died is recorded `lost` (and what
/// it left is killed); without (`gc --dry-run`), it is only shown so. A
/// state write the index missed (a full disk, a crash) is caught here too:
/// such a job is still `created` or `running` in its row.
pub fn settle(
    store: &Store,
    index: &Index,
    write: bool,
) -> StoreResult<std::collections::HashMap<String, Row>> {
    let mut now = std::collections::HashMap::new();
    let rows = index.unsettled().map_err(|e| store.index_error(e))?;
    for row in rows {
        let Some(mut row) = store.checked(index, row) else {
            continue;
        };
        if !row.state.is_terminal() {
            let Ok(status) = store.read_status(&row.id) else {
                continue;
            };
            if write {
                if reconcile(store, &row.id, status)?.state.is_terminal() {
                    match store.checked(index, row) {
                        Some(r) => row = r,
                        None => continue,
                    }
                }
            } else if supervisor_gone(store, &row.id, &status) {
                row.state = State::Lost;
                row.finished_at_ms = Some(last_known_alive_ms(store, &row.id, &status));
            }
        }
        now.insert(row.id.clone(), row);
    }
    Ok(now)
}

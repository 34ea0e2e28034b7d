//! Is the job's supervisor still alive, and what to do when it is not.
//!
//! A pid alone can be reused; a pid plus its start time (field 22 of
//! `/proc/PID/stat`) cannot. A supervisor that died without recording a
//! result leaves a job that must not run on unsupervised: whoever notices
//! first kills what is left in its cgroup and records `lost`.

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};

use super::model::{JobStatus, Outcome, ProcRef, ResultKind, State};
use super::store::Store;
use crate::response::AppError;
use crate::sandbox::cgroup::{JobCgroup, Layout};
use crate::timefmt::now_ms;

/// Grace for a `start` that claimed the lock but has not recorded its supervisor yet.
const UNRECORDED_START_GRACE_MS: u64 = 30_000;

/// The identity of a live process, if it is alive and not a zombie.
pub fn proc_ref(pid: i32) -> Option<ProcRef> {
    let (start_time, state) = stat_fields(pid)?;
    (state != 'Z' && state != 'X').then_some(ProcRef { pid, start_time })
}

/// The identity of the calling process, which its parent created after
/// reading `CLOCK_BOOTTIME` as `born_after_ns`.
///
/// The start time in `/proc/PID/stat` is the kernel's `CLOCK_BOOTTIME` at
/// the clone, in clock ticks. The clone happened between the parent's
/// reading and ours: when both fall in the same tick, that tick is the start
/// time, and the file need not be opened (four system calls, some 25 us of
/// a launch). Across a tick boundary (about one launch in a hundred) it is
/// read as before.
pub fn own_ref(born_after_ns: Option<u64>) -> Option<ProcRef> {
    let pid = std::process::id() as i32;
    if let (Some(before), Some(tick_ns), Some(now)) =
        (born_after_ns, clock_tick_ns(), boottime_ns())
    {
        if before <= now && before / tick_ns == now / tick_ns {
            return Some(ProcRef {
                pid,
                start_time: now / tick_ns,
            });
        }
    }
    proc_ref(pid)
}

/// `CLOCK_BOOTTIME` in nanoseconds: what the kernel stamps a new process
/// with; None if the clock cannot be read.
pub fn boottime_ns() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: fills the timespec on our stack (vDSO, async-signal-safe).
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } == 0;
    ok.then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// Nanoseconds per clock tick of `/proc` (USER_HZ), as the kernel divides.
fn clock_tick_ns() -> Option<u64> {
    // SAFETY: plain libc call (glibc answers from the auxiliary vector).
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0 && 1_000_000_000 % hz as u64 == 0).then(|| 1_000_000_000 / hz as u64)
}

/// (start time, state letter) from /proc/PID/stat.
fn stat_fields(pid: i32) -> Option<(u64, char)> {
    let stat = crate::procfs::read_text(format!("/proc/{pid}/stat")).ok()?;
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
    status
        .supervisor
        .or_else(|| store.start_lock_owner(id).map(|(r, _)| r))
}

/// Checks a non-terminal job's supervisor; if it is gone, cleans up and records `lost`.
/// Returns the (possibly updated) status.
pub fn reconcile(store: &Store, id: &str, status: JobStatus) -> Result<JobStatus, AppError> {
    if status.state.is_terminal() {
        return Ok(status);
    }
    if status.state == State::Created && !store.has_start_lock(id) {
        return Ok(status); // never started: nothing supervises it, by design
    }
    match supervisor_of(store, id, &status) {
        Some(sup) if is_alive(&sup) => return Ok(status),
        Some(_) => {}
        None => {
            // Claimed but no supervisor recorded yet: normal for a few ms.
            let claimed_at = fs::metadata(store.job_dir(id).join(super::store::START_LOCK))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            if now_ms().saturating_sub(claimed_at) < UNRECORDED_START_GRACE_MS {
                return Ok(status);
            }
        }
    }
    // The supervisor may have written its final state just before dying.
    let latest = store.read_status(id)?;
    if latest.state.is_terminal() {
        return Ok(latest);
    }
    Ok(mark_lost(store, id, latest))
}

/// Kills whatever the job left in its cgroup, removes the cgroup, records `lost`.
fn mark_lost(store: &Store, id: &str, mut status: JobStatus) -> JobStatus {
    let mut killed = 0;
    if let Ok(layout) = Layout::detect() {
        let cgroup = JobCgroup::reattach(&layout, id);
        if cgroup.v2_dir().is_dir() {
            killed = cgroup.pids().len() as u64;
            cgroup.kill_all();
            cgroup.wait_empty(std::time::Duration::from_secs(5));
            cgroup.remove();
        }
    }
    let now = now_ms();
    let sup = status
        .supervisor
        .map(|s| format!(" (pid {})", s.pid))
        .unwrap_or_default();
    status.state = State::Lost;
    status.updated_at_ms = now;
    status.finished_at_ms = Some(now);
    status.outcome = Some(Outcome {
        result: ResultKind::Lost,
        exit_code: None,
        signal: None,
        timed_out: false,
        oom_killed: false,
        duration_ms: status.started_at_ms.map(|s| now.saturating_sub(s)).unwrap_or(0),
        resources: super::model::Resources {
            leftover_processes_killed: killed,
            ..Default::default()
        },
        stdout: Default::default(),
        stderr: Default::default(),
        message: Some(format!(
            "the supervisor{sup} died without recording a result; {killed} process(es) left in the job's cgroup were killed"
        )),
        sandbox_unavailable: false,
    });
    // If the store cannot take the write (full disk), the answer is still honest.
    let _ = store.write_status(id, &status);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forked child's identity from the clock bracket must be the one
    /// `/proc` gives, and the bracket must be what is used most of the time.
    #[test]
    fn the_clock_bracket_gives_the_start_time_proc_gives() {
        let mut from_clock = 0;
        for _ in 0..20 {
            let mut fds = [0; 2];
            // SAFETY: fds has room for two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let before = boottime_ns().expect("CLOCK_BOOTTIME");
            // SAFETY: the child only makes async-signal-safe calls, then _exit.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork");
            if pid == 0 {
                let took_clock = clock_tick_ns()
                    .zip(boottime_ns())
                    .is_some_and(|(t, now)| before / t == now / t);
                let me = own_ref(Some(before)).map_or(0, |r| r.start_time);
                let msg = [me.to_le_bytes(), u64::from(took_clock).to_le_bytes()].concat();
                // SAFETY: writing our buffer to the pipe, then leaving at once.
                unsafe {
                    libc::write(fds[1], msg.as_ptr().cast(), msg.len());
                    libc::_exit(0);
                }
            }
            let mut buf = [0u8; 16];
            // SAFETY: reading into our buffer from the pipe we made.
            let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 16) };
            assert_eq!(n, 16);
            // The child is a zombie until reaped: /proc still has its start time.
            let proc_start = stat_fields(pid).map(|(start, _)| start);
            // SAFETY: reaping our own child; closing our pipe.
            unsafe {
                libc::waitpid(pid, std::ptr::null_mut(), 0);
                libc::close(fds[0]);
                libc::close(fds[1]);
            }
            let start = u64::from_le_bytes(buf[..8].try_into().unwrap());
            assert_eq!(Some(start), proc_start, "child {pid}");
            from_clock += usize::from(buf[8] == 1);
        }
        assert!(from_clock >= 10, "only {from_clock} of 20 used the clock");
    }
}

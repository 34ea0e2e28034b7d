//! The supervisor process, from its fork to the job's supervision.

use std::io::Write;
use std::os::fd::OwnedFd;

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::event_loop::handled_signals;
use super::supervise::supervise;
use crate::job::liveness::proc_ref;
use crate::job::model::{JobSpec, Secrets};
use crate::job::store::{Store, START_LOCK};

/// Runs as the supervisor of `spec`, whose start its launcher claimed;
/// returns the process's exit code. `done` is closed once the result is
/// recorded.
pub(super) fn main(store: &Store, spec: &JobSpec, secrets: &Secrets, done: Option<OwnedFd>) -> i32 {
    // Blocked by the launcher already; the event loop's signalfd takes them.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None);
    leave_caller();
    // SAFETY: single-threaded process; plain syscalls.
    unsafe {
        // The caller may have left SIGCHLD ignored: we must reap the job ourselves.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Orphans of the job come to us, not to init, so we reap them.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let Some(me) = proc_ref(std::process::id() as i32) else {
        return 1;
    };
    // Record who supervises the job before anything else can go wrong (in
    // one write: a reader never sees the pid without its start time).
    let recorded = std::fs::OpenOptions::new()
        .write(true)
        .open(store.job_dir(&spec.job_id).join(START_LOCK))
        .and_then(|mut lock| lock.write_all(format!("{} {}", me.pid, me.start_time).as_bytes()));
    if recorded.is_err() {
        return 1;
    }
    supervise(store, spec, secrets, me, done)
}

/// A session of our own (the caller's terminal hanging up or its process
/// group being signalled does not reach us), stdio on /dev/null (the
/// caller's pipes must reach EOF when it exits), and no directory of the
/// caller's held busy.
fn leave_caller() {
    // SAFETY: plain syscalls; descriptors 0-2 are ours to replace.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
}

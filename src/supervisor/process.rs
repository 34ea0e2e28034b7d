//! The supervisor process, from its fork to the job's supervision.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

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
    forget_command_line(&format!("agent-exec: supervisor of {}", spec.job_id));
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
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
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
        // A Ctrl-C or hang-up of the caller's terminal that came between
        // the fork and setsid waits, blocked, for the event loop, which
        // would stop the job for it: an ignored signal is discarded.
        for sig in [libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_IGN);
            libc::signal(sig, libc::SIG_DFL);
        }
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

/// Replaces the caller's command line, which every local user can read in
/// `/proc/PID/cmdline` and which may hold secrets (`--env TOKEN=…`), with
/// `title`: the supervisor lives as long as its job, the caller did not.
fn forget_command_line(title: &str) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which may hold spaces: the third first.
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else {
        return;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<usize>().ok());
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    if end <= start {
        return;
    }
    // SAFETY: [arg_start, arg_end) is this process's own argument area, on
    // its stack, writable; nothing reads our arguments after this.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    area.fill(0);
    let title = title.as_bytes();
    let n = title.len().min(area.len() - 1);
    area[..n].copy_from_slice(&title[..n]);
}

//! `agent-exec __supervise ID`: the supervisor process, from its exec to
//! the job's supervision.

use std::io::{Read, Write};

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::event_loop::handled_signals;
use super::supervise::{record_launch_failure, supervise};
use crate::job::liveness::proc_ref;
use crate::job::model::Secrets;
use crate::job::store::{Store, START_LOCK};
use crate::timefmt::now_ms;

/// Runs as the supervisor of the job `id`, whose start its launcher
/// claimed; returns the process's exit code.
pub fn main(store: &Store, id: &str) -> i32 {
    // Normally blocked by the launcher already (see `launch`); the signalfd
    // of the event loop takes them.
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None);
    let mut bytes = Vec::new();
    let read = std::io::stdin().lock().read_to_end(&mut bytes);
    leave_caller();
    let Ok(spec) = store.read_spec(id) else {
        return 1;
    };
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
        .open(store.job_dir(id).join(START_LOCK))
        .and_then(|mut lock| lock.write_all(format!("{} {}", me.pid, me.start_time).as_bytes()));
    if recorded.is_err() {
        return 1;
    }
    let secrets = match read.map(|_| serde_json::from_slice::<Secrets>(&bytes)) {
        Ok(Ok(secrets)) => secrets,
        _ => {
            let message = "the supervisor could not read the job's secrets from its launcher";
            record_launch_failure(store, &spec, me, now_ms(), message.into(), 125, false);
            return 1;
        }
    };
    supervise(store, &spec, &secrets, me)
}

/// Stdio on /dev/null (the caller's pipes must reach EOF when it exits,
/// and a job's supervisor has nobody to talk to), and no directory of the
/// caller's held busy.
fn leave_caller() {
    // SAFETY: plain syscalls; descriptors 0-2 are ours to replace.
    unsafe {
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

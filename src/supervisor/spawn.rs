//! Becoming a supervisor: detached from the caller, its terminal and its session.
//!
//! The CLI forks (cheap: no exec, the job definition is already in memory);
//! a multi-threaded caller such as the pipeline runner instead executes
//! `agent-exec __supervise ID`, because forking a threaded process and then
//! running arbitrary code in the child is not safe.

use std::fs::File;
use std::io::Write;

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::event_loop::handled_signals;
use super::supervise;
use crate::job::liveness::proc_ref;
use crate::job::model::{JobSpec, Secrets};
use crate::job::store::{Store, START_LOCK};
use crate::response::{AppError, ErrorCode};

/// Forks the supervisor of a job whose start was claimed with `lock`.
/// Returns the supervisor's pid; the job runs on after the caller exits.
pub fn spawn_detached(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    lock: File,
) -> Result<i32, AppError> {
    // The CLI never waits for the supervisor: let the kernel reap it, so a
    // caller that observes for a while does not keep a zombie.
    // SAFETY: setting a signal disposition in a single-threaded process.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    // SAFETY: the CLI is single-threaded, so the child may run ordinary code.
    match unsafe { libc::fork() } {
        -1 => Err(AppError::new(
            ErrorCode::LaunchFailed,
            format!(
                "cannot fork the supervisor: {}",
                std::io::Error::last_os_error()
            ),
        )
        .with_job(&spec.job_id)),
        0 => {
            let code = become_supervisor(store, spec, secrets, lock);
            // SAFETY: leave without running the parent's atexit handlers or flushing its buffers.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// `agent-exec __supervise ID`: the exec'd form, reading everything from the store.
pub fn supervise_exec(store: &Store, id: &str) -> i32 {
    let spec = match store.read_spec(id) {
        Ok(s) => s,
        Err(_) => return 1,
    };
    let secrets = if spec.has_secrets {
        store.read_secrets(id).unwrap_or_default()
    } else {
        Secrets::default()
    };
    let lock = match std::fs::OpenOptions::new()
        .write(true)
        .open(store.job_dir(id).join(START_LOCK))
    {
        Ok(f) => f,
        Err(_) => return 1,
    };
    become_supervisor(store, &spec, &secrets, lock)
}

fn become_supervisor(store: &Store, spec: &JobSpec, secrets: &Secrets, mut lock: File) -> i32 {
    // Block the signals we handle before anything can deliver them, and take
    // SIGCHLD back from the caller's SIG_IGN (we must reap the job ourselves).
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None);
    // SAFETY: single-threaded process; plain syscalls.
    unsafe {
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Our own session: the caller's terminal hanging up or its process
        // group being signalled does not reach us.
        libc::setsid();
        // Orphans of the job come to us, not to init, so we reap them.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // Hold no directory of the caller's busy.
        libc::chdir(c"/".as_ptr());
        // stdio away from the caller: its pipes must reach EOF when it exits.
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            libc::close(null);
        }
    }
    let pid = std::process::id() as i32;
    let Some(me) = proc_ref(pid) else {
        return 1;
    };
    // Record who supervises the job before anything else can go wrong.
    let _ = write!(lock, "{} {}", me.pid, me.start_time);
    let _ = lock.flush();
    drop(lock);
    supervise(store, spec, secrets, me)
}

//! The CLI's side: starting a job's supervisor.
//!
//! One way on every architecture: `agent-exec run` and `agent-exec start`,
//! which are single-threaded, fork it; every other front end (pipelines)
//! starts its jobs through `agent-exec start`. The forked supervisor leaves
//! the caller's session and stdio at once, so that the caller's terminal
//! and process-group signals do not reach it and whoever reads the caller's
//! output sees EOF when the caller exits. A caller that waits keeps the
//! read end of a pipe that the supervisor closes once the job's final state
//! is recorded.
//!
//! The pipe, rather than an inotify watch on the job directory: closing an
//! inotify instance waits for an SRCU grace period in the kernel, which
//! made up most of a short job's answer time.

use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};

use super::event_loop::handled_signals;
use crate::job::model::{JobSpec, Secrets};
use crate::job::store::Store;

/// The forked supervisor; the job outlives this handle (and its caller).
pub struct Supervisor {
    pid: i32,
    /// Reaches EOF once the job's final state is recorded, or the supervisor died.
    done: Option<OwnedFd>,
}

/// Whether the caller waits for the job (and so for the supervisor's note).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    Yes,
    No,
}

impl Supervisor {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits until the supervisor has exited (or `deadline` passes) and
    /// reaps it; returns whether it has exited. It is our child: nobody
    /// else reaps it, and its pid cannot be reused meanwhile.
    pub fn wait_exit(&self, deadline: Option<Instant>) -> bool {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let pid = nix::unistd::Pid::from_raw(self.pid);
        if let Some(pidfd) = crate::job::liveness::pidfd_open(self.pid) {
            // Readable once the process has exited.
            poll_until(&pidfd, deadline);
        }
        !matches!(
            waitpid(pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        )
    }

    /// Blocks until the job's final state is recorded (or the supervisor
    /// is gone), or until `deadline`; returns whether the former. The store
    /// says what happened.
    pub fn wait_done(&self, deadline: Option<Instant>) -> bool {
        match &self.done {
            // Nothing is ever written: readable means closed.
            Some(done) => poll_until(done, deadline),
            None => false,
        }
    }
}

/// Blocks until `fd` is readable (true) or `deadline` passes (false).
fn poll_until(fd: &OwnedFd, deadline: Option<Instant>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return true,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// The supervisor could not be started.
#[derive(Debug)]
pub struct SpawnError(String);

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpawnError {}

/// Forks the supervisor of the job `spec`, whose start the caller claimed.
///
/// The caller must be single-threaded (the `run` and `start` commands are):
/// the child goes on with ordinary code, heap included, which a fork of a
/// threaded process could find locked by a thread that no longer exists.
pub fn launch(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    waiting: Waiting,
) -> Result<Supervisor, SpawnError> {
    let failed = |what: &str, e: nix::Error| SpawnError(format!("cannot {what}: {e}"));
    let (done_read, done_write) = match waiting {
        Waiting::Yes => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| failed("make a pipe for the supervisor", e))?;
            (Some(r), Some(w))
        }
        Waiting::No => (None, None),
    };
    // The supervisor's signals are blocked across the fork: its pid is
    // public as soon as we answer, and a SIGTERM arriving before its
    // signalfd takes them must stop the job, not kill its supervisor.
    let mut ours = SigSet::empty();
    sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&handled_signals()),
        Some(&mut ours),
    )
    .map_err(|e| failed("block signals", e))?;
    // SQLite forbids carrying a connection across fork (its locks are
    // per process; its bookkeeping of them is copied): ours is closed, and
    // the supervisor opens its own.
    crate::job::store::close_index();
    // SAFETY: the CLI is single-threaded (see above); the child never
    // returns into the caller's code.
    let forked = unsafe { nix::unistd::fork() };
    if let Ok(nix::unistd::ForkResult::Child) = forked {
        drop(done_read);
        let code = super::process::main(store, spec, secrets, done_write);
        // SAFETY: leave without the caller's atexit handlers or buffers.
        unsafe { libc::_exit(code) }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&ours), None);
    match forked {
        Ok(nix::unistd::ForkResult::Parent { child }) => Ok(Supervisor {
            pid: child.as_raw(),
            done: done_read,
        }),
        Ok(nix::unistd::ForkResult::Child) => unreachable!("the child exited above"),
        Err(e) => Err(failed("fork the supervisor", e)),
    }
}

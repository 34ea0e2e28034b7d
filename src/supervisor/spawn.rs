//! Becoming a supervisor: detached from the caller, its terminal and its session.
//!
//! The CLI forks (cheap: no exec) before it has even defined the job, and
//! hands the job over through a pipe ([`Standby`]); a multi-threaded caller such as the pipeline runner instead executes
//! `agent-exec __supervise ID`, because forking a threaded process and then
//! running arbitrary code in the child is not safe.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::signal::{sigprocmask, SigmaskHow};
use serde::{Deserialize, Serialize};

use super::event_loop::handled_signals;
use super::supervise;
use crate::job::liveness::proc_ref;
use crate::job::model::{JobSpec, ProcRef, Secrets};
use crate::job::store::{Store, START_LOCK};
use crate::response::{AppError, ErrorCode};
use crate::sandbox::cgroup::Layout;

/// What the supervisor writes to the CLI that forked it, on [`Forked::notify`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// The final state is recorded.
    Finished = b'f' as isize,
}

/// The CLI's handle on the supervisor it forked. Lets `run` and `start`
/// learn of the job's milestones from a pipe instead of watching the store
/// with inotify, whose set-up and teardown cost more than the whole wait
/// for a short job.
pub struct Forked {
    pid: i32,
    /// Readable once the supervisor has exited (we are its parent until we exit).
    pidfd: Option<OwnedFd>,
    notify: OwnedFd,
}

impl Forked {
    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Blocks until the supervisor reports the job finished, exits, or
    /// `deadline` passes. The store stays the source of truth: callers read
    /// the state afterwards.
    pub fn wait_finished(&self, deadline: Option<Instant>) {
        let mut fds = vec![libc::pollfd {
            fd: self.notify.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(p) = &self.pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        loop {
            let timeout = match deadline {
                None => -1,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return;
                    }
                    left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
                }
            };
            // SAFETY: fds is a valid array of pollfd for the length given.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            if fds.get(1).is_some_and(|p| p.revents != 0) {
                self.reap();
                return;
            }
            if fds[0].revents != 0 {
                let mut buf = [0u8; 8];
                // SAFETY: reading into a stack buffer from our own pipe.
                let got = unsafe { libc::read(fds[0].fd, buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    return; // EOF: the supervisor is gone
                }
                if buf[..got as usize].contains(&(Milestone::Finished as u8)) {
                    return;
                }
            }
        }
    }

    /// Collects the exited supervisor, so a caller that goes on does not keep a zombie.
    fn reap(&self) {
        let mut status = 0;
        // SAFETY: waiting without blocking for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
    }
}

/// The supervisor's end of [`Forked::notify`] (absent for the exec'd form).
pub(crate) struct Notifier(Option<OwnedFd>);

impl Notifier {
    pub(crate) fn none() -> Notifier {
        Notifier(None)
    }

    /// Best effort: a caller that stopped listening costs nothing (EPIPE, SIGPIPE ignored).
    pub(crate) fn send(&self, milestone: Milestone) {
        if let Some(fd) = &self.0 {
            let byte = [milestone as u8];
            // SAFETY: writing one byte from a stack buffer to our own pipe.
            unsafe { libc::write(fd.as_fd().as_raw_fd(), byte.as_ptr().cast(), 1) };
        }
    }
}

/// A supervisor forked before its job is defined.
///
/// `run` forks it first thing, so that the supervisor's own set-up (a
/// session of its own, its identity, the cgroup layout: half a millisecond
/// of syscalls and page faults on the machines we measured) runs on the
/// second core while the CLI resolves the policy and records the job. The
/// job then reaches it through a pipe ([`Standby::launch`]); a CLI that
/// fails before that closes the pipe, and the supervisor leaves having
/// touched nothing.
pub struct Standby {
    pid: i32,
    /// Readable once the supervisor has exited (we are its parent until we exit).
    pidfd: Option<OwnedFd>,
    /// The job, as JSON, then EOF.
    handoff: OwnedFd,
    notify: OwnedFd,
    /// Closed by us once the job's directories and logs exist (see prepare_job_files).
    files_ready: OwnedFd,
}

/// What [`Standby::launch`] sends: the clear-text secrets travel through
/// the pipe, never through the store.
#[derive(Serialize)]
struct HandoffOut<'a> {
    spec: &'a JobSpec,
    secrets: &'a Secrets,
}

#[derive(Deserialize)]
struct HandoffIn {
    spec: JobSpec,
    secrets: Secrets,
}

impl Standby {
    /// Forks the supervisor-to-be. The job it will run must have its start
    /// claimed (start.lock) before [`Standby::launch`].
    pub fn fork(store: &Store) -> Result<Standby, AppError> {
        let fork_error = |what: &str| {
            AppError::new(
                ErrorCode::LaunchFailed,
                format!(
                    "cannot {what} the supervisor: {}",
                    std::io::Error::last_os_error()
                ),
            )
        };
        let (handoff_read, handoff_write) =
            crate::sandbox::pipe().map_err(|_| fork_error("make a pipe for"))?;
        let (notify_read, notify_write) =
            crate::sandbox::pipe().map_err(|_| fork_error("make a pipe for"))?;
        let (files_ready_read, files_ready_write) =
            crate::sandbox::pipe().map_err(|_| fork_error("make a pipe for"))?;
        // The supervisor's signals are blocked across the fork: its pid is
        // public as soon as we answer, and a SIGTERM arriving before it could
        // block them itself would kill it instead of stopping the job.
        let mut caller_mask = nix::sys::signal::SigSet::empty();
        let _ = sigprocmask(
            SigmaskHow::SIG_BLOCK,
            Some(&handled_signals()),
            Some(&mut caller_mask),
        );
        // SAFETY: the CLI is single-threaded, so the child may run ordinary code.
        let forked = unsafe { libc::fork() };
        if forked != 0 {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&caller_mask), None);
        }
        match forked {
            -1 => Err(fork_error("fork")),
            0 => {
                drop((handoff_write, notify_read, files_ready_write));
                let notifier = Notifier(Some(notify_write));
                let code = stand_by(store, handoff_read, notifier, files_ready_read);
                // SAFETY: leave without running the parent's atexit handlers or flushing its buffers.
                unsafe { libc::_exit(code) }
            }
            pid => {
                drop((handoff_read, notify_write, files_ready_read));
                // Our unreaped child: its pid cannot be reused, so this pidfd is its.
                // SAFETY: plain syscall; the descriptor returned is ours.
                let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
                // SAFETY: a fresh descriptor, owned here.
                let pidfd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) });
                Ok(Standby {
                    pid,
                    pidfd,
                    handoff: handoff_write,
                    notify: notify_read,
                    files_ready: files_ready_write,
                })
            }
        }
    }

    /// Hands the job (claimed, recorded in the store) to the supervisor,
    /// then makes the job's files while it builds the sandbox. The job runs
    /// on after the caller exits.
    pub fn launch(
        self,
        store: &Store,
        spec: &JobSpec,
        secrets: &Secrets,
    ) -> Result<Forked, AppError> {
        let Standby {
            pid,
            pidfd,
            handoff,
            notify,
            files_ready,
        } = self;
        let message = serde_json::to_vec(&HandoffOut { spec, secrets }).map_err(|e| {
            AppError::new(ErrorCode::Internal, format!("cannot encode the job: {e}"))
        })?;
        if let Err(e) = File::from(handoff).write_all(&message) {
            // The pipe closes with the File: should the supervisor still be
            // alive, it leaves as if we had failed before the handoff.
            return Err(AppError::new(
                ErrorCode::LaunchFailed,
                format!("the supervisor (pid {pid}) did not take the job: {e}"),
            )
            .with_job(&spec.job_id));
        }
        // Two cores: make the job's files while the supervisor sets up its cgroups.
        let _ = super::prepare_job_files(store, spec);
        drop(files_ready);
        Ok(Forked { pid, pidfd, notify })
    }
}

/// The forked supervisor until its job arrives, then for the job's life.
fn stand_by(store: &Store, handoff: OwnedFd, notifier: Notifier, files_ready: OwnedFd) -> i32 {
    let Some(me) = detach() else {
        return 1;
    };
    // The layout is the host's, not the job's: learn it while the CLI
    // defines the job. An error is the job's launch failure, reported once
    // there is a job to report it on.
    let layout = Layout::detect();
    let Some(job) = receive_handoff(handoff) else {
        return 0; // the CLI defined no job
    };
    let id = &job.spec.job_id;
    let Ok(mut lock) = std::fs::OpenOptions::new()
        .write(true)
        .open(store.job_dir(id).join(START_LOCK))
    else {
        return 1;
    };
    record_supervisor(&mut lock, me);
    supervise(
        store,
        &job.spec,
        &job.secrets,
        me,
        &notifier,
        Some(files_ready),
        layout,
    )
}

/// Reads the handoff pipe to EOF; `None` when it closed empty (no job) or
/// the message is not a job.
fn receive_handoff(handoff: OwnedFd) -> Option<HandoffIn> {
    let mut message = Vec::with_capacity(8192);
    File::from(handoff).read_to_end(&mut message).ok()?;
    if message.is_empty() {
        return None;
    }
    serde_json::from_slice(&message).ok()
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
    let mut lock = match std::fs::OpenOptions::new()
        .write(true)
        .open(store.job_dir(id).join(START_LOCK))
    {
        Ok(f) => f,
        Err(_) => return 1,
    };
    let Some(me) = detach() else {
        return 1;
    };
    record_supervisor(&mut lock, me);
    let layout = Layout::detect();
    supervise(store, &spec, &secrets, me, &Notifier::none(), None, layout)
}

/// Makes the calling process a supervisor: detached from its caller's
/// session, terminal and stdio, reaping the job's orphans. Returns its
/// identity (None only if /proc does not know us).
fn detach() -> Option<ProcRef> {
    // Block the signals we handle before anything can deliver them, and take
    // SIGCHLD back from the caller's SIG_IGN (we must reap the job ourselves).
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None);
    // SAFETY: single-threaded process; plain syscalls.
    unsafe {
        // The caller may have left SIGCHLD ignored: we must reap the job ourselves.
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
    proc_ref(std::process::id() as i32)
}

/// Records who supervises the job (in its start lock) before anything else can go wrong.
fn record_supervisor(lock: &mut File, me: ProcRef) {
    // One write: a reader never sees the pid without its start time.
    let _ = lock.write_all(format!("{} {}", me.pid, me.start_time).as_bytes());
}

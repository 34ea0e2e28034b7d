//! Becoming a supervisor: detached from the caller, its terminal and its session.
//!
//! A waiting CLI clones it into its own address space where it can
//! (`shared`, x86_64); `--no-wait` and other architectures fork it. Either
//! way no exec: the job definition is already in memory. A multi-threaded
//! caller such as the pipeline runner instead executes
//! `agent-exec __supervise ID`, because forking a threaded process and then
//! running arbitrary code in the child is not safe.

use std::cell::Cell;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::signal::{sigprocmask, SigmaskHow};

use super::event_loop::handled_signals;
use super::shared::Handover;
use super::supervise;
use crate::job::liveness::{boottime_ns, own_ref, pidfd_open};
use crate::job::model::{JobSpec, JobStatus, Secrets};
use crate::job::store::{Store, START_LOCK};
use crate::response::{AppError, ErrorCode};

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

/// The supervisor's end of [`Forked::notify`] (absent for the exec'd form),
/// a pidfd of the CLI that waits on it, and, when the two share memory, the
/// answer we render for it.
pub(crate) struct Notifier {
    pipe: Option<OwnedFd>,
    waiting_caller: Option<OwnedFd>,
    handover: Option<Handover>,
    answered: Cell<bool>,
}

impl Notifier {
    pub(crate) fn none() -> Notifier {
        Notifier {
            pipe: None,
            waiting_caller: None,
            handover: None,
            answered: Cell::new(false),
        }
    }

    /// For a supervisor that answers for the CLI (see `shared`).
    pub(crate) fn answering(
        pipe: OwnedFd,
        waiting_caller: Option<OwnedFd>,
        handover: Handover,
    ) -> Notifier {
        Notifier {
            pipe: Some(pipe),
            waiting_caller,
            handover: Some(handover),
            answered: Cell::new(false),
        }
    }

    /// Renders the CLI's answer, once, before it is told to print it, from
    /// the `recorded` final state (or, without one, from the store).
    fn leave_answer(&self, recorded: Option<&JobStatus>) {
        if let Some(handover) = &self.handover {
            if !self.answered.replace(true) {
                handover.leave_answer(recorded);
            }
        }
    }

    /// Best effort: a caller that stopped listening costs nothing (EPIPE, SIGPIPE ignored).
    pub(crate) fn send(&self, milestone: Milestone) {
        if milestone == Milestone::Finished {
            self.leave_answer(None);
        }
        if let Some(fd) = &self.pipe {
            let byte = [milestone as u8];
            // SAFETY: writing one byte from a stack buffer to our own pipe.
            unsafe { libc::write(fd.as_fd().as_raw_fd(), byte.as_ptr().cast(), 1) };
        }
    }

    /// Tells the CLI that the final state is recorded, and returns once it
    /// has answered and exited (or after [`ANSWER_GRACE`]), so that the
    /// housekeeping that follows does not share its CPU with the answer.
    ///
    /// The two share one CPU (see `sandbox::affinity`), and the supervisor is
    /// in a session, and so a scheduler group, of its own: a `sched_yield`
    /// only yields within that group, and in `perf sched` traces the
    /// supervisor went on for 0.2 ms of cgroup removal after waking the CLI,
    /// whose answer waited. Blocking on the CLI's pidfd cannot be outrun.
    /// What is left runs as `SCHED_IDLE`: the caller's next command, woken
    /// or started on our CPU meanwhile, preempts it.
    pub(crate) fn finished_then_await_answer(&self, recorded: Option<&JobStatus>) {
        // On our CPU, at our priority: the caller waits for it.
        self.leave_answer(recorded);
        let _ = crate::sandbox::affinity::unpin();
        let Some(caller) = &self.waiting_caller else {
            self.send(Milestone::Finished);
            crate::sandbox::affinity::yield_cpu();
            return;
        };
        crate::sandbox::affinity::become_background();
        self.send(Milestone::Finished);
        let mut exited = libc::pollfd {
            fd: caller.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let grace = ANSWER_GRACE.as_millis() as libc::c_int;
        // SAFETY: one pollfd on the stack. EINTR or an error only ends the wait early.
        unsafe { libc::poll(&mut exited, 1, grace) };
    }
}

/// How long the supervisor leaves a waiting CLI to answer before it goes on
/// with its housekeeping anyway (a stopped CLI must not keep the job's
/// cgroups forever).
const ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// When the forked supervisor starts building the job's sandbox.
///
/// The forked supervisor mostly starts on the CLI's CPU (the scheduler keeps
/// a fork where its parent runs: 36 of 40 launches in our probes). A CLI
/// that answers at once (--no-wait) would then print its answer only after
/// sharing that CPU with a millisecond or more of namespaces, Landlock and
/// seccomp set-up it does not wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// The caller waits for the job: the supervisor goes ahead at once.
    Now,
    /// The caller answers first: the supervisor waits until the caller has
    /// exited and its parent has been told (see [`wait_for_caller_exit`]).
    AfterCaller,
}

/// Forks the supervisor of a job whose start was claimed with `lock`.
/// The job runs on after the caller exits.
pub fn spawn_detached(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    lock: File,
    launch: Launch,
) -> Result<Forked, AppError> {
    let fork_error = |what: &str| {
        AppError::new(
            ErrorCode::LaunchFailed,
            format!(
                "cannot {what} the supervisor: {}",
                std::io::Error::last_os_error()
            ),
        )
        .with_job(&spec.job_id)
    };
    let (notify_read, notify_write) = notify_pipe(spec)?;
    // With --no-wait, our answer promises the job's directories and logs:
    // we make them after the fork, and this pipe, closed by our exit, tells
    // the supervisor we are done (see prepare_job_files). Otherwise the
    // supervisor makes them itself, on the CPU we leave to it.
    let (files_ready_read, files_ready_write) = match launch {
        Launch::Now => (None, None),
        Launch::AfterCaller => {
            let (read, write) =
                crate::sandbox::pipe().map_err(|_| fork_error("make a pipe for"))?;
            (Some(read), Some(write))
        }
    };
    // Ourselves, for a supervisor that waits for our exit: before it starts
    // (--no-wait) or before its housekeeping (a caller that waits).
    let caller = pidfd_open(std::process::id() as libc::pid_t);
    // The supervisor's signals are blocked across the fork: its pid is
    // public as soon as we answer, and a SIGTERM arriving before it could
    // block them itself would kill it instead of stopping the job.
    let mut caller_mask = nix::sys::signal::SigSet::empty();
    let _ = sigprocmask(
        SigmaskHow::SIG_BLOCK,
        Some(&handled_signals()),
        Some(&mut caller_mask),
    );
    let before_fork = boottime_ns();
    // SAFETY: the CLI is single-threaded, so the child may run ordinary code.
    let forked = unsafe { libc::fork() };
    if forked != 0 {
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&caller_mask), None);
    }
    match forked {
        -1 => Err(fork_error("fork")),
        0 => {
            drop(notify_read);
            drop(files_ready_write);
            // Out of the caller's session and off its stdio first: its
            // process group's signals are not ours, and whoever reads its
            // output must see EOF when it exits, not when we get going.
            leave_caller();
            // After the caller's exit its files are made (or never will be):
            // nothing is left to wait for later.
            let waiting_caller = match &files_ready_read {
                None => caller,
                Some(files_ready) => {
                    wait_for_caller_exit(caller, files_ready);
                    None
                }
            };
            drop(files_ready_read);
            let notifier = Notifier {
                pipe: Some(notify_write),
                waiting_caller,
                handover: None,
                answered: Cell::new(false),
            };
            let code = become_supervisor(store, spec, secrets, lock, notifier, before_fork);
            // SAFETY: leave without running the parent's atexit handlers or flushing its buffers.
            unsafe { libc::_exit(code) }
        }
        pid => {
            drop(notify_write);
            drop(files_ready_read);
            drop(caller);
            if let Some(files_ready) = files_ready_write {
                let _ = super::prepare_job_files(store, spec);
                // Closed by our exit, after the answer is printed.
                std::mem::forget(files_ready)
            }
            Ok(Forked {
                pid,
                // Our unreaped child: its pid cannot be reused, so this pidfd is its.
                pidfd: pidfd_open(pid),
                notify: notify_read,
            })
        }
    }
}

/// The pipe on which the supervisor tells the CLI of the job's milestones.
pub(super) fn notify_pipe(spec: &JobSpec) -> Result<(OwnedFd, OwnedFd), AppError> {
    crate::sandbox::pipe().map_err(|e| {
        AppError::new(
            ErrorCode::LaunchFailed,
            format!("cannot make a pipe for the supervisor: {e}"),
        )
        .with_job(&spec.job_id)
    })
}

/// Returns once the CLI that forked us (`caller`, a pidfd it opened on
/// itself) has exited, then lets the caller's parent run first.
///
/// Not at the EOF of a pipe the CLI holds: its descriptors close midway
/// through its exit, before its parent is told, and a supervisor woken there
/// on the same CPU went on building the sandbox while the exit waited (the
/// caller's `wait` returned 1.1-1.5 ms after the answer was printed, in
/// timestamped runs). A pidfd reads as ready once the exit is complete and
/// the parent notified; the parent, woken at that moment too, may be queued
/// on our CPU, so we yield it the CPU once. Without a pidfd (Linux < 5.3) the
/// pipe's EOF still tells us.
fn wait_for_caller_exit(caller: Option<OwnedFd>, files_ready: &OwnedFd) {
    let Some(caller) = caller else {
        super::wait_for_eof(files_ready);
        return;
    };
    let mut ready = libc::pollfd {
        fd: caller.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one pollfd on the stack.
        match unsafe { libc::poll(&mut ready, 1, -1) } {
            1.. => break,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return super::wait_for_eof(files_ready),
        }
    }
    // SAFETY: plain syscall.
    unsafe { libc::sched_yield() };
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
    leave_caller();
    become_supervisor(store, &spec, &secrets, lock, Notifier::none(), None)
}

pub(super) fn become_supervisor(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    mut lock: File,
    notifier: Notifier,
    born_after_ns: Option<u64>,
) -> i32 {
    // Block the signals we handle before anything can deliver them, and take
    // SIGCHLD back from the caller's SIG_IGN (we must reap the job ourselves).
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None);
    // SAFETY: single-threaded process; plain syscalls.
    unsafe {
        // The caller may have left SIGCHLD ignored: we must reap the job ourselves.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Orphans of the job come to us, not to init, so we reap them.
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // Hold no directory of the caller's busy.
        libc::chdir(c"/".as_ptr());
    }
    let Some(me) = own_ref(born_after_ns) else {
        return 1;
    };
    // Record who supervises the job before anything else can go wrong (in
    // one write: a reader never sees the pid without its start time).
    let _ = lock.write_all(format!("{} {}", me.pid, me.start_time).as_bytes());
    drop(lock);
    supervise(store, spec, secrets, me, &notifier)
}

/// Our own session (the caller's terminal hanging up or its process group
/// being signalled does not reach us) and stdio away from the caller (its
/// pipes must reach EOF when it exits).
pub(super) fn leave_caller() {
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
    }
}

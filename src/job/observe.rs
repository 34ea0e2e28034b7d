//! Watching a job from another process until a condition holds or a deadline passes.
//!
//! The supervisor replaces `state.json` by rename or exchange, which inotify
//! reports as IN_MOVED_TO on the job directory; the supervisor's pidfd
//! becomes readable when it dies. Polling both means no sleep loop and no
//! missed death.
//!
//! An inotify instance is not free: closing one waits for an SRCU grace
//! period in the kernel. [`Watch::on_demand`] therefore makes it only when
//! it really has to wait, and not at all when the supervisor's exit alone
//! tells what it waits for (the final state is written just before it).

use std::cell::OnceCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::liveness::{pidfd_of, reconcile, supervisor_of};
use super::model::JobStatus;
use super::store::Store;
use crate::response::{AppError, ErrorCode};

/// A watch on one job directory, set up before the event it waits for can happen.
pub struct Watch {
    inotify: OnceCell<Inotify>,
    dir: PathBuf,
    mask: AddWatchFlags,
    /// Waiting for a terminal state only: a live supervisor's pidfd is enough.
    terminal_only: bool,
}

impl Watch {
    /// Wakes on state changes and on every write to the logs (for `tail --follow`).
    pub fn new(store: &Store, id: &str) -> Result<Watch, AppError> {
        Self::with_mask(store, id, Self::state_mask() | AddWatchFlags::IN_MODIFY)
    }

    /// Wakes on state changes only: `state.json` renamed into place, the
    /// supervisor closing `start.lock` with its identity written, the job
    /// directory deleted. Not on log writes: a job streaming output would
    /// otherwise wake the observer once per write (11 % of the CPU of a
    /// 1 GiB run went to the CLI re-reading `state.json` for nothing).
    pub fn state_only(store: &Store, id: &str) -> Result<Watch, AppError> {
        Self::with_mask(store, id, Self::state_mask())
    }

    /// Like [`Watch::state_only`], but sets up inotify only if [`Watch::until`]
    /// must wait, after which it re-reads the state (so nothing slips by).
    /// With `terminal_only`, a job whose supervisor is alive is waited for
    /// on the supervisor's pidfd alone.
    pub fn on_demand(store: &Store, id: &str, terminal_only: bool) -> Watch {
        Watch {
            inotify: OnceCell::new(),
            dir: store.job_dir(id),
            mask: Self::state_mask(),
            terminal_only,
        }
    }

    fn state_mask() -> AddWatchFlags {
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_DELETE_SELF
    }

    fn with_mask(store: &Store, id: &str, mask: AddWatchFlags) -> Result<Watch, AppError> {
        let watch = Watch {
            inotify: OnceCell::new(),
            dir: store.job_dir(id),
            mask,
            terminal_only: false,
        };
        watch.inotify()?;
        Ok(watch)
    }

    /// The inotify instance, made on first use.
    fn inotify(&self) -> Result<&Inotify, AppError> {
        if let Some(i) = self.inotify.get() {
            return Ok(i);
        }
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
            .map_err(|e| AppError::new(ErrorCode::IoError, format!("inotify: {e}")))?;
        inotify
            .add_watch(&self.dir, self.mask)
            .map_err(|e| AppError::new(ErrorCode::IoError, format!("inotify watch: {e}")))?;
        Ok(self.inotify.get_or_init(|| inotify))
    }

    /// Waits until `done(status)` holds, the deadline passes (returns the
    /// latest status), or the supervisor dies (the job is reconciled as lost).
    pub fn until(
        &self,
        store: &Store,
        id: &str,
        deadline: Option<Instant>,
        mut done: impl FnMut(&JobStatus) -> bool,
    ) -> Result<JobStatus, AppError> {
        loop {
            let status = reconcile(store, id, store.read_status(id)?)?;
            if done(&status) || status.state.is_terminal() {
                return Ok(status);
            }
            let left = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(status);
                    }
                    Some(d - now)
                }
                None => None,
            };
            let pidfd = supervisor_of(store, id, &status).and_then(|s| pidfd_of(&s));
            if self.terminal_only {
                if let Some(p) = &pidfd {
                    wait_readable(p.as_fd(), left);
                    continue;
                }
            }
            if self.inotify.get().is_none() {
                // Made now, then the state is read again before waiting.
                self.inotify()?;
                continue;
            }
            self.wait(pidfd.as_ref().map(|f| f.as_fd()), left);
        }
    }

    /// Blocks until the directory changes, the pidfd fires, or `left` elapses.
    pub fn wait(&self, pidfd: Option<BorrowedFd<'_>>, left: Option<std::time::Duration>) {
        // Made by the constructor ([`Watch::new`]) or by `until` before it waits.
        let Some(inotify) = self.inotify.get() else {
            return;
        };
        let mut fds = vec![PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = pidfd {
            fds.push(PollFd::new(p, PollFlags::POLLIN));
        }
        // Claimed-but-unrecorded starts have no pidfd yet: re-check at least every second.
        let cap_ms: u128 = if pidfd.is_some() { u128::MAX } else { 1000 };
        let timeout = match left {
            Some(d) => {
                PollTimeout::try_from(d.as_millis().min(cap_ms).min(i32::MAX as u128) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            }
            None if cap_ms != u128::MAX => PollTimeout::from(1000u16),
            None => PollTimeout::NONE,
        };
        let _ = poll(&mut fds, timeout);
        // Drain queued events; their content does not matter, only that something changed.
        while inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
    }

    pub fn raw_fd(&self) -> i32 {
        self.inotify().map(|i| i.as_fd().as_raw_fd()).unwrap_or(-1)
    }
}

/// Blocks until `fd` is readable or `left` elapses.
pub fn wait_readable(fd: BorrowedFd<'_>, left: Option<std::time::Duration>) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    let timeout = match left {
        Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128 - 1) as i32 + 1)
            .unwrap_or(PollTimeout::MAX),
        None => PollTimeout::NONE,
    };
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

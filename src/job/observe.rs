//! Watching a job from another process until a condition holds or a deadline passes.
//!
//! The supervisor replaces `state.json` by rename, which inotify reports as
//! IN_MOVED_TO on the job directory; the supervisor's pidfd becomes
//! readable when it dies. Polling both means no sleep loop and no missed
//! death.
//!
//! Closing an inotify instance waits for an SRCU grace period in the
//! kernel, several milliseconds: [`Watch::until`] makes one only once the
//! job turns out not to be where the caller wants it yet.

use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::liveness::{pidfd_of, reconcile, supervisor_of};
use super::model::JobStatus;
use super::store::{Store, StoreError, StoreResult};

/// A watch on one job directory.
pub struct Watch {
    dir: PathBuf,
    mask: AddWatchFlags,
    inotify: OnceCell<Inotify>,
}

impl Watch {
    /// Wakes on state changes only: `state.json` renamed into place, the
    /// job directory deleted, a file closed after writing (`start.lock`
    /// with the supervisor's identity, a kill request). Not on log writes:
    /// a job streaming output would wake the observer once per write.
    /// Made at once: no change from now on slips by.
    pub fn state_only(store: &Store, id: &str) -> StoreResult<Watch> {
        let watch = Self::on_demand(store, id);
        watch.inotify()?;
        Ok(watch)
    }

    /// Like [`Watch::state_only`], but made only when [`Watch::until`] has
    /// to wait (it then reads the state again, so nothing slips by).
    pub fn on_demand(store: &Store, id: &str) -> Watch {
        Watch {
            dir: store.job_dir(id),
            mask: AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE_SELF,
            inotify: OnceCell::new(),
        }
    }

    /// Also wakes on every write to the logs (for `tail --follow`).
    pub fn with_logs(store: &Store, id: &str) -> StoreResult<Watch> {
        let mut watch = Self::on_demand(store, id);
        watch.mask |= AddWatchFlags::IN_MODIFY;
        watch.inotify()?;
        Ok(watch)
    }

    fn inotify(&self) -> StoreResult<&Inotify> {
        if let Some(inotify) = self.inotify.get() {
            return Ok(inotify);
        }
        let failed = |e: nix::Error| StoreError::Io {
            action: "watch",
            path: self.dir.clone(),
            source: e.into(),
        };
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(failed)?;
        inotify.add_watch(&self.dir, self.mask).map_err(failed)?;
        Ok(self.inotify.get_or_init(|| inotify))
    }

    /// Waits until `done(status)` holds, the job is terminal, or the
    /// deadline passes (returns the latest status); a supervisor that died
    /// meanwhile is noticed at once and the job reconciled as lost.
    pub fn until(
        &self,
        store: &Store,
        id: &str,
        deadline: Option<Instant>,
        mut done: impl FnMut(&JobStatus) -> bool,
    ) -> StoreResult<JobStatus> {
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
            if self.inotify.get().is_none() {
                // Made now, then the state is read again before waiting.
                self.inotify()?;
                continue;
            }
            let pidfd = supervisor_of(store, id, &status).and_then(|s| pidfd_of(&s));
            self.wait(pidfd.as_ref().map(|f| f.as_fd()), left);
        }
    }

    /// Blocks until the directory changes, the pidfd fires, or `left` elapses.
    pub fn wait(&self, pidfd: Option<BorrowedFd<'_>>, left: Option<Duration>) {
        let Ok(inotify) = self.inotify() else {
            return;
        };
        let mut fds = vec![PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        if let Some(p) = pidfd {
            fds.push(PollFd::new(p, PollFlags::POLLIN));
        }
        // A claimed start has no supervisor to watch until it records
        // itself: look again at least every second.
        let cap = if pidfd.is_some() {
            None
        } else {
            Some(Duration::from_secs(1))
        };
        let left = match (left, cap) {
            (Some(l), Some(c)) => Some(l.min(c)),
            (l, c) => l.or(c),
        };
        let timeout = match left {
            Some(d) => PollTimeout::try_from(d.as_millis().min(i32::MAX as u128 - 1) as i32 + 1)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        let _ = poll(&mut fds, timeout);
        // Drain queued events; their content does not matter, only that something changed.
        while inotify.read_events().is_ok_and(|e| !e.is_empty()) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::model::State;

    /// Closing an inotify instance waits for an SRCU grace period: a job
    /// already where the caller wants it is answered without one.
    #[test]
    fn a_finished_job_is_observed_without_a_watch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_path_buf()).unwrap();
        let req = crate::job::request::JobRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let defined = crate::job::define::define(&req, &store).unwrap();
        let id = defined.spec.job_id.clone();
        store.create(&defined.spec, None, None).unwrap();
        let mut status = store.read_status(&id).unwrap();
        status.state = State::Exited;
        store.write_status(&id, &status).unwrap();
        let watch = Watch::on_demand(&store, &id);
        let seen = watch.until(&store, &id, None, |_| false).unwrap();
        assert_eq!(seen.state, State::Exited);
        assert!(watch.inotify.get().is_none(), "a watch was made");
        // A job still created is waited for with one.
        let other = crate::job::define::define(&req, &store).unwrap();
        store.create(&other.spec, None, None).unwrap();
        let watch = Watch::on_demand(&store, &other.spec.job_id);
        let deadline = Some(Instant::now());
        watch
            .until(&store, &other.spec.job_id, deadline, |_| false)
            .unwrap();
        assert!(watch.inotify.get().is_none(), "the deadline had passed");
        let deadline = Some(Instant::now() + Duration::from_millis(20));
        watch
            .until(&store, &other.spec.job_id, deadline, |_| false)
            .unwrap();
        assert!(watch.inotify.get().is_some(), "waiting needs a watch");
    }
}

//! The real [`JobRunner`]: every command becomes an ordinary agent-exec job in the
//! caller's job store, so it has a job id, logs, a sandbox, limits and accounting, and
//! `agent-exec status/tail/list --tag pipeline.<run_id>` work on it like on any job.
//!
//! The scheduler calls `run_command` from several threads at once, so a job is not
//! started from this (threaded) process: each is recorded here and started by
//! `agent-exec start --no-wait`, the one way every job is started.
//!
//! Interrupts: `cancel_all` raises a flag and drops a `kill.json` in every running job's
//! directory; that write wakes each waiting thread through its inotify watch, and the
//! thread asks its supervisor (SIGUSR1, as `agent-exec kill` does) to terminate the whole
//! cgroup, then waits for the job's final state as usual.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::runner::{CommandOutcome, CommandRequest, JobRunner};
use crate::job::define::define;
use crate::job::liveness::{pidfd_of, reconcile, supervisor_of};
use crate::job::model::{JobStatus, ResultKind, State};
use crate::job::observe::Watch;
use crate::job::request::JobRequest;
use crate::job::store::{write_json, Store, STDERR_LOG, STDOUT_LOG};
use crate::policy::Overrides;
use crate::supervisor::{KillRequest, KILL_REQUEST};

/// How long the job's processes get between SIGTERM and the cgroup kill on interrupt.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(1);

/// Runs pipeline commands as jobs of `store`.
pub struct StoreRunner<'a> {
    store: &'a Store,
    cancelled: AtomicBool,
    /// Jobs whose supervisor has been (or is being) started and that are not terminal yet.
    running: Mutex<BTreeSet<String>>,
}

impl<'a> StoreRunner<'a> {
    pub fn new(store: &'a Store) -> StoreRunner<'a> {
        StoreRunner {
            store,
            cancelled: AtomicBool::new(false),
            running: Mutex::new(BTreeSet::new()),
        }
    }

    /// The job of one command, as `run` would ask for it.
    fn request(&self, req: &CommandRequest) -> JobRequest {
        let mut tags = vec![format!("pipeline.{}", req.run_id)];
        // Phase names are `[A-Za-z0-9_-]+`, inside the tag alphabet.
        tags.push(format!("pipeline.{}.{}", req.run_id, req.phase));
        JobRequest {
            argv: vec!["sh".into(), "-c".into(), req.run.clone()],
            // Like `run --cwd`: relative to the caller's directory, which is also the
            // default, so a pipeline behaves the same as its commands typed by hand.
            cwd: req.cwd.clone(),
            env: req
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            tags,
            policy: req.policy.clone(),
            overrides: Overrides {
                // A timeout too short to count in milliseconds still is one.
                timeout: req.timeout.map(|d| d.max(Duration::from_millis(1))),
                ..Overrides::default()
            },
            ..JobRequest::default()
        }
    }

    fn register(&self, id: &str) {
        lock(&self.running).insert(id.to_string());
    }

    fn unregister(&self, id: &str) {
        lock(&self.running).remove(id);
    }

    /// Waits (inotify + pidfd, no polling loop) until the job is terminal, stopping it
    /// once the run is cancelled. Returns the final status and whether we stopped it.
    fn wait_terminal(&self, watch: &Watch, id: &str) -> Result<(JobStatus, bool), String> {
        let mut stopped = false;
        loop {
            let status = self
                .store
                .read_status(id)
                .and_then(|s| reconcile(self.store, id, s))
                .map_err(|e| e.to_string())?;
            if status.state.is_terminal() {
                return Ok((status, stopped));
            }
            let pidfd = supervisor_of(self.store, id, &status).and_then(|s| pidfd_of(&s));
            // Once the job runs, its state change has woken us: nothing is missed.
            if !stopped && status.state == State::Running && self.cancelled.load(Ordering::SeqCst) {
                stopped = request_kill(self.store, id, pidfd.as_ref())?;
            }
            watch.wait(pidfd.as_ref().map(|f| f.as_fd()), None);
        }
    }
}

impl JobRunner for StoreRunner<'_> {
    fn run_command(&self, req: &CommandRequest) -> Result<CommandOutcome, String> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Ok(CommandOutcome {
                interrupted: true,
                ..CommandOutcome::default()
            });
        }
        let defined = define(&self.request(req), self.store).map_err(|e| e.to_string())?;
        let (spec, secrets, stdin) = defined.for_later_start();
        let id = spec.job_id.clone();
        self.store
            .create(&spec, secrets.as_ref(), stdin.as_deref())
            .map_err(|e| e.to_string())?;
        // Watch before starting, so no state change can slip by unseen.
        let watch = match Watch::state_only(self.store, &id) {
            Ok(w) => w,
            Err(e) => {
                let _ = self.store.delete(&id);
                return Err(e.to_string());
            }
        };
        self.register(&id);
        if let Err(e) = start(self.store, &id) {
            if !self.store.has_start_lock(&id) {
                self.unregister(&id);
                // Never started: leave no job that would later be reported lost.
                let _ = self.store.delete(&id);
                return Err(e);
            }
            // Started after all (a launch failure is an error answer too):
            // its record tells how it ended.
        }
        let waited = self.wait_terminal(&watch, &id);
        self.unregister(&id);
        let (status, stopped) = waited?;
        outcome(self.store, &id, &status, stopped)
    }

    fn cancel_all(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let ids: Vec<String> = lock(&self.running).iter().cloned().collect();
        for id in ids {
            // Wakes the thread waiting on this job (inotify); it sends the signal.
            let _ = write_kill_request(self.store, &id);
        }
    }
}

/// `agent-exec start --no-wait ID`: forks the job's supervisor and answers at once.
fn start(store: &Store, id: &str) -> Result<(), String> {
    let out = std::process::Command::new("/proc/self/exe")
        .arg0("agent-exec")
        .arg("--root")
        .arg(store.root())
        .args(["start", "--no-wait", id])
        // Out of our process group: a Ctrl-C meant for the pipeline must not
        // kill it between its fork of the supervisor and its answer.
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `agent-exec start`: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Err(match answer["error"]["message"].as_str() {
        Some(message) => format!("cannot start job {id}: {message}"),
        None => format!(
            "cannot start job {id}: `agent-exec start` ended with {}",
            out.status
        ),
    })
}

/// The job's final state as a [`CommandOutcome`]; jobs that never ran their command
/// (launch failure, lost supervisor) are errors carrying the job's own explanation.
fn outcome(
    store: &Store,
    id: &str,
    status: &JobStatus,
    stopped: bool,
) -> Result<CommandOutcome, String> {
    let Some(o) = &status.outcome else {
        return Err(format!("job {id} ended without a recorded outcome"));
    };
    let why = |what: &str| {
        let detail = o.message.as_deref().unwrap_or("no details recorded");
        format!("job {id} {what}: {detail}")
    };
    match o.result {
        ResultKind::LaunchFailed => return Err(why("could not be launched")),
        ResultKind::Lost => return Err(why("was lost")),
        _ => {}
    }
    let dir = store.job_dir(id);
    Ok(CommandOutcome {
        job_id: id.to_string(),
        exit_code: o.exit_code,
        signal: o.signal.clone(),
        timed_out: o.timed_out,
        interrupted: stopped && o.result != ResultKind::Success,
        duration_ms: o.duration_ms,
        stdout_log_path: dir.join(STDOUT_LOG).display().to_string(),
        stderr_log_path: dir.join(STDERR_LOG).display().to_string(),
        resources: serde_json::to_value(&o.resources).unwrap_or(serde_json::Value::Null),
    })
}

fn write_kill_request(store: &Store, id: &str) -> Result<(), String> {
    write_json(
        &store.job_dir(id).join(KILL_REQUEST),
        &KillRequest {
            signal: libc::SIGTERM,
            grace_ms: INTERRUPT_GRACE.as_millis() as u64,
        },
        0o600,
    )
    .map_err(|e| e.to_string())
}

/// What `agent-exec kill` does: leave `kill.json`, then SIGUSR1 to the supervisor, which
/// sends SIGTERM to the job's cgroup and kills the cgroup after the grace. Returns
/// whether the supervisor was signalled.
fn request_kill(store: &Store, id: &str, supervisor: Option<&OwnedFd>) -> Result<bool, String> {
    write_kill_request(store, id)?;
    let Some(pidfd) = supervisor else {
        return Ok(false);
    };
    // SAFETY: the pidfd pins the job's verified supervisor.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGUSR1,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Ok(r == 0)
}

/// Locks a mutex, recovering the data if a thread panicked while holding it (the set of
/// ids stays meaningful either way).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn req(cwd: Option<&str>) -> CommandRequest {
        CommandRequest {
            run_id: "0123456789abcdef0123456789abcdef".into(),
            phase: "build-1".into(),
            name: "unit tests".into(),
            index: 0,
            run: "echo \"$X\" | tr a b".into(),
            policy: Some("ci".into()),
            timeout: Some(Duration::from_micros(10)),
            env: BTreeMap::from([("X".into(), "a=b".into())]),
            cwd: cwd.map(PathBuf::from),
        }
    }

    #[test]
    fn the_job_request_mirrors_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let runner = StoreRunner::new(&store);
        let job = runner.request(&req(Some("sub")));
        assert_eq!(job.argv, ["sh", "-c", "echo \"$X\" | tr a b"]);
        assert_eq!(job.env, [("X".to_string(), "a=b".to_string())]);
        assert_eq!(job.cwd, Some(PathBuf::from("sub")));
        assert_eq!(job.overrides.timeout, Some(Duration::from_millis(1)));
        assert_eq!(job.policy.as_deref(), Some("ci"));
        assert_eq!(
            job.inherit_env, None,
            "commands see the caller's environment"
        );
        assert_eq!(
            job.tags,
            [
                "pipeline.0123456789abcdef0123456789abcdef",
                "pipeline.0123456789abcdef0123456789abcdef.build-1"
            ]
        );
        assert_eq!(runner.request(&req(None)).cwd, None);
        // The request passes the same checks as a command line's would.
        let here = JobRequest {
            cwd: Some(dir.path().to_path_buf()),
            ..job
        };
        let built = define(&here, &store).unwrap();
        assert_eq!(built.spec.tags.len(), 2);
        assert_eq!(built.spec.argv, ["sh", "-c", "echo \"$X\" | tr a b"]);
        assert_eq!(built.spec.env["X"], "a=b");
        assert_eq!(built.spec.limits.timeout_ms, Some(1));
    }

    #[test]
    fn a_cancelled_runner_starts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let runner = StoreRunner::new(&store);
        runner.cancel_all();
        let out = runner.run_command(&req(None)).unwrap();
        assert!(out.interrupted);
        assert!(out.job_id.is_empty());
        assert!(store.ids().unwrap().is_empty());
    }
}

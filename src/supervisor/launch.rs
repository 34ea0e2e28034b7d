//! The front end's side: starting a job's supervisor.
//!
//! One way on every architecture and from any caller, threaded or not: the
//! supervisor is this binary executed afresh as `agent-exec __supervise ID`.
//! Nothing of the caller's memory reaches it; its stdin carries the job's
//! secrets (never a file), its stdout and stderr are /dev/null, and it runs
//! in a session of its own so that the caller's terminal and process group
//! signals do not reach it.

use std::fmt;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::job::model::Secrets;
use crate::job::store::Store;

/// The started supervisor; the job outlives this handle (and its caller).
pub struct Supervisor {
    child: Child,
}

impl Supervisor {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Collects the supervisor once it has exited, for callers that live on
    /// after their jobs (a caller that exits leaves that to init).
    pub fn reap(mut self) {
        let _ = self.child.wait();
    }
}

/// The supervisor could not be started.
#[derive(Debug)]
pub struct LaunchError(String);

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LaunchError {}

/// Starts the supervisor of the job `id`, whose start the caller claimed.
pub fn launch(store: &Store, id: &str, secrets: &Secrets) -> Result<Supervisor, LaunchError> {
    let secrets = serde_json::to_vec(secrets)
        .map_err(|e| LaunchError(format!("cannot encode the job's secrets: {e}")))?;
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("agent-exec")
        .arg("--root")
        .arg(store.root())
        .arg("__supervise")
        .arg(id)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let blocked = super::event_loop::handled_signals();
    // SAFETY: between fork and exec the child only makes two
    // async-signal-safe calls on its own state.
    unsafe {
        command.pre_exec(move || {
            // A session of its own: the caller's Ctrl-C and hang-up are not
            // the job's.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The signals it handles stay blocked across exec until its
            // signalfd takes them: its pid is public from our answer on, and
            // an early SIGTERM must stop the job, not kill its supervisor.
            if libc::sigprocmask(libc::SIG_BLOCK, blocked.as_ref(), std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| LaunchError(format!("cannot start the job's supervisor: {e}")))?;
    // The supervisor reads all of its stdin before anything else, so this
    // cannot block for long; should it have died, the job is reported lost.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&secrets);
    }
    Ok(Supervisor { child })
}

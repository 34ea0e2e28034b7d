//! The supervisor's single `poll` loop: output pipes, signals, deadlines.
//!
//! Deadlines (timeout, kill-after, drain) become the poll timeout; signals
//! (SIGCHLD, kill requests, SIGTERM to the supervisor) arrive on a signalfd.
//! The loop ends when the main process has been reaped and both pipes are
//! closed: leftovers are killed the moment the main process ends, so nothing
//! can hold a pipe open and keep the job "running".

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::tree::JobTree;
use super::KillRequest;
use crate::job::model::{Accounting, JobSpec, Outcome, Resources, ResultKind, StreamStats};
use crate::job::store::Store;
use crate::output::pump::Pump;
use crate::sandbox::cgroup::Usage;

/// How long to keep reading output after the main process ended and its leftovers were killed.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Signals the supervisor handles through its signalfd (blocked since it started).
pub(crate) fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    set
}

/// What the loop saw; turned into an [`Outcome`] once the cgroup is measured.
pub(super) struct End {
    wait_status: Option<i32>,
    /// The main process's rusage: itself and every descendant it (or, as
    /// init of a pid namespace, the kernel for it) reaped.
    max_rss_bytes: Option<u64>,
    cpu_user_usec: Option<u64>,
    cpu_system_usec: Option<u64>,
    timed_out: bool,
    kill_requested: bool,
    leftover_killed: u64,
    stdout: StreamStats,
    stderr: StreamStats,
    message: Option<String>,
}

impl End {
    /// Adds a note to the result's message.
    pub(super) fn note(&mut self, note: String) {
        self.message = Some(match self.message.take() {
            Some(m) => format!("{m}; {note}"),
            None => note,
        });
    }
}

pub(super) fn run_with_init(
    store: &Store,
    spec: &JobSpec,
    tree: &JobTree,
    main_pid: i32,
    pumps: [Pump; 2],
    init_status: Option<std::os::fd::OwnedFd>,
) -> End {
    let mut end = run(store, spec, tree, main_pid, pumps);
    if let Some(fd) = init_status {
        // Our init wrote the command's own wait status before it exited.
        let mut msg = [0u8; 8];
        // SAFETY: reading into a stack buffer from a pipe we own; the writer is gone, so this cannot block.
        let n = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                msg.as_mut_ptr().cast(),
                8,
            )
        };
        if n == 8 {
            end.wait_status = Some(i32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]));
            end.leftover_killed += u64::from(u32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]));
        }
    }
    end
}

fn run(store: &Store, spec: &JobSpec, tree: &JobTree, main_pid: i32, mut pumps: [Pump; 2]) -> End {
    let started = Instant::now();
    let mut end = End {
        wait_status: None,
        max_rss_bytes: None,
        cpu_user_usec: None,
        cpu_system_usec: None,
        timed_out: false,
        kill_requested: false,
        leftover_killed: 0,
        stdout: StreamStats::default(),
        stderr: StreamStats::default(),
        message: None,
    };
    let kill_after = Duration::from_millis(spec.limits.kill_after_ms);
    let mut timeout_at = spec
        .limits
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let signals = SignalFd::with_flags(
        &handled_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .ok();
    // A `kill` that came while we were still launching may have found no
    // supervisor recorded to signal; its request waits in the store.
    if let Some(at) = honour_kill_request(store, &spec.job_id, tree) {
        end.kill_requested = true;
        kill_at = Some(at);
    }

    let mut watch = super::notify::OutputWatch::new(store, spec);
    loop {
        let main_done = end.wait_status.is_some();
        if main_done && pumps.iter().all(|p| !p.is_open()) {
            break;
        }

        // Poll until the nearest deadline.
        let now = Instant::now();
        let nearest = [timeout_at, kill_at, drain_until]
            .into_iter()
            .flatten()
            .min();
        let timeout_ms: i32 = match nearest {
            Some(at) => at
                .saturating_duration_since(now)
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None if signals.is_none() => 50, // no signalfd: fall back to checking the child
            None => -1,
        };
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        if let Some(sfd) = signals.as_ref() {
            fds.push(pollfd(std::os::fd::AsRawFd::as_raw_fd(sfd)));
        }
        let pump_slots: Vec<(usize, usize)> = pumps
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.fd().map(|fd| {
                    fds.push(pollfd(fd));
                    (i, fds.len() - 1)
                })
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd of the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };

        let mut pumped = false;
        for (pump, slot) in pump_slots {
            let revents = fds[slot].revents;
            if revents != 0 {
                // At Eof the job (or all its processes) closed the pipe.
                let _ = pumps[pump].pump();
                pumped = true;
            }
        }
        if pumped {
            watch.scan(store);
        }

        let now = Instant::now();
        if timeout_at.is_some_and(|t| now >= t) {
            timeout_at = None;
            if end.wait_status.is_none() {
                end.timed_out = true;
                kill_at = Some(terminate(tree, Signal::SIGTERM, kill_after));
            }
        }
        if kill_at.is_some_and(|t| now >= t) {
            kill_at = None;
            tree.kill_all();
        }
        if drain_until.is_some_and(|t| now >= t) {
            // Something outside the cgroup holds a pipe: stop waiting for it.
            for p in pumps.iter_mut() {
                p.close();
            }
            drain_until = None;
        }

        let mut got_sigchld = signals.is_none();
        if let Some(sfd) = signals.as_ref() {
            while let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => got_sigchld = true,
                    Ok(Signal::SIGUSR1) => {
                        if let Some(at) = honour_kill_request(store, &spec.job_id, tree) {
                            end.kill_requested = true;
                            kill_at = Some(at);
                        }
                    }
                    Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                        // Someone asked the supervisor itself to stop: stop the job first.
                        end.kill_requested = true;
                        end.message =
                            Some("the supervisor was asked to stop; the job was killed".into());
                        kill_at = Some(terminate(tree, Signal::SIGTERM, kill_after));
                    }
                    _ => {} // SIGHUP: we have no terminal; ignore
                }
            }
        }
        if got_sigchld && reap(main_pid, &mut end) {
            // The main process is gone: whatever it left behind dies now.
            end.leftover_killed = tree.kill_leftovers();
            timeout_at = None;
            kill_at = None;
            drain_until = Some(Instant::now() + DRAIN_GRACE);
        }
    }
    // The last lines, stored as the pipes closed.
    watch.finish(store);
    end.stdout = pumps[0].stats().clone();
    end.stderr = pumps[1].stats().clone();
    end
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Sends `signal` to every process of the job; returns when to escalate to a kill.
fn terminate(tree: &JobTree, signal: Signal, grace: Duration) -> Instant {
    if signal == Signal::SIGKILL || grace.is_zero() {
        tree.kill_all();
    } else {
        tree.signal_all(signal);
    }
    Instant::now() + grace
}

/// Carries out the request `agent-exec kill` left in the store, if any;
/// returns when to escalate to SIGKILL.
fn honour_kill_request(store: &Store, id: &str, tree: &JobTree) -> Option<Instant> {
    let bytes = std::fs::read(store.job_dir(id).join(super::KILL_REQUEST)).ok()?;
    let req: KillRequest = serde_json::from_slice(&bytes).ok()?;
    let sig = Signal::try_from(req.signal).unwrap_or(Signal::SIGTERM);
    Some(terminate(tree, sig, Duration::from_millis(req.grace_ms)))
}

/// Reaps every child that exited. We are a subreaper, so orphans of the job
/// come to us; the main process is reaped with wait4 for its rusage.
/// Returns true when the main process was reaped by this call.
fn reap(main_pid: i32, end: &mut End) -> bool {
    let mut main_reaped = false;
    loop {
        // SAFETY: siginfo is plain data filled by the kernel.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // Peek first (WNOWAIT) so the main process is reaped only by wait4 below.
        // SAFETY: valid pointer to siginfo.
        let r = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for SIGCHLD-style siginfo returned by waitid.
        let pid = unsafe { info.si_pid() };
        if r != 0 || pid == 0 {
            break;
        }
        if pid == main_pid {
            let mut status = 0;
            // SAFETY: rusage is plain data filled by the kernel.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: our own child, known to be waitable.
            let got = unsafe { libc::wait4(main_pid, &mut status, 0, &mut usage) };
            if got == main_pid {
                end.wait_status = Some(status);
                end.max_rss_bytes = Some(usage.ru_maxrss as u64 * 1024);
                let usec = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
                end.cpu_user_usec = Some(usec(usage.ru_utime));
                end.cpu_system_usec = Some(usec(usage.ru_stime));
                main_reaped = true;
            }
        } else {
            // SAFETY: reaping an exited orphan that was reparented to us.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
    main_reaped
}

impl End {
    pub(super) fn into_outcome(self, usage: Usage, cgroup: bool, duration_ms: u64) -> Outcome {
        let status = self.wait_status.unwrap_or(0);
        let oom = usage.oom_kills > 0;
        let (result, exit_code, signal) = if libc::WIFEXITED(status) {
            let code = libc::WEXITSTATUS(status);
            let result = if self.timed_out {
                ResultKind::Timeout
            } else if self.kill_requested {
                ResultKind::Killed
            } else if oom && code != 0 {
                ResultKind::Oom
            } else if code == 0 {
                ResultKind::Success
            } else {
                ResultKind::ExitCode
            };
            (result, Some(code), None)
        } else {
            let sig = libc::WTERMSIG(status);
            let result = if self.timed_out {
                ResultKind::Timeout
            } else if self.kill_requested {
                ResultKind::Killed
            } else if oom && sig == libc::SIGKILL {
                ResultKind::Oom
            } else {
                ResultKind::Signal
            };
            (result, None, Some(signal_name(sig)))
        };
        let message = self.message.or_else(|| match result {
            ResultKind::Oom => Some("the job ran out of memory and the kernel killed it".into()),
            ResultKind::Timeout => Some("the job exceeded its timeout".into()),
            _ => None,
        });
        Outcome {
            result,
            exit_code,
            signal,
            timed_out: self.timed_out,
            oom_killed: oom,
            duration_ms,
            // Without a cgroup the processes tell: CPU of every process
            // reaped below the main one, and the largest of them for the
            // memory peak.
            resources: Resources {
                accounting: Some(if cgroup {
                    Accounting::Cgroup
                } else {
                    Accounting::Processes
                }),
                cpu_user_ms: usage.cpu_user_usec.or(self.cpu_user_usec).map(|u| u / 1000),
                cpu_system_ms: usage
                    .cpu_system_usec
                    .or(self.cpu_system_usec)
                    .map(|u| u / 1000),
                memory_peak_bytes: if cgroup {
                    usage.memory_peak_bytes
                } else {
                    self.max_rss_bytes
                },
                pids_peak: usage.pids_peak,
                max_rss_bytes: self.max_rss_bytes,
                leftover_processes_killed: self.leftover_killed,
            },
            stdout: self.stdout,
            stderr: self.stderr,
            message,
            sandbox_unavailable: false,
            denials: Vec::new(),
            network: None,
        }
    }
}

/// `"SIGTERM"` for 15; `"SIG42"` for signals without a name.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("SIG{sig}"))
}

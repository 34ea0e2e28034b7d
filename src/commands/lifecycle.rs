//! run, create, start, status, wait, kill: the life of one job.

use std::ffi::CString;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::define;
use super::view::{exit_status_of, job_response, ExcerptBudget, Observation};
use super::Reply;
use crate::cli::{CreateArgs, JobArg, KillArgs, Observe, RunArgs, StartArgs, WaitArgs};
use crate::job::liveness::{pidfd_of, reconcile, supervisor_of};
use crate::job::model::{JobSpec, JobStatus, ResultKind, Secrets, State};
use crate::job::observe::Watch;
use crate::job::store::{write_json, Store};
use crate::response::{AppError, ErrorCode, JobResponseType};
use crate::supervisor::{spawn_detached, Fallback, KillRequest, Launch, KILL_REQUEST};

const DEFAULT_RUN_UNTIL: Duration = Duration::from_secs(10);
const DEFAULT_WAIT_UNTIL: Duration = Duration::from_secs(30);
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

pub fn run(store: &Store, args: &RunArgs) -> Result<Reply, AppError> {
    let budget = ExcerptBudget::from_args(&args.observe.excerpt)?;
    let until = observe_deadline(&args.observe, DEFAULT_RUN_UNTIL)?;
    let defined = define::build(&args.def, store)?;
    // The clear-text secrets stay in memory: the forked supervisor has them.
    let lock = store.create_started(&defined.spec, defined.stdin.as_deref())?;
    start_and_observe(
        store,
        &defined.spec,
        &defined.secrets,
        lock,
        &args.observe,
        until,
        budget,
        JobResponseType::Run,
    )
}

pub fn create(store: &Store, args: &CreateArgs) -> Result<Reply, AppError> {
    let defined = define::build(&args.def, store)?;
    let secrets = defined.spec.has_secrets.then_some(&defined.secrets);
    // Masks without other secrets still need their values at start time.
    let mask_only = Secrets {
        mask_values: defined.secrets.mask_values.clone(),
        ..Default::default()
    };
    let secrets = secrets.or((!mask_only.mask_values.is_empty()).then_some(&mask_only));
    let spec = JobSpec {
        has_secrets: secrets.is_some(),
        ..defined.spec
    };
    store.create(&spec, secrets, defined.stdin.as_deref())?;
    let status = store.read_status(&spec.job_id)?;
    let budget = ExcerptBudget {
        max_bytes: 0,
        tail_lines: None,
    };
    let obs = Observation {
        waited_ms: 0,
        deadline_reached: false,
    };
    Ok(Reply::json(&job_response(
        JobResponseType::Create,
        store,
        &spec,
        &status,
        &budget,
        obs,
    )))
}

pub fn start(store: &Store, args: &StartArgs) -> Result<Reply, AppError> {
    let budget = ExcerptBudget::from_args(&args.observe.excerpt)?;
    let until = observe_deadline(&args.observe, DEFAULT_RUN_UNTIL)?;
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    let status = store.read_status(&id)?;
    if status.state != State::Created {
        return Err(invalid_state(
            &id,
            status.state,
            "start",
            "only created jobs can be started",
        ));
    }
    let lock = store.claim_start(&id)?;
    let secrets = if spec.has_secrets {
        store.read_secrets(&id)?
    } else {
        Secrets::default()
    };
    start_and_observe(
        store,
        &spec,
        &secrets,
        lock,
        &args.observe,
        until,
        budget,
        JobResponseType::Start,
    )
}

#[allow(clippy::too_many_arguments)]
fn start_and_observe(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    lock: std::fs::File,
    observe: &Observe,
    until: Option<Duration>,
    budget: ExcerptBudget,
    kind: JobResponseType,
) -> Result<Reply, AppError> {
    let id = &spec.job_id;
    let no_wait = observe.no_wait;
    let mut request = AnswerRequest {
        kind,
        max_bytes: budget.max_bytes,
        tail_lines: budget.tail_lines,
        exit_status: observe.exit_status,
        no_wait,
        began_ns: monotonic_ns(),
        deadline_ns: None,
        supervisor_pid: 0,
    };
    request.deadline_ns = until.map(|d| request.began_ns + d.as_nanos() as u64);
    let launch = if no_wait {
        Launch::AfterCaller
    } else {
        Launch::Now
    };
    if !no_wait {
        // The launch and the wait are a chain of processes waking one
        // another: on one CPU, none of them waits for an idle one to wake.
        crate::sandbox::affinity::pin_to_this_cpu();
        // A supervisor that shares our memory answers for us (this returns
        // only where it cannot be started that way: we fork one instead).
        let render = |recorded: Option<&JobStatus>| {
            let request = AnswerRequest {
                supervisor_pid: std::process::id() as i32,
                ..request.clone()
            };
            answer_when_finished(store, spec, &request, recorded).map(Reply::into_output)
        };
        let fallback = answer_fallback(store, id, &request);
        crate::supervisor::spawn_answering(
            store,
            spec,
            secrets,
            &lock,
            &render,
            &fallback,
            request.deadline_ns,
        )?;
    }
    let supervisor = spawn_detached(store, spec, secrets, lock, launch)?;
    request.supervisor_pid = supervisor.pid();
    let status = if no_wait {
        // The job is recorded, its logs exist and its supervisor owns it:
        // that is all --no-wait promises. Building the sandbox takes the
        // supervisor milliseconds more (namespaces, Landlock, seccomp, exec);
        // the job reads as created until it records running or a launch
        // failure, which `status` and `wait` then report.
        store
            .read_recorded_status(id)?
            .unwrap_or_else(|| JobStatus::created(spec.created_at_ms))
    } else {
        // Our own supervisor tells us when to look; the store says what
        // happened (and `until` still watches it, should the supervisor die).
        supervisor.wait_finished(request.deadline());
        Watch::on_demand(store, id, true).until(store, id, request.deadline(), |_| false)?
    };
    reply_to(store, spec, &status, &request)
}

/// What a `run` or `start` answers, and when it started waiting: all a
/// process needs to give the answer on its behalf (the supervisor, or
/// `agent-exec __answer` when the supervisor could not).
#[derive(Clone, Serialize, Deserialize)]
pub struct AnswerRequest {
    kind: JobResponseType,
    max_bytes: u64,
    tail_lines: Option<usize>,
    exit_status: bool,
    no_wait: bool,
    /// CLOCK_MONOTONIC, shared by every process of the machine.
    began_ns: u64,
    deadline_ns: Option<u64>,
    supervisor_pid: i32,
}

impl AnswerRequest {
    fn deadline(&self) -> Option<Instant> {
        self.deadline_ns.map(|d| {
            let now = monotonic_ns();
            Instant::now() + Duration::from_nanos(d.saturating_sub(now))
        })
    }
}

fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The supervisor's side: the answer once the job's final state is recorded
/// (`recorded`, as just written, or read back), or None when it is not (the
/// final write failed): the waiting CLI then watches the store itself, as
/// `__answer`.
fn answer_when_finished(
    store: &Store,
    spec: &JobSpec,
    request: &AnswerRequest,
    recorded: Option<&JobStatus>,
) -> Option<Reply> {
    let read;
    let status = match recorded {
        Some(status) => status,
        None => {
            read = store.read_status(&spec.job_id).ok()?;
            &read
        }
    };
    if !status.state.is_terminal() {
        return None;
    }
    Some(reply_to(store, spec, status, request).unwrap_or_else(|e| Reply::error(e, 1)))
}

/// How a CLI whose supervisor gave no answer answers: by executing
/// `agent-exec __answer ID REQUEST PID` (see `supervisor::shared`).
fn answer_fallback(store: &Store, id: &str, request: &AnswerRequest) -> Fallback {
    use std::os::unix::ffi::OsStrExt;
    let arg = |bytes: &[u8]| CString::new(bytes).unwrap_or_default();
    let request = serde_json::to_vec(request).unwrap_or_default();
    let failure = AppError::new(
        ErrorCode::IoError,
        format!("the supervisor gave no answer and `agent-exec __answer` could not be executed: `agent-exec wait {id}` tells how the job ended"),
    )
    .with_job(id);
    Fallback {
        argv: vec![
            arg(b"agent-exec"),
            arg(b"--root"),
            arg(store.root().as_os_str().as_bytes()),
            arg(b"__answer"),
            arg(id.as_bytes()),
            arg(&request),
        ],
        failure: Reply::error(failure, 1).into_output().0,
    }
}

/// `agent-exec __answer ID REQUEST PID`: a waiting `run` or `start` whose
/// supervisor did not answer (the deadline came first, or it died) watches
/// the store and answers here, as it would have itself.
pub fn answer(
    store: &Store,
    job_id: &str,
    request: &str,
    supervisor_pid: i32,
) -> Result<Reply, AppError> {
    let mut request: AnswerRequest =
        serde_json::from_str(request).map_err(|e| AppError::invalid(format!("__answer: {e}")))?;
    request.supervisor_pid = supervisor_pid;
    let spec = store.read_spec(job_id)?;
    let status =
        Watch::on_demand(store, job_id, true)
            .until(store, job_id, request.deadline(), |_| false)?;
    reply_to(store, &spec, &status, &request)
}

fn reply_to(
    store: &Store,
    spec: &JobSpec,
    status: &JobStatus,
    request: &AnswerRequest,
) -> Result<Reply, AppError> {
    let id = &spec.job_id;
    let budget = ExcerptBudget {
        max_bytes: request.max_bytes,
        tail_lines: request.tail_lines,
    };
    if let Some(o) = status
        .outcome
        .as_ref()
        .filter(|o| o.result == ResultKind::LaunchFailed)
    {
        let code = if o.sandbox_unavailable {
            ErrorCode::SandboxUnavailable
        } else {
            ErrorCode::LaunchFailed
        };
        let mut e = AppError::new(
            code,
            o.message
                .clone()
                .unwrap_or_else(|| "the job could not be launched".into()),
        )
        .with_job(id);
        e.exit_code = o.exit_code;
        let code = if request.exit_status {
            o.exit_code.unwrap_or(125)
        } else {
            1
        };
        return Ok(Reply::error(e, code));
    }
    let obs = Observation {
        waited_ms: monotonic_ns().saturating_sub(request.began_ns) / 1_000_000,
        deadline_reached: !status.state.is_terminal() && !request.no_wait,
    };
    let mut response = job_response(request.kind, store, spec, status, &budget, obs);
    if status.state == State::Created {
        response.supervisor_pid = Some(request.supervisor_pid);
        response.message = Some(format!(
            "launching: the supervisor (pid {}) is setting up the sandbox; `status` or `wait` reports whether the command started",
            request.supervisor_pid
        ));
    }
    let mut reply = Reply::json(&response);
    if request.exit_status {
        if let Some(code) = exit_status_of(status) {
            reply.exit_code = code;
        }
    }
    Ok(reply)
}

pub fn status(store: &Store, args: &JobArg) -> Result<Reply, AppError> {
    let budget = ExcerptBudget::from_args(&args.excerpt)?;
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    let status = reconcile(store, &id, store.read_status(&id)?)?;
    let obs = Observation {
        waited_ms: 0,
        deadline_reached: false,
    };
    Ok(Reply::json(&job_response(
        JobResponseType::Status,
        store,
        &spec,
        &status,
        &budget,
        obs,
    )))
}

pub fn wait(store: &Store, args: &WaitArgs) -> Result<Reply, AppError> {
    let budget = ExcerptBudget::from_args(&args.excerpt)?;
    let until = if args.forever {
        None
    } else {
        Some(match &args.until {
            Some(u) => Duration::from_millis(define::duration_ms("--until", u)?),
            None => DEFAULT_WAIT_UNTIL,
        })
    };
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    let watch = Watch::on_demand(store, &id, true);
    let began = Instant::now();
    let status = watch.until(store, &id, until.map(|u| began + u), |s| {
        s.state.is_terminal()
    })?;
    let obs = Observation {
        waited_ms: began.elapsed().as_millis() as u64,
        deadline_reached: !status.state.is_terminal(),
    };
    let mut reply = Reply::json(&job_response(
        JobResponseType::Wait,
        store,
        &spec,
        &status,
        &budget,
        obs,
    ));
    if args.exit_status {
        if let Some(code) = exit_status_of(&status) {
            reply.exit_code = code;
        }
    }
    Ok(reply)
}

pub fn kill(store: &Store, args: &KillArgs) -> Result<Reply, AppError> {
    let signal = parse_signal(&args.signal)?;
    let grace = match &args.grace {
        Some(g) => Duration::from_millis(define::duration_ms("--grace", g)?),
        None => DEFAULT_GRACE,
    };
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    let status = reconcile(store, &id, store.read_status(&id)?)?;
    let budget = ExcerptBudget {
        max_bytes: super::view::DEFAULT_MAX_BYTES,
        tail_lines: None,
    };
    if status.state == State::Created && !store.has_start_lock(&id) {
        return Err(invalid_state(
            &id,
            status.state,
            "kill",
            "the job has not been started; delete it instead",
        ));
    }
    let began = Instant::now();
    let mut sent = None;
    let mut status = status;
    if !status.state.is_terminal() {
        let watch = Watch::state_only(store, &id)?;
        write_json(
            &store.job_dir(&id).join(KILL_REQUEST),
            &KillRequest {
                signal: signal as i32,
                grace_ms: grace.as_millis() as u64,
            },
            0o600,
        )?;
        let supervisor = supervisor_of(store, &id, &status).and_then(|s| pidfd_of(&s));
        if let Some(pidfd) = supervisor {
            // SAFETY: pidfd refers to the verified supervisor; SIGUSR1 asks it to read kill.json.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                    libc::SIGUSR1,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if r == 0 {
                sent = Some(signal.as_str().to_string());
            }
        }
        let deadline = if args.no_wait {
            Some(Instant::now())
        } else {
            Some(Instant::now() + grace + Duration::from_secs(5))
        };
        status = watch.until(store, &id, deadline, |s| s.state.is_terminal())?;
    }
    let obs = Observation {
        waited_ms: began.elapsed().as_millis() as u64,
        deadline_reached: !status.state.is_terminal() && !args.no_wait,
    };
    let mut response = job_response(JobResponseType::Kill, store, &spec, &status, &budget, obs);
    if sent.is_none() && response.message.is_none() {
        response.message = Some("the job had already ended; nothing was signalled".into());
    }
    response.signal_sent = sent;
    Ok(Reply::json(&response))
}

fn observe_deadline(observe: &Observe, default: Duration) -> Result<Option<Duration>, AppError> {
    if observe.forever {
        return Ok(None);
    }
    Ok(Some(match &observe.until {
        Some(u) => Duration::from_millis(define::duration_ms("--until", u)?),
        None => default,
    }))
}

fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, AppError> {
    use nix::sys::signal::Signal;
    let upper = s.trim().to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| AppError::invalid(format!("--signal {s:?}: no such signal")));
    }
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| {
        AppError::invalid(format!(
            "--signal {s:?}: no such signal (try TERM, INT, KILL, HUP)"
        ))
    })
}

pub fn invalid_state(id: &str, state: State, action: &str, hint: &str) -> AppError {
    AppError::new(
        ErrorCode::InvalidState,
        format!("cannot {action} job {id}: it is {}; {hint}", state.as_str()),
    )
    .with_job(id)
}

//! run, create, start, status, wait, kill: the life of one job.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::request::{duration, job_request};
use super::view::{exit_status_of, job_response, ExcerptBudget, Observation};
use super::Reply;
use crate::cli::{
    CreateArgs, JobArg, KillArgs, Observe, RestartArgs, RunArgs, StartArgs, WaitArgs,
};
use crate::job::define::define;
use crate::job::liveness::{mark_lost, pidfd_of, reconcile, supervisor_of};
use crate::job::model::{JobSpec, JobStatus, ResultKind, Secrets, State};
use crate::job::observe::Watch;
use crate::job::store::{write_json, Store};
use crate::response::{AppError, ErrorCode, JobResponseType};
use crate::supervisor::{self, KillRequest, Waiting, KILL_REQUEST};

const DEFAULT_RUN_UNTIL: Duration = Duration::from_secs(10);
const DEFAULT_WAIT_UNTIL: Duration = Duration::from_secs(30);
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// `run`: `create`, `start` and `wait` in one request; the job's secrets
/// go to its supervisor without touching the disk.
pub fn run(store: &Store, args: &RunArgs) -> Result<Reply, AppError> {
    let began = Instant::now();
    let answer = Answer::from_observe(&args.observe, JobResponseType::Run, began)?;
    super::output_match_of(&args.def.output_match)?;
    let defined = define(&job_request(&args.def)?, store)?;
    store.create(&defined.spec, None, defined.stdin.as_deref())?;
    set_sinks(store, &defined.spec.job_id, &args.def)?;
    crate::diag!(
        1,
        "job {} in {}",
        defined.spec.job_id,
        store.job_dir(&defined.spec.job_id).display()
    );
    store.claim_start(&defined.spec.job_id)?;
    start_and_observe(
        store,
        &defined.spec,
        &defined.secrets,
        &answer,
        Unclaim::DeleteJob,
    )
}

pub fn create(store: &Store, args: &CreateArgs) -> Result<Reply, AppError> {
    super::output_match_of(&args.def.output_match)?;
    let (spec, secrets, stdin) = define(&job_request(&args.def)?, store)?.for_later_start();
    store.create(&spec, secrets.as_ref(), stdin.as_deref())?;
    set_sinks(store, &spec.job_id, &args.def)?;
    let status = store.read_status(&spec.job_id)?;
    let budget = ExcerptBudget::none();
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
    let began = Instant::now();
    let answer = Answer::from_observe(&args.observe, JobResponseType::Start, began)?;
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
    store.claim_start(&id)?;
    // A finished job no longer holds its claim: one that another `start`
    // ran to its end between our reading and our claim is not run again.
    let status = store.read_status(&id)?;
    if status.state != State::Created {
        let _ = store.release_start(&id);
        return Err(invalid_state(
            &id,
            status.state,
            "start",
            "only created jobs can be started",
        ));
    }
    let secrets = if spec.has_secrets {
        store.read_secrets(&id)?
    } else {
        Secrets::default()
    };
    start_and_observe(store, &spec, &secrets, &answer, Unclaim::ReleaseClaim)
}

/// `--notify-command`/`--notify-file`: kept with the job before it starts.
fn set_sinks(store: &Store, id: &str, def: &crate::cli::JobDefinition) -> Result<(), AppError> {
    let sinks = crate::supervisor::notify::Sinks {
        notify_command: def.notify_command.clone(),
        notify_file: def
            .notify_file
            .as_deref()
            .map(super::absolute)
            .transpose()?,
        on_output_match: super::output_match_of(&def.output_match)?,
    };
    if sinks.is_empty() {
        return Ok(());
    }
    crate::supervisor::notify::set(store, id, &sinks).map_err(|e| {
        let _ = store.delete(id);
        AppError::from(e)
    })
}

/// `restart`: the same job again, under its id. A running job is stopped
/// first (`--signal`, then KILL after the grace); a job whose masked
/// values were given is refused (they are not kept once it started).
pub fn restart(store: &Store, args: &RestartArgs) -> Result<Reply, AppError> {
    let began = Instant::now();
    let answer = Answer::from_observe(&args.observe, JobResponseType::Restart, began)?;
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    if spec.has_secrets {
        let status = store.read_status(&id)?;
        return Err(invalid_state(
            &id,
            status.state,
            "restart",
            "its masked values are not kept once it started; run it again with them",
        ));
    }
    let status = reconcile(store, &id, store.read_status(&id)?)?;
    let started = status.state == State::Running || store.has_start_lock(&id);
    if !status.state.is_terminal() && started {
        kill(
            store,
            &KillArgs {
                job_id: id.clone(),
                signal: args.signal.clone(),
                grace: None,
                no_wait: false,
            },
        )?;
        let now = reconcile(store, &id, store.read_status(&id)?)?;
        if !now.state.is_terminal() {
            return Err(invalid_state(
                &id,
                now.state,
                "restart",
                "it did not stop; kill it, then restart it",
            ));
        }
    }
    // Its supervisor removes the job's cgroups after the result: the new
    // run makes cgroups of the same name.
    let ended = store.read_status(&id)?;
    if let Some(pidfd) = ended
        .supervisor
        .as_ref()
        .and_then(crate::job::liveness::pidfd_of)
    {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    }
    // A job that failed to launch, or was found lost, keeps the claim of
    // its dead supervisor: ended, it is nobody's.
    let ended = reconcile(store, &id, store.read_status(&id)?)?;
    let supervisor_gone = ended
        .supervisor
        .as_ref()
        .is_none_or(|s| !crate::job::liveness::is_alive(s));
    if ended.state.is_terminal() && supervisor_gone && store.has_start_lock(&id) {
        let _ = store.release_start(&id);
    }
    store.claim_start(&id).map_err(|e| match e {
        crate::job::store::StoreError::AlreadyStarted { .. } => invalid_state(
            &id,
            State::Running,
            "restart",
            "another caller started it meanwhile",
        ),
        other => other.into(),
    })?;
    if let Err(e) = store.reset_for_restart(&id) {
        let _ = store.release_start(&id);
        return Err(e.into());
    }
    start_and_observe(
        store,
        &spec,
        &Secrets::default(),
        &answer,
        Unclaim::ReleaseClaim,
    )
}

/// What a `run` or `start` answers with, and when it began.
struct Answer {
    kind: JobResponseType,
    budget: ExcerptBudget,
    exit_status: bool,
    no_wait: bool,
    began: Instant,
    /// None: observe until the job ends.
    until: Option<Duration>,
}

impl Answer {
    fn from_observe(
        observe: &Observe,
        kind: JobResponseType,
        began: Instant,
    ) -> Result<Answer, AppError> {
        let until = observation(observe.forever, observe.until.as_deref(), DEFAULT_RUN_UNTIL)?;
        let no_wait = match (observe.no_wait, observe.wait) {
            (true, Some(true)) => {
                return Err(AppError::invalid("--no-wait and --wait=true contradict"))
            }
            (_, Some(false)) if observe.forever => {
                return Err(AppError::invalid("--wait=false and --forever contradict"))
            }
            (no_wait, wait) => no_wait || wait == Some(false),
        };
        Ok(Answer {
            kind,
            budget: ExcerptBudget::from_args(&observe.excerpt)?,
            exit_status: observe.exit_status,
            no_wait,
            began,
            until,
        })
    }
}

/// Launches the supervisor of a claimed job, then answers: at once with
/// `--no-wait`, else once the job has ended or the observation window
/// closed (the job goes on either way).
fn start_and_observe(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    answer: &Answer,
    if_not_started: Unclaim,
) -> Result<Reply, AppError> {
    let id = &spec.job_id;
    let waiting = if answer.no_wait {
        Waiting::No
    } else {
        Waiting::Yes
    };
    let supervisor = match supervisor::launch(store, spec, secrets, waiting) {
        Ok(s) => s,
        Err(e) => {
            // Nothing will run the job: leave no claim that would later
            // read as a lost job.
            let _ = match if_not_started {
                Unclaim::DeleteJob => store.delete(id),
                Unclaim::ReleaseClaim => store.release_start(id),
            };
            return Err(AppError::from(e).with_job(id));
        }
    };
    let deadline = answer.until.map(|u| answer.began + u);
    let done = !answer.no_wait && supervisor.wait_done(deadline);
    let mut status = store.read_status(id)?;
    // The pipe closes with the result recorded, or with a supervisor that
    // is dying without having recorded it.
    if done && !status.state.is_terminal() && supervisor.wait_exit(deadline) {
        status = store.read_status(id)?;
        if !status.state.is_terminal() {
            status = mark_lost(store, id, status);
        }
    }
    let status = reconcile(store, id, status)?;
    reply_to(store, spec, &status, answer, supervisor.pid())
}

/// What undoes a claimed start whose supervisor could not be started.
#[derive(Clone, Copy)]
enum Unclaim {
    /// `run`: the job was made for this start only.
    DeleteJob,
    /// `start`: the created job stays, to be started again.
    ReleaseClaim,
}

fn reply_to(
    store: &Store,
    spec: &JobSpec,
    status: &JobStatus,
    answer: &Answer,
    supervisor_pid: i32,
) -> Result<Reply, AppError> {
    let id = &spec.job_id;
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
        let code = if answer.exit_status {
            o.exit_code.unwrap_or(125)
        } else {
            1
        };
        return Ok(Reply::error(e, code));
    }
    let obs = Observation {
        waited_ms: answer.began.elapsed().as_millis() as u64,
        deadline_reached: !status.state.is_terminal() && !answer.no_wait,
    };
    let mut response = job_response(answer.kind, store, spec, status, &answer.budget, obs);
    if status.state == State::Created {
        response.supervisor_pid = Some(supervisor_pid);
        response.message = Some(format!(
            "launching: the supervisor (pid {supervisor_pid}) is setting up the sandbox; `status` or `wait` reports whether the command started"
        ));
    }
    let mut reply = Reply::json(&response);
    if answer.exit_status {
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
    let until = observation(args.forever, args.until.as_deref(), DEFAULT_WAIT_UNTIL)?;
    let id = store.resolve(&args.job_id)?;
    let spec = store.read_spec(&id)?;
    let watch = Watch::on_demand(store, &id);
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
        Some(g) => duration("--grace", g)?,
        None => DEFAULT_GRACE,
    };
    let id = match store.resolve(&args.job_id) {
        Ok(id) => id,
        // Its record is gone; the job may still run, and is still killed.
        Err(e @ crate::job::store::StoreError::NotFound { .. }) => {
            return match kill_orphan(&args.job_id, signal, grace) {
                Some(reply) => Ok(reply),
                None => Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    let spec = store.read_spec(&id)?;
    let status = reconcile(store, &id, store.read_status(&id)?)?;
    let budget = ExcerptBudget {
        max_bytes: super::view::DEFAULT_MAX_BYTES,
        tail_lines: None,
        compress: "off".into(),
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
    let was_over = status.state.is_terminal();
    let mut status = status;
    if !was_over {
        let watch = Watch::on_demand(store, &id);
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
        response.message = Some(if status.state.is_terminal() {
            "the job had already ended; nothing was signalled".into()
        } else {
            "the supervisor had not recorded itself yet: the request waits in the store and is carried out as soon as it starts".into()
        });
    }
    response.signal_sent = sent;
    response.observed_within_ms = if was_over {
        Some(0)
    } else if status.state.is_terminal() && !args.no_wait {
        Some(began.elapsed().as_millis() as u64)
    } else {
        None
    };
    Ok(Reply::json(&response))
}

/// Kills, through its cgroup, a job whose record was removed while it ran
/// (named by its full id): `signal` to every process, then the whole
/// cgroup after `grace`. `None` when no such cgroup holds processes.
fn kill_orphan(id: &str, signal: nix::sys::signal::Signal, grace: Duration) -> Option<Reply> {
    use crate::sandbox::cgroup::{JobCgroup, Layout};
    let full_id = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if !full_id {
        return None;
    }
    let layout = Layout::detect().ok()?;
    let cgroup = JobCgroup::reattach(&layout, id);
    if !(cgroup.v2_dir().is_dir() && cgroup.populated()) {
        return None;
    }
    let processes = cgroup.signal_all(signal) as u64;
    if !cgroup.wait_empty(grace) {
        cgroup.kill_all();
    }
    let ended = cgroup.wait_empty(Duration::from_secs(5));
    if ended {
        cgroup.remove();
    }
    Some(Reply::json(&crate::response::OrphanKillResponse {
        schema_version: crate::response::SchemaVersion,
        ok: crate::response::Const,
        kind: crate::response::OrphanKillType::Kill,
        job_id: id.to_string(),
        state: State::Lost,
        signal_sent: Some(signal.as_str().to_string()),
        processes,
        ended,
        message: "the job's record is gone (its directory was removed); its processes were \
                  signalled through its cgroup"
            .to_string(),
    }))
}

/// How long to observe: `--until`, `--forever` (None), or the command's default.
fn observation(
    forever: bool,
    until: Option<&str>,
    default: Duration,
) -> Result<Option<Duration>, AppError> {
    if forever {
        return Ok(None);
    }
    Ok(Some(match until {
        Some(u) => duration("--until", u)?,
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

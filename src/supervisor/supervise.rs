//! The job from launch to result, in the supervisor process.
//!
//! Creates the cgroup, launches the child into it, pumps the output into the
//! logs, enforces the timeout and kill requests on the whole cgroup, reaps,
//! measures, writes the result atomically and removes the cgroup.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use super::event_loop;
use super::tree::JobTree;

/// What `$JOB_DIR`'s copy may write when the policy sets no `limits.disk`.
const DEFAULT_JOB_DIR_COPY: u64 = 256 << 20;
use crate::job::define::FloorCheck;
use crate::job::model::{
    JobSpec, JobStatus, Outcome, ProcRef, ResultKind, Secrets, State, StdinSpec,
};
use crate::job::store::{Store, SECRETS_FILE, STDERR_LOG, STDOUT_LOG};
use crate::output::mask::Masker;
use crate::output::pump::{Pump, PIPE_SIZE};
use crate::sandbox::cgroup::{JobCgroup, Layout, Limits};
use crate::sandbox::layers::{CgroupReport, Layers, LimitsReport, SandboxReport};
use crate::sandbox::{self, LaunchPlan, Stdio};
use crate::timefmt::now_ms;

/// Runs the job to its end and records the result. Returns the supervisor's exit code.
///
/// `done` is closed once the result is recorded: the launcher waits for that.
pub(super) fn supervise(
    store: &Store,
    spec: &JobSpec,
    secrets: &Secrets,
    me: ProcRef,
    done: Option<OwnedFd>,
) -> i32 {
    let id = spec.job_id.as_str();
    let started = now_ms();
    let fail = |message: String, exit_code: i32, unavailable: bool| {
        record_launch_failure(store, spec, me, started, message, exit_code, unavailable);
        1
    };

    // The real argv/env: from the secrets when masking hid them in job.json.
    let (argv, explicit_env) = if spec.has_secrets {
        (&secrets.argv, &secrets.env)
    } else {
        (&spec.argv, &spec.env)
    };
    let env = job_environment(spec, explicit_env);
    let cwd = Path::new(&spec.cwd);

    // The host floor holds for what is launched, whatever the record says
    // now (it may have been edited since the job was defined).
    let floor = match crate::job::define::check_floor(spec) {
        Ok(floor) => floor,
        Err(FloorCheck::Refused(e)) => {
            return fail(format!("the host floor refuses this job: {e}"), 125, false)
        }
        Err(FloorCheck::Unreadable(e)) => {
            return fail(format!("the host floor cannot be read: {e}"), 125, false)
        }
    };

    // May the job run without a cgroup of its own? Its policy says; the
    // host floor may insist, and does when it caps what only a cgroup
    // enforces (pids hold without one in the job's own user namespace).
    let host_root = crate::sandbox::identity::caller_is_host_root();
    let sandbox = &spec.sandbox;
    let floor_caps = floor.max_memory.is_some()
        || floor.max_cpu.is_some()
        || (floor.max_pids.is_some() && !sandbox.has_user_ns(host_root));
    let cgroup_optional =
        sandbox.cgroup_optional(host_root) && !floor.require_cgroup && !floor_caps;
    // The job's own network is relayed into by entering it, which takes
    // capabilities over the host's user namespace: root's (a record edited
    // since `create` is judged here too).
    if !spec.publish.is_empty() && sandbox.network.own_namespace() && !host_root {
        return fail(
            "--publish needs root: relaying a port into the job's own network takes \
             capabilities over the host; use --net host, or the proxy for the other \
             direction"
                .into(),
            125,
            true,
        );
    }
    let why_required = if floor.require_cgroup || floor_caps {
        "the host floor requires one (require_cgroup, or a max_memory, max_cpu or max_pids \
         that only a cgroup enforces)"
    } else {
        "the policy needs one (cgroup = \"required\")"
    };
    let layout = match Layout::detect() {
        Ok(l) => Ok(l),
        Err(e) if cgroup_optional => Err(e.to_string()),
        Err(e) => return fail(format!("cgroups unavailable: {e}"), 125, true),
    };
    // Everything the child needs is prepared before the cgroup exists, so a
    // bad command or an unavailable layer costs no cgroup at all.
    let limits_report = LimitsReport {
        memory_bytes: spec.limits.memory_bytes,
        pids: spec.limits.pids,
        cpu: spec.limits.cpus,
        timeout_s: spec.limits.timeout_ms.map(|ms| ms as f64 / 1000.0),
        file_size_bytes: spec.sandbox.file_size,
        open_files: spec.sandbox.open_files,
        disk_bytes: spec.sandbox.disk,
    };
    // Relayed connections cost descriptors: the supervisor takes its hard
    // limit for them, and the job starts with the caller's soft one.
    let callers_soft_nofile =
        if spec.sandbox.network == crate::sandbox::NetMode::Proxy || !spec.publish.is_empty() {
            super::relay::make_room()
        } else {
            None
        };
    let mut layers = match Layers::prepare(
        &spec.sandbox,
        cwd,
        limits_report,
        layout.as_ref().ok().map(|l| l.kind),
        floor.job_identity,
    ) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                format!("the {} layer is unavailable: {}", e.layer, e.message),
                125,
                true,
            )
        }
    };
    layers.rlimits.open_files_soft = callers_soft_nofile;
    let mut plan = match LaunchPlan::new(argv, &env, cwd, layers) {
        Ok(p) => p,
        Err(e) => return fail(e.message, e.exit_code, e.unavailable),
    };
    let limits = Limits {
        memory_bytes: spec.limits.memory_bytes,
        pids: spec.limits.pids,
        cpus: spec.limits.cpus,
    };
    // The job's cgroup, or, where the caller may not have one and the
    // policy lets the job run without, none (and the report says so).
    let cgroup = match layout
        .as_ref()
        .map(|l| JobCgroup::create_or_ask_systemd(l, id, &limits, cgroup_optional))
    {
        Ok(Ok(c)) => Some(c),
        Ok(Err(e)) if cgroup_optional && e.is_denied() => {
            without_cgroup(&mut plan.layers, &limits, &e.to_string());
            None
        }
        Err(why) => {
            without_cgroup(&mut plan.layers, &limits, why);
            None
        }
        Ok(Err(e)) if e.is_denied() => {
            return fail(
                format!(
                    "cannot set up the job's cgroup: {e}. {why_required}: run agent-exec \
                     from a cgroup you own (systemd: systemd-run --user --scope -p \
                     Delegate=yes agent-exec …), or use a policy with cgroup = \"optional\" \
                     such as default or ci; agent-exec doctor says what this host gives"
                ),
                125,
                true,
            )
        }
        Ok(Err(e)) => return fail(format!("cannot set up the job's cgroup: {e}"), 125, true),
    };
    if let Some(c) = &cgroup {
        for (limit, line) in c.not_applied() {
            if !(*limit == "limits.pids" && pids_by_rlimit(&mut plan.layers, &limits)) {
                unapplied(&mut plan.layers.report, limit, line.clone());
            }
        }
    }
    let remove_cgroup = || {
        if let Some(c) = &cgroup {
            c.remove();
        }
    };

    let io = match open_io(store, spec) {
        Ok(io) => io,
        Err(e) => {
            remove_cgroup();
            return fail(e, 125, false);
        }
    };
    let masks = &secrets.mask_values;
    let cap = spec.limits.log_cap_bytes;
    let pumps = [
        Pump::new(io.stdout_read, io.stdout_log, Masker::new(masks), cap),
        Pump::new(io.stderr_read, io.stderr_log, Masker::new(masks), cap),
    ];

    // Published ports are bound before the job starts: a port in use fails
    // the launch, not the job.
    let listeners = match super::publish::Listeners::bind(&spec.publish) {
        Ok(l) => l,
        Err(e) => {
            drop(pumps);
            remove_cgroup();
            return fail(e, 125, false);
        }
    };
    let launched = sandbox::spawn(&plan, io.child, cgroup.as_ref());
    let child = match launched {
        Ok(c) => c,
        Err(e) => {
            drop(pumps);
            remove_cgroup();
            return fail(e.message, e.exit_code, e.unavailable);
        }
    };
    let tree = match cgroup {
        Some(c) => JobTree::Cgroup(c),
        None if plan.layers.namespaces.pid => JobTree::Namespace {
            init: child.pid,
            reaped: Default::default(),
        },
        None => JobTree::Group {
            leader: child.pid,
            reaped: Default::default(),
        },
    };

    // Clear-text secrets are no longer needed on disk once the job runs.
    if spec.has_secrets {
        let _ = std::fs::remove_file(store.job_dir(id).join(SECRETS_FILE));
    }

    // The job's way out, served from here (it listens in the job's network
    // already; what the job sends before we accept waits in its backlog).
    let mut child = child;
    let proxy = match (child.proxy_listener.take(), &spec.sandbox.proxy) {
        (Some(listener), Some(rules)) => {
            match super::proxy::Proxy::start(listener, rules.clone()) {
                Ok(p) => Some(p),
                Err(e) => {
                    // The socket closes with this error: the job reaches nothing.
                    eprintln!("agent-exec: cannot start the job's proxy: {e}");
                    None
                }
            }
        }
        _ => None,
    };

    let mut report = plan.layers.report.clone();
    report.record_child(child.landlock, &child.not_applied);
    let sandbox_report = serde_json::to_value(&report).unwrap_or(serde_json::Value::Null);
    let mut plan = plan;
    let job_dir = child
        .job_dir
        .take()
        .or_else(|| plan.layers.root.as_mut().and_then(|r| r.job_dir.take()));
    drop(plan);
    drop(env);
    let mut status = JobStatus::created(spec.created_at_ms);
    status.state = State::Running;
    status.supervisor = Some(me);
    status.pid = Some(child.pid);
    status.started_at_ms = Some(started);
    status.updated_at_ms = now_ms();
    status.sandbox = Some(sandbox_report);
    status.published = listeners.published();
    status.cgroup = match (&tree, &layout) {
        (JobTree::Cgroup(c), Ok(l)) if c.v2_dir().parent() != Some(l.v2_own.as_path()) => {
            Some(c.v2_dir().to_path_buf())
        }
        _ => None,
    };
    if let Err(e) = listeners.forward_into(child.pid) {
        status.published.clear();
        eprintln!("agent-exec: cannot forward the published ports: {e}");
    }
    // Should this write fail (full disk), the job still runs and its end is
    // recorded. The index learns of the job at its end, off the launch's
    // path: until then readers find it by its mark or its record.
    let _ = store.write_status_file(id, &status);

    let mut end =
        event_loop::run_with_init(store, spec, &tree, child.pid, pumps, child.init_status);

    // What the job left in its $JOB_DIR is kept with its record, in place
    // before the result says the job is over.
    if let Some(root) = job_dir {
        let cap = spec.sandbox.disk.unwrap_or(DEFAULT_JOB_DIR_COPY);
        match super::job_dir::copy_out(&root, &store.files_dir(id), cap) {
            Ok(c) if c.incomplete => end.note(format!(
                "$JOB_DIR was kept in the store only in part: the copy stops at {cap} bytes \
                 (limits.disk) and 100000 entries"
            )),
            Ok(_) => {}
            Err(e) => end.note(format!("$JOB_DIR could not be kept in the store: {e}")),
        }
    }

    // The last process is gone: read the counters (the cgroup goes once the
    // result is recorded).
    let usage = tree.usage();

    let finished = now_ms();
    let mut outcome = end.into_outcome(usage, tree.has_cgroup(), finished.saturating_sub(started));
    // What the proxy refused is known exactly, so it comes first.
    if let Some(proxy) = &proxy {
        outcome.network = Some(proxy.report());
        outcome.denials = proxy.denials();
        outcome.denials.truncate(10);
    }
    // What the sandbox refused, as the job's own error messages tell it.
    let dir = store.job_dir(id);
    for log in ["stderr.log", "stdout.log"] {
        for d in super::denials::find(&dir.join(log), &spec.sandbox, cwd) {
            if outcome.denials.len() < 20 && !outcome.denials.contains(&d) {
                outcome.denials.push(d);
            }
        }
    }
    if outcome.result != ResultKind::Success && outcome.message.is_none() {
        if let Some(first) = outcome.denials.first() {
            outcome.message = Some(format!(
                "the job's output reports what the sandbox refuses ({} {}: {}); see denials",
                first.kind, first.target, first.hint
            ));
        }
    }
    status.state = match outcome.result {
        ResultKind::Success | ResultKind::ExitCode => State::Exited,
        ResultKind::Timeout => State::TimedOut,
        ResultKind::LaunchFailed => State::Failed,
        ResultKind::Lost => State::Lost,
        ResultKind::Signal | ResultKind::Oom | ResultKind::Killed => State::Killed,
    };
    status.pid = None;
    status.finished_at_ms = Some(finished);
    status.updated_at_ms = finished;
    status.outcome = Some(outcome);
    // The start lock goes before the result, so that whoever reads the
    // result finds no claim on a finished job.
    let _ = std::fs::remove_file(store.job_dir(id).join(crate::job::store::START_LOCK));
    // Should this write fail, the next `status` finds us gone and records `lost`.
    let code = match store.write_status_file(id, &status) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    drop(done);
    // What only a running job needed goes once nobody waits on us: removing
    // a directory frees a block, and a file system mounted with `discard`
    // waits for the device.
    tree.remove();
    let _ = std::fs::remove_dir_all(&spec.sandbox.tmpdir);
    // An empty $JOB_DIR is not kept: nothing to read, a block and an inode saved.
    let _ = std::fs::remove_dir(store.files_dir(id));
    // The index, the store's retention and upkeep, now that nobody waits on us.
    store.record_status(id);
    super::notify::deliver(store, spec, &status);
    if let Some(retention) = store.auto_collect() {
        let _ = crate::job::retention::collect_automatically(store, retention);
    }
    if let Ok(index) = store.index() {
        let _ = index.fold_log();
    }
    code
}

/// A job that runs without a cgroup of its own: each limit that needed
/// one is reported, and what holds the tree together instead.
fn without_cgroup(layers: &mut Layers, limits: &Limits, why: &str) {
    layers.report.cgroup = CgroupReport::None;
    let pids = pids_by_rlimit(layers, limits);
    for (name, set) in [
        ("limits.memory", limits.memory_bytes.is_some()),
        ("limits.pids", limits.pids.is_some() && !pids),
        ("limits.cpu", limits.cpus.is_some()),
    ] {
        if set {
            let line = format!("{name}: needs a cgroup for the job ({why})");
            unapplied(&mut layers.report, name, line);
        }
    }
    if !layers.namespaces.pid {
        layers.report.not_applied.push(
            "tree kill: without a cgroup or a pid namespace, processes that leave the job's \
             process group are not stopped with it"
                .into(),
        );
    }
}

/// A limit that is not in force: out of `sandbox.limits` (which shows
/// only what holds) and into `not_applied`, with why.
fn unapplied(report: &mut SandboxReport, limit: &str, line: String) {
    match limit {
        "limits.memory" => report.limits.memory_bytes = None,
        "limits.pids" => report.limits.pids = None,
        _ => report.limits.cpu = None,
    }
    report.not_applied.push(line);
}

/// Without a pids cgroup, `limits.pids` is RLIMIT_NPROC where the job has
/// a user namespace of its own: there the kernel counts the tasks of the
/// job's user in that namespace, which are the job's. Returns whether it is.
fn pids_by_rlimit(layers: &mut Layers, limits: &Limits) -> bool {
    match limits.pids {
        Some(pids) if layers.namespaces.user => {
            layers.rlimits.processes = Some(pids);
            true
        }
        _ => false,
    }
}

/// The job's environment: the caller's (all of it, or only what the policy's
/// allow-list names), the policy's fixed values, then the explicit variables.
fn job_environment(spec: &JobSpec, explicit: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let sandbox = &spec.sandbox;
    let allowed = |k: &str| {
        sandbox
            .env_allow
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => k.starts_with(prefix),
                None => pattern == k,
            })
    };
    let mut env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| spec.inherit_env || allowed(k))
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    for (k, v) in &sandbox.env_set {
        env.insert(k.clone(), v.clone());
    }
    // The proxy is the only way out: every program that honours these finds it.
    if sandbox.network == crate::sandbox::NetMode::Proxy {
        env.extend(super::proxy::environment());
    }
    env.insert(
        "TMPDIR".into(),
        sandbox.tmpdir.to_string_lossy().into_owned(),
    );
    // Where to leave what is kept with the job's record.
    env.insert(
        "JOB_DIR".into(),
        sandbox.files.to_string_lossy().into_owned(),
    );
    for (k, v) in explicit {
        env.insert(k.clone(), v.clone());
    }
    env.into_iter().collect()
}

/// The files and pipes of one launch.
struct JobIo {
    child: Stdio,
    stdout_read: OwnedFd,
    stderr_read: OwnedFd,
    stdout_log: File,
    stderr_log: File,
}

fn open_log(path: &Path) -> Result<File, String> {
    crate::job::store::open_log_for_writing(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

fn open_io(store: &Store, spec: &JobSpec) -> Result<JobIo, String> {
    let dir = store.job_dir(&spec.job_id);
    let stdin = match &spec.stdin {
        StdinSpec::Null => File::open("/dev/null"),
        StdinSpec::File { path, .. } => crate::job::store::open_plain(Path::new(path)),
    }
    .map_err(|e| format!("cannot open the job's stdin: {e}"))?;
    let log = |name: &str| open_log(&dir.join(name));
    let (stdout_read, stdout_write) = output_pipe()?;
    let (stderr_read, stderr_write) = output_pipe()?;
    Ok(JobIo {
        child: Stdio {
            stdin: stdin.into(),
            stdout: stdout_write,
            stderr: stderr_write,
        },
        stdout_read,
        stderr_read,
        stdout_log: log(STDOUT_LOG)?,
        stderr_log: log(STDERR_LOG)?,
    })
}

/// A pipe whose read end is non-blocking (for poll) and whose write end,
/// handed to the job, stays blocking as programs expect.
fn output_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptors, owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
        libc::fcntl(fds[0], libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
    }
    Ok((r, w))
}

pub(super) fn record_launch_failure(
    store: &Store,
    spec: &JobSpec,
    me: ProcRef,
    started: u64,
    message: String,
    exit_code: i32,
    unavailable: bool,
) {
    let now = now_ms();
    let mut status = JobStatus::created(spec.created_at_ms);
    status.state = State::Failed;
    status.supervisor = Some(me);
    status.started_at_ms = Some(started);
    status.finished_at_ms = Some(now);
    status.updated_at_ms = now;
    status.outcome = Some(Outcome {
        result: ResultKind::LaunchFailed,
        exit_code: Some(exit_code),
        signal: None,
        timed_out: false,
        oom_killed: false,
        duration_ms: now.saturating_sub(started),
        resources: Default::default(),
        stdout: Default::default(),
        stderr: Default::default(),
        message: Some(message),
        sandbox_unavailable: unavailable,
        denials: Vec::new(),
        network: None,
    });
    let _ = std::fs::remove_file(store.job_dir(&spec.job_id).join(SECRETS_FILE));
    let _ = store.write_status(&spec.job_id, &status);
}

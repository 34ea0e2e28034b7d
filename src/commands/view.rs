//! Turning a stored job into the JSON a caller sees.

use std::path::Path;

use crate::cli::ExcerptArgs;
use crate::job::model::{JobSpec, JobStatus, ResultKind, State};
use crate::job::store::{Store, STDERR_LOG, STDOUT_LOG};
use crate::output::excerpt::head_and_tail;
use crate::response::{AppError, Const, JobResponse, JobResponseType, SchemaVersion};
use crate::timefmt::rfc3339;
use crate::units::parse_size;

pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024;

/// How excerpts are decoded: bytes that are not UTF-8 become U+FFFD.
pub const ENCODING: &str = "utf-8-lossy";

/// Inline excerpt budget from the flags.
pub struct ExcerptBudget {
    pub max_bytes: u64,
    pub tail_lines: Option<usize>,
    /// The `--compress` view (`off`: none).
    pub compress: String,
}

impl ExcerptBudget {
    pub fn from_args(args: &ExcerptArgs) -> Result<ExcerptBudget, AppError> {
        let max_bytes = match &args.max_bytes {
            None => DEFAULT_MAX_BYTES,
            Some(s) => parse_size(s).map_err(|e| AppError::invalid(format!("--max-bytes: {e}")))?,
        };
        Ok(ExcerptBudget {
            max_bytes,
            tail_lines: args.tail_lines,
            compress: compress_mode(args.compress.as_deref())?,
        })
    }

    /// No excerpt, no view.
    pub fn none() -> ExcerptBudget {
        ExcerptBudget {
            max_bytes: 0,
            tail_lines: None,
            compress: "off".into(),
        }
    }
}

/// `--compress`, else the config's `[compression] default`.
pub fn compress_mode(flag: Option<&str>) -> Result<String, AppError> {
    let mode = match flag {
        Some(m) => m.to_string(),
        None => {
            crate::config::Config::load()
                .map_err(super::config_error)?
                .compression
                .default
        }
    };
    crate::output::views::check_mode(&mode).map_err(AppError::invalid)?;
    Ok(mode)
}

pub struct Observation {
    pub waited_ms: u64,
    pub deadline_reached: bool,
}

pub fn job_response(
    kind: JobResponseType,
    store: &Store,
    spec: &JobSpec,
    status: &JobStatus,
    budget: &ExcerptBudget,
    obs: Observation,
) -> JobResponse {
    let dir = store.job_dir(&spec.job_id);
    let stdout_path = dir.join(STDOUT_LOG);
    let stderr_path = dir.join(STDERR_LOG);
    let outcome = status.outcome.as_ref();
    // A log the final result records as empty is not opened.
    let excerpt = |p: &Path, kept: Option<u64>| match kept {
        Some(0) => Default::default(),
        _ => head_and_tail(p, budget.max_bytes, budget.tail_lines).unwrap_or_default(),
    };
    let (out, err) = if status.state == State::Created {
        (Default::default(), Default::default())
    } else {
        (
            excerpt(&stdout_path, outcome.map(|o| o.stdout.log_bytes)),
            excerpt(&stderr_path, outcome.map(|o| o.stderr.log_bytes)),
        )
    };
    JobResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind,
        job_id: spec.job_id.clone(),
        state: status.state,
        result: outcome.map(|o| o.result),
        exit_code: outcome.and_then(|o| o.exit_code),
        signal: outcome.and_then(|o| o.signal.clone()),
        timed_out: outcome.is_some_and(|o| o.timed_out),
        oom_killed: outcome.is_some_and(|o| o.oom_killed),
        argv: spec.argv.clone(),
        cwd: spec.cwd.clone(),
        policy: spec.policy.clone(),
        tags: spec.tags.clone(),
        created_at: spec.created_at.clone(),
        started_at: status.started_at_ms.map(rfc3339),
        finished_at: status.finished_at_ms.map(rfc3339),
        updated_at: rfc3339(status.updated_at_ms),
        duration_ms: outcome.map(|o| o.duration_ms),
        waited_ms: obs.waited_ms,
        elapsed_ms: crate::timefmt::elapsed_ms(),
        stdout_total_bytes: outcome
            .map(|o| o.stdout.total_bytes)
            .unwrap_or(out.log_bytes),
        stderr_total_bytes: outcome
            .map(|o| o.stderr.total_bytes)
            .unwrap_or(err.log_bytes),
        stdout_range: out.range,
        stderr_range: err.range,
        encoding: ENCODING,
        stdout: out.text,
        stderr: err.text,
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        stdout_log_truncated: outcome.is_some_and(|o| o.stdout.truncated()),
        stderr_log_truncated: outcome.is_some_and(|o| o.stderr.truncated()),
        stdout_log_truncated_by: outcome.and_then(|o| o.stdout.truncated_by()),
        stderr_log_truncated_by: outcome.and_then(|o| o.stderr.truncated_by()),
        stdout_log_omitted: outcome.and_then(|o| o.stdout.log_omitted),
        stderr_log_omitted: outcome.and_then(|o| o.stderr.log_omitted),
        stdout_log_path: stdout_path.to_string_lossy().into_owned(),
        stderr_log_path: stderr_path.to_string_lossy().into_owned(),
        resources: outcome.map(|o| o.resources.clone()),
        sandbox: status.sandbox.clone(),
        denials: outcome.map(|o| o.denials.clone()).unwrap_or_default(),
        network: outcome.and_then(|o| o.network.clone()),
        published: if status.state == crate::job::model::State::Running {
            status.published.clone()
        } else {
            Vec::new()
        },
        env_keys: spec.env.keys().cloned().collect(),
        // job.json holds masked values as `***` already.
        env_vars: spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        masked: spec.masked.clone(),
        pid: status.pid,
        supervisor_pid: status.supervisor.map(|s| s.pid),
        message: outcome.and_then(|o| {
            let mut m = o.message.clone();
            for (name, s) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
                if let Some(e) = &s.log_error {
                    let note = format!("{name}: {e}");
                    m = Some(match m {
                        Some(prev) => format!("{prev}; {note}"),
                        None => note,
                    });
                }
            }
            m
        }),
        signal_sent: None,
        observed_within_ms: None,
        deadline_reached: obs.deadline_reached,
        compression: if status.state == State::Created {
            None
        } else {
            crate::output::views::compress(&budget.compress, &spec.argv, &stdout_path, &stderr_path)
        },
    }
}

/// The process exit status for `--exit-status`, like timeout(1).
pub fn exit_status_of(status: &JobStatus) -> Option<i32> {
    let o = status.outcome.as_ref()?;
    Some(match o.result {
        ResultKind::Success => 0,
        ResultKind::ExitCode => o.exit_code.unwrap_or(1),
        ResultKind::Timeout => 124,
        ResultKind::LaunchFailed => o.exit_code.unwrap_or(125),
        ResultKind::Lost => 125,
        ResultKind::Signal | ResultKind::Oom | ResultKind::Killed => match (&o.signal, o.exit_code)
        {
            (Some(sig), _) => 128 + signal_number(sig),
            (None, Some(code)) => code,
            (None, None) => 125,
        },
    })
}

fn signal_number(name: &str) -> i32 {
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .unwrap_or(0)
}

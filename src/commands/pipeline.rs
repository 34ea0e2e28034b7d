//! `pipeline run` and `pipeline validate`: the CLI side of [`crate::pipeline`].
//!
//! `run` validates first (all problems in one `pipeline_invalid` error), then runs the
//! phases with [`StoreRunner`] against the same job store as every other command. The
//! report is printed once, at the end, even when SIGINT/SIGTERM/SIGHUP stopped the run:
//! those signals only raise a flag the scheduler polls, which then stops every running
//! job's cgroup and marks its command interrupted.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::Reply;
use crate::cli::PipelineRunArgs;
use crate::job::model::new_job_id;
use crate::job::store::Store;
use crate::pipeline::{
    run_pipeline, validate as validate_file, PipelineError, ProgressEvent, RunOptions, StoreRunner,
    ValidatedPipeline,
};
use crate::response::{
    AppError, Const, ErrorCode, Location, PipelineResponse, PipelineType,
    PipelineValidationResponse, PipelineValidationType, Problem, SchemaVersion,
};

/// Directory under the store root holding one directory per pipeline run. Its name is
/// not a job id (32 hex), so job listings never see it.
pub const PIPELINES_DIR: &str = "pipelines";

/// Raised by the signal handler; polled by the scheduler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is async-signal-safe; everything else happens on normal threads.
    STOP.store(true, Ordering::SeqCst);
}

pub fn validate(file: &Path) -> Result<Reply, AppError> {
    let p = checked(file)?;
    Ok(Reply::json(&PipelineValidationResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: PipelineValidationType::PipelineValidation,
        file: p.file.clone(),
        phases: p.phases.len(),
        commands: p.command_count(),
        order: p.phases.iter().map(|ph| ph.name.clone()).collect(),
    }))
}

pub fn run(store: &Store, args: &PipelineRunArgs) -> Result<Reply, AppError> {
    let max_parallel = args
        .max_parallel
        .as_deref()
        .map(|s| super::request::positive("--max-parallel", s).map(|n| n as usize))
        .transpose()?;
    let mut p = checked(&args.file)?;
    if let Some(policy) = &args.policy {
        p.policy = Some(policy.clone());
    }
    install_stop_handlers()?;

    let run_id = new_job_id();
    let runner = StoreRunner::new(store);
    let progress = |event: &ProgressEvent| {
        // stderr may be gone (closed terminal): progress is best effort.
        let _ = writeln!(std::io::stderr().lock(), "{event}");
    };
    let opts = RunOptions {
        run_id: run_id.clone(),
        max_parallel,
        run_dir: Some(store.root().join(PIPELINES_DIR).join(&run_id)),
        progress: Some(&progress),
    };
    let report = run_pipeline(&p, &runner, &opts, &STOP);
    // The rule: success only when every phase passed (an interrupt never does).
    let exit_code = if report.all_passed && !report.interrupted {
        0
    } else {
        1
    };
    let mut reply = Reply::json(&PipelineResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: PipelineType::Pipeline,
        report,
    });
    reply.exit_code = exit_code;
    Ok(reply)
}

/// The validated pipeline, or one `pipeline_invalid` error listing every problem.
fn checked(file: &Path) -> Result<ValidatedPipeline, AppError> {
    validate_file(file).map_err(invalid)
}

fn invalid(errors: Vec<PipelineError>) -> AppError {
    let first = errors.first().map(|e| e.to_string()).unwrap_or_default();
    let message = match errors.len() {
        1 => first,
        n => format!("{n} problems in the pipeline file; the first: {first}"),
    };
    let mut e = AppError::new(ErrorCode::PipelineInvalid, message);
    e.location = errors.first().filter(|e| e.line > 0).map(|e| Location {
        file: e.file.clone(),
        line: e.line as usize,
        column: e.column as usize,
        field: None,
    });
    e.errors = Some(
        errors
            .into_iter()
            .map(|e| Problem {
                code: e.code.as_str().to_string(),
                message: e.message,
                file: e.file,
                line: e.line as usize,
                column: e.column as usize,
            })
            .collect(),
    );
    e
}

/// SIGINT, SIGTERM and SIGHUP (the terminal went away) stop the run instead of killing
/// this process: the jobs live in their own sessions and would otherwise run on
/// unobserved, and the report would never be printed.
fn install_stop_handlers() -> Result<(), AppError> {
    let action = SigAction::new(
        SigHandler::Handler(request_stop),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(signal, &action) }.map_err(|e| {
            AppError::new(
                ErrorCode::Internal,
                format!("cannot install the {signal} handler: {e}"),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::validate_str;

    #[test]
    fn every_problem_becomes_one_error_with_the_first_location() {
        let errors = validate_str(
            "p.yaml",
            "phases:\n  - name: a\n    agent: hug\n  - name: a\n    agent: exec\n    commands: [{name: x, run: 'true'}]\n",
        )
        .unwrap_err();
        assert!(errors.len() >= 2, "{errors:#?}");
        let e = invalid(errors.clone());
        assert_eq!(e.code, ErrorCode::PipelineInvalid);
        let problems = e.errors.as_ref().unwrap();
        assert_eq!(problems.len(), errors.len());
        assert_eq!(problems[0].code, errors[0].code.as_str());
        assert_eq!(problems[0].line, errors[0].line as usize);
        let loc = e.location.unwrap();
        assert_eq!(
            (loc.line, loc.column),
            (problems[0].line, problems[0].column)
        );
        assert!(e.message.contains("problems"), "{}", e.message);
    }

    #[test]
    fn an_unreadable_file_has_no_location() {
        let dir = tempfile::tempdir().unwrap();
        let e = checked(&dir.path().join("missing.yaml")).unwrap_err();
        assert_eq!(e.code, ErrorCode::PipelineInvalid);
        assert!(e.location.is_none());
        assert_eq!(e.errors.unwrap()[0].code, "io");
    }
}

//! `run_pipeline`: phases as a DAG of threads, commands of a phase in order.
//!
//! The main thread owns all bookkeeping; each running phase gets one scoped thread
//! that makes blocking `run_command` calls and sends its report back over a channel.
//! At most `max_parallel` phases run at once. Skips propagate from escalated phases to
//! everything downstream; an interrupt stops new commands, calls `cancel_all` once,
//! and lets running phases report their interrupted commands.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::files::{handoff_path, report_path, write_json_atomic};
use super::handoff::{CommandResult, Handoff};
use super::model::{Phase, ValidatedPipeline};
use super::progress::ProgressEvent;
use super::references::substitute;
use super::report::{PhaseReport, PhaseStatus, PipelineReport, Totals};
use super::runner::{CommandOutcome, CommandRequest, JobRunner};
use crate::timefmt::{now_ms, rfc3339};

/// How often the scheduler looks at the interrupt flag while phases run.
const INTERRUPT_POLL: Duration = Duration::from_millis(20);

/// Reason given to everything that did not start because of an interrupt.
pub const INTERRUPTED: &str = "interrupted";

/// Knobs of one run.
#[derive(Clone, Default)]
pub struct RunOptions<'a> {
    /// Identifier of this run (the CLI uses a job-id-like 32-hex string).
    pub run_id: String,
    /// Overrides the file's `max_parallel`; default is the number of CPUs.
    pub max_parallel: Option<usize>,
    /// Where `handoff/<phase>.json` and `pipeline.json` are written; nothing is
    /// written when `None`.
    pub run_dir: Option<PathBuf>,
    /// Receives progress events (from several threads).
    pub progress: Option<&'a (dyn Fn(&ProgressEvent) + Sync)>,
}

impl RunOptions<'_> {
    fn emit(&self, event: ProgressEvent) {
        if let Some(sink) = self.progress {
            sink(&event);
        }
    }
}

enum Slot {
    Pending,
    Running,
    Done(Box<PhaseReport>),
}

/// Runs a validated pipeline to the end (or to the interrupt) and returns the report.
/// Handoffs are written as phases finish, `pipeline.json` at the end (when `run_dir`).
pub fn run_pipeline(
    p: &ValidatedPipeline,
    runner: &dyn JobRunner,
    opts: &RunOptions<'_>,
    interrupted: &AtomicBool,
) -> PipelineReport {
    let started = Instant::now();
    let started_at = rfc3339(now_ms());
    let index: BTreeMap<&str, usize> = p
        .phases
        .iter()
        .enumerate()
        .map(|(i, ph)| (ph.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = p
        .phases
        .iter()
        .map(|ph| {
            ph.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let max_parallel = opts
        .max_parallel
        .or(p.max_parallel)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let mut slots: Vec<Slot> = p.phases.iter().map(|_| Slot::Pending).collect();
    let mut warnings = Vec::new();
    let mut cancelled = false;

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, PhaseReport)>();
        let mut running = 0usize;
        loop {
            if !cancelled && interrupted.load(Ordering::SeqCst) {
                cancelled = true;
                runner.cancel_all();
            }
            settle_skips(p, &deps, &mut slots, cancelled, opts);
            if !cancelled {
                for i in 0..p.phases.len() {
                    if running >= max_parallel {
                        break;
                    }
                    if !matches!(slots[i], Slot::Pending)
                        || !deps[i].iter().all(|&d| done(&slots[d]))
                    {
                        continue;
                    }
                    slots[i] = Slot::Running;
                    running += 1;
                    let handoffs = upstream_handoffs(p, &slots);
                    let tx = tx.clone();
                    let phase = &p.phases[i];
                    scope.spawn(move || {
                        let report = run_phase(p, phase, runner, opts, interrupted, &handoffs);
                        // The receiver outlives every phase thread (same scope).
                        let _ = tx.send((i, report));
                    });
                }
            }
            if running == 0 {
                break;
            }
            match rx.recv_timeout(INTERRUPT_POLL) {
                Ok((i, mut report)) => {
                    running -= 1;
                    if let (Some(dir), Some(h)) = (&opts.run_dir, &report.handoff) {
                        let path = handoff_path(dir, &report.name);
                        match write_json_atomic(&path, h) {
                            Ok(()) => report.handoff_path = Some(path.display().to_string()),
                            Err(e) => warnings.push(e),
                        }
                    }
                    slots[i] = Slot::Done(Box::new(report));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Unreachable while `tx` lives here; stop rather than spin if it happens.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });

    let phases: Vec<PhaseReport> = slots
        .into_iter()
        .zip(&p.phases)
        .map(|(slot, phase)| match slot {
            Slot::Done(r) => *r,
            // Only reachable if the loop stopped early; report instead of hiding the phase.
            Slot::Pending | Slot::Running => skipped_report(phase, INTERRUPTED.to_string()),
        })
        .collect();
    let totals = Totals::of(&phases, |name| {
        p.phase(name).map_or(0, |ph| ph.commands.len())
    });
    let mut report = PipelineReport {
        file: p.file.clone(),
        run_id: opts.run_id.clone(),
        all_passed: phases.iter().all(|r| r.status == PhaseStatus::Passed),
        interrupted: cancelled,
        started_at,
        finished_at: rfc3339(now_ms()),
        duration_ms: millis(started.elapsed()),
        totals,
        phases,
        run_dir: opts.run_dir.as_ref().map(|d| d.display().to_string()),
        warnings,
    };
    if let Some(dir) = &opts.run_dir {
        if let Err(e) = write_json_atomic(&report_path(dir), &report) {
            report.warnings.push(e);
        }
    }
    report
}

fn done(slot: &Slot) -> bool {
    matches!(slot, Slot::Done(_))
}

/// Marks pending phases skipped when an upstream phase escalated or was skipped, or
/// every pending phase once the run is interrupted. Repeats until nothing changes so
/// skips travel down whole chains at once.
fn settle_skips(
    p: &ValidatedPipeline,
    deps: &[Vec<usize>],
    slots: &mut [Slot],
    cancelled: bool,
    opts: &RunOptions<'_>,
) {
    loop {
        let mut changed = false;
        for i in 0..slots.len() {
            if !matches!(slots[i], Slot::Pending) {
                continue;
            }
            let reason = if cancelled {
                Some(INTERRUPTED.to_string())
            } else {
                deps[i].iter().find_map(|&d| match &slots[d] {
                    Slot::Done(r) if r.status == PhaseStatus::Escalated => {
                        Some(format!("upstream phase {:?} escalated", r.name))
                    }
                    Slot::Done(r) if r.status == PhaseStatus::Skipped => r.reason.clone(),
                    _ => None,
                })
            };
            if let Some(reason) = reason {
                let phase = &p.phases[i];
                opts.emit(ProgressEvent::PhaseSkipped {
                    phase: phase.name.clone(),
                    reason: reason.clone(),
                });
                slots[i] = Slot::Done(Box::new(skipped_report(phase, reason)));
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// Handoffs of every finished phase, as JSON, for reference substitution.
fn upstream_handoffs(p: &ValidatedPipeline, slots: &[Slot]) -> BTreeMap<String, serde_json::Value> {
    slots
        .iter()
        .zip(&p.phases)
        .filter_map(|(slot, phase)| match slot {
            Slot::Done(r) => r
                .handoff
                .as_ref()
                .map(|h| (phase.name.clone(), h.to_value())),
            _ => None,
        })
        .collect()
}

fn skipped_report(phase: &Phase, reason: String) -> PhaseReport {
    PhaseReport {
        name: phase.name.clone(),
        phase_type: phase.phase_type.clone(),
        depends_on: phase.depends_on.clone(),
        status: PhaseStatus::Skipped,
        reason: Some(reason),
        started_at: None,
        finished_at: None,
        duration_ms: 0,
        handoff: None,
        handoff_path: None,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the commands of one phase in order (on the phase's own thread).
fn run_phase(
    p: &ValidatedPipeline,
    phase: &Phase,
    runner: &dyn JobRunner,
    opts: &RunOptions<'_>,
    interrupted: &AtomicBool,
    handoffs: &BTreeMap<String, serde_json::Value>,
) -> PhaseReport {
    let started = Instant::now();
    let started_at = rfc3339(now_ms());
    opts.emit(ProgressEvent::PhaseStarted {
        phase: phase.name.clone(),
    });
    let mut results: Vec<CommandResult> = Vec::with_capacity(phase.commands.len());
    let mut escalated_by: Option<String> = None;
    let mut stopped = false;
    for (k, cmd) in phase.commands.iter().enumerate() {
        if let Some(culprit) = &escalated_by {
            let why = format!("command {culprit:?} failed with escalate_on_fail");
            results.push(CommandResult::skipped(&cmd.name, &why));
            continue;
        }
        if stopped || interrupted.load(Ordering::SeqCst) {
            stopped = true;
            results.push(CommandResult::skipped(&cmd.name, INTERRUPTED));
            continue;
        }
        opts.emit(ProgressEvent::CommandStarted {
            phase: phase.name.clone(),
            command: cmd.name.clone(),
            number: k + 1,
            of: phase.commands.len(),
        });
        let t0 = Instant::now();
        let result = match substitute(&cmd.run, &cmd.references, handoffs) {
            Err(e) => CommandResult::not_run(&cmd.name, e.to_string(), 0),
            Ok(run) => {
                let mut env = phase.env.clone();
                env.extend(cmd.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let req = CommandRequest {
                    run_id: opts.run_id.clone(),
                    phase: phase.name.clone(),
                    name: cmd.name.clone(),
                    index: k,
                    run,
                    policy: cmd
                        .policy
                        .clone()
                        .or_else(|| phase.policy.clone())
                        .or_else(|| p.policy.clone()),
                    timeout: cmd.timeout.or(phase.timeout),
                    env,
                    cwd: cmd.cwd.clone().or_else(|| phase.cwd.clone()),
                };
                match catch_unwind(AssertUnwindSafe(|| runner.run_command(&req))) {
                    Ok(Ok(outcome)) => {
                        from_outcome(&cmd.name, outcome, interrupted.load(Ordering::SeqCst))
                    }
                    Ok(Err(message)) => {
                        CommandResult::not_run(&cmd.name, message, millis(t0.elapsed()))
                    }
                    Err(_) => CommandResult::not_run(
                        &cmd.name,
                        "the job runner panicked".to_string(),
                        millis(t0.elapsed()),
                    ),
                }
            }
        };
        opts.emit(ProgressEvent::CommandFinished {
            phase: phase.name.clone(),
            result: result.clone(),
        });
        if result.interrupted {
            stopped = true;
        } else if !result.pass && cmd.escalate_on_fail {
            escalated_by = Some(cmd.name.clone());
        }
        results.push(result);
    }
    let duration_ms = millis(started.elapsed());
    if results.iter().all(|r| r.skipped) {
        // Interrupted before its first command: nothing ran, nothing to hand on.
        opts.emit(ProgressEvent::PhaseSkipped {
            phase: phase.name.clone(),
            reason: INTERRUPTED.to_string(),
        });
        return skipped_report(phase, INTERRUPTED.to_string());
    }
    let handoff = Handoff::from_results(results);
    let (status, reason) = if let Some(culprit) = escalated_by {
        (
            PhaseStatus::Escalated,
            Some(format!("command {culprit:?} failed with escalate_on_fail")),
        )
    } else if stopped {
        (PhaseStatus::Failed, Some(INTERRUPTED.to_string()))
    } else if handoff.data.failed > 0 {
        (PhaseStatus::Failed, None)
    } else {
        (PhaseStatus::Passed, None)
    };
    opts.emit(ProgressEvent::PhaseFinished {
        phase: phase.name.clone(),
        status,
        duration_ms,
    });
    PhaseReport {
        name: phase.name.clone(),
        phase_type: phase.phase_type.clone(),
        depends_on: phase.depends_on.clone(),
        status,
        reason,
        started_at: Some(started_at),
        finished_at: Some(rfc3339(now_ms())),
        duration_ms,
        handoff: Some(handoff),
        handoff_path: None,
    }
}

/// A finished job as a handoff result. A job that failed while the run was being
/// interrupted counts as interrupted even if the runner did not say so.
fn from_outcome(name: &str, o: CommandOutcome, interrupt_seen: bool) -> CommandResult {
    let clean_exit = o.exit_code == Some(0) && !o.timed_out && o.signal.is_none();
    let interrupted = o.interrupted || (interrupt_seen && !clean_exit);
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    CommandResult {
        name: name.to_string(),
        pass: clean_exit && !interrupted,
        exit_code: o.exit_code,
        duration_ms: o.duration_ms,
        job_id: nonempty(o.job_id),
        signal: o.signal,
        timed_out: o.timed_out,
        interrupted,
        skipped: false,
        reason: None,
        stdout_log_path: nonempty(o.stdout_log_path),
        stderr_log_path: nonempty(o.stderr_log_path),
        resources: (!o.resources.is_null()).then_some(o.resources),
    }
}

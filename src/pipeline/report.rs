//! What `run_pipeline` returns (and writes to `<run_dir>/pipeline.json`).
//!
//! The lead wraps it in the response envelope, which adds `type: "pipeline"`.

use schemars::JsonSchema;
use serde::Serialize;

use super::handoff::Handoff;

/// Outcome of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    /// Every command passed.
    Passed,
    /// Some command failed (or was interrupted); the phase ran to its end.
    Failed,
    /// A command with `escalate_on_fail: true` failed: the phase stopped there and every
    /// phase depending on it (transitively) is skipped.
    Escalated,
    /// Never started: an upstream phase escalated or the pipeline was interrupted.
    Skipped,
}

impl PhaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseStatus::Passed => "passed",
            PhaseStatus::Failed => "failed",
            PhaseStatus::Escalated => "escalated",
            PhaseStatus::Skipped => "skipped",
        }
    }
}

/// One phase in the report.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PhaseReport {
    pub name: String,
    #[serde(rename = "type")]
    pub phase_type: String,
    pub depends_on: Vec<String>,
    pub status: PhaseStatus,
    /// Why it was skipped, which command escalated, or `"interrupted"`.
    pub reason: Option<String>,
    /// RFC 3339 UTC; null when the phase never started.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: u64,
    /// The seed's handoff; null for a skipped phase (it has no results to hand on).
    pub handoff: Option<Handoff>,
    /// Where the handoff was written (`<run_dir>/handoff/<phase>.json`), if it was.
    pub handoff_path: Option<String>,
}

/// Counts over the whole run. Command counts follow the handoff rules: `commands` are
/// those attempted, `failed` those attempted that did not pass, `skipped` those never
/// started (including every command of a skipped phase).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Totals {
    pub phases: usize,
    pub phases_passed: usize,
    pub phases_failed: usize,
    pub phases_escalated: usize,
    pub phases_skipped: usize,
    pub commands: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// Result of `pipeline run`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PipelineReport {
    pub file: String,
    pub run_id: String,
    /// Every phase passed.
    pub all_passed: bool,
    /// SIGINT/SIGTERM stopped the run early.
    pub interrupted: bool,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub totals: Totals,
    /// Phases in topological order (dependencies first).
    pub phases: Vec<PhaseReport>,
    /// Directory holding `pipeline.json` and `handoff/`, when one was given.
    pub run_dir: Option<String>,
    /// Problems that did not stop the run (e.g. a handoff file that could not be written).
    pub warnings: Vec<String>,
}

impl Totals {
    /// Counts phases by status and commands by outcome.
    pub fn of(phases: &[PhaseReport], commands_in: impl Fn(&str) -> usize) -> Totals {
        let mut t = Totals {
            phases: phases.len(),
            ..Totals::default()
        };
        for p in phases {
            match p.status {
                PhaseStatus::Passed => t.phases_passed += 1,
                PhaseStatus::Failed => t.phases_failed += 1,
                PhaseStatus::Escalated => t.phases_escalated += 1,
                PhaseStatus::Skipped => t.phases_skipped += 1,
            }
            match &p.handoff {
                Some(h) => {
                    t.commands += h.data.total;
                    t.failed += h.data.failed;
                    t.skipped += h.data.results.len() - h.data.total;
                }
                None => t.skipped += commands_in(&p.name),
            }
        }
        t
    }
}

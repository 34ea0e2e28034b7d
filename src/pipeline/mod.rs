//! Pipelines (seed 001): YAML files of `exec` phases run as a DAG of sandboxed jobs,
//! each phase handing the seed's `{data, text}` result to the phases after it.
//!
//! Flow: [`validate`] (YAML → checked [`ValidatedPipeline`], or every [`PipelineError`])
//! → [`run_pipeline`] (scheduler; each command through a [`JobRunner`]) →
//! [`PipelineReport`] with one [`Handoff`] per phase.

mod dag;
mod error;
mod files;
mod handoff;
mod jobs;
mod model;
mod parse;
mod progress;
mod references;
mod report;
mod runner;
mod scheduler;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use error::{ErrorCode, PipelineError};
pub use files::{handoff_path, report_path};
pub use handoff::{CommandResult, Handoff, HandoffData};
pub use jobs::{StoreRunner, INTERRUPT_GRACE};
pub use model::{Command, Phase, ValidatedPipeline};
pub use progress::ProgressEvent;
pub use references::{Reference, ReferenceError};
pub use report::{PhaseReport, PhaseStatus, PipelineReport, Totals};
pub use runner::{CommandOutcome, CommandRequest, JobRunner};
pub use scheduler::{run_pipeline, RunOptions, INTERRUPTED};
pub use validate::{validate, validate_str};

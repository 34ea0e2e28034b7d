//! The validated pipeline: what `validate` hands to `run_pipeline`.
//!
//! Only `exec` phases exist here (anything else is a validation error), phases are in
//! topological order, and every `$(handoff.…)` reference is known to point upstream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::references::Reference;

/// A pipeline file that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPipeline {
    /// The path as given to `validate` (shown in reports and messages).
    pub file: String,
    /// Top-level default policy for every command (`policy:`), overridden per phase/command.
    pub policy: Option<String>,
    /// Bound on concurrently running phases from the file (`max_parallel:`).
    pub max_parallel: Option<usize>,
    /// Phases in topological order (dependencies first; file order among independent ones).
    pub phases: Vec<Phase>,
}

/// One `agent: exec` phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: String,
    /// `type:`; the seed's default is `standard`. Carried into the report, no behaviour.
    pub phase_type: String,
    /// Direct dependencies, deduplicated, in the order written.
    pub depends_on: Vec<String>,
    pub commands: Vec<Command>,
    pub policy: Option<String>,
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Line of the phase's `name:` key, for messages that point back into the file.
    pub line: u32,
}

/// One entry of a phase's `commands:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    /// Shell command line, run through `sh -c` inside the sandbox (after substitution).
    pub run: String,
    pub escalate_on_fail: bool,
    pub policy: Option<String>,
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// The `$(handoff.…)` references found in `run`, in order of appearance.
    pub references: Vec<Reference>,
    pub line: u32,
}

impl ValidatedPipeline {
    /// Looks a phase up by name.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Number of commands over all phases.
    pub fn command_count(&self) -> usize {
        self.phases.iter().map(|p| p.commands.len()).sum()
    }
}

//! Progress events, one per command start/end and per phase transition.
//!
//! The caller picks the sink (stderr lines for the CLI, nothing for tests); the
//! `Display` form is the one-line text meant for a terminal.

use std::fmt;

use super::handoff::CommandResult;
use super::report::PhaseStatus;

/// Something happened in the run. Emitted from the phase's own thread.
#[derive(Debug, Clone, PartialEq)]
pub enum ProgressEvent {
    PhaseStarted {
        phase: String,
    },
    CommandStarted {
        phase: String,
        command: String,
        /// 1-based position and count, for "2/5".
        number: usize,
        of: usize,
    },
    CommandFinished {
        phase: String,
        result: CommandResult,
    },
    PhaseFinished {
        phase: String,
        status: PhaseStatus,
        duration_ms: u64,
    },
    PhaseSkipped {
        phase: String,
        reason: String,
    },
}

impl fmt::Display for ProgressEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProgressEvent::PhaseStarted { phase } => write!(f, "[{phase}] phase started"),
            ProgressEvent::CommandStarted {
                phase,
                command,
                number,
                of,
            } => write!(f, "[{phase}] ▶ {command} ({number}/{of})"),
            ProgressEvent::CommandFinished { phase, result } => {
                write!(f, "[{phase}] {}", result.text_line())
            }
            ProgressEvent::PhaseFinished {
                phase,
                status,
                duration_ms,
            } => write!(f, "[{phase}] phase {} ({duration_ms}ms)", status.as_str()),
            ProgressEvent::PhaseSkipped { phase, reason } => {
                write!(f, "[{phase}] phase skipped: {reason}")
            }
        }
    }
}

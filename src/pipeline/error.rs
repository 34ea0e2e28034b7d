//! Validation errors: every problem in a pipeline file, with the place to fix it.

use std::fmt;

use schemars::JsonSchema;
use serde::Serialize;

/// Stable machine-readable category of a [`PipelineError`]; the lead maps these into
/// the CLI's error envelope, so the spelling (snake_case) is part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The file could not be read.
    Io,
    /// The text is not well-formed YAML (includes duplicate mapping keys).
    YamlSyntax,
    /// A key the pipeline format does not know (typo or unsupported feature).
    UnknownKey,
    /// A required key is absent.
    MissingField,
    /// A value has the wrong YAML type (e.g. a list where a string belongs).
    InvalidType,
    /// A value has the right type but is not acceptable (bad duration, zero, empty).
    InvalidValue,
    /// A phase name that cannot be used in references or as a file name.
    InvalidName,
    /// Two phases share a name.
    DuplicatePhase,
    /// Two commands of one phase share a name.
    DuplicateCommand,
    /// `depends_on` names no phase of the file.
    UnknownDependency,
    /// `depends_on` edges form a cycle.
    DependencyCycle,
    /// The phase's agent is not `exec`.
    UnsupportedAgent,
    /// An exec phase without any command.
    MissingCommands,
    /// A `$(handoff.…)` reference that is not well-formed.
    BadReference,
    /// A `$(handoff.PHASE.…)` reference to a phase that does not exist.
    UnknownPhaseReference,
    /// A `$(handoff.PHASE.…)` reference to a phase that is not upstream (an ancestor).
    ReferenceNotUpstream,
}

impl ErrorCode {
    /// The serialized spelling, for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Io => "io",
            ErrorCode::YamlSyntax => "yaml_syntax",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidType => "invalid_type",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::DuplicatePhase => "duplicate_phase",
            ErrorCode::DuplicateCommand => "duplicate_command",
            ErrorCode::UnknownDependency => "unknown_dependency",
            ErrorCode::DependencyCycle => "dependency_cycle",
            ErrorCode::UnsupportedAgent => "unsupported_agent",
            ErrorCode::MissingCommands => "missing_commands",
            ErrorCode::BadReference => "bad_reference",
            ErrorCode::UnknownPhaseReference => "unknown_phase_reference",
            ErrorCode::ReferenceNotUpstream => "reference_not_upstream",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in a pipeline file. `line`/`column` are 1-based character positions;
/// both are 0 only when the problem concerns the file as a whole (it could not be read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct PipelineError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for PipelineError {}

//! Everything about the job's output: the pump into logs, masking, excerpts.

pub mod excerpt;
pub mod mask;
pub mod pump;

use serde::{Deserialize, Serialize};

/// What became of one of the job's output streams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamStats {
    /// Bytes the job wrote to the stream.
    pub total_bytes: u64,
    /// Bytes kept in the log (after masking, up to the cap).
    pub log_bytes: u64,
    /// The per-log cap was hit: the log holds only the first `log_bytes`.
    pub log_truncated: bool,
    /// Why the log could not be written, if it could not (disk full, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

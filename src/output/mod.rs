//! Everything about the job's output: the pump into logs, masking, excerpts.

pub mod excerpt;
pub mod mask;
pub mod pump;
pub mod views;

use serde::{Deserialize, Serialize};

/// The middle of a stream that a capped log left out.
#[derive(
    Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema,
)]
pub struct Omitted {
    /// Offset in the log of the marker line that stands for them.
    pub at: u64,
    /// How many bytes of the stream (after masking) are not in the log.
    pub bytes: u64,
}

impl StreamStats {
    /// Whether the log misses bytes the job wrote (records of earlier
    /// versions left the flag off when a write failed).
    pub fn truncated(&self) -> bool {
        self.log_truncated || self.log_error.is_some()
    }

    /// Why: `cap` or `write_error` (disk full and the like).
    pub fn truncated_by(&self) -> Option<&'static str> {
        if self.log_error.is_some() {
            Some("write_error")
        } else if self.log_truncated {
            Some("cap")
        } else {
            None
        }
    }
}

/// What became of one of the job's output streams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamStats {
    /// Bytes the job wrote to the stream.
    pub total_bytes: u64,
    /// Bytes kept in the log (after masking, up to the cap).
    pub log_bytes: u64,
    /// The log does not hold every byte the job wrote (the cap was hit, or
    /// a write failed: `log_error` then says why).
    pub log_truncated: bool,
    /// Past the cap, the log keeps its head and its tail: the bytes left out
    /// between them, and where in the log the marker saying so stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_omitted: Option<Omitted>,
    /// Why the log could not be written, if it could not (disk full, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_error: Option<String>,
}

//! Everything about the job's output: the pump into logs, masking, excerpts.

pub mod excerpt;
pub mod mask;
pub mod pump;
mod writer;

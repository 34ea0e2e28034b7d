//! `agent-exec doctor`: what this host can enforce.
//!
//! `probe` looks at the kernel's sandboxing features without side effects beyond
//! short-lived forked children.

pub mod identity;
pub mod probe;
pub mod report;

//! agent-exec: every command a durable background job in a real sandbox,
//! every answer one JSON object.
//!
//! Data flows one way: [`cli`] → [`commands`] → [`policy`] → [`job`]
//! (definition, store) → [`supervisor`] → [`sandbox`] → kernel; results
//! flow back through the store. `docs/architecture.md` walks through it.

// AppError carries the whole JSON error (candidates, location, …); it is
// built once per failed request, so its size on the error path is irrelevant.
#![allow(clippy::result_large_err)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod diag;
pub mod doctor;
pub mod frontends;
pub mod job;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod response;
pub mod sandbox;
pub mod supervisor;
pub mod timefmt;
pub mod units;

//! The front ends besides the CLI: an MCP server and an HTTP API, over
//! the same operations, each run as a child `agent-exec`.

pub mod mcp;
pub mod operations;
mod own_cli;
pub mod serve;

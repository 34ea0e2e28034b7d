//! `agent-exec mcp`: the operations as an MCP server over stdio (rmcp).
//!
//! stdout carries the protocol and nothing else; diagnostics go to stderr.
//! Every tool answers with the CLI's own JSON object, as structured content
//! and as text, and marks it an error when the CLI's `ok` is false. Closing
//! the transport ends the server, never a job: jobs belong to their
//! supervisors, which left this process's session when they started.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerInfo, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, ServiceExt};
use serde_json::{json, Value};

use super::operations::{self, UntilBounds};
use super::own_cli::{failure, Answer, OwnCli};
use crate::response::ErrorCode;

const INSTRUCTIONS: &str = "Every command runs as a durable background job in a sandbox \
(policy `default` unless you pick another). Call `run` with the command as a list of words; \
it answers within `until` seconds (capped below this client's request deadline) with the \
job's state and bounded excerpts of its output. A job still running keeps running: follow it \
with `wait` and `tail`, stop it with `kill`. Answers are the agent-exec CLI's JSON objects.";

/// Serves until the client closes stdin. Returns the exit code.
pub fn serve(root: Option<std::path::PathBuf>) -> i32 {
    let bounds = match UntilBounds::from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("agent-exec mcp: {e}");
            return 1;
        }
    };
    let cli = match OwnCli::new(root) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("agent-exec mcp: cannot find its own binary: {e}");
            return 1;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agent-exec mcp: cannot start: {e}");
            return 1;
        }
    };
    let server = Server {
        cli,
        bounds,
        tools: Arc::new(tools()),
    };
    runtime.block_on(async move {
        match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => {
                let _ = running.waiting().await;
                0
            }
            Err(e) => {
                eprintln!("agent-exec mcp: {e}");
                1
            }
        }
    })
}

#[derive(Clone)]
struct Server {
    cli: OwnCli,
    bounds: UntilBounds,
    tools: Arc<Vec<Tool>>,
}

impl Server {
    async fn call(&self, name: &str, arguments: Value) -> Answer {
        let invocation = match name {
            "run" => operations::decode::<operations::Run>(arguments)
                .and_then(|r| r.invocation(&self.bounds)),
            "status" => operations::decode::<operations::Status>(arguments).map(|r| r.invocation()),
            "tail" => operations::decode::<operations::Tail>(arguments).map(|r| r.invocation()),
            "wait" => operations::decode::<operations::Wait>(arguments)
                .map(|r| r.invocation(&self.bounds)),
            "kill" => {
                operations::decode::<operations::Kill>(arguments).and_then(|r| r.invocation())
            }
            "list" => operations::decode::<operations::List>(arguments).map(|r| r.invocation()),
            "pipeline_run" => {
                operations::decode::<operations::PipelineRun>(arguments).map(|r| r.invocation())
            }
            "pipeline_validate" => operations::decode::<operations::PipelineValidate>(arguments)
                .map(|r| r.invocation()),
            other => Err(format!("no tool named {other:?}")),
        };
        match invocation {
            Ok(inv) => self.cli.call(&inv).await,
            Err(message) => failure(ErrorCode::InvalidArgument, message),
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerInfo {
        ServerInfo::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("agent-exec", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let answer = self.call(&request.name, arguments).await;
        Ok(if answer.ok {
            CallToolResult::structured(answer.json)
        } else {
            CallToolResult::structured_error(answer.json)
        })
    }
}

/// The tools and their argument schemas.
fn tools() -> Vec<Tool> {
    let strings = |description: &str| json!({"type": "array", "items": {"type": "string"}, "description": description});
    let duration =
        |description: &str| json!({"type": ["number", "string"], "description": description});
    let size =
        |description: &str| json!({"type": ["integer", "string"], "description": description});
    let job_id =
        json!({"type": "string", "description": "A job id or an unambiguous prefix of one."});
    let until = |default: &str| json!({"type": "number", "minimum": 0, "description": format!("Seconds to observe before answering (default {default}; capped by AGENT_EXEC_MCP_MAX_UNTIL_SECONDS, 50 unless set). The job keeps running when it passes.")});
    let schema = |properties: Value, required: &[&str]| -> serde_json::Map<String, Value> {
        let v = json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        });
        match v {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    };
    vec![
        Tool::new(
            "run",
            "Run a command as a sandboxed background job and observe it for up to `until` seconds. \
             Answers with its state, exit code once it ended, and bounded excerpts of its output.",
            schema(
                json!({
                    "command": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "description": "The program and its arguments; a single element runs as `sh -c`."},
                    "cwd": {"type": "string", "description": "Working directory (default: the server's)."},
                    "env": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Environment variables to set."},
                    "timeout": duration("Hard limit: seconds, or a duration such as 90s or 5m (the whole job is stopped)."),
                    "kill_after": duration("After the timeout's SIGTERM, wait this long, then kill."),
                    "until": until("10"),
                    "no_wait": {"type": "boolean", "description": "Answer as soon as the job has started."},
                    "wait": {"type": "boolean", "description": "false: the same as no_wait."},
                    "stdin": {"type": "string", "description": "Text given to the job on its stdin."},
                    "tags": strings("Tags for the job."),
                    "mask": strings("Secrets to hide in answers and logs: env keys or literal texts."),
                    "policy": {"type": "string", "description": "Sandbox policy: default, untrusted, ci, permissive, or a host policy."},
                    "net": {"type": "string", "enum": ["none", "loopback", "proxy", "host"],
                        "description": "Network, if the policy lets a request loosen it."},
                    "allow_domain": strings("Hosts the job may reach through its proxy (implies net proxy)."),
                    "allow_read": strings("Paths the job may also read (if the policy allows)."),
                    "allow_write": strings("Paths the job may also write (if the policy allows)."),
                    "allow_exec": strings("Paths the job may also execute from (if the policy allows)."),
                    "memory": size("Memory limit (bytes, or 512M, 2G)."),
                    "pids": {"type": "integer", "minimum": 1, "description": "Process limit."},
                    "cpus": {"type": "number", "description": "CPU bandwidth in CPUs."},
                    "max_bytes": size("Budget of each inline output excerpt (head and tail kept)."),
                    "tail_lines": {"type": "integer", "minimum": 0, "description": "Only the last N lines in each excerpt."},
                }),
                &["command"],
            ),
        ),
        Tool::new(
            "status",
            "A job's current state; its full result once it has ended.",
            schema(json!({"job_id": job_id}), &["job_id"]),
        ),
        Tool::new(
            "tail",
            "Bounded excerpts of a job's stdout and stderr (the last lines, or from a byte offset on).",
            schema(
                json!({
                    "job_id": job_id,
                    "lines": {"type": "integer", "minimum": 0, "description": "The last N lines of each log (default 50)."},
                    "max_bytes": size("Byte budget of each excerpt (default 64K)."),
                    "offset": {"type": "integer", "minimum": 0, "description": "Read from this byte offset on; the answer gives the next one."},
                    "stream": {"type": "string", "enum": ["stdout", "stderr", "both"]},
                }),
                &["job_id"],
            ),
        ),
        Tool::new(
            "wait",
            "Observe a job until it ends or `until` seconds pass; never stops it.",
            schema(
                json!({
                    "job_id": job_id,
                    "until": until("30"),
                    "max_bytes": size("Budget of each inline output excerpt."),
                    "tail_lines": {"type": "integer", "minimum": 0},
                }),
                &["job_id"],
            ),
        ),
        Tool::new(
            "kill",
            "Signal every process of a job (TERM by default), then kill all of them after `grace`.",
            schema(
                json!({
                    "job_id": job_id,
                    "signal": {"type": "string", "description": "Signal name or number (default TERM)."},
                    "grace": duration("Then kill the whole job after this long (default 5s)."),
                    "no_wait": {"type": "boolean", "description": "Answer without waiting for the job to end."},
                }),
                &["job_id"],
            ),
        ),
        Tool::new(
            "list",
            "Jobs, newest first.",
            schema(
                json!({
                    "state": {"type": "string", "description": "created, running, exited, killed, timed_out, failed, lost or corrupt."},
                    "cwd": {"type": "string", "description": "Only jobs run in this directory."},
                    "tags": strings("Only jobs carrying every one of these tags (`ns.*` matches a namespace)."),
                    "limit": {"type": "integer", "minimum": 0},
                }),
                &[],
            ),
        ),
        Tool::new(
            "pipeline_run",
            "Run a pipeline (phases as a DAG of sandboxed jobs) to its end and answer with its report.",
            schema(
                json!({
                    "yaml": {"type": "string", "description": "The pipeline, as YAML text."},
                    "cwd": {"type": "string", "description": "Where its relative paths start (default: the server's directory)."},
                    "policy": {"type": "string", "description": "Default policy of every command."},
                    "max_parallel": {"type": "integer", "minimum": 1},
                }),
                &["yaml"],
            ),
        ),
        Tool::new(
            "pipeline_validate",
            "Check a pipeline without running it; errors name line and column.",
            schema(
                json!({"yaml": {"type": "string", "description": "The pipeline, as YAML text."}}),
                &["yaml"],
            ),
        ),
    ]
}

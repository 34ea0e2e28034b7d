//! The JSON contract: every response type, the stable error codes, and the
//! JSON Schema generated from these same types (`agent-exec schema`).
//!
//! Every response carries `schema_version`, `ok` and `type`; stdout receives
//! exactly one of them per invocation (NDJSON lines for `tail --follow`).

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize, Serializer};

use crate::job::model::{Resources, ResultKind, State};

/// The version of this contract; bumped only on incompatible changes.
pub const SCHEMA_VERSION: &str = "1";

/// Serializes as the constant `"1"`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaVersion;

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SCHEMA_VERSION)
    }
}

impl JsonSchema for SchemaVersion {
    fn schema_name() -> Cow<'static, str> {
        "SchemaVersion".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": SCHEMA_VERSION })
    }
}

/// A boolean constant in the schema (`ok` is `true` on success, `false` on error).
#[derive(Debug, Clone, Copy, Default)]
pub struct Const<const B: bool>;

impl<const B: bool> Serialize for Const<B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(B)
    }
}

impl<const B: bool> JsonSchema for Const<B> {
    fn schema_name() -> Cow<'static, str> {
        if B { "True" } else { "False" }.into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "const": B })
    }
}

/// Stable error codes: a caller may branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No job has that id or prefix.
    JobNotFound,
    /// The prefix matches several jobs (see `candidates`).
    AmbiguousJobId,
    /// The job is not in a state that allows the request.
    InvalidState,
    /// The command could not be started (not found: 127, not executable: 126).
    LaunchFailed,
    /// A flag value is invalid (bad duration, size, env file…).
    InvalidArgument,
    /// The command line could not be parsed.
    UsageError,
    /// `--stdin` input is larger than allowed.
    StdinTooLarge,
    /// `--stdin -` was given, but the caller's stdin is a terminal.
    StdinRequired,
    /// The job store is read-only or not accessible.
    StoreUnavailable,
    /// The disk holding the job store is full.
    StoreFull,
    /// Any other I/O failure.
    IoError,
    /// The kernel cannot provide a sandbox layer the policy requires.
    SandboxUnavailable,
    /// A policy or floor file is invalid.
    PolicyError,
    /// The request asks for more than the host floor allows.
    FloorViolation,
    /// A command-line override would loosen a policy that does not allow it.
    OverrideForbidden,
    /// A pipeline file is invalid.
    PipelineInvalid,
    /// The HTTP API was called without its bearer token, or with another.
    Unauthorized,
    /// A bug in agent-exec.
    Internal,
}

impl ErrorCode {
    /// Whether retrying the same request may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorCode::StoreFull | ErrorCode::IoError)
    }
}

/// A failed request.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    /// For `ambiguous_job_id`: the matching job ids.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<String>>,
    /// The job concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// For `launch_failed`: the exit status a shell would give (126 or 127).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Where the problem is (policy and pipeline errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// All problems, when there are several (pipeline validation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<Problem>>,
}

/// A position in a file (1-based).
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One problem found in a file.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Problem {
    pub code: String,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            retryable: code.retryable(),
            candidates: None,
            job_id: None,
            exit_code: None,
            location: None,
            errors: None,
        }
    }

    pub fn with_job(mut self, id: &str) -> AppError {
        self.job_id = Some(id.to_string());
        self
    }

    pub fn invalid(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::InvalidArgument, message)
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// `{"ok": false, "type": "error", "error": {...}}`
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<false>,
    #[serde(rename = "type")]
    pub kind: ErrorType,
    pub error: AppError,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    Error,
}

/// Which request produced a job response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobResponseType {
    Run,
    Create,
    Start,
    Restart,
    Status,
    Wait,
    Kill,
}

/// The state of one job, and its result once terminal (run, create, start, status, wait, kill).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: JobResponseType,
    pub job_id: String,
    pub state: State,
    /// Terminal only.
    pub result: Option<ResultKind>,
    pub exit_code: Option<i32>,
    /// Signal that ended the main process, as a name (`"SIGTERM"`).
    pub signal: Option<String>,
    pub timed_out: bool,
    pub oom_killed: bool,
    /// The command, with masked values replaced by `***`.
    pub argv: Vec<String>,
    pub cwd: String,
    pub policy: String,
    pub tags: Vec<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When the job's state was last written.
    pub updated_at: String,
    /// Run time of the job, once it has ended (`null` while it runs).
    pub duration_ms: Option<u64>,
    /// How long this request observed the job.
    pub waited_ms: u64,
    /// How long this request took, from the command's start to its answer.
    pub elapsed_ms: u64,
    /// Excerpt of stdout: head and tail within `--max-bytes`, marker between.
    pub stdout: String,
    pub stderr: String,
    /// The bytes of each log its excerpt spans, `[first, end)`; a head and
    /// tail excerpt spans the whole log and leaves out a middle.
    pub stdout_range: [u64; 2],
    pub stderr_range: [u64; 2],
    /// How the excerpts were decoded: `utf-8-lossy` (invalid bytes become U+FFFD).
    pub encoding: &'static str,
    /// Bytes the job wrote to each stream (so far, while running).
    pub stdout_total_bytes: u64,
    pub stderr_total_bytes: u64,
    /// The excerpt leaves bytes out.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The log does not hold every byte the job wrote (it hit the per-log cap).
    pub stdout_log_truncated: bool,
    pub stderr_log_truncated: bool,
    /// Why a log misses bytes: `cap` (past `--log-cap`: head and tail kept)
    /// or `write_error` (the disk was full, …; `message` says more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_log_truncated_by: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_log_truncated_by: Option<&'static str>,
    /// Past the cap a log keeps its head and its tail: how many bytes it left
    /// out between them, and the offset in the log of the marker line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_log_omitted: Option<crate::output::Omitted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_log_omitted: Option<crate::output::Omitted>,
    pub stdout_log_path: String,
    pub stderr_log_path: String,
    /// Terminal only.
    pub resources: Option<Resources>,
    /// What isolation was applied (once started).
    pub sandbox: Option<serde_json::Value>,
    /// What the job tried and the sandbox refused (from its own error
    /// messages, matched to the policy), each with what would allow it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<crate::supervisor::Denial>,
    /// `network = proxy`: every host and port the job asked its proxy for,
    /// allowed or refused, with the bytes moved each way (terminal only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::supervisor::NetworkReport>,
    /// `--publish`: the host's loopback ports that reach the job's, while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<crate::job::model::Publish>,
    /// Keys set with --env / --env-file.
    pub env_keys: Vec<String>,
    /// The same as `KEY=VALUE`, masked values as `KEY=***`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<String>,
    /// Names of masked values (env keys, or `literal#N`).
    pub masked: Vec<String>,
    /// The job's main process (host pid), while known.
    pub pid: Option<i32>,
    /// The job's supervisor process.
    pub supervisor_pid: Option<i32>,
    /// Why the job failed, was killed or was lost, in words.
    pub message: Option<String>,
    /// For `kill`: the signal sent, or null when the job had already ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_sent: Option<String>,
    /// For `kill`: how long after the signal the job was seen ended (0 if
    /// it had ended already; absent with `--no-wait` or if not seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_within_ms: Option<u64>,
    /// `wait`/`run` returned because the observation deadline passed, not because the job ended.
    pub deadline_reached: bool,
    /// `--compress`: a view of the output (the excerpts above stay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::output::views::Compression>,
}

/// `tail`: bounded excerpts of both logs.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TailResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: TailType,
    pub job_id: String,
    pub state: State,
    pub stdout: String,
    pub stderr: String,
    /// The bytes of each log its excerpt spans, `[first, end)`.
    pub stdout_range: [u64; 2],
    pub stderr_range: [u64; 2],
    /// `utf-8-lossy`.
    pub encoding: &'static str,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_total_bytes: u64,
    pub stderr_total_bytes: u64,
    /// With `--offset`: where to continue reading each log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout_next_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr_next_offset: Option<u64>,
    pub stdout_log_path: String,
    pub stderr_log_path: String,
    /// `--compress`: a view of the output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::output::views::Compression>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TailType {
    Tail,
}

/// One line of `tail --follow`: new bytes of one stream.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TailChunk {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: TailChunkType,
    pub job_id: String,
    pub stream: StreamName,
    /// Byte offset of `data` in the log.
    pub offset: u64,
    pub data: String,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TailChunkType {
    TailChunk,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamName {
    Stdout,
    Stderr,
}

/// The last line of `tail --follow`: the job is terminal (or the deadline passed).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TailEnd {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: TailEndType,
    pub job_id: String,
    pub state: State,
    pub result: Option<ResultKind>,
    pub exit_code: Option<i32>,
    pub stdout_total_bytes: u64,
    pub stderr_total_bytes: u64,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TailEndType {
    TailEnd,
}

/// `list`: jobs, newest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ListResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: ListType,
    pub root: String,
    pub count: usize,
    pub jobs: Vec<JobSummary>,
    /// More jobs match than `--limit` let through.
    pub truncated: bool,
    /// Jobs left out although they may match: their records cannot be read
    /// and the filters asked for what they lost (`--state corrupt` lists
    /// them).
    pub skipped: usize,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ListType {
    List,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct JobSummary {
    pub job_id: String,
    /// The first 7 characters: enough to name the job in most stores (any
    /// unambiguous prefix is accepted).
    pub short_job_id: String,
    pub state: State,
    pub result: Option<ResultKind>,
    pub exit_code: Option<i32>,
    pub argv: Vec<String>,
    /// The same as `argv` (tumf/agent-exec's name).
    pub command: Vec<String>,
    pub cwd: String,
    pub tags: Vec<String>,
    pub policy: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// `corrupt`: why the record cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `delete` and `gc`: what was (or would be) removed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CleanupResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: CleanupType,
    pub root: String,
    pub dry_run: bool,
    /// For gc: the retention window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// For gc: where the window came from: `flag`, `config` or `default`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than_source: Option<&'static str>,
    /// For gc: how many jobs were judged, and how many of them were due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned_dirs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_count: Option<usize>,
    pub deleted: usize,
    pub skipped: usize,
    pub freed_bytes: u64,
    pub jobs: Vec<CleanupEntry>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CleanupType {
    Delete,
    Gc,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CleanupEntry {
    pub job_id: String,
    pub state: State,
    /// `deleted`, `would_delete` or `skipped`.
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub bytes: u64,
}

/// `pipeline run`: the report of the whole run (phases in topological order, each
/// with the seed's handoff).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PipelineResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: PipelineType,
    #[serde(flatten)]
    pub report: crate::pipeline::PipelineReport,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PipelineType {
    Pipeline,
}

/// `pipeline validate` on a valid file (an invalid one is a `pipeline_invalid` error).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PipelineValidationResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: PipelineValidationType,
    pub file: String,
    /// Number of phases.
    pub phases: usize,
    /// Number of commands over all phases.
    pub commands: usize,
    /// Phase names in the order they may run (dependencies first).
    pub order: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PipelineValidationType {
    PipelineValidation,
}

/// `schema`: the JSON Schema of every response.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SchemaResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: SchemaType,
    /// `json-schema-2020-12`.
    pub schema_format: &'static str,
    /// When this binary made the document (it is made from the response
    /// types themselves, so it always matches the binary).
    pub generated_at: String,
    /// One `$defs` entry per response type; the root is any response.
    pub schema: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaType {
    Schema,
}

/// `policy list`: every built-in and host policy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PolicyListResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: PolicyListType,
    pub host_dir: String,
    pub policies: Vec<crate::policy::PolicyListEntry>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyListType {
    PolicyList,
}

/// `policy show` and `policy check`: the effective policy after `extends` and merging.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PolicyResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: PolicyType,
    /// For `policy check`: the file checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// For `policy check`: always true (an invalid file is an error response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    pub policy: crate::policy::Policy,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyType {
    Policy,
    PolicyCheck,
}

/// `doctor`: what this host can enforce, per layer and per policy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoctorResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: DoctorType,
    #[serde(flatten)]
    pub report: crate::doctor::report::DoctorReport,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoctorType {
    Doctor,
}

/// Any response agent-exec prints; the schema of this type is what `schema` prints.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum AnyResponse {
    Job(JobResponse),
    Tail(TailResponse),
    TailChunk(TailChunk),
    TailEnd(TailEnd),
    List(ListResponse),
    Cleanup(CleanupResponse),
    Pipeline(PipelineResponse),
    PipelineValidation(PipelineValidationResponse),
    Schema(SchemaResponse),
    PolicyList(PolicyListResponse),
    Policy(PolicyResponse),
    Doctor(DoctorResponse),
    OrphanKill(OrphanKillResponse),
    TagSet(TagSetResponse),
    NotifySet(NotifySetResponse),
    Done(DoneResponse),
    Error(ErrorResponse),
}

/// `tag set`: the job's tags now.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TagSetResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: TagSetType,
    pub job_id: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagSetType {
    TagSet,
}

/// `notify set`: the sinks of the job's completion event now.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NotifySetResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: NotifySetType,
    pub job_id: String,
    /// `notify_command`, `notify_file` (absent when not set).
    pub notification: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
pub enum NotifySetType {
    #[serde(rename = "notify.set")]
    NotifySet,
}

/// `install-skills` and `completions`: what was written where.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DoneResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: DoneType,
    /// Files written.
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DoneType {
    InstallSkills,
}

/// `kill` of a job whose record is gone (its directory was removed) but
/// whose cgroup still holds processes: killed through the cgroup.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OrphanKillResponse {
    pub schema_version: SchemaVersion,
    pub ok: Const<true>,
    #[serde(rename = "type")]
    pub kind: OrphanKillType,
    pub job_id: String,
    /// Always `lost`: its record is gone.
    pub state: State,
    pub signal_sent: Option<String>,
    /// Processes the cgroup held when the signal was sent.
    pub processes: u64,
    /// Whether the cgroup is empty now.
    pub ended: bool,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKillType {
    Kill,
}

/// The JSON Schema document of every response.
pub fn schema_document() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<AnyResponse>();
    serde_json::to_value(schema).unwrap_or(serde_json::Value::Null)
}

pub fn error_response(error: AppError) -> ErrorResponse {
    ErrorResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: ErrorType::Error,
        error,
    }
}

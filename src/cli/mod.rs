//! Command-line types. Flag names follow tumf/agent-exec where it has them,
//! so its users switch without relearning. Durations and sizes are taken as
//! strings and validated by the command, so a bad value is a JSON error
//! (`invalid_argument`, exit 1) rather than a usage error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::ArgValueCandidates;

/// Completion of job ids, from the store when the shell asks.
fn job_ids() -> ArgValueCandidates {
    ArgValueCandidates::new(crate::commands::job_id_candidates)
}

#[derive(Debug, Parser)]
#[command(
    name = "agent-exec",
    version,
    about = "Run every command as a durable background job in a real sandbox; one JSON object per response.",
    propagate_version = true
)]
pub struct Cli {
    /// Job store root (default: $AGENT_EXEC_ROOT, else $XDG_STATE_HOME/agent-exec, else ~/.local/state/agent-exec).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Print the answer as YAML instead of JSON.
    #[arg(long, global = true)]
    pub yaml: bool,

    /// Say on stderr what the command decides (-v: each step, -vv: more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a job, then observe it (10 s by default).
    Run(RunArgs),
    /// Persist a job definition without starting it.
    Create(CreateArgs),
    /// Start a created job.
    Start(StartArgs),
    /// Run an ended job again under the same id (a running one is stopped first).
    Restart(RestartArgs),
    /// Current state of a job; the full result once it has ended.
    Status(JobArg),
    /// Bounded excerpt of a job's stdout/stderr.
    Tail(TailArgs),
    /// Observe a job until it ends or --until passes (the job is never stopped by this).
    Wait(WaitArgs),
    /// Signal every process of a job's cgroup, then kill the cgroup after --grace.
    Kill(KillArgs),
    /// List jobs of this directory (all with --all), newest first.
    List(ListArgs),
    /// List running jobs of this directory (all with --all).
    Ps(ListArgs),
    /// Remove a terminal job and its logs (or, with --all, every ended job of this directory).
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Remove terminal jobs older than a retention window.
    Gc(GcArgs),
    /// Print the JSON Schema of every response.
    Schema,
    /// Built-in and host sandbox policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What this host can enforce, per layer and per policy (exit 1 if the default policy cannot be enforced).
    Doctor,
    /// Run or check a pipeline file: `exec` phases as a DAG of sandboxed jobs.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Replace a job's tags.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Set what a job's end is told to (a command, a file).
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print a completion script for a shell (job ids are completed from the store).
    Completions {
        /// bash, zsh, fish or powershell.
        shell: String,
    },
    /// Install the skill file that teaches an agent to use agent-exec.
    InstallSkills(InstallSkillsArgs),
    /// Serve these operations to an agent as an MCP server over stdio.
    Mcp,
    /// Serve these operations as an HTTP API (loopback, bearer token).
    Serve(ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum TagCommand {
    /// Replace the tags of a job (no --tag: remove them all).
    Set {
        #[arg(add = job_ids())]
        job_id: String,
        /// A tag (repeatable).
        #[arg(long = "tag", value_name = "TAG")]
        tag: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Set the sinks of a job's completion event (given ones replace; others stay).
    Set {
        #[arg(add = job_ids())]
        job_id: String,
        /// Run this shell command with the event on its stdin.
        #[arg(long, value_name = "CMD")]
        command: Option<String>,
        /// Append the event as one JSON line to this file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        output_match: OutputMatchArgs,
        /// Remove every sink.
        #[arg(long, conflicts_with_all = ["command", "file", "output_pattern"])]
        clear: bool,
    },
}

/// `--output-*`: events for matching lines of output.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputMatchArgs {
    /// Send an event for each output line that holds this text (or matches it, with --output-match-type regex).
    #[arg(long, value_name = "PATTERN")]
    pub output_pattern: Option<String>,
    /// How --output-pattern matches: contains (default) or regex.
    #[arg(long, value_name = "TYPE", requires = "output_pattern")]
    pub output_match_type: Option<String>,
    /// Which output --output-pattern reads: stdout, stderr or either (default).
    #[arg(long, value_name = "STREAM", requires = "output_pattern")]
    pub output_stream: Option<String>,
    /// Run this shell command for each match (the event, JSON, on its stdin).
    #[arg(long, value_name = "CMD", requires = "output_pattern")]
    pub output_command: Option<String>,
    /// Append each match's event as one JSON line to this file.
    #[arg(long, value_name = "FILE", requires = "output_pattern")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallSkillsArgs {
    /// Into the home directory instead of the current one.
    #[arg(long)]
    pub global: bool,
    /// Into `.claude/skills` (Claude Code) instead of `.agents/skills`.
    #[arg(long)]
    pub claude: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:19263; port 0 picks a free one).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "port")]
    pub bind: Option<String>,
    /// Listen on 127.0.0.1 at this port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Allow an address other machines can reach.
    #[arg(long)]
    pub insecure: bool,
    /// Read the bearer token from this file (default: $AGENT_EXEC_SERVE_TOKEN, else a new one in the store's serve.token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

// Everything that defines a job (shared by run and create; built in code by pipelines).
#[derive(Debug, Args, Clone, Default)]
pub struct JobDefinition {
    /// Hard wall-clock limit: SIGTERM to the whole cgroup when it passes (seconds or 500ms/5m/2h; 0 = none).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// After SIGTERM (timeout or kill), wait this long, then kill the whole cgroup.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub kill_after: Option<String>,
    /// Working directory of the job (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read KEY=VALUE lines from a file (repeatable; # comments and blank lines ignored).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// A JSON object of variables, taken exactly (what the MCP server and
    /// the HTTP API hand their child; not for people).
    #[arg(long, value_name = "FILE", hide = true)]
    pub env_json: Option<PathBuf>,
    /// A JSON list of --mask values (what the front ends hand their child,
    /// a literal secret kept off its command line; not for people).
    #[arg(long, value_name = "FILE", hide = true)]
    pub mask_json: Option<PathBuf>,
    /// Start from the caller's environment (the default).
    #[arg(long, overrides_with = "no_inherit_env")]
    pub inherit_env: bool,
    /// Start from an empty environment (PATH set to a standard value).
    #[arg(long, overrides_with = "inherit_env")]
    pub no_inherit_env: bool,
    /// Hide a secret in JSON and in the stored logs: an --env/--env-file key (its value), or a literal text.
    #[arg(long = "mask", value_name = "KEY_OR_VALUE")]
    pub mask: Vec<String>,
    /// Job stdin: this text, or `-` to read the caller's stdin (default: /dev/null).
    #[arg(long, value_name = "TEXT|-", conflicts_with = "stdin_file")]
    pub stdin: Option<String>,
    /// Job stdin from a file (copied into the job directory).
    #[arg(long, value_name = "FILE")]
    pub stdin_file: Option<PathBuf>,
    /// Tag the job (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tag: Vec<String>,
    /// When the job ends, run this shell command with the event (JSON) on its stdin.
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,
    /// When the job ends, append the event (one JSON line) to this file.
    #[arg(long, value_name = "FILE")]
    pub notify_file: Option<PathBuf>,
    #[command(flatten)]
    pub output_match: OutputMatchArgs,
    /// Sandbox policy: a built-in (default, untrusted, ci, permissive), a host policy name, or a path to a TOML file.
    #[arg(long, value_name = "NAME|PATH")]
    pub policy: Option<String>,
    /// Also allow reading this path (if the policy lets the command line loosen it; repeatable).
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,
    /// Also allow writing this path (if the policy lets the command line loosen it; repeatable).
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Also allow executing programs under this path (if the policy lets the command line loosen it; repeatable).
    #[arg(long = "allow-exec", value_name = "PATH")]
    pub allow_exec: Vec<PathBuf>,
    /// Network: none (empty namespace), loopback (lo only), proxy (lo and a proxy to the allowed domains) or host.
    #[arg(long, value_name = "none|loopback|proxy|host")]
    pub net: Option<String>,
    /// Let the job reach this host through its proxy (`example.com`, `*.example.com`; implies --net proxy; repeatable).
    #[arg(long = "allow-domain", value_name = "HOST")]
    pub allow_domain: Vec<String>,
    /// Memory limit of the job's cgroup (e.g. 512M, 2G).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Maximum number of processes in the job's cgroup.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids: Option<String>,
    /// CPU bandwidth limit in CPUs (e.g. 1.5).
    #[arg(long, value_name = "CPUS", allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Per-log size cap: past it the log keeps its head and its tail (default 64M).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub log_cap: Option<String>,
    /// Forward the host's 127.0.0.1:HOST_PORT (default: PORT; 0: any free one) to the job's port PORT (needs --net loopback; repeatable).
    #[arg(long, value_name = "PORT[:HOST_PORT]")]
    pub publish: Vec<String>,
    /// What runs a command given as one string (default: config.toml [shell] unix, else "sh -c").
    #[arg(long, value_name = "PROG FLAGS")]
    pub shell_wrapper: Option<String>,
    /// The command and its arguments (best after `--`). Everything from the
    /// first word that is not an option of ours belongs to the command.
    #[arg(required = true, trailing_var_arg = true, value_name = "CMD")]
    pub command: Vec<String>,
}

// How a response observes a job and how much output it inlines.
#[derive(Debug, Args, Clone)]
pub struct Observe {
    /// Observe at most this long before answering with a snapshot (default 10s for run/start, 30s for wait).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Observe until the job ends, however long.
    #[arg(long, conflicts_with_all = ["until", "no_wait"])]
    pub forever: bool,
    /// Answer as soon as the job has started.
    #[arg(long)]
    pub no_wait: bool,
    /// `--wait=false` is `--no-wait`; `--wait` or `--wait=true` observes (the default).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub wait: Option<bool>,
    #[command(flatten)]
    pub excerpt: ExcerptArgs,
    /// Exit like timeout(1) once the job has ended: its code, 124 timeout, 128+N signal, 125 runner failure, 126/127 exec.
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ExcerptArgs {
    /// Budget for each inline excerpt (stdout and stderr): head and tail are kept (default 8K).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub max_bytes: Option<String>,
    /// Only the last N lines in each excerpt.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub tail_lines: Option<usize>,
    /// Also answer with a view of the output: off, route (picks one), errors, tests, logs, git, json, summary (default: config.toml [compression], else off).
    #[arg(long, visible_alias = "rtk", value_name = "MODE")]
    pub compress: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub observe: Observe,
    #[command(flatten)]
    pub def: JobDefinition,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub def: JobDefinition,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[arg(add = job_ids())]
    pub job_id: String,
    #[command(flatten)]
    pub observe: Observe,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    #[arg(add = job_ids())]
    pub job_id: String,
    /// Signal that stops the job first if it runs (default TERM; KILL after 5 s).
    #[arg(long, default_value = "TERM")]
    pub signal: String,
    #[command(flatten)]
    pub observe: Observe,
}

#[derive(Debug, Args)]
pub struct JobArg {
    #[arg(add = job_ids())]
    pub job_id: String,
    #[command(flatten)]
    pub excerpt: ExcerptArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(add = job_ids())]
    pub job_id: String,
    /// Observe at most this long (default 30s). The job keeps running when it passes.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Observe until the job ends, however long.
    #[arg(long, conflicts_with = "until")]
    pub forever: bool,
    #[command(flatten)]
    pub excerpt: ExcerptArgs,
    /// Exit like timeout(1) once the job has ended.
    #[arg(long)]
    pub exit_status: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[arg(add = job_ids())]
    pub job_id: String,
    /// Only the last N lines of each log (default 50 unless --offset is given).
    #[arg(long, visible_alias = "tail-lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Byte budget for each log's excerpt (default 64K).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub max_bytes: Option<String>,
    /// Read from this byte offset forward (returns the next offset to continue from).
    #[arg(long, value_name = "BYTES")]
    pub offset: Option<u64>,
    /// Which log: stdout, stderr or both (default both).
    #[arg(long, value_name = "STREAM", default_value = "both")]
    pub stream: String,
    /// Stream new output as NDJSON until the job ends (or --until passes).
    #[arg(long)]
    pub follow: bool,
    /// With --follow: stop after this long.
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Also answer with a view of the output (see `run --compress`).
    #[arg(long, visible_alias = "rtk", value_name = "MODE")]
    pub compress: Option<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    #[arg(add = job_ids())]
    pub job_id: String,
    /// Signal sent to every process of the job (name or number; default TERM).
    #[arg(long, default_value = "TERM")]
    pub signal: String,
    /// Then kill the whole cgroup after this long (default 5s).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub grace: Option<String>,
    /// Do not wait for the job to end before answering.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only jobs in this state (created, running, exited, killed, timed_out, failed, lost).
    #[arg(long)]
    pub state: Option<String>,
    /// Only jobs whose working directory is this one (default: the current one).
    #[arg(long, conflicts_with = "all")]
    pub cwd: Option<PathBuf>,
    /// Jobs of every working directory.
    #[arg(long)]
    pub all: bool,
    /// Only jobs carrying every one of these tags (`ns.*` matches a namespace).
    #[arg(long = "tag")]
    pub tag: Vec<String>,
    /// At most this many jobs.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The job (not with --all).
    #[arg(required_unless_present = "all", conflicts_with = "all", add = job_ids())]
    pub job_id: Option<String>,
    /// Every ended job of this directory (created and running ones stay).
    #[arg(long)]
    pub all: bool,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Retention window (default 30d).
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub older_than: Option<String>,
    /// Keep at most this many finished jobs (the newest); older ones go too.
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,
    /// Keep at most this much of finished jobs' records and logs (the newest).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub max_bytes: Option<String>,
    /// Report what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Every built-in and host policy.
    List,
    /// The effective policy (after `extends` and merging) as JSON.
    Show { name: String },
    /// Validate a policy file; errors name file, line and column.
    Check { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Run every phase (a DAG; commands of a phase in order, each a sandboxed job) and print one report; exit 1 unless every phase passed.
    Run(PipelineRunArgs),
    /// Check a pipeline file without running it; every error names file, line and column.
    Validate {
        /// The pipeline YAML file.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct PipelineRunArgs {
    /// The pipeline YAML file.
    pub file: PathBuf,
    /// At most this many phases at once (overrides the file's `max_parallel`; default: number of CPUs).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub max_parallel: Option<String>,
    /// Default sandbox policy of every command (replaces the file's top-level `policy`; phase and command `policy` still win).
    #[arg(long, value_name = "NAME|PATH")]
    pub policy: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::Parser;

    /// The first line of `agent-exec SUBCOMMAND --help`.
    fn about(subcommand: &[&str]) -> String {
        let argv = [&["agent-exec"], subcommand, &["--help"]].concat();
        let help = Cli::try_parse_from(argv).expect_err("--help stops the parse");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        help.render()
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// The structs a subcommand flattens in must not bring an about of their own.
    #[test]
    fn every_subcommand_keeps_its_own_help_line() {
        for (subcommand, first_line) in [
            (&["run"][..], "Create and start a job, then observe it"),
            (&["create"], "Persist a job definition without starting it"),
            (&["start"], "Start a created job"),
            (&["wait"], "Observe a job until it ends"),
            (&["tail"], "Bounded excerpt of a job's stdout/stderr"),
            (&["status"], "Current state of a job"),
            (&["policy", "check"], "Validate a policy file"),
            (&["pipeline", "run"], "Run every phase"),
        ] {
            let line = about(subcommand);
            assert!(
                line.starts_with(first_line),
                "{subcommand:?}: {line:?} does not start with {first_line:?}"
            );
        }
    }

    fn command_of(words: &[&str]) -> Result<Vec<String>, clap::error::ErrorKind> {
        let argv = [&["agent-exec"], words].concat();
        match Cli::try_parse_from(argv).map_err(|e| e.kind())?.command {
            super::Command::Run(r) => Ok(r.def.command),
            super::Command::Create(c) => Ok(c.def.command),
            other => panic!("not a job definition: {other:?}"),
        }
    }

    /// An option we do not know, before the command, is a mistake to report,
    /// never the start of the command; after `--` (or after the command's
    /// first word) every word is the command's.
    #[test]
    fn unknown_options_before_the_command_are_usage_errors() {
        use clap::error::ErrorKind::UnknownArgument;
        for words in [
            &["run", "--timout", "5", "--", "echo", "hi"][..],
            &["create", "--bogus", "x", "--", "true"],
            &["run", "--bogus", "true"],
            &["run", "-x", "--", "true"],
        ] {
            assert_eq!(command_of(words), Err(UnknownArgument), "{words:?}");
        }
        for (words, command) in [
            (
                &["run", "--", "echo", "--bogus"][..],
                &["echo", "--bogus"][..],
            ),
            (&["run", "--", "--bogus"], &["--bogus"]),
            (
                &["run", "echo", "-n", "--timeout", "1"],
                &["echo", "-n", "--timeout", "1"],
            ),
            (
                &["run", "--timeout", "1", "--", "sh", "-c", "echo -- --x"],
                &["sh", "-c", "echo -- --x"],
            ),
            (&["create", "--", "true"], &["true"]),
        ] {
            assert_eq!(
                command_of(words),
                Ok(command.iter().map(|w| w.to_string()).collect()),
                "{words:?}"
            );
        }
        assert_eq!(
            command_of(&["run", "--"]),
            Err(clap::error::ErrorKind::MissingRequiredArgument)
        );
    }
}

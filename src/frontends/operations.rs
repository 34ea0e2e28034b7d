//! The operations the MCP server and the HTTP API offer, as typed requests
//! turned into an `agent-exec` command line.
//!
//! Both front ends run every operation as a child `agent-exec` process:
//! the launch path forks supervisors and must stay single-threaded (the
//! front ends run an async runtime), and a request then gets exactly the
//! CLI's validation, policy checks and JSON answer. A request field is
//! never spliced into a flag: each becomes the value of one flag, after
//! `--` for the command, so no value can smuggle in an option.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// How long an observation may last, in seconds, where the caller did not
/// say (`default`) and at most (`max`): an MCP client gives up on a call
/// after its own deadline (often 60 s), and an answer after it is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UntilBounds {
    pub run_default: f64,
    pub wait_default: f64,
    pub max: f64,
}

impl UntilBounds {
    /// The bounds of the MCP server: 10 s for `run`, 30 s for `wait`, 50 s
    /// at most; `AGENT_EXEC_MCP_DEFAULT_UNTIL_SECONDS` replaces both
    /// defaults and `AGENT_EXEC_MCP_MAX_UNTIL_SECONDS` the maximum.
    pub fn from_env() -> Result<UntilBounds, String> {
        let read = |name: &str| -> Result<Option<f64>, String> {
            match std::env::var(name) {
                Err(_) => Ok(None),
                Ok(text) => match text.trim().parse::<f64>() {
                    Ok(n) if (0.0..=86_400.0 * 365.0).contains(&n) => Ok(Some(n)),
                    _ => Err(format!(
                        "{name} must be a number of seconds from 0 to 31536000, not {text:?}"
                    )),
                },
            }
        };
        let mut bounds = UntilBounds {
            run_default: 10.0,
            wait_default: 30.0,
            max: 50.0,
        };
        if let Some(default) = read("AGENT_EXEC_MCP_DEFAULT_UNTIL_SECONDS")? {
            bounds.run_default = default;
            bounds.wait_default = default;
        }
        if let Some(max) = read("AGENT_EXEC_MCP_MAX_UNTIL_SECONDS")? {
            bounds.max = max;
        }
        Ok(bounds)
    }

    /// No cap: the HTTP API's caller sets its own deadline.
    pub fn unbounded() -> UntilBounds {
        UntilBounds {
            run_default: 10.0,
            wait_default: 30.0,
            max: f64::INFINITY,
        }
    }

    fn clamp(&self, asked: Option<f64>, default: f64) -> f64 {
        // NaN, infinite or negative asks are taken as the default.
        let asked = asked.filter(|a| a.is_finite() && *a >= 0.0);
        asked.unwrap_or(default).min(self.max)
    }
}

/// One `agent-exec` invocation: its arguments, and what must not appear
/// in them (other local users read a process's command line).
#[derive(Debug, Default, PartialEq)]
pub struct Invocation {
    pub args: Vec<String>,
    /// The job's explicit environment, handed over in a private file.
    pub env: Vec<(String, String)>,
    /// The job's stdin, handed over in a private file.
    pub stdin: Option<String>,
    /// `--mask` values (a literal secret among them), in a private file.
    pub masks: Vec<String>,
    /// A pipeline's YAML, handed over in a private file (its path goes last).
    pub pipeline: Option<String>,
    /// The directory the child runs in (a pipeline's relative paths).
    pub cwd: Option<String>,
}

/// Seconds, as a number, or a duration in the CLI's words (`500ms`, `5m`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Duration {
    Seconds(f64),
    Text(String),
}

impl Duration {
    fn flag_value(&self) -> Result<String, String> {
        match self {
            Duration::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                Ok(format!("{}ms", (s * 1000.0).round() as u64))
            }
            Duration::Seconds(s) => Err(format!("{s} is not a number of seconds")),
            Duration::Text(t) => Ok(t.clone()),
        }
    }
}

/// A size in bytes, or in the CLI's words (`512M`).
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn flag_value(&self) -> String {
        match self {
            Size::Bytes(b) => b.to_string(),
            Size::Text(t) => t.clone(),
        }
    }
}

/// `run`: define, start and observe a job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The command and its arguments (one element: run as `sh -c`).
    pub command: Vec<String>,
    pub cwd: Option<String>,
    pub env: Option<BTreeMap<String, String>>,
    pub timeout: Option<Duration>,
    pub kill_after: Option<Duration>,
    /// Seconds to observe before answering.
    pub until: Option<f64>,
    /// Answer as soon as the job has started.
    #[serde(default)]
    pub no_wait: bool,
    /// tumf/agent-exec's `wait: false`, the same as `no_wait`.
    pub wait: Option<bool>,
    pub stdin: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub mask: Vec<String>,
    pub policy: Option<String>,
    pub net: Option<String>,
    #[serde(default)]
    pub allow_domain: Vec<String>,
    #[serde(default)]
    pub allow_read: Vec<String>,
    #[serde(default)]
    pub allow_write: Vec<String>,
    #[serde(default)]
    pub allow_exec: Vec<String>,
    pub memory: Option<Size>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub max_bytes: Option<Size>,
    pub tail_lines: Option<u64>,
}

impl Run {
    pub fn invocation(&self, bounds: &UntilBounds) -> Result<Invocation, String> {
        if self.command.is_empty() || self.command.iter().all(|w| w.is_empty()) {
            return Err("command must name a program (a list of words)".into());
        }
        let mut args = vec!["run".to_string()];
        // `--name=value`, one word: a value that starts with `-` stays a value.
        let flag = |args: &mut Vec<String>, name: &str, value: String| {
            args.push(format!("--{name}={value}"));
        };
        if self.no_wait || self.wait == Some(false) {
            args.push("--no-wait".into());
        } else {
            let until = bounds.clamp(self.until, bounds.run_default);
            flag(
                &mut args,
                "until",
                format!("{}ms", (until * 1000.0).round() as u64),
            );
        }
        if let Some(cwd) = &self.cwd {
            flag(&mut args, "cwd", cwd.clone());
        }
        if let Some(t) = &self.timeout {
            flag(&mut args, "timeout", t.flag_value()?);
        }
        if let Some(t) = &self.kill_after {
            flag(&mut args, "kill-after", t.flag_value()?);
        }
        for tag in &self.tags {
            flag(&mut args, "tag", tag.clone());
        }
        // Masks go in a private file: one may be a literal secret.
        if let Some(p) = &self.policy {
            flag(&mut args, "policy", p.clone());
        }
        if let Some(n) = &self.net {
            flag(&mut args, "net", n.clone());
        }
        for (name, list) in [
            ("allow-domain", &self.allow_domain),
            ("allow-read", &self.allow_read),
            ("allow-write", &self.allow_write),
            ("allow-exec", &self.allow_exec),
        ] {
            for value in list {
                flag(&mut args, name, value.clone());
            }
        }
        if let Some(m) = &self.memory {
            flag(&mut args, "memory", m.flag_value());
        }
        if let Some(p) = self.pids {
            flag(&mut args, "pids", p.to_string());
        }
        if let Some(c) = self.cpus {
            flag(&mut args, "cpus", c.to_string());
        }
        if let Some(b) = &self.max_bytes {
            flag(&mut args, "max-bytes", b.flag_value());
        }
        if let Some(n) = self.tail_lines {
            flag(&mut args, "tail-lines", n.to_string());
        }
        let mut env = Vec::new();
        for (k, v) in self.env.iter().flatten() {
            if k.is_empty() || k.contains('=') || k.contains('\0') || k.contains('\n') {
                return Err(format!("env: {k:?} is not a variable name"));
            }
            if v.contains('\0') || v.contains('\n') {
                return Err(format!("env: the value of {k} holds a newline or NUL"));
            }
            env.push((k.clone(), v.clone()));
        }
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        Ok(Invocation {
            args,
            env,
            stdin: self.stdin.clone(),
            masks: self.mask.clone(),
            ..Invocation::default()
        })
    }
}

/// `status`: a job's state, its full result once it has ended.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub job_id: String,
}

impl Status {
    pub fn invocation(&self) -> Invocation {
        Invocation {
            args: vec!["status".into(), "--".into(), self.job_id.clone()],
            ..Invocation::default()
        }
    }
}

/// `tail`: bounded excerpts of a job's logs.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tail {
    pub job_id: String,
    pub lines: Option<u64>,
    pub max_bytes: Option<Size>,
    pub offset: Option<u64>,
    pub stream: Option<String>,
}

impl Tail {
    pub fn invocation(&self) -> Invocation {
        let mut args = vec!["tail".to_string()];
        if let Some(n) = self.lines {
            args.push(format!("--lines={n}"));
        }
        if let Some(b) = &self.max_bytes {
            args.push(format!("--max-bytes={}", b.flag_value()));
        }
        if let Some(o) = self.offset {
            args.push(format!("--offset={o}"));
        }
        if let Some(s) = &self.stream {
            args.push(format!("--stream={s}"));
        }
        args.extend(["--".into(), self.job_id.clone()]);
        Invocation {
            args,
            ..Invocation::default()
        }
    }
}

/// `wait`: observe a job until it ends or `until` passes (never stops it).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    pub job_id: String,
    pub until: Option<f64>,
    pub max_bytes: Option<Size>,
    pub tail_lines: Option<u64>,
}

impl Wait {
    pub fn invocation(&self, bounds: &UntilBounds) -> Invocation {
        let until = bounds.clamp(self.until, bounds.wait_default);
        let mut args = vec![
            "wait".to_string(),
            format!("--until={}ms", (until * 1000.0).round() as u64),
        ];
        if let Some(b) = &self.max_bytes {
            args.push(format!("--max-bytes={}", b.flag_value()));
        }
        if let Some(n) = self.tail_lines {
            args.push(format!("--tail-lines={n}"));
        }
        args.extend(["--".into(), self.job_id.clone()]);
        Invocation {
            args,
            ..Invocation::default()
        }
    }
}

/// `kill`: signal every process of a job, then kill its cgroup.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Kill {
    pub job_id: String,
    pub signal: Option<String>,
    pub grace: Option<Duration>,
    #[serde(default)]
    pub no_wait: bool,
}

impl Kill {
    pub fn invocation(&self) -> Result<Invocation, String> {
        let mut args = vec!["kill".to_string()];
        if let Some(s) = &self.signal {
            args.push(format!("--signal={s}"));
        }
        if let Some(g) = &self.grace {
            args.push(format!("--grace={}", g.flag_value()?));
        }
        if self.no_wait {
            args.push("--no-wait".into());
        }
        args.extend(["--".into(), self.job_id.clone()]);
        Ok(Invocation {
            args,
            ..Invocation::default()
        })
    }
}

/// `list`: jobs, newest first.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct List {
    pub state: Option<String>,
    pub cwd: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub limit: Option<u64>,
}

impl List {
    pub fn invocation(&self) -> Invocation {
        let mut args = vec!["list".to_string()];
        if let Some(s) = &self.state {
            args.push(format!("--state={s}"));
        }
        // A front end has no directory of its caller's: every job unless asked.
        match &self.cwd {
            Some(c) => args.push(format!("--cwd={c}")),
            None => args.push("--all".into()),
        }
        for t in &self.tags {
            args.push(format!("--tag={t}"));
        }
        if let Some(n) = self.limit {
            args.push(format!("--limit={n}"));
        }
        Invocation {
            args,
            ..Invocation::default()
        }
    }
}

/// `pipeline run`: every phase of a pipeline, then one report.
///
/// The pipeline comes as its text, never as a path: the front end reads no
/// file for its caller (the caller's jobs are sandboxed; a file the server
/// read for it would not be, and its errors quote what they read).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineRun {
    pub yaml: String,
    /// The directory relative paths of the pipeline start from.
    pub cwd: Option<String>,
    pub policy: Option<String>,
    pub max_parallel: Option<u64>,
}

impl PipelineRun {
    pub fn invocation(&self) -> Invocation {
        let mut args = vec!["pipeline".to_string(), "run".into()];
        if let Some(p) = &self.policy {
            args.push(format!("--policy={p}"));
        }
        if let Some(n) = self.max_parallel {
            args.push(format!("--max-parallel={n}"));
        }
        args.push("--".into());
        Invocation {
            args,
            pipeline: Some(self.yaml.clone()),
            cwd: self.cwd.clone(),
            ..Invocation::default()
        }
    }
}

/// `pipeline validate`: check a pipeline without running it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineValidate {
    pub yaml: String,
}

impl PipelineValidate {
    pub fn invocation(&self) -> Invocation {
        Invocation {
            args: vec!["pipeline".into(), "validate".into(), "--".into()],
            pipeline: Some(self.yaml.clone()),
            ..Invocation::default()
        }
    }
}

/// Decodes a request's arguments; the error says which field is wrong.
pub fn decode<T: serde::de::DeserializeOwned>(arguments: Value) -> Result<T, String> {
    serde_json::from_value(arguments).map_err(|e| format!("invalid arguments: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounds() -> UntilBounds {
        UntilBounds {
            run_default: 10.0,
            wait_default: 30.0,
            max: 50.0,
        }
    }

    #[test]
    fn a_run_becomes_flags_and_the_command_after_the_separator() {
        let run: Run = decode(json!({
            "command": ["--policy", "x"],
            "policy": "default",
            "allow_domain": ["example.com"],
            "env": {"TOKEN": "s3cret"},
            "mask": ["TOKEN", "literal-s3cret"],
            "timeout": 1.5,
            "until": 600
        }))
        .unwrap();
        let inv = run.invocation(&bounds()).unwrap();
        assert_eq!(
            inv.args,
            [
                "run",
                "--until=50000ms",
                "--timeout=1500ms",
                "--policy=default",
                "--allow-domain=example.com",
                "--",
                "--policy",
                "x"
            ]
        );
        assert_eq!(inv.env, [("TOKEN".to_string(), "s3cret".to_string())]);
        assert!(!inv.args.iter().any(|a| a.contains("s3cret")));
        assert_eq!(inv.masks, ["TOKEN", "literal-s3cret"]);
    }

    #[test]
    fn bad_requests_are_refused_before_anything_runs() {
        assert!(decode::<Run>(json!({"command": ["true"], "bogus": 1})).is_err());
        assert!(decode::<Run>(json!({"command": "true"})).is_err());
        let empty: Run = decode(json!({"command": []})).unwrap();
        assert!(empty.invocation(&bounds()).is_err());
        let newline: Run = decode(json!({"command": ["true"], "env": {"A": "x\ny"}})).unwrap();
        assert!(newline.invocation(&bounds()).is_err());
        let negative: Run = decode(json!({"command": ["true"], "timeout": -1})).unwrap();
        assert!(negative.invocation(&bounds()).is_err());
    }

    #[test]
    fn a_job_id_is_never_read_as_a_flag() {
        let s: Status = decode(json!({"job_id": "--help"})).unwrap();
        assert_eq!(s.invocation().args, ["status", "--", "--help"]);
        let w: Wait = decode(json!({"job_id": "abc"})).unwrap();
        assert_eq!(
            w.invocation(&bounds()).args,
            ["wait", "--until=30000ms", "--", "abc"]
        );
    }
}

//! Completion events: once a job's result is recorded (and its caller
//! answered), its supervisor tells the sinks the caller set with
//! `run --notify-command/--notify-file` or `notify set`: a command that
//! reads the event on stdin, a file that gets one NDJSON line. What was
//! delivered is kept in the job's `completion_event.json`.
//!
//! The sinks run as the caller, outside the sandbox: the caller set them,
//! in the store, which no job can see. They never delay the job's answer.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::job::model::{JobSpec, JobStatus};
use crate::job::store::{write_json, Store, STDERR_LOG, STDOUT_LOG};
use crate::timefmt::{now_ms, rfc3339};

/// Where the sinks are kept, in the job's directory.
pub const NOTIFY_FILE: &str = "notify.json";
/// What was sent and how each sink fared.
pub const EVENT_FILE: &str = "completion_event.json";

/// How long a notify command may run before it is killed.
const COMMAND_TIME: Duration = Duration::from_secs(30);

/// The sinks of a job.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_output_match: Option<OutputMatch>,
}

impl Sinks {
    pub fn is_empty(&self) -> bool {
        self.notify_command.is_none()
            && self.notify_file.is_none()
            && self.on_output_match.is_none()
    }
}

/// An event for each line of output that matches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutputMatch {
    pub pattern: String,
    /// `contains` or `regex`.
    pub match_type: String,
    /// `stdout`, `stderr` or `either`.
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

impl OutputMatch {
    /// Checks the fields; the error names the flag.
    pub fn check(&self) -> Result<(), String> {
        if self.pattern.is_empty() {
            return Err("--output-pattern: give a pattern".into());
        }
        match self.match_type.as_str() {
            "contains" => {}
            "regex" => {
                regex::Regex::new(&self.pattern)
                    .map_err(|e| format!("--output-pattern: not a regular expression: {e}"))?;
            }
            other => {
                return Err(format!(
                    "--output-match-type {other:?}: expected contains or regex"
                ))
            }
        }
        if !["stdout", "stderr", "either"].contains(&self.stream.as_str()) {
            return Err(format!(
                "--output-stream {:?}: expected stdout, stderr or either",
                self.stream
            ));
        }
        Ok(())
    }
}

/// Where the output-match events of a job are recorded, one JSON line each.
pub const MATCH_EVENTS_FILE: &str = "notification_events.ndjson";
/// At most this many output-match events per job.
const MAX_MATCH_EVENTS: u64 = 1000;
/// How often the watcher looks at the sinks again (`notify set` while it runs).
const RELOAD_EVERY: Duration = Duration::from_millis(200);
/// Longest line matched (a longer one is matched on its first part).
const MAX_LINE: usize = 64 << 10;

/// Matches the job's output, line by line, against its `on_output_match`,
/// as the logs grow (so masked values are never in an event). Does
/// nothing while the job has no such sink.
pub struct OutputWatch {
    id: String,
    dir: std::path::PathBuf,
    cwd: String,
    config: Option<(OutputMatch, Option<regex::Regex>)>,
    loaded_at: Option<Instant>,
    offsets: [u64; 2],
    partial: [Vec<u8>; 2],
    sent: u64,
}

impl OutputWatch {
    pub fn new(store: &Store, spec: &JobSpec) -> OutputWatch {
        OutputWatch {
            id: spec.job_id.clone(),
            dir: store.job_dir(&spec.job_id),
            cwd: spec.cwd.clone(),
            config: None,
            loaded_at: None,
            offsets: [0, 0],
            partial: [Vec::new(), Vec::new()],
            sent: 0,
        }
    }

    /// The last scan, once the pipes are closed: everything the logs
    /// gained, and a last line without its newline.
    pub fn finish(&mut self, store: &Store) {
        self.loaded_at = None;
        self.scan(store);
        if self.config.is_none() {
            return;
        }
        for i in 0..2 {
            // A backlog larger than one read (a `notify set` come late).
            for _ in 0..64 {
                if !self.scan_stream(i) {
                    break;
                }
            }
            if !self.partial[i].is_empty() {
                let last: Vec<u8> = std::mem::take(&mut self.partial[i]);
                let line = String::from_utf8_lossy(&last[..last.len().min(MAX_LINE)]).into_owned();
                self.consider(i, line);
            }
        }
    }

    /// Reads what the logs gained and sends an event per matching line.
    pub fn scan(&mut self, store: &Store) {
        if self.loaded_at.is_none_or(|t| t.elapsed() >= RELOAD_EVERY) {
            self.loaded_at = Some(Instant::now());
            let sinks = get(store, &self.id);
            let changed = self.config.as_ref().map(|(c, _)| c) != sinks.on_output_match.as_ref();
            if changed {
                self.config = sinks
                    .on_output_match
                    .filter(|m| m.check().is_ok())
                    .map(|m| {
                        let re = (m.match_type == "regex")
                            .then(|| regex::Regex::new(&m.pattern).ok())
                            .flatten();
                        (m, re)
                    });
            }
        }
        let Some((config, _)) = &self.config else {
            return;
        };
        let streams: &[usize] = match config.stream.as_str() {
            "stdout" => &[0],
            "stderr" => &[1],
            _ => &[0, 1],
        };
        for &i in streams {
            self.scan_stream(i);
        }
    }

    /// Reads up to 4 MiB more of log `i`; whether it read anything.
    fn scan_stream(&mut self, i: usize) -> bool {
        let wanted = match self.config.as_ref().map(|(c, _)| c.stream.as_str()) {
            Some("stdout") => i == 0,
            Some("stderr") => i == 1,
            Some(_) => true,
            None => false,
        };
        if !wanted {
            return false;
        }
        use std::io::{Read, Seek, SeekFrom};
        let name = [STDOUT_LOG, STDERR_LOG][i];
        let Ok(mut log) = std::fs::File::open(self.dir.join(name)) else {
            return false;
        };
        if log.seek(SeekFrom::Start(self.offsets[i])).is_err() {
            return false;
        }
        let mut fresh = Vec::new();
        let Ok(n) = log.take(4 << 20).read_to_end(&mut fresh) else {
            return false;
        };
        if n == 0 {
            return false;
        }
        self.offsets[i] += n as u64;
        let mut buf = std::mem::take(&mut self.partial[i]);
        buf.extend_from_slice(&fresh);
        // One pass over the bytes: each line is a slice, the rest kept.
        let mut start = 0;
        let mut lines = Vec::new();
        for (at, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                let line = &buf[start..at];
                lines.push(String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]).into_owned());
                start = at + 1;
            }
        }
        let rest = &buf[start..];
        if rest.len() > MAX_LINE {
            lines.push(String::from_utf8_lossy(&rest[..MAX_LINE]).into_owned());
        } else {
            self.partial[i] = rest.to_vec();
        }
        for line in lines {
            self.consider(i, line);
        }
        true
    }

    /// Sends an event if `line` of stream `i` matches.
    fn consider(&mut self, i: usize, line: String) {
        if self.sent >= MAX_MATCH_EVENTS {
            return;
        }
        let Some((config, re)) = &self.config else {
            return;
        };
        let matched = match re {
            Some(re) => re.is_match(&line),
            None => line.contains(&config.pattern),
        };
        if matched {
            self.sent += 1;
            let (config, stream) = (config.clone(), ["stdout", "stderr"][i]);
            self.send(&config, stream, &line);
        }
    }

    fn send(&self, config: &OutputMatch, stream: &str, line: &str) {
        let event = json!({
            "schema_version": "1",
            "event_type": "job.output.matched",
            "job_id": self.id,
            "pattern": config.pattern,
            "match_type": config.match_type,
            "stream": stream,
            "line": line,
            "stdout_log_path": self.dir.join(STDOUT_LOG),
            "stderr_log_path": self.dir.join(STDERR_LOG),
        });
        let events_path = self.dir.join(MATCH_EVENTS_FILE);
        let mut results = Vec::new();
        if let Some(file) = &config.file {
            results.push(result("file", file, append_line(Path::new(file), &event)));
        }
        if let Some(command) = &config.command {
            // Not waited for: the job's output must keep flowing. The
            // supervisor reaps it with the job's orphans.
            let spawned = spawn_command(
                command,
                &event,
                &events_path,
                &self.id,
                &self.cwd,
                "job.output.matched",
            );
            results.push(result("command", command, spawned));
        }
        let mut record = event;
        record["delivery_results"] = Value::Array(results);
        let _ = append_line(&events_path, &record);
    }
}

/// `sh -c COMMAND`, the event on its stdin, not waited for.
fn spawn_command(
    command: &str,
    event: &Value,
    event_path: &Path,
    id: &str,
    cwd: &str,
    kind: &str,
) -> Result<(), String> {
    // The event in a file of its own, as the command's stdin (a pipe it
    // does not read would block the job's output); gone once opened.
    let own = event_path.with_file_name(format!(".match-event-{}", std::process::id()));
    let _ = std::fs::remove_file(&own);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&own)
        .and_then(|mut f| f.write_all(event.to_string().as_bytes()))
        .map_err(|e| format!("{}: {e}", own.display()))?;
    let stdin = event_stdin(&own);
    let _ = std::fs::remove_file(&own);
    Command::new("sh")
        .args(["-c", command])
        .current_dir(cwd)
        .env("AGENT_EXEC_EVENT_PATH", event_path)
        .env("AGENT_EXEC_JOB_ID", id)
        .env("AGENT_EXEC_EVENT_TYPE", kind)
        .stdin(stdin?)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot run sh: {e}"))
}

/// Records the sinks of job `id` (none: removes them).
pub fn set(store: &Store, id: &str, sinks: &Sinks) -> Result<(), crate::job::store::StoreError> {
    let path = store.job_dir(id).join(NOTIFY_FILE);
    if sinks.is_empty() {
        let _ = std::fs::remove_file(&path);
        return Ok(());
    }
    write_json(&path, sinks, 0o600)
}

/// The sinks of job `id`, if any.
pub fn get(store: &Store, id: &str) -> Sinks {
    std::fs::read(store.job_dir(id).join(NOTIFY_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Tells the job's sinks it ended. Best effort: a sink that fails is
/// recorded as failed, never retried.
pub fn deliver(store: &Store, spec: &JobSpec, status: &JobStatus) {
    let sinks = get(store, &spec.job_id);
    if sinks.is_empty() {
        return;
    }
    let dir = store.job_dir(&spec.job_id);
    let outcome = status.outcome.as_ref();
    let event = json!({
        "schema_version": "1",
        "event_type": "job.finished",
        "job_id": spec.job_id,
        "state": status.state,
        "command": spec.argv,
        "cwd": spec.cwd,
        "started_at": status.started_at_ms.map(rfc3339),
        "finished_at": status.finished_at_ms.map(rfc3339),
        "duration_ms": outcome.map(|o| o.duration_ms),
        "exit_code": outcome.and_then(|o| o.exit_code),
        "signal": outcome.and_then(|o| o.signal.clone()),
        "stdout_log_path": dir.join(STDOUT_LOG),
        "stderr_log_path": dir.join(STDERR_LOG),
    });
    let event_path = dir.join(EVENT_FILE);
    // Written first, so a command reading $AGENT_EXEC_EVENT_PATH finds it.
    let _ = write_json(&event_path, &event, 0o600);
    let mut results = Vec::new();
    if let Some(file) = &sinks.notify_file {
        results.push(result("file", file, append_line(Path::new(file), &event)));
    }
    if let Some(command) = &sinks.notify_command {
        let ran = run_command(command, &event_path, spec);
        results.push(result("command", command, ran));
    }
    let mut recorded = event;
    recorded["delivery_results"] = Value::Array(results);
    let _ = write_json(&event_path, &recorded, 0o600);
}

fn result(sink: &str, target: &str, outcome: Result<(), String>) -> Value {
    json!({
        "sink_type": sink,
        "target": target,
        "success": outcome.is_ok(),
        "error": outcome.err(),
        "attempted_at": rfc3339(now_ms()),
    })
}

/// One NDJSON line, appended in one write (lines of concurrent jobs do not mix).
fn append_line(path: &Path, event: &Value) -> Result<(), String> {
    let mut line = event.to_string();
    line.push('\n');
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // A FIFO nobody reads fails at once instead of blocking us.
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `sh -c COMMAND` in the job's directory, the event on its stdin.
fn run_command(command: &str, event_path: &Path, spec: &JobSpec) -> Result<(), String> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .current_dir(&spec.cwd)
        .env("AGENT_EXEC_EVENT_PATH", event_path)
        .env("AGENT_EXEC_JOB_ID", &spec.job_id)
        .env("AGENT_EXEC_EVENT_TYPE", "job.finished")
        .stdin(event_stdin(event_path)?)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    // Readable once the command has exited.
    if let Some(pidfd) = crate::job::liveness::pidfd_open(child.id() as i32) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = Instant::now() + COMMAND_TIME;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(0) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "still running after {}s: killed",
                        COMMAND_TIME.as_secs()
                    ));
                }
                Err(nix::errno::Errno::EINTR) => continue,
                _ => break,
            }
        }
    } else {
        // No pidfd: look now and then, within the same time.
        let deadline = Instant::now() + COMMAND_TIME;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    match child.wait() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("exited with {s}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The event as a command's stdin: the file it was written to, so that a
/// command that does not read it never blocks us on a full pipe.
fn event_stdin(path: &Path) -> Result<Stdio, String> {
    std::fs::File::open(path)
        .map(Stdio::from)
        .map_err(|e| format!("{}: {e}", path.display()))
}

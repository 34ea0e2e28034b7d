//! The seed's per-phase handoff: `{"data":{"results":[…],"all_passed","total","failed"},"text"}`.
//!
//! Decisions where the seed is silent:
//! - `results` lists every command of the phase, skipped ones included (`skipped: true`),
//!   so a reader sees the whole phase; `total` counts only commands that were attempted
//!   (run, or failed before running because of a bad reference or a runner error), as the
//!   seed defines it as "commands executed"; `failed` counts attempted commands that did
//!   not pass.
//! - `all_passed` is true only when nothing failed and nothing was skipped.
//! - `exit_code` is null when the command has none (signal, timeout, never started).
//! - Text lines: `✓ name (Nms)`; failures `✗ name — exit code N (Nms)`,
//!   `✗ name — timed out (Nms)`, `✗ name — killed by SIGKILL (Nms)`,
//!   `✗ name — interrupted (Nms)`, `✗ name — error: REASON (Nms)`;
//!   skipped `○ name — skipped (REASON)`. Summary `F of T commands failed.`, followed by
//!   ` S skipped.` when some were skipped.

use schemars::JsonSchema;
use serde::Serialize;

/// Result of one command, in the seed's shape plus the job's identity and logs.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CommandResult {
    pub name: String,
    /// Exited with code 0 (not timed out, not interrupted, not killed by a signal).
    pub pass: bool,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The sandboxed job that ran it (null when it never started).
    pub job_id: Option<String>,
    /// Signal name that ended it (`"SIGKILL"`), if any.
    pub signal: Option<String>,
    pub timed_out: bool,
    /// Stopped because the pipeline was interrupted (SIGINT/SIGTERM).
    pub interrupted: bool,
    /// Never started (an earlier command escalated, or the pipeline was interrupted).
    pub skipped: bool,
    /// Why it has no exit code: the runner's or a reference's error, or why it was skipped.
    pub reason: Option<String>,
    pub stdout_log_path: Option<String>,
    pub stderr_log_path: Option<String>,
    /// The job's resource accounting as the runner reports it.
    pub resources: Option<serde_json::Value>,
}

impl CommandResult {
    /// A command that was not started; `reason` says why.
    pub fn skipped(name: &str, reason: &str) -> Self {
        CommandResult {
            name: name.to_string(),
            pass: false,
            exit_code: None,
            duration_ms: 0,
            job_id: None,
            signal: None,
            timed_out: false,
            interrupted: false,
            skipped: true,
            reason: Some(reason.to_string()),
            stdout_log_path: None,
            stderr_log_path: None,
            resources: None,
        }
    }

    /// A command that failed before or while being launched (bad reference, runner error).
    pub fn not_run(name: &str, reason: String, duration_ms: u64) -> Self {
        CommandResult {
            skipped: false,
            reason: Some(reason),
            duration_ms,
            ..CommandResult::skipped(name, "")
        }
    }

    /// The line of the handoff text for this command.
    pub fn text_line(&self) -> String {
        let ms = self.duration_ms;
        let name = &self.name;
        if self.skipped {
            return match &self.reason {
                Some(r) => format!("○ {name} — skipped ({r})"),
                None => format!("○ {name} — skipped"),
            };
        }
        if self.pass {
            return format!("✓ {name} ({ms}ms)");
        }
        let why = if self.interrupted {
            "interrupted".to_string()
        } else if self.timed_out {
            "timed out".to_string()
        } else if let Some(sig) = &self.signal {
            format!("killed by {sig}")
        } else if let Some(code) = self.exit_code {
            format!("exit code {code}")
        } else if let Some(reason) = &self.reason {
            format!("error: {reason}")
        } else {
            "failed".to_string()
        };
        format!("✗ {name} — {why} ({ms}ms)")
    }
}

/// The `data` part of a handoff.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct HandoffData {
    pub results: Vec<CommandResult>,
    pub all_passed: bool,
    pub total: usize,
    pub failed: usize,
}

/// What a phase hands to the phases after it (and writes to `handoff/<phase>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Handoff {
    pub data: HandoffData,
    pub text: String,
}

impl Handoff {
    /// Builds the handoff of a phase from its command results, in order.
    pub fn from_results(results: Vec<CommandResult>) -> Handoff {
        let total = results.iter().filter(|r| !r.skipped).count();
        let failed = results.iter().filter(|r| !r.skipped && !r.pass).count();
        let skipped = results.len() - total;
        let mut text = String::from("## Exec Results\n\n");
        for r in &results {
            text.push_str(&r.text_line());
            text.push('\n');
        }
        text.push_str(&format!("\n{failed} of {total} commands failed."));
        if skipped > 0 {
            text.push_str(&format!(" {skipped} skipped."));
        }
        Handoff {
            data: HandoffData {
                all_passed: failed == 0 && skipped == 0,
                results,
                total,
                failed,
            },
            text,
        }
    }

    /// The handoff as JSON, the form references read from.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ran(name: &str, code: i32, ms: u64) -> CommandResult {
        CommandResult {
            pass: code == 0,
            exit_code: Some(code),
            reason: None,
            duration_ms: ms,
            job_id: Some(format!("job-{name}")),
            ..CommandResult::not_run(name, String::new(), 0)
        }
    }

    #[test]
    fn seed_example_shape_and_text() {
        let h = Handoff::from_results(vec![
            ran("unit-tests", 0, 4520),
            ran("integration-tests", 1, 12300),
        ]);
        assert_eq!(
            h.text,
            "## Exec Results\n\n✓ unit-tests (4520ms)\n✗ integration-tests — exit code 1 (12300ms)\n\n1 of 2 commands failed."
        );
        let v = h.to_value();
        assert_eq!(v["data"]["all_passed"], json!(false));
        assert_eq!(v["data"]["total"], json!(2));
        assert_eq!(v["data"]["failed"], json!(1));
        let first = &v["data"]["results"][0];
        assert_eq!(first["name"], json!("unit-tests"));
        assert_eq!(first["pass"], json!(true));
        assert_eq!(first["exit_code"], json!(0));
        assert_eq!(first["duration_ms"], json!(4520));
        assert_eq!(first["job_id"], json!("job-unit-tests"));
        // The seed's four fields come first, in the seed's order.
        let s = serde_json::to_string(&h).unwrap();
        assert!(
            s.starts_with(r#"{"data":{"results":[{"name":"unit-tests","pass":true,"exit_code":0,"duration_ms":4520,"#),
            "{s}"
        );
    }

    #[test]
    fn single_pass_text_matches_seed() {
        let h = Handoff::from_results(vec![ran("unit-tests", 0, 4520)]);
        assert_eq!(
            h.text,
            "## Exec Results\n\n✓ unit-tests (4520ms)\n\n0 of 1 commands failed."
        );
        assert!(h.data.all_passed);
    }

    #[test]
    fn timeout_signal_interrupt_error_and_skip_lines() {
        let timed = CommandResult {
            timed_out: true,
            pass: false,
            exit_code: None,
            signal: Some("SIGTERM".into()),
            ..ran("slow", 0, 2000)
        };
        let killed = CommandResult {
            signal: Some("SIGKILL".into()),
            pass: false,
            exit_code: None,
            ..ran("oom", 0, 5)
        };
        let stopped = CommandResult {
            interrupted: true,
            pass: false,
            ..ran("long", 143, 10)
        };
        let bad = CommandResult::not_run("check", "$(handoff.a.data.x): nope".into(), 0);
        let skip = CommandResult::skipped("after", "interrupted");
        let h = Handoff::from_results(vec![timed, killed, stopped, bad, skip]);
        assert_eq!(
            h.text,
            "## Exec Results\n\n\
             ✗ slow — timed out (2000ms)\n\
             ✗ oom — killed by SIGKILL (5ms)\n\
             ✗ long — interrupted (10ms)\n\
             ✗ check — error: $(handoff.a.data.x): nope (0ms)\n\
             ○ after — skipped (interrupted)\n\
             \n4 of 4 commands failed. 1 skipped."
        );
        assert_eq!(h.data.total, 4);
        assert_eq!(h.data.failed, 4);
        assert!(!h.data.all_passed);
    }
}

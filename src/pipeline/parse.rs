//! Reads the YAML node tree into raw (not yet cross-checked) phases and commands.
//!
//! Every local problem (unknown key, wrong type, bad duration, missing field) is
//! collected with its place; cross-phase checks live in `validate.rs`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ErrorCode;
use super::yaml::{Key, Node, NodeKind, Pos};
use crate::units::parse_duration;

const TOP_KEYS: &[&str] = &["phases", "policy", "max_parallel", "name", "description"];
const PHASE_KEYS: &[&str] = &[
    "name",
    "agent",
    "type",
    "depends_on",
    "commands",
    "policy",
    "timeout",
    "env",
    "cwd",
];
const COMMAND_KEYS: &[&str] = &[
    "name",
    "run",
    "escalate_on_fail",
    "policy",
    "timeout",
    "env",
    "cwd",
];

/// A located problem, turned into a `PipelineError` by the caller (which knows the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: Pos,
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Debug, Default)]
pub(crate) struct RawPipeline {
    pub policy: Option<String>,
    pub max_parallel: Option<usize>,
    pub phases: Vec<RawPhase>,
}

#[derive(Debug)]
pub(crate) struct RawPhase {
    /// Where the phase's mapping starts (its first key).
    pub pos: Pos,
    pub name: Option<(String, Pos)>,
    /// `Some(agent)` once known; only `exec` phases have their other keys read.
    pub agent: Option<String>,
    pub phase_type: String,
    pub depends_on: Vec<(String, Pos)>,
    pub commands: Vec<RawCommand>,
    pub policy: Option<String>,
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

impl RawPhase {
    pub fn is_exec(&self) -> bool {
        self.agent.as_deref() == Some("exec")
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(|(n, _)| n.as_str())
    }
}

#[derive(Debug)]
pub(crate) struct RawCommand {
    pub name: Option<(String, Pos)>,
    pub pos: Pos,
    /// `run` text, its position and byte offset in the source (to locate references).
    pub run: Option<(String, Pos, Option<usize>)>,
    pub escalate_on_fail: bool,
    pub policy: Option<String>,
    pub timeout: Option<Duration>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
}

/// Interprets the document root; problems are appended to `problems`.
pub(crate) fn read_pipeline(root: &Node, problems: &mut Vec<Problem>) -> RawPipeline {
    let mut cx = Cx { problems };
    let mut out = RawPipeline::default();
    let entries = match &root.kind {
        NodeKind::Map(entries) => entries,
        NodeKind::Null => {
            cx.push(
                Pos::START,
                ErrorCode::MissingField,
                "the file is empty; a pipeline needs a top-level `phases:` list".to_string(),
            );
            return out;
        }
        _ => {
            cx.push(
                root.pos,
                ErrorCode::InvalidType,
                format!(
                    "expected a mapping with a `phases:` list at the top level, found {}",
                    root.type_name()
                ),
            );
            return out;
        }
    };
    cx.unknown_keys(entries, TOP_KEYS, "the pipeline");
    for key in ["name", "description"] {
        if let Some(node) = get(entries, key) {
            cx.string(node, key);
        }
    }
    out.policy = get(entries, "policy").and_then(|n| cx.nonempty(n, "policy"));
    if let Some(node) = get(entries, "max_parallel") {
        out.max_parallel = match node.kind {
            NodeKind::Int(n) if n >= 1 => usize::try_from(n).ok(),
            NodeKind::Int(_) => {
                cx.push(
                    node.pos,
                    ErrorCode::InvalidValue,
                    "max_parallel must be at least 1".to_string(),
                );
                None
            }
            _ => cx.wrong_type(node, "max_parallel", "a positive integer"),
        };
    }
    match get(entries, "phases") {
        None => cx.push(
            root.pos,
            ErrorCode::MissingField,
            "missing top-level `phases:` list".to_string(),
        ),
        Some(node) => match &node.kind {
            NodeKind::Seq(items) if items.is_empty() => cx.push(
                node.pos,
                ErrorCode::InvalidValue,
                "`phases:` is empty; add at least one phase".to_string(),
            ),
            NodeKind::Seq(items) => {
                out.phases = items.iter().filter_map(|n| cx.phase(n)).collect();
            }
            _ => {
                cx.wrong_type::<()>(node, "phases", "a list of phases");
            }
        },
    }
    out
}

fn get<'a>(entries: &'a [(Key, Node)], key: &str) -> Option<&'a Node> {
    entries.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
}

fn key_pos(entries: &[(Key, Node)], key: &str) -> Option<Pos> {
    entries
        .iter()
        .find(|(k, _)| k.text == key)
        .map(|(k, _)| k.pos)
}

struct Cx<'p> {
    problems: &'p mut Vec<Problem>,
}

impl Cx<'_> {
    fn push(&mut self, pos: Pos, code: ErrorCode, message: String) {
        self.problems.push(Problem { pos, code, message });
    }

    fn wrong_type<T>(&mut self, node: &Node, what: &str, expected: &str) -> Option<T> {
        self.push(
            node.pos,
            ErrorCode::InvalidType,
            format!("`{what}` must be {expected}, found {}", node.type_name()),
        );
        None
    }

    fn unknown_keys(&mut self, entries: &[(Key, Node)], allowed: &[&str], owner: &str) {
        for (key, _) in entries {
            if allowed.contains(&key.text.as_str()) {
                continue;
            }
            let hint = suggestion(&key.text, allowed)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            self.push(
                key.pos,
                ErrorCode::UnknownKey,
                format!(
                    "unknown key `{}` in {owner} ({hint}known keys: {})",
                    key.text,
                    allowed.join(", ")
                ),
            );
        }
    }

    /// A text field; a plain number or boolean counts as the text written
    /// (`run: true` is the shell command `true`).
    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            NodeKind::Bool(_) | NodeKind::Int(_) | NodeKind::Float(_) => node.scalar_text(),
            _ => self.wrong_type(node, what, "a string"),
        }
    }

    fn nonempty(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = self.string(node, what)?;
        if s.trim().is_empty() {
            self.push(
                node.pos,
                ErrorCode::InvalidValue,
                format!("`{what}` must not be empty"),
            );
            return None;
        }
        Some(s)
    }

    fn timeout(&mut self, node: &Node) -> Option<Duration> {
        let parsed = match &node.kind {
            NodeKind::Str(s) => parse_duration(s).map_err(|e| e.to_string()),
            NodeKind::Int(n) if *n > 0 => Ok(Duration::from_secs(n.unsigned_abs())),
            NodeKind::Float(x) if *x > 0.0 => {
                Duration::try_from_secs_f64(*x).map_err(|_| format!("timeout {x} is out of range"))
            }
            NodeKind::Int(_) | NodeKind::Float(_) => {
                Err("timeout must be greater than zero".into())
            }
            _ => {
                return self.wrong_type(node, "timeout", "a duration (\"90s\", \"5m\") or seconds")
            }
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.push(
                    node.pos,
                    ErrorCode::InvalidValue,
                    "timeout must be greater than zero".to_string(),
                );
                None
            }
            Ok(d) => Some(d),
            Err(message) => {
                self.push(node.pos, ErrorCode::InvalidValue, message);
                None
            }
        }
    }

    fn env(&mut self, node: &Node) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let NodeKind::Map(entries) = &node.kind else {
            self.wrong_type::<()>(node, "env", "a mapping of NAME: value");
            return env;
        };
        for (key, value) in entries {
            if key.text.is_empty() || key.text.contains(['=', '\0']) {
                self.push(
                    key.pos,
                    ErrorCode::InvalidValue,
                    format!(
                        "environment variable name {:?} must be non-empty without '=' or NUL",
                        key.text
                    ),
                );
                continue;
            }
            match value.scalar_text() {
                Some(text) if !text.contains('\0') => {
                    env.insert(key.text.clone(), text);
                }
                Some(_) => self.push(
                    value.pos,
                    ErrorCode::InvalidValue,
                    format!("value of `{}` contains a NUL byte", key.text),
                ),
                None => {
                    self.wrong_type::<()>(
                        value,
                        &format!("env.{}", key.text),
                        "a string, number or boolean",
                    );
                }
            }
        }
        env
    }

    fn cwd(&mut self, node: &Node) -> Option<PathBuf> {
        self.nonempty(node, "cwd").map(PathBuf::from)
    }

    fn phase(&mut self, node: &Node) -> Option<RawPhase> {
        let NodeKind::Map(entries) = &node.kind else {
            return self.wrong_type(node, "each phase", "a mapping (`- name: …`)");
        };
        let name = match get(entries, "name") {
            Some(n) => self.nonempty(n, "name").map(|s| (s, n.pos)),
            None => {
                self.push(
                    node.pos,
                    ErrorCode::MissingField,
                    "phase has no `name`".to_string(),
                );
                None
            }
        };
        let label = match &name {
            Some((n, _)) => format!("phase {n:?}"),
            None => "phase".to_string(),
        };
        let agent = match get(entries, "agent") {
            Some(n) => self.nonempty(n, "agent").map(|a| (a, n.pos)),
            None => {
                self.push(
                    node.pos,
                    ErrorCode::MissingField,
                    format!("{label} has no `agent` (agent-exec runs `agent: exec` phases)"),
                );
                None
            }
        };
        let mut phase = RawPhase {
            pos: node.pos,
            name,
            agent: agent.as_ref().map(|(a, _)| a.clone()),
            phase_type: "standard".to_string(),
            depends_on: Vec::new(),
            commands: Vec::new(),
            policy: None,
            timeout: None,
            env: BTreeMap::new(),
            cwd: None,
        };
        if let Some(n) = get(entries, "depends_on") {
            phase.depends_on = self.depends_on(n);
        }
        match agent {
            Some((a, _)) if a == "exec" => {}
            Some((a, pos)) => {
                // The phase as a whole is rejected; its agent-specific keys (review:,
                // artifacts:, …) belong to another runner and are not judged here.
                self.push(
                    pos,
                    ErrorCode::UnsupportedAgent,
                    format!(
                        "{label} uses agent `{a}`; only `exec` phases run in agent-exec (run LLM or human phases with their own orchestrator)"
                    ),
                );
                return Some(phase);
            }
            None => return Some(phase),
        }
        self.unknown_keys(entries, PHASE_KEYS, &label);
        if let Some(n) = get(entries, "type") {
            if let Some(t) = self.nonempty(n, "type") {
                phase.phase_type = t;
            }
        }
        phase.policy = get(entries, "policy").and_then(|n| self.nonempty(n, "policy"));
        phase.timeout = get(entries, "timeout").and_then(|n| self.timeout(n));
        phase.env = get(entries, "env").map(|n| self.env(n)).unwrap_or_default();
        phase.cwd = get(entries, "cwd").and_then(|n| self.cwd(n));
        let missing = |cx: &mut Self, pos| {
            cx.push(
                pos,
                ErrorCode::MissingCommands,
                format!("exec {label} has no commands; add `commands:` with at least one `- name: …, run: …`"),
            )
        };
        match get(entries, "commands") {
            None => missing(self, node.pos),
            Some(n) => match &n.kind {
                NodeKind::Seq(items) if !items.is_empty() => {
                    phase.commands = items.iter().filter_map(|c| self.command(c)).collect();
                }
                NodeKind::Seq(_) | NodeKind::Null => {
                    missing(self, key_pos(entries, "commands").unwrap_or(n.pos))
                }
                _ => {
                    self.wrong_type::<()>(n, "commands", "a list of commands");
                }
            },
        }
        Some(phase)
    }

    fn depends_on(&mut self, node: &Node) -> Vec<(String, Pos)> {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Null => return Vec::new(),
            // A single name is accepted as a one-element list.
            NodeKind::Str(_) => vec![node],
            NodeKind::Seq(items) => items.iter().collect(),
            _ => {
                return self
                    .wrong_type(node, "depends_on", "a list of phase names")
                    .unwrap_or_default()
            }
        };
        let mut deps: Vec<(String, Pos)> = Vec::new();
        for item in items {
            if let Some(name) = self.nonempty(item, "depends_on entry") {
                if !deps.iter().any(|(d, _)| *d == name) {
                    deps.push((name, item.pos));
                }
            }
        }
        deps
    }

    fn command(&mut self, node: &Node) -> Option<RawCommand> {
        let NodeKind::Map(entries) = &node.kind else {
            return self.wrong_type(node, "each command", "a mapping (`- name: …, run: …`)");
        };
        let name = match get(entries, "name") {
            Some(n) => self.nonempty(n, "name").map(|s| (s, n.pos)),
            None => {
                self.push(
                    node.pos,
                    ErrorCode::MissingField,
                    "command has no `name`".to_string(),
                );
                None
            }
        };
        let label = match &name {
            Some((n, _)) => format!("command {n:?}"),
            None => "command".to_string(),
        };
        self.unknown_keys(entries, COMMAND_KEYS, &label);
        let run = match get(entries, "run") {
            Some(n) => self.nonempty(n, "run").map(|s| (s, n.pos, n.byte)),
            None => {
                self.push(
                    node.pos,
                    ErrorCode::MissingField,
                    format!("{label} has no `run` (the shell command line to execute)"),
                );
                None
            }
        };
        let escalate_on_fail = match get(entries, "escalate_on_fail") {
            None => false,
            Some(n) => match n.kind {
                NodeKind::Bool(b) => b,
                _ => self
                    .wrong_type(n, "escalate_on_fail", "true or false")
                    .unwrap_or(false),
            },
        };
        Some(RawCommand {
            name,
            pos: node.pos,
            run,
            escalate_on_fail,
            policy: get(entries, "policy").and_then(|n| self.nonempty(n, "policy")),
            timeout: get(entries, "timeout").and_then(|n| self.timeout(n)),
            env: get(entries, "env").map(|n| self.env(n)).unwrap_or_default(),
            cwd: get(entries, "cwd").and_then(|n| self.cwd(n)),
        })
    }
}

/// The closest known key within two edits, to turn a typo into a fix.
fn suggestion<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(suggestion("depend_on", PHASE_KEYS), Some("depends_on"));
        assert_eq!(suggestion("comands", PHASE_KEYS), Some("commands"));
        assert_eq!(suggestion("zzzzzz", PHASE_KEYS), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

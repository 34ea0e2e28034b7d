//! Compression views of a job's output (`--compress MODE`): what an agent
//! needs from thousands of lines, in a few. The logs stay whole on disk;
//! a view only shapes what the answer inlines.

pub mod test_runs;

use std::path::Path;

use serde::Serialize;

/// The views, by the names tumf/agent-exec gives them.
pub const MODES: &[&str] = &[
    "off", "route", "errors", "tests", "logs", "git", "json", "summary",
];

/// How much of a log a view reads: past it, its head and its tail.
const READ_CAP: u64 = 16 << 20;
/// Lines an `errors` view keeps.
const ERROR_LINES: usize = 80;

/// What a view made of the job's output.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Compression {
    /// The mode asked for.
    pub mode: String,
    /// The view that was applied (`route` picks one).
    pub detected_kind: String,
    /// False when the view would not be shorter than the output.
    pub applied: bool,
    pub stdout: String,
    pub stderr: String,
    pub stdout_original_bytes: u64,
    pub stderr_original_bytes: u64,
    pub stdout_compressed_bytes: u64,
    pub stderr_compressed_bytes: u64,
    /// What the view did, in order.
    pub strategy: Vec<String>,
    /// `tests`: the counts and failing tests, structured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tests: Option<test_runs::TestReport>,
}

/// Checks a `--compress` value.
pub fn check_mode(mode: &str) -> Result<(), String> {
    if MODES.contains(&mode) {
        Ok(())
    } else {
        Err(format!(
            "--compress {mode:?}: expected one of {}",
            MODES.join(", ")
        ))
    }
}

/// The view `mode` of the two logs; `None` for `off`.
pub fn compress(mode: &str, argv: &[String], stdout: &Path, stderr: &Path) -> Option<Compression> {
    if mode == "off" {
        return None;
    }
    let out = read(stdout);
    let err = read(stderr);
    let kind = if mode == "route" {
        route(argv, &out, &err)
    } else {
        mode
    };
    let mut c = Compression {
        mode: mode.to_string(),
        detected_kind: kind.to_string(),
        applied: true,
        stdout: String::new(),
        stderr: String::new(),
        stdout_original_bytes: out.len() as u64,
        stderr_original_bytes: err.len() as u64,
        stdout_compressed_bytes: 0,
        stderr_compressed_bytes: 0,
        strategy: Vec::new(),
        tests: None,
    };
    match kind {
        "tests" => {
            let report = test_runs::parse(&format!("{out}\n{err}"));
            match &report {
                Some(r) => {
                    c.stdout = test_runs::render(r);
                    c.strategy.push(format!("{}-test-summary", r.runner));
                }
                None => {
                    c.stdout = errors(&out);
                    c.stderr = errors(&err);
                    c.strategy.push("failure-focus".into());
                }
            }
            c.tests = report;
        }
        "errors" => {
            c.stdout = errors(&out);
            c.stderr = errors(&err);
            c.strategy.push("failure-focus".into());
        }
        "logs" => {
            c.stdout = dedupe(&out);
            c.stderr = dedupe(&err);
            c.strategy.push("dedupe-normalized-log-lines".into());
        }
        "json" => {
            c.stdout = json_shape(&out);
            c.stderr = summary(&err);
            c.strategy.push("json-structure".into());
        }
        "git" => {
            c.stdout = git(&out);
            c.stderr = summary(&err);
            c.strategy.push("git-summary".into());
        }
        _ => {
            c.stdout = summary(&out);
            c.stderr = summary(&err);
            c.strategy.push("bounded-summary".into());
        }
    }
    c.stdout_compressed_bytes = c.stdout.len() as u64;
    c.stderr_compressed_bytes = c.stderr.len() as u64;
    // A view no shorter than what it views is no use (the structured
    // tests report stays: it is the point of that view).
    let total_in = c.stdout_original_bytes + c.stderr_original_bytes;
    let total_out = c.stdout_compressed_bytes + c.stderr_compressed_bytes;
    if total_in > 0 && total_out >= total_in && c.tests.is_none() {
        c.applied = false;
        c.stdout.clear();
        c.stderr.clear();
        c.stdout_compressed_bytes = 0;
        c.stderr_compressed_bytes = 0;
        c.strategy = vec!["expansion-guard".into()];
    }
    Some(c)
}

fn read(path: &Path) -> String {
    match crate::output::excerpt::head_and_tail(path, READ_CAP, None) {
        Ok(e) => e.text,
        Err(_) => String::new(),
    }
}

/// Which view suits the command and its output.
fn route(argv: &[String], out: &str, err: &str) -> &'static str {
    // `sh -c "cargo test"`: the words of the script.
    let words: Vec<String> = match argv {
        [sh, flag, script, ..]
            if sh.ends_with("sh") && flag.starts_with('-') && flag.contains('c') =>
        {
            script.split_whitespace().map(str::to_string).collect()
        }
        _ => argv.to_vec(),
    };
    let base = |i: usize| {
        words
            .get(i)
            .map(|w| w.rsplit('/').next().unwrap_or(w).to_lowercase())
            .unwrap_or_default()
    };
    let has = |w: &str| words.iter().any(|x| x == w);
    match (base(0).as_str(), base(1).as_str()) {
        ("cargo", "test" | "nextest") | ("go", "test") | ("pytest" | "jest" | "vitest", _) => {
            return "tests"
        }
        ("python" | "python3", _) if has("pytest") => return "tests",
        ("npm" | "pnpm" | "yarn" | "npx" | "bun", _)
            if has("test") || has("vitest") || has("jest") =>
        {
            return "tests"
        }
        ("git", _) => return "git",
        ("jq", _) => return "json",
        _ => {}
    }
    let both = format!("{out}\n{err}");
    if test_runs::parse(&both).is_some() {
        return "tests";
    }
    let trimmed = out.trim_start();
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(out.trim()).is_ok()
    {
        return "json";
    }
    if repeated_share(out) > 0.3 {
        return "logs";
    }
    if !errors(&both).is_empty() && err.len() > out.len() {
        return "errors";
    }
    "summary"
}

/// First 10 and last 10 lines, the middle counted.
fn summary(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 20 && text.len() <= 2000 {
        return text.to_string();
    }
    let head = &lines[..10.min(lines.len())];
    let tail = &lines[lines.len().saturating_sub(10)..];
    format!(
        "{}\n… {} lines omitted …\n{}\n",
        head.join("\n"),
        lines.len().saturating_sub(20),
        tail.join("\n")
    )
}

/// Lines that speak of a failure.
fn errors(text: &str) -> String {
    const WORDS: &[&str] = &[
        "error",
        "failed",
        "failure",
        "panic",
        "traceback",
        "assert",
        "exception",
        "fatal",
    ];
    let mut out = String::new();
    for line in text
        .lines()
        .filter(|l| {
            let low = l.to_lowercase();
            WORDS.iter().any(|w| low.contains(w))
        })
        .take(ERROR_LINES)
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A line with its digits taken out: `took 12ms` and `took 9ms` are one.
fn normalized(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn repeated_share(text: &str) -> f64 {
    let lines: Vec<String> = text.lines().map(normalized).collect();
    if lines.len() < 20 {
        return 0.0;
    }
    let repeats = lines.windows(2).filter(|w| w[0] == w[1]).count();
    repeats as f64 / lines.len() as f64
}

/// Runs of lines alike but for their numbers become one line and a count.
fn dedupe(text: &str) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let key = normalized(lines[i]);
        let mut j = i + 1;
        while j < lines.len() && normalized(lines[j]) == key {
            j += 1;
        }
        out.push_str(lines[i]);
        if j - i > 1 {
            out.push_str(&format!(" (repeated {}x)", j - i));
        }
        out.push('\n');
        i = j;
    }
    out
}

/// The shape of a JSON document (or of each line of NDJSON).
fn json_shape(text: &str) -> String {
    fn shape(v: &serde_json::Value, depth: usize) -> String {
        use serde_json::Value;
        match v {
            Value::Object(m) if depth < 2 => format!(
                "{{{}}}",
                m.iter()
                    .take(20)
                    .map(|(k, v)| format!("{k}: {}", shape(v, depth + 1)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Object(m) => format!("object({} keys)", m.len()),
            Value::Array(a) => match a.first() {
                Some(first) => format!("array(len={}, item={})", a.len(), shape(first, depth + 1)),
                None => "array(len=0)".into(),
            },
            Value::String(_) => "string".into(),
            Value::Number(_) => "number".into(),
            Value::Bool(_) => "bool".into(),
            Value::Null => "null".into(),
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim()) {
        return shape(&v, 0) + "\n";
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shapes: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| shape(&v, 0))
        .collect();
    if shapes.is_empty() {
        return summary(text);
    }
    let mut out = format!("{} JSON lines\n", shapes.len());
    let mut seen = Vec::new();
    for s in shapes {
        if !seen.contains(&s) && seen.len() < 5 {
            out.push_str(&format!("{s}\n"));
            seen.push(s);
        }
    }
    out
}

/// `git status --short`, `git diff --stat` and the like: counted by kind.
fn git(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let status: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l.len() > 3 && l.as_bytes()[2] == b' ')
        .map(|l| (l[..2].trim(), l[3..].trim()))
        .filter(|(code, _)| !code.is_empty() && code.chars().all(|c| "MADRCU?!".contains(c)))
        .collect();
    if status.len() * 2 >= lines.len() && !status.is_empty() {
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for (code, _) in &status {
            match kinds.iter_mut().find(|(k, _)| k == code) {
                Some((_, n)) => *n += 1,
                None => kinds.push((code, 1)),
            }
        }
        let mut out = format!(
            "{} files: {}\n",
            status.len(),
            kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (code, path) in status.iter().take(30) {
            out.push_str(&format!("{code} {path}\n"));
        }
        return out;
    }
    let files: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .map(|l| l.split(" b/").next().unwrap_or(l))
        .collect();
    if !files.is_empty() {
        let added = lines
            .iter()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let removed = lines
            .iter()
            .filter(|l| l.starts_with('-') && !l.starts_with("---"))
            .count();
        return format!(
            "{} files changed, +{added} -{removed}\n{}\n",
            files.len(),
            files.join("\n")
        );
    }
    summary(text)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn the_route_follows_the_command_then_the_output() {
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(route(&words("cargo test"), "", ""), "tests");
        assert_eq!(route(&words("sh -c pytest -q"), "", ""), "tests");
        assert_eq!(route(&words("npm test"), "", ""), "tests");
        assert_eq!(route(&words("git status"), "", ""), "git");
        assert_eq!(route(&words("cat x"), "{\"a\": [1, 2]}", ""), "json");
        let noisy = "tick 1\n".repeat(10) + &"tick 22\n".repeat(30);
        assert_eq!(route(&words("./server"), &noisy, ""), "logs");
        assert_eq!(route(&words("echo hi"), "hi\n", ""), "summary");
    }

    #[test]
    fn views_shorten() {
        let noisy = "tick 1\n".repeat(10) + &"tick 22\n".repeat(30) + "done\n";
        assert_eq!(dedupe(&noisy), "tick 1 (repeated 40x)\ndone\n");
        let long: String = (1..=100).map(|i| format!("line {i}\n")).collect();
        let s = summary(&long);
        assert!(s.contains("line 10\n… 80 lines omitted …\nline 91"), "{s}");
        assert_eq!(
            json_shape("{\"a\": [1, 2], \"b\": {\"c\": true}}"),
            "{a: array(len=2, item=number), b: {c: bool}}\n"
        );
        assert_eq!(
            git(" M src/a.rs\n M src/b.rs\n?? new.txt\n"),
            "3 files: 2 M, 1 ??\nM src/a.rs\nM src/b.rs\n?? new.txt\n"
        );
        assert_eq!(errors("ok\nerror: bad\nfine\n"), "error: bad\n");
    }
}

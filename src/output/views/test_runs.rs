//! The `tests` view: counts and failing tests, read from the output of
//! cargo test, pytest, go test, jest and vitest, so that an agent reads
//! ten lines instead of ten thousand.

use serde::Serialize;

/// What a test run said about itself.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TestReport {
    /// `cargo`, `pytest`, `go`, `jest` or `vitest`.
    pub runner: &'static str,
    /// `null` when the runner does not say (go test without `-v`).
    pub passed: Option<u64>,
    pub failed: u64,
    pub skipped: Option<u64>,
    pub failures: Vec<Failure>,
}

/// One failing test and the first lines of its error.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Failure {
    pub name: String,
    pub first_lines: Vec<String>,
}

/// Lines of each failure's error kept.
const FIRST_LINES: usize = 6;

/// Reads a test run's output; `None` when no known runner wrote it.
pub fn parse(text: &str) -> Option<TestReport> {
    let lines: Vec<&str> = text.lines().map(strip_ansi_end).collect();
    cargo(&lines)
        .or_else(|| pytest(&lines))
        .or_else(|| jest(&lines))
        .or_else(|| vitest(&lines))
        .or_else(|| go(&lines))
}

/// Lines may end in `\r` (progress output).
fn strip_ansi_end(line: &str) -> &str {
    line.trim_end_matches('\r')
}

/// `N word` pairs of a summary: `2 failed, 1 passed` → [(2, failed), (1, passed)].
fn counts(text: &str) -> Vec<(u64, String)> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || ",;|().=".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter_map(|w| Some((w[0].parse().ok()?, w[1].to_lowercase())))
        .collect()
}

fn count_of(pairs: &[(u64, String)], names: &[&str]) -> Option<u64> {
    let found: Vec<u64> = pairs
        .iter()
        .filter(|(_, w)| names.contains(&w.as_str()))
        .map(|(n, _)| *n)
        .collect();
    (!found.is_empty()).then(|| found.iter().sum())
}

fn kept(lines: impl Iterator<Item = String>) -> Vec<String> {
    lines
        .map(|l| l.trim_end().to_string())
        .filter(|l| !l.trim().is_empty())
        .take(FIRST_LINES)
        .collect()
}

fn cargo(lines: &[&str]) -> Option<TestReport> {
    let results: Vec<Vec<(u64, String)>> = lines
        .iter()
        .filter_map(|l| l.trim_start().strip_prefix("test result: "))
        .map(counts)
        .collect();
    if results.is_empty() {
        return None;
    }
    let sum = |names: &[&str]| {
        results
            .iter()
            .filter_map(|r| count_of(r, names))
            .sum::<u64>()
    };
    let mut failures: Vec<Failure> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        {
            let body = lines[i + 1..]
                .iter()
                .take_while(|l| !l.starts_with("---- ") && **l != "failures:")
                .take_while(|l| !l.starts_with("stack backtrace:") && !l.starts_with("note: "));
            let first_lines = kept(body.map(|l| {
                // `thread 'x' (123) panicked at src/lib.rs:9:34:` → `panicked at src/lib.rs:9:34`
                match l.find("panicked at ") {
                    Some(at) if l.starts_with("thread '") => {
                        l[at..].trim_end_matches(':').to_string()
                    }
                    _ => l.to_string(),
                }
            }));
            failures.push(Failure {
                name: name.to_string(),
                first_lines,
            });
        }
        i += 1;
    }
    // A failure printed no block (its output was not captured): its line.
    for l in lines {
        if let Some(name) = l
            .strip_prefix("test ")
            .and_then(|r| r.strip_suffix(" ... FAILED"))
        {
            if !failures.iter().any(|f| f.name == name) {
                failures.push(Failure {
                    name: name.to_string(),
                    first_lines: Vec::new(),
                });
            }
        }
    }
    Some(TestReport {
        runner: "cargo",
        passed: Some(sum(&["passed"])),
        failed: sum(&["failed"]),
        skipped: Some(sum(&["ignored"])),
        failures,
    })
}

fn pytest(lines: &[&str]) -> Option<TestReport> {
    // `==== 2 failed, 1 passed, 1 skipped in 0.02s ====`
    let summary = lines.iter().rev().find(|l| {
        let t = l.trim();
        t.starts_with('=') && t.ends_with('=') && t.contains(" in ") && {
            let c = counts(t);
            count_of(&c, &["passed", "failed", "error", "errors", "skipped"]).is_some()
        }
    })?;
    let c = counts(summary);
    let mut failures = Vec::new();
    for l in lines {
        let Some(rest) = l
            .strip_prefix("FAILED ")
            .or_else(|| l.strip_prefix("ERROR "))
        else {
            continue;
        };
        let id = rest.split(" - ").next().unwrap_or(rest).trim().to_string();
        let short = id.rsplit("::").next().unwrap_or(&id).to_string();
        // Its section, `____ test_name ____`: the `E` lines, then where.
        let title = format!(" {short} ");
        let start = lines
            .iter()
            .position(|s| s.starts_with('_') && s.ends_with('_') && s.contains(&title));
        let first_lines = match start {
            Some(at) => {
                let section: Vec<&str> = lines[at + 1..]
                    .iter()
                    .take_while(|s| {
                        let rule = s.starts_with('_') && s.ends_with('_');
                        !rule && !s.starts_with('=')
                    })
                    .copied()
                    .collect();
                let errors = section
                    .iter()
                    .filter_map(|s| s.strip_prefix("E ").map(|e| e.trim().to_string()));
                let place = section
                    .iter()
                    .rev()
                    .find(|s| s.contains(".py:") && !s.starts_with(' '))
                    .map(|s| s.to_string());
                kept(errors.chain(place))
            }
            None => kept(rest.split(" - ").nth(1).map(str::to_string).into_iter()),
        };
        failures.push(Failure {
            name: id,
            first_lines,
        });
    }
    Some(TestReport {
        runner: "pytest",
        passed: Some(count_of(&c, &["passed"]).unwrap_or(0)),
        failed: count_of(&c, &["failed", "error", "errors"]).unwrap_or(0),
        skipped: Some(count_of(&c, &["skipped", "xfailed", "deselected"]).unwrap_or(0)),
        failures,
    })
}

fn jest(lines: &[&str]) -> Option<TestReport> {
    // `Tests:       2 failed, 1 skipped, 1 passed, 4 total`
    let summary = lines.iter().find_map(|l| l.strip_prefix("Tests:"))?;
    let c = counts(summary);
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.trim_start().strip_prefix("● ") else {
            continue;
        };
        let body = lines[i + 1..]
            .iter()
            .take_while(|s| !s.trim_start().starts_with("● "))
            // The code frame and the stack are where, not what.
            .take_while(|s| {
                let t = s.trim_start();
                !(t.starts_with('>') || t.starts_with("at ") || t.split('|').count() > 1)
            })
            .map(|s| s.trim().to_string());
        failures.push(Failure {
            name: name.replace(" › ", " > "),
            first_lines: kept(body),
        });
    }
    Some(TestReport {
        runner: "jest",
        passed: Some(count_of(&c, &["passed"]).unwrap_or(0)),
        failed: count_of(&c, &["failed"]).unwrap_or(0),
        skipped: Some(count_of(&c, &["skipped", "todo", "pending"]).unwrap_or(0)),
        failures,
    })
}

fn vitest(lines: &[&str]) -> Option<TestReport> {
    // `      Tests  2 failed | 1 passed | 1 skipped (4)`
    let summary = lines
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("Tests  "))?;
    let c = counts(summary);
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.trim_start().strip_prefix("FAIL  ") else {
            continue;
        };
        if !name.contains(" > ") {
            continue; // a file's header, not a test
        }
        let body = lines[i + 1..]
            .iter()
            .take_while(|s| {
                let t = s.trim_start();
                !t.starts_with('❯') && !t.starts_with('⎯') && !t.starts_with("FAIL  ")
            })
            .map(|s| s.to_string());
        failures.push(Failure {
            name: name.trim().to_string(),
            first_lines: kept(body),
        });
    }
    Some(TestReport {
        runner: "vitest",
        passed: Some(count_of(&c, &["passed"]).unwrap_or(0)),
        failed: count_of(&c, &["failed"]).unwrap_or(0),
        skipped: Some(count_of(&c, &["skipped", "todo"]).unwrap_or(0)),
        failures,
    })
}

fn go(lines: &[&str]) -> Option<TestReport> {
    let result = |l: &str, what: &str| -> Option<String> {
        let rest = l.trim_start().strip_prefix(what)?;
        Some(rest.split(" (").next().unwrap_or(rest).trim().to_string())
    };
    let known = lines.iter().any(|l| {
        let t = l.trim_start();
        t.starts_with("--- FAIL: ")
            || t.starts_with("--- PASS: ")
            || l.starts_with("ok  \t")
            || l.starts_with("ok \t")
            || l.starts_with("FAIL\t")
    });
    if !known {
        return None;
    }
    let passes = lines
        .iter()
        .filter(|l| result(l, "--- PASS: ").is_some())
        .count() as u64;
    let skips = lines
        .iter()
        .filter(|l| result(l, "--- SKIP: ").is_some())
        .count() as u64;
    let verbose = lines.iter().any(|l| l.starts_with("=== RUN"));
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = result(l, "--- FAIL: ") else {
            continue;
        };
        let message: Vec<String> = if verbose {
            // With -v the test's lines come before its verdict.
            let run = format!("=== RUN   {name}");
            let from = lines[..i]
                .iter()
                .rposition(|s| s.trim_start() == run)
                .map_or(i, |p| p + 1);
            lines[from..i]
                .iter()
                .filter(|s| s.starts_with("    ") && !s.trim_start().starts_with("==="))
                .map(|s| s.trim().to_string())
                .collect()
        } else {
            lines[i + 1..]
                .iter()
                .take_while(|s| s.starts_with("    ") && !s.trim_start().starts_with("--- "))
                .map(|s| s.trim().to_string())
                .collect()
        };
        failures.push(Failure {
            name,
            first_lines: kept(message.into_iter()),
        });
    }
    Some(TestReport {
        runner: "go",
        passed: verbose.then_some(passes),
        failed: failures.len() as u64,
        skipped: verbose.then_some(skips),
        failures,
    })
}

/// The report as a few lines of text (the view's `stdout`).
pub fn render(report: &TestReport) -> String {
    let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
    let mut out = format!(
        "{}: {} passed, {} failed, {} skipped\n",
        report.runner,
        n(report.passed),
        report.failed,
        n(report.skipped)
    );
    for f in &report.failures {
        out.push_str(&format!("FAILED {}\n", f.name));
        for l in &f.first_lines {
            out.push_str(&format!("    {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Output each runner printed for the same four tests (one passes,
    /// two fail, one is skipped): `tests/fixtures/test-output`, made by
    /// `scripts/make-test-fixtures.sh`.
    fn fixture(name: &str) -> String {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-output/");
        std::fs::read_to_string(format!("{dir}{name}")).unwrap_or_default()
    }

    fn both(stem: &str) -> String {
        fixture(&format!("{stem}.stdout")) + &fixture(&format!("{stem}.stderr"))
    }

    fn names(r: &TestReport) -> Vec<&str> {
        r.failures.iter().map(|f| f.name.as_str()).collect()
    }

    fn says(r: &TestReport, test: usize, text: &str) -> bool {
        r.failures[test]
            .first_lines
            .iter()
            .any(|l| l.contains(text))
    }

    #[test]
    fn cargo_test() {
        let r = parse(&both("cargo")).expect("cargo output");
        assert_eq!(r.runner, "cargo");
        assert_eq!((r.passed, r.failed, r.skipped), (Some(1), 2, Some(1)));
        assert_eq!(
            names(&r),
            ["tests::adds_negative_numbers", "tests::panics_plainly"]
        );
        assert!(says(&r, 0, "negatives add up"), "{r:#?}");
        assert!(says(&r, 0, "left: -3"), "{r:#?}");
        assert!(says(&r, 1, "boom: the widget is missing"), "{r:#?}");
        assert!(!says(&r, 1, "rust_begin_unwind"), "no backtrace: {r:#?}");
    }

    #[test]
    fn pytest() {
        let r = parse(&both("pytest")).expect("pytest output");
        assert_eq!(r.runner, "pytest");
        assert_eq!((r.passed, r.failed, r.skipped), (Some(1), 2, Some(1)));
        assert_eq!(
            names(&r),
            [
                "test_calc.py::test_adds_negative_numbers",
                "test_calc.py::test_raises_plainly"
            ]
        );
        assert!(says(&r, 0, "AssertionError: negatives add up"), "{r:#?}");
        assert!(says(&r, 0, "test_calc.py:10"), "{r:#?}");
        assert!(
            says(&r, 1, "ValueError: boom: the widget is missing"),
            "{r:#?}"
        );
    }

    #[test]
    fn go_test_with_and_without_v() {
        let r = parse(&both("go")).expect("go output");
        assert_eq!(r.runner, "go");
        assert_eq!((r.passed, r.failed, r.skipped), (None, 2, None));
        assert_eq!(names(&r), ["TestAddsNegativeNumbers", "TestPanicsPlainly"]);
        assert!(says(&r, 0, "negatives add up: got -3, want -4"), "{r:#?}");
        let v = parse(&both("go-v")).expect("go -v output");
        assert_eq!((v.passed, v.failed, v.skipped), (Some(1), 2, Some(1)));
        assert!(says(&v, 1, "boom: the widget is missing"), "{v:#?}");
        assert_eq!(v.failures[0].first_lines.len(), 1, "{v:#?}");
    }

    #[test]
    fn jest() {
        let r = parse(&both("jest")).expect("jest output");
        assert_eq!(r.runner, "jest");
        assert_eq!((r.passed, r.failed, r.skipped), (Some(1), 2, Some(1)));
        assert_eq!(
            names(&r),
            ["calc > adds negative numbers", "calc > throws plainly"]
        );
        assert!(says(&r, 0, "Expected: -4"), "{r:#?}");
        assert!(says(&r, 1, "boom: the widget is missing"), "{r:#?}");
    }

    #[test]
    fn vitest() {
        let r = parse(&both("vitest")).expect("vitest output");
        assert_eq!(r.runner, "vitest");
        assert_eq!((r.passed, r.failed, r.skipped), (Some(1), 2, Some(1)));
        assert_eq!(
            names(&r),
            [
                "calc.test.js > calc > adds negative numbers",
                "calc.test.js > calc > throws plainly"
            ]
        );
        assert!(
            says(&r, 0, "negatives add up: expected -3 to be -4"),
            "{r:#?}"
        );
        assert!(says(&r, 1, "Error: boom: the widget is missing"), "{r:#?}");
    }

    #[test]
    fn other_output_is_not_a_test_run() {
        assert_eq!(parse("hello\nworld\n"), None);
        assert_eq!(parse(""), None);
    }
}

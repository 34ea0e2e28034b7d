//! `$(handoff.PHASE.PATH)` references inside a command's `run`.
//!
//! A reference reads a scalar out of an upstream phase's handoff JSON, e.g.
//! `$(handoff.build.data.all_passed)` or `$(handoff.build.data.results.0.exit_code)`.
//! Any other `$(…)` is ordinary shell command substitution and is left alone.
//! Substitution is textual and verbatim (no shell quoting): the value lands in the
//! command line exactly as the JSON scalar reads (`true`, `0`, a string's content).

use std::collections::BTreeMap;
use std::fmt;

const OPEN: &str = "$(handoff.";

/// One well-formed reference found in a `run` string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The whole reference as written, e.g. `$(handoff.build.data.total)`.
    pub text: String,
    /// The upstream phase it reads from.
    pub phase: String,
    /// Path inside that phase's handoff, e.g. `["data", "results", "0", "pass"]`.
    pub path: Vec<String>,
    /// Byte offset of `$(` inside `run`.
    pub offset: usize,
}

/// A reference that is not well-formed; `offset` is the byte offset of `$(` in `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub offset: usize,
    pub text: String,
    pub message: String,
}

/// Finds every `$(handoff.…)` in `run`, reporting all malformed ones.
pub fn find_references(run: &str) -> (Vec<Reference>, Vec<SyntaxProblem>) {
    let mut refs = Vec::new();
    let mut problems = Vec::new();
    let mut from = 0;
    while let Some(found) = run[from..].find(OPEN) {
        let offset = from + found;
        let body_start = offset + OPEN.len();
        let Some(close) = run[body_start..].find(')') else {
            problems.push(SyntaxProblem {
                offset,
                text: run[offset..].to_string(),
                message: "reference is not closed with ')'".to_string(),
            });
            break;
        };
        let body = &run[body_start..body_start + close];
        let text = run[offset..body_start + close + 1].to_string();
        from = body_start + close + 1;
        match parse_body(body) {
            Ok((phase, path)) => refs.push(Reference {
                text,
                phase,
                path,
                offset,
            }),
            Err(message) => problems.push(SyntaxProblem {
                offset,
                text,
                message,
            }),
        }
    }
    (refs, problems)
}

fn parse_body(body: &str) -> Result<(String, Vec<String>), String> {
    let segments: Vec<&str> = body.split('.').collect();
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if let Some(bad) = segments.iter().find(|s| !valid(s)) {
        return Err(format!(
            "bad segment {bad:?}: expected $(handoff.PHASE.data.FIELD) with names made of letters, digits, '_' and '-'"
        ));
    }
    let (phase, path) = match segments.split_first() {
        Some((phase, path)) if !path.is_empty() => (phase, path),
        _ => {
            return Err(
                "a reference needs a phase and a path: $(handoff.PHASE.data.FIELD)".to_string(),
            )
        }
    };
    if path[0] != "data" && path[0] != "text" {
        let rest = path.join(".");
        return Err(format!(
            "a handoff has only `data` and `text`; did you mean $(handoff.{phase}.data.{rest})?"
        ));
    }
    Ok((
        phase.to_string(),
        path.iter().map(|s| s.to_string()).collect(),
    ))
}

/// Why a reference could not be replaced when its command was about to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// The phase produced no handoff (validation makes this unreachable for upstream phases).
    NoHandoff { reference: String, phase: String },
    /// The path leads nowhere; `at` is the part that was found.
    MissingField { reference: String, at: String },
    /// The value is a list or an object, which has no single textual form.
    NotScalar {
        reference: String,
        kind: &'static str,
    },
    /// The value is JSON null (e.g. the exit code of a command killed by a signal).
    Null { reference: String },
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::NoHandoff { reference, phase } => {
                write!(f, "{reference}: phase {phase:?} has no handoff")
            }
            ReferenceError::MissingField { reference, at } => write!(
                f,
                "{reference}: no such field in the handoff (found up to `{at}`)"
            ),
            ReferenceError::NotScalar { reference, kind } => write!(
                f,
                "{reference}: value is {kind}, not a string, number or boolean; point at one field"
            ),
            ReferenceError::Null { reference } => {
                write!(f, "{reference}: value is null, nothing to substitute")
            }
        }
    }
}

impl std::error::Error for ReferenceError {}

/// Replaces every reference in `run` with the scalar it names in `handoffs`
/// (phase name → handoff JSON). Fails on the first reference that has no scalar value.
pub fn substitute(
    run: &str,
    refs: &[Reference],
    handoffs: &BTreeMap<String, serde_json::Value>,
) -> Result<String, ReferenceError> {
    let mut out = String::with_capacity(run.len());
    let mut copied = 0;
    for r in refs {
        let value = resolve(r, handoffs)?;
        out.push_str(&run[copied..r.offset]);
        out.push_str(&value);
        copied = r.offset + r.text.len();
    }
    out.push_str(&run[copied..]);
    Ok(out)
}

fn resolve(
    r: &Reference,
    handoffs: &BTreeMap<String, serde_json::Value>,
) -> Result<String, ReferenceError> {
    use serde_json::Value;
    let mut value = handoffs
        .get(&r.phase)
        .ok_or_else(|| ReferenceError::NoHandoff {
            reference: r.text.clone(),
            phase: r.phase.clone(),
        })?;
    let mut walked = format!("handoff.{}", r.phase);
    for seg in &r.path {
        let next = match value {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| ReferenceError::MissingField {
            reference: r.text.clone(),
            at: walked.clone(),
        })?;
        walked.push('.');
        walked.push_str(seg);
    }
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Err(ReferenceError::Null {
            reference: r.text.clone(),
        }),
        Value::Array(_) => Err(ReferenceError::NotScalar {
            reference: r.text.clone(),
            kind: "a list",
        }),
        Value::Object(_) => Err(ReferenceError::NotScalar {
            reference: r.text.clone(),
            kind: "an object",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn handoffs() -> BTreeMap<String, serde_json::Value> {
        let mut m = BTreeMap::new();
        m.insert(
            "build".to_string(),
            json!({"data":{"results":[{"name":"make","pass":true,"exit_code":0,"duration_ms":7,"signal":null}],
                   "all_passed":true,"total":1,"failed":0},"text":"## Exec Results"}),
        );
        m
    }

    fn subst(run: &str) -> Result<String, ReferenceError> {
        let (refs, problems) = find_references(run);
        assert!(problems.is_empty(), "{problems:?}");
        substitute(run, &refs, &handoffs())
    }

    #[test]
    fn finds_references_and_leaves_shell_substitution_alone() {
        let run = "echo $(date) $(handoff.build.data.total) x$(handoff.build.data.results.0.pass)";
        let (refs, problems) = find_references(run);
        assert!(problems.is_empty());
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].phase, "build");
        assert_eq!(refs[0].path, ["data", "total"]);
        assert_eq!(refs[0].offset, 13);
        assert_eq!(refs[1].path, ["data", "results", "0", "pass"]);
    }

    #[test]
    fn substitutes_scalars_verbatim() {
        assert_eq!(
            subst("test $(handoff.build.data.all_passed) = true").unwrap(),
            "test true = true"
        );
        assert_eq!(
            subst("n=$(handoff.build.data.failed);c=$(handoff.build.data.results.0.exit_code)")
                .unwrap(),
            "n=0;c=0"
        );
        assert_eq!(
            subst("echo '$(handoff.build.data.results.0.name)'").unwrap(),
            "echo 'make'"
        );
        assert_eq!(subst("plain").unwrap(), "plain");
    }

    #[test]
    fn missing_null_and_non_scalar_values_are_errors() {
        let e = subst("echo $(handoff.build.data.nope)").unwrap_err();
        assert_eq!(
            e.to_string(),
            "$(handoff.build.data.nope): no such field in the handoff (found up to `handoff.build.data`)"
        );
        assert!(matches!(
            subst("$(handoff.build.data.results.3.pass)"),
            Err(ReferenceError::MissingField { .. })
        ));
        assert!(matches!(
            subst("$(handoff.build.data.results)"),
            Err(ReferenceError::NotScalar { kind: "a list", .. })
        ));
        assert!(matches!(
            subst("$(handoff.build.data.results.0.signal)"),
            Err(ReferenceError::Null { .. })
        ));
    }

    #[test]
    fn malformed_references_are_reported_with_offsets() {
        let (refs, problems) =
            find_references("a $(handoff.build) b $(handoff.build.all_passed) $(handoff.x.data");
        assert!(refs.is_empty());
        assert_eq!(problems.len(), 3);
        assert_eq!(problems[0].offset, 2);
        assert!(problems[1]
            .message
            .contains("did you mean $(handoff.build.data.all_passed)?"));
        assert_eq!(problems[2].message, "reference is not closed with ')'");
        let (_, problems) = find_references("$(handoff.a b.data.x)");
        assert!(problems[0].message.starts_with("bad segment \"a b\""));
    }
}

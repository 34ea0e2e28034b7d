//! `validate`: parse a pipeline file and check it as a whole, reporting every problem.

use std::collections::BTreeMap;
use std::path::Path;

use super::dag;
use super::error::{ErrorCode, PipelineError};
use super::model::{Command, Phase, ValidatedPipeline};
use super::parse::{read_pipeline, Problem, RawPhase};
use super::references::find_references;
use super::yaml::{parse_document, Pos};

/// Reads and validates the pipeline at `path`. On failure returns every problem found,
/// sorted by position (a YAML syntax error stops the check: nothing after it is reliable).
pub fn validate(path: &Path) -> Result<ValidatedPipeline, Vec<PipelineError>> {
    let file = path.display().to_string();
    match read_capped(path) {
        Ok(text) => validate_str(&file, &text),
        Err(e) => Err(vec![PipelineError {
            file,
            line: 0,
            column: 0,
            code: ErrorCode::Io,
            message: format!("cannot read the pipeline file: {e}"),
        }]),
    }
}

/// Largest pipeline file: a pipeline is a page of YAML, not data.
const MAX_PIPELINE_BYTES: u64 = 1 << 20;

/// The file's text: a regular file (never a FIFO or a device, which could
/// block or never end) of at most [`MAX_PIPELINE_BYTES`].
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_PIPELINE_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_PIPELINE_BYTES} bytes"
        )));
    }
    let mut text = String::new();
    file.take(MAX_PIPELINE_BYTES + 1)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Validates pipeline `text`; `file` is only used to label errors and the result.
pub fn validate_str(file: &str, text: &str) -> Result<ValidatedPipeline, Vec<PipelineError>> {
    let to_error = |p: Problem| PipelineError {
        file: file.to_string(),
        line: p.pos.line,
        column: p.pos.column,
        code: p.code,
        message: p.message,
    };
    let root = match parse_document(text) {
        Ok(root) => root,
        Err(e) => {
            return Err(vec![to_error(Problem {
                pos: e.pos,
                code: ErrorCode::YamlSyntax,
                message: format!("invalid YAML: {}", e.message),
            })])
        }
    };
    let mut problems = Vec::new();
    let raw = read_pipeline(&root, &mut problems);
    let phases = &raw.phases;

    // Name → index of its first definition; later duplicates are errors.
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, phase) in phases.iter().enumerate() {
        let Some((name, pos)) = &phase.name else {
            continue;
        };
        if let Some(&first) = index.get(name.as_str()) {
            problems.push(Problem {
                pos: *pos,
                code: ErrorCode::DuplicatePhase,
                message: format!(
                    "phase {name:?} is defined twice (first at line {}); phase names must be unique",
                    phases[first].pos.line
                ),
            });
        } else {
            index.insert(name, i);
            if phase.is_exec() && !valid_phase_name(name) {
                problems.push(Problem {
                    pos: *pos,
                    code: ErrorCode::InvalidName,
                    message: format!(
                        "phase name {name:?} may only contain letters, digits, '_' and '-' (it appears in $(handoff.NAME.…) and as a file name)"
                    ),
                });
            }
        }
    }

    // Edges of every phase, exec or not, so that cycles are found wherever they are.
    // A dependency on a rejected (non-exec) phase is not reported again: that phase
    // already has its own error and fixing it fixes the dependency.
    let all_names: Vec<&str> = index.keys().copied().collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); phases.len()];
    for (i, phase) in phases.iter().enumerate() {
        for (dep, pos) in &phase.depends_on {
            match index.get(dep.as_str()) {
                Some(&d) => deps[i].push(d),
                None if phase.is_exec() => problems.push(Problem {
                    pos: *pos,
                    code: ErrorCode::UnknownDependency,
                    message: format!(
                        "{} depends on {dep:?}, which is not a phase of this file (phases: {})",
                        label(phase),
                        all_names.join(", ")
                    ),
                }),
                None => {}
            }
        }
    }
    for cycle in dag::cycles(&deps) {
        let first = &phases[cycle[0]];
        let next = phases[*cycle.get(1).unwrap_or(&cycle[0])]
            .name()
            .unwrap_or("");
        let pos = first
            .depends_on
            .iter()
            .find(|(d, _)| d == next)
            .map_or(first.pos, |(_, p)| *p);
        let mut names: Vec<&str> = cycle
            .iter()
            .map(|&i| phases[i].name().unwrap_or("?"))
            .collect();
        names.push(names[0]);
        problems.push(Problem {
            pos,
            code: ErrorCode::DependencyCycle,
            message: format!(
                "dependency cycle: {} (each phase depends on the next); remove one of these depends_on entries",
                names.join(" -> ")
            ),
        });
    }

    let mut commands_of: Vec<Vec<Command>> = Vec::with_capacity(phases.len());
    for (i, phase) in phases.iter().enumerate() {
        commands_of.push(check_commands(text, i, phase, &index, &deps, &mut problems));
    }

    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.pos.line, p.pos.column));
        problems.dedup();
        return Err(problems.into_iter().map(to_error).collect());
    }
    // No problems means every phase is exec, named, and the graph is acyclic.
    let order = dag::topo_order(&deps).unwrap_or_else(|| (0..phases.len()).collect());
    let mut commands_of: Vec<Option<Vec<Command>>> = commands_of.into_iter().map(Some).collect();
    let phases = order
        .into_iter()
        .map(|i| {
            let raw = &phases[i];
            Phase {
                name: raw.name().unwrap_or_default().to_string(),
                phase_type: raw.phase_type.clone(),
                depends_on: raw.depends_on.iter().map(|(d, _)| d.clone()).collect(),
                commands: commands_of[i].take().unwrap_or_default(),
                policy: raw.policy.clone(),
                timeout: raw.timeout,
                env: raw.env.clone(),
                cwd: raw.cwd.clone(),
                line: raw.pos.line,
            }
        })
        .collect();
    Ok(ValidatedPipeline {
        file: file.to_string(),
        policy: raw.policy,
        max_parallel: raw.max_parallel,
        phases,
    })
}

fn label(phase: &RawPhase) -> String {
    match phase.name() {
        Some(n) => format!("phase {n:?}"),
        None => "phase".to_string(),
    }
}

fn valid_phase_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Duplicate command names and `$(handoff.…)` references of one exec phase.
fn check_commands(
    text: &str,
    i: usize,
    phase: &RawPhase,
    index: &BTreeMap<&str, usize>,
    deps: &[Vec<usize>],
    problems: &mut Vec<Problem>,
) -> Vec<Command> {
    if !phase.is_exec() {
        return Vec::new();
    }
    let upstream = dag::ancestors(i, deps);
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for cmd in &phase.commands {
        if let Some((name, pos)) = &cmd.name {
            if let Some(first_line) = seen.get(name.as_str()) {
                problems.push(Problem {
                    pos: *pos,
                    code: ErrorCode::DuplicateCommand,
                    message: format!(
                        "command {name:?} is defined twice in {} (first at line {first_line}); command names must be unique within a phase",
                        label(phase)
                    ),
                });
            } else {
                seen.insert(name, pos.line);
            }
        }
        let Some((run, run_pos, run_byte)) = &cmd.run else {
            continue;
        };
        let (refs, syntax) = find_references(run);
        let locator = Locator::new(text, run, *run_pos, *run_byte);
        for bad in syntax {
            problems.push(Problem {
                pos: locator.find(&bad.text, bad.offset),
                code: ErrorCode::BadReference,
                message: format!("bad reference {}: {}", bad.text, bad.message),
            });
        }
        for r in &refs {
            let pos = locator.find(&r.text, r.offset);
            match index.get(r.phase.as_str()) {
                None => problems.push(Problem {
                    pos,
                    code: ErrorCode::UnknownPhaseReference,
                    message: format!(
                        "{} refers to phase {:?}, which is not a phase of this file",
                        r.text, r.phase
                    ),
                }),
                Some(p) if !upstream.contains(p) => problems.push(Problem {
                    pos,
                    code: ErrorCode::ReferenceNotUpstream,
                    message: format!(
                        "{} reads the handoff of phase {:?}, which is not upstream of {}; add it to depends_on (directly or through another phase)",
                        r.text,
                        r.phase,
                        label(phase)
                    ),
                }),
                Some(_) => {}
            }
        }
        out.push(Command {
            name: cmd
                .name
                .as_ref()
                .map(|(n, _)| n.clone())
                .unwrap_or_default(),
            run: run.clone(),
            escalate_on_fail: cmd.escalate_on_fail,
            policy: cmd.policy.clone(),
            timeout: cmd.timeout,
            env: cmd.env.clone(),
            cwd: cmd.cwd.clone(),
            references: refs,
            line: cmd.pos.line,
        });
    }
    out
}

/// Finds reference texts in the source, starting where the `run` value starts, so
/// errors point at the reference itself (quoted or not, on any line).
struct Locator<'t> {
    text: &'t str,
    run: &'t str,
    fallback: Pos,
    from: Option<usize>,
}

impl<'t> Locator<'t> {
    fn new(text: &'t str, run: &'t str, fallback: Pos, from: Option<usize>) -> Self {
        Locator {
            text,
            run,
            fallback,
            from: from.filter(|&b| text.is_char_boundary(b)),
        }
    }

    /// Position of the reference `needle` found at byte `offset` of `run`: the same
    /// occurrence (first, second, …) of that text after the value's start.
    fn find(&self, needle: &str, offset: usize) -> Pos {
        let nth = self.run[..offset].matches(needle).count();
        let Some(from) = self.from else {
            return self.fallback;
        };
        let Some((found, _)) = self.text[from..].match_indices(needle).nth(nth) else {
            // Escapes or folding changed the text; the value's start is the best we know.
            return self.fallback;
        };
        let before = &self.text[..from + found];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX),
            column: u32::try_from(before[line_start..].chars().count() + 1).unwrap_or(u32::MAX),
        }
    }
}

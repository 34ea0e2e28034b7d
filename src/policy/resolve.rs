//! Finding a policy by name or path, following `extends`, and listing
//! what is available.
//!
//! Lookup: an argument containing `/` or ending in `.toml` is a file path;
//! anything else is a name, looked up first in the host directory
//! (`NAME.toml`, shadowing the built-in of that name), then among the
//! built-ins. Built-ins extend only built-ins, and a host policy that
//! extends its own name gets the built-in it shadows.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use super::builtin::{builtin_names, builtin_text};
use super::error::{PolicyError, PolicyErrorKind};
use super::model::{Policy, PolicySource};
use super::parse::parse_policy;
use super::reader::Doc;
use super::validate::validate;

/// Where host configuration lives. Carried explicitly (rather than read
/// from the environment inside the module) so that tests need no env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySources {
    /// Directory of host policies (`NAME.toml`).
    pub host_dir: PathBuf,
    /// The host floor file; a missing file means no floor.
    pub floor_path: PathBuf,
}

impl PolicySources {
    pub const DEFAULT_HOST_DIR: &'static str = "/etc/agent-exec/policies";
    pub const DEFAULT_FLOOR: &'static str = "/etc/agent-exec/floor.toml";

    pub fn new(host_dir: impl Into<PathBuf>, floor_path: impl Into<PathBuf>) -> Self {
        PolicySources {
            host_dir: host_dir.into(),
            floor_path: floor_path.into(),
        }
    }

    /// The defaults, overridden by `AGENT_EXEC_POLICY_DIR` and
    /// `AGENT_EXEC_FLOOR` when set and non-empty, except on a host whose
    /// administrator installed `/etc/agent-exec/floor.toml` (see
    /// [`PolicySources::from_vars`]).
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var_os("AGENT_EXEC_POLICY_DIR"),
            std::env::var_os("AGENT_EXEC_FLOOR"),
            may_exist(Path::new(Self::DEFAULT_FLOOR)),
        )
    }

    /// `from_env` without the environment. When the default floor file
    /// exists both variables are ignored: otherwise any user could point
    /// the floor at an empty file, or shadow an allowed policy name with
    /// their own directory, and walk past the administrator's limits.
    pub fn from_vars(
        policy_dir: Option<OsString>,
        floor: Option<OsString>,
        default_floor_exists: bool,
    ) -> Self {
        let pick = |var: Option<OsString>, default: &str| match var {
            Some(v) if !v.is_empty() && !default_floor_exists => PathBuf::from(v),
            _ => PathBuf::from(default),
        };
        PolicySources {
            host_dir: pick(policy_dir, Self::DEFAULT_HOST_DIR),
            floor_path: pick(floor, Self::DEFAULT_FLOOR),
        }
    }
}

/// Whether a file may be there: only "no such file" says it is not. A
/// floor the caller may not even look at (a directory it cannot search)
/// is there, and reading it then fails: an error, never "no floor".
pub(crate) fn may_exist(path: &Path) -> bool {
    !matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound)
}

/// One row of `policy list`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PolicyListEntry {
    pub name: String,
    pub source: PolicySource,
    pub description: String,
    /// A host file of this name hides the built-in.
    pub shadows_builtin: bool,
    /// Why the policy cannot be used, when it cannot.
    pub error: Option<String>,
}

/// Longest `extends` chain followed before giving up.
const MAX_DEPTH: usize = 16;
/// Policy files are small; the cap keeps `--policy /dev/zero` from hanging.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A policy file found but not yet read.
#[derive(Debug, Clone)]
enum Origin {
    Builtin(&'static str, &'static str),
    Host(String, PathBuf),
    File(PathBuf),
}

impl Origin {
    /// Identity for cycle detection and the name errors are reported under.
    fn label(&self) -> String {
        match self {
            Origin::Builtin(name, _) => format!("builtin:{name}.toml"),
            Origin::Host(_, path) | Origin::File(path) => path.display().to_string(),
        }
    }

    fn name(&self) -> String {
        match self {
            Origin::Builtin(name, _) => (*name).to_string(),
            Origin::Host(name, _) => name.clone(),
            Origin::File(path) => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    fn source(&self) -> PolicySource {
        match self {
            Origin::Builtin(..) => PolicySource::Builtin,
            Origin::Host(_, path) => PolicySource::Host { path: path.clone() },
            Origin::File(path) => PolicySource::File { path: path.clone() },
        }
    }

    fn text(&self) -> Result<String, PolicyError> {
        match self {
            Origin::Builtin(_, text) => Ok((*text).to_string()),
            Origin::Host(_, path) | Origin::File(path) => read_capped(path, "policy file"),
        }
    }
}

/// Reads a small text file; `what` names it in errors ("policy file").
pub(crate) fn read_capped(path: &Path, what: &str) -> Result<String, PolicyError> {
    let label = path.display().to_string();
    let io = |e: std::io::Error| {
        let kind = if e.kind() == ErrorKind::NotFound {
            PolicyErrorKind::NotFound
        } else {
            PolicyErrorKind::Io
        };
        PolicyError::unpositioned(&label, kind, format!("cannot read {what}: {e}"))
    };
    let file = fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(PolicyError::unpositioned(
            &label,
            PolicyErrorKind::Io,
            format!("{what} is larger than 1 MiB"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let mut err = PolicyError::at(
            &label,
            "",
            &(0..0),
            "",
            PolicyErrorKind::Syntax,
            format!("{what} is not valid UTF-8"),
        );
        let valid = e.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
        let (line, column) = super::error::line_column(&text, valid);
        err.line = line;
        err.column = column;
        err
    })
}

fn is_path(arg: &str) -> bool {
    arg.contains('/') || arg.ends_with(".toml")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Finds `arg` without reading it. `builtin_only` skips the host
/// directory and paths; `relative_to` anchors relative paths.
fn locate(
    arg: &str,
    sources: &PolicySources,
    builtin_only: bool,
    relative_to: Option<&Path>,
) -> Result<Origin, (PolicyErrorKind, String)> {
    if is_path(arg) {
        if builtin_only {
            return Err((
                PolicyErrorKind::BadValue,
                format!("{arg:?}: a built-in policy can only extend another built-in"),
            ));
        }
        let path = match relative_to {
            Some(dir) if Path::new(arg).is_relative() => dir.join(arg),
            _ => PathBuf::from(arg),
        };
        let path = std::path::absolute(&path).unwrap_or(path);
        return Ok(Origin::File(path));
    }
    if !valid_name(arg) {
        return Err((
            PolicyErrorKind::BadValue,
            format!("invalid policy name {arg:?} (letters, digits, '-', '_', '.'; or a path to a .toml file)"),
        ));
    }
    if !builtin_only {
        let path = sources.host_dir.join(format!("{arg}.toml"));
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => return Ok(Origin::Host(arg.to_string(), path)),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => {
                return Err((
                    PolicyErrorKind::Io,
                    format!("cannot look up host policy {}: {e}", path.display()),
                ))
            }
        }
    }
    match builtin_text(arg) {
        Some((name, text)) => Ok(Origin::Builtin(name, text)),
        None => Err((
            PolicyErrorKind::NotFound,
            format!(
                "no policy named {arg:?} (built-in: {}; host policies: {}/NAME.toml)",
                builtin_names().collect::<Vec<_>>().join(", "),
                sources.host_dir.display()
            ),
        )),
    }
}

/// Loads the policy named or pointed to by `name_or_path`, with its whole
/// `extends` chain merged and every file validated.
pub fn resolve(name_or_path: &str, sources: &PolicySources) -> Result<Policy, PolicyError> {
    let origin = locate(name_or_path, sources, false, None)
        .map_err(|(kind, message)| PolicyError::unpositioned("", kind, message))?;
    let text = origin.text()?;
    load(&origin, &text, sources, &mut Vec::new())
}

fn load(
    origin: &Origin,
    text: &str,
    sources: &PolicySources,
    chain: &mut Vec<String>,
) -> Result<Policy, PolicyError> {
    let label = origin.label();
    let doc = Doc { name: &label, text };
    let file = parse_policy(&doc)?;
    chain.push(label.clone());

    let (base, inherits) = match &file.extends {
        None => (Policy::base(), Vec::new()),
        Some((parent_arg, span)) => {
            let builtin_only = match origin {
                Origin::Builtin(..) => true,
                Origin::Host(name, _) => name == parent_arg,
                Origin::File(_) => false,
            };
            let dir = match origin {
                Origin::Host(_, path) | Origin::File(path) => path.parent(),
                Origin::Builtin(..) => None,
            };
            let parent = locate(parent_arg, sources, builtin_only, dir)
                .map_err(|(kind, message)| doc.error(span, "extends", kind, message))?;
            let parent_label = parent.label();
            if chain.contains(&parent_label) {
                let mut cycle = chain.clone();
                cycle.push(parent_label);
                return Err(doc.error(
                    span,
                    "extends",
                    PolicyErrorKind::Cycle,
                    format!("extends cycle: {}", cycle.join(" -> ")),
                ));
            }
            if chain.len() >= MAX_DEPTH {
                return Err(doc.error(
                    span,
                    "extends",
                    PolicyErrorKind::Cycle,
                    format!("extends chain is deeper than {MAX_DEPTH} files"),
                ));
            }
            // A missing or unreadable parent is the extending file's error.
            let parent_text = parent
                .text()
                .map_err(|e| doc.error(span, "extends", e.kind, e.to_string()))?;
            let base = load(&parent, &parent_text, sources, chain)?;
            let mut inherits = vec![base.name.clone()];
            inherits.extend(base.inherits.iter().cloned());
            (base, inherits)
        }
    };
    chain.pop();

    let mut policy = file.apply(base);
    policy.name = origin.name();
    policy.source = origin.source();
    policy.inherits = inherits;
    validate(&policy, &doc, &file.spans)?;
    Ok(policy)
}

/// Every built-in and host policy, sorted by name. A host policy that
/// fails to load is listed with its error rather than failing the list.
pub fn list(sources: &PolicySources) -> Result<Vec<PolicyListEntry>, PolicyError> {
    let mut names: BTreeSet<String> = builtin_names().map(str::to_string).collect();
    let mut host: BTreeSet<String> = BTreeSet::new();
    match fs::read_dir(&sources.host_dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".toml"))
                else {
                    continue;
                };
                if valid_name(name) && path.is_file() {
                    host.insert(name.to_string());
                    names.insert(name.to_string());
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(PolicyError::unpositioned(
                sources.host_dir.display().to_string(),
                PolicyErrorKind::Io,
                format!("cannot list host policies: {e}"),
            ))
        }
    }
    Ok(names
        .into_iter()
        .map(|name| {
            let is_host = host.contains(&name);
            let source = if is_host {
                PolicySource::Host {
                    path: sources.host_dir.join(format!("{name}.toml")),
                }
            } else {
                PolicySource::Builtin
            };
            let shadows_builtin = is_host && builtin_text(&name).is_some();
            match resolve(&name, sources) {
                Ok(p) => PolicyListEntry {
                    name,
                    source,
                    description: p.description,
                    shadows_builtin,
                    error: None,
                },
                Err(e) => PolicyListEntry {
                    name,
                    source,
                    description: String::new(),
                    shadows_builtin,
                    error: Some(e.to_string()),
                },
            }
        })
        .collect())
}

//! Path templates in policies (`/usr`, `$CWD`, `$HOME/.cargo`) and their
//! expansion into the absolute paths the sandbox opens.
//!
//! Templates are checked when a file is read: a relative path would depend
//! on whatever directory the supervisor happens to run in, and `..` would
//! let a path look like it lies under a floor's writable directory while
//! pointing elsewhere.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::Serialize;

use super::model::Policy;

/// Variables a template may start with.
pub const PATH_VARS: [&str; 4] = ["CWD", "HOME", "JOB_DIR", "TMPDIR"];

/// Checks one template and returns it normalised (no `.` components, no
/// trailing slash); the error is a sentence for the user.
pub(crate) fn check_template(field: &str, text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if text.contains('\0') {
        return Err(format!("{field} must not contain a NUL byte"));
    }
    if let Some(rest) = text.strip_prefix('$') {
        let name = rest.split('/').next().unwrap_or_default();
        if !PATH_VARS.contains(&name) {
            return Err(format!(
                "{field}: unknown variable ${name} in {text:?} (known: $CWD, $HOME, $JOB_DIR, $TMPDIR)"
            ));
        }
        if rest[name.len()..].contains('$') {
            return Err(format!("{field}: `$` may only start a path ({text:?})"));
        }
    } else if !text.starts_with('/') {
        return Err(format!(
            "{field}: relative path {text:?} is not allowed; use an absolute path or start it with $CWD, $HOME, $JOB_DIR or $TMPDIR"
        ));
    } else if text.contains('$') {
        return Err(format!("{field}: `$` may only start a path ({text:?})"));
    }
    if Path::new(text)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!("{field}: `..` is not allowed in {text:?}"));
    }
    Ok(Path::new(text).components().collect())
}

/// Values for the template variables of one job. All must be absolute
/// and canonical (no `..`); callers resolve symlinks in `cwd` first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathVars {
    pub cwd: PathBuf,
    pub home: PathBuf,
    pub job_dir: PathBuf,
    pub tmpdir: PathBuf,
}

impl PathVars {
    /// The value of `$NAME` (written with its `$`), and the bare name.
    pub(crate) fn get(&self, name: &str) -> Option<(&'static str, &Path)> {
        match name {
            "$CWD" => Some(("CWD", &self.cwd)),
            "$HOME" => Some(("HOME", &self.home)),
            "$JOB_DIR" => Some(("JOB_DIR", &self.job_dir)),
            "$TMPDIR" => Some(("TMPDIR", &self.tmpdir)),
            _ => None,
        }
    }
}

/// A variable's value cannot stand in for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError {
    pub var: &'static str,
    pub value: PathBuf,
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot expand ${} in the policy: {:?} is not an absolute path without `..`",
            self.var, self.value
        )
    }
}

impl std::error::Error for ExpandError {}

/// The policy's filesystem section with every variable replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ExpandedFilesystem {
    /// False: no landlock filesystem rules (the lists are empty).
    pub landlock: bool,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub exec: Vec<PathBuf>,
    pub tmpfs: Vec<PathBuf>,
    pub deny: Vec<PathBuf>,
    pub read_only: Vec<PathBuf>,
}

fn expand_one(template: &Path, vars: &PathVars) -> Result<PathBuf, ExpandError> {
    let mut components = template.components();
    let first = components.clone().next();
    if let Some(Component::Normal(head)) = first {
        if let Some((var, value)) = head.to_str().and_then(|h| vars.get(h)) {
            let clean =
                value.is_absolute() && !value.components().any(|c| c == Component::ParentDir);
            if !clean {
                return Err(ExpandError {
                    var,
                    value: value.to_path_buf(),
                });
            }
            components.next();
            return Ok(value.components().chain(components).collect());
        }
    }
    Ok(template.components().collect())
}

fn expand_list(templates: &[PathBuf], vars: &PathVars) -> Result<Vec<PathBuf>, ExpandError> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(templates.len());
    for t in templates {
        let p = expand_one(t, vars)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

impl Policy {
    /// Replaces `$CWD`, `$HOME`, `$JOB_DIR`, `$TMPDIR` with the job's
    /// values; duplicates are dropped, order kept. Paths are not checked
    /// for existence: a missing path simply grants nothing.
    pub fn expand_paths(&self, vars: &PathVars) -> Result<ExpandedFilesystem, ExpandError> {
        let fs = &self.filesystem;
        Ok(ExpandedFilesystem {
            landlock: fs.landlock,
            read: expand_list(&fs.read, vars)?,
            write: expand_list(&fs.write, vars)?,
            exec: expand_list(&fs.exec, vars)?,
            tmpfs: expand_list(&fs.tmpfs, vars)?,
            deny: expand_list(&fs.deny, vars)?,
            read_only: expand_list(&fs.read_only, vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> PathVars {
        PathVars {
            cwd: "/work/app".into(),
            home: "/home/dev".into(),
            job_dir: "/state/jobs/abc".into(),
            tmpdir: "/tmp".into(),
        }
    }

    #[test]
    fn templates_are_checked_and_normalised() {
        assert_eq!(check_template("f", "/usr/"), Ok(PathBuf::from("/usr")));
        assert_eq!(check_template("f", "/a/./b"), Ok(PathBuf::from("/a/b")));
        assert_eq!(check_template("f", "$CWD"), Ok(PathBuf::from("$CWD")));
        assert_eq!(
            check_template("f", "$HOME/.cargo"),
            Ok(PathBuf::from("$HOME/.cargo"))
        );
        let err = |t| check_template("filesystem.read[0]", t).unwrap_err();
        assert!(err("src").contains("relative path \"src\" is not allowed"));
        assert!(err("./src").contains("relative path"));
        assert!(err("$WORK/x").contains("unknown variable $WORK"));
        assert!(err("$CWDX").contains("unknown variable $CWDX"));
        assert!(err("/a/../etc").contains("`..` is not allowed"));
        assert!(err("$CWD/../x").contains("`..` is not allowed"));
        assert!(err("/a/$HOME").contains("may only start a path"));
        assert!(err("$CWD/$HOME").contains("may only start a path"));
        assert!(err("").contains("must not be empty"));
    }

    #[test]
    fn expansion_replaces_variables_and_dedupes() {
        let mut policy = Policy::base();
        policy.filesystem.read = vec![
            "/usr".into(),
            "$CWD".into(),
            "$HOME/.cargo".into(),
            "/work/app".into(),
        ];
        policy.filesystem.write = vec!["$JOB_DIR/out".into(), "$TMPDIR".into()];
        policy.filesystem.tmpfs = vec!["/tmp".into()];
        let fs = policy.expand_paths(&vars()).unwrap();
        assert!(fs.landlock);
        assert_eq!(
            fs.read,
            vec![
                PathBuf::from("/usr"),
                PathBuf::from("/work/app"),
                PathBuf::from("/home/dev/.cargo")
            ]
        );
        assert_eq!(
            fs.write,
            vec![PathBuf::from("/state/jobs/abc/out"), PathBuf::from("/tmp")]
        );
        assert_eq!(fs.tmpfs, vec![PathBuf::from("/tmp")]);
        assert!(fs.exec.is_empty());
    }

    #[test]
    fn relative_or_dotted_variables_are_refused() {
        let mut policy = Policy::base();
        policy.filesystem.read = vec!["$CWD/src".into()];
        let mut v = vars();
        v.cwd = "work/app".into();
        let e = policy.expand_paths(&v).unwrap_err();
        assert_eq!(e.var, "CWD");
        assert!(e.to_string().contains("$CWD"));
        v.cwd = "/home/dev/../../etc".into();
        assert!(policy.expand_paths(&v).is_err());
        // An unused bad variable does not matter.
        v.cwd = "/ok".into();
        v.home = "relative".into();
        assert!(policy.expand_paths(&v).is_ok());
    }
}

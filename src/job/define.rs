//! From a [`JobRequest`] to a job ready to store: the policy resolved,
//! overrides merged, paths expanded, the host floor checked, secrets
//! split from what may be shown.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::{new_job_id, JobLimits, JobSpec, Secrets, StdinSpec};
use super::request::JobRequest;
use super::store::Store;
use crate::output::mask::mask_str;
use crate::policy::{
    self, Floor, OverrideError, PathVars, Policy, PolicyError, PolicyErrorKind, PolicySources,
};
use crate::timefmt::{now_ms, rfc3339};

pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(5);

/// A job ready to be stored: definition, clear-text secrets, stdin bytes.
pub struct Defined {
    pub spec: JobSpec,
    pub secrets: Secrets,
    pub stdin: Option<Vec<u8>>,
}

impl Defined {
    /// The job as recorded for a start by another process: the secrets
    /// (masks included, which the logs need) wait in the store until then,
    /// and the supervisor then takes argv and env from them.
    pub fn for_later_start(self) -> (JobSpec, Option<Secrets>, Option<Vec<u8>>) {
        let keep = self.spec.has_secrets || !self.secrets.mask_values.is_empty();
        let spec = JobSpec {
            has_secrets: keep,
            ..self.spec
        };
        (spec, keep.then_some(self.secrets), self.stdin)
    }
}

/// Why a request cannot become a job.
#[derive(Debug)]
pub enum DefineError {
    /// A value of the request is unusable; the text names it.
    Invalid(String),
    /// The policy (or floor) file cannot be used.
    Policy(PolicyError),
    /// The request loosens what its policy does not let it loosen.
    OverrideForbidden(String),
    /// The request asks for more than the host floor allows.
    Floor(String),
}

impl fmt::Display for DefineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefineError::Invalid(m) | DefineError::OverrideForbidden(m) | DefineError::Floor(m) => {
                f.write_str(m)
            }
            DefineError::Policy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DefineError {}

pub fn define(req: &JobRequest, store: &Store) -> Result<Defined, DefineError> {
    let id = new_job_id();
    let created = now_ms();
    let cwd = resolve_cwd(req.cwd.as_deref())?;
    if req.argv.is_empty() {
        return Err(DefineError::Invalid("no command given".into()));
    }
    check_sizes(req)?;

    let mut env = BTreeMap::new();
    for (k, v) in &req.env {
        if k.is_empty() || k.contains(['=', '\0']) || k.contains(char::is_whitespace) {
            return Err(DefineError::Invalid(format!(
                "environment variable name {k:?}: expected a non-empty name without '=' or spaces"
            )));
        }
        env.insert(k.clone(), v.clone());
    }

    // Masks: an env key hides its value; anything else is a literal secret.
    let mut mask_values = Vec::new();
    let mut masked = Vec::new();
    let mut literal = 0;
    for m in &req.masks {
        if let Some(v) = env.get(m) {
            masked.push(m.clone());
            mask_values.push(v.clone());
        } else if m.is_empty() {
            return Err(DefineError::Invalid(
                "--mask needs a key or a non-empty value".into(),
            ));
        } else {
            literal += 1;
            masked.push(format!("literal#{literal}"));
            mask_values.push(m.clone());
        }
    }
    let shown_argv: Vec<String> = req.argv.iter().map(|a| mask_str(a, &mask_values)).collect();
    let shown_env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            let v = if req.masks.contains(k) {
                "***".to_string()
            } else {
                mask_str(v, &mask_values)
            };
            (k.clone(), v)
        })
        .collect();
    let has_secrets = shown_argv != req.argv || shown_env != env;

    let stdin = match &req.stdin {
        Some(bytes) => StdinSpec::File {
            path: store.stdin_path(&id).to_string_lossy().into_owned(),
            bytes: bytes.len() as u64,
        },
        None => StdinSpec::Null,
    };

    let vars = PathVars {
        cwd: cwd.clone(),
        home: home_dir(),
        job_dir: store.files_dir(&id),
        tmpdir: store.tmp_dir(&id),
    };
    let (policy, as_written) = resolve_policy(req, &vars)?;
    let fs = policy.expand_paths(&vars).map_err(|e| {
        DefineError::Policy(PolicyError::unpositioned(
            "",
            PolicyErrorKind::BadValue,
            e.to_string(),
        ))
    })?;

    if req.inherit_env == Some(true) && !policy.env.inherit {
        return Err(DefineError::OverrideForbidden(format!(
            "policy {:?} does not pass the caller's environment to jobs (env.inherit = false); \
             give the variables the job needs with --env/--env-file, or use a policy that inherits",
            policy.name
        )));
    }
    let limits = JobLimits {
        timeout_ms: policy.limits.timeout.map(|d| d.as_millis() as u64),
        kill_after_ms: req
            .kill_after
            .or(policy.limits.kill_after)
            .unwrap_or(DEFAULT_KILL_AFTER)
            .as_millis() as u64,
        memory_bytes: policy.limits.memory,
        pids: policy.limits.pids,
        cpus: policy.limits.cpu,
        log_cap_bytes: match req.log_cap {
            Some(cap) if cap > policy.limits.output_bytes => {
                return Err(DefineError::OverrideForbidden(format!(
                    "policy {:?} caps each log at {} (limits.output_bytes); --log-cap may only lower it",
                    policy.name,
                    crate::units::format_size(policy.limits.output_bytes)
                )))
            }
            Some(cap) => cap,
            None => policy.limits.output_bytes,
        },
    };
    super::grants::make_home_caches(&as_written, &vars.home);
    let own = super::grants::OwnDirs {
        store: store.root(),
        tmpdir: &vars.tmpdir,
        job_dir: &vars.job_dir,
        home: &vars.home,
    };
    let resolved = super::grants::resolve(&as_written, fs, &cwd, &own)?;
    let mut sandbox = policy.sandbox_spec(resolved.fs, vars.tmpdir, vars.job_dir);
    sandbox.links = resolved.links;
    sandbox.own_trees = resolved.own_trees;
    sandbox.ungranted = resolved
        .dropped
        .iter()
        .map(|(path, link)| {
            format!(
                "{} is reached through the symlink {}, which a job may have left: not granted",
                path.display(),
                link.display()
            )
        })
        .collect();
    // A published port is forwarded into the job's own network, where
    // loopback must be up; the host's network needs no forwarding.
    if !req.publish.is_empty() && !sandbox.network.has_loopback() {
        return Err(DefineError::Invalid(format!(
            "--publish forwards into the job's loopback, but its network is {}: add --net \
             loopback (or proxy)",
            sandbox.network
        )));
    }
    // The relay enters the job's network, which takes capabilities over
    // the host (checked again at launch, on the record).
    if !req.publish.is_empty() && !crate::sandbox::identity::caller_is_host_root() {
        return Err(DefineError::Invalid(
            "--publish needs root: relaying a port into the job's own network takes \
             capabilities over the host; use --net host, or the proxy for the other direction"
                .into(),
        ));
    }
    sandbox.store = store.root().to_path_buf();

    let mut tags = Vec::new();
    for t in &req.tags {
        check_tag(t)?;
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }

    let policy_file = match &policy.source {
        policy::PolicySource::File { path } => Some(path.clone()),
        _ => None,
    };
    // A policy file the job may rewrite would be the next job's policy.
    if let Some(file) = &policy_file {
        let real = file.canonicalize().unwrap_or_else(|_| file.clone());
        if let Some(w) = sandbox.write.iter().find(|w| real.starts_with(w)) {
            return Err(DefineError::Invalid(format!(
                "the policy file {} lies in {}, which the job may write: a job could rewrite \
                 its successors' policy; keep policy files outside the job's trees",
                real.display(),
                w.display()
            )));
        }
    }
    let spec = JobSpec {
        job_id: id,
        argv: shown_argv,
        cwd: cwd.to_string_lossy().into_owned(),
        env: shown_env,
        inherit_env: req.inherit_env != Some(false) && sandbox.env_inherit,
        masked,
        stdin,
        tags,
        policy: policy.name.clone(),
        policy_file,
        limits,
        sandbox,
        created_at: rfc3339(created),
        created_at_ms: created,
        has_secrets,
        publish: req.publish.clone(),
    };
    // The clear values, whatever the masks hid: a job started later (whose
    // secrets wait in the store) takes all of its argv and env from here.
    let secrets = Secrets {
        argv: req.argv.clone(),
        env,
        mask_values,
    };
    // The floor judges what will be launched; the supervisor judges it
    // again at launch, should the record have changed since.
    check_floor(&spec).map(drop).map_err(|e| match e {
        FloorCheck::Unreadable(e) => DefineError::Policy(e),
        FloorCheck::Refused(e) => DefineError::Floor(e.to_string()),
    })?;
    Ok(Defined {
        spec,
        secrets,
        stdin: req.stdin.clone(),
    })
}

/// Why a job may not run on this host.
pub enum FloorCheck {
    /// The floor file cannot be used (a host with a broken floor runs nothing).
    Unreadable(PolicyError),
    Refused(crate::policy::FloorError),
}

/// Holds `spec` against the host floor; the floor, when it allows the job.
pub fn check_floor(spec: &JobSpec) -> Result<Floor, FloorCheck> {
    let floor = Floor::load_from(&PolicySources::from_env()).map_err(FloorCheck::Unreadable)?;
    floor
        .check_subject(&spec.floor_subject())
        .map_err(FloorCheck::Refused)?;
    Ok(floor)
}

/// The kernel's limit on one argument or variable (`MAX_ARG_STRLEN`, less
/// its NUL), and what all of them may take together: the kernel allows a
/// quarter of the stack limit, 2 MiB by default, with room kept for the
/// variables the policy and the proxy add.
const MAX_ARG: usize = 128 * 1024 - 1;
const MAX_ARGS_TOTAL: usize = 1024 * 1024;
const MAX_TAG: usize = 64;
const MAX_TAGS: usize = 32;
const MAX_MASKS: usize = 64;

/// What a request may ask for at most, checked before anything is made:
/// what the kernel would refuse at exec is refused now, with the reason,
/// and no string can make a record the store cannot read back.
fn check_sizes(req: &JobRequest) -> Result<(), DefineError> {
    let too_long = |what: &str, len: usize| {
        DefineError::Invalid(format!(
            "{what} is {len} bytes; the kernel takes at most {MAX_ARG} bytes per argument or variable"
        ))
    };
    let mut total = 0;
    for (i, a) in req.argv.iter().enumerate() {
        if a.len() > MAX_ARG {
            return Err(too_long(&format!("argument {i} of the command"), a.len()));
        }
        total += a.len() + 1;
    }
    for (k, v) in &req.env {
        if k.len() + 1 + v.len() > MAX_ARG {
            return Err(too_long(
                &format!("variable {}", k.chars().take(64).collect::<String>()),
                k.len() + 1 + v.len(),
            ));
        }
        total += k.len() + v.len() + 2;
    }
    if total > MAX_ARGS_TOTAL {
        return Err(DefineError::Invalid(format!(
            "the command and its variables take {total} bytes; at most {MAX_ARGS_TOTAL} (pass big \
             data through a file or --stdin-file)"
        )));
    }
    if req.tags.len() > MAX_TAGS {
        return Err(DefineError::Invalid(format!(
            "{} tags; at most {MAX_TAGS}",
            req.tags.len()
        )));
    }
    if req.masks.len() > MAX_MASKS {
        return Err(DefineError::Invalid(format!(
            "{} --mask values; at most {MAX_MASKS}",
            req.masks.len()
        )));
    }
    if let Some(cpus) = req.overrides.cpus {
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if online > 0 && cpus > online as f64 {
            return Err(DefineError::Invalid(format!(
                "--cpus {cpus}: this host has {online} CPUs"
            )));
        }
    }
    Ok(())
}

/// Tags are what `list --tag` matches: letters, digits, `.`, `_`, `-`.
pub fn check_tag(t: &str) -> Result<(), DefineError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_TAG
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DefineError::Invalid(format!(
            "--tag {t:?}: tags are 1 to {MAX_TAG} letters, digits, '.', '_' and '-'"
        )))
    }
}

/// The policy asked for, with the request's overrides merged on top
/// (loosening only where the policy allows it).
/// Also returns the policy as its files say, before the overrides.
fn resolve_policy(req: &JobRequest, vars: &PathVars) -> Result<(Policy, Policy), DefineError> {
    let sources = PolicySources::from_env();
    let name = req.policy.as_deref().unwrap_or("default");
    let policy = policy::resolve(name, &sources).map_err(DefineError::Policy)?;
    crate::diag!(1, "policy: {name}");
    let mut overrides = req.overrides.clone();
    for (flag, list) in [
        ("--allow-read", &mut overrides.allow_read),
        ("--allow-write", &mut overrides.allow_write),
        ("--allow-exec", &mut overrides.allow_exec),
    ] {
        *list = list
            .iter()
            .map(|p| path_flag(flag, p, vars))
            .collect::<Result<_, _>>()?;
    }
    let mut merged = policy.apply_overrides(&overrides).map_err(|e| match e {
        OverrideError::Forbidden { .. } => DefineError::OverrideForbidden(e.to_string()),
        OverrideError::Invalid { .. } => DefineError::Invalid(e.to_string()),
    })?;
    if merged.limits.timeout == Some(Duration::MAX) {
        merged.limits.timeout = None;
    }
    Ok((merged, policy))
}

/// A path flag as a shell user means it: `~`, `$HOME`, `$CWD`, `$TMPDIR`
/// and `$JOB_DIR` (also `${NAME}`) expand as in policy files, a relative
/// path is relative to the job's working directory, and a path that does
/// not exist is an error naming it (it would grant nothing, silently).
/// The job's own `$TMPDIR` and `$JOB_DIR` are made with the job.
fn path_flag(flag: &str, raw: &Path, vars: &PathVars) -> Result<PathBuf, DefineError> {
    let text = raw.to_string_lossy();
    let (head, rest) = match text.split_once('/') {
        Some((head, rest)) => (head, rest),
        None => (text.as_ref(), ""),
    };
    let named = head
        .strip_prefix("${")
        .and_then(|h| h.strip_suffix('}'))
        .or_else(|| head.strip_prefix('$'));
    let name = if head == "~" { Some("HOME") } else { named };
    let base = match name {
        None => None,
        Some(n) => Some(vars.get(&format!("${n}")).map(|(_, v)| v).ok_or_else(|| {
            DefineError::Invalid(format!(
                "{flag} {text}: ${n} is not a path variable; use $HOME, $CWD, $TMPDIR, \
                 $JOB_DIR or ~"
            ))
        })?),
    };
    // The job's own directories are made with it.
    let own = matches!(name, Some("TMPDIR" | "JOB_DIR"));
    let path = match base {
        Some(base) if rest.is_empty() => base.to_path_buf(),
        Some(base) => base.join(rest),
        None => vars.cwd.join(raw),
    };
    if own {
        return Ok(path);
    }
    // The real path, `..` resolved as the kernel would, never through a
    // link a job may have left.
    match super::grants::open_unplanted(&path) {
        Ok((_, real)) => Ok(real),
        Err(super::grants::Unplanted::Link(link)) => Err(DefineError::Invalid(format!(
            "{flag} {text}: goes through the symlink {}, which a job may have left; give the \
             real path",
            link.display()
        ))),
        Err(super::grants::Unplanted::Io(e)) => Err(DefineError::Invalid(format!(
            "{flag} {text}: {}: {e}",
            path.display()
        ))),
    }
}

fn home_dir() -> PathBuf {
    // Not `/` without $HOME: every `$HOME` rule of the policy would guard
    // the wrong place.
    let home = super::store::caller_home().unwrap_or_else(|| PathBuf::from("/"));
    home.canonicalize().unwrap_or(home)
}

/// The job's directory without symlinks: what the record shows and the
/// sandbox opens is where the job really runs.
fn resolve_cwd(asked: Option<&Path>) -> Result<PathBuf, DefineError> {
    let dir = match asked {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| DefineError::Invalid(format!("cannot read the current directory: {e}")))?,
    };
    let canonical = match super::grants::open_unplanted(&dir) {
        Ok((_, real)) => real,
        Err(super::grants::Unplanted::Link(link)) => {
            return Err(DefineError::Invalid(format!(
                "--cwd {}: goes through the symlink {}, which a job may have left; give the \
                 real path",
                dir.display(),
                link.display()
            )))
        }
        Err(super::grants::Unplanted::Io(e)) => {
            return Err(DefineError::Invalid(format!(
                "--cwd {}: {e}",
                dir.display()
            )))
        }
    };
    if !canonical.is_dir() {
        return Err(DefineError::Invalid(format!(
            "--cwd {}: not a directory",
            dir.display()
        )));
    }
    Ok(canonical)
}

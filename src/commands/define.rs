//! From command-line flags to a job definition: validation, env, masks, stdin.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use crate::cli::JobDefinition;
use std::time::Duration;

use crate::job::model::{new_job_id, JobLimits, JobSpec, SandboxSpec, Secrets, StdinSpec};
use crate::job::store::{Store, STDIN_FILE};
use crate::output::mask::mask_str;
use crate::policy::{
    self, Enforcement, Floor, NetMode, OverrideError, Overrides, PathVars, Policy, PolicyError,
    PolicySources,
};
use crate::response::{AppError, ErrorCode, Location};
use crate::timefmt::{now_ms, rfc3339};
use crate::units::{parse_duration, parse_size};

/// Largest stdin accepted with --stdin / --stdin-file (it is stored in the job directory).
pub const STDIN_MAX_BYTES: u64 = 16 << 20;
pub const DEFAULT_KILL_AFTER_MS: u64 = 5_000;

/// A job ready to be stored: definition, clear-text secrets, stdin bytes.
pub struct Defined {
    pub spec: JobSpec,
    pub secrets: Secrets,
    pub stdin: Option<Vec<u8>>,
}

pub fn build(def: &JobDefinition, store: &Store) -> Result<Defined, AppError> {
    let id = new_job_id();
    let created = now_ms();
    let cwd = resolve_cwd(def.cwd.as_deref())?;

    // Environment: files first, then --env (later wins).
    let mut env = BTreeMap::new();
    for file in &def.env_file {
        for (k, v) in read_env_file(file)? {
            env.insert(k, v);
        }
    }
    for entry in &def.env {
        let (k, v) = parse_env_entry(entry).ok_or_else(|| {
            AppError::invalid(format!(
                "--env {entry:?}: expected KEY=VALUE with a non-empty KEY"
            ))
        })?;
        env.insert(k, v);
    }

    // Masks: an env key hides its value; anything else is a literal secret.
    let mut mask_values = Vec::new();
    let mut masked = Vec::new();
    let mut literal = 0;
    for m in &def.mask {
        if let Some(v) = env.get(m) {
            masked.push(m.clone());
            mask_values.push(v.clone());
        } else if m.is_empty() {
            return Err(AppError::invalid("--mask needs a key or a non-empty value"));
        } else {
            literal += 1;
            masked.push(format!("literal#{literal}"));
            mask_values.push(m.clone());
        }
    }
    let shown_argv: Vec<String> = def
        .command
        .iter()
        .map(|a| mask_str(a, &mask_values))
        .collect();
    let shown_env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| {
            let v = if def.mask.contains(k) {
                "***".to_string()
            } else {
                mask_str(v, &mask_values)
            };
            (k.clone(), v)
        })
        .collect();
    let has_secrets = shown_argv != def.command || shown_env != env;

    let stdin = read_stdin(def)?;
    let stdin_spec = match &stdin {
        Some(bytes) => StdinSpec::File {
            path: store
                .job_dir(&id)
                .join(STDIN_FILE)
                .to_string_lossy()
                .into_owned(),
            bytes: bytes.len() as u64,
        },
        None => StdinSpec::Null,
    };

    let job_dir = store.job_dir(&id);
    let (policy, sandbox) = resolve_policy(def, &cwd, &job_dir)?;
    let limits = JobLimits {
        timeout_ms: policy.limits.timeout.map(|d| d.as_millis() as u64),
        kill_after_ms: match &def.kill_after {
            None => policy
                .limits
                .kill_after
                .map(|d| d.as_millis() as u64)
                .unwrap_or(DEFAULT_KILL_AFTER_MS),
            Some(t) => duration_ms("--kill-after", t)?,
        },
        memory_bytes: policy.limits.memory,
        pids: policy.limits.pids,
        cpus: policy.limits.cpu,
        log_cap_bytes: match &def.log_cap {
            None => policy.limits.output_bytes,
            Some(s) => size("--log-cap", s)?,
        },
    };

    let mut tags = Vec::new();
    for t in &def.tag {
        if t.is_empty()
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(AppError::invalid(format!(
                "--tag {t:?}: tags are letters, digits, '.', '_' and '-'"
            )));
        }
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }

    let spec = JobSpec {
        job_id: id,
        argv: shown_argv,
        cwd: cwd.to_string_lossy().into_owned(),
        env: shown_env,
        inherit_env: !def.no_inherit_env && sandbox.env_inherit,
        masked,
        stdin: stdin_spec,
        tags,
        policy: policy.name.clone(),
        limits,
        sandbox,
        created_at: rfc3339(created),
        created_at_ms: created,
        has_secrets,
    };
    let secrets = Secrets {
        argv: if has_secrets {
            def.command.clone()
        } else {
            Vec::new()
        },
        env: if has_secrets { env } else { BTreeMap::new() },
        mask_values,
    };
    Ok(Defined {
        spec,
        secrets,
        stdin,
    })
}

/// The effective policy: resolved by name or path, command-line overrides
/// merged on top (loosening only where the policy allows it), checked
/// against the host floor, and flattened into what the supervisor applies.
fn resolve_policy(
    def: &JobDefinition,
    cwd: &Path,
    job_dir: &Path,
) -> Result<(Policy, SandboxSpec), AppError> {
    let sources = PolicySources::from_env();
    let name = def.policy.as_deref().unwrap_or("default");
    let policy = policy::resolve(name, &sources).map_err(policy_error)?;

    let absolute = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            cwd.join(p)
        }
    };
    let overrides = Overrides {
        allow_read: def.allow_read.iter().map(absolute).collect(),
        allow_write: def.allow_write.iter().map(absolute).collect(),
        net: def
            .net
            .as_deref()
            .map(|n| {
                n.parse::<NetMode>()
                    .map_err(|e| AppError::invalid(format!("--net: {e}")))
            })
            .transpose()?,
        memory: def
            .memory
            .as_deref()
            .map(|s| size("--memory", s))
            .transpose()?,
        pids: def
            .pids
            .as_deref()
            .map(|s| match s.trim().parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(AppError::invalid(format!(
                    "--pids {s:?}: expected a positive whole number"
                ))),
            })
            .transpose()?,
        cpus: def
            .cpus
            .as_deref()
            .map(|s| match s.trim().parse::<f64>() {
                Ok(n) if n.is_finite() && n >= 0.01 => Ok(n),
                _ => Err(AppError::invalid(format!(
                    "--cpus {s:?}: expected a number of CPUs such as 0.5 or 2"
                ))),
            })
            .transpose()?,
        timeout: match &def.timeout {
            None => None,
            Some(t) => {
                let ms = duration_ms("--timeout", t)?;
                // `--timeout 0` asks for no limit: as loose as it gets.
                Some(if ms == 0 {
                    Duration::MAX
                } else {
                    Duration::from_millis(ms)
                })
            }
        },
    };
    if overrides.memory.is_some_and(|m| m < (1 << 20)) {
        return Err(AppError::invalid("--memory must be at least 1M"));
    }
    let mut policy = policy.apply_overrides(&overrides).map_err(|e| match e {
        OverrideError::Forbidden { .. } => {
            AppError::new(ErrorCode::OverrideForbidden, e.to_string())
        }
        OverrideError::Invalid { .. } => AppError::invalid(e.to_string()),
    })?;
    if policy.limits.timeout == Some(Duration::MAX) {
        policy.limits.timeout = None;
    }

    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let home = home.canonicalize().unwrap_or(home);
    // The job may write $JOB_DIR and $TMPDIR: both are subdirectories, never
    // the job's record directory itself, where a planted symlink could turn
    // the supervisor's own writes against the host.
    let tmpdir = job_dir.join("tmp");
    let files = job_dir.join("files");
    let vars = PathVars {
        cwd: cwd.to_path_buf(),
        home,
        job_dir: files.clone(),
        tmpdir: tmpdir.clone(),
    };
    let fs = policy
        .expand_paths(&vars)
        .map_err(|e| AppError::new(ErrorCode::PolicyError, e.to_string()))?;
    let floor = Floor::load_from(&sources).map_err(policy_error)?;
    floor
        .check(&policy, &fs)
        .map_err(|e| AppError::new(ErrorCode::FloorViolation, e.to_string()))?;

    let sandbox = SandboxSpec {
        strict: policy.enforcement == Enforcement::Strict,
        user_ns: policy.namespaces.user,
        pid_ns: policy.namespaces.pid,
        mount_ns: policy.namespaces.mount,
        ipc_ns: policy.namespaces.ipc,
        uts_ns: policy.namespaces.uts,
        cgroup_ns: policy.namespaces.cgroup,
        hostname: policy.namespaces.hostname.clone(),
        landlock: fs.landlock,
        read: fs.read,
        write: fs.write,
        exec: fs.exec,
        tmpfs: fs.tmpfs,
        network: policy.network.mode.as_str().to_string(),
        connect_ports: policy.network.connect_ports.clone(),
        bind_ports: policy.network.bind_ports.clone(),
        seccomp: policy.seccomp.profile.as_str().to_string(),
        seccomp_deny: policy.seccomp.deny.clone(),
        file_size: policy.limits.file_size,
        open_files: policy.limits.open_files,
        env_inherit: policy.env.inherit,
        env_allow: policy.env.allow.clone(),
        env_set: policy.env.set.clone(),
        tmpdir,
        files,
    };
    if def.inherit_env && !policy.env.inherit {
        return Err(AppError::new(
            ErrorCode::OverrideForbidden,
            format!(
                "policy {:?} does not pass the caller's environment to jobs (env.inherit = false); \
                 give the variables the job needs with --env/--env-file, or use a policy that inherits",
                policy.name
            ),
        ));
    }
    Ok((policy, sandbox))
}

/// A policy or floor file problem, with its position when it has one.
pub fn policy_error(e: PolicyError) -> AppError {
    let mut err = AppError::new(ErrorCode::PolicyError, e.to_string());
    if e.line > 0 {
        err.location = Some(Location {
            file: e.file.clone(),
            line: e.line as usize,
            column: e.column as usize,
            field: (!e.field.is_empty()).then(|| e.field.clone()),
        });
    }
    err
}

fn resolve_cwd(flag: Option<&Path>) -> Result<PathBuf, AppError> {
    let dir = match flag {
        Some(p) => p.to_path_buf(),
        // getcwd(3) answers with the kernel's own path of the directory:
        // absolute, without symlinks or `..`, so already canonical.
        None => {
            return std::env::current_dir()
                .map_err(|e| AppError::invalid(format!("cannot read the current directory: {e}")))
        }
    };
    let canonical = dir
        .canonicalize()
        .map_err(|e| AppError::invalid(format!("--cwd {}: {e}", dir.display())))?;
    if !canonical.is_dir() {
        return Err(AppError::invalid(format!(
            "--cwd {}: not a directory",
            dir.display()
        )));
    }
    Ok(canonical)
}

fn parse_env_entry(entry: &str) -> Option<(String, String)> {
    let (k, v) = entry.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    Some((k.to_string(), v.to_string()))
}

/// `KEY=VALUE` lines; `export ` prefixes, blank lines and `#` comments are accepted;
/// a value wrapped in matching quotes loses them.
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, AppError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppError::invalid(format!("--env-file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, mut v) = parse_env_entry(line).ok_or_else(|| {
            AppError::invalid(format!(
                "--env-file {}:{}: expected KEY=VALUE, found {line:?}",
                path.display(),
                n + 1
            ))
        })?;
        for q in ['"', '\''] {
            if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
                v = v[1..v.len() - 1].to_string();
            }
        }
        out.push((k, v));
    }
    Ok(out)
}

fn read_stdin(def: &JobDefinition) -> Result<Option<Vec<u8>>, AppError> {
    let too_large = |what: &str| {
        AppError::new(
            ErrorCode::StdinTooLarge,
            format!(
                "{what} is larger than {} bytes; give the job a file to read instead",
                STDIN_MAX_BYTES
            ),
        )
    };
    if let Some(text) = &def.stdin {
        if text == "-" {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                return Err(AppError::invalid(
                    "--stdin - reads the caller's stdin, but it is a terminal; pipe the input in",
                ));
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .take(STDIN_MAX_BYTES + 1)
                .read_to_end(&mut buf)
                .map_err(|e| AppError::invalid(format!("cannot read stdin: {e}")))?;
            if buf.len() as u64 > STDIN_MAX_BYTES {
                return Err(too_large("stdin"));
            }
            return Ok(Some(buf));
        }
        if text.len() as u64 > STDIN_MAX_BYTES {
            return Err(too_large("--stdin"));
        }
        return Ok(Some(text.clone().into_bytes()));
    }
    if let Some(path) = &def.stdin_file {
        let meta = std::fs::metadata(path)
            .map_err(|e| AppError::invalid(format!("--stdin-file {}: {e}", path.display())))?;
        if meta.len() > STDIN_MAX_BYTES {
            return Err(too_large(&format!("--stdin-file {}", path.display())));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| AppError::invalid(format!("--stdin-file {}: {e}", path.display())))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

pub fn duration_ms(flag: &str, value: &str) -> Result<u64, AppError> {
    parse_duration(value)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| AppError::invalid(format!("{flag}: {e}")))
}

fn size(flag: &str, value: &str) -> Result<u64, AppError> {
    parse_size(value).map_err(|e| AppError::invalid(format!("{flag}: {e}")))
}

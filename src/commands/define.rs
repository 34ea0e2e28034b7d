//! From command-line flags to a job definition: validation, env, masks, stdin.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use crate::cli::JobDefinition;
use crate::job::model::{new_job_id, JobLimits, JobSpec, Secrets, StdinSpec};
use crate::job::store::{Store, STDIN_FILE};
use crate::output::mask::mask_str;
use crate::response::{AppError, ErrorCode};
use crate::timefmt::{now_ms, rfc3339};
use crate::units::{parse_duration, parse_size};

/// Largest stdin accepted with --stdin / --stdin-file (it is stored in the job directory).
pub const STDIN_MAX_BYTES: u64 = 16 << 20;
pub const DEFAULT_TIMEOUT_MS: u64 = 600_000;
pub const DEFAULT_KILL_AFTER_MS: u64 = 5_000;
pub const DEFAULT_LOG_CAP: u64 = 64 << 20;

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

    let limits = JobLimits {
        timeout_ms: match &def.timeout {
            None => Some(DEFAULT_TIMEOUT_MS),
            Some(t) => Some(duration_ms("--timeout", t)?).filter(|ms| *ms > 0),
        },
        kill_after_ms: match &def.kill_after {
            None => DEFAULT_KILL_AFTER_MS,
            Some(t) => duration_ms("--kill-after", t)?,
        },
        memory_bytes: def
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
        log_cap_bytes: match &def.log_cap {
            None => DEFAULT_LOG_CAP,
            Some(s) => size("--log-cap", s)?,
        },
    };
    if limits.memory_bytes.is_some_and(|m| m < (1 << 20)) {
        return Err(AppError::invalid("--memory must be at least 1M"));
    }

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
        inherit_env: !def.no_inherit_env,
        masked,
        stdin: stdin_spec,
        tags,
        policy: "unconfined".into(),
        limits,
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

fn resolve_cwd(flag: Option<&Path>) -> Result<PathBuf, AppError> {
    let dir = match flag {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| AppError::invalid(format!("cannot read the current directory: {e}")))?,
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

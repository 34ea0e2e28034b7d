//! The command line's job flags turned into a typed [`JobRequest`]:
//! durations and sizes parsed, `--env-file` and stdin read.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use crate::cli::JobDefinition;
use crate::job::request::JobRequest;
use crate::policy::{NetMode, Overrides};
use crate::response::{AppError, ErrorCode};
use crate::units::{parse_duration, parse_size};

/// Largest stdin accepted with --stdin / --stdin-file (it is stored in the job directory).
pub const STDIN_MAX_BYTES: u64 = 16 << 20;
/// Largest --env-file read.
pub const ENV_FILE_MAX_BYTES: u64 = 1 << 20;

/// The bytes of a regular file of at most `limit` bytes (`Ok(Err(limit))`
/// when larger). A device, a FIFO or a directory is refused: `/dev/zero`
/// would grow us without end, a FIFO hang us.
fn read_regular_file(
    flag: &str,
    path: &Path,
    limit: u64,
) -> Result<Result<Vec<u8>, u64>, AppError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |e: std::io::Error| AppError::invalid(format!("{flag} {}: {e}", path.display()));
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(failed)?;
    if !file.metadata().map_err(failed)?.is_file() {
        return Err(AppError::invalid(format!(
            "{flag} {}: not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > limit {
        return Ok(Err(limit));
    }
    Ok(Ok(bytes))
}

pub fn job_request(def: &JobDefinition) -> Result<JobRequest, AppError> {
    // Environment: files first, then --env (later wins).
    let mut env = Vec::new();
    for file in &def.env_file {
        env.extend(read_env_file(file)?);
    }
    for entry in &def.env {
        env.push(parse_env_entry(entry).ok_or_else(|| {
            AppError::invalid(format!(
                "--env {entry:?}: expected KEY=VALUE with a non-empty KEY"
            ))
        })?);
    }
    let inherit_env = if def.no_inherit_env {
        Some(false)
    } else if def.inherit_env {
        Some(true)
    } else {
        None
    };
    Ok(JobRequest {
        argv: def.command.clone(),
        cwd: def.cwd.clone(),
        env,
        inherit_env,
        masks: def.mask.clone(),
        stdin: read_stdin(def)?,
        tags: def.tag.clone(),
        policy: def.policy.clone(),
        overrides: overrides(def)?,
        kill_after: def
            .kill_after
            .as_deref()
            .map(|t| duration("--kill-after", t))
            .transpose()?,
        log_cap: def
            .log_cap
            .as_deref()
            .map(|s| size("--log-cap", s))
            .transpose()?,
    })
}

/// The sandbox flags, parsed; whether the policy lets them loosen it is
/// decided when the job is defined.
fn overrides(def: &JobDefinition) -> Result<Overrides, AppError> {
    let overrides = Overrides {
        allow_read: def.allow_read.clone(),
        allow_write: def.allow_write.clone(),
        allow_exec: def.allow_exec.clone(),
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
            .map(|s| positive("--pids", s))
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
                let d = duration("--timeout", t)?;
                // `--timeout 0` asks for no limit: as loose as it gets. Limits
                // count whole milliseconds: a shorter one still is one.
                Some(if d.is_zero() {
                    Duration::MAX
                } else {
                    d.max(Duration::from_millis(1))
                })
            }
        },
    };
    if overrides.memory.is_some_and(|m| m < (1 << 20)) {
        return Err(AppError::invalid("--memory must be at least 1M"));
    }
    Ok(overrides)
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
    let bytes = read_regular_file("--env-file", path, ENV_FILE_MAX_BYTES)?.map_err(|limit| {
        AppError::invalid(format!(
            "--env-file {}: larger than {limit} bytes",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| AppError::invalid(format!("--env-file {}: not UTF-8 text", path.display())))?;
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
        let bytes = read_regular_file("--stdin-file", path, STDIN_MAX_BYTES)?
            .map_err(|_| too_large(&format!("--stdin-file {}", path.display())))?;
        return Ok(Some(bytes));
    }
    Ok(None)
}

pub fn duration(flag: &str, value: &str) -> Result<Duration, AppError> {
    parse_duration(value).map_err(|e| AppError::invalid(format!("{flag}: {e}")))
}

pub fn positive(flag: &str, value: &str) -> Result<u64, AppError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(AppError::invalid(format!(
            "{flag} {value:?}: expected a positive whole number"
        ))),
    }
}

pub fn size(flag: &str, value: &str) -> Result<u64, AppError> {
    parse_size(value).map_err(|e| AppError::invalid(format!("{flag}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(flag: &str) -> Option<Duration> {
        let def = JobDefinition {
            timeout: Some(flag.into()),
            command: vec!["true".into()],
            ..Default::default()
        };
        overrides(&def).unwrap().timeout
    }

    #[test]
    fn a_zero_timeout_is_none_and_a_tiny_one_a_millisecond() {
        assert_eq!(timeout_of("0"), Some(Duration::MAX));
        assert_eq!(timeout_of("0ms"), Some(Duration::MAX));
        assert_eq!(timeout_of("0.0001"), Some(Duration::from_millis(1)));
        assert_eq!(timeout_of("1.5"), Some(Duration::from_millis(1500)));
    }
}

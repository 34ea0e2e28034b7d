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
    // Opened from descriptors, never through a link a job may have left
    // (`.env -> ~/.npmrc`, `config -> /srv/other`), with nothing between
    // the check and the read for a job to swap.
    let (fd, _) = crate::job::grants::open_unplanted(path).map_err(|e| match e {
        crate::job::grants::Unplanted::Link(link) => AppError::invalid(format!(
            "{flag} {}: goes through the symlink {}, which a job may have left; give the real path",
            path.display(),
            link.display()
        )),
        crate::job::grants::Unplanted::Io(e) => failed(e),
    })?;
    // O_NONBLOCK: opening a FIFO must not wait for a writer. Reopening the
    // descriptor reads the very file that was opened.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
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
    if let Some(file) = &def.env_json {
        env.extend(read_env_json(file)?);
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
    let shell: Vec<String> = match &def.shell_wrapper {
        Some(w) => {
            let words: Vec<String> = w.split_whitespace().map(str::to_string).collect();
            if words.is_empty() {
                return Err(AppError::invalid(
                    "--shell-wrapper: name a program and its flags, such as \"bash -lc\"",
                ));
            }
            words
        }
        None => {
            crate::config::Config::load()
                .map_err(super::config_error)?
                .shell
                .unix
        }
    };
    Ok(JobRequest {
        argv: command_argv(&def.command, &shell),
        cwd: def.cwd.clone(),
        env,
        inherit_env,
        masks: {
            let mut masks = def.mask.clone();
            if let Some(file) = &def.mask_json {
                masks.extend(read_mask_json(file)?);
            }
            masks
        },
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
        publish: def
            .publish
            .iter()
            .map(|p| publish(p))
            .collect::<Result<_, _>>()?,
    })
}

/// `PORT[:HOST_PORT]`.
fn publish(text: &str) -> Result<crate::job::model::Publish, AppError> {
    let bad = || {
        AppError::invalid(format!(
            "--publish {text:?}: expected PORT or PORT:HOST_PORT, ports 1-65535 (host port 0: any)"
        ))
    };
    let (port, host_port) = match text.split_once(':') {
        Some((p, h)) => (p, h),
        None => (text, text),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host_port: u16 = host_port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    Ok(crate::job::model::Publish { port, host_port })
}

/// A single argument after `--` is a shell command line, as with
/// tumf/agent-exec (`run -- "make && make test"`), and runs through
/// `shell` (`sh -c` unless `--shell-wrapper` or the config's `[shell]`
/// say otherwise); two or more are the program and its arguments. A single plain
/// word (no character a shell would treat specially) runs directly: the
/// shell would only exec it.
fn command_argv(command: &[String], shell: &[String]) -> Vec<String> {
    let plain = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c))
    };
    match command {
        [line] if !plain(line) => {
            let mut argv = shell.to_vec();
            argv.push(line.clone());
            argv
        }
        _ => command.to_vec(),
    }
}

/// The sandbox flags, parsed; whether the policy lets them loosen it is
/// decided when the job is defined.
fn overrides(def: &JobDefinition) -> Result<Overrides, AppError> {
    let overrides = Overrides {
        allow_read: def.allow_read.clone(),
        allow_write: def.allow_write.clone(),
        allow_exec: def.allow_exec.clone(),
        allow_domains: def
            .allow_domain
            .iter()
            .map(|d| crate::sandbox::net_rules::normalise_pattern(d))
            .collect(),
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

/// A JSON list of strings: more `--mask` values. None appears in an error.
fn read_mask_json(path: &Path) -> Result<Vec<String>, AppError> {
    let bytes = read_regular_file("--mask-json", path, ENV_FILE_MAX_BYTES)?
        .map_err(|limit| AppError::invalid(format!("--mask-json: larger than {limit} bytes")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| AppError::invalid("--mask-json: not a JSON list of strings"))
}

/// A JSON object of string values, taken as they are. A bad key is named;
/// a value never appears in an error (it may be a secret).
fn read_env_json(path: &Path) -> Result<Vec<(String, String)>, AppError> {
    let bytes = read_regular_file("--env-json", path, ENV_FILE_MAX_BYTES)?
        .map_err(|limit| AppError::invalid(format!("--env-json: larger than {limit} bytes")))?;
    let map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&bytes)
        .map_err(|_| AppError::invalid("--env-json: not a JSON object of strings"))?;
    for (k, v) in &map {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(AppError::invalid(format!(
                "env: {k:?} is not a variable name"
            )));
        }
        if v.contains('\0') {
            return Err(AppError::invalid(format!(
                "env: the value of {k} holds a NUL"
            )));
        }
    }
    Ok(map.into_iter().collect())
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
                return Err(AppError::new(
                    ErrorCode::StdinRequired,
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
    forwarded_stdin().map_err(|e| match e {
        Forward::TooLarge => too_large("stdin"),
        Forward::Failed(message) => AppError::invalid(message),
    })
}

/// How long a piped stdin may take to show its first byte (or its end) to
/// be forwarded: `echo hi | agent-exec run -- cat` has written by then; a
/// pipe that an agent's harness merely keeps open is left alone.
const STDIN_READY_MS: u16 = 20;
/// How long a piped stdin that has started may take to end.
const STDIN_END_MS: u64 = 5_000;

enum Forward {
    TooLarge,
    Failed(String),
}

/// The caller's stdin, when it is redirected from a file or piped with
/// data ready: forwarded to the job, as a shell user expects. A terminal is
/// never read, and nothing waits on a pipe that has nothing to say.
fn forwarded_stdin() -> Result<Option<Vec<u8>>, Forward> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::stat::{fstat, SFlag};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let Ok(st) = fstat(stdin.as_fd()) else {
        return Ok(None);
    };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    let read_all = |deadline: Option<std::time::Instant>| -> Result<Vec<u8>, Forward> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let mut handle = stdin.lock();
        loop {
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
                if ms == 0 || poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
                    return Err(Forward::Failed(format!(
                        "stdin is a pipe still open after {} s; close it, or give the input \
                         with --stdin-file",
                        STDIN_END_MS / 1000
                    )));
                }
            }
            let n = handle
                .read(&mut chunk)
                .map_err(|e| Forward::Failed(format!("cannot read stdin: {e}")))?;
            if n == 0 {
                return Ok(buf);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() as u64 > STDIN_MAX_BYTES {
                return Err(Forward::TooLarge);
            }
        }
    };
    if kind == SFlag::S_IFREG {
        return read_all(None).map(|b| (!b.is_empty()).then_some(b));
    }
    if kind != SFlag::S_IFIFO && kind != SFlag::S_IFSOCK {
        return Ok(None);
    }
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(STDIN_READY_MS)).unwrap_or(0) > 0;
    if !ready {
        return Ok(None);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(STDIN_END_MS);
    read_all(Some(deadline)).map(|b| (!b.is_empty()).then_some(b))
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
    fn one_argument_is_a_shell_line_unless_it_is_a_plain_word() {
        let argv = |words: &[&str]| {
            command_argv(
                &words.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                &["sh".to_string(), "-c".to_string()],
            )
        };
        assert_eq!(
            argv(&["make && make test"]),
            ["sh", "-c", "make && make test"]
        );
        assert_eq!(argv(&["ls *.rs"]), ["sh", "-c", "ls *.rs"]);
        assert_eq!(argv(&["/usr/bin/true"]), ["/usr/bin/true"]);
        assert_eq!(argv(&["echo", "a && b"]), ["echo", "a && b"]);
        assert_eq!(argv(&[""]), ["sh", "-c", ""]);
    }

    #[test]
    fn a_zero_timeout_is_none_and_a_tiny_one_a_millisecond() {
        assert_eq!(timeout_of("0"), Some(Duration::MAX));
        assert_eq!(timeout_of("0ms"), Some(Duration::MAX));
        assert_eq!(timeout_of("0.0001"), Some(Duration::from_millis(1)));
        assert_eq!(timeout_of("1.5"), Some(Duration::from_millis(1500)));
    }
}

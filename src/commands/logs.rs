//! tail: bounded excerpts of a job's logs, or a follow stream as NDJSON.

use std::io::Write;
use std::time::Instant;

use super::request::duration;
use super::Reply;
use crate::cli::TailArgs;
use crate::job::liveness::{pidfd_of, reconcile, supervisor_of};
use crate::job::observe::Watch;
use crate::job::store::{Store, STDERR_LOG, STDOUT_LOG};
use crate::output::excerpt::{from_offset, head_and_tail};
use crate::response::{
    AppError, Const, SchemaVersion, StreamName, TailChunk, TailChunkType, TailEnd, TailEndType,
    TailResponse, TailType,
};
use crate::units::parse_size;

const DEFAULT_TAIL_BYTES: u64 = 64 * 1024;
const DEFAULT_TAIL_LINES: usize = 50;

pub fn tail(store: &Store, args: &TailArgs) -> Result<Reply, AppError> {
    let max_bytes = match &args.max_bytes {
        Some(s) => parse_size(s).map_err(|e| AppError::invalid(format!("--max-bytes: {e}")))?,
        None => DEFAULT_TAIL_BYTES,
    };
    let (want_out, want_err) = match args.stream.as_str() {
        "both" => (true, true),
        "stdout" => (true, false),
        "stderr" => (false, true),
        other => {
            return Err(AppError::invalid(format!(
                "--stream {other:?}: expected stdout, stderr or both"
            )))
        }
    };
    let id = store.resolve(&args.job_id)?;
    if args.follow {
        return follow(store, &id, args, want_out, want_err, max_bytes);
    }
    let status = reconcile(store, &id, store.read_status(&id)?)?;
    let dir = store.job_dir(&id);
    let (out_path, err_path) = (dir.join(STDOUT_LOG), dir.join(STDERR_LOG));
    let mut response = TailResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: TailType::Tail,
        job_id: id.clone(),
        state: status.state,
        stdout: String::new(),
        stderr: String::new(),
        stdout_range: [0, 0],
        stderr_range: [0, 0],
        encoding: super::view::ENCODING,
        stdout_truncated: false,
        stderr_truncated: false,
        stdout_total_bytes: 0,
        stderr_total_bytes: 0,
        stdout_next_offset: None,
        stderr_next_offset: None,
        stdout_log_path: out_path.to_string_lossy().into_owned(),
        stderr_log_path: err_path.to_string_lossy().into_owned(),
        compression: None,
    };
    let compress = super::view::compress_mode(args.compress.as_deref())?;
    let io = |e: std::io::Error| {
        AppError::new(
            crate::response::ErrorCode::IoError,
            format!("cannot read log: {e}"),
        )
    };
    for (want, path, is_out) in [(want_out, &out_path, true), (want_err, &err_path, false)] {
        if !want {
            continue;
        }
        let (text, truncated, total, next, range) = match args.offset {
            Some(offset) => {
                let (e, next) = from_offset(path, offset, max_bytes).map_err(io)?;
                (e.text, e.truncated, e.log_bytes, Some(next), e.range)
            }
            None => {
                let e = head_and_tail(
                    path,
                    max_bytes,
                    Some(args.lines.unwrap_or(DEFAULT_TAIL_LINES)),
                )
                .map_err(io)?;
                (e.text, e.truncated, e.log_bytes, None, e.range)
            }
        };
        if is_out {
            (
                response.stdout,
                response.stdout_truncated,
                response.stdout_total_bytes,
                response.stdout_next_offset,
                response.stdout_range,
            ) = (text, truncated, total, next, range);
        } else {
            (
                response.stderr,
                response.stderr_truncated,
                response.stderr_total_bytes,
                response.stderr_next_offset,
                response.stderr_range,
            ) = (text, truncated, total, next, range);
        }
    }
    // Once the job has ended, totals are what the job wrote (the log may be capped).
    if let Some(o) = status.outcome.as_ref() {
        if want_out {
            response.stdout_total_bytes = o.stdout.total_bytes;
        }
        if want_err {
            response.stderr_total_bytes = o.stderr.total_bytes;
        }
    }
    let spec = store.read_spec(&id)?;
    response.compression =
        crate::output::views::compress(&compress, &spec.argv, &out_path, &err_path);
    Ok(Reply::json(&response))
}

/// Streams new bytes of the logs as NDJSON `tail_chunk` lines until the job
/// ends; the final `tail_end` line is the command's response.
fn follow(
    store: &Store,
    id: &str,
    args: &TailArgs,
    want_out: bool,
    want_err: bool,
    max_bytes: u64,
) -> Result<Reply, AppError> {
    let deadline = match &args.until {
        Some(u) => Some(Instant::now() + duration("--until", u)?),
        None => None,
    };
    let dir = store.job_dir(id);
    let watch = Watch::with_logs(store, id)?;
    let mut offsets = [args.offset.unwrap_or(0); 2];
    let streams = [
        (want_out, dir.join(STDOUT_LOG), StreamName::Stdout),
        (want_err, dir.join(STDERR_LOG), StreamName::Stderr),
    ];
    let stdout = std::io::stdout();
    loop {
        let status = reconcile(store, id, store.read_status(id)?)?;
        let mut progressed = false;
        for (i, (want, path, name)) in streams.iter().enumerate() {
            if !want {
                continue;
            }
            loop {
                let (e, next) =
                    from_offset(path, offsets[i], max_bytes.max(4096)).map_err(|e| {
                        AppError::new(
                            crate::response::ErrorCode::IoError,
                            format!("cannot read log: {e}"),
                        )
                    })?;
                if next == offsets[i] {
                    break;
                }
                let chunk = TailChunk {
                    schema_version: SchemaVersion,
                    ok: Const,
                    kind: TailChunkType::TailChunk,
                    job_id: id.to_string(),
                    stream: *name,
                    offset: offsets[i],
                    data: e.text,
                };
                let mut lock = stdout.lock();
                let _ = serde_json::to_writer(&mut lock, &chunk);
                let _ = lock.write_all(b"\n");
                let _ = lock.flush();
                offsets[i] = next;
                progressed = true;
            }
        }
        let done = status.state.is_terminal() && !progressed;
        let expired = deadline.is_some_and(|d| Instant::now() >= d);
        if done || expired {
            let outcome = status.outcome.as_ref();
            let end = TailEnd {
                schema_version: SchemaVersion,
                ok: Const,
                kind: TailEndType::TailEnd,
                job_id: id.to_string(),
                state: status.state,
                result: outcome.map(|o| o.result),
                exit_code: outcome.and_then(|o| o.exit_code),
                stdout_total_bytes: outcome.map(|o| o.stdout.total_bytes).unwrap_or(offsets[0]),
                stderr_total_bytes: outcome.map(|o| o.stderr.total_bytes).unwrap_or(offsets[1]),
            };
            return Ok(Reply::json(&end));
        }
        if progressed {
            continue;
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let pidfd = supervisor_of(store, id, &status).and_then(|s| pidfd_of(&s));
        watch.wait(pidfd.as_ref().map(std::os::fd::AsFd::as_fd), left);
    }
}

//! list, delete, gc: the job store as a whole.

use std::path::Path;

use super::lifecycle::invalid_state;
use super::request::duration;
use super::Reply;
use crate::cli::{DeleteArgs, GcArgs, ListArgs};
use crate::job::liveness::reconcile;
use crate::job::model::{JobSpec, JobStatus, State};
use crate::job::store::{Store, StoreError};
use crate::response::{
    AppError, CleanupEntry, CleanupResponse, CleanupType, Const, JobSummary, ListResponse,
    ListType, SchemaVersion,
};
use crate::timefmt::{now_ms, rfc3339};

/// A job whose record cannot be read, and why.
struct Damaged {
    id: String,
    reason: String,
}

/// The readable jobs, each with its state.
type Jobs = Vec<(JobSpec, JobStatus)>;

/// Every readable job, with non-terminal ones checked for a dead
/// supervisor, and the jobs whose records cannot be read.
///
/// With `settle`, a job whose supervisor died is recorded `lost` (and what
/// it left is killed); without (`gc --dry-run`), it is only shown so.
fn load_all(store: &Store, settle: bool) -> Result<(Jobs, Vec<Damaged>), AppError> {
    let mut jobs = Vec::new();
    let mut damaged = Vec::new();
    for id in store.ids()? {
        // A job not (or no longer) there is skipped: being created or
        // deleted right now, or a creation that never finished (a leftover,
        // which gc removes). A visible job without its state is damaged.
        let read = match (
            readable(store.read_spec(&id), true),
            readable(store.read_status(&id), false),
        ) {
            (None, _) | (_, None) => continue,
            (Some(spec), Some(status)) => spec.and_then(|spec| Ok((spec, status?))),
        };
        let (spec, status) = match read {
            Ok(record) => record,
            Err(reason) => {
                damaged.push(Damaged { id, reason });
                continue;
            }
        };
        let status = if settle {
            reconcile(store, &id, status).unwrap_or_else(|_| JobStatus::created(spec.created_at_ms))
        } else if crate::job::liveness::supervisor_gone(store, &id, &status) {
            let mut shown = status.clone();
            shown.state = State::Lost;
            shown.finished_at_ms = Some(crate::job::liveness::last_known_alive_ms(
                store, &id, &status,
            ));
            shown
        } else {
            status
        };
        jobs.push((spec, status));
    }
    jobs.sort_by(|a, b| {
        b.0.created_at_ms
            .cmp(&a.0.created_at_ms)
            .then(b.0.job_id.cmp(&a.0.job_id))
    });
    damaged.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((jobs, damaged))
}

/// A record as `load_all` reads it: `None` when its job is not (or no
/// longer) there (with `missing_is_gone`, also when the file alone is
/// missing), else the record or why it cannot be read.
fn readable<T>(read: Result<T, StoreError>, missing_is_gone: bool) -> Option<Result<T, String>> {
    match read {
        Ok(record) => Some(Ok(record)),
        Err(StoreError::NotFound { .. }) => None,
        Err(StoreError::Io { source, .. })
            if missing_is_gone && source.kind() == std::io::ErrorKind::NotFound =>
        {
            None
        }
        Err(e) => Some(Err(e.to_string())),
    }
}

/// A damaged job as `list` shows it.
fn damaged_summary(d: Damaged) -> JobSummary {
    JobSummary {
        job_id: d.id,
        state: State::Corrupt,
        result: None,
        exit_code: None,
        argv: Vec::new(),
        cwd: String::new(),
        tags: Vec::new(),
        policy: String::new(),
        created_at: String::new(),
        finished_at: None,
        duration_ms: None,
        reason: Some(d.reason),
    }
}

pub fn list(store: &Store, args: &ListArgs) -> Result<Reply, AppError> {
    let state = match &args.state {
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            AppError::invalid(format!(
                "--state {s:?}: expected created, running, exited, killed, timed_out, failed or lost"
            ))
        })?),
        None => None,
    };
    let cwd = match &args.cwd {
        Some(c) => Some(
            c.canonicalize()
                .map_err(|e| AppError::invalid(format!("--cwd {}: {e}", c.display())))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let (all, damaged) = load_all(store, true)?;
    let mut jobs: Vec<JobSummary> = all
        .into_iter()
        .filter(|(spec, status)| {
            state.is_none_or(|s| status.state == s)
                && cwd.as_ref().is_none_or(|c| &spec.cwd == c)
                && args
                    .tag
                    .iter()
                    .all(|pattern| spec.tags.iter().any(|t| tag_matches(pattern, t)))
        })
        .map(|(spec, status)| JobSummary {
            job_id: spec.job_id,
            state: status.state,
            result: status.outcome.as_ref().map(|o| o.result),
            exit_code: status.outcome.as_ref().and_then(|o| o.exit_code),
            argv: spec.argv,
            cwd: spec.cwd,
            tags: spec.tags,
            policy: spec.policy,
            created_at: spec.created_at,
            finished_at: status.finished_at_ms.map(rfc3339),
            duration_ms: status.outcome.as_ref().map(|o| o.duration_ms),
            reason: None,
        })
        .collect();
    // A record that cannot be read is never left out silently: listed as
    // corrupt where no filter needs what it lost, counted otherwise.
    let unfiltered = args.tag.is_empty() && cwd.is_none();
    let mut skipped = 0;
    for d in damaged {
        if unfiltered && state.is_none_or(|s| s == State::Corrupt) {
            jobs.push(damaged_summary(d));
        } else if state.is_none_or(|s| s == State::Corrupt) {
            skipped += 1;
        }
    }
    if let Some(limit) = args.limit {
        jobs.truncate(limit);
    }
    Ok(Reply::json(&ListResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: ListType::List,
        root: store.root().to_string_lossy().into_owned(),
        count: jobs.len(),
        jobs,
        skipped,
    }))
}

/// `ci` matches the tag `ci`; `proj.*` matches `proj.build` and `proj.build.x`.
fn tag_matches(pattern: &str, tag: &str) -> bool {
    match pattern.strip_suffix(".*") {
        Some(ns) => tag
            .strip_prefix(ns)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == tag,
    }
}

pub fn delete(store: &Store, args: &DeleteArgs) -> Result<Reply, AppError> {
    let id = store.resolve(&args.job_id)?;
    let readable = store.read_spec(&id).and_then(|_| store.read_status(&id));
    let status = match readable {
        Ok(status) => reconcile(store, &id, status)?,
        // A record that cannot be read can still be deleted, unless its
        // cgroup shows the job running.
        Err(StoreError::Corrupt { .. }) if !store.cgroup_populated(&id) => {
            let mut status = JobStatus::created(0);
            status.state = State::Corrupt;
            status
        }
        Err(e) => return Err(e.into()),
    };
    let started_not_done = !status.state.is_terminal()
        && (status.state == State::Running || store.has_start_lock(&id));
    if started_not_done {
        return Err(invalid_state(
            &id,
            status.state,
            "delete",
            "kill it first, or wait for it to end",
        ));
    }
    let bytes = dir_size(&store.job_dir(&id));
    store.delete(&id)?;
    Ok(Reply::json(&CleanupResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: CleanupType::Delete,
        root: store.root().to_string_lossy().into_owned(),
        dry_run: false,
        older_than: None,
        deleted: 1,
        skipped: 0,
        freed_bytes: bytes,
        jobs: vec![CleanupEntry {
            job_id: id,
            state: status.state,
            action: "deleted".into(),
            reason: None,
            bytes,
        }],
    }))
}

pub fn gc(store: &Store, args: &GcArgs) -> Result<Reply, AppError> {
    let older_than = args.older_than.clone().unwrap_or_else(|| "30d".into());
    let window = duration("--older-than", &older_than)?.as_millis() as u64;
    let cutoff = now_ms().saturating_sub(window);
    let max_jobs = args.max_jobs;
    let max_bytes = args
        .max_bytes
        .as_deref()
        .map(|s| super::request::size("--max-bytes", s))
        .transpose()?;
    let (mut kept_jobs, mut kept_bytes) = (0usize, 0u64);
    let mut entries = Vec::new();
    let (mut deleted, mut skipped, mut freed) = (0, 0, 0);
    let (jobs, damaged) = load_all(store, !args.dry_run)?;
    // What a creation killed in its first milliseconds, or a removal killed
    // half-way, left behind: gone after a minute (a creation takes
    // milliseconds; one younger may be under way).
    for (path, age_ms) in store.leftovers()? {
        if age_ms < 60_000 {
            continue;
        }
        let bytes = dir_size(&path);
        if !args.dry_run {
            store.remove_leftover(&path)?;
        }
        freed += bytes;
        entries.push(CleanupEntry {
            job_id: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state: State::Corrupt,
            action: if args.dry_run {
                "would_delete"
            } else {
                "deleted"
            }
            .into(),
            reason: Some("a job whose creation or removal was interrupted".into()),
            bytes,
        });
    }
    for d in damaged {
        skipped += 1;
        entries.push(CleanupEntry {
            job_id: d.id,
            state: State::Corrupt,
            action: "skipped".into(),
            reason: Some(format!("{}; `delete` removes it", d.reason)),
            bytes: 0,
        });
    }
    for (spec, status) in jobs {
        let id = spec.job_id;
        if !status.state.is_terminal() {
            skipped += 1;
            entries.push(CleanupEntry {
                job_id: id,
                state: status.state,
                action: "skipped".into(),
                reason: Some(format!(
                    "{} jobs are never collected",
                    status.state.as_str()
                )),
                bytes: 0,
            });
            continue;
        }
        // Newest first: a job goes when it is older than the window, or
        // when the newer ones kept already fill --max-jobs or --max-bytes.
        let finished = status.finished_at_ms.unwrap_or(status.updated_at_ms);
        let bytes = dir_size(&store.job_dir(&id));
        let why = if finished <= cutoff {
            Some(format!("finished over {older_than} ago"))
        } else if max_jobs.is_some_and(|m| kept_jobs >= m) {
            Some("beyond --max-jobs".to_string())
        } else if max_bytes.is_some_and(|m| kept_bytes + bytes > m) {
            Some("beyond --max-bytes".to_string())
        } else {
            None
        };
        let Some(why) = why else {
            kept_jobs += 1;
            kept_bytes += bytes;
            continue; // kept: not a candidate, not reported
        };
        let action = if args.dry_run {
            "would_delete"
        } else {
            match store.delete(&id) {
                Ok(()) => "deleted",
                // Another gc or delete was first: gone all the same.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        deleted += 1;
        freed += bytes;
        entries.push(CleanupEntry {
            job_id: id,
            state: status.state,
            action: action.into(),
            reason: Some(why),
            bytes,
        });
    }
    Ok(Reply::json(&CleanupResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: CleanupType::Gc,
        root: store.root().to_string_lossy().into_owned(),
        dry_run: args.dry_run,
        older_than: Some(older_than),
        deleted: if args.dry_run { 0 } else { deleted },
        skipped,
        freed_bytes: freed,
        jobs: entries,
    }))
}

/// What a job takes on disk: its files, and those of its directories
/// (`files/`, `tmp/`), never through a link.
fn dir_size(dir: &Path) -> u64 {
    fn walk(dir: &Path, depth: u32) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() && depth < 64 => walk(&e.path(), depth + 1),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 0)
}

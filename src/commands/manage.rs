//! list, delete, gc: the job store as a whole.

use super::lifecycle::invalid_state;
use super::request::duration;
use super::Reply;
use crate::cli::{DeleteArgs, GcArgs, ListArgs};
use crate::config::Config;
use crate::job::index::{Filter, Row};
use crate::job::liveness::{reconcile, settle};
use crate::job::model::{JobStatus, State};
use crate::job::retention::{self, Action};
use crate::job::store::{Store, StoreError};
use crate::response::{
    AppError, CleanupEntry, CleanupResponse, CleanupType, Const, JobSummary, ListResponse,
    ListType, SchemaVersion,
};
use crate::timefmt::rfc3339;

/// A job as `list` shows it.
fn summary(row: Row) -> JobSummary {
    JobSummary {
        short_job_id: row.id.chars().take(7).collect(),
        job_id: row.id,
        state: row.state,
        result: row.result,
        exit_code: row.exit_code,
        command: row.argv.clone(),
        argv: row.argv,
        cwd: row.cwd,
        tags: row.tags,
        policy: row.policy,
        created_at: row.created_at,
        started_at: row.started_at_ms.map(rfc3339),
        finished_at: row.finished_at_ms.map(rfc3339),
        updated_at: (row.updated_at_ms > 0).then(|| rfc3339(row.updated_at_ms)),
        duration_ms: row.duration_ms,
        reason: row.reason,
    }
}

/// `list` (and `ps`: only running jobs).
pub fn list(store: &Store, args: &ListArgs, running_only: bool) -> Result<Reply, AppError> {
    let state = match (&args.state, running_only) {
        (Some(_), true) => {
            return Err(AppError::invalid(
                "ps lists running jobs; use list --state for others",
            ))
        }
        (None, true) => Some(State::Running),
        (Some(s), false) => Some(State::parse(s).ok_or_else(|| {
            AppError::invalid(format!(
                "--state {s:?}: expected created, running, exited, killed, timed_out, failed, lost or corrupt"
            ))
        })?),
        (None, false) => None,
    };
    for pattern in &args.tag {
        let name = pattern.strip_suffix(".*").unwrap_or(pattern);
        crate::job::define::check_tag(name)
            .map_err(|e| AppError::invalid(e.to_string().replace("--tag", "list --tag")))?;
    }
    // The jobs of the directory the caller is in, unless it asks for all
    // (a store is shared by every project of its user).
    let scope = match (&args.cwd, args.all) {
        (_, true) => None,
        (Some(c), false) => Some(c.clone()),
        (None, false) => Some(
            std::env::current_dir()
                .map_err(|e| AppError::invalid(format!("the current directory: {e}; use --all")))?,
        ),
    };
    let cwd = match scope {
        Some(c) => Some(
            c.canonicalize()
                .map_err(|e| AppError::invalid(format!("--cwd {}: {e}", c.display())))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let index = store.index_for_reading()?;
    settle(store, &index, true)?;
    let matches = |row: &Row| {
        state.is_none_or(|s| row.state == s)
            && cwd.as_ref().is_none_or(|c| {
                &row.cwd == c || (row.state == State::Corrupt && row.cwd.is_empty())
            })
            && args
                .tag
                .iter()
                .all(|pattern| row.tags.iter().any(|t| tag_matches(pattern, t)))
    };
    let limit = args.limit.unwrap_or(usize::MAX);
    let mut jobs = Vec::new();
    let mut skipped = 0;
    let filter = Filter {
        state,
        cwd: cwd.clone(),
    };
    let mut after: Option<(u64, String)> = None;
    let mut seen = std::collections::HashSet::new();
    let mut truncated = false;
    'pages: loop {
        let page = index
            .page(
                &filter,
                after.as_ref().map(|(t, id)| (*t, id.as_str())),
                limit.clamp(1, 512),
            )
            .map_err(|e| store.index_error(e))?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.created_at_ms, last.id.clone()));
        for row in page {
            // A row checked again may move further down the order (a
            // damaged definition loses its creation time): met once.
            if !seen.insert(row.id.clone()) {
                continue;
            }
            // Its records may have changed since the row was written.
            if let Some(row) = store.checked(&index, row) {
                if matches(&row) {
                    if jobs.len() >= limit {
                        // One more matches: the limit cut the list.
                        truncated = true;
                        break 'pages;
                    }
                    jobs.push(summary(row));
                }
            }
        }
    }
    // A record that cannot be read is never left out silently: listed as
    // corrupt where the filters need nothing it lost, counted otherwise.
    // (Those of another directory are not this listing's.)
    let filtered = state.is_some_and(|s| s != State::Corrupt) || !args.tag.is_empty();
    if filtered {
        let listed = jobs.iter().filter(|j| j.state == State::Corrupt).count();
        let damaged = index
            .page(
                &Filter {
                    state: Some(State::Corrupt),
                    cwd: cwd.clone(),
                },
                None,
                usize::MAX,
            )
            .map_err(|e| store.index_error(e))?
            .len();
        skipped = damaged.saturating_sub(listed);
    }
    Ok(Reply::json(&ListResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: ListType::List,
        root: store.root().to_string_lossy().into_owned(),
        count: jobs.len(),
        jobs,
        truncated,
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
    let mut entries = Vec::new();
    match &args.job_id {
        Some(prefix) => {
            let id = store.resolve(prefix)?;
            let state = deletable(store, &id)?;
            entries.push(remove_one(store, id, state, args.dry_run)?);
        }
        None => {
            // Every job of this directory: the ended ones go, the others
            // are listed as skipped with why.
            let cwd = std::env::current_dir()
                .and_then(|c| c.canonicalize())
                .map_err(|e| AppError::invalid(format!("the current directory: {e}")))?;
            let index = store.index_for_reading()?;
            settle(store, &index, !args.dry_run)?;
            let here = cwd.to_string_lossy().into_owned();
            let filter = Filter {
                state: None,
                cwd: Some(here.clone()),
            };
            let rows = index
                .page(&filter, None, usize::MAX)
                .map_err(|e| store.index_error(e))?;
            for row in rows {
                let Some(row) = store.checked(&index, row) else {
                    continue;
                };
                // Only this directory's (a damaged job of unknown directory
                // is listed everywhere, but deleted only by its id), and
                // never one not started yet.
                if row.cwd != here {
                    continue;
                }
                if row.state == State::Created {
                    entries.push(CleanupEntry {
                        job_id: row.id,
                        state: row.state,
                        action: "skipped".into(),
                        reason: Some("created: not started; delete it by its id".into()),
                        bytes: 0,
                    });
                    continue;
                }
                match deletable(store, &row.id) {
                    Ok(state) => match remove_one(store, row.id.clone(), state, args.dry_run) {
                        Ok(entry) => entries.push(entry),
                        // Deleted by another caller meanwhile.
                        Err(AppError { .. }) if !store.job_dir(&row.id).exists() => {}
                        Err(e) => return Err(e),
                    },
                    Err(_) => entries.push(CleanupEntry {
                        job_id: row.id,
                        state: row.state,
                        action: "skipped".into(),
                        reason: Some(format!(
                            "{}: kill it first, or wait for it to end",
                            row.state.as_str()
                        )),
                        bytes: 0,
                    }),
                }
            }
        }
    }
    let deleted = entries.iter().filter(|e| e.action == "deleted").count();
    let skipped = entries.iter().filter(|e| e.action == "skipped").count();
    Ok(Reply::json(&CleanupResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: CleanupType::Delete,
        root: store.root().to_string_lossy().into_owned(),
        dry_run: args.dry_run,
        older_than: None,
        older_than_source: None,
        scanned_dirs: None,
        candidate_count: None,
        deleted,
        skipped,
        freed_bytes: entries
            .iter()
            .filter(|e| e.action != "skipped")
            .map(|e| e.bytes)
            .sum(),
        jobs: entries,
    }))
}

/// The state of a job that may be deleted: ended, never started, or
/// damaged with nothing running in its cgroup.
fn deletable(store: &Store, id: &str) -> Result<State, AppError> {
    let readable = store.read_spec(id).and_then(|_| store.read_status(id));
    let status = match readable {
        Ok(status) => reconcile(store, id, status)?,
        // A record that cannot be read can still be deleted, unless its
        // cgroup shows the job running.
        Err(StoreError::Corrupt { .. }) if !store.cgroup_populated(id) => {
            let mut status = JobStatus::created(0);
            status.state = State::Corrupt;
            status
        }
        Err(e) => return Err(e.into()),
    };
    let started_not_done =
        !status.state.is_terminal() && (status.state == State::Running || store.has_start_lock(id));
    if started_not_done {
        return Err(invalid_state(
            id,
            status.state,
            "delete",
            "kill it first, or wait for it to end",
        ));
    }
    Ok(status.state)
}

fn remove_one(
    store: &Store,
    id: String,
    state: State,
    dry_run: bool,
) -> Result<CleanupEntry, AppError> {
    let bytes = store.kept_bytes(&id);
    if !dry_run {
        store.delete(&id)?;
    }
    Ok(CleanupEntry {
        job_id: id,
        state,
        action: if dry_run { "would_delete" } else { "deleted" }.into(),
        reason: None,
        bytes,
    })
}

pub fn gc(store: &Store, args: &GcArgs) -> Result<Reply, AppError> {
    // The flags, else the caller's config, else the built-in defaults.
    let config = Config::load().map_err(super::config_error)?;
    let mut retention = config.gc.retention().map_err(AppError::invalid)?;
    let older_than_source = if args.older_than.is_some() {
        "flag"
    } else if config.gc.older_than != crate::config::GcConfig::default().older_than {
        "config"
    } else {
        "default"
    };
    if let Some(older_than) = &args.older_than {
        retention.older_than_ms = duration("--older-than", older_than)?.as_millis() as u64;
        retention.older_than = older_than.clone();
    }
    if let Some(n) = args.max_jobs {
        retention.max_jobs = Some(n);
    }
    if let Some(s) = &args.max_bytes {
        retention.max_bytes = Some(super::request::size("--max-bytes", s)?);
    }
    let sweep = retention::collect(store, &retention, args.dry_run)?;
    let candidates = sweep
        .entries
        .iter()
        .filter(|e| !matches!(e.action, Action::Skipped))
        .count();
    let jobs = sweep
        .entries
        .into_iter()
        .map(|e| CleanupEntry {
            job_id: e.id,
            state: e.state,
            action: match e.action {
                Action::Deleted => "deleted",
                Action::WouldDelete => "would_delete",
                Action::Skipped => "skipped",
            }
            .into(),
            reason: Some(e.reason),
            bytes: e.bytes,
        })
        .collect();
    Ok(Reply::json(&CleanupResponse {
        schema_version: SchemaVersion,
        ok: Const,
        kind: CleanupType::Gc,
        root: store.root().to_string_lossy().into_owned(),
        dry_run: args.dry_run,
        older_than: Some(retention.older_than),
        older_than_source: Some(older_than_source),
        scanned_dirs: Some(sweep.scanned),
        candidate_count: Some(candidates),
        deleted: if args.dry_run { 0 } else { sweep.deleted },
        skipped: sweep.skipped,
        freed_bytes: sweep.freed_bytes,
        jobs,
    }))
}

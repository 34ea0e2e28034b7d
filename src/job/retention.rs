//! Which finished jobs go: `gc`, and the collection each supervisor runs
//! after its job (at most once a minute per store, bounded in time).
//!
//! Newest first, a finished job goes when it ended longer ago than the
//! window, or when the newer ones kept already fill `max_jobs` or
//! `max_bytes`. Jobs not over are never collected; damaged ones only by
//! `delete`.

use std::time::{Duration, Instant};

use super::index::Row;
use super::liveness::settle;
use super::model::State;
use super::store::{Store, StoreError, StoreResult};
use crate::timefmt::now_ms;

/// What a store keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// The window, as written (it is quoted in reasons).
    pub older_than: String,
    pub older_than_ms: u64,
    pub max_jobs: Option<usize>,
    pub max_bytes: Option<u64>,
}

/// How much one automatic collection may do: a supervisor collects after
/// its job has ended and its result is recorded, so nobody waits on it,
/// but it must not hold the machine either.
const AUTO_MAX_DELETIONS: usize = 1000;
const AUTO_MAX_TIME: Duration = Duration::from_secs(2);
/// Of a burst of jobs ending, one collects.
const AUTO_EVERY: Duration = Duration::from_secs(60);

/// A creation or removal younger than this may still be under way.
const LEFTOVER_AGE_MS: u64 = 60_000;

/// Rows forgotten per index transaction while collecting.
const BATCH: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deleted,
    WouldDelete,
    Skipped,
}

/// One job `gc` reports on.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub state: State,
    pub action: Action,
    pub reason: String,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub struct Sweep {
    pub entries: Vec<Entry>,
    pub deleted: usize,
    pub skipped: usize,
    pub freed_bytes: u64,
    /// False when a bound stopped the collection before the end.
    pub complete: bool,
}

struct Bound {
    max_deletions: usize,
    deadline: Instant,
}

/// `gc`: every job judged; with `dry_run`, nothing changed.
///
/// It also walks the store's directories: what a creation or removal
/// interrupted in its first milliseconds left (removed after a minute),
/// and jobs whose row is missing (put back in the index).
pub fn collect(store: &Store, retention: &Retention, dry_run: bool) -> StoreResult<Sweep> {
    let mut sweep = Sweep::default();
    survey(store, dry_run, &mut sweep)?;
    judge(store, retention, dry_run, None, &mut sweep)?;
    Ok(sweep)
}

/// The collection a supervisor runs after its job: nothing unless no
/// other has run for a minute; at most [`AUTO_MAX_DELETIONS`] jobs within
/// [`AUTO_MAX_TIME`].
pub fn collect_automatically(store: &Store, retention: &Retention) -> StoreResult<Option<Sweep>> {
    let index = store.index()?;
    if !index
        .take_turn("auto_gc", now_ms(), AUTO_EVERY)
        .map_err(|e| store.index_error(e))?
    {
        return Ok(None);
    }
    drop(index);
    let bound = Bound {
        max_deletions: AUTO_MAX_DELETIONS,
        deadline: Instant::now() + AUTO_MAX_TIME,
    };
    let mut sweep = Sweep::default();
    judge(store, retention, false, Some(bound), &mut sweep)?;
    Ok(Some(sweep))
}

fn survey(store: &Store, dry_run: bool, sweep: &mut Sweep) -> StoreResult<()> {
    let index = store.index_for_reading()?;
    let known = index.ids().map_err(|e| store.index_error(e))?;
    let found = store.survey(&known)?;
    let mut back = Vec::new();
    for id in found.unindexed {
        back.extend(store.row_from_files(&id));
    }
    let mut index = index;
    index.put_all(&back).map_err(|e| store.index_error(e))?;
    index
        .remove_all(&found.missing)
        .map_err(|e| store.index_error(e))?;
    for (path, age_ms) in found.leftovers {
        if age_ms < LEFTOVER_AGE_MS {
            continue;
        }
        let bytes = super::store::disk_bytes(&path, &[]);
        if !dry_run {
            store.remove_leftover(&path)?;
        }
        sweep.freed_bytes += bytes;
        sweep.entries.push(Entry {
            id: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            state: State::Corrupt,
            action: if dry_run {
                Action::WouldDelete
            } else {
                Action::Deleted
            },
            reason: "a job whose creation or removal was interrupted".into(),
            bytes,
        });
    }
    Ok(())
}

fn judge(
    store: &Store,
    retention: &Retention,
    dry_run: bool,
    bound: Option<Bound>,
    sweep: &mut Sweep,
) -> StoreResult<()> {
    let index = store.index_for_reading()?;
    let mut now = settle(store, &index, !dry_run)?;
    let rows = index.all().map_err(|e| store.index_error(e))?;
    let cutoff = now_ms().saturating_sub(retention.older_than_ms);
    let layout = crate::sandbox::cgroup::Layout::detect().ok();
    let (mut kept_jobs, mut kept_bytes) = (0usize, 0u64);
    let mut forgotten: Vec<String> = Vec::new();
    let skip = |sweep: &mut Sweep, row: &Row, reason: String| {
        sweep.skipped += 1;
        sweep.entries.push(Entry {
            id: row.id.clone(),
            state: row.state,
            action: Action::Skipped,
            reason,
            bytes: 0,
        });
    };
    sweep.complete = true;
    for row in rows {
        let row = now.remove(&row.id).unwrap_or(row);
        if row.state == State::Corrupt {
            let why = row.reason.clone().unwrap_or_default();
            skip(sweep, &row, format!("{why}; `delete` removes it"));
            continue;
        }
        if !row.state.is_terminal() {
            let why = format!("{} jobs are never collected", row.state.as_str());
            skip(sweep, &row, why);
            continue;
        }
        let finished = row.finished_at_ms.unwrap_or(row.updated_at_ms);
        let why = if finished <= cutoff {
            format!("finished over {} ago", retention.older_than)
        } else if retention.max_jobs.is_some_and(|m| kept_jobs >= m) {
            "beyond --max-jobs".to_string()
        } else if retention
            .max_bytes
            .is_some_and(|m| kept_bytes + row.bytes > m)
        {
            "beyond --max-bytes".to_string()
        } else {
            kept_jobs += 1;
            kept_bytes += row.bytes;
            continue; // kept: not a candidate, not reported
        };
        if let Some(b) = &bound {
            if sweep.deleted >= b.max_deletions || Instant::now() >= b.deadline {
                sweep.complete = false;
                break;
            }
        }
        let action = if dry_run {
            Action::WouldDelete
        } else {
            // Its records may have changed since the row was written: the
            // job is judged again on what they say now.
            let Some(checked) = store.checked(&index, row.clone()) else {
                continue;
            };
            if checked.state != row.state {
                skip(sweep, &checked, "changed while collecting".into());
                continue;
            }
            match store.remove_job(&row.id, layout.as_ref()) {
                Ok(()) => {}
                // Another gc or delete was first: gone all the same.
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
            forgotten.push(row.id.clone());
            if forgotten.len() >= BATCH {
                let _ = index.remove_all(&forgotten);
                forgotten.clear();
            }
            Action::Deleted
        };
        sweep.deleted += 1;
        sweep.freed_bytes += row.bytes;
        sweep.entries.push(Entry {
            id: row.id,
            state: row.state,
            action,
            reason: why,
            bytes: row.bytes,
        });
    }
    // A row left by a failure here points at no directory: readers drop it.
    let _ = index.remove_all(&forgotten);
    Ok(())
}

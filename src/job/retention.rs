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
    /// Jobs judged.
    pub scanned: usize,
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
    sweep.scanned = rows.len();
    let cutoff = now_ms().saturating_sub(retention.older_than_ms);
    let (mut kept_jobs, mut kept_bytes) = (0usize, 0u64);
    let mut doomed: Vec<(Row, String)> = Vec::new();
    sweep.complete = true;
    for row in rows {
        let row = now.remove(&row.id).unwrap_or(row);
        let skipped = if row.state == State::Corrupt {
            let why = row.reason.as_deref().unwrap_or_default();
            Some(format!("{why}; `delete` removes it"))
        } else if !row.state.is_terminal() {
            Some(format!("{} jobs are never collected", row.state.as_str()))
        } else {
            None
        };
        if let Some(reason) = skipped {
            sweep.skip(&row, reason);
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
        if bound
            .as_ref()
            .is_some_and(|b| doomed.len() >= b.max_deletions)
        {
            sweep.complete = false;
            break;
        }
        doomed.push((row, why));
    }
    if dry_run {
        for (row, why) in doomed {
            sweep.count(row, Action::WouldDelete, why);
        }
        return Ok(());
    }
    let deadline = bound.map(|b| b.deadline);
    let removals = remove_in_parallel(store, &doomed, deadline);
    let mut forgotten = Vec::new();
    let mut failure = None;
    for ((row, why), removal) in doomed.into_iter().zip(removals) {
        match removal {
            Removal::Removed => {
                forgotten.push(row.id.clone());
                sweep.count(row, Action::Deleted, why);
            }
            // Another gc or delete was first: gone all the same.
            Removal::Gone => {}
            // Its records changed since the row was written: judged again
            // by the next collection, on what they say then.
            Removal::Changed => {
                if let Some(now) = store.checked(&index, row) {
                    sweep.skip(&now, "changed while collecting".into());
                }
            }
            Removal::NotReached => sweep.complete = false,
            Removal::Failed(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    // Should this fail, the rows point at no directory: readers drop them.
    let _ = index.remove_all(&forgotten);
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

impl Sweep {
    fn skip(&mut self, row: &Row, reason: String) {
        self.skipped += 1;
        self.entries.push(Entry {
            id: row.id.clone(),
            state: row.state,
            action: Action::Skipped,
            reason,
            bytes: 0,
        });
    }

    fn count(&mut self, row: Row, action: Action, reason: String) {
        self.deleted += 1;
        self.freed_bytes += row.bytes;
        self.entries.push(Entry {
            id: row.id,
            state: row.state,
            action,
            reason,
            bytes: row.bytes,
        });
    }
}

enum Removal {
    Removed,
    Gone,
    Changed,
    NotReached,
    Failed(StoreError),
}

/// Removing a job frees blocks, and on a disk mounted with `discard` (as
/// virtual disks often are) each free waits on the device: removals made
/// one at a time leave the CPU idle. Several at once overlap those waits.
const REMOVERS: usize = 8;

/// Removes each job of `doomed` whose records are still those its row was
/// made from; in the order given, the outcome of each.
fn remove_in_parallel(
    store: &Store,
    doomed: &[(Row, String)],
    deadline: Option<Instant>,
) -> Vec<Removal> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let layout = crate::sandbox::cgroup::Layout::detect().ok();
    let next = AtomicUsize::new(0);
    let remove_one = |row: &Row| {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Removal::NotReached;
        }
        if super::index::stamp(&store.job_dir(&row.id)) != row.stamp {
            return Removal::Changed;
        }
        match store.remove_job(&row.id, layout.as_ref()) {
            Ok(()) => Removal::Removed,
            Err(StoreError::NotFound { .. }) => Removal::Gone,
            Err(e) => Removal::Failed(e),
        }
    };
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((row, _)) = doomed.get(i) else {
                return done;
            };
            done.push((i, remove_one(row)));
        }
    };
    let workers = REMOVERS.min(doomed.len());
    let mut outcomes: Vec<Option<Removal>> = (0..doomed.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
        for handle in handles {
            // A remover that panicked leaves its jobs not reached.
            for (i, removal) in handle.join().unwrap_or_default() {
                outcomes[i] = Some(removal);
            }
        }
    });
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Removal::NotReached))
        .collect()
}

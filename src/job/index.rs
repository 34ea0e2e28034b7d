//! The index of the store: one SQLite table with a row per job, so that
//! `list`, a status by id prefix and `gc` cost what they answer, not the
//! size of the store.
//!
//! The job's own files (`job.json`, `state.json`) stay the truth; a row
//! is what they said when it was written, with a stamp of both files
//! (inode, size, modification time). A reader compares the stamp with the
//! files before it believes a row, and reads the files again when they
//! changed: a row left stale by a crash, a full disk or a hand edit is
//! noticed, never shown. A lost or unreadable index is rebuilt from the
//! directories, which is also how a store made by an older version gets
//! its index.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::model::{JobSpec, JobStatus, ResultKind, State};

/// The index's file in the store's root.
pub const INDEX_FILE: &str = "index.sqlite";

/// Version of the table's layout; another version is rebuilt.
const LAYOUT: i64 = 2;

/// How long a writer waits for another one (a rebuild of a large store holds
/// the lock for seconds; ordinary writes for microseconds).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the write-ahead log may grow, in bytes, before a supervisor
/// folds it into the database and empties it ([`Index::fold_log`]).
const LOG_FOLDED_AT: u64 = 256 << 10;

/// How long a fold waits for readers to leave the log.
const FOLD_WAIT: Duration = Duration::from_millis(200);

/// What the index knows of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub state: State,
    pub created_at_ms: u64,
    pub created_at: String,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub updated_at_ms: u64,
    pub result: Option<ResultKind>,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<u64>,
    pub argv: Vec<String>,
    pub cwd: String,
    pub tags: Vec<String>,
    pub policy: String,
    /// What the job keeps on disk (logs, records, `$JOB_DIR`), counted when
    /// it ended; 0 before.
    pub bytes: u64,
    /// `corrupt`: why its records cannot be read.
    pub reason: Option<String>,
    /// Both records' identity when the row was written (see [`stamp`]).
    pub stamp: String,
}

impl Row {
    /// A job as its records describe it.
    pub fn of(spec: &JobSpec, status: &JobStatus, stamp: String, bytes: u64) -> Row {
        let outcome = status.outcome.as_ref();
        Row {
            id: spec.job_id.clone(),
            state: status.state,
            created_at_ms: spec.created_at_ms,
            created_at: spec.created_at.clone(),
            started_at_ms: status.started_at_ms,
            finished_at_ms: status.finished_at_ms,
            updated_at_ms: status.updated_at_ms,
            result: outcome.map(|o| o.result),
            exit_code: outcome.and_then(|o| o.exit_code),
            duration_ms: outcome.map(|o| o.duration_ms),
            argv: spec.argv.clone(),
            cwd: spec.cwd.clone(),
            tags: spec.tags.clone(),
            policy: spec.policy.clone(),
            bytes,
            reason: None,
            stamp,
        }
    }

    /// A job whose records cannot be read; what is known of it (its
    /// definition, when only the state is damaged) is kept.
    pub fn corrupt(id: &str, spec: Option<&JobSpec>, reason: String, stamp: String) -> Row {
        let mut row = match spec {
            Some(spec) => Row::of(spec, &JobStatus::created(spec.created_at_ms), stamp, 0),
            None => Row {
                id: id.to_string(),
                state: State::Corrupt,
                created_at_ms: 0,
                created_at: String::new(),
                started_at_ms: None,
                finished_at_ms: None,
                updated_at_ms: 0,
                result: None,
                exit_code: None,
                duration_ms: None,
                argv: Vec::new(),
                cwd: String::new(),
                tags: Vec::new(),
                policy: String::new(),
                bytes: 0,
                reason: None,
                stamp,
            },
        };
        row.state = State::Corrupt;
        row.reason = Some(reason);
        row
    }
}

/// Which rows a listing walks, newest first.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub state: Option<State>,
    pub cwd: Option<String>,
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
}

impl Index {
    /// Opens the store's index, building it with `rows` (every job the
    /// directories hold) when it is new, of another layout, or unreadable
    /// (the unreadable file is kept beside it as `index.sqlite.damaged`).
    pub fn open(root: &Path, rows: &dyn Fn() -> Vec<Row>) -> io::Result<Index> {
        let path = root.join(INDEX_FILE);
        match Index::open_at(&path, rows) {
            Err(e) if is_damage(&e) => {
                let aside = root.join(format!("{INDEX_FILE}.damaged"));
                std::fs::rename(&path, &aside)?;
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(root.join(format!("{INDEX_FILE}{suffix}")));
                }
                Index::open_at(&path, rows).map_err(|e| to_io(&path, e))
            }
            other => other.map_err(|e| to_io(&path, e)),
        }
    }

    /// An index held in memory, built with `rows`: for reading a store
    /// that cannot take a write (read-only, or its disk full).
    pub fn in_memory(rows: &dyn Fn() -> Vec<Row>) -> io::Result<Index> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| to_io(&path, e))?;
        let mut index = Index { conn, path };
        index.build(rows).map_err(|e| index.io(e))?;
        Ok(index)
    }

    /// Opens and, if need be, builds the index. Turning a new file into a
    /// WAL database takes its lock without waiting for it: callers opening
    /// a new store at once retry until one has done it.
    fn open_at(path: &Path, rows: &dyn Fn() -> Vec<Row>) -> rusqlite::Result<Index> {
        let began = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match Index::try_open_at(path, rows) {
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                    ) && began.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    fn try_open_at(path: &Path, rows: &dyn Fn() -> Vec<Row>) -> rusqlite::Result<Index> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never wait for a writer. NORMAL: a commit is not
        // synced; a crash of the machine may lose the last rows, which the
        // files still hold and `gc` puts back.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The last connection to close would fold the log into the database
        // and sync it: every CLI and supervisor is a last connection, and
        // a sync costs milliseconds. Writers fold it in as it grows instead.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        let mut index = Index {
            conn,
            path: path.to_path_buf(),
        };
        if index.layout()? != LAYOUT {
            index.build(rows)?;
        }
        Ok(index)
    }

    fn layout(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))
    }

    /// Makes the table and fills it, holding the write lock so that
    /// another caller opening the new index waits, then finds it built.
    fn build(&mut self, rows: &dyn Fn() -> Vec<Row>) -> rusqlite::Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let layout: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if layout == LAYOUT {
            return Ok(()); // built by another caller while we waited
        }
        tx.execute_batch(
            "DROP TABLE IF EXISTS jobs;
             DROP TABLE IF EXISTS meta;
             CREATE TABLE jobs (
                 id TEXT PRIMARY KEY NOT NULL,
                 state TEXT NOT NULL,
                 created_at_ms INTEGER NOT NULL,
                 created_at TEXT NOT NULL,
                 finished_at_ms INTEGER,
                 updated_at_ms INTEGER NOT NULL,
                 result TEXT,
                 exit_code INTEGER,
                 duration_ms INTEGER,
                 argv TEXT NOT NULL,
                 cwd TEXT NOT NULL,
                 tags TEXT NOT NULL,
                 policy TEXT NOT NULL,
                 bytes INTEGER NOT NULL,
                 reason TEXT,
                 stamp TEXT NOT NULL,
                 started_at_ms INTEGER
             );
             CREATE INDEX jobs_newest ON jobs (created_at_ms DESC, id DESC);
             CREATE INDEX jobs_by_state ON jobs (state, created_at_ms DESC, id DESC);
             CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);",
        )?;
        for row in rows() {
            insert(&tx, &row)?;
        }
        tx.pragma_update(None, "user_version", LAYOUT)?;
        tx.commit()
    }

    /// Records a job (a new one, or what its files say now).
    pub fn put(&self, row: &Row) -> io::Result<()> {
        insert(&self.conn, row).map_err(|e| self.io(e))
    }

    /// Records many jobs in one transaction.
    pub fn put_all(&self, rows: &[Row]) -> io::Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.io(e))?;
        for row in rows {
            insert(&tx, row).map_err(|e| self.io(e))?;
        }
        tx.commit().map_err(|e| self.io(e))
    }

    pub fn remove(&self, id: &str) -> io::Result<()> {
        self.remove_all(&[id.to_string()])
    }

    /// Forgets many jobs in one transaction.
    pub fn remove_all(&self, ids: &[String]) -> io::Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.io(e))?;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM jobs WHERE id = ?1")
                .map_err(|e| self.io(e))?;
            for id in ids {
                stmt.execute([id]).map_err(|e| self.io(e))?;
            }
        }
        tx.commit().map_err(|e| self.io(e))
    }

    pub fn get(&self, id: &str) -> io::Result<Option<Row>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                read_row,
            )
            .optional()
            .map_err(|e| self.io(e))
    }

    /// Ids starting with `prefix` (lowercase hex), at most `limit`.
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> io::Result<Vec<String>> {
        // Every id is 32 hex digits: those starting with the prefix sort
        // between the prefix itself and the prefix followed by 'g'.
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id FROM jobs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3")
            .map_err(|e| self.io(e))?;
        let ids = stmt
            .query_map(params![prefix, format!("{prefix}g"), limit as i64], |r| {
                r.get(0)
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.io(e))?;
        Ok(ids)
    }

    /// The jobs not yet over (created or running): those whose row a state
    /// write may have missed.
    pub fn unsettled(&self) -> io::Result<Vec<Row>> {
        self.select(
            "WHERE state IN ('created', 'running') ORDER BY created_at_ms DESC, id DESC",
            &[],
        )
    }

    /// How many jobs are in `state`.
    pub fn count(&self, state: State) -> io::Result<usize> {
        self.conn
            .query_row(
                "SELECT count(*) FROM jobs WHERE state = ?1",
                [state.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
            .map_err(|e| self.io(e))
    }

    /// Every job's id.
    pub fn ids(&self) -> io::Result<std::collections::HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM jobs")
            .map_err(|e| self.io(e))?;
        let ids = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.io(e))?;
        Ok(ids)
    }

    /// Up to `n` rows matching `filter`, newest first, after the row
    /// `after` (its creation time and id): a listing reads page by page,
    /// so that rows it rewrites meanwhile are never met twice.
    pub fn page(
        &self,
        filter: &Filter,
        after: Option<(u64, &str)>,
        n: usize,
    ) -> io::Result<Vec<Row>> {
        let mut sql = String::from("WHERE 1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(state) = filter.state {
            sql.push_str(" AND state = ?");
            args.push(Box::new(state.as_str()));
        }
        if let Some(cwd) = &filter.cwd {
            // A job whose definition cannot be read belongs to no directory
            // it could be left out of: it shows in every one.
            sql.push_str(" AND (cwd = ? OR (state = 'corrupt' AND cwd = ''))");
            args.push(Box::new(cwd.clone()));
        }
        if let Some((created, id)) = after {
            sql.push_str(" AND (created_at_ms, id) < (?, ?)");
            args.push(Box::new(to_sql(created)));
            args.push(Box::new(id.to_string()));
        }
        sql.push_str(" ORDER BY created_at_ms DESC, id DESC LIMIT ?");
        args.push(Box::new(i64::try_from(n).unwrap_or(i64::MAX)));
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        self.select(&sql, &refs)
    }

    /// Every row, newest first.
    pub fn all(&self) -> io::Result<Vec<Row>> {
        self.select("ORDER BY created_at_ms DESC, id DESC", &[])
    }

    fn select(&self, tail: &str, args: &[&dyn rusqlite::ToSql]) -> io::Result<Vec<Row>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM jobs {tail}"))
            .map_err(|e| self.io(e))?;
        let rows = stmt
            .query_map(args, read_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.io(e))?;
        Ok(rows)
    }

    /// Takes the turn of an automatic collection: true for at most one
    /// caller per `every`, so that a burst of launches collects once.
    pub fn take_turn(&self, name: &str, now_ms: u64, every: Duration) -> io::Result<bool> {
        let due = to_sql(now_ms.saturating_sub(every.as_millis() as u64));
        // Read first: most callers find the turn taken, and a read takes no
        // write lock.
        let last: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.io(e))?;
        if last.is_some_and(|last| last > due) {
            return Ok(false);
        }
        let changed = self
            .conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE value <= ?3",
                params![name, to_sql(now_ms), due],
            )
            .map_err(|e| self.io(e))?;
        Ok(changed == 1)
    }

    /// Folds the write-ahead log into the database and empties it, once it
    /// is longer than [`LOG_FOLDED_AT`].
    ///
    /// Why by hand: the first process to open the index rereads the whole
    /// log (the shared index of the log does not outlive the last
    /// connection, and every CLI and supervisor is one), and forgets how
    /// much of it was folded already; SQLite's own folding keeps the log,
    /// so it would only grow. The fold syncs the disk: supervisors do it
    /// once their job's answer is given, never on a launch's path.
    pub fn fold_log(&self) -> io::Result<()> {
        let mut log = self.path.clone().into_os_string();
        log.push("-wal");
        if std::fs::metadata(&log).map_or(0, |m| m.len()) < LOG_FOLDED_AT {
            return Ok(());
        }
        self.conn.busy_timeout(FOLD_WAIT).map_err(|e| self.io(e))?;
        let folded = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.io(e))?;
        folded.map_err(|e| self.io(e))
    }

    fn io(&self, e: rusqlite::Error) -> io::Error {
        if e.sqlite_error_code() == Some(ErrorCode::SystemIoFailure) {
            // SAFETY: the handle is our open connection; the call only reads
            // the errno of its last failed system call.
            let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(self.conn.handle()) };
            if errno == libc::ENOSPC || errno == libc::EDQUOT {
                return io::Error::from_raw_os_error(errno);
            }
        }
        to_io(&self.path, e)
    }
}

const COLUMNS: &str = "id, state, created_at_ms, created_at, finished_at_ms, updated_at_ms, \
     result, exit_code, duration_ms, argv, cwd, tags, policy, bytes, reason, stamp, started_at_ms";

fn insert(conn: &Connection, row: &Row) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO jobs ({COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?;
    stmt.execute(params![
        row.id,
        row.state.as_str(),
        to_sql(row.created_at_ms),
        row.created_at,
        row.finished_at_ms.map(to_sql),
        to_sql(row.updated_at_ms),
        row.result.map(result_text),
        row.exit_code,
        row.duration_ms.map(to_sql),
        json_text(&row.argv),
        row.cwd,
        json_text(&row.tags),
        row.policy,
        to_sql(row.bytes),
        row.reason,
        row.stamp,
        row.started_at_ms.map(to_sql),
    ])
    .map(drop)
}

fn read_row(r: &rusqlite::Row) -> rusqlite::Result<Row> {
    let text = |i: usize| -> rusqlite::Result<String> { r.get(i) };
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("not {what}").into(),
        )
    };
    let state = State::parse(&text(1)?).ok_or_else(|| bad(1, "a state"))?;
    let result = match r.get::<_, Option<String>>(6)? {
        Some(s) => Some(
            serde_json::from_value(serde_json::Value::String(s)).map_err(|_| bad(6, "a result"))?,
        ),
        None => None,
    };
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        serde_json::from_str(&text(i)?).map_err(|_| bad(i, "a list"))
    };
    Ok(Row {
        id: text(0)?,
        state,
        created_at_ms: from_sql(r.get(2)?),
        created_at: text(3)?,
        finished_at_ms: r.get::<_, Option<i64>>(4)?.map(from_sql),
        updated_at_ms: from_sql(r.get(5)?),
        result,
        exit_code: r.get(7)?,
        duration_ms: r.get::<_, Option<i64>>(8)?.map(from_sql),
        argv: list(9)?,
        cwd: text(10)?,
        tags: list(11)?,
        policy: text(12)?,
        bytes: from_sql(r.get(13)?),
        reason: r.get(14)?,
        stamp: text(15)?,
        started_at_ms: r.get::<_, Option<i64>>(16)?.map(from_sql),
    })
}

fn json_text(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn result_text(r: ResultKind) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// SQLite integers are signed; times and sizes never reach 2^63.
fn to_sql(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The file is not a database, or a damaged one: rebuilt from the jobs.
fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    )
}

/// An index failure as the store reports it: a full disk is a full disk,
/// a read-only store is a read-only store, anything else names the file.
fn to_io(path: &Path, e: rusqlite::Error) -> io::Error {
    let errno = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Some(libc::ENOSPC),
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            Some(libc::EACCES)
        }
        _ => None,
    };
    match errno {
        Some(n) => io::Error::from_raw_os_error(n),
        None => io::Error::other(format!("the job index {}: {e}", path.display())),
    }
}

/// The identity of a job's two records: inode, size and modification time
/// of each. A record replaced (by rename), rewritten in place or damaged
/// gets another stamp; a missing one reads `-`.
pub fn stamp(job_dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let one = |name: &str| {
        std::fs::symlink_metadata(job_dir.join(name)).map_or_else(
            |_| "-".to_string(),
            |m| format!("{}.{}.{}.{}", m.ino(), m.size(), m.mtime(), m.mtime_nsec()),
        )
    };
    format!(
        "{}/{}",
        one(super::store::JOB_FILE),
        one(super::store::STATE_FILE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, created: u64, state: State) -> Row {
        Row {
            id: id.into(),
            state,
            created_at_ms: created,
            created_at: String::new(),
            started_at_ms: None,
            finished_at_ms: None,
            updated_at_ms: created,
            result: None,
            exit_code: None,
            duration_ms: None,
            argv: vec!["true".into()],
            cwd: "/w".into(),
            tags: vec![],
            policy: "default".into(),
            bytes: 0,
            reason: None,
            stamp: "s".into(),
        }
    }

    #[test]
    fn rows_come_back_newest_first_and_by_prefix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = format!("a{}", "0".repeat(31));
        let b = format!("ab{}", "0".repeat(30));
        let index = Index::open(dir.path(), &|| vec![row(&a, 1, State::Exited)]).expect("open");
        index.put(&row(&b, 2, State::Running)).expect("put");
        let ids: Vec<String> = index
            .all()
            .expect("all")
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, [b.clone(), a.clone()]);
        assert_eq!(
            index.ids_with_prefix("a", 5).expect("prefix"),
            [a.clone(), b.clone()]
        );
        assert_eq!(
            index.ids_with_prefix("ab", 5).expect("prefix"),
            std::slice::from_ref(&b)
        );
        assert_eq!(index.unsettled().expect("unsettled").len(), 1);
        index.remove(&b).expect("remove");
        assert_eq!(index.get(&b).expect("get"), None);
    }

    #[test]
    fn a_damaged_index_is_rebuilt_from_the_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = "c".repeat(32);
        std::fs::write(dir.path().join(INDEX_FILE), vec![0x55; 8192]).expect("write");
        let index = Index::open(dir.path(), &|| vec![row(&id, 1, State::Exited)]).expect("open");
        assert_eq!(index.all().expect("all").len(), 1);
        assert!(dir.path().join(format!("{INDEX_FILE}.damaged")).exists());
    }

    #[test]
    fn one_caller_per_period_takes_the_turn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(dir.path(), &Vec::new).expect("open");
        let every = Duration::from_secs(60);
        assert!(index.take_turn("gc", 100_000, every).expect("turn"));
        assert!(!index.take_turn("gc", 130_000, every).expect("turn"));
        assert!(index.take_turn("gc", 160_000, every).expect("turn"));
    }
}

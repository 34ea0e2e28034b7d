//! The job store: one directory per job under the root.
//!
//! ```text
//! <root>/<job_id>/job.json       definition (never rewritten)
//!                /state.json     state, replaced atomically by rename
//!                /secrets.json   clear-text masked values of a created job, 0600, removed at launch
//!                /start.lock     created O_EXCL by the one `start` that wins; holds the supervisor
//!                /stdin.bin      stdin given at create time
//!                /stdout.log /stderr.log
//!                /tmp /files     the job's $TMPDIR and $JOB_DIR
//! <root>/index.sqlite            a row per job (see [`super::index`])
//! <root>/.new/<job_id>           a link to the job.json of a job whose row is not written yet
//! ```
//! Every write goes to a temporary file first and is renamed into place, so a
//! full disk or a crash leaves the previous version readable. The records
//! are the truth; the index is how a listing finds them without reading
//! every one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{de::DeserializeOwned, Serialize};

use super::index::{self, Index, Row, INDEX_FILE};
use super::model::{is_valid_prefix, JobSpec, JobStatus, ProcRef, Secrets};

pub const JOB_FILE: &str = "job.json";
pub const STATE_FILE: &str = "state.json";
pub const SECRETS_FILE: &str = "secrets.json";
pub const START_LOCK: &str = "start.lock";
pub const STDOUT_LOG: &str = "stdout.log";
pub const STDERR_LOG: &str = "stderr.log";
pub const STDIN_FILE: &str = "stdin.bin";
const TMP_DIR: &str = "tmp";
const FILES_DIR: &str = "files";

/// Why the store could not do what was asked; every variant keeps the path.
#[derive(Debug)]
pub enum StoreError {
    /// No job has that id (or the text is not an id at all).
    NotFound { prefix: String, root: PathBuf },
    /// The prefix matches several jobs.
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    /// Another caller has started this job.
    AlreadyStarted { id: String },
    /// The file system refused (`action` is "read" or "write").
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A record that cannot be decoded.
    Corrupt { path: PathBuf, message: String },
    /// Someone else could change the store under us (`reason` says how).
    Unsafe { path: PathBuf, reason: String },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> StoreError {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The errno behind an I/O failure.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound { prefix, root } if is_valid_prefix(prefix) => {
                write!(f, "no job matches {prefix:?} in {}", root.display())
            }
            StoreError::NotFound { prefix, .. } => write!(
                f,
                "no job {prefix:?}: job ids are 1 to 32 lowercase hex characters"
            ),
            StoreError::Ambiguous { prefix, candidates } => write!(
                f,
                "job id prefix {prefix:?} matches {} jobs; give more characters",
                candidates.len()
            ),
            StoreError::AlreadyStarted { id } => write!(f, "job {id} has already been started"),
            StoreError::Io {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            StoreError::Corrupt { path, message } => {
                write!(f, "{} is not valid: {message}", path.display())
            }
            StoreError::Unsafe { path, reason } => write!(
                f,
                "refusing the job store {}: {reason}; anyone who can change it could \
                 rewrite a job before it starts. Pick another with --root or AGENT_EXEC_ROOT",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

pub type StoreResult<T> = Result<T, StoreError>;

thread_local! {
    /// See [`Store::index`]: (store root, process, connection).
    static OPEN_INDEX: std::cell::RefCell<Option<(PathBuf, u32, Rc<Index>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Closes this thread's connection to a store's index (before `fork`).
pub fn close_index() {
    OPEN_INDEX.with(|c| c.replace(None));
}

/// See [`Store::survey`].
#[derive(Debug, Default)]
pub struct Survey {
    pub unindexed: Vec<String>,
    pub missing: Vec<String>,
    pub leftovers: Vec<(PathBuf, u64)>,
}

/// The root directory holding every job.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// What supervisors collect after their job (`config.toml` `[gc]`).
    auto_collect: Option<super::retention::Retention>,
}

impl Store {
    /// `--root`, else `AGENT_EXEC_ROOT`, else `$XDG_STATE_HOME/agent-exec`, else `~/.local/state/agent-exec`.
    pub fn default_root(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_path_buf();
        }
        let env_path = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(p) = env_path("AGENT_EXEC_ROOT") {
            return p;
        }
        if let Some(p) = env_path("XDG_STATE_HOME") {
            return p.join("agent-exec");
        }
        // Never a shared directory such as /tmp without $HOME, where
        // another user could make the store first.
        caller_home()
            .unwrap_or_else(|| PathBuf::from("/nonexistent"))
            .join(".local/state/agent-exec")
    }

    /// Opens the store, creating the root (mode 0700) when it does not exist yet.
    pub fn open(root: PathBuf) -> StoreResult<Store> {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|e| StoreError::io("read", Path::new("the current directory"), e))?
                .join(root)
        };
        if !root.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(|e| StoreError::io("write", &root, e))?;
        }
        // The real path: it is what the sandbox hides from jobs, and a
        // symlink in it would hide the link and show the store.
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::io("read", &root, e))?;
        check_ownership(&root)?;
        Ok(Store {
            root,
            auto_collect: None,
        })
    }

    /// Opens a store that exists already (never makes one).
    pub fn open_existing(root: PathBuf) -> StoreResult<Store> {
        if !root.is_dir() {
            return Err(StoreError::NotFound {
                prefix: String::new(),
                root,
            });
        }
        Store::open(root)
    }

    /// Supervisors of jobs launched through this store collect by `retention` after their job.
    pub fn collect_after_jobs(&mut self, retention: super::retention::Retention) {
        self.auto_collect = Some(retention);
    }

    pub fn auto_collect(&self) -> Option<&super::retention::Retention> {
        self.auto_collect.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The job's $TMPDIR.
    pub fn tmp_dir(&self, id: &str) -> PathBuf {
        self.job_dir(id).join(TMP_DIR)
    }

    /// The job's $JOB_DIR: its own files, kept with its record.
    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.job_dir(id).join(FILES_DIR)
    }

    pub fn stdin_path(&self, id: &str) -> PathBuf {
        self.job_dir(id).join(STDIN_FILE)
    }

    /// Records a new job: its directory with everything a reader may look
    /// for (logs, $TMPDIR, $JOB_DIR, stdin, secrets of a job started later),
    /// its definition, and the `created` state. On any failure the
    /// directory is removed again: list and status never trip on a
    /// half-made job.
    pub fn create(
        &self,
        spec: &JobSpec,
        secrets: Option<&Secrets>,
        stdin: Option<&[u8]>,
    ) -> StoreResult<()> {
        let dir = self.job_dir(&spec.job_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| StoreError::io("write", &dir, e))?;
        let filled = (|| {
            for sub in [TMP_DIR, FILES_DIR] {
                let path = dir.join(sub);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|e| StoreError::io("write", &path, e))?;
            }
            for log in [STDOUT_LOG, STDERR_LOG] {
                let path = dir.join(log);
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| StoreError::io("write", &path, e))?;
            }
            if let Some(bytes) = stdin {
                write_atomic(&dir.join(STDIN_FILE), bytes, 0o600)?;
            }
            if let Some(secrets) = secrets {
                write_json(&dir.join(SECRETS_FILE), secrets, 0o600)?;
            }
            // The definition last: job.json is what makes the job visible,
            // so a visible job always has its state (a creation killed
            // before this leaves a leftover that gc removes).
            let created = JobStatus::created(spec.created_at_ms);
            write_json(&dir.join(STATE_FILE), &created, 0o600)?;
            write_json(&dir.join(JOB_FILE), spec, 0o600)?;
            // Its mark last: the job is listed once it is whole. Should the
            // mark fail, so does the creation (a job nobody could list).
            self.mark_new(&spec.job_id)
        })();
        if filled.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        filled
    }

    /// Marks a whole job as new: readers find it there until its row is
    /// written. Its row is not written here: opening the index costs a
    /// launch a millisecond, so the job's supervisor writes it once its
    /// answer is given, or the first reader to see the mark does.
    ///
    /// The mark is a second name of the job's `job.json`: a link allocates
    /// no inode, which on this store's file system is most of a new file's
    /// cost.
    fn mark_new(&self, id: &str) -> StoreResult<()> {
        let spool = self.root.join(NEW_DIR);
        let mark = spool.join(id);
        let record = self.job_dir(id).join(JOB_FILE);
        let made = match fs::hard_link(&record, &mark) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !spool.exists() => {
                match fs::DirBuilder::new().mode(0o700).create(&spool) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => fs::hard_link(&record, &mark),
                }
            }
            other => other,
        };
        made.map_err(|e| StoreError::io("write", &mark, e))
    }

    /// Writes the rows of the jobs marked new, and removes their marks, so
    /// that `index` lists every whole job. A mark whose job is gone is
    /// removed with nothing written.
    fn record_new(&self, index: &Index) {
        let spool = self.root.join(NEW_DIR);
        let Ok(entries) = fs::read_dir(&spool) else {
            return;
        };
        for id in entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
        {
            if id.len() != 32 || !is_valid_prefix(&id) {
                continue;
            }
            let written = match self.row_from_files(&id) {
                Some(row) => index.put(&row).is_ok(),
                None => true,
            };
            if written {
                let _ = fs::remove_file(spool.join(&id));
            }
        }
    }

    /// Replaces a job's tags: its definition is rewritten (atomically, as
    /// every record) and its row with it.
    pub fn set_tags(&self, id: &str, tags: Vec<String>) -> StoreResult<()> {
        let path = self.job_dir(id).join(JOB_FILE);
        let mut spec = self.read_spec(id)?;
        spec.tags = tags;
        write_json(&path, &spec, 0o600)?;
        self.record_status(id);
        Ok(())
    }

    /// Makes an ended job, whose start the caller has claimed, a created
    /// one again: empty logs, its `$TMPDIR` and `$JOB_DIR` back, no kill
    /// request, the `created` state.
    pub fn reset_for_restart(&self, id: &str) -> StoreResult<()> {
        let dir = self.job_dir(id);
        for log in [STDOUT_LOG, STDERR_LOG] {
            let path = dir.join(log);
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| StoreError::io("write", &path, e))?;
        }
        let _ = fs::remove_file(dir.join(crate::supervisor::KILL_REQUEST));
        for sub in [TMP_DIR, FILES_DIR] {
            let path = dir.join(sub);
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::io("write", &path, e))
                }
                _ => {}
            }
        }
        self.write_status(id, &JobStatus::created(crate::timefmt::now_ms()))
    }

    /// Resolves a full id or an unambiguous prefix.
    pub fn resolve(&self, prefix: &str) -> StoreResult<String> {
        let prefix = prefix.trim();
        let not_found = || StoreError::NotFound {
            prefix: prefix.to_string(),
            root: self.root.clone(),
        };
        if !is_valid_prefix(prefix) {
            return Err(not_found());
        }
        if prefix.len() == 32 {
            if self.job_dir(prefix).join(JOB_FILE).is_file() {
                return Ok(prefix.to_string());
            }
            return Err(not_found());
        }
        // The index finds the candidates (built in memory from the
        // directories when the store's cannot be opened).
        let candidates = self
            .index_for_reading()?
            .ids_with_prefix(prefix, 64)
            .map_err(|e| self.index_error(e))?;
        let mut matches: Vec<String> = candidates
            .into_iter()
            .filter(|id| id.starts_with(prefix) && self.job_dir(id).join(JOB_FILE).is_file())
            .collect();
        match matches.len() {
            0 => Err(not_found()),
            1 => Ok(matches.remove(0)),
            _ => {
                matches.sort();
                Err(StoreError::Ambiguous {
                    prefix: prefix.to_string(),
                    candidates: matches,
                })
            }
        }
    }

    /// Every job id in the store (directories named like one).
    pub fn ids(&self) -> StoreResult<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read", &self.root, e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 32 && is_valid_prefix(n))
            .collect())
    }

    pub fn read_spec(&self, id: &str) -> StoreResult<JobSpec> {
        self.gone_if_deleted(id, read_json(&self.job_dir(id).join(JOB_FILE)))
    }

    pub fn read_status(&self, id: &str) -> StoreResult<JobStatus> {
        self.gone_if_deleted(id, read_json(&self.job_dir(id).join(STATE_FILE)))
    }

    /// A record missing because its job was deleted meanwhile (by `delete`
    /// or `gc` racing this reader) is a job not found, not an I/O error.
    fn gone_if_deleted<T>(&self, id: &str, read: StoreResult<T>) -> StoreResult<T> {
        match read {
            Err(StoreError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && !self.job_dir(id).exists() =>
            {
                Err(StoreError::NotFound {
                    prefix: id.to_string(),
                    root: self.root.clone(),
                })
            }
            other => other,
        }
    }

    /// Replaces `state.json` atomically ([`Self::write_status_file`]), then
    /// records it in the index ([`Self::record_status`]).
    pub fn write_status(&self, id: &str, status: &JobStatus) -> StoreResult<()> {
        self.write_status_file(id, status)?;
        self.record_status(id);
        Ok(())
    }

    /// Records a state written to `state.json` in the job's row (written
    /// whole, from the records). Should that fail, readers notice
    /// the row no longer matches the record and read the record. A
    /// supervisor records its job's states once its answer is given: a
    /// reader meanwhile reads the record (the row's stamp is stale).
    pub fn record_status(&self, id: &str) {
        let Ok(index) = self.index() else {
            return;
        };
        // The row as the records are now, with their stamp taken first: a
        // state written since (a restart) is never hidden under an older
        // one's stamp. Its mark, if it was new, goes once the row is in.
        if let Some(row) = self.row_from_files(id) {
            if index.put(&row).is_ok() {
                let _ = fs::remove_file(self.root.join(NEW_DIR).join(id));
            }
        }
    }

    /// Replaces `state.json` atomically. On a full disk the temporary copy
    /// cannot be made; the state is then rewritten in place, reusing the
    /// blocks of the previous version, so a finished job still records its
    /// result instead of being reported lost.
    pub fn write_status_file(&self, id: &str, status: &JobStatus) -> StoreResult<()> {
        let path = self.job_dir(id).join(STATE_FILE);
        match write_json(&path, status, 0o600) {
            Err(e) if matches!(e.os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
                let bytes = encode(&path, status)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|e| StoreError::io("write", &path, e))?;
                file.write_all(&bytes)
                    .and_then(|()| file.set_len(bytes.len() as u64))
                    .map_err(|e| StoreError::io("write", &path, e))
            }
            other => other,
        }
    }

    pub fn read_secrets(&self, id: &str) -> StoreResult<Secrets> {
        read_json(&self.job_dir(id).join(SECRETS_FILE))
    }

    /// Claims the right to start a created job; exactly one caller ever wins.
    pub fn claim_start(&self, id: &str) -> StoreResult<()> {
        let path = self.job_dir(id).join(START_LOCK);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map(drop)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    StoreError::AlreadyStarted { id: id.to_string() }
                } else {
                    StoreError::io("write", &path, e)
                }
            })
    }

    /// Gives up a claim whose supervisor could not be started: the job can
    /// be started again.
    pub fn release_start(&self, id: &str) -> StoreResult<()> {
        let path = self.job_dir(id).join(START_LOCK);
        fs::remove_file(&path).map_err(|e| StoreError::io("write", &path, e))
    }

    /// The supervisor recorded in the start lock (between claim and the first state write).
    pub fn start_lock_owner(&self, id: &str) -> Option<ProcRef> {
        let text = fs::read_to_string(self.job_dir(id).join(START_LOCK)).ok()?;
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        Some(ProcRef { pid, start_time })
    }

    /// When the job's start was claimed, in ms since the epoch.
    pub fn start_claimed_at_ms(&self, id: &str) -> Option<u64> {
        let modified = fs::metadata(self.job_dir(id).join(START_LOCK))
            .ok()?
            .modified()
            .ok()?;
        let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(since.as_millis() as u64)
    }

    pub fn has_start_lock(&self, id: &str) -> bool {
        self.job_dir(id).join(START_LOCK).exists()
    }

    /// Removes a finished job's directory, and its cgroups should a dead
    /// supervisor have left them behind (they are empty by then).
    ///
    /// The directory is first renamed out of the store's namespace (one
    /// atomic step), so that of several callers deleting the same job
    /// exactly one does it and the others learn the job is gone
    /// (`NotFound`), and a reader never meets a half-removed job.
    pub fn delete(&self, id: &str) -> StoreResult<()> {
        let layout = crate::sandbox::cgroup::Layout::detect().ok();
        self.remove_job(id, layout.as_ref())?;
        if let Ok(index) = self.index() {
            let _ = index.remove(id);
        }
        Ok(())
    }

    /// [`Self::delete`] but for the row, which the caller forgets (`gc`
    /// forgets many at once).
    pub fn remove_job(
        &self,
        id: &str,
        layout: Option<&crate::sandbox::cgroup::Layout>,
    ) -> StoreResult<()> {
        if let Some(layout) = layout {
            let cgroup = crate::sandbox::cgroup::JobCgroup::reattach(layout, id);
            if cgroup.v2_dir().is_dir() && !cgroup.populated() {
                cgroup.remove();
            }
        }
        let dir = self.job_dir(id);
        let trash = self
            .root
            .join(format!("{DELETING}{id}.{}", std::process::id()));
        match fs::rename(&dir, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    prefix: id.to_string(),
                    root: self.root.clone(),
                })
            }
            Err(e) => return Err(StoreError::io("write", &dir, e)),
        }
        fs::remove_dir_all(&trash).map_err(|e| StoreError::io("write", &trash, e))
    }

    /// Whether a job's cgroup still holds processes (its job runs, whatever
    /// its record says).
    pub fn cgroup_populated(&self, id: &str) -> bool {
        crate::sandbox::cgroup::Layout::detect().is_ok_and(|layout| {
            let cgroup = crate::sandbox::cgroup::JobCgroup::reattach(&layout, id);
            cgroup.v2_dir().is_dir() && cgroup.populated()
        })
    }

    /// The store's index, built from the directories when it is new, of
    /// another layout, or damaged.
    ///
    /// One connection per thread and store, opened once: a supervisor
    /// writes each state of its job, and opening costs more than a write.
    /// A connection is never used across `fork` (SQLite forbids it): the
    /// child opens its own.
    pub fn index(&self) -> StoreResult<Rc<Index>> {
        let pid = std::process::id();
        let cached = OPEN_INDEX.with(|c| match &*c.borrow() {
            Some((root, owner, index)) if *root == self.root && *owner == pid => {
                Some(index.clone())
            }
            _ => None,
        });
        if let Some(index) = cached {
            return Ok(index);
        }
        let index = Rc::new(
            Index::open(&self.root, &|| self.rows_from_directories())
                .map_err(|e| StoreError::io("write", &self.root.join(INDEX_FILE), e))?,
        );
        let previous =
            OPEN_INDEX.with(|c| c.replace(Some((self.root.clone(), pid, index.clone()))));
        if let Some((_, owner, inherited)) = previous {
            if owner != pid {
                // A parent's connection, had it not been closed before the
                // fork: closing it here would release the parent's locks.
                std::mem::forget(inherited);
            }
        }
        Ok(index)
    }

    /// The index to read: the store's, else (a store that cannot take a
    /// write: read-only, or its disk full) one built in memory from the
    /// directories, so that what the store holds can still be listed.
    ///
    /// Either way it holds every whole job, those marked new included.
    pub fn index_for_reading(&self) -> StoreResult<Rc<Index>> {
        match self.index() {
            Ok(index) => {
                self.record_new(&index);
                Ok(index)
            }
            Err(e) => {
                eprintln!("agent-exec: {e}; reading every job's record instead");
                Index::in_memory(&|| self.rows_from_directories())
                    .map(Rc::new)
                    .map_err(|e| StoreError::io("read", &self.root, e))
            }
        }
    }

    fn rows_from_directories(&self) -> Vec<Row> {
        self.ids()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| self.row_from_files(id))
            .collect()
    }

    /// An index failure as the store reports it.
    pub fn index_error(&self, e: io::Error) -> StoreError {
        StoreError::io("read", &self.root.join(INDEX_FILE), e)
    }

    /// A job as its records say now: `None` when it is not (or no longer,
    /// or not yet) there, a `corrupt` row when they cannot be read.
    pub fn row_from_files(&self, id: &str) -> Option<Row> {
        let stamp = index::stamp(&self.job_dir(id));
        let gone = |e: &StoreError| match e {
            StoreError::NotFound { .. } => true,
            StoreError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        };
        let spec = match self.read_spec(id) {
            Ok(spec) if spec.job_id == id => spec,
            Ok(spec) => {
                let reason = format!("{JOB_FILE} names another job, {:?}", spec.job_id);
                return Some(Row::corrupt(id, None, reason, stamp));
            }
            Err(e) if gone(&e) => return None,
            Err(e) => return Some(Row::corrupt(id, None, e.to_string(), stamp)),
        };
        match self.read_status(id) {
            Ok(status) => {
                let bytes = if status.state.is_terminal() {
                    self.kept_bytes(id)
                } else {
                    0
                };
                Some(Row::of(&spec, &status, stamp, bytes))
            }
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => Some(Row::corrupt(id, Some(&spec), e.to_string(), stamp)),
        }
    }

    /// `row` if the job's records are still those it was made from; else
    /// what they say now, recorded in `index`; `None` when the job is gone
    /// (and forgotten by `index`).
    pub fn checked(&self, index: &Index, row: Row) -> Option<Row> {
        if index::stamp(&self.job_dir(&row.id)) == row.stamp {
            return Some(row);
        }
        match self.row_from_files(&row.id) {
            Some(now) => {
                let _ = index.put(&now);
                Some(now)
            }
            None => {
                if !self.job_dir(&row.id).exists() {
                    let _ = index.remove(&row.id);
                }
                None
            }
        }
    }

    /// What a job keeps on disk: its records, logs and `$JOB_DIR` (its
    /// `$TMPDIR` is emptied when it ends).
    pub fn kept_bytes(&self, id: &str) -> u64 {
        disk_bytes(&self.job_dir(id), &[TMP_DIR])
    }

    /// What the store's directories hold beside the jobs in `indexed`:
    /// jobs the index lacks, rows whose directory is gone, and what an
    /// interrupted creation (only `start.lock` or a temporary record, left
    /// by a caller killed in its first milliseconds) or removal left, each
    /// with its age in milliseconds.
    pub fn survey(&self, indexed: &std::collections::HashSet<String>) -> StoreResult<Survey> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Survey::default()),
            Err(e) => return Err(StoreError::io("read", &self.root, e)),
        };
        let now = std::time::SystemTime::now();
        let mut survey = Survey::default();
        let mut on_disk = std::collections::HashSet::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_id = name.len() == 32 && is_valid_prefix(&name);
            if is_id {
                on_disk.insert(name.clone());
                if indexed.contains(&name) {
                    continue;
                }
                if e.path().join(JOB_FILE).exists() {
                    survey.unindexed.push(name);
                    continue;
                }
            } else if !name.starts_with(DELETING) {
                continue;
            }
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .map_or(0, |d| d.as_millis() as u64);
            survey.leftovers.push((e.path(), age));
        }
        survey.missing = indexed.difference(&on_disk).cloned().collect();
        Ok(survey)
    }

    /// Removes one of [`Survey::leftovers`].
    pub fn remove_leftover(&self, path: &Path) -> StoreResult<()> {
        match fs::remove_dir_all(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("write", path, e)),
            _ => Ok(()),
        }
    }
}

/// What a directory's files take, never through a link, leaving out the
/// top-level entries named in `skip`.
pub fn disk_bytes(dir: &Path, skip: &[&str]) -> u64 {
    fn walk(dir: &Path, depth: u32, skip: &[&str]) -> u64 {
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| !skip.iter().any(|s| e.file_name() == *s))
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() && depth < 64 => walk(&e.path(), depth + 1, &[]),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    }
    walk(dir, 0, skip)
}

/// The prefix of a job directory being removed (never a job id).
const DELETING: &str = ".deleting-";

/// Where jobs whose row is not written yet are marked (never a job id).
const NEW_DIR: &str = ".new";

/// Largest record read: a job's definition with its whole environment fits
/// many times over; anything bigger was not written by us.
const RECORD_MAX_BYTES: u64 = 16 << 20;

/// Reads a record, never through a symlink planted in its place, and never
/// more than [`RECORD_MAX_BYTES`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> StoreResult<T> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| StoreError::io("read", path, e))?;
    let mut bytes = Vec::new();
    file.take(RECORD_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", path, e))?;
    if bytes.len() as u64 > RECORD_MAX_BYTES {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            message: format!("larger than {RECORD_MAX_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Opens a log or input of the store for reading: never through a symlink
/// or hard link planted in its place (which would show someone's file as the
/// job's output), never a fifo or device that would block or feed endlessly.
pub fn open_plain(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} is not a plain file of its own; refusing to read it",
            path.display()
        )));
    }
    Ok(file)
}

/// Opens (or makes) a log for the supervisor to write from its start:
/// never through a symlink planted in its place, and never a file that is
/// also elsewhere (a hard link to someone's file would be truncated with it).
/// Readable too: past its cap the pump puts the log's tail in order.
pub fn open_log_for_writing(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.nlink() != 1 {
        return Err(io::Error::other(format!(
            "{} is not a plain file of its own; refusing to write it",
            path.display()
        )));
    }
    file.set_len(0)?;
    Ok(file)
}

/// `$HOME`, or without it the home the user database gives the caller.
pub fn caller_home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
}

/// See [`Store::open`]: the store and every directory above it belong to
/// us or to root, and only the sticky directories above it (`/tmp`) may be
/// writable by others.
fn check_ownership(root: &Path) -> StoreResult<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for (depth, dir) in root.ancestors().enumerate() {
        let meta = fs::metadata(dir).map_err(|e| StoreError::io("read", dir, e))?;
        let unsafe_because = if meta.uid() != me && meta.uid() != 0 {
            Some(format!("{} belongs to uid {}", dir.display(), meta.uid()))
        } else if meta.mode() & 0o022 != 0 && (depth == 0 || meta.mode() & 0o1000 == 0) {
            Some(format!("{} is writable by other users", dir.display()))
        } else {
            None
        };
        if let Some(reason) = unsafe_because {
            return Err(StoreError::Unsafe {
                path: root.to_path_buf(),
                reason,
            });
        }
    }
    Ok(())
}

fn encode<T: Serialize>(path: &Path, value: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        message: format!("cannot encode: {e}"),
    })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> StoreResult<()> {
    write_atomic(path, &encode(path, value)?, mode)
}

/// Writes to a fresh `<path>.tmp.<pid>.<n>` then renames it over `path`:
/// readers see the old or the new file, never half of one. The temporary
/// file is created exclusively and never through a symlink, so nothing
/// planted in the directory can redirect the write.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> StoreResult<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::io("write", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_atomic_creates_then_replaces_a_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).expect("first write");
        assert_eq!(fs::read(&path).expect("read"), b"one");
        let first = fs::metadata(&path).expect("stat").ino();
        write_atomic(&path, b"two", 0o600).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_ne!(
            fs::metadata(&path).expect("stat").ino(),
            first,
            "replaced by another file (readers never see a half-written one)"
        );
        assert_eq!(fs::metadata(&path).expect("stat").mode() & 0o777, 0o600);
        assert_eq!(names(dir.path()), vec!["state.json".to_string()]);
    }

    #[test]
    fn a_new_job_is_recorded_whole_and_claimed_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().to_path_buf()).expect("store");
        let req = crate::job::request::JobRequest {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let defined = crate::job::define::define(&req, &store).expect("define");
        let id = defined.spec.job_id.clone();
        store.create(&defined.spec, None, None).expect("create");
        assert_eq!(
            names(&store.job_dir(&id)),
            [
                "files",
                "job.json",
                "state.json",
                "stderr.log",
                "stdout.log",
                "tmp"
            ]
        );
        let status = store.read_status(&id).expect("status");
        assert_eq!(status.state, crate::job::model::State::Created);
        assert!(store.create(&defined.spec, None, None).is_err());
        store.claim_start(&id).expect("first claim");
        assert!(matches!(
            store.claim_start(&id),
            Err(StoreError::AlreadyStarted { .. })
        ));

        // No job.json either: an error naming the file, not a made-up state.
        let empty = "0".repeat(32);
        fs::create_dir(store.job_dir(&empty)).expect("mkdir");
        let err = store.read_spec(&empty).expect_err("no job there");
        assert!(err.to_string().contains("job.json"), "{err}");
    }
}

//! The job store: one directory per job under the root.
//!
//! ```text
//! <root>/<job_id>/job.json       definition (never rewritten)
//!                /state.json     state, replaced atomically by rename
//!                /secrets.json   clear-text masked values, 0600, removed at launch
//!                /start.lock     created O_EXCL by the one `start` that wins
//!                /stdin.bin      stdin given at create time
//!                /stdout.log /stderr.log
//! ```
//! Every write goes to a temporary file first and is renamed into place, so a
//! full disk or a crash leaves the previous version readable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use super::model::{is_valid_prefix, JobSpec, JobStatus, Secrets};
use crate::response::{AppError, ErrorCode};

pub const JOB_FILE: &str = "job.json";
pub const STATE_FILE: &str = "state.json";
pub const SECRETS_FILE: &str = "secrets.json";
pub const START_LOCK: &str = "start.lock";
pub const STDOUT_LOG: &str = "stdout.log";
pub const STDERR_LOG: &str = "stderr.log";
pub const STDIN_FILE: &str = "stdin.bin";

/// The root directory holding every job.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
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
        env_path("HOME")
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(".local/state/agent-exec")
    }

    /// Opens the store, creating the root (mode 0700) when it does not exist yet.
    pub fn open(root: PathBuf) -> Result<Store, AppError> {
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|e| io_error("the current directory", &e))?
                .join(root)
        };
        if !root.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(|e| io_error(&format!("the job store {}", root.display()), &e))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn job_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Creates the job's directory and writes its definition and `created` state.
    pub fn create(
        &self,
        spec: &JobSpec,
        secrets: Option<&Secrets>,
        stdin: Option<&[u8]>,
    ) -> Result<PathBuf, AppError> {
        self.make_job(spec, stdin, |dir| {
            if let Some(secrets) = secrets {
                write_new_json(&dir.join(SECRETS_FILE), secrets, 0o600)?;
            }
            write_new_json(&dir.join(JOB_FILE), spec, 0o600)?;
            write_new_json(
                &dir.join(STATE_FILE),
                &JobStatus::created(spec.created_at_ms),
                0o600,
            )?;
            Ok(dir.to_path_buf())
        })
    }

    /// Creates a job that is started at once (`run`): its definition and the
    /// claimed start lock, but no `created` state, which the supervisor
    /// would replace within a millisecond: one file write less per run.
    pub fn create_started(&self, spec: &JobSpec, stdin: Option<&[u8]>) -> Result<File, AppError> {
        self.make_job(spec, stdin, |_| {
            // The lock first: job.json is what makes the job visible to list and status.
            let lock = self.claim_start(&spec.job_id)?;
            write_new_json(&self.job_dir(&spec.job_id).join(JOB_FILE), spec, 0o600)?;
            Ok(lock)
        })
    }

    /// Makes the job's directory with its stdin, then `fill`s it; on any
    /// failure removes it again: list and status must never trip on a
    /// half-made job.
    fn make_job<T>(
        &self,
        spec: &JobSpec,
        stdin: Option<&[u8]>,
        fill: impl FnOnce(&Path) -> Result<T, AppError>,
    ) -> Result<T, AppError> {
        let dir = self.job_dir(&spec.job_id);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error(&format!("the job directory {}", dir.display()), &e))?;
        let result = stdin
            .map_or(Ok(()), |bytes| {
                write_atomic(&dir.join(STDIN_FILE), bytes, 0o600)
            })
            .and_then(|()| fill(&dir));
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    /// Resolves a full id or an unambiguous prefix.
    pub fn resolve(&self, prefix: &str) -> Result<String, AppError> {
        let prefix = prefix.trim();
        if !is_valid_prefix(prefix) {
            return Err(AppError::new(
                ErrorCode::JobNotFound,
                format!("no job {prefix:?}: job ids are 1 to 32 lowercase hex characters"),
            ));
        }
        if prefix.len() == 32 {
            if self.job_dir(prefix).join(JOB_FILE).is_file() {
                return Ok(prefix.to_string());
            }
            return Err(not_found(prefix, &self.root));
        }
        let mut matches: Vec<String> = self
            .ids()?
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(not_found(prefix, &self.root)),
            1 => Ok(matches.remove(0)),
            _ => {
                matches.sort();
                let mut e = AppError::new(
                    ErrorCode::AmbiguousJobId,
                    format!(
                        "job id prefix {prefix:?} matches {} jobs; give more characters",
                        matches.len()
                    ),
                );
                e.candidates = Some(matches);
                Err(e)
            }
        }
    }

    /// Every job id in the store (directories holding a job.json).
    pub fn ids(&self) -> Result<Vec<String>, AppError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_error(
                    &format!("the job store {}", self.root.display()),
                    &e,
                ))
            }
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 32 && is_valid_prefix(n))
            .collect())
    }

    pub fn read_spec(&self, id: &str) -> Result<JobSpec, AppError> {
        read_json(&self.job_dir(id).join(JOB_FILE))
    }

    /// The job's state. A job made by [`Store::create_started`] has no
    /// `state.json` until its supervisor records the first one: it reads as created.
    pub fn read_status(&self, id: &str) -> Result<JobStatus, AppError> {
        match self.read_recorded_status(id)? {
            Some(status) => Ok(status),
            None => Ok(JobStatus::created(self.read_spec(id)?.created_at_ms)),
        }
    }

    /// The state the supervisor recorded, if it recorded one yet.
    pub fn read_recorded_status(&self, id: &str) -> Result<Option<JobStatus>, AppError> {
        let path = self.job_dir(id).join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => parse_json(&path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                let mut err = io_error(&path.display().to_string(), &e);
                err.message = format!("cannot read {}: {e}", path.display());
                Err(err)
            }
        }
    }

    /// Replaces `state.json` atomically. On a full disk the temporary copy
    /// cannot be made; the state is then rewritten in place, reusing the
    /// blocks of the previous version, so a finished job still records its
    /// result instead of being reported lost.
    pub fn write_status(&self, id: &str, status: &JobStatus) -> Result<(), AppError> {
        self.write_status_superseding(id, status, false)
            .map(Superseded::remove)
    }

    /// [`Store::write_status`], leaving the previous version's unlinking
    /// to the caller: a supervisor tells its caller the result first.
    /// `first`: the supervisor's first state of a job (`run` leaves none
    /// before it), placed as a new file at the first try.
    pub fn write_status_superseding(
        &self,
        id: &str,
        status: &JobStatus,
        first: bool,
    ) -> Result<Superseded, AppError> {
        let path = self.job_dir(id).join(STATE_FILE);
        let target = if first {
            Target::LikelyNew
        } else {
            Target::LikelyExisting
        };
        match write_json_superseding(&path, status, 0o600, target) {
            Err(e) if e.code == ErrorCode::StoreFull => {
                let bytes = serde_json::to_vec(status).map_err(|e| {
                    AppError::new(ErrorCode::Internal, format!("cannot encode state: {e}"))
                })?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .map_err(|e| io_error(&path.display().to_string(), &e))?;
                file.write_all(&bytes)
                    .and_then(|()| file.set_len(bytes.len() as u64))
                    .map(|()| Superseded(None))
                    .map_err(|e| io_error(&path.display().to_string(), &e))
            }
            other => other,
        }
    }

    pub fn read_secrets(&self, id: &str) -> Result<Secrets, AppError> {
        read_json(&self.job_dir(id).join(SECRETS_FILE))
    }

    /// Claims the right to start a created job; exactly one caller ever wins.
    pub fn claim_start(&self, id: &str) -> Result<File, AppError> {
        let path = self.job_dir(id).join(START_LOCK);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    AppError::new(
                        ErrorCode::InvalidState,
                        format!("job {id} has already been started"),
                    )
                    .with_job(id)
                } else {
                    io_error(&path.display().to_string(), &e)
                }
            })
    }

    /// The supervisor recorded in the start lock (between claim and the first state write).
    pub fn start_lock_owner(&self, id: &str) -> Option<(super::model::ProcRef, u64)> {
        let path = self.job_dir(id).join(START_LOCK);
        let meta = fs::metadata(&path).ok()?;
        let text = fs::read_to_string(&path).ok()?;
        let mut parts = text.split_whitespace();
        let pid = parts.next()?.parse().ok()?;
        let start_time = parts.next()?.parse().ok()?;
        let mtime = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        Some((super::model::ProcRef { pid, start_time }, mtime))
    }

    pub fn has_start_lock(&self, id: &str) -> bool {
        self.job_dir(id).join(START_LOCK).exists()
    }

    /// Removes a finished job's directory, and its cgroups should a dead
    /// supervisor have left them behind (they are empty by then).
    pub fn delete(&self, id: &str) -> Result<(), AppError> {
        if let Ok(layout) = crate::sandbox::cgroup::Layout::detect() {
            let cgroup = crate::sandbox::cgroup::JobCgroup::reattach(&layout, id);
            if cgroup.v2_dir().is_dir() && !cgroup.populated() {
                cgroup.remove();
            }
        }
        let dir = self.job_dir(id);
        fs::remove_dir_all(&dir).map_err(|e| io_error(&dir.display().to_string(), &e))
    }
}

fn not_found(prefix: &str, root: &Path) -> AppError {
    AppError::new(
        ErrorCode::JobNotFound,
        format!("no job matches {prefix:?} in {}", root.display()),
    )
}

/// Maps an I/O failure on the store to an error code a caller can act on.
pub fn io_error(what: &str, e: &io::Error) -> AppError {
    let code = match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorCode::StoreFull,
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => ErrorCode::StoreUnavailable,
        _ => ErrorCode::IoError,
    };
    let hint = match code {
        ErrorCode::StoreFull => {
            " (the disk holding the job store is full; free space or run `agent-exec gc`)"
        }
        ErrorCode::StoreUnavailable => {
            " (the job store is not writable; pick another with --root or AGENT_EXEC_ROOT)"
        }
        _ => "",
    };
    AppError::new(code, format!("cannot write {what}: {e}{hint}"))
}

/// The previous version of a file that [`write_atomic`] swapped out: it
/// sits under the temporary name until removed. Unlinking an ext4 inode is
/// a few hundredths of a millisecond that nobody needs to wait for.
#[must_use = "the previous version stays on disk until removed"]
pub struct Superseded(Option<PathBuf>);

impl Superseded {
    pub fn remove(self) {
        if let Some(old) = self.0 {
            let _ = fs::remove_file(old);
        }
    }
}

/// Whether the file an atomic write puts in place most likely exists: the
/// way tried first (each way costs a failed `renameat2` when it is wrong).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    LikelyNew,
    LikelyExisting,
}

/// Moves `tmp` to `path` atomically; see [`write_atomic`].
fn replace(tmp: &Path, path: &Path, target: Target) -> io::Result<Superseded> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from, to) = (c(tmp)?, c(path)?);
    if target == Target::LikelyNew {
        // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
        let placed = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        } == 0;
        if placed {
            return Ok(Superseded(None));
        }
        // EEXIST: there is a version to swap out after all; EINVAL: a
        // filesystem without the flags, where the plain rename below serves.
    }
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let swapped = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    } == 0;
    if swapped {
        // `tmp` now names the previous version.
        return Ok(Superseded(Some(tmp.to_path_buf())));
    }
    // No previous version (ENOENT), or a filesystem without exchange (EINVAL).
    fs::rename(tmp, path).map(|()| Superseded(None))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, AppError> {
    let bytes = fs::read(path).map_err(|e| {
        let mut err = io_error(&path.display().to_string(), &e);
        err.message = format!("cannot read {}: {e}", path.display());
        err
    })?;
    parse_json(path, &bytes)
}

fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes).map_err(|e| {
        AppError::new(
            ErrorCode::IoError,
            format!("{} is not valid: {e}", path.display()),
        )
    })
}

pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), AppError> {
    write_json_superseding(path, value, mode, Target::LikelyExisting).map(Superseded::remove)
}

/// [`write_json`] of a file that most likely does not exist yet.
fn write_new_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), AppError> {
    write_json_superseding(path, value, mode, Target::LikelyNew).map(Superseded::remove)
}

fn write_json_superseding<T: Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
    target: Target,
) -> Result<Superseded, AppError> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        AppError::new(
            ErrorCode::Internal,
            format!("cannot encode {}: {e}", path.display()),
        )
    })?;
    write_atomic_superseding(path, &bytes, mode, target)
}

/// Writes to a fresh `<path>.tmp.<pid>.<n>` then puts it in place of `path`:
/// readers see the old or the new file, never half of one. The temporary
/// file is created exclusively and never through a symlink, so nothing
/// planted in the directory can redirect the write.
///
/// An existing `path` is swapped out with `renameat2(RENAME_EXCHANGE)` and
/// the old version unlinked, rather than renamed over: ext4 (auto_da_alloc)
/// starts writeback of the new file on every rename over an existing one,
/// which made each state update cost 0.3-0.6 ms here instead of 0.08.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AppError> {
    write_atomic_superseding(path, bytes, mode, Target::LikelyExisting).map(Superseded::remove)
}

fn write_atomic_superseding(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    target: Target,
) -> Result<Superseded, AppError> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(bytes)?;
        drop(file);
        replace(&tmp, path, target)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(&path.display().to_string(), &e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::model::State;
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
    fn write_atomic_creates_then_swaps_in_a_new_file_and_leaves_no_temporary() {
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
    fn a_write_expected_new_still_replaces_an_existing_file_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        write_new_json(&path, &"one", 0o600).expect("first write");
        assert_eq!(fs::read(&path).expect("read"), b"\"one\"");
        let first = fs::metadata(&path).expect("stat").ino();
        write_new_json(&path, &"two", 0o600).expect("second write");
        assert_eq!(fs::read(&path).expect("read"), b"\"two\"");
        assert_ne!(fs::metadata(&path).expect("stat").ino(), first);
        assert_eq!(names(dir.path()), vec!["state.json".to_string()]);
    }

    #[test]
    fn a_job_started_by_run_reads_as_created_until_its_supervisor_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().to_path_buf()).expect("store");
        let def = crate::cli::JobDefinition {
            command: vec!["true".into()],
            ..Default::default()
        };
        let defined = crate::commands::define::build(&def, &store).expect("define");
        let id = defined.spec.job_id.clone();
        let _lock = store.create_started(&defined.spec, None).expect("create");
        assert!(!store.job_dir(&id).join(STATE_FILE).exists());
        let status = store.read_status(&id).expect("status");
        assert_eq!(status.state, State::Created);
        assert_eq!(status.updated_at_ms, defined.spec.created_at_ms);
        assert!(store.has_start_lock(&id));
        assert!(
            store.create_started(&defined.spec, None).is_err(),
            "the same job cannot be made twice"
        );

        // No job.json either: an error naming the file, not a made-up state.
        let empty = "0".repeat(32);
        fs::create_dir(store.job_dir(&empty)).expect("mkdir");
        let err = store.read_status(&empty).expect_err("no job there");
        assert!(err.message.contains("job.json"), "{}", err.message);
    }
}

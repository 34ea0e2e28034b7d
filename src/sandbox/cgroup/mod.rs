//! One cgroup per job: creation, limits, tree kill, accounting, removal.
//!
//! The v2 directory (the whole hierarchy on a pure v2 host, the
//! controller-less `unified` mount on a hybrid host) is what the job is cloned
//! into and what `cgroup.kill`, `cgroup.freeze` and `cpu.stat` come from. The
//! resource controllers (memory, pids, cpu) sit behind the small
//! [`Controllers`] trait: in the same v2 directory, or in per-controller v1
//! directories that the child joins before it runs any code of its own.

mod layout;
pub mod systemd;
mod v1;
mod v2;

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use layout::{Layout, LayoutError, LayoutKind};

/// A job's cgroup is `<own cgroup>/agent-exec-<job id>` in each hierarchy:
/// directly under ours, not in a shared parent, so a job costs one mkdir
/// and one rmdir per hierarchy and leaves nothing behind.
pub fn dir_name(job: &str) -> String {
    format!("agent-exec-{job}")
}

/// Limits asked of the resource controllers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
}

/// What the cgroup measured over the job's life; `None` where the kernel has no such counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu_user_usec: Option<u64>,
    pub cpu_system_usec: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    pub pids_peak: Option<u64>,
    pub oom_kills: u64,
}

/// Why a job cgroup could not be set up.
#[derive(Debug)]
pub enum CgroupError {
    Layout(LayoutError),
    Create(PathBuf, io::Error),
    Limit {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Unsupported(&'static str),
    /// No cgroup of ours to use, and the service manager gave no scope.
    NoScope {
        denied: Box<CgroupError>,
        systemd: String,
    },
}

impl std::fmt::Display for CgroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupError::Layout(e) => write!(f, "{e}"),
            CgroupError::Create(p, e) => write!(f, "cannot create cgroup {}: {e}", p.display()),
            CgroupError::Limit { what, path, source } => {
                write!(
                    f,
                    "cannot apply the {what} limit at {}: {source}",
                    path.display()
                )
            }
            CgroupError::Unsupported(what) => write!(f, "{what}"),
            CgroupError::NoScope { denied, systemd } => {
                write!(
                    f,
                    "{denied}; and no delegated scope from systemd: {systemd}"
                )
            }
        }
    }
}

impl std::error::Error for CgroupError {}

/// The resource controllers of one job cgroup, wherever the hierarchy keeps them.
pub(crate) trait Controllers {
    /// Applies the limits; a limit that cannot be applied is an error (fail closed).
    fn apply(&self, limits: &Limits) -> Result<(), CgroupError>;
    /// Fills the memory and pids peaks of `usage`.
    fn peaks(&self, usage: &mut Usage);
    /// How many processes the OOM killer killed in the cgroup.
    fn oom_kills(&self) -> u64;
    /// Removes the directories this backend created (they must be empty).
    fn remove(&self);
    /// Opens, for the child to write `0` into, the per-thread `tasks` file of
    /// every controller clone-into-cgroup cannot reach (v1; see [`SelfJoin`]).
    fn self_join_files(&self) -> io::Result<Vec<fs::File>>;
}

/// The v1 `tasks` files a freshly cloned child writes `0` into to join its
/// controllers itself, opened by the parent before the clone.
///
/// Why not `join(pid)` from the parent: moving another process (or a whole
/// thread group) takes the kernel's global `cgroup_threadgroup_rwsem` for
/// writing, which waits for an RCU grace period, the dearest step of a
/// launch on a hybrid host (docs/performance.md). A thread moving itself
/// through `tasks` skips that lock (kernel/cgroup: "if the thread is
/// current ... we can skip the global lock"). The child of a
/// single-threaded supervisor has one thread, so it moves whole.
pub struct SelfJoin {
    files: Vec<fs::File>,
    fds: Vec<RawFd>,
}

impl SelfJoin {
    /// The descriptors to hand to the child (inherited by the clone; CLOEXEC).
    pub fn raw_fds(&self) -> &[RawFd] {
        &self.fds
    }

    /// Whether there is anything to join (false on pure v2 hosts).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Moves the calling thread into every cgroup of `fds` (from [`SelfJoin::raw_fds`]).
/// Async-signal-safe (no allocation, raw syscalls only): meant for the cloned
/// child before it is released. Returns the errno of the first failure.
pub fn join_self(fds: &[RawFd]) -> Result<(), i32> {
    for &fd in fds {
        // SAFETY: writing a static one-byte buffer to a descriptor the caller owns.
        let n = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if n != 1 {
            // SAFETY: reading errno of the failed write on this thread.
            return Err(unsafe { *libc::__errno_location() });
        }
    }
    Ok(())
}

/// A limit left out because its controller was not the caller's to use:
/// the limit's policy name (`limits.pids`) and the report's line.
pub type Unapplied = (&'static str, String);

/// A limit its controller could not give: the limit's policy name and the
/// `not_applied` line.
pub(crate) fn unapplied_limit(controller: &str, why: &str) -> Unapplied {
    let limit = match controller {
        "memory" => "limits.memory",
        "pids" => "limits.pids",
        _ => "limits.cpu",
    };
    (
        limit,
        format!("{limit}: no {controller} cgroup for the job ({why})"),
    )
}

/// Whether an error means "not yours to use": no permission (a caller
/// without root in a cgroup it does not own) or a read-only hierarchy.
pub(crate) fn is_denied(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

impl CgroupError {
    /// Whether the caller may not create cgroups here at all (as opposed to
    /// a cgroup that exists but failed): the case a job may run without one.
    pub fn is_denied(&self) -> bool {
        match self {
            CgroupError::Create(_, e) => is_denied(e),
            CgroupError::NoScope { .. } => true,
            _ => false,
        }
    }

    /// Whether a controller could not be enabled for the job's cgroup
    /// because our own cgroup holds processes (cgroup v2's rule) or is not
    /// ours to change.
    pub fn is_busy(&self) -> bool {
        match self {
            CgroupError::Limit { path, source, .. } => {
                path.ends_with("cgroup.subtree_control")
                    && (source.raw_os_error() == Some(libc::EBUSY) || is_denied(source))
            }
            _ => false,
        }
    }
}

/// The cgroup(s) of one job.
pub struct JobCgroup {
    layout_kind: LayoutKind,
    v2_dir: PathBuf,
    controllers: Box<dyn Controllers>,
    /// Limits left out because their controller was not ours to use: the
    /// limit's policy name and the `not_applied` line.
    not_applied: Vec<Unapplied>,
}

impl JobCgroup {
    /// Creates `<own>/agent-exec-<name>` in every hierarchy the layout uses
    /// and applies `limits`. With `optional` (the job may run without a
    /// cgroup), a controller the caller may not use leaves its limits out,
    /// listed by [`JobCgroup::not_applied`]; otherwise that is an error.
    pub fn create(
        layout: &Layout,
        name: &str,
        limits: &Limits,
        optional: bool,
    ) -> Result<JobCgroup, CgroupError> {
        let v2_dir = create_under(&layout.v2_own, name)?;
        type Made = (Box<dyn Controllers>, Vec<Unapplied>);
        let made: Result<Made, CgroupError> = match layout.kind {
            LayoutKind::V2 => v2::V2Controllers::new(&layout.v2_own, &v2_dir, limits, optional)
                .map(|(c, n)| (Box::new(c) as Box<dyn Controllers>, n)),
            LayoutKind::Hybrid => v1::V1Controllers::create(&layout.v1_own, name, limits, optional)
                .map(|(c, n)| (Box::new(c) as Box<dyn Controllers>, n)),
        };
        let (controllers, not_applied) = match made {
            Ok(made) => made,
            Err(e) => {
                let _ = fs::remove_dir(&v2_dir);
                return Err(e);
            }
        };
        let cgroup = JobCgroup {
            layout_kind: layout.kind,
            v2_dir,
            controllers,
            not_applied,
        };
        if let Err(e) = cgroup.controllers.apply(limits) {
            cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    /// [`JobCgroup::create`]; where a caller without root may not create
    /// one under its own cgroup (a login session's scope is root's), it
    /// asks its service manager for a delegated scope of its own first
    /// (see [`systemd`]) and creates the job's cgroup in that.
    pub fn create_or_ask_systemd(
        layout: &Layout,
        name: &str,
        limits: &Limits,
        optional: bool,
    ) -> Result<JobCgroup, CgroupError> {
        if crate::sandbox::identity::caller_is_host_root() {
            return JobCgroup::create(layout, name, limits, optional);
        }
        // Ours, and able to give the job every controller it needs: done.
        // A cgroup of ours that cannot (on pure v2, one that also holds the
        // caller's shell may not enable controllers for its children) is
        // second best to a scope of our own.
        let in_own = JobCgroup::create(layout, name, limits, optional);
        let denied = match in_own {
            Ok(c) if c.not_applied().is_empty() => return Ok(c),
            Err(e) if !(e.is_denied() || e.is_busy()) => return Err(e),
            other => other,
        };
        let scoped = systemd::start_scope(name).and_then(|_| {
            let scoped = Layout::detect().map_err(io::Error::other)?;
            systemd::leave_scope_root(&scoped.v2_own)?;
            Ok(scoped)
        });
        match (scoped, denied) {
            (Ok(scoped), own) => {
                if let Ok(c) = own {
                    c.remove();
                }
                JobCgroup::create(&scoped, name, limits, optional)
            }
            // Without a scope, ours with some limits left out (optional).
            (Err(_), Ok(c)) => Ok(c),
            (Err(e), Err(denied)) => Err(CgroupError::NoScope {
                denied: Box::new(denied),
                systemd: e.to_string(),
            }),
        }
    }

    /// Re-attaches to the cgroup of a job whose supervisor is gone, to kill and remove it.
    pub fn reattach(layout: &Layout, name: &str) -> JobCgroup {
        JobCgroup {
            layout_kind: layout.kind,
            v2_dir: layout.v2_own.join(dir_name(name)),
            controllers: match layout.kind {
                LayoutKind::V2 => Box::new(v2::V2Controllers::existing(
                    &layout.v2_own.join(dir_name(name)),
                )),
                LayoutKind::Hybrid => Box::new(v1::V1Controllers::existing(&layout.v1_own, name)),
            },
            not_applied: Vec::new(),
        }
    }

    /// Limits left out because their controller was not the caller's to
    /// use: the limit's policy name (`limits.pids`) and the report's line.
    pub fn not_applied(&self) -> &[Unapplied] {
        &self.not_applied
    }

    /// Re-attaches to a job's cgroup recorded elsewhere than under ours (a
    /// systemd scope): only the job's own directory in a scope of the job's
    /// name, in a cgroup2 hierarchy, reached without a symlink, so that a
    /// record pointing anywhere else (a link named like the job's cgroup)
    /// reaches nothing.
    pub fn reattach_at(layout: &Layout, name: &str, v2_dir: &Path) -> Option<JobCgroup> {
        let named = v2_dir.file_name() == Some(std::ffi::OsStr::new(&dir_name(name)));
        let scope_prefix = format!("{}-", dir_name(name));
        let in_scope = v2_dir
            .parent()
            .and_then(Path::file_name)
            .and_then(|s| s.to_str())
            .is_some_and(|s| s.starts_with(&scope_prefix) && s.ends_with(".scope"));
        let real = v2_dir.canonicalize().is_ok_and(|r| r == v2_dir);
        let in_cgroup2 =
            nix::sys::statfs::statfs(v2_dir).is_ok_and(|s| s.filesystem_type().0 == 0x6367_7270);
        if !(named && in_scope && real && in_cgroup2) {
            return None;
        }
        let mut cgroup = JobCgroup::reattach(layout, name);
        cgroup.v2_dir = v2_dir.to_path_buf();
        if layout.kind == LayoutKind::V2 {
            cgroup.controllers = Box::new(v2::V2Controllers::existing(v2_dir));
        }
        Some(cgroup)
    }

    pub fn layout_kind(&self) -> LayoutKind {
        self.layout_kind
    }

    /// The v2 directory: target of CLONE_INTO_CGROUP.
    pub fn v2_dir(&self) -> &Path {
        &self.v2_dir
    }

    /// Opens the files the child writes `0` into to join the v1 controllers
    /// itself (see [`SelfJoin`] for why the parent does not move it).
    pub fn open_self_join(&self) -> io::Result<SelfJoin> {
        let files = self.controllers.self_join_files()?;
        let fds = files.iter().map(|f| f.as_raw_fd()).collect();
        Ok(SelfJoin { files, fds })
    }

    /// Moves `pid` into the v2 cgroup (only used when CLONE_INTO_CGROUP is unavailable).
    pub fn join_v2(&self, pid: i32) -> io::Result<()> {
        fs::write(self.v2_dir.join("cgroup.procs"), pid.to_string())
    }

    /// The processes currently in the job's cgroup.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.v2_dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Whether any process is left in the cgroup.
    pub fn populated(&self) -> bool {
        match fs::read_to_string(self.v2_dir.join("cgroup.events")) {
            Ok(events) => events.lines().any(|l| l.trim() == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    /// Sends `signal` to every process in the cgroup, freezing it first so
    /// that a process forking in a loop cannot slip a new child past us.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> usize {
        let frozen = self.freeze(true);
        let mut sent = 0;
        // Unfrozen (freezer missing) the set can grow while we walk it: walk
        // until a pass finds nobody new, bounded so a fork bomb cannot pin us.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..if frozen { 1 } else { 16 } {
            let mut new = 0;
            for pid in self.pids() {
                if seen.insert(pid) {
                    new += 1;
                    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok() {
                        sent += 1;
                    }
                }
            }
            if new == 0 {
                break;
            }
        }
        if frozen {
            self.freeze(false);
        }
        sent
    }

    /// Kills every process in the cgroup at once (`cgroup.kill`), falling
    /// back to freeze + SIGKILL + thaw where the file does not exist.
    pub fn kill_all(&self) {
        if fs::write(self.v2_dir.join("cgroup.kill"), "1").is_err() {
            self.signal_all(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Freezes or thaws the cgroup; returns whether the request took effect.
    fn freeze(&self, frozen: bool) -> bool {
        let path = self.v2_dir.join("cgroup.freeze");
        if fs::write(&path, if frozen { "1" } else { "0" }).is_err() {
            return false;
        }
        if !frozen {
            return true;
        }
        // Freezing is asynchronous: wait (bounded) until cgroup.events says so.
        let deadline = Instant::now() + Duration::from_millis(200);
        loop {
            let done = fs::read_to_string(self.v2_dir.join("cgroup.events"))
                .map(|e| e.lines().any(|l| l.trim() == "frozen 1"))
                .unwrap_or(false);
            if done || !self.populated() {
                return true;
            }
            if Instant::now() >= deadline {
                return true; // frozen enough: signals are queued for every member anyway
            }
            wait_for_events(&self.v2_dir, deadline);
        }
    }

    /// Waits (bounded) until the cgroup has no process left.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.populated() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            wait_for_events(&self.v2_dir, deadline);
        }
    }

    /// Reads the job's accounting; call after the last process is gone.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        self.controllers.peaks(&mut usage);
        usage.oom_kills = self.controllers.oom_kills();
        if let Ok(stat) = fs::read_to_string(self.v2_dir.join("cpu.stat")) {
            for line in stat.lines() {
                let mut kv = line.split_whitespace();
                match (kv.next(), kv.next().and_then(|v| v.parse::<u64>().ok())) {
                    (Some("user_usec"), Some(v)) => usage.cpu_user_usec = Some(v),
                    (Some("system_usec"), Some(v)) => usage.cpu_system_usec = Some(v),
                    _ => {}
                }
            }
        }
        usage
    }

    /// Removes every directory created for the job (never their parents: those are the caller's).
    pub fn remove(&self) {
        self.controllers.remove();
        remove_dir_retrying(&self.v2_dir);
    }
}

/// `mkdir <own>/agent-exec-<name>`.
pub(crate) fn create_under(own: &Path, name: &str) -> Result<PathBuf, CgroupError> {
    let dir = own.join(dir_name(name));
    fs::create_dir(&dir).map_err(|e| CgroupError::Create(dir.clone(), e))?;
    Ok(dir)
}

/// rmdir of a cgroup fails with EBUSY for a moment after its last task exits.
pub(crate) fn remove_dir_retrying(dir: &Path) {
    for attempt in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) if attempt < 49 => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => eprintln!("agent-exec: cannot remove cgroup {}: {e}", dir.display()),
        }
    }
}

/// Blocks until `cgroup.events` changes (the kernel signals POLLPRI) or `deadline`.
fn wait_for_events(dir: &Path, deadline: Instant) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let Ok(file) = fs::File::open(dir.join("cgroup.events")) else {
        return;
    };
    // Reading arms the notification; a change after the read wakes the poll.
    let _ = io::Read::read_to_string(&mut &file, &mut String::new());
    let left = deadline.saturating_duration_since(Instant::now());
    let ms = left.as_millis().min(50) as u16; // re-check now and then: events can race the read
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

/// Reads a file holding one unsigned integer (`max` reads as None).
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Reads `key value` lines (memory.events, memory.oom_control) and returns `key`'s value.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut kv = l.split_whitespace();
        (kv.next() == Some(key)).then(|| kv.next()?.parse().ok())?
    })
}

pub(crate) fn write_limit(
    path: PathBuf,
    value: &str,
    what: &'static str,
) -> Result<(), CgroupError> {
    fs::write(&path, value).map_err(|source| CgroupError::Limit { what, path, source })
}

#[cfg(test)]
mod tests;

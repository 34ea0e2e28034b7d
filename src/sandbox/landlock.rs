//! Landlock: which files the job may read, write or execute, which TCP ports it may use, and
//! whether it may reach abstract unix sockets or signal processes outside its sandbox.
//!
//! Split in two halves because the supervisor is single-threaded and the child must not
//! allocate between clone and execve:
//! - [`prepare`] runs in the parent before clone: it opens every path (`O_PATH`), builds the
//!   ruleset with the `landlock` crate and decides, from the kernel's ABI, how much of the
//!   request the kernel can enforce;
//! - [`PreparedLandlock::restrict_self`] runs in the child: `no_new_privs` then
//!   `landlock_restrict_self(2)` on the prebuilt ruleset fd, two plain syscalls.
//!
//! The crate covers every right used here (filesystem incl. `IoctlDev` from ABI 5, TCP ports
//! from ABI 4, `Scope::AbstractUnixSocket`/`Scope::Signal` from ABI 6). Raw syscalls are used
//! only where it gives no handle: the ruleset fd stays private inside
//! `landlock::RulesetCreated`, yet the child must keep it across "close every fd above 2",
//! add rules for mounts it made itself (a fresh /proc, a tmpfs) and restrict itself with it.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::spec::Enforcement;
use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetError, Scope, ABI,
};
use nix::errno::Errno;
use serde::Serialize;

/// Filesystem paths the job may use; everything else is denied. Each path covers the
/// hierarchy beneath it (or just the file, when it names a file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsRules {
    /// Read files and list directories.
    pub read: Vec<PathBuf>,
    /// Everything filesystem-related except executing: read, write, create, remove, rename,
    /// truncate, make fifos/sockets/links, and ioctl on devices (`/dev/null`, `/dev/tty`).
    pub write: Vec<PathBuf>,
    /// Read and execute.
    pub exec: Vec<PathBuf>,
}

/// TCP port rules (Landlock ABI 4+).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetRules {
    /// When false, TCP is not restricted by Landlock at all (the network namespace still is
    /// the main network boundary). When true, only the ports below are allowed.
    pub restrict_tcp: bool,
    /// Remote ports the job may `connect` to.
    pub connect: Vec<u16>,
    /// Local ports the job may `bind`; port 0 must be listed to allow ephemeral binds.
    pub bind: Vec<u16>,
}

/// IPC scoping (Landlock ABI 6+): deny reaching out of the sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Deny connecting to abstract unix sockets created outside the sandbox.
    pub abstract_unix: bool,
    /// Deny sending signals to processes outside the sandbox.
    pub signal: bool,
}

/// How much of the requested Landlock sandbox the kernel enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Every requested restriction is enforced.
    FullyEnforced,
    /// Some restrictions are enforced; the rest need a newer kernel.
    PartiallyEnforced,
    /// Landlock is unavailable: nothing is enforced by this layer.
    NotEnforced,
}

/// The `sandbox.landlock` object of a job result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LandlockStatus {
    /// Landlock ABI version of the running kernel, or null when Landlock is unavailable.
    pub abi: Option<u32>,
    /// How much of the requested ruleset is enforced.
    pub status: Coverage,
}

/// Access class of a rule added from the child with
/// [`PreparedLandlock::add_path_rule_in_child`]; same meaning as the [`FsRules`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathAccess {
    /// As [`FsRules::read`].
    Read,
    /// As [`FsRules::write`].
    Write,
    /// As [`FsRules::exec`].
    Exec,
    /// Listing directories only (no file's content): for the skeleton of a
    /// new root, whose every entry is a grant of its own.
    List,
}

/// Failure to build or apply the Landlock layer.
#[derive(Debug)]
pub enum LandlockError {
    /// `Enforcement::Strict` and the kernel lacks some requested features.
    NotEnforceable {
        /// The kernel's Landlock ABI, `None` when Landlock is unavailable.
        abi: Option<u32>,
        /// Human-readable names of the features the kernel cannot enforce.
        missing: Vec<&'static str>,
    },
    /// A path that exists could not be opened to attach a rule to it.
    OpenPath {
        /// The path as given in the rules.
        path: PathBuf,
        /// Why it could not be opened.
        source: io::Error,
    },
    /// The `landlock` crate refused to build the ruleset.
    Ruleset(RulesetError),
    /// Child side: `prctl(PR_SET_NO_NEW_PRIVS)` failed.
    NoNewPrivs(Errno),
    /// Child side: `landlock_restrict_self(2)` failed.
    RestrictSelf(Errno),
    /// Child side: opening a path or `landlock_add_rule(2)` failed in
    /// [`PreparedLandlock::add_path_rule_in_child`].
    ChildRule(Errno),
}

impl fmt::Display for LandlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LandlockError::NotEnforceable { abi: None, .. } => write!(
                f,
                "Landlock is not available on this kernel (not built in, or not enabled at boot: \
                 add \"landlock\" to the lsm= kernel parameter); the policy requires strict \
                 enforcement, so use enforcement = \"best_effort\" to run without this layer"
            ),
            LandlockError::NotEnforceable {
                abi: Some(abi),
                missing,
            } => write!(
                f,
                "this kernel's Landlock ABI {abi} cannot enforce: {}; the policy requires strict \
                 enforcement, so upgrade the kernel (Linux 6.12+ has Landlock ABI 6) or use \
                 enforcement = \"best_effort\"",
                missing.join(", ")
            ),
            LandlockError::OpenPath { path, source } => write!(
                f,
                "cannot open {} to attach a Landlock rule: {source}; fix its permissions or \
                 remove it from the policy's filesystem paths",
                path.display()
            ),
            LandlockError::Ruleset(e) => write!(f, "cannot build the Landlock ruleset: {e}"),
            LandlockError::NoNewPrivs(e) => {
                write!(f, "prctl(PR_SET_NO_NEW_PRIVS) failed before Landlock: {e}")
            }
            LandlockError::RestrictSelf(Errno::EBADF) => write!(
                f,
                "landlock_restrict_self failed: the ruleset fd was closed in the child \
                 (keep PreparedLandlock::ruleset_fd() open when closing inherited fds)"
            ),
            LandlockError::RestrictSelf(e) => write!(f, "landlock_restrict_self failed: {e}"),
            LandlockError::ChildRule(e) => {
                write!(
                    f,
                    "cannot add a Landlock rule for a path mounted in the sandbox: {e}"
                )
            }
        }
    }
}

impl std::error::Error for LandlockError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LandlockError::OpenPath { source, .. } => Some(source),
            LandlockError::Ruleset(e) => Some(e),
            LandlockError::NoNewPrivs(e)
            | LandlockError::RestrictSelf(e)
            | LandlockError::ChildRule(e) => Some(e),
            LandlockError::NotEnforceable { .. } => None,
        }
    }
}

impl From<RulesetError> for LandlockError {
    fn from(e: RulesetError) -> Self {
        LandlockError::Ruleset(e)
    }
}

/// Filesystem rights this module manages. Stops at ABI 5 on purpose: ABI 9's `ResolveUnix`
/// would also gate connecting to pathname unix sockets, which no policy field covers yet.
fn handled_fs() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI::V5)
}

fn read_rights() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_rights() -> BitFlags<AccessFs> {
    handled_fs() & !BitFlags::from(AccessFs::Execute)
}

fn exec_rights() -> BitFlags<AccessFs> {
    read_rights() | AccessFs::Execute
}

fn rights_for(access: PathAccess) -> BitFlags<AccessFs> {
    match access {
        PathAccess::Read => read_rights(),
        PathAccess::Write => write_rights(),
        PathAccess::Exec => exec_rights(),
        PathAccess::List => AccessFs::ReadDir.into(),
    }
}

/// Rights the kernel accepts on a rule whose path is not a directory.
fn file_rights() -> BitFlags<AccessFs> {
    AccessFs::from_file(ABI::V5)
}

/// The Landlock ABI of the running kernel, or `None` when Landlock is not built in or not
/// enabled at boot.
pub fn kernel_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no attribute pointer and creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// Requested features with the ABI that introduced each, for the enforcement verdict.
fn requested_features(net: &NetRules, scopes: &Scopes) -> Vec<(u32, &'static str)> {
    let mut features = vec![
        (1, "filesystem access control"),
        (2, "cross-directory rename and link control (ABI 2)"),
        (3, "truncate control (ABI 3)"),
        (5, "device ioctl control (ABI 5)"),
    ];
    if net.restrict_tcp {
        features.push((4, "TCP bind/connect port rules (ABI 4)"));
    }
    if scopes.abstract_unix {
        features.push((6, "abstract unix socket scoping (ABI 6)"));
    }
    if scopes.signal {
        features.push((6, "signal scoping (ABI 6)"));
    }
    features
}

/// What a kernel with Landlock `abi` enforces of the request, and what it lacks.
fn evaluate(abi: Option<u32>, net: &NetRules, scopes: &Scopes) -> (Coverage, Vec<&'static str>) {
    let have = abi.unwrap_or(0);
    let missing: Vec<&'static str> = requested_features(net, scopes)
        .into_iter()
        .filter(|(since, _)| *since > have)
        .map(|(_, name)| name)
        .collect();
    let status = if abi.is_none() {
        Coverage::NotEnforced
    } else if missing.is_empty() {
        Coverage::FullyEnforced
    } else {
        Coverage::PartiallyEnforced
    };
    (status, missing)
}

/// Opens `path` with `O_PATH` (no read permission needed, nothing is read) and tells whether
/// it is a directory. `Ok(None)` when the path does not exist.
fn open_rule_path(path: &Path) -> Result<Option<(OwnedFd, bool)>, LandlockError> {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)
        .and_then(|file| Ok((file.metadata()?.is_dir(), file)));
    match opened {
        Ok((is_dir, file)) => Ok(Some((OwnedFd::from(file), is_dir))),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(None),
        Err(source) => Err(LandlockError::OpenPath {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A ruleset built in the parent, ready for the child to apply.
#[derive(Debug)]
pub struct PreparedLandlock {
    /// `None` when Landlock is unavailable (best effort): restricting is then a no-op.
    ruleset: Option<OwnedFd>,
    abi: Option<u32>,
    status: Coverage,
    missing: Vec<&'static str>,
    skipped: Vec<PathBuf>,
    /// Raw right masks per [`PathAccess`] (read, write, exec, list), limited to what the
    /// ruleset handles on this kernel, for rules added from the child.
    masks: [u64; 4],
    file_mask: u64,
}

/// Builds the Landlock ruleset for a job, in the parent, before clone.
///
/// All filesystem rights are always handled, so an empty [`FsRules`] denies every path.
/// Paths that do not exist are skipped (see [`PreparedLandlock::skipped_paths`]); a rule on
/// a file gets only the rights that apply to files. TCP is handled only when
/// `net.restrict_tcp`. With [`Enforcement::Strict`], fails unless the kernel enforces every
/// requested feature; with [`Enforcement::BestEffort`], unsupported features are left out
/// and listed in [`PreparedLandlock::missing_features`].
pub fn prepare(
    fs: &FsRules,
    extra: &[OpenedRule<'_>],
    net: &NetRules,
    scopes: &Scopes,
    required: Enforcement,
) -> Result<PreparedLandlock, LandlockError> {
    let mut opened = Vec::new();
    let mut absent = Vec::new();
    for (paths, access) in [
        (&fs.read, PathAccess::Read),
        (&fs.write, PathAccess::Write),
        (&fs.exec, PathAccess::Exec),
    ] {
        for path in paths {
            match open_rule_path(path)? {
                Some((fd, is_dir)) => opened.push((fd, access, is_dir)),
                None => absent.push(path.clone()),
            }
        }
    }
    let rules: Vec<OpenedRule<'_>> = opened
        .iter()
        .map(|(fd, access, is_dir)| OpenedRule {
            fd: fd.as_fd(),
            access: *access,
            is_dir: *is_dir,
        })
        .chain(extra.iter().copied())
        .collect();
    prepare_opened(&rules, &absent, net, scopes, required)
}

/// A rule on a path opened by the caller (`O_PATH`).
#[derive(Clone, Copy, Debug)]
pub struct OpenedRule<'a> {
    pub fd: BorrowedFd<'a>,
    pub access: PathAccess,
    pub is_dir: bool,
}

/// [`prepare`] on paths the caller opened itself (the very descriptors it
/// mounts), `absent` being the granted paths that did not exist.
pub fn prepare_opened(
    rules: &[OpenedRule<'_>],
    absent: &[PathBuf],
    net: &NetRules,
    scopes: &Scopes,
    required: Enforcement,
) -> Result<PreparedLandlock, LandlockError> {
    let abi = kernel_abi();
    let (status, missing) = evaluate(abi, net, scopes);
    if required == Enforcement::Strict && !missing.is_empty() {
        return Err(LandlockError::NotEnforceable { abi, missing });
    }
    // When our own verdict says "full", ask the crate to fail rather than silently degrade:
    // the two views of the kernel's ABI must agree.
    let level = if missing.is_empty() {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };

    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(handled_fs())?;
    if net.restrict_tcp {
        ruleset = ruleset.handle_access(AccessNet::from_all(ABI::V4))?;
    }
    let mut scope = BitFlags::<Scope>::EMPTY;
    if scopes.abstract_unix {
        scope |= Scope::AbstractUnixSocket;
    }
    if scopes.signal {
        scope |= Scope::Signal;
    }
    if !scope.is_empty() {
        ruleset = ruleset.scope(scope)?;
    }
    let mut created = ruleset.create()?;

    let mut skipped = Vec::new();
    for rule in rules {
        let rights = rights_for(rule.access);
        let rights = if rule.is_dir {
            rights
        } else {
            rights & file_rights()
        };
        created = created.add_rule(PathBeneath::new(rule.fd, rights))?;
    }
    skipped.extend(absent.iter().cloned());
    if net.restrict_tcp {
        for port in &net.connect {
            created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
        }
        for port in &net.bind {
            created = created.add_rule(NetPort::new(*port, AccessNet::BindTcp))?;
        }
    }

    // What the kernel handles for this ruleset: our request cut down to the kernel's ABI.
    let supported = match abi {
        Some(v) => AccessFs::from_all(ABI::from(i32::try_from(v).unwrap_or(i32::MAX))),
        None => BitFlags::EMPTY,
    } & handled_fs();
    let mask = |access| (rights_for(access) & supported).bits();
    Ok(PreparedLandlock {
        ruleset: Option::<OwnedFd>::from(created),
        abi,
        status,
        missing,
        skipped,
        masks: [
            mask(PathAccess::Read),
            mask(PathAccess::Write),
            mask(PathAccess::Exec),
            mask(PathAccess::List),
        ],
        file_mask: (file_rights() & supported).bits(),
    })
}

/// `struct landlock_path_beneath_attr` from `<linux/landlock.h>` (packed in the UAPI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

impl PreparedLandlock {
    /// The kernel's Landlock ABI, `None` when Landlock is unavailable.
    pub fn abi(&self) -> Option<u32> {
        self.abi
    }

    /// What [`Self::restrict_self`] will report.
    pub fn status(&self) -> LandlockStatus {
        LandlockStatus {
            abi: self.abi,
            status: self.status,
        }
    }

    /// Requested features this kernel cannot enforce (empty when fully enforced), for the
    /// best-effort report.
    pub fn missing_features(&self) -> &[&'static str] {
        &self.missing
    }

    /// Requested paths that did not exist and so got no rule (the job cannot reach them
    /// unless an ancestor is listed).
    pub fn skipped_paths(&self) -> &[PathBuf] {
        &self.skipped
    }

    /// The ruleset fd the child needs until [`Self::restrict_self`]: the child's "close every
    /// fd above 2" step must spare it. `None` when Landlock is unavailable.
    pub fn ruleset_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ruleset.as_ref().map(|fd| fd.as_fd())
    }

    /// Child side, after its own mounts and before [`Self::restrict_self`]: allow `access`
    /// beneath `path`, opened now.
    ///
    /// Needed for filesystems the child mounted itself (a fresh `/proc`, a tmpfs): rules
    /// follow inodes, so a rule made in the parent for the mount point does not cover what
    /// is mounted over it later. Does not allocate. No-op when Landlock is unavailable.
    /// Note that the ruleset is shared with every process holding its fd: add child rules
    /// only in the child that will restrict itself with it.
    pub fn add_path_rule_in_child(
        &self,
        path: &CStr,
        access: PathAccess,
    ) -> Result<(), LandlockError> {
        let Some(ruleset) = &self.ruleset else {
            return Ok(());
        };
        // SAFETY: path is a valid C string; the fd is owned below.
        let raw = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(LandlockError::ChildRule(Errno::last()));
        }
        // SAFETY: raw is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: st is an out-parameter filled by the kernel.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            return Err(LandlockError::ChildRule(Errno::last()));
        }
        let index = match access {
            PathAccess::Read => 0,
            PathAccess::Write => 1,
            PathAccess::Exec => 2,
            PathAccess::List => 3,
        };
        let mut allowed = self.masks[index];
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            allowed &= self.file_mask;
        }
        let attr = PathBeneathAttr {
            allowed_access: allowed,
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: attr is a valid landlock_path_beneath_attr that outlives the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if rc < 0 {
            return Err(LandlockError::ChildRule(Errno::last()));
        }
        Ok(())
    }

    /// Child side: restrict the calling process (and its future children) with the ruleset.
    ///
    /// Sets `no_new_privs` first (idempotent; the kernel requires it unless the caller has
    /// CAP_SYS_ADMIN, which the child has dropped by now), then `landlock_restrict_self(2)`.
    /// Makes only these two syscalls; when Landlock is unavailable it changes nothing and
    /// reports [`Coverage::NotEnforced`].
    ///
    /// Borrows: the child frees nothing between clone and exec; the ruleset fd closes at exec.
    pub fn restrict_self(&self) -> Result<LandlockStatus, LandlockError> {
        let status = self.status();
        let Some(ruleset) = &self.ruleset else {
            return Ok(status);
        };
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if rc < 0 {
            return Err(LandlockError::NoNewPrivs(Errno::last()));
        }
        // SAFETY: plain syscall on an fd we own.
        let rc =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if rc < 0 {
            return Err(LandlockError::RestrictSelf(Errno::last()));
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::namespaces::test_fork::{ctx, in_child};
    use crate::sandbox::namespaces::{make_mounts_private, mount_tmpfs};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixStream;

    fn fs_rules(read: &[&Path], write: &[&Path], exec: &[&Path]) -> FsRules {
        let own = |v: &[&Path]| v.iter().map(|p| p.to_path_buf()).collect();
        FsRules {
            read: own(read),
            write: own(write),
            exec: own(exec),
        }
    }

    fn prepare_fs(fs: &FsRules) -> PreparedLandlock {
        prepare(
            fs,
            &[],
            &NetRules::default(),
            &Scopes::default(),
            Enforcement::Strict,
        )
        .unwrap()
    }

    /// `Ok` when `r` failed with `errno`.
    fn denied<T>(r: io::Result<T>, errno: i32, what: &str) -> Result<(), String> {
        match r {
            Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
            Err(e) => Err(format!("{what}: wanted errno {errno}, got {e}")),
            Ok(_) => Err(format!("{what}: allowed, wanted errno {errno}")),
        }
    }

    fn restrict(prepared: PreparedLandlock) -> Result<(), String> {
        let status = ctx(prepared.restrict_self(), "restrict_self")?;
        if status.status != Coverage::FullyEnforced {
            return Err(format!("status {status:?}"));
        }
        Ok(())
    }

    #[test]
    fn kernel_has_the_abi_the_project_targets() {
        // The development and CI machines run Landlock ABI 7; every kernel test below
        // relies on it, so say so plainly when it is missing.
        assert!(
            kernel_abi() >= Some(6),
            "Landlock ABI is {:?}",
            kernel_abi()
        );
    }

    #[test]
    fn read_and_write_rules_are_enforced() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        std::fs::write(a.path().join("a.txt"), "a").unwrap();
        std::fs::write(b.path().join("old"), "b").unwrap();
        std::fs::write(c.path().join("c.txt"), "c").unwrap();
        let prepared = prepare_fs(&fs_rules(&[a.path()], &[b.path()], &[]));
        assert_eq!(prepared.abi(), kernel_abi());
        assert!(prepared.missing_features().is_empty());
        assert!(prepared.ruleset_fd().is_some());
        let (a, b, c) = (a.path(), b.path(), c.path());
        let result = in_child(|| {
            restrict(prepared)?;
            let text = ctx(std::fs::read_to_string(a.join("a.txt")), "read in A")?;
            if text != "a" {
                return Err(format!("read {text:?} from A"));
            }
            ctx(std::fs::read_dir(a), "list A")?;
            denied(
                std::fs::write(a.join("new"), "x"),
                libc::EACCES,
                "create in A",
            )?;
            denied(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(a.join("a.txt")),
                libc::EACCES,
                "open A/a.txt for writing",
            )?;
            ctx(std::fs::write(b.join("new"), "x"), "create in B")?;
            ctx(std::fs::create_dir(b.join("d")), "mkdir in B")?;
            ctx(
                std::fs::rename(b.join("new"), b.join("d/moved")),
                "rename in B",
            )?;
            ctx(std::fs::remove_file(b.join("old")), "unlink in B")?;
            ctx(
                std::fs::File::options()
                    .write(true)
                    .open(b.join("d/moved"))
                    .and_then(|f| f.set_len(0)),
                "truncate in B",
            )?;
            denied(
                std::fs::read_to_string(c.join("c.txt")),
                libc::EACCES,
                "read in C",
            )?;
            denied(std::fs::read_dir(c), libc::EACCES, "list C")?;
            Ok(())
        });
        assert_eq!(result, Ok(()));
        assert!(
            b.join("d/moved").exists(),
            "the child's writes to B are real"
        );
    }

    #[test]
    fn rule_on_a_file_gets_file_rights_only() {
        let a = tempfile::tempdir().unwrap();
        let file = a.path().join("f.txt");
        std::fs::write(&file, "old").unwrap();
        // Directory-only rights on a file rule make the kernel fail with EINVAL.
        let prepared = prepare_fs(&fs_rules(&[], &[&file], &[]));
        let a = a.path();
        let result = in_child(|| {
            restrict(prepared)?;
            ctx(std::fs::write(&file, "new"), "write the allowed file")?;
            denied(
                std::fs::write(a.join("other"), "x"),
                libc::EACCES,
                "create beside it",
            )?;
            Ok(())
        });
        assert_eq!(result, Ok(()));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
    }

    #[test]
    fn write_on_dev_null_allows_ioctl() {
        let prepared = prepare_fs(&fs_rules(&[], &[Path::new("/dev/null")], &[]));
        let result = in_child(|| {
            restrict(prepared)?;
            let null = ctx(
                std::fs::OpenOptions::new().write(true).open("/dev/null"),
                "open /dev/null",
            )?;
            let mut n: libc::c_int = 0;
            // FIONREAD is not in Landlock's always-allowed list, so it needs IoctlDev;
            // /dev/null answers it with ENOTTY, never EACCES.
            // SAFETY: n is a valid out-parameter.
            let rc = unsafe { libc::ioctl(null.as_raw_fd(), libc::FIONREAD, &mut n) };
            let errno = Errno::last();
            if rc < 0 && errno == Errno::EACCES {
                return Err("ioctl on /dev/null denied".into());
            }
            denied(
                std::fs::File::open("/dev/zero"),
                libc::EACCES,
                "open /dev/zero",
            )
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn prepare_leaves_no_fd_behind() {
        let a = tempfile::tempdir().unwrap();
        let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        // Other tests open fds concurrently; retry a few times for a quiet moment.
        let leaked = (0..20).all(|_| {
            let before = count();
            let prepared = prepare_fs(&fs_rules(&[a.path(), Path::new("/usr")], &[a.path()], &[]));
            let during = count();
            drop(prepared);
            // One fd (the ruleset) while prepared, none after: the O_PATH fds are closed.
            !(during == before + 1 && count() == before)
        });
        assert!(
            !leaked,
            "prepare leaks fds or keeps more than the ruleset fd"
        );
    }

    #[test]
    fn missing_paths_are_skipped_and_listed() {
        let a = tempfile::tempdir().unwrap();
        let gone = a.path().join("gone");
        let under_file = a.path().join("f/below");
        std::fs::write(a.path().join("f"), "").unwrap();
        let prepared = prepare_fs(&fs_rules(&[&gone, a.path()], &[&under_file], &[]));
        assert_eq!(prepared.skipped_paths(), [gone, under_file]);
    }

    #[test]
    fn execute_needs_an_exec_rule() {
        let system: Vec<&Path> = ["/usr", "/bin", "/lib", "/lib64", "/etc"]
            .iter()
            .map(Path::new)
            .collect();
        let with_exec = prepare_fs(&fs_rules(&[], &[], &system));
        let read_only = prepare_fs(&fs_rules(&system, &[], &[]));
        let result = in_child(|| {
            restrict(with_exec)?;
            let status = ctx(
                std::process::Command::new("/bin/true").status(),
                "run /bin/true",
            )?;
            status
                .success()
                .then_some(())
                .ok_or(format!("/bin/true: {status}"))
        });
        assert_eq!(result, Ok(()));
        let result = in_child(|| {
            restrict(read_only)?;
            denied(
                std::process::Command::new("/bin/true").status(),
                libc::EACCES,
                "exec without exec rule",
            )
        });
        assert_eq!(result, Ok(()));
    }

    fn net_only(restrict_tcp: bool, connect: Vec<u16>, bind: Vec<u16>) -> PreparedLandlock {
        let net = NetRules {
            restrict_tcp,
            connect,
            bind,
        };
        prepare(
            &FsRules::default(),
            &[],
            &net,
            &Scopes::default(),
            Enforcement::Strict,
        )
        .unwrap()
    }

    #[test]
    fn tcp_ports_are_enforced() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = net_only(true, vec![], vec![]);
        let result = in_child(|| {
            restrict(closed)?;
            denied(
                std::net::TcpStream::connect(addr),
                libc::EACCES,
                "connect, no ports",
            )?;
            denied(
                std::net::TcpListener::bind("127.0.0.1:0"),
                libc::EACCES,
                "bind, no ports",
            )
        });
        assert_eq!(result, Ok(()));
        let open = net_only(true, vec![addr.port()], vec![0]);
        let result = in_child(|| {
            restrict(open)?;
            ctx(std::net::TcpStream::connect(addr), "connect to listed port")?;
            ctx(
                std::net::TcpListener::bind("127.0.0.1:0"),
                "bind to listed port 0",
            )
            .map(drop)
        });
        assert_eq!(result, Ok(()));
        let unrestricted = net_only(false, vec![], vec![]);
        let result = in_child(|| {
            restrict(unrestricted)?;
            ctx(
                std::net::TcpStream::connect(addr),
                "connect without restrict_tcp",
            )
            .map(drop)
        });
        assert_eq!(result, Ok(()));
    }

    fn scoped(abstract_unix: bool, signal: bool) -> PreparedLandlock {
        let scopes = Scopes {
            abstract_unix,
            signal,
        };
        prepare(
            &FsRules::default(),
            &[],
            &NetRules::default(),
            &scopes,
            Enforcement::Strict,
        )
        .unwrap()
    }

    #[test]
    fn abstract_unix_scope_blocks_outside_sockets() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ae-landlock-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
        let (scoped_rules, open_rules) = (scoped(true, false), scoped(false, false));
        let result = in_child(|| {
            restrict(scoped_rules)?;
            denied(
                UnixStream::connect_addr(&addr),
                libc::EPERM,
                "connect to outside abstract socket",
            )
        });
        assert_eq!(result, Ok(()));
        let result = in_child(|| {
            restrict(open_rules)?;
            ctx(UnixStream::connect_addr(&addr), "connect without scope").map(drop)
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn signal_scope_blocks_signals_to_outside_processes() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(sleeper.id() as i32);
        let (scoped_rules, open_rules) = (scoped(false, true), scoped(false, false));
        let result = in_child(|| {
            restrict(scoped_rules)?;
            match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
                Err(Errno::EPERM) => Ok(()),
                other => Err(format!("kill with signal scope: {other:?}")),
            }
        });
        let still_running = sleeper.try_wait().unwrap().is_none();
        let control = in_child(|| {
            restrict(open_rules)?;
            ctx(nix::sys::signal::kill(pid, None), "kill(0) without scope")
        });
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        assert_eq!(result, Ok(()));
        assert!(still_running, "the sleeper got the signal");
        assert_eq!(control, Ok(()));
    }

    #[test]
    fn child_rule_covers_a_tmpfs_mounted_after_prepare() {
        let (b, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let d_c = CString::new(d.path().as_os_str().as_bytes()).unwrap();
        let rules = fs_rules(&[], &[b.path(), d.path()], &[]);
        let (without, with) = (prepare_fs(&rules), prepare_fs(&rules));
        let d = d.path();
        let mount_over_d = || -> Result<(), String> {
            ctx(
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
                "unshare(NEWNS)",
            )?;
            ctx(make_mounts_private(), "make_mounts_private")?;
            ctx(mount_tmpfs(&d_c, Some(1 << 20)), "mount_tmpfs")
        };
        let result = in_child(|| {
            mount_over_d()?;
            restrict(without)?;
            denied(
                std::fs::write(d.join("x"), "x"),
                libc::EACCES,
                "write in tmpfs, parent rule only",
            )
        });
        assert_eq!(result, Ok(()));
        let result = in_child(|| {
            mount_over_d()?;
            ctx(
                with.add_path_rule_in_child(&d_c, PathAccess::Write),
                "add_path_rule_in_child",
            )?;
            if with
                .add_path_rule_in_child(c"/nonexistent/ae", PathAccess::Read)
                .is_ok()
            {
                return Err("rule on a missing path accepted".into());
            }
            restrict(with)?;
            ctx(
                std::fs::write(d.join("x"), "x"),
                "write in tmpfs with child rule",
            )
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn verdict_follows_the_kernel_abi() {
        let tcp = NetRules {
            restrict_tcp: true,
            ..Default::default()
        };
        let both = Scopes {
            abstract_unix: true,
            signal: true,
        };
        assert_eq!(
            evaluate(Some(6), &tcp, &both),
            (Coverage::FullyEnforced, vec![])
        );
        let (status, missing) = evaluate(Some(3), &tcp, &Scopes::default());
        assert_eq!(status, Coverage::PartiallyEnforced);
        assert_eq!(
            missing,
            [
                "device ioctl control (ABI 5)",
                "TCP bind/connect port rules (ABI 4)"
            ]
        );
        // Without TCP rules or scopes, ABI 5 is enough.
        assert_eq!(
            evaluate(Some(5), &NetRules::default(), &Scopes::default()).0,
            Coverage::FullyEnforced
        );
        assert_eq!(
            evaluate(Some(5), &NetRules::default(), &both).0,
            Coverage::PartiallyEnforced
        );
        assert_eq!(
            evaluate(None, &NetRules::default(), &Scopes::default()).0,
            Coverage::NotEnforced
        );
    }

    #[test]
    fn strict_errors_say_what_is_missing() {
        let e = LandlockError::NotEnforceable {
            abi: Some(3),
            missing: vec!["TCP bind/connect port rules (ABI 4)"],
        };
        let msg = e.to_string();
        assert!(
            msg.contains("ABI 3") && msg.contains("TCP") && msg.contains("best_effort"),
            "{msg}"
        );
        let msg = LandlockError::NotEnforceable {
            abi: None,
            missing: vec![],
        }
        .to_string();
        assert!(msg.contains("not available"), "{msg}");
        assert!(LandlockError::RestrictSelf(Errno::EBADF)
            .to_string()
            .contains("ruleset_fd"));
    }

    #[test]
    fn status_serializes_as_the_design_says() {
        let status = LandlockStatus {
            abi: Some(7),
            status: Coverage::FullyEnforced,
        };
        assert_eq!(
            serde_json::to_value(status).unwrap(),
            serde_json::json!({"abi": 7, "status": "fully_enforced"})
        );
        let none = LandlockStatus {
            abi: None,
            status: Coverage::NotEnforced,
        };
        assert_eq!(
            serde_json::to_value(none).unwrap(),
            serde_json::json!({"abi": null, "status": "not_enforced"})
        );
        let schema = serde_json::to_value(schemars::schema_for!(LandlockStatus)).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&serde_json::to_value(status).unwrap()));
        assert!(!validator.is_valid(&serde_json::json!({"abi": 7, "status": "partial"})));
    }
}

//! The paths a job is granted, as they will be launched.
//!
//! Every grant is resolved once, here, into the real path it names: the
//! record keeps real paths, so that what `status` shows is what the job
//! gets, and the launch refuses a path that has gained a symlink since
//! (`sandbox::view`). The symlinks met on the way (`/bin -> usr/bin`) are
//! remembered, for the job's view to have them too. Grants no job may have
//! are refused with the reason.

use std::path::{Component, Path, PathBuf};

use super::define::DefineError;
use crate::policy::{ExpandedFilesystem, Policy};

/// Top-level directories of the host that no grant may be, unless a policy
/// names it (a working directory of `/` must not make the host writable).
const SYSTEM_ROOTS: [&str; 9] = [
    "/", "/usr", "/etc", "/var", "/boot", "/proc", "/sys", "/dev", "/run",
];

/// Trees of the host that no write grant may lie in, unless a policy names
/// it: a root caller's job owns its write grants (they are idmapped), so
/// `--cwd /usr/bin` would let it replace the host's programs, and
/// `/var/lib/dpkg` the scripts the package manager runs. (`/dev` is never
/// idmapped; its devices are granted by name.) Below `/var/tmp` is the
/// caller's own.
const SYSTEM_TREES: [&str; 14] = [
    "/usr", "/etc", "/boot", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/var", "/run", "/opt",
];

/// Shared directories of the host that no write grant may be (what lies in
/// them is someone's), unless a policy names it.
const SHARED_DIRS: [&str; 10] = [
    "/home",
    "/srv",
    "/tmp",
    "/mnt",
    "/media",
    "/var/tmp",
    "/run/user",
    "/dev/shm",
    "/root",
    "/nonexistent",
];

/// Why a write grant is the host's rather than the caller's, if it is.
fn host_write(path: &Path, home: &Path) -> Option<&'static str> {
    let own_tmp = path.starts_with("/var/tmp") && path != Path::new("/var/tmp");
    if SYSTEM_TREES.iter().any(|t| path.starts_with(t)) && !own_tmp {
        return Some("inside a system directory");
    }
    if home != Path::new("/") && home.starts_with(path) {
        return Some(
            "your home directory or above it (start-up files, keys and tokens live there)",
        );
    }
    if SHARED_DIRS.iter().any(|d| Path::new(d) == path) {
        return Some("a directory shared by every user");
    }
    None
}

/// Why a path the caller named was not opened.
#[derive(Debug)]
pub enum Unplanted {
    /// It goes through this symlink, which a job may have left.
    Link(PathBuf),
    Io(std::io::Error),
}

/// Opens `path` (absolute, or relative to the current directory) as an
/// `O_PATH` descriptor, one component at a time from descriptors already
/// open, and returns it with its real path. A symlink on the way is
/// followed only where the system keeps its own (`/lib64 -> usr/lib64`: in
/// a system tree, in a directory only root may change); any other is
/// refused, since a job may have left it (`backend -> /home/other/.ssh`)
/// and a path named through it would be steered where the job chose.
/// Walking from descriptors leaves no moment between the check and the
/// use for a job to swap a directory for a link.
pub fn open_unplanted(path: &Path) -> Result<(std::os::fd::OwnedFd, PathBuf), Unplanted> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    const SYSTEM: [&str; 11] = [
        "/usr", "/etc", "/boot", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
        "/libx32",
    ];
    let io = |e: std::io::Error| Unplanted::Io(e);
    let open_at = |dir: &OwnedFd, name: &std::ffi::OsStr| -> std::io::Result<OwnedFd> {
        let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(name))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        // SAFETY: openat on our descriptor with a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let real_of = |fd: &OwnedFd| std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let start = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(io)?
    };
    let mut cur: OwnedFd = std::fs::File::open(&start).map_err(io)?.into();
    // Components still to walk, in order (a followed link pushes its own).
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        let next = open_at(&cur, &name).map_err(io)?;
        // SAFETY: st is an out-parameter the kernel fills.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own O_PATH descriptor (the link itself).
        if unsafe { libc::fstat(next.as_raw_fd(), &mut st) } != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            cur = next;
            continue;
        }
        let dir = real_of(&cur).map_err(io)?;
        let link = dir.join(&name);
        // SAFETY: as above, on the directory that holds the link.
        let mut dst: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat on our own descriptor.
        let dir_ok = unsafe { libc::fstat(cur.as_raw_fd(), &mut dst) } == 0
            && dst.st_uid == 0
            && dst.st_mode & 0o022 == 0;
        let system = SYSTEM.iter().any(|s| link.starts_with(s));
        links += 1;
        if !(system && dir_ok) || links > 40 {
            return Err(Unplanted::Link(link));
        }
        // SAFETY: readlinkat on the directory's descriptor and the name.
        let target = nix::fcntl::readlinkat(
            unsafe { std::os::fd::BorrowedFd::borrow_raw(cur.as_raw_fd()) },
            name.as_os_str(),
        )
        .map_err(|e| io(e.into()))?;
        let target = PathBuf::from(target);
        if target.is_absolute() {
            cur = std::fs::File::open("/").map_err(io)?.into();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    }
    let real = real_of(&cur).map_err(io)?;
    Ok((cur, real))
}

/// The grants of one job, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub fs: ExpandedFilesystem,
    /// Symlinks met on the way to a grant: (link, its target as read).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// The grants that are the caller's own trees (see `SandboxSpec::own_trees`).
    pub own_trees: Vec<PathBuf>,
    /// Grants not given, each with the symlink in the caller's home or
    /// working directory it was reached through.
    pub dropped: Vec<(PathBuf, PathBuf)>,
}

/// The job's own directories, which lie inside the store by design, and
/// the caller's home.
pub struct OwnDirs<'a> {
    pub store: &'a Path,
    pub tmpdir: &'a Path,
    pub job_dir: &'a Path,
    pub home: &'a Path,
}

/// Resolves every grant of `fs` (expanded for a job in `cwd`), and refuses
/// the grants no job may have; `policy` is the policy as its files say,
/// before the command line's overrides (what it names it may grant).
pub fn resolve(
    policy: &Policy,
    fs: ExpandedFilesystem,
    cwd: &Path,
    own: &OwnDirs<'_>,
) -> Result<Resolved, DefineError> {
    if cwd.starts_with(own.store) {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies inside the job store {}: run the job from a \
             project directory, or pass --cwd DIR",
            cwd.display(),
            own.store.display()
        )));
    }
    let mut links = Vec::new();
    let mut dropped = Vec::new();
    // A grant reached through a symlink in the caller's home or working
    // directory is not granted: a job may have left that link (`~/.deno/bin
    // -> ../.ssh`), and the next job's grant would follow it.
    let root = Path::new("/");
    let plantable = |link: &Path| {
        (cwd != root && link.starts_with(cwd)) || (own.home != root && link.starts_with(own.home))
    };
    let mut real = |paths: Vec<PathBuf>, grant: bool| -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for path in paths {
            let mut met = Vec::new();
            let resolved = resolve_links(&path, &mut met);
            if grant {
                if let Some((link, _)) = met.iter().find(|(l, _)| plantable(l)) {
                    dropped.push((path.clone(), link.clone()));
                    continue;
                }
            }
            links.extend(met);
            if !out.contains(&resolved) {
                out.push(resolved);
            }
        }
        out
    };
    let fs = ExpandedFilesystem {
        landlock: fs.landlock,
        read: real(fs.read, true),
        write: real(fs.write, true),
        exec: real(fs.exec, true),
        tmpfs: real(fs.tmpfs, false),
        deny: real(fs.deny, false),
        read_only: real(fs.read_only, false),
    };
    // What the view covers in the store would uncover it.
    let mut fs = fs;
    fs.read_only.retain(|p| !p.starts_with(own.store));
    fs.deny.retain(|p| !p.starts_with(own.store));
    let fs = fs;
    // A working directory is not a way to name a hidden place: a symlink
    // one job leaves (`frontend -> ../.ssh`, `sub -> .git`) would make the
    // next job's `--cwd` the very place the policy hides or keeps read-only.
    if let Some(hidden) = fs.deny.iter().find(|d| cwd.starts_with(d)) {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies in {}, which the policy hides (filesystem.deny); \
             run the job from a project directory, or pass --cwd DIR",
            cwd.display(),
            hidden.display()
        )));
    }
    if cwd.components().any(|c| c.as_os_str() == ".git") {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies in a git directory, which would make its hooks and \
             config writable; run the job from the work tree, or pass --cwd DIR",
            cwd.display()
        )));
    }
    // The most specific rule wins; on a tie, the grant (a command line's
    // `--allow-read ~/.ssh` shows what the policy would hide).
    let mut fs = fs;
    let granted: Vec<PathBuf> = fs
        .read
        .iter()
        .chain(&fs.write)
        .chain(&fs.exec)
        .cloned()
        .collect();
    fs.deny.retain(|p| !granted.contains(p));
    fs.read_only.retain(|p| !fs.write.contains(p));
    // What the policy file itself lets be written in the home.
    let policy_writes: Vec<PathBuf> = policy
        .filesystem
        .write
        .iter()
        .filter_map(|t| match t.strip_prefix("$HOME") {
            Ok(rest) => Some(own.home.join(rest)),
            Err(_) => t.is_absolute().then(|| t.clone()),
        })
        .collect();
    let named = |templates: &[PathBuf]| -> Vec<PathBuf> {
        templates
            .iter()
            .filter(|t| !t.to_string_lossy().starts_with('$'))
            .cloned()
            .collect()
    };
    let f = &policy.filesystem;
    for (class, granted, by_name) in [
        ("read", &fs.read, named(&f.read)),
        ("write", &fs.write, named(&f.write)),
        ("exec", &fs.exec, named(&f.exec)),
    ] {
        for path in granted {
            let system = SYSTEM_ROOTS.iter().any(|r| Path::new(r) == path);
            if system && !by_name.contains(path) {
                return Err(refusal(class, path, cwd, "a system directory"));
            }
            // The job's own $TMPDIR and $JOB_DIR: made by us in the store,
            // wherever the store is (by default in `~/.local/state`).
            let own_dir = path.starts_with(own.tmpdir) || path.starts_with(own.job_dir);
            if class == "write" && !by_name.contains(path) && !own_dir {
                if let Some(what) = host_write(path, own.home) {
                    return Err(refusal(class, path, cwd, what));
                }
                // Hidden directories of the home hold programs and settings
                // that run as the caller (`~/.local/bin`, `~/.config/systemd`):
                // writable only inside what the policy itself names there.
                let hidden = path
                    .strip_prefix(own.home)
                    .ok()
                    .and_then(|rest| rest.components().next())
                    .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with('.'));
                let named_there = policy_writes.iter().any(|w| path.starts_with(w));
                if hidden && own.home != Path::new("/") && !named_there {
                    return Err(refusal(
                        class,
                        path,
                        cwd,
                        "a hidden directory of your home, where programs and settings live",
                    ));
                }
            }
            if path.starts_with(own.store) && !own_dir {
                return Err(refusal(class, path, cwd, "inside the job store"));
            }
        }
    }
    links.sort();
    links.dedup();
    let own_trees = own_trees(&fs, cwd, own.home);
    Ok(Resolved {
        fs,
        links,
        own_trees,
        dropped,
    })
}

/// The grants that are the caller's own trees: every write path, and what
/// is granted of the working directory or of `$HOME`. Never a system
/// directory, a device, `/proc` or `/sys`: those are the host's, whoever
/// the caller (an idmapped `/dev/null` would let the job chmod the host's).
/// A directory the caller made in the shared-memory tmpfs is its own.
fn own_trees(fs: &ExpandedFilesystem, cwd: &Path, home: &Path) -> Vec<PathBuf> {
    let host = |p: &Path| {
        let in_shm = p.starts_with("/dev/shm") && p != Path::new("/dev/shm");
        SYSTEM_ROOTS.iter().any(|r| Path::new(r) == p)
            || (p.starts_with("/dev") && !in_shm)
            || p.starts_with("/proc")
            || p.starts_with("/sys")
    };
    let caller_home = !host(home) && home.is_absolute();
    let mut out: Vec<PathBuf> = Vec::new();
    let all = fs.read.iter().chain(&fs.write).chain(&fs.exec);
    for path in all {
        let own = fs.write.contains(path)
            || path.starts_with(cwd)
            || (caller_home && path.starts_with(home));
        if own && !host(path) && !out.contains(path) {
            out.push(path.clone());
        }
    }
    out.sort();
    out
}

fn refusal(class: &str, path: &Path, cwd: &Path, what: &str) -> DefineError {
    let hint = if path == cwd {
        "it is the working directory: run the job from a project directory, or pass --cwd DIR"
            .to_string()
    } else {
        "grant a directory within it instead".to_string()
    };
    DefineError::Invalid(format!(
        "the job would be granted {class} access to {}, {what}; {hint}",
        path.display()
    ))
}

/// `path` with every symlink on the way resolved (as written from the
/// first component that does not exist: it grants nothing), recording each
/// symlink met.
fn resolve_links(path: &Path, links: &mut Vec<(PathBuf, PathBuf)>) -> PathBuf {
    walk(PathBuf::from("/"), path, links, 0)
}

/// Walks `rest` from the real directory `cur`.
fn walk(mut cur: PathBuf, rest: &Path, links: &mut Vec<(PathBuf, PathBuf)>, depth: u32) -> PathBuf {
    let mut missing = false;
    for component in rest.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => {
                if !missing {
                    cur.pop();
                    continue;
                }
                cur.push("..");
                continue;
            }
            _ => continue,
        };
        let next = cur.join(name);
        if missing {
            cur = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() && depth < 40 => {
                let Ok(target) = std::fs::read_link(&next) else {
                    cur = next;
                    continue;
                };
                links.push((next, target.clone()));
                let from = if target.is_absolute() {
                    PathBuf::from("/")
                } else {
                    cur.clone()
                };
                cur = walk(from, &target, links, depth + 1);
            }
            Ok(_) => cur = next,
            Err(_) => {
                missing = true;
                cur = next;
            }
        }
    }
    cur
}

/// Makes the write grants the policy names under `home` (its tools'
/// caches: `~/.cache`, `~/.npm`, `~/go/pkg`) where they are missing, mode
/// 0700, so that a tool's first run in a job can fill them: the job itself
/// may not create them, since the home is read-only to it. Only in a home
/// that is the caller's own, only what the policy file names (never a
/// command-line path, which must exist), and never through a symlink: a
/// component that is one stops the making (a job may have left it).
pub fn make_home_caches(policy: &Policy, home: &Path) {
    use std::os::unix::fs::MetadataExt;
    if home == Path::new("/") || !home.is_absolute() {
        return;
    }
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    if std::fs::symlink_metadata(home).map_or(true, |m| m.uid() != me || !m.is_dir()) {
        return;
    }
    for template in &policy.filesystem.write {
        let Ok(rest) = template.strip_prefix("$HOME") else {
            continue;
        };
        let plain = rest.components().all(|c| matches!(c, Component::Normal(_)));
        if plain && !rest.as_os_str().is_empty() {
            let _ = make_dirs_without_links(home, rest);
        }
    }
}

fn make_dirs_without_links(base: &Path, rest: &Path) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let open_dir = |dir: &OwnedFd, name: &std::ffi::CStr| -> std::io::Result<OwnedFd> {
        // SAFETY: openat on our descriptor with a NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let mut cur: OwnedFd = std::fs::File::open(base)?.into();
    for component in rest.components() {
        let name = std::ffi::CString::new(component.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        cur = match open_dir(&cur, &name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // SAFETY: mkdirat on our directory descriptor.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
                    let e = std::io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                open_dir(&cur, &name)?
            }
            // A symlink (ENOTDIR with O_NOFOLLOW) or a file: stop here.
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn own_trees_are_the_callers_never_the_hosts() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let fs = ExpandedFilesystem {
            landlock: true,
            read: paths(&["/usr", "/etc", "/dev/null", "/home/u/.cargo", "/dev/shm/w"]),
            write: paths(&["/dev/shm/w", "/dev/null", "/srv/out", "/dev/shm"]),
            exec: paths(&["/usr", "/home/u/.cargo/bin"]),
            tmpfs: Vec::new(),
            deny: Vec::new(),
            read_only: Vec::new(),
        };
        assert_eq!(
            own_trees(&fs, Path::new("/dev/shm/w"), Path::new("/home/u")),
            paths(&[
                "/dev/shm/w",
                "/home/u/.cargo",
                "/home/u/.cargo/bin",
                "/srv/out"
            ])
        );
        // A home that is a system directory makes nothing of it the caller's.
        assert_eq!(
            own_trees(&fs, Path::new("/srv/out"), Path::new("/")),
            paths(&["/dev/shm/w", "/srv/out"])
        );
    }

    #[test]
    fn only_the_systems_own_links_are_followed_for_a_named_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("real", root.join("planted")).unwrap();
        let (_, real) = open_unplanted(&root.join("real/sub")).unwrap();
        assert_eq!(real, root.join("real/sub"));
        match open_unplanted(&root.join("planted/sub")) {
            Err(Unplanted::Link(link)) => assert_eq!(link, root.join("planted")),
            other => panic!("{other:?}"),
        }
        // `..` is the parent of the directory actually reached.
        let (_, real) = open_unplanted(&root.join("real/sub/..")).unwrap();
        assert_eq!(real, root.join("real"));
        // The system's own links are followed (where this host has them).
        if std::fs::symlink_metadata("/bin").is_ok_and(|m| m.file_type().is_symlink()) {
            let (_, real) = open_unplanted(Path::new("/bin/sh")).unwrap();
            assert_eq!(real, Path::new("/bin/sh").canonicalize().unwrap());
        }
    }

    #[test]
    fn links_are_resolved_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink(root.join("usr"), root.join("abs")).unwrap();
        let mut links = Vec::new();
        assert_eq!(
            resolve_links(&root.join("bin"), &mut links),
            root.join("usr/bin")
        );
        assert_eq!(
            resolve_links(&root.join("abs/bin"), &mut links),
            root.join("usr/bin")
        );
        assert_eq!(
            resolve_links(&root.join("missing/x"), &mut links),
            root.join("missing/x")
        );
        assert_eq!(
            links,
            [
                (root.join("bin"), PathBuf::from("usr/bin")),
                (root.join("abs"), root.join("usr"))
            ]
        );
    }
}

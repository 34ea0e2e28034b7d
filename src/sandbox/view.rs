//! The job's view of the filesystem: a new root holding only what the
//! policy grants (bubblewrap's and nsjail's design).
//!
//! Parent side, before the clone ([`RootPlan::prepare`]): every granted path
//! is opened once, without following a symlink anywhere on the way (the
//! record holds real paths: a symlink there now was planted since), and
//! cloned into a detached mount tree with its attributes set, recursively:
//! read-only unless written, `noexec` unless executed, always `nosuid` and
//! `nodev`. The same descriptors give Landlock its rules, so what is
//! checked is what is mounted. The standard devices are cloned the same way.
//!
//! A caller without root cannot clone mounts of the host's namespace: for
//! it the parent opens the grants all the same, and the child, root of its
//! own user and mount namespaces, clones them there ([`Item::Bind`]),
//! reopening each path without symlinks and refusing it unless it is the
//! very inode the parent opened. `$JOB_DIR`'s tmpfs is then made by the
//! child, which hands its root to the supervisor over a socket.
//!
//! Child side, before `pivot_root` ([`build`], raw syscalls only): a tmpfs
//! becomes the root; the detached trees are moved into it, parents first;
//! a fresh `/proc`, a minimal `/dev`, private tmpfs for `/tmp` and
//! `$TMPDIR`, empty read-only mounts over the job store where a grant holds
//! it, the symlinks met on the way to the grants; then the root's own
//! tmpfs goes read-only and the old root is detached. What is not granted
//! does not exist inside.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use super::identity::HostIdentity;
use super::spec::SandboxSpec;

/// Devices every job gets in its `/dev`, as the host has them.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// The size of the root's own tmpfs: it only holds mount points.
const ROOT_TMPFS_BYTES: u64 = 1 << 20;

// <linux/mount.h>
const OPEN_TREE_CLONE: u32 = 1;
const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
// <linux/openat2.h>
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// One granted path, opened.
pub struct Grant {
    pub path: PathBuf,
    /// `O_PATH`, resolved without symlinks: what Landlock's rule is on.
    pub fd: OwnedFd,
    pub is_dir: bool,
}

/// What to mount at one place of the new root (paths relative to it).
enum Item {
    /// A detached tree made by the parent.
    Tree {
        tree: OwnedFd,
        is_dir: bool,
    },
    /// A private tmpfs (`data`: its mount options).
    Tmpfs {
        data: CString,
        noexec: bool,
    },
    Proc,
    /// The minimal `/dev`: a tmpfs with devpts, shm and the standard links
    /// (its devices are `Tree` items below it).
    Dev,
    /// An empty directory hiding what a grant would show (the store).
    Hide,
    /// A filesystem the parent made (`$JOB_DIR`'s tmpfs), moved in like a tree.
    Mount {
        fd: OwnedFd,
        noexec: bool,
    },
    /// A caller without root: a grant the child clones in its own mount
    /// namespace. `source` is the parent's `O_PATH` descriptor of it, which
    /// the child's own lookup of `path` must reach again; `tree` is where the
    /// child keeps its clone (it clones every grant before it covers the old
    /// `/tmp` with the new root).
    Bind {
        source: OwnedFd,
        path: CString,
        attrs: u64,
        is_dir: bool,
        tree: std::cell::Cell<RawFd>,
    },
    /// A caller without root: `$JOB_DIR`'s tmpfs, made by the child, which
    /// sends its root directory to the supervisor on `channel`.
    OwnTmpfs {
        data: CString,
        noexec: bool,
        channel: OwnedFd,
    },
}

struct Place {
    /// Relative to the new root, without a leading `/`.
    rel: CString,
    /// Every ancestor of `rel`, outermost first, to create when missing.
    ancestors: Vec<CString>,
    item: Item,
}

/// Everything the child needs to build the new root, prepared in the parent.
pub struct RootPlan {
    places: Vec<Place>,
    links: Vec<(CString, CString)>,
    /// Mounts made read-only once everything is in place: the root's own
    /// tmpfs (`.`) and the hiding ones.
    read_only_at_end: Vec<CString>,
    /// The granted paths, opened (for Landlock).
    pub grants: Vec<Grant>,
    /// Granted paths that do not exist: they grant nothing.
    pub missing: Vec<PathBuf>,
    /// The caller's trees mounted without their idmap (best effort only:
    /// the filesystem cannot idmap), with the reason.
    pub not_idmapped: Vec<(PathBuf, io::Error)>,
    /// `read_only` paths that do not exist in a directory the job may
    /// write: nothing to mount over, so the job could create them.
    pub unprotected: Vec<PathBuf>,
    /// The root of `$JOB_DIR`'s tmpfs, for the supervisor to copy into the
    /// store when the job ends.
    pub job_dir: Option<OwnedFd>,
    /// Where that root arrives from the child, when the child makes it (a
    /// caller without root).
    pub job_dir_channel: Option<OwnedFd>,
}

/// Why the view cannot be prepared.
#[derive(Debug)]
pub enum ViewError {
    /// A granted path now goes through a symlink: the grant was resolved
    /// into a real path when the job was defined, so one was planted since.
    Symlink(PathBuf),
    Io(&'static str, PathBuf, io::Error),
    /// One of the caller's trees cannot be mounted idmapped, and the policy
    /// is strict.
    Idmap(PathBuf, io::Error),
}

impl fmt::Display for ViewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ViewError::Symlink(p) => write!(
                f,
                "{} now goes through a symlink, which it did not when the job was defined; \
                 refusing to follow it",
                p.display()
            ),
            ViewError::Io(what, p, e) => write!(f, "cannot {what} {}: {e}", p.display()),
            ViewError::Idmap(p, e) => write!(
                f,
                "{} cannot be mounted idmapped ({e}), so the job could not work in it as its \
                 owner; its filesystem does not support idmapped mounts",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ViewError {}

/// Opens `path` with `O_PATH`, refusing a symlink anywhere on the way;
/// `Ok(None)` when it does not exist.
pub fn open_grant(path: &Path) -> Result<Option<(OwnedFd, bool)>, ViewError> {
    let c = cstring(path);
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: a valid path and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Ok(None),
            Some(libc::ELOOP) => Err(ViewError::Symlink(path.to_path_buf())),
            _ => Err(ViewError::Io("open", path.to_path_buf(), e)),
        };
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // SAFETY: st is an out-parameter filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat on our own descriptor.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(ViewError::Io(
            "inspect",
            path.to_path_buf(),
            io::Error::last_os_error(),
        ));
    }
    Ok(Some((fd, st.st_mode & libc::S_IFMT == libc::S_IFDIR)))
}

/// A detached copy of the mount tree at `fd` with `attrs` set on all of it.
fn detached_tree(fd: BorrowedFd<'_>, attrs: u64, path: &Path) -> Result<OwnedFd, ViewError> {
    let tree = clone_tree(fd, path)?;
    set_attr(&tree, attrs, None)
        .map_err(|e| ViewError::Io("set the mount attributes of", path.to_path_buf(), e))?;
    Ok(tree)
}

/// What the view mounts of the host object `fd`: a detached copy made now,
/// or (`rootless`) one the child makes in its own namespace.
fn host_item(
    fd: BorrowedFd<'_>,
    attrs: u64,
    path: &Path,
    is_dir: bool,
    rootless: bool,
) -> Result<Item, ViewError> {
    if !rootless {
        let tree = detached_tree(fd, attrs, path)?;
        return Ok(Item::Tree { tree, is_dir });
    }
    let source = fd
        .try_clone_to_owned()
        .map_err(|e| ViewError::Io("duplicate the descriptor of", path.to_path_buf(), e))?;
    Ok(Item::Bind {
        source,
        path: cstring(path),
        attrs,
        is_dir,
        tree: std::cell::Cell::new(-1),
    })
}

/// Sets the idmap on a tree the parent made (root callers only: the
/// child's clones never carry one).
fn idmap_item(item: &Item, userns: BorrowedFd<'_>) -> io::Result<()> {
    match item {
        Item::Tree { tree, .. } => set_attr(tree, MOUNT_ATTR_IDMAP, Some(userns)),
        _ => Ok(()),
    }
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy.
fn clone_tree(fd: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, ViewError> {
    // SAFETY: an empty path with AT_EMPTY_PATH names `fd` itself.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            c"".as_ptr(),
            OPEN_TREE_CLONE
                | OPEN_TREE_CLOEXEC
                | libc::AT_EMPTY_PATH as u32
                | libc::AT_RECURSIVE as u32,
        )
    };
    if tree < 0 {
        return Err(ViewError::Io(
            "clone the mount of",
            path.to_path_buf(),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as RawFd) })
}

/// `mount_setattr(AT_RECURSIVE)` on a detached tree: `attrs`, or the idmap
/// of `userns`.
fn set_attr(tree: &OwnedFd, attrs: u64, userns: Option<BorrowedFd<'_>>) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.map(|u| u.as_raw_fd() as u64).unwrap_or(0),
    };
    // SAFETY: a valid mount_attr of the size passed, on our detached tree.
    if unsafe { set_attr_raw(tree.as_raw_fd(), &attr) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mount_setattr(AT_RECURSIVE)` on the detached tree `tree`, as a raw
/// syscall (the child uses it too).
///
/// # Safety
/// `tree` is a mount descriptor the caller owns.
unsafe fn set_attr_raw(tree: RawFd, attr: &MountAttr) -> libc::c_long {
    libc::syscall(
        libc::SYS_mount_setattr,
        tree,
        c"".as_ptr(),
        (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as u32,
        attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    )
}

/// Whether `path`'s mount tree can be shown idmapped through `userns`, as a
/// job's view would show it (for `doctor`).
pub fn can_idmap(path: &Path, userns: BorrowedFd<'_>) -> Result<(), String> {
    let (fd, _) = open_grant(path)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} does not exist", path.display()))?;
    let tree = clone_tree(fd.as_fd(), path).map_err(|e| e.to_string())?;
    set_attr(&tree, MOUNT_ATTR_IDMAP, Some(userns)).map_err(|e| e.to_string())
}

impl RootPlan {
    /// The view of `spec`: the grants cloned, the rest planned. With
    /// `idmap`, the caller's own trees (`spec.own_trees`) are mounted
    /// through it.
    /// `job` is who the job is on the host (the owner of its own directories).
    /// `rootless`: the caller has no root, so the child clones the grants.
    pub fn prepare(
        spec: &SandboxSpec,
        idmap: Option<BorrowedFd<'_>>,
        job: HostIdentity,
        rootless: bool,
    ) -> Result<RootPlan, ViewError> {
        // What each granted path may do, inherited down the tree.
        let mut flags: BTreeMap<PathBuf, (bool, bool)> = BTreeMap::new();
        for (list, write, exec) in [
            (&spec.read, false, false),
            (&spec.write, true, false),
            (&spec.exec, false, true),
        ] {
            for path in list {
                let entry = flags.entry(path.clone()).or_default();
                entry.0 |= write;
                entry.1 |= exec;
            }
        }
        // Looked up by ancestor, not by scanning the grants: a policy has
        // dozens, and every grant asks this of itself and its parent.
        let effective = |path: &Path| {
            path.ancestors()
                .filter_map(|a| flags.get(a))
                .fold((false, false), |(w, x), (pw, px)| (w || *pw, x || *px))
        };
        let idmapped =
            |path: &Path| idmap.is_some() && spec.own_trees.iter().any(|t| path.starts_with(t));
        let mut not_idmapped = Vec::new();

        let mut grants = Vec::new();
        let mut missing = Vec::new();
        let mut places = Vec::new();
        // Grants that got a mount of their own (a mount point cannot be renamed).
        let mut mounted: Vec<PathBuf> = Vec::new();
        // What the view mounts over inside the grants (the store, deny,
        // read_only): its ancestors in a writable grant get pinned below.
        let mut covered: Vec<PathBuf> = Vec::new();
        let tmpfs_places: Vec<&PathBuf> = spec.tmpfs.iter().chain([&spec.tmpdir]).collect();
        for (path, _) in flags.iter() {
            let Some((fd, is_dir)) = open_grant(path)? else {
                missing.push(path.clone());
                continue;
            };
            // What the view makes of its own: a fresh /proc, the standard
            // devices, a private devpts (with its ptmx), the tmpfs.
            let special = (spec.pid_ns && path.starts_with("/proc"))
                || DEVICES.iter().any(|d| path == &Path::new("/dev").join(d))
                || path.starts_with("/dev/pts")
                || path == Path::new("/dev/ptmx")
                || tmpfs_places.contains(&path)
                || path == &spec.files;
            // A grant whose nearest granted ancestor already shows it as it
            // must be needs no mount of its own.
            let own = (effective(path), idmapped(path));
            let shown = path
                .ancestors()
                .skip(1)
                .find(|a| flags.contains_key(*a))
                .map(|parent| (effective(parent), idmapped(parent)) == own);
            if !special && shown != Some(true) {
                let ((write, exec), own_tree) = own;
                let mut attrs = MOUNT_ATTR_NOSUID;
                // A device the policy grants must stay one.
                if !path.starts_with("/dev") {
                    attrs |= MOUNT_ATTR_NODEV;
                }
                if !write {
                    attrs |= MOUNT_ATTR_RDONLY;
                }
                if !exec {
                    attrs |= MOUNT_ATTR_NOEXEC;
                }
                let item = host_item(fd.as_fd(), attrs, path, is_dir, rootless)?;
                if let (true, Some(userns)) = (own_tree, idmap) {
                    if let Err(e) = idmap_item(&item, userns) {
                        if spec.strict() {
                            return Err(ViewError::Idmap(path.clone(), e));
                        }
                        not_idmapped.push((path.clone(), e));
                    }
                }
                places.push(place(path, item));
                mounted.push(path.clone());
            }
            grants.push(Grant {
                path: path.clone(),
                fd,
                is_dir,
            });
        }

        // /dev: a tmpfs holding the standard devices of the host.
        places.push(place(Path::new("/dev"), Item::Dev));
        for name in DEVICES {
            let host = Path::new("/dev").join(name);
            if let Some((fd, _)) = open_grant(&host)? {
                let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;
                let item = host_item(fd.as_fd(), attrs, &host, false, rootless)?;
                places.push(place(&host, item));
            }
        }
        if spec.pid_ns {
            places.push(place(Path::new("/proc"), Item::Proc));
        }
        let size = spec.disk.map(|b| format!("size={b},")).unwrap_or_default();
        for path in tmpfs_places {
            let mode = if path == &spec.tmpdir { "0700" } else { "1777" };
            let data = format!("{size}mode={mode}");
            places.push(place(
                path,
                Item::Tmpfs {
                    data: CString::new(data).unwrap_or_default(),
                    noexec: !effective(path).1,
                },
            ));
        }
        // $JOB_DIR: a tmpfs made here, whose content the supervisor keeps.
        let mut job_dir = None;
        let mut job_dir_channel = None;
        if flags.contains_key(&spec.files) && rootless {
            let noexec = !effective(&spec.files).1;
            let (ours, theirs) = super::socket_pair()
                .map_err(|e| ViewError::Io("make the channel of", spec.files.clone(), e))?;
            let data = format!("{size}mode=0700");
            places.push(place(
                &spec.files,
                Item::OwnTmpfs {
                    data: CString::new(data).unwrap_or_default(),
                    noexec,
                    channel: theirs,
                },
            ));
            job_dir_channel = Some(ours);
        } else if flags.contains_key(&spec.files) {
            let noexec = !effective(&spec.files).1;
            let (fd, root) = job_dir_tmpfs(spec.disk, job, noexec)
                .map_err(|e| ViewError::Io("make the tmpfs of", spec.files.clone(), e))?;
            places.push(place(&spec.files, Item::Mount { fd, noexec }));
            job_dir = Some(root);
        }
        // The store, wherever a grant shows it (its tmp/ and files/ below are
        // mounted on their own, deeper, so after it).
        let mut read_only_at_end = vec![CString::from(c".")];
        if flags.keys().any(|p| spec.store.starts_with(p)) && !spec.store.as_os_str().is_empty() {
            let hide = place(&spec.store, Item::Hide);
            read_only_at_end.push(hide.rel.clone());
            places.push(hide);
            covered.push(spec.store.clone());
        }
        // Inside the grants: what the policy hides, and what it keeps
        // read-only in a tree the job may write.
        let granted = |p: &Path| p.ancestors().any(|a| flags.contains_key(a));
        for path in spec.deny.iter().filter(|p| granted(p)) {
            match open_grant(path)? {
                None => {}
                Some((_, true)) => {
                    let hide = place(path, Item::Hide);
                    read_only_at_end.push(hide.rel.clone());
                    places.push(hide);
                    covered.push(path.clone());
                }
                Some((_, false)) => {
                    // A file: the host's /dev/null, which `nodev` makes unopenable.
                    let null = Path::new("/dev/null");
                    let (fd, _) = open_grant(null)?.ok_or_else(|| {
                        ViewError::Io("open", null.to_path_buf(), io::ErrorKind::NotFound.into())
                    })?;
                    let attrs = MOUNT_ATTR_RDONLY
                        | MOUNT_ATTR_NOSUID
                        | MOUNT_ATTR_NODEV
                        | MOUNT_ATTR_NOEXEC;
                    let item = host_item(fd.as_fd(), attrs, null, false, rootless)?;
                    places.push(place(path, item));
                    covered.push(path.clone());
                }
            }
        }
        let mut unprotected = Vec::new();
        for path in spec.read_only.iter().filter(|p| effective(p).0) {
            let Some((fd, is_dir)) = open_grant(path)? else {
                if path.parent().is_some_and(Path::is_dir) {
                    unprotected.push(path.clone());
                }
                continue;
            };
            let mut attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            if !effective(path).1 {
                attrs |= MOUNT_ATTR_NOEXEC;
            }
            let item = host_item(fd.as_fd(), attrs, path, is_dir, rootless)?;
            if let (true, Some(userns)) = (idmapped(path), idmap) {
                // As the tree around it: a failure there was reported already.
                let _ = idmap_item(&item, userns);
            }
            places.push(place(path, item));
            covered.push(path.clone());
        }

        // A mount point cannot be renamed, but its parent directories can:
        // a job that renames `a` in its writable tree moves `a/b/store` and
        // its hiding mount along on the host, and the next job, hiding the
        // store where it was, would see it where it is now. So every
        // directory between a writable grant and what the view covers in it
        // is pinned: mounted over itself, as the grant shows it.
        for path in covered.iter().filter(|p| effective(p).0) {
            let Some(grant) = mounted
                .iter()
                .filter(|g| path.starts_with(g) && *g != path)
                .max_by_key(|g| g.components().count())
                .cloned()
            else {
                continue;
            };
            let between: Vec<PathBuf> = path
                .ancestors()
                .skip(1)
                .take_while(|a| *a != grant.as_path())
                .map(Path::to_path_buf)
                .collect();
            for dir in between {
                if mounted.contains(&dir) {
                    continue;
                }
                let Some((fd, _)) = open_grant(&dir)? else {
                    continue;
                };
                let (write, exec) = effective(&dir);
                let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
                if !write {
                    attrs |= MOUNT_ATTR_RDONLY;
                }
                if !exec {
                    attrs |= MOUNT_ATTR_NOEXEC;
                }
                let item = host_item(fd.as_fd(), attrs, &dir, true, rootless)?;
                if let (true, Some(userns)) = (idmapped(&dir), idmap) {
                    // As the tree around it: a failure there was reported already.
                    let _ = idmap_item(&item, userns);
                }
                places.push(place(&dir, item));
                mounted.push(dir);
            }
        }

        // Parents first: a place is made inside what its ancestors show.
        places.sort_by_key(|p| p.ancestors.len());
        let links = spec
            .links
            .iter()
            .map(|(link, target)| (relative(link), cstring(target)))
            .collect();
        Ok(RootPlan {
            places,
            links,
            read_only_at_end,
            grants,
            missing,
            not_idmapped,
            unprotected,
            job_dir,
            job_dir_channel,
        })
    }

    /// The places of the view that are not host files, with the access the
    /// job has to them, as absolute paths of the view: Landlock's rules for
    /// them can only be made in the child, once they are mounted.
    pub fn own_places(&self) -> Vec<(CString, super::landlock::PathAccess)> {
        use super::landlock::PathAccess;
        let absolute = |rel: &CString| {
            let mut bytes = b"/".to_vec();
            bytes.extend_from_slice(rel.as_bytes());
            CString::new(bytes).unwrap_or_default()
        };
        // Listing its directories shows only grants and mount points.
        let mut out = vec![(CString::from(c"/"), PathAccess::List)];
        for p in &self.places {
            match p.item {
                Item::Tmpfs { noexec, .. }
                | Item::Mount { noexec, .. }
                | Item::OwnTmpfs { noexec, .. } => {
                    out.push((absolute(&p.rel), PathAccess::Write));
                    // Where the policy grants exec, the mount allows it, and
                    // so must Landlock.
                    if !noexec {
                        out.push((absolute(&p.rel), PathAccess::Exec));
                    }
                }
                Item::Proc => out.push((absolute(&p.rel), PathAccess::Read)),
                Item::Dev => {
                    out.push((c"/dev/shm".into(), PathAccess::Write));
                    out.push((c"/dev/pts".into(), PathAccess::Write));
                    out.push((c"/dev/full".into(), PathAccess::Write));
                    out.push((c"/dev/tty".into(), PathAccess::Write));
                }
                _ => {}
            }
        }
        out
    }
}

fn place(path: &Path, item: Item) -> Place {
    let rel = relative(path);
    let mut ancestors = Vec::new();
    let mut so_far = PathBuf::new();
    let parts: Vec<_> = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        so_far.push(part);
        ancestors.push(cstring(&so_far));
    }
    Place {
        rel,
        ancestors,
        item,
    }
}

/// A detached tmpfs of `size` (its mount, and its root directory opened),
/// owned by `owner`: the job's `$JOB_DIR`. Made by the parent, so that the
/// supervisor still holds it when the job's mount namespace is gone.
fn job_dir_tmpfs(
    size: Option<u64>,
    owner: HostIdentity,
    noexec: bool,
) -> io::Result<(OwnedFd, OwnedFd)> {
    const FSOPEN_CLOEXEC: u32 = 1;
    const FSCONFIG_SET_STRING: u32 = 1;
    const FSCONFIG_CMD_CREATE: u32 = 6;
    const FSMOUNT_CLOEXEC: u32 = 1;
    let owned = |rc: libc::c_long| -> io::Result<OwnedFd> {
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
    };
    // SAFETY (block): the new mount API on C strings we own.
    unsafe {
        let fs = owned(libc::syscall(
            libc::SYS_fsopen,
            c"tmpfs".as_ptr(),
            FSOPEN_CLOEXEC,
        ))?;
        let mut options = vec![
            ("mode".to_string(), "0700".to_string()),
            ("uid".to_string(), owner.uid.to_string()),
            ("gid".to_string(), owner.gid.to_string()),
        ];
        if let Some(bytes) = size {
            options.push(("size".to_string(), bytes.to_string()));
        }
        for (key, value) in options {
            let key = CString::new(key).unwrap_or_default();
            let value = CString::new(value).unwrap_or_default();
            if libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if noexec {
            attrs |= MOUNT_ATTR_NOEXEC;
        }
        let mount = owned(libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attrs as libc::c_uint,
        ))?;
        let root = owned(libc::openat(
            mount.as_raw_fd(),
            c".".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        ) as libc::c_long)?;
        Ok((mount, root))
    }
}

/// `/usr/bin` as `usr/bin` (`.` for `/`).
fn relative(path: &Path) -> CString {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        return CString::from(c".");
    }
    cstring(&rel)
}

fn cstring(p: &Path) -> CString {
    // Paths from the record and the kernel cannot hold NUL bytes.
    CString::new(p.as_os_str().as_bytes()).unwrap_or_else(|_| CString::from(c"/nonexistent"))
}

/// Child side: builds the new root at `scratch` (a directory of the old
/// root, covered by it) and enters it. Raw syscalls on what the parent
/// prepared. Returns the errno of the first failure.
pub fn build(plan: &RootPlan, scratch: &std::ffi::CStr) -> Result<(), Errno> {
    // SAFETY (whole function): plain syscalls on C strings and descriptors
    // the parent prepared; nothing is allocated.
    unsafe {
        // A caller without root: the grants are cloned here, in our own
        // namespace, before the new root covers the old `/tmp`.
        for place in &plan.places {
            if let Item::Bind {
                source,
                path,
                attrs,
                tree,
                ..
            } = &place.item
            {
                tree.set(clone_checked(source.as_raw_fd(), path, *attrs)?);
            }
        }
        let data = root_tmpfs_data();
        check(libc::mount(
            c"tmpfs".as_ptr(),
            scratch.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        ))?;
        check(libc::chdir(scratch.as_ptr()))?;
        for place in &plan.places {
            for dir in &place.ancestors {
                make_dir(dir, 0o755)?;
            }
            match &place.item {
                Item::Tree { tree, is_dir } => {
                    if *is_dir {
                        make_dir(&place.rel, 0o755)?;
                    } else {
                        make_file(&place.rel)?;
                    }
                    check_long(libc::syscall(
                        libc::SYS_move_mount,
                        tree.as_raw_fd(),
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        place.rel.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    ))?;
                }
                Item::Bind { tree, is_dir, .. } => {
                    if *is_dir {
                        make_dir(&place.rel, 0o755)?;
                    } else {
                        make_file(&place.rel)?;
                    }
                    let rc = libc::syscall(
                        libc::SYS_move_mount,
                        tree.get(),
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        place.rel.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    );
                    libc::close(tree.get());
                    check_long(rc)?;
                }
                Item::OwnTmpfs {
                    data,
                    noexec,
                    channel,
                } => {
                    mount_tmpfs(&place.rel, data, *noexec)?;
                    // The supervisor keeps its root, to copy what the job
                    // left there once the job's namespace is gone.
                    let root = libc::open(
                        place.rel.as_ptr(),
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    );
                    check(root)?;
                    let sent = super::namespaces::send_descriptor(channel.as_raw_fd(), root);
                    libc::close(root);
                    sent?;
                }
                Item::Mount { fd, .. } => {
                    make_dir(&place.rel, 0o755)?;
                    check_long(libc::syscall(
                        libc::SYS_move_mount,
                        fd.as_raw_fd(),
                        c"".as_ptr(),
                        libc::AT_FDCWD,
                        place.rel.as_ptr(),
                        MOVE_MOUNT_F_EMPTY_PATH,
                    ))?;
                }
                Item::Tmpfs { data, noexec } => {
                    mount_tmpfs(&place.rel, data, *noexec)?;
                }
                Item::Proc => {
                    make_dir(&place.rel, 0o555)?;
                    check(libc::mount(
                        c"proc".as_ptr(),
                        place.rel.as_ptr(),
                        c"proc".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ))?;
                }
                Item::Dev => build_dev(&place.rel)?,
                Item::Hide => {
                    make_dir(&place.rel, 0o755)?;
                    check(libc::mount(
                        c"tmpfs".as_ptr(),
                        place.rel.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"size=65536,mode=0755".as_ptr().cast(),
                    ))?;
                }
            }
        }
        for (link, target) in &plan.links {
            // A link whose name a mount already took stays as the mount.
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 && errno() != libc::EEXIST {
                // Inside a read-only grant the name exists already.
                if errno() != libc::EROFS && errno() != libc::ENOENT {
                    return Err(Errno::last());
                }
            }
        }
        for rel in &plan.read_only_at_end {
            let attr = MountAttr {
                attr_set: MOUNT_ATTR_RDONLY,
                attr_clr: 0,
                propagation: 0,
                userns_fd: 0,
            };
            check_long(libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                rel.as_ptr(),
                0u32,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            ))?;
        }
        // The new root over the old, then the old detached from under it.
        check_long(libc::syscall(
            libc::SYS_pivot_root,
            c".".as_ptr(),
            c".".as_ptr(),
        ))?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))?;
    }
    Ok(())
}

/// A private tmpfs at `rel` (`data`: its options), `nosuid`, `nodev`, and
/// `noexec` unless exec is granted there.
unsafe fn mount_tmpfs(rel: &std::ffi::CStr, data: &CString, noexec: bool) -> Result<(), Errno> {
    make_dir(rel, 0o755)?;
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
    if noexec {
        flags |= libc::MS_NOEXEC;
    }
    check(libc::mount(
        c"tmpfs".as_ptr(),
        rel.as_ptr(),
        c"tmpfs".as_ptr(),
        flags,
        data.as_ptr().cast(),
    ))
}

/// Child side, a caller without root: clones the host object at `path`,
/// looked up again without symlinks, into a detached tree with `attrs`,
/// unless the lookup reaches another inode than `source`, the one the
/// parent opened and checked (a path swapped since: `ESTALE`).
unsafe fn clone_checked(source: RawFd, path: &std::ffi::CStr, attrs: u64) -> Result<RawFd, Errno> {
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    let fd = libc::syscall(
        libc::SYS_openat2,
        libc::AT_FDCWD,
        path.as_ptr(),
        &how as *const OpenHow,
        std::mem::size_of::<OpenHow>(),
    );
    check_long(fd)?;
    let fd = fd as RawFd;
    let mut ours: libc::stat = std::mem::zeroed();
    let mut theirs: libc::stat = std::mem::zeroed();
    if libc::fstat(fd, &mut ours) != 0 || libc::fstat(source, &mut theirs) != 0 {
        let e = Errno::last();
        libc::close(fd);
        return Err(e);
    }
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino) {
        libc::close(fd);
        return Err(Errno::ESTALE);
    }
    let tree = libc::syscall(
        libc::SYS_open_tree,
        fd,
        c"".as_ptr(),
        OPEN_TREE_CLONE
            | OPEN_TREE_CLOEXEC
            | libc::AT_EMPTY_PATH as u32
            | libc::AT_RECURSIVE as u32,
    );
    libc::close(fd);
    check_long(tree)?;
    let tree = tree as RawFd;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if set_attr_raw(tree, &attr) < 0 {
        let e = Errno::last();
        libc::close(tree);
        return Err(e);
    }
    Ok(tree)
}

/// `size=…,mode=0755` for the root's tmpfs, on the stack.
fn root_tmpfs_data() -> [u8; 48] {
    let mut out = [0u8; 48];
    let prefix = b"mode=0755,size=";
    out[..prefix.len()].copy_from_slice(prefix);
    let n = super::namespaces::write_decimal(ROOT_TMPFS_BYTES, &mut out[prefix.len()..]);
    out[prefix.len() + n] = 0;
    out
}

/// The minimal `/dev` at `rel`: a tmpfs with a private devpts, `shm`, and
/// the usual links (the devices are mounted over files made here).
unsafe fn build_dev(rel: &std::ffi::CStr) -> Result<(), Errno> {
    make_dir(rel, 0o755)?;
    check(libc::mount(
        c"tmpfs".as_ptr(),
        rel.as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        c"size=65536,mode=0755".as_ptr().cast(),
    ))?;
    check(libc::mkdir(c"dev/pts".as_ptr(), 0o755))?;
    check(libc::mount(
        c"devpts".as_ptr(),
        c"dev/pts".as_ptr(),
        c"devpts".as_ptr(),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620".as_ptr().cast(),
    ))?;
    check(libc::mkdir(c"dev/shm".as_ptr(), 0o1777))?;
    check(libc::mount(
        c"tmpfs".as_ptr(),
        c"dev/shm".as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        c"size=67108864,mode=1777".as_ptr().cast(),
    ))?;
    for (target, link) in [
        (c"pts/ptmx", c"dev/ptmx"),
        (c"/proc/self/fd", c"dev/fd"),
        (c"/proc/self/fd/0", c"dev/stdin"),
        (c"/proc/self/fd/1", c"dev/stdout"),
        (c"/proc/self/fd/2", c"dev/stderr"),
    ] {
        check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
    }
    Ok(())
}

/// mkdir that is content to find the directory there already.
unsafe fn make_dir(rel: &std::ffi::CStr, mode: libc::mode_t) -> Result<(), Errno> {
    if libc::mkdir(rel.as_ptr(), mode) == 0 || errno() == libc::EEXIST {
        return Ok(());
    }
    Err(Errno::last())
}

/// An empty file to mount a file over, unless one is there.
unsafe fn make_file(rel: &std::ffi::CStr) -> Result<(), Errno> {
    let fd = libc::open(
        rel.as_ptr(),
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
        0o644,
    );
    if fd >= 0 {
        libc::close(fd);
        return Ok(());
    }
    if errno() == libc::EEXIST {
        return Ok(());
    }
    Err(Errno::last())
}

fn check(rc: libc::c_int) -> Result<(), Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn check_long(rc: libc::c_long) -> Result<(), Errno> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn errno() -> i32 {
    Errno::last_raw()
}

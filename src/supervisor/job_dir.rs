//! `$JOB_DIR` back into the store when the job ends.
//!
//! Inside the job, `$JOB_DIR` is a tmpfs of `limits.disk` that the sandbox
//! made before the clone (`sandbox::view`), so the job cannot fill the
//! host's disk through it. The supervisor still holds the tmpfs's root
//! once the job and its mount namespace are gone, and copies what the job
//! left there into `<store>/<id>/files`, where it stays with the record.
//!
//! The content is the job's: nothing in it is followed. Every name is
//! opened relative to its directory with `O_NOFOLLOW`; symlinks are copied
//! as symlinks, devices, fifos and sockets are left out, set-id bits are
//! dropped, and what is made belongs to the supervisor (the caller).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Deeper than any real tree; a job's deliberately deep one stops here.
const MAX_DEPTH: usize = 64;

/// What a directory or a link costs the store's disk, counted against the budget.
const DIR_COST: u64 = 4096;

/// More entries than any real job leaves; a job making millions of empty
/// files (which cost the store an inode each) stops here.
const MAX_ENTRIES: u64 = 100_000;

/// What was copied, and what was left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
    /// Entries not copied: special files, or below [`MAX_DEPTH`].
    pub skipped: u64,
    /// The copy stopped at its byte or entry budget: the store has less
    /// than the job left.
    pub incomplete: bool,
}

/// Copies the tree under `from` (the tmpfs's root) into the directory `to`,
/// writing at most `max_bytes`: what the tmpfs held, as the job could
/// fill it. Sparse files and hard links inside would otherwise multiply
/// on the store's disk (a 100 TB hole costs the tmpfs nothing).
pub fn copy_out(from: &OwnedFd, to: &Path, max_bytes: u64) -> io::Result<Copied> {
    let dest = open_dir_at(libc::AT_FDCWD, &cstring(to.as_os_str().as_bytes())?)?;
    let mut copied = Copied::default();
    let mut budget = Budget {
        bytes: max_bytes,
        entries: MAX_ENTRIES,
    };
    copy_dir(
        from.as_raw_fd(),
        dest.as_raw_fd(),
        0,
        &mut copied,
        &mut budget,
    )?;
    Ok(copied)
}

/// What the copy may still write.
struct Budget {
    bytes: u64,
    entries: u64,
}

fn copy_dir(
    from: RawFd,
    to: RawFd,
    depth: usize,
    copied: &mut Copied,
    budget: &mut Budget,
) -> io::Result<()> {
    // A fresh descriptor for the listing, which consumes it.
    let listing = open_dir_at(from, c".")?;
    let mut dir = nix::dir::Dir::from_fd(listing).map_err(io::Error::from)?;
    let names: Vec<CString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        if budget.entries == 0 || copied.incomplete {
            copied.incomplete = true;
            return Ok(());
        }
        budget.entries -= 1;
        let st = stat_at(from, &name)?;
        // A directory or a link costs the store a block however empty it is.
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFDIR || kind == libc::S_IFLNK {
            if budget.bytes < DIR_COST {
                copied.incomplete = true;
                return Ok(());
            }
            budget.bytes -= DIR_COST;
        }
        let mode = st.st_mode & 0o777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR if depth < MAX_DEPTH => {
                // SAFETY: mkdirat with a NUL-terminated name, relative to our descriptor.
                if unsafe { libc::mkdirat(to, name.as_ptr(), mode | 0o700) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.raw_os_error() != Some(libc::EEXIST) {
                        return Err(e);
                    }
                }
                let sub_from = open_dir_at(from, &name)?;
                let sub_to = open_dir_at(to, &name)?;
                copy_dir(
                    sub_from.as_raw_fd(),
                    sub_to.as_raw_fd(),
                    depth + 1,
                    copied,
                    budget,
                )?;
            }
            libc::S_IFREG => {
                use std::io::Read;
                // A leftover of the job may have swapped in a FIFO since
                // the stat: open without waiting, and copy only what is
                // still a regular file.
                let src = match open_at(from, &name, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
                    Ok(fd) => File::from(fd),
                    // Swapped for a symlink, a socket, or gone: not a file now.
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::ELOOP) | Some(libc::ENXIO) | Some(libc::ENOENT)
                        ) =>
                    {
                        copied.skipped += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if !src.metadata()?.is_file() {
                    copied.skipped += 1;
                    continue;
                }
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
                let mut dst = File::from(open_at(to, &name, flags, mode)?);
                let n = io::copy(&mut src.take(budget.bytes), &mut dst)?;
                budget.bytes -= n;
                copied.bytes += n;
                copied.files += 1;
                if n < st.st_size as u64 {
                    copied.incomplete = true;
                }
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(
                    // SAFETY: `from` outlives this borrow.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(from) },
                    name.as_c_str(),
                )
                .map_err(io::Error::from)?;
                let target = cstring(target.as_bytes())?;
                // SAFETY: symlinkat with NUL-terminated strings, relative to our descriptor.
                if unsafe { libc::symlinkat(target.as_ptr(), to, name.as_ptr()) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                copied.files += 1;
            }
            _ => copied.skipped += 1,
        }
    }
    Ok(())
}

fn open_at(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: openat with a NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir_at(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

fn stat_at(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: st is an out-parameter the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstatat with a NUL-terminated name, not following a last symlink.
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_tree_is_copied_without_following_or_keeping_what_it_must_not() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host\n").unwrap();
        std::fs::create_dir_all(from.path().join("a/b")).unwrap();
        std::fs::write(from.path().join("a/b/out.txt"), "result\n").unwrap();
        let suid = from.path().join("suid");
        std::fs::write(&suid, "x").unwrap();
        std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
        symlink(outside.path().join("secret"), from.path().join("link")).unwrap();
        let fifo = cstring(from.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

        let root = File::open(from.path()).unwrap();
        let copied = copy_out(&OwnedFd::from(root), to.path(), 1 << 20).unwrap();
        assert!(!copied.incomplete);
        assert_eq!(copied.files, 3);
        assert_eq!(copied.skipped, 1);
        let t = to.path();
        assert_eq!(
            std::fs::read_to_string(t.join("a/b/out.txt")).unwrap(),
            "result\n"
        );
        let mode = std::fs::metadata(t.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        // The link is a link, not a copy of what it points at.
        let link = std::fs::symlink_metadata(t.join("link")).unwrap();
        assert!(link.file_type().is_symlink());
        assert!(!t.join("fifo").exists());
    }

    /// A leftover of the job swapping a FIFO in for a file between the
    /// copy's stat and its open must not hang the supervisor for good.
    #[test]
    fn a_fifo_swapped_in_for_a_file_never_blocks_the_copy() {
        let from = tempfile::tempdir().unwrap();
        let file = cstring(from.path().join("x").as_os_str().as_bytes()).unwrap();
        let fifo = cstring(from.path().join("y").as_os_str().as_bytes()).unwrap();
        std::fs::write(from.path().join("x"), "data").unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let stop = stop.clone();
            let (file, fifo) = (file.clone(), fifo.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: renameat2(RENAME_EXCHANGE) of two paths we made.
                    unsafe {
                        libc::syscall(
                            libc::SYS_renameat2,
                            libc::AT_FDCWD,
                            file.as_ptr(),
                            libc::AT_FDCWD,
                            fifo.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                }
            })
        };
        let (done, finished) = std::sync::mpsc::channel();
        let source = from.path().to_path_buf();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                let to = tempfile::tempdir().unwrap();
                let root = File::open(&source).unwrap();
                let _ = copy_out(&OwnedFd::from(root), to.path(), 1 << 20);
            }
            let _ = done.send(());
        });
        let result = finished.recv_timeout(std::time::Duration::from_secs(60));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
        assert!(result.is_ok(), "a copy blocked on a FIFO");
    }

    #[test]
    fn empty_directories_count_against_the_budget() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        for i in 0..100 {
            std::fs::create_dir(from.path().join(format!("d{i}"))).unwrap();
        }
        let root = File::open(from.path()).unwrap();
        let copied = copy_out(&OwnedFd::from(root), to.path(), 10 * DIR_COST).unwrap();
        assert!(copied.incomplete);
        assert_eq!(std::fs::read_dir(to.path()).unwrap().count(), 10);
    }

    #[test]
    fn symlinks_count_against_the_budget() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        for i in 0..100 {
            symlink("target", from.path().join(format!("l{i}"))).unwrap();
        }
        let root = File::open(from.path()).unwrap();
        let copied = copy_out(&OwnedFd::from(root), to.path(), 10 * DIR_COST).unwrap();
        assert!(copied.incomplete);
        assert_eq!(std::fs::read_dir(to.path()).unwrap().count(), 10);
    }

    #[test]
    fn holes_and_hard_links_cannot_make_the_copy_bigger_than_its_budget() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        // 1 GiB of hole, and 20 names of one 64 KiB file.
        let sparse = File::create(from.path().join("sparse")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        std::fs::write(from.path().join("big"), vec![7u8; 64 << 10]).unwrap();
        for i in 0..20 {
            std::fs::hard_link(from.path().join("big"), from.path().join(format!("l{i}"))).unwrap();
        }
        let root = File::open(from.path()).unwrap();
        let budget = 256 << 10;
        let copied = copy_out(&OwnedFd::from(root), to.path(), budget).unwrap();
        assert!(copied.incomplete);
        assert!(copied.bytes <= budget, "{copied:?}");
        let on_disk: u64 = std::fs::read_dir(to.path())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= budget, "{on_disk}");
    }
}

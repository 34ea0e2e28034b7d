//! Who a job is on the host (isolate's design: jobs run as an unprivileged
//! host user, so file permissions guard the host whatever the other layers
//! do).
//!
//! A root caller's job runs as an unprivileged host uid/gid ([`HostIdentity`],
//! from the host floor), never as root: `/etc/shadow`, root-only `/proc`
//! files and every host file the job does not own are out of its reach. The
//! caller's own trees that the policy grants (working directory, write
//! paths, what it may read of `$HOME`) are mounted *idmapped* ([`IdmapUserns`]):
//! on those mounts the caller's files show as the job's, and what the job
//! creates there belongs to the caller on disk. A non-root caller's job is
//! the caller.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use serde::Serialize;

/// The host ids a root caller's jobs run as, unless the floor names others:
/// far above login, system, systemd's dynamic and nspawn's container ranges.
pub const DEFAULT_JOB_ID: u32 = 2_000_000_000;

/// A job's uid and gid as the host sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HostIdentity {
    pub uid: u32,
    pub gid: u32,
}

impl HostIdentity {
    /// The caller's own ids (the supervisor runs as the caller).
    pub fn caller() -> HostIdentity {
        // SAFETY: getuid/getgid have no preconditions.
        unsafe {
            HostIdentity {
                uid: libc::getuid(),
                gid: libc::getgid(),
            }
        }
    }
}

/// Whether the caller is root of the host: uid 0 in the initial user
/// namespace. uid 0 of a container's own user namespace (rootless podman,
/// a CI runner in an unprivileged container) has no more power over the
/// host than any user, and takes the same path as one.
pub fn caller_is_host_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(host_root_now)
}

fn host_root_now() -> bool {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    // The initial namespace maps every id onto itself.
    let initial = std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]);
    uid == 0 && initial
}

/// A user namespace that maps the caller's ids to the job's host ids: the
/// idmap of the caller's trees (`MOUNT_ATTR_IDMAP`).
pub struct IdmapUserns(pub OwnedFd);

impl IdmapUserns {
    /// A fresh user namespace with `caller` mapped to `job`, held by an
    /// `O_RDONLY` descriptor of its `/proc/PID/ns/user` (the process that
    /// made it is gone by the time this returns).
    pub fn new(caller: HostIdentity, job: HostIdentity) -> io::Result<IdmapUserns> {
        let (ready_read, ready_write) = super::pipe()?;
        let (hold_read, hold_write) = super::pipe()?;
        // SAFETY: the supervisor is single-threaded; the child only makes raw
        // syscalls and exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: raw syscalls in the forked child, then _exit.
            unsafe {
                // Our copy of the other end would keep `hold` from EOF.
                libc::close(hold_write.as_raw_fd());
                let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
                let byte = [u8::from(ok)];
                libc::write(ready_write.as_raw_fd(), byte.as_ptr().cast(), 1);
                // Wait until the parent has the namespace (EOF on hold).
                let mut b = [0u8; 1];
                libc::read(hold_read.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop(ready_write);
        drop(hold_read);
        let result = (|| {
            let mut byte = [0u8; 1];
            // SAFETY: reading one byte into a stack buffer from our pipe.
            let n = unsafe { libc::read(ready_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
            if n != 1 || byte[0] != 1 {
                return Err(io::Error::other(
                    "cannot create a user namespace for the idmapped mounts",
                ));
            }
            let dir = format!("/proc/{pid}");
            std::fs::write(
                format!("{dir}/uid_map"),
                format!("{} {} 1\n", caller.uid, job.uid),
            )?;
            std::fs::write(
                format!("{dir}/gid_map"),
                format!("{} {} 1\n", caller.gid, job.gid),
            )?;
            let ns = std::fs::File::open(format!("{dir}/ns/user"))?;
            Ok(IdmapUserns(OwnedFd::from(ns)))
        })();
        drop(hold_write);
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        result
    }
}

/// Parent side, before the clone: the job must not inherit root's
/// supplementary groups (a user namespace whose `setgroups` is denied keeps
/// them), and the supervisor needs none of them.
pub fn drop_supplementary_groups() -> io::Result<()> {
    // SAFETY: an empty group list.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Child side: become `uid`/`gid` (ids of the job's own user namespace, or
/// host ids without one), gid first while we may still change it.
///
/// # Safety
/// Raw syscalls only; for the cloned child.
pub unsafe fn become_ids(uid: u32, gid: u32) -> Result<(), i32> {
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EPERM)
    };
    if libc::setresgid(gid, gid, gid) != 0 {
        return Err(errno());
    }
    if libc::setresuid(uid, uid, uid) != 0 {
        return Err(errno());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// uid 0 of a user namespace of its own (a rootless container's root)
    /// is not the host's root; the test runner (root, in CI) is.
    #[test]
    fn only_uid_0_of_the_initial_namespace_is_the_hosts_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        assert!(host_root_now());
        crate::sandbox::test_fork::assert_child_ok(|| {
            // SAFETY: raw syscalls in the forked child.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                return Err("unshare(CLONE_NEWUSER)".into());
            }
            std::fs::write("/proc/self/uid_map", "0 0 1\n").map_err(|e| e.to_string())?;
            // SAFETY: getuid has no preconditions.
            if unsafe { libc::getuid() } != 0 {
                return Err("not uid 0 in the new namespace".into());
            }
            if host_root_now() {
                return Err("uid 0 of a namespace of its own counted as the host's root".into());
            }
            Ok(())
        });
    }
}

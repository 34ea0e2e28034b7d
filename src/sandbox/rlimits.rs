//! Per-process resource limits (`setrlimit`) applied in the child before `execve`.
//!
//! Limits that cgroups cannot express per process live here: core dumps (always off, so a
//! crashing job cannot drop a core file with its secrets), maximum file size, open files, CPU
//! seconds, address space, locked memory. Memory and pids totals belong to the cgroup.
//!
//! Each limit is set as soft = hard, so the job cannot raise it back. A limit is never raised
//! above the current hard limit: raising a hard limit needs `CAP_SYS_RESOURCE` in the initial
//! user namespace, which the child in its own user namespace does not have, and the host's hard
//! limit is a floor of its own. So the value applied is `min(requested, current hard)`.

use std::fmt;

use nix::errno::Errno;

/// The limits for one job, built before the clone. `None` leaves a limit as inherited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RlimitPlan {
    /// `RLIMIT_CORE` in bytes: 0 (no core dumps) unless a caller has a reason to change it.
    pub core: u64,
    /// `RLIMIT_FSIZE`: largest file the job may write, in bytes (policy `file_size`). Writing
    /// past it raises `SIGXFSZ`, or fails with `EFBIG` when that signal is ignored.
    pub file_size: Option<u64>,
    /// `RLIMIT_NOFILE`: one more than the highest file descriptor (policy `open_files`).
    pub open_files: Option<u64>,
    /// Without `open_files`: the soft `RLIMIT_NOFILE` the job starts with
    /// (the caller's, where the supervisor raised its own to relay
    /// connections); the hard limit stays as inherited.
    pub open_files_soft: Option<u64>,
    /// `RLIMIT_CPU`: CPU seconds per process (`SIGXCPU`, then `SIGKILL` at the hard limit; both
    /// are equal here, so `SIGKILL`).
    pub cpu_seconds: Option<u64>,
    /// `RLIMIT_AS`: virtual address space per process, in bytes.
    pub address_space: Option<u64>,
    /// `RLIMIT_MEMLOCK`: bytes of memory the job may lock.
    pub locked_memory: Option<u64>,
    /// `RLIMIT_NPROC`: the job's `pids` limit where it has no pids cgroup.
    /// In the job's own user namespace the kernel counts it per namespace:
    /// the tasks of the job, not every process of the caller.
    pub processes: Option<u64>,
}

impl Default for RlimitPlan {
    /// Core dumps off, everything else inherited.
    fn default() -> Self {
        RlimitPlan {
            core: 0,
            file_size: None,
            open_files: None,
            open_files_soft: None,
            cpu_seconds: None,
            address_space: None,
            locked_memory: None,
            processes: None,
        }
    }
}

/// A limit the kernel refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RlimitError {
    /// The plan field, e.g. `"file_size"`.
    pub resource: &'static str,
    /// The kernel's answer.
    pub errno: Errno,
}

impl fmt::Display for RlimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot set the {} resource limit: {} ({})",
            self.resource,
            self.errno,
            self.errno.desc()
        )
    }
}

impl std::error::Error for RlimitError {}

/// Applies `plan` to the calling process: for each limit that is set, soft = hard =
/// `min(value, current hard)`.
///
/// Child-side: `getrlimit`/`setrlimit` only (no allocation, no locks). Stops at the first
/// limit the kernel refuses and names it.
pub fn apply(plan: &RlimitPlan) -> Result<(), RlimitError> {
    let entries = [
        ("core", libc::RLIMIT_CORE, Some(plan.core)),
        ("file_size", libc::RLIMIT_FSIZE, plan.file_size),
        ("open_files", libc::RLIMIT_NOFILE, plan.open_files),
        ("cpu_seconds", libc::RLIMIT_CPU, plan.cpu_seconds),
        ("address_space", libc::RLIMIT_AS, plan.address_space),
        ("locked_memory", libc::RLIMIT_MEMLOCK, plan.locked_memory),
        ("processes", libc::RLIMIT_NPROC, plan.processes),
    ];
    for (resource, which, value) in entries {
        if let Some(value) = value {
            set_at_most(which, value).map_err(|errno| RlimitError { resource, errno })?;
        }
    }
    if let (None, Some(soft)) = (plan.open_files, plan.open_files_soft) {
        set_soft(libc::RLIMIT_NOFILE, soft).map_err(|errno| RlimitError {
            resource: "open_files",
            errno,
        })?;
    }
    Ok(())
}

/// Sets the soft limit only (at most the hard one).
fn set_soft(which: Resource, value: u64) -> Result<(), Errno> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid out-pointer.
    if unsafe { libc::getrlimit(which, &mut current) } != 0 {
        return Err(Errno::last());
    }
    current.rlim_cur = value.min(current.rlim_max);
    // SAFETY: `current` is a valid in-pointer.
    if unsafe { libc::setrlimit(which, &current) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
type Resource = libc::c_int;

fn set_at_most(which: Resource, value: u64) -> Result<(), Errno> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid out-pointer.
    if unsafe { libc::getrlimit(which, &mut current) } != 0 {
        return Err(Errno::last());
    }
    // RLIM_INFINITY is u64::MAX, so `min` treats "unlimited" right on both sides.
    let limit = value.min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `new` is a valid in-pointer.
    if unsafe { libc::setrlimit(which, &new) } != 0 {
        return Err(Errno::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;

    use super::*;
    use crate::sandbox::test_fork::{assert_child_ok, expect_errno, in_child};

    fn get(which: Resource) -> (u64, u64) {
        let mut current = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { libc::getrlimit(which, &mut current) }, 0);
        (current.rlim_cur, current.rlim_max)
    }

    fn check(name: &str, which: Resource, expected: u64) -> Result<(), String> {
        match get(which) {
            (soft, hard) if soft == expected && hard == expected => Ok(()),
            other => Err(format!(
                "{name}: expected {expected}/{expected}, got {other:?}"
            )),
        }
    }

    fn temp_file() -> (tempfile::TempDir, CString) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        (dir, path)
    }

    /// Opens `path` for writing and writes `len` bytes in one call; returns write's result.
    fn write_bytes(path: &CString, len: usize) -> libc::ssize_t {
        let buf = vec![b'a'; len];
        // SAFETY: valid path and buffer.
        unsafe {
            let fd = libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
                0o600,
            );
            assert!(fd >= 0);
            libc::write(fd, buf.as_ptr().cast(), buf.len())
        }
    }

    #[test]
    fn limits_are_applied_soft_equal_hard() {
        let plan = RlimitPlan {
            file_size: Some(1 << 20),
            open_files: Some(64),
            cpu_seconds: Some(3600),
            address_space: Some(64 << 30),
            locked_memory: Some(0),
            ..RlimitPlan::default()
        };
        assert_child_ok(|| {
            // Make "core" observable: start from a non-zero soft limit.
            let (_, hard) = get(libc::RLIMIT_CORE);
            let some = libc::rlimit {
                rlim_cur: hard.min(4096),
                rlim_max: hard,
            };
            // SAFETY: valid in-pointer.
            unsafe { libc::setrlimit(libc::RLIMIT_CORE, &some) };
            apply(&plan).map_err(|e| e.to_string())?;
            check("core", libc::RLIMIT_CORE, 0)?;
            check("file_size", libc::RLIMIT_FSIZE, 1 << 20)?;
            check("open_files", libc::RLIMIT_NOFILE, 64)?;
            check("cpu_seconds", libc::RLIMIT_CPU, 3600)?;
            check("address_space", libc::RLIMIT_AS, 64 << 30)?;
            check("locked_memory", libc::RLIMIT_MEMLOCK, 0)
        });
    }

    #[test]
    fn unset_limits_are_inherited() {
        let inherited = get(libc::RLIMIT_NOFILE);
        assert_child_ok(|| {
            apply(&RlimitPlan::default()).map_err(|e| e.to_string())?;
            match get(libc::RLIMIT_NOFILE) {
                now if now == inherited => Ok(()),
                now => Err(format!("open_files changed from {inherited:?} to {now:?}")),
            }
        });
    }

    #[test]
    fn file_size_limit_stops_writes_with_efbig() {
        let (_dir, path) = temp_file();
        assert_child_ok(|| {
            // SAFETY: ignoring SIGXFSZ turns the signal into EFBIG.
            unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
            let plan = RlimitPlan {
                file_size: Some(4096),
                ..RlimitPlan::default()
            };
            apply(&plan).map_err(|e| e.to_string())?;
            let n = write_bytes(&path, 8192);
            if n != 4096 {
                return Err(format!(
                    "first write wrote {n}, expected the 4096 allowed bytes"
                ));
            }
            expect_errno(
                "write past file_size",
                write_bytes(&path, 1) as _,
                libc::EFBIG,
            )
        });
    }

    #[test]
    fn file_size_limit_raises_sigxfsz() {
        let (_dir, path) = temp_file();
        let status = in_child(|| {
            let plan = RlimitPlan {
                file_size: Some(0),
                ..RlimitPlan::default()
            };
            apply(&plan).map_err(|e| e.to_string())?;
            let n = write_bytes(&path, 1);
            Err(format!("write returned {n} instead of raising SIGXFSZ"))
        });
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGXFSZ, _)),
            "{status:?}"
        );
    }

    #[test]
    fn open_files_limit_caps_descriptors() {
        assert_child_ok(|| {
            let plan = RlimitPlan {
                open_files: Some(16),
                ..RlimitPlan::default()
            };
            apply(&plan).map_err(|e| e.to_string())?;
            for _ in 0..32 {
                // SAFETY: opening /dev/null read-only.
                let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
                if fd < 0 {
                    return expect_errno("open beyond open_files", fd.into(), libc::EMFILE);
                }
                if fd >= 16 {
                    return Err(format!("got fd {fd} with open_files = 16"));
                }
            }
            Err("32 opens succeeded under open_files = 16".into())
        });
    }

    #[test]
    fn requests_above_the_hard_limit_are_clamped_not_refused() {
        assert_child_ok(|| {
            let lower = libc::rlimit {
                rlim_cur: 100,
                rlim_max: 100,
            };
            // SAFETY: valid in-pointer; lowering needs no privilege.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lower) };
            let plan = RlimitPlan {
                open_files: Some(1000),
                ..RlimitPlan::default()
            };
            apply(&plan).map_err(|e| e.to_string())?;
            check("open_files", libc::RLIMIT_NOFILE, 100)
        });
    }

    #[test]
    fn error_names_the_resource() {
        let err = RlimitError {
            resource: "open_files",
            errno: Errno::EPERM,
        };
        let text = err.to_string();
        assert!(
            text.contains("open_files") && text.contains("EPERM"),
            "{text}"
        );
    }
}

//! Dropping every capability, and `no_new_privs`, in the child before `execve`.
//!
//! [`CapDropPlan::detect`] runs in the supervisor before the clone (it may read `/proc`); the child
//! then calls [`drop_all`] and [`set_no_new_privs`], which only make raw syscalls (no
//! allocation, no locks).
//!
//! Order inside [`drop_all`] matters: the bounding set and the securebits can only be changed
//! while `CAP_SETPCAP` is still effective, so they come before the `capset` that empties the
//! effective, permitted and inheritable sets.

use std::fmt;

use nix::errno::Errno;

/// Where the kernel publishes its highest capability number.
const CAP_LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

const CAP_SETPCAP: u32 = 8;

/// Securebits the child asks for: root gets no capabilities by `execve` or uid changes, and
/// none of that (nor "keep caps", nor ambient raising) can be switched back.
const WANTED_SECUREBITS: libc::c_int = libc::SECBIT_NOROOT
    | libc::SECBIT_NOROOT_LOCKED
    | libc::SECBIT_NO_SETUID_FIXUP
    | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
    | libc::SECBIT_KEEP_CAPS_LOCKED
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE
    | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;

/// What [`drop_all`] needs to know, gathered before the clone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapDropPlan {
    last_cap: u32,
}

/// Why the capability plan could not be made.
#[derive(Debug)]
pub enum CapsError {
    /// `/proc/sys/kernel/cap_last_cap` holds something other than a number from 0 to 63.
    BadLastCap {
        /// The text found.
        text: String,
    },
    /// `/proc/sys/kernel/cap_last_cap` could not be read.
    Undetectable {
        /// Why `/proc` could not be read.
        source: std::io::Error,
    },
}

impl fmt::Display for CapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapsError::BadLastCap { text } => write!(
                f,
                "{CAP_LAST_CAP_PATH} contains {text:?}, not a capability number from 0 to 63"
            ),
            CapsError::Undetectable { source } => write!(
                f,
                "cannot tell how many capabilities this kernel has: reading {CAP_LAST_CAP_PATH} \
                 failed ({source}); is /proc mounted?"
            ),
        }
    }
}

impl std::error::Error for CapsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CapsError::Undetectable { source } => Some(source),
            CapsError::BadLastCap { .. } => None,
        }
    }
}

impl CapDropPlan {
    /// The kernel's highest capability number, from `/proc/sys/kernel/cap_last_cap`.
    pub fn detect() -> Result<Self, CapsError> {
        match std::fs::read_to_string(CAP_LAST_CAP_PATH) {
            Ok(text) => Self::parse(&text),
            Err(source) => Err(CapsError::Undetectable { source }),
        }
    }

    /// A plan for a kernel whose highest capability is `last_cap` (at most 63: the v3
    /// `capset` interface has 64 bits per set).
    pub fn with_last_cap(last_cap: u32) -> Self {
        CapDropPlan {
            last_cap: last_cap.min(63),
        }
    }

    /// The highest capability number the plan drops.
    pub fn last_cap(&self) -> u32 {
        self.last_cap
    }

    fn parse(text: &str) -> Result<Self, CapsError> {
        match text.trim().parse::<u32>() {
            Ok(last_cap) if last_cap <= 63 => Ok(CapDropPlan { last_cap }),
            _ => Err(CapsError::BadLastCap {
                text: text.to_string(),
            }),
        }
    }
}

/// What [`drop_all`] could do. Both fields are `true` for a child that had `CAP_SETPCAP` (root,
/// or any process in its own user namespace). A child that started without `CAP_SETPCAP` cannot
/// shrink its bounding set nor set securebits: the kernel answers `EPERM`, which [`drop_all`]
/// then accepts because such a process cannot regain capabilities by `execve` anyway once
/// `no_new_privs` is set (and its effective, permitted, inheritable and ambient sets are still
/// emptied). Report these fields so that "capabilities: none" stays honest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapDropReport {
    /// Every capability up to the plan's last one is out of the bounding set.
    pub bounding_set_cleared: bool,
    /// The securebits are set and locked.
    pub securebits_locked: bool,
}

/// Drops every capability of the calling process: bounding set (`PR_CAPBSET_DROP` for
/// 0..=last cap), ambient set (`PR_CAP_AMBIENT_CLEAR_ALL`), securebits (`NOROOT`,
/// `NO_SETUID_FIXUP`, `NO_CAP_AMBIENT_RAISE` and the locks of those and of `KEEP_CAPS`), then
/// `capset` of effective, permitted and inheritable to empty.
///
/// With `switch_to`, the process also changes to that uid/gid once the securebits are set (so
/// the change keeps, for a moment, the capabilities it needs) and before the sets are emptied:
/// how the host's root becomes an unprivileged user without a user namespace.
///
/// Child-side: raw syscalls only. `EPERM` from the bounding-set drop or from the securebits is
/// ignored only when the process does not have `CAP_SETPCAP` (see [`CapDropReport`]); any other
/// failure is returned.
pub fn drop_all(plan: &CapDropPlan, switch_to: Option<(u32, u32)>) -> Result<CapDropReport, Errno> {
    let mut report = CapDropReport {
        bounding_set_cleared: true,
        securebits_locked: true,
    };

    for cap in 0..=plan.last_cap {
        match prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0) {
            Ok(_) => {}
            Err(Errno::EPERM) if !has_effective(CAP_SETPCAP)? => {
                report.bounding_set_cleared = bounding_set_empty(plan);
                break;
            }
            Err(errno) => return Err(errno),
        }
    }

    match prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
        0,
    ) {
        // EINVAL: a kernel before 4.3 has no ambient set to clear.
        Ok(_) | Err(Errno::EINVAL) => {}
        Err(errno) => return Err(errno),
    }

    let current = prctl(libc::PR_GET_SECUREBITS, 0, 0)?;
    let mut wanted = current | WANTED_SECUREBITS;
    if current & libc::SECBIT_KEEP_CAPS_LOCKED == 0 {
        wanted &= !libc::SECBIT_KEEP_CAPS;
    }
    if wanted != current {
        match prctl(libc::PR_SET_SECUREBITS, wanted as libc::c_ulong, 0) {
            Ok(_) => {}
            Err(Errno::EPERM) if !has_effective(CAP_SETPCAP)? => report.securebits_locked = false,
            Err(errno) => return Err(errno),
        }
    }

    if let Some((uid, gid)) = switch_to {
        // SAFETY: raw set*id calls on our own process.
        unsafe { super::identity::become_ids(uid, gid) }.map_err(Errno::from_raw)?;
    }

    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and data are valid v3 capset arguments that outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    Ok(report)
}

/// Sets `no_new_privs`: from now on `execve` never grants privileges (setuid bits, file
/// capabilities), which also lets an unprivileged process install seccomp filters.
pub fn set_no_new_privs() -> Result<(), Errno> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(drop)
}

/// Whether `no_new_privs` is set on the calling thread.
pub fn no_new_privs() -> Result<bool, Errno> {
    prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0).map(|value| value == 1)
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`: one 32-bit word of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<i32, Errno> {
    // SAFETY: the options used here take integer arguments only.
    let rc = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// Whether `cap` is in the calling thread's effective set (raw `capget`).
fn has_effective(cap: u32) -> Result<bool, Errno> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: valid v3 header and room for two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc != 0 {
        return Err(Errno::last());
    }
    let word = data[(cap / 32) as usize].effective;
    Ok(word & (1 << (cap % 32)) != 0)
}

fn bounding_set_empty(plan: &CapDropPlan) -> bool {
    (0..=plan.last_cap).all(|cap| prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0) == Ok(0))
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::sandbox::test_fork::{assert_child_ok, expect_errno, expect_ok};

    fn capget() -> [CapData; 2] {
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: valid v3 arguments.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
        assert_eq!(rc, 0);
        data
    }

    fn all_sets_empty() -> bool {
        capget()
            .iter()
            .all(|d| d.effective == 0 && d.permitted == 0 && d.inheritable == 0)
    }

    fn locked_file() -> (tempfile::TempDir, CString) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked");
        std::fs::write(&path, b"secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        (dir, path)
    }

    #[test]
    fn plan_parses_proc_text() {
        assert_eq!(CapDropPlan::parse("40\n").unwrap().last_cap(), 40);
        assert!(CapDropPlan::parse("64").is_err());
        let err = CapDropPlan::parse("forty").unwrap_err();
        assert!(err.to_string().contains("forty"), "{err}");
        assert_eq!(CapDropPlan::with_last_cap(99).last_cap(), 63);
    }

    #[test]
    fn root_child_loses_every_capability() {
        let plan = CapDropPlan::detect().unwrap();
        let (_dir, locked) = locked_file();
        assert_child_ok(|| {
            // Precondition: as root this open works, so the later EACCES is the drop's doing.
            // SAFETY (whole block): plain syscalls on valid arguments.
            unsafe {
                let fd = libc::open(locked.as_ptr(), libc::O_RDONLY);
                expect_ok("open 0000 file before the drop", fd.into())?;
                libc::close(fd);
            }
            let report = drop_all(&plan, None).map_err(|e| format!("drop_all: {e}"))?;
            if !(report.bounding_set_cleared && report.securebits_locked) {
                return Err(format!("root child report: {report:?}"));
            }
            if !all_sets_empty() {
                return Err("capget shows capabilities".into());
            }
            for cap in 0..=plan.last_cap() {
                if prctl(libc::PR_CAPBSET_READ, cap.into(), 0) != Ok(0) {
                    return Err(format!("capability {cap} still in the bounding set"));
                }
                let is_set = libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong;
                if prctl(libc::PR_CAP_AMBIENT, is_set, cap.into()) != Ok(0) {
                    return Err(format!("capability {cap} still ambient"));
                }
            }
            let bits = prctl(libc::PR_GET_SECUREBITS, 0, 0).map_err(|e| e.to_string())?;
            if bits & WANTED_SECUREBITS != WANTED_SECUREBITS || bits & libc::SECBIT_KEEP_CAPS != 0 {
                return Err(format!("securebits {bits:#x}"));
            }
            unsafe {
                let fd = libc::open(locked.as_ptr(), libc::O_RDONLY);
                expect_errno("open 0000 file (CAP_DAC_OVERRIDE)", fd.into(), libc::EACCES)?;
                let rc = libc::chown(locked.as_ptr(), 1, 1);
                expect_errno("chown (CAP_CHOWN)", rc.into(), libc::EPERM)?;
            }
            Ok(())
        });
    }

    #[test]
    fn root_child_cannot_regain_capabilities_through_execve() {
        let plan = CapDropPlan::detect().unwrap();
        assert_child_ok(|| {
            drop_all(&plan, None).map_err(|e| format!("drop_all: {e}"))?;
            // uid 0 would normally get a full permitted set at execve; NOROOT and the empty
            // bounding set prevent it.
            let output = std::process::Command::new("/bin/cat")
                .arg("/proc/self/status")
                .output()
                .map_err(|e| format!("cat: {e}"))?;
            let status = String::from_utf8_lossy(&output.stdout);
            let cap_lines: Vec<&str> = status.lines().filter(|l| l.starts_with("Cap")).collect();
            if cap_lines.len() != 5 {
                return Err(format!("unexpected status: {status}"));
            }
            for line in cap_lines {
                if !line.ends_with("0000000000000000") {
                    return Err(format!("after execve: {line}"));
                }
            }
            Ok(())
        });
    }

    #[test]
    fn child_without_setpcap_still_empties_its_sets() {
        let plan = CapDropPlan::detect().unwrap();
        assert_child_ok(|| {
            // Become "unprivileged" in the sense that matters: no CAP_SETPCAP at all.
            let mut data = capget();
            for word in &mut data {
                word.effective &= !(1 << CAP_SETPCAP);
                word.permitted &= !(1 << CAP_SETPCAP);
            }
            let mut header = CapHeader {
                version: CAPABILITY_VERSION_3,
                pid: 0,
            };
            // SAFETY: valid v3 arguments.
            let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
            expect_ok("capset without CAP_SETPCAP", rc)?;

            let report = drop_all(&plan, None).map_err(|e| format!("drop_all: {e}"))?;
            let expected = CapDropReport {
                bounding_set_cleared: false,
                securebits_locked: false,
            };
            if report != expected {
                return Err(format!("report {report:?}"));
            }
            if !all_sets_empty() {
                return Err("capget shows capabilities".into());
            }
            Ok(())
        });
    }

    #[test]
    fn no_new_privs_is_set() {
        assert_child_ok(|| {
            // Normally false here; a runner that already set it makes this test weaker only.
            no_new_privs().map_err(|e| e.to_string())?;
            set_no_new_privs().map_err(|e| e.to_string())?;
            if no_new_privs() != Ok(true) {
                return Err("no_new_privs not set".into());
            }
            Ok(())
        });
    }
}

//! Probes of the host's sandboxing features, for `agent-exec doctor`.
//!
//! Each probe tries the real thing where that is cheap and harmless: a namespace is unshared,
//! a seccomp filter installed, `no_new_privs` set, always in a short-lived forked child that
//! makes raw syscalls only and then exits. The calling process is left exactly as it was.
//! Cgroups are probed by the cgroup module, not here.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use serde::Serialize;

use crate::sandbox::landlock::kernel_abi;

/// Outcome of probing one kernel feature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Probe {
    /// Whether agent-exec can use the feature on this host, as the current user.
    pub available: bool,
    /// What was tried and what happened, for a human.
    pub detail: String,
}

impl Probe {
    fn yes(detail: impl Into<String>) -> Self {
        Probe {
            available: true,
            detail: detail.into(),
        }
    }

    fn no(detail: impl Into<String>) -> Self {
        Probe {
            available: false,
            detail: detail.into(),
        }
    }
}

/// Landlock support.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LandlockProbe {
    /// Whether Landlock is enabled in the running kernel.
    pub available: bool,
    /// The kernel's Landlock ABI version, null when unavailable.
    pub abi: Option<u32>,
    /// Which Landlock features this ABI provides.
    pub detail: String,
}

/// User namespace support and the sysctls that govern it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct UserNamespaceProbe {
    /// Whether a user namespace can be created and grants capabilities inside it.
    pub available: bool,
    /// What was tried and what happened.
    pub detail: String,
    /// `/proc/sys/user/max_user_namespaces` (0 disables user namespaces).
    pub max_user_namespaces: Option<u64>,
    /// `/proc/sys/kernel/unprivileged_userns_clone` (Debian kernels; 0 restricts them to root).
    pub unprivileged_userns_clone: Option<u64>,
    /// `/proc/sys/kernel/apparmor_restrict_unprivileged_userns` (Ubuntu; 1 strips
    /// capabilities from unprivileged user namespaces unless an AppArmor profile allows them).
    pub apparmor_restrict_unprivileged_userns: Option<u64>,
}

/// One probe per namespace kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NamespaceProbes {
    /// User namespace, with its sysctls.
    pub user: UserNamespaceProbe,
    /// Pid namespace (checked by forking into it and seeing pid 1).
    pub pid: Probe,
    /// Mount namespace.
    pub mount: Probe,
    /// IPC namespace.
    pub ipc: Probe,
    /// UTS (hostname) namespace.
    pub uts: Probe,
    /// Network namespace.
    pub net: Probe,
    /// Cgroup namespace.
    pub cgroup: Probe,
}

/// What the host kernel offers to the sandbox, layer by layer (cgroups excepted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct HostProbe {
    /// `uname -r` of the running kernel.
    pub kernel_release: String,
    /// Landlock filesystem/network/scope restrictions.
    pub landlock: LandlockProbe,
    /// Seccomp BPF syscall filters.
    pub seccomp: Probe,
    /// Namespaces, as the current user.
    pub namespaces: NamespaceProbes,
    /// `pidfd_open(2)`, for race-free process handles.
    pub pidfd_open: Probe,
    /// `clone3(2)`, and whether it knows `CLONE_INTO_CGROUP`.
    pub clone3: Probe,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: Probe,
}

/// Runs every probe.
pub fn probe_host() -> HostProbe {
    HostProbe {
        kernel_release: kernel_release(),
        landlock: probe_landlock(),
        seccomp: probe_seccomp(),
        namespaces: NamespaceProbes {
            user: probe_user_namespace(),
            pid: probe_pid_namespace(),
            mount: probe_namespace(libc::CLONE_NEWNS, "mount"),
            ipc: probe_namespace(libc::CLONE_NEWIPC, "ipc"),
            uts: probe_namespace(libc::CLONE_NEWUTS, "uts"),
            net: probe_namespace(libc::CLONE_NEWNET, "net"),
            cgroup: probe_namespace(libc::CLONE_NEWCGROUP, "cgroup"),
        },
        pidfd_open: probe_pidfd_open(),
        clone3: probe_clone3(),
        no_new_privs: probe_no_new_privs(),
    }
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// How a forked probe child ended.
#[derive(Debug, PartialEq, Eq)]
enum ChildEnd {
    /// Exited with this code: 0 for success, else the probe's own failure code.
    Exited(i32),
    /// Could not fork, could not wait, or the child died of a signal.
    Broken(String),
}

/// Forks, runs `probe` in the child and exits with its return value.
///
/// `probe` must only make raw syscalls (no allocation, no locks): the caller may have
/// threads. Its return value must fit an exit status (0..=255).
fn in_forked_child(probe: impl FnOnce() -> i32) -> ChildEnd {
    // SAFETY: the child only runs `probe` (raw syscalls) and then _exits.
    match unsafe { nix::unistd::fork() } {
        Err(e) => ChildEnd::Broken(format!("fork failed: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            let code = probe();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            use nix::sys::wait::{waitpid, WaitStatus};
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return ChildEnd::Exited(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        return ChildEnd::Broken(format!("probe child killed by {sig}"))
                    }
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(e) => return ChildEnd::Broken(format!("waitpid failed: {e}")),
                }
            }
        }
    }
}

/// The current errno as an exit code for [`in_forked_child`] (errno values stay below 256).
fn errno_code() -> i32 {
    Errno::last_raw().clamp(1, 255)
}

fn errno_text(code: i32) -> String {
    let e = Errno::from_raw(code);
    format!("{e} ({})", e.desc())
}

fn read_knob(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Which Landlock features each ABI adds, for the doctor's explanation.
fn landlock_features(abi: u32) -> String {
    let steps = [
        (1, "filesystem access control"),
        (2, "cross-directory rename/link control"),
        (3, "truncate control"),
        (4, "TCP bind/connect port rules"),
        (5, "device ioctl control"),
        (6, "abstract unix socket and signal scoping"),
        (7, "audit logging control"),
        (8, "restricting all threads at once"),
        (9, "pathname unix socket control"),
    ];
    let have: Vec<&str> = steps
        .iter()
        .filter(|(since, _)| *since <= abi)
        .map(|(_, name)| *name)
        .collect();
    format!("Landlock ABI {abi}: {}", have.join(", "))
}

/// Landlock ABI of the running kernel.
pub fn probe_landlock() -> LandlockProbe {
    match kernel_abi() {
        Some(abi) => LandlockProbe {
            available: true,
            abi: Some(abi),
            detail: landlock_features(abi),
        },
        None => LandlockProbe {
            available: false,
            abi: None,
            detail: "Landlock is not available: the kernel lacks it or it is not enabled at \
                     boot (add \"landlock\" to the lsm= kernel parameter)"
                .into(),
        },
    }
}

/// Installs an allow-everything seccomp BPF filter in a forked child.
pub fn probe_seccomp() -> Probe {
    let end = in_forked_child(|| {
        let mut allow = [libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: allow.as_mut_ptr(),
        };
        // SAFETY: raw syscalls on a filter program that outlives them.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return errno_code();
            }
            let flags: libc::c_uint = 0;
            let prog_ptr: *const libc::sock_fprog = &prog;
            if libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                prog_ptr,
            ) != 0
            {
                return errno_code();
            }
            if libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) != 2 {
                return 255;
            }
        }
        0
    });
    let inherited = match current_seccomp_mode() {
        Some(2) => "; this process already runs under a seccomp filter (container?)",
        _ => "",
    };
    match end {
        ChildEnd::Exited(0) => Probe::yes(format!(
            "a seccomp BPF filter installs (SECCOMP_SET_MODE_FILTER){inherited}"
        )),
        ChildEnd::Exited(255) => Probe::no("a seccomp filter installed but is not in effect"),
        ChildEnd::Exited(code) => Probe::no(format!(
            "installing a seccomp filter failed: {}{inherited}",
            errno_text(code)
        )),
        ChildEnd::Broken(why) => Probe::no(why),
    }
}

/// The `Seccomp:` mode of this process (0 none, 1 strict, 2 filter).
fn current_seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))?
        .trim()
        .parse()
        .ok()
}

/// Exit code of the user namespace probe when the namespace exists but grants no
/// capabilities (a mount namespace cannot be created inside it).
const USERNS_WITHOUT_CAPS: i32 = 254;

/// Creates a user namespace in a forked child, then a mount namespace inside it to check
/// that the new namespace really grants capabilities (AppArmor may strip them).
pub fn probe_user_namespace() -> UserNamespaceProbe {
    let max = read_knob("/proc/sys/user/max_user_namespaces");
    let debian = read_knob("/proc/sys/kernel/unprivileged_userns_clone");
    let apparmor = read_knob("/proc/sys/kernel/apparmor_restrict_unprivileged_userns");
    let end = in_forked_child(|| {
        // SAFETY: plain syscalls.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return errno_code();
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return USERNS_WITHOUT_CAPS;
            }
        }
        0
    });
    let uid = nix::unistd::geteuid();
    let mut hints = Vec::new();
    if max == Some(0) {
        hints.push("user.max_user_namespaces is 0 (raise it with sysctl)".to_string());
    }
    if debian == Some(0) && !uid.is_root() {
        hints.push("kernel.unprivileged_userns_clone is 0 (set it to 1)".to_string());
    }
    if apparmor == Some(1) && !uid.is_root() {
        hints.push(
            "kernel.apparmor_restrict_unprivileged_userns is 1 (add an AppArmor profile \
             allowing userns for agent-exec, or set it to 0)"
                .to_string(),
        );
    }
    let hints = if hints.is_empty() {
        String::new()
    } else {
        format!("; {}", hints.join("; "))
    };
    let (available, detail) = match end {
        ChildEnd::Exited(0) => (
            true,
            format!("unshare(CLONE_NEWUSER) works as uid {uid} and grants capabilities{hints}"),
        ),
        ChildEnd::Exited(USERNS_WITHOUT_CAPS) => (
            false,
            format!(
                "a user namespace can be created as uid {uid} but grants no capabilities \
                 inside it{hints}"
            ),
        ),
        ChildEnd::Exited(code) => (
            false,
            format!(
                "unshare(CLONE_NEWUSER) failed as uid {uid}: {}{hints}",
                errno_text(code)
            ),
        ),
        ChildEnd::Broken(why) => (false, why),
    };
    UserNamespaceProbe {
        available,
        detail,
        max_user_namespaces: max,
        unprivileged_userns_clone: debian,
        apparmor_restrict_unprivileged_userns: apparmor,
    }
}

/// Unshares `flag` in a forked child; when that needs privileges the current user lacks,
/// tries again together with a new user namespace, as the supervisor would clone.
pub fn probe_namespace(flag: libc::c_int, name: &str) -> Probe {
    let alone = in_forked_child(|| {
        // SAFETY: plain syscall.
        if unsafe { libc::unshare(flag) } != 0 {
            return errno_code();
        }
        0
    });
    let with_user = || {
        in_forked_child(|| {
            // SAFETY: plain syscall.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER | flag) } != 0 {
                return errno_code();
            }
            0
        })
    };
    match alone {
        ChildEnd::Exited(0) => Probe::yes(format!("unshare of a new {name} namespace works")),
        ChildEnd::Exited(code) if code == libc::EPERM => match with_user() {
            ChildEnd::Exited(0) => Probe::yes(format!(
                "a new {name} namespace works inside a new user namespace (not alone: EPERM)"
            )),
            ChildEnd::Exited(code2) => Probe::no(format!(
                "unshare of a new {name} namespace failed: EPERM alone, {} with a user \
                 namespace",
                errno_text(code2)
            )),
            ChildEnd::Broken(why) => Probe::no(why),
        },
        ChildEnd::Exited(code) => Probe::no(format!(
            "unshare of a new {name} namespace failed: {}",
            errno_text(code)
        )),
        ChildEnd::Broken(why) => Probe::no(why),
    }
}

/// Exit code of the pid namespace probe when the grandchild is not pid 1.
const NOT_PID_ONE: i32 = 253;

/// Unshares a pid namespace in a forked child and forks once more, since only the children
/// enter it: the grandchild must be pid 1.
pub fn probe_pid_namespace() -> Probe {
    let try_flags = |flags: libc::c_int| {
        in_forked_child(|| {
            // SAFETY: raw syscalls only; the grandchild _exits at once.
            unsafe {
                if libc::unshare(flags) != 0 {
                    return errno_code();
                }
                match libc::fork() {
                    -1 => errno_code(),
                    0 => libc::_exit(if libc::getpid() == 1 { 0 } else { NOT_PID_ONE }),
                    pid => {
                        let mut status = 0;
                        if libc::waitpid(pid, &mut status, 0) != pid || !libc::WIFEXITED(status) {
                            return NOT_PID_ONE;
                        }
                        libc::WEXITSTATUS(status)
                    }
                }
            }
        })
    };
    let describe = |end: ChildEnd, how: &str| match end {
        ChildEnd::Exited(0) => Probe::yes(format!(
            "a process forked into a new pid namespace{how} is pid 1"
        )),
        ChildEnd::Exited(NOT_PID_ONE) => {
            Probe::no("a process forked into a new pid namespace is not pid 1")
        }
        ChildEnd::Exited(code) => Probe::no(format!(
            "unshare of a new pid namespace{how} failed: {}",
            errno_text(code)
        )),
        ChildEnd::Broken(why) => Probe::no(why),
    };
    match try_flags(libc::CLONE_NEWPID) {
        ChildEnd::Exited(code) if code == libc::EPERM => describe(
            try_flags(libc::CLONE_NEWUSER | libc::CLONE_NEWPID),
            " (inside a new user namespace)",
        ),
        end => describe(end, ""),
    }
}

/// Opens (and closes) a pidfd for this process.
pub fn probe_pidfd_open() -> Probe {
    // SAFETY: plain syscall; the returned fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0u32) };
    match i32::try_from(fd) {
        Ok(fd) if fd >= 0 => {
            // SAFETY: fd is fresh and owned by nobody else; dropping closes it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
            Probe::yes("pidfd_open works")
        }
        _ => Probe::no(format!("pidfd_open failed: {}", errno_text(errno_code()))),
    }
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// `sizeof(struct clone_args)` with the `cgroup` field (CLONE_ARGS_SIZE_VER2).
const CLONE_ARGS_SIZE_VER2: usize = 88;

/// Calls `clone3` with arguments the kernel must reject, so no process is ever created:
/// a null argument block (EINVAL when clone3 exists, ENOSYS when not), then
/// `CLONE_INTO_CGROUP` with a directory fd that is not a cgroup (EBADF when the flag is
/// known, EINVAL when not).
pub fn probe_clone3() -> Probe {
    // SAFETY: size 0 makes the kernel reject the call before reading the (null) pointer.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    let errno = Errno::last();
    if rc != -1 || errno != Errno::EINVAL {
        return Probe::no(match errno {
            Errno::ENOSYS => "clone3 is not implemented by this kernel (needs Linux 5.3+)".into(),
            Errno::EPERM => {
                "clone3 is blocked (EPERM), likely by a container's seccomp filter".into()
            }
            other => format!("clone3 probe returned {rc}, {}", errno_text(other as i32)),
        });
    }
    let root = match std::fs::File::open("/") {
        Ok(f) => f,
        Err(e) => return Probe::yes(format!("clone3 exists; CLONE_INTO_CGROUP not probed: {e}")),
    };
    use std::os::fd::AsRawFd;
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
    // stack_size, tls, set_tid, set_tid_size, cgroup.
    let mut args = [0u64; 11];
    args[0] = CLONE_INTO_CGROUP;
    args[10] = root.as_raw_fd() as u64;
    // SAFETY: args is a valid clone_args block. "/" is not a cgroup directory, so the kernel
    // fails the call before creating a process; a 0 return (never seen) would mean we are
    // a new child, which leaves at once.
    let rc = unsafe { libc::syscall(libc::SYS_clone3, args.as_mut_ptr(), CLONE_ARGS_SIZE_VER2) };
    let errno = Errno::last();
    match rc {
        // SAFETY: we are an unexpected child: leave immediately.
        0 => unsafe { libc::_exit(0) },
        pid if pid > 0 => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            Probe::yes("clone3 works; CLONE_INTO_CGROUP accepted a non-cgroup fd (unexpected)")
        }
        _ if errno == Errno::EBADF => Probe::yes("clone3 works and knows CLONE_INTO_CGROUP"),
        _ => Probe::yes(format!(
            "clone3 works but CLONE_INTO_CGROUP is unsupported (needs Linux 5.7+): {}",
            errno_text(errno as i32)
        )),
    }
}

/// Sets `no_new_privs` in a forked child and reads it back.
pub fn probe_no_new_privs() -> Probe {
    let end = in_forked_child(|| {
        // SAFETY: plain prctl calls.
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return errno_code();
            }
            if libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 {
                return 255;
            }
        }
        0
    });
    // SAFETY: plain prctl query.
    let already = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1;
    let note = if already {
        " (already set on this process)"
    } else {
        ""
    };
    match end {
        ChildEnd::Exited(0) => Probe::yes(format!("PR_SET_NO_NEW_PRIVS works{note}")),
        ChildEnd::Exited(255) => Probe::no("PR_SET_NO_NEW_PRIVS did not stick"),
        ChildEnd::Exited(code) => {
            Probe::no(format!("PR_SET_NO_NEW_PRIVS failed: {}", errno_text(code)))
        }
        ChildEnd::Broken(why) => Probe::no(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_namespaces() -> Vec<std::path::PathBuf> {
        ["user", "pid", "mnt", "ipc", "uts", "net", "cgroup"]
            .iter()
            .map(|ns| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap())
            .collect()
    }

    #[test]
    fn this_host_offers_every_layer() {
        // The development and CI machines are root on kernel 6.18 with Landlock ABI 7.
        let before = own_namespaces();
        let host = probe_host();
        assert_eq!(own_namespaces(), before, "a probe changed our namespaces");
        // SAFETY: plain prctl queries.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) },
            0
        );
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) }, 0);
        assert!(
            host.landlock.available && host.landlock.abi >= Some(6),
            "{host:#?}"
        );
        assert!(host.landlock.detail.contains("signal scoping"), "{host:#?}");
        let n = &host.namespaces;
        let all = [
            (&host.seccomp, "seccomp"),
            (&n.pid, "pid"),
            (&n.mount, "mount"),
            (&n.ipc, "ipc"),
            (&n.uts, "uts"),
            (&n.net, "net"),
            (&n.cgroup, "cgroup"),
            (&host.pidfd_open, "pidfd_open"),
            (&host.clone3, "clone3"),
            (&host.no_new_privs, "no_new_privs"),
        ];
        for (probe, name) in all {
            assert!(probe.available, "{name}: {}", probe.detail);
        }
        assert!(n.user.available, "{}", n.user.detail);
        assert!(n.pid.detail.contains("pid 1"), "{}", n.pid.detail);
        assert!(
            host.clone3.detail.contains("knows CLONE_INTO_CGROUP"),
            "{}",
            host.clone3.detail
        );
        assert_eq!(
            n.user.max_user_namespaces,
            read_knob("/proc/sys/user/max_user_namespaces")
        );
        assert!(!host.kernel_release.is_empty());
    }

    #[test]
    fn host_probe_matches_its_schema() {
        let value = serde_json::to_value(probe_host()).unwrap();
        assert_eq!(value["seccomp"]["available"], true);
        assert!(value["namespaces"]["user"]["detail"].is_string());
        let schema = serde_json::to_value(schemars::schema_for!(HostProbe)).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        assert!(validator.is_valid(&value));
        let mut broken = value.clone();
        broken["clone3"]["available"] = serde_json::json!("yes");
        assert!(!validator.is_valid(&broken));
    }

    #[test]
    fn forked_child_reports_codes_and_signals() {
        assert_eq!(in_forked_child(|| 0), ChildEnd::Exited(0));
        assert_eq!(
            in_forked_child(|| libc::EPERM),
            ChildEnd::Exited(libc::EPERM)
        );
        let end = in_forked_child(|| {
            // SAFETY: the child kills itself.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        });
        assert!(
            matches!(end, ChildEnd::Broken(ref why) if why.contains("SIGKILL")),
            "{end:?}"
        );
    }

    #[test]
    fn unprivileged_user_falls_back_to_a_user_namespace() {
        let result = crate::sandbox::namespaces::test_fork::in_child(|| {
            let nobody = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
            nix::unistd::setresgid(nobody, nobody, nobody)
                .map_err(|e| format!("setresgid: {e}"))?;
            let uid = nix::unistd::Uid::from_raw(65534);
            nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
            let net = probe_namespace(libc::CLONE_NEWNET, "net");
            let pid = probe_pid_namespace();
            let user = probe_user_namespace();
            for probe in [&net, &pid] {
                if !(probe.available && probe.detail.contains("user namespace")) {
                    return Err(format!("{probe:?}"));
                }
            }
            if !(user.available && user.detail.contains("uid 65534")) {
                return Err(format!("{user:?}"));
            }
            Ok(())
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn failures_are_reported_with_errno_names() {
        // An invalid flag makes unshare fail with EINVAL, and the probe must say so.
        let probe = probe_namespace(libc::CLONE_PARENT, "bogus");
        assert!(!probe.available);
        assert!(probe.detail.contains("EINVAL"), "{}", probe.detail);
    }

    #[test]
    fn knobs_parse_numbers_and_tolerate_absence() {
        let dir = tempfile::tempdir().unwrap();
        let knob = dir.path().join("knob");
        std::fs::write(&knob, "15000\n").unwrap();
        assert_eq!(read_knob(knob.to_str().unwrap()), Some(15000));
        assert_eq!(read_knob(dir.path().join("absent").to_str().unwrap()), None);
        std::fs::write(&knob, "junk").unwrap();
        assert_eq!(read_knob(knob.to_str().unwrap()), None);
    }

    #[test]
    fn landlock_features_grow_with_the_abi() {
        assert_eq!(
            landlock_features(1),
            "Landlock ABI 1: filesystem access control"
        );
        let v7 = landlock_features(7);
        assert!(
            v7.contains("TCP") && v7.contains("audit") && !v7.contains("pathname"),
            "{v7}"
        );
    }
}

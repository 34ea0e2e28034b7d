//! Two kinds of test: a tiny classic-BPF interpreter runs the compiled programs against
//! synthetic `seccomp_data` (every branch, including foreign architectures, deterministically),
//! and forked children install the real filter and make real syscalls.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::sys::wait::{waitpid, WaitStatus};

use super::*;
#[cfg(target_arch = "x86_64")]
use crate::sandbox::test_fork::in_child;
use crate::sandbox::test_fork::{assert_child_ok, expect_errno, expect_ok};

// ---------------------------------------------------------------------------------------------
// BPF interpreter

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

/// Runs `program` on a `seccomp_data` of (`arch`, `nr`, `args`) and returns the action.
/// Panics on an instruction it does not know or a jump out of the program.
fn run(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> u32 {
    run_counting(program, arch, nr, args).0
}

/// [`run`], also returning how many instructions it took to decide on the syscall number
/// alone: until the `ret`, or until the first load of an argument (where the kernel's own
/// emulation at install time stops too).
fn run_counting(program: &[libc::sock_filter], arch: u32, nr: i64, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as u32).to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, arg) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    let mut on_number_alone = None;
    loop {
        let insn = program[pc];
        steps += 1;
        if insn.code == 0x20 && insn.k >= 16 {
            on_number_alone.get_or_insert(steps);
        }
        let k = insn.k;
        let branch = |taken: bool| 1 + usize::from(if taken { insn.jt } else { insn.jf });
        pc += match insn.code {
            0x20 => {
                let at = k as usize;
                acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                1
            }
            0x54 => {
                acc &= k;
                1
            }
            0x05 => 1 + k as usize,
            0x15 => branch(acc == k),
            0x25 => branch(acc > k),
            0x35 => branch(acc >= k),
            0x45 => branch(acc & k != 0),
            0x06 => return (k, on_number_alone.unwrap_or(steps)),
            code => panic!("unexpected BPF opcode {code:#x} at {pc}"),
        };
    }
}

fn native(program: &SeccompProgram, nr: i64, args: [u64; 6]) -> u32 {
    run(program.instructions(), AUDIT_ARCH, nr, args)
}

fn with_arg(index: usize, value: u64) -> [u64; 6] {
    let mut args = [0; 6];
    args[index] = value;
    args
}

/// An ioctl request as a syscall argument (`Ioctl` is `c_ulong` on glibc, `c_int` on musl).
#[allow(clippy::unnecessary_cast)]
fn cmd(request: libc::Ioctl) -> u64 {
    request as u64
}

fn built(profile: SeccompProfile, extra: &[&str]) -> SeccompProgram {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    build(profile, &extra, false).unwrap().expect("a program")
}

#[test]
fn prefix_kills_foreign_arch_and_redirects_clone3() {
    let program = built(SeccompProfile::Default, &[]);
    assert_eq!(
        run(program.instructions(), AUDIT_ARCH_I386, 20, [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
    assert_eq!(native(&program, libc::SYS_clone3, [0; 6]), RET_ENOSYS);
    assert_eq!(native(&program, libc::SYS_getpid, [0; 6]), RET_ALLOW);
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        native(&program, libc::SYS_getpid | 0x4000_0000, [0; 6]),
        libc::SECCOMP_RET_KILL_PROCESS
    );
}

/// A caller without root cannot set vm.memfd_noexec: its jobs may only
/// make memfds sealed against exec, as the sysctl would make them.
#[test]
fn sealing_refuses_memfds_that_could_be_executed() {
    const MFD_CLOEXEC: u64 = 0x1;
    const MFD_NOEXEC_SEAL: u64 = 0x8;
    const MFD_EXEC: u64 = 0x10;
    let memfd = table::number("memfd_create").unwrap();
    let sealed = build(SeccompProfile::Default, &[], true).unwrap().unwrap();
    let plain = built(SeccompProfile::Default, &[]);
    let flags = |f: u64| with_arg(1, f);
    assert_eq!(native(&sealed, memfd, flags(MFD_CLOEXEC)), RET_EPERM);
    assert_eq!(native(&sealed, memfd, flags(0)), RET_EPERM);
    assert_eq!(native(&sealed, memfd, flags(MFD_EXEC)), RET_EPERM);
    assert_eq!(
        native(&sealed, memfd, flags(MFD_CLOEXEC | MFD_NOEXEC_SEAL)),
        RET_ALLOW
    );
    // The control: without sealing only MFD_EXEC is refused.
    assert_eq!(native(&plain, memfd, flags(MFD_CLOEXEC)), RET_ALLOW);
    assert_eq!(native(&plain, memfd, flags(MFD_EXEC)), RET_EPERM);
    // Never without a profile.
    assert!(build(SeccompProfile::None, &[], true).unwrap().is_none());
}

#[test]
fn default_profile_decisions() {
    let p = built(SeccompProfile::Default, &[]);
    for name in [
        "ptrace",
        "mount",
        "unshare",
        "setns",
        "keyctl",
        "bpf",
        "personality",
        "io_uring_setup",
        "open_tree_attr",
    ] {
        let nr = table::number(name).unwrap();
        assert_eq!(native(&p, nr, [0; 6]), RET_EPERM, "{name}");
    }
    let clone = libc::SYS_clone;
    let sigchld = libc::SIGCHLD as u64;
    assert_eq!(native(&p, clone, with_arg(0, sigchld)), RET_ALLOW);
    // A fork-like clone with unrelated high bits set is still allowed.
    assert_eq!(native(&p, clone, with_arg(0, sigchld | 1 << 40)), RET_ALLOW);
    for flag in [
        libc::CLONE_NEWNS,
        libc::CLONE_NEWUTS,
        libc::CLONE_NEWIPC,
        libc::CLONE_NEWUSER,
        libc::CLONE_NEWPID,
        libc::CLONE_NEWNET,
        libc::CLONE_NEWCGROUP,
        libc::CLONE_NEWTIME,
    ] {
        let flags = sigchld | libc::CLONE_VM as u64 | flag as u64;
        assert_eq!(
            native(&p, clone, with_arg(0, flags)),
            RET_EPERM,
            "{flag:#x}"
        );
    }
    let ioctl = libc::SYS_ioctl;
    let tiocsti = cmd(libc::TIOCSTI);
    assert_eq!(native(&p, ioctl, with_arg(1, tiocsti)), RET_EPERM);
    assert_eq!(native(&p, ioctl, with_arg(1, tiocsti | 1 << 32)), RET_EPERM);
    assert_eq!(
        native(&p, ioctl, with_arg(1, cmd(libc::TIOCLINUX))),
        RET_EPERM
    );
    assert_eq!(native(&p, ioctl, with_arg(1, cmd(libc::TCGETS))), RET_ALLOW);
    let socket = libc::SYS_socket;
    assert_eq!(native(&p, socket, with_arg(0, 40)), RET_EPERM);
    assert_eq!(native(&p, socket, with_arg(0, 2)), RET_ALLOW);
    assert_eq!(native(&p, socket, with_arg(0, 16)), RET_ALLOW);
    assert_eq!(native(&p, libc::SYS_chroot, [0; 6]), RET_ALLOW);
}

#[test]
fn strict_profile_adds_its_extras_and_keeps_default() {
    let p = built(SeccompProfile::Strict, &[]);
    assert_eq!(native(&p, libc::SYS_ptrace, [0; 6]), RET_EPERM);
    for name in [
        "chroot",
        "open_by_handle_at",
        "syslog",
        "pidfd_getfd",
        "vmsplice",
    ] {
        let nr = table::number(name).unwrap();
        assert_eq!(native(&p, nr, [0; 6]), RET_EPERM, "{name}");
    }
    let socket = libc::SYS_socket;
    assert_eq!(native(&p, socket, with_arg(0, 40)), RET_EPERM, "vsock");
    assert_eq!(native(&p, socket, with_arg(0, 16)), RET_EPERM, "netlink");
    assert_eq!(native(&p, socket, with_arg(0, 17)), RET_EPERM, "packet");
    assert_eq!(native(&p, socket, with_arg(0, 1)), RET_ALLOW, "unix");
    let mknodat = libc::SYS_mknodat;
    let chr = u64::from(libc::S_IFCHR | 0o600);
    let blk = u64::from(libc::S_IFBLK | 0o600);
    let fifo = u64::from(libc::S_IFIFO | 0o600);
    assert_eq!(native(&p, mknodat, with_arg(2, chr)), RET_EPERM);
    assert_eq!(native(&p, mknodat, with_arg(2, blk)), RET_EPERM);
    assert_eq!(native(&p, mknodat, with_arg(2, fifo)), RET_ALLOW);
}

#[test]
fn extra_deny_is_unconditional_and_overrides_conditional_rules() {
    let p = built(SeccompProfile::Default, &["clone", "getppid"]);
    let sigchld = with_arg(0, libc::SIGCHLD as u64);
    assert_eq!(native(&p, libc::SYS_clone, sigchld), RET_EPERM);
    assert_eq!(native(&p, libc::SYS_getppid, [0; 6]), RET_EPERM);
    assert_eq!(native(&p, libc::SYS_getpid, [0; 6]), RET_ALLOW);
}

#[test]
fn none_profile_is_no_filter_unless_extra_denies_are_given() {
    assert!(build(SeccompProfile::None, &[], false).unwrap().is_none());
    let p = built(SeccompProfile::None, &["ptrace"]);
    assert_eq!(native(&p, libc::SYS_ptrace, [0; 6]), RET_EPERM);
    assert_eq!(native(&p, libc::SYS_mount, [0; 6]), RET_ALLOW);
    assert!(denied_syscalls(SeccompProfile::None).is_empty());
}

#[test]
fn unknown_syscall_name_is_an_error_naming_it() {
    let err = build(
        SeccompProfile::Default,
        &["getpid".into(), "frobnicate".into()],
        false,
    )
    .unwrap_err();
    assert!(matches!(&err, SeccompError::UnknownSyscall { name, .. } if name == "frobnicate"));
    assert!(err.to_string().contains("\"frobnicate\""), "{err}");
    // The libc spelling is not accepted either: names are bare.
    assert!(build(SeccompProfile::None, &["SYS_ptrace".into()], false).is_err());
}

#[test]
fn profile_names_round_trip() {
    for p in [
        SeccompProfile::Default,
        SeccompProfile::Strict,
        SeccompProfile::None,
    ] {
        assert_eq!(p.as_str().parse::<SeccompProfile>().unwrap(), p);
    }
    let err = "paranoid".parse::<SeccompProfile>().unwrap_err();
    assert!(err.to_string().contains("paranoid"));
}

#[test]
fn denied_syscalls_reports_both_profiles() {
    let default = denied_syscalls(SeccompProfile::Default);
    for label in [
        "clone3(ENOSYS)",
        "ptrace",
        "clone(CLONE_NEW*)",
        "ioctl(TIOCSTI|TIOCLINUX)",
        "socket(AF_VSOCK)",
    ] {
        assert!(default.contains(&label), "{label}");
    }
    assert!(!default.contains(&"chroot"));
    let strict = denied_syscalls(SeccompProfile::Strict);
    assert!(strict.contains(&"chroot") && strict.contains(&"ptrace"));
    assert!(strict.len() > default.len());
}

/// What a filter of a profile plus extra denies must answer, worked out from the rule data
/// alone (no BPF): the oracle the sweeps below hold every compiled program to.
struct Oracle {
    rules: Vec<(i64, &'static [rules::ArgCondition])>,
    extra: Vec<i64>,
}

impl Oracle {
    fn new(profile: SeccompProfile, extra: &[&str]) -> Oracle {
        let number = |name: &str| table::number(name).expect("a known syscall");
        Oracle {
            rules: profile_rules(profile)
                .map(|rule| (number(rule.syscall), rule.when))
                .collect(),
            extra: extra.iter().map(|name| number(name)).collect(),
        }
    }

    fn expected(&self, nr: u32, args: [u64; 6]) -> u32 {
        #[cfg(target_arch = "x86_64")]
        if nr & X32_SYSCALL_BIT != 0 {
            return libc::SECCOMP_RET_KILL_PROCESS;
        }
        let nr = i64::from(nr);
        if nr == libc::SYS_clone3 || nr == libc::SYS_openat2 {
            return RET_ENOSYS;
        }
        if self.extra.contains(&nr) {
            return RET_EPERM;
        }
        let low = |index: u8| args[usize::from(index)] as u32;
        for (_, when) in self.rules.iter().filter(|(rule_nr, _)| *rule_nr == nr) {
            if when.is_empty() || when.iter().any(|c| low(c.index) & c.mask == c.value) {
                return RET_EPERM;
            }
        }
        RET_ALLOW
    }
}

/// Syscall numbers to try: every real one and past the table, and the edges of the x32 bit.
fn numbers() -> impl Iterator<Item = u32> {
    (0..1024).chain([
        0x3fff_ffff,
        0x4000_0000,
        0x4000_0000 | libc::SYS_ptrace as u32,
        0x7fff_ffff,
        0x8000_0000,
        u32::MAX,
    ])
}

/// Argument vectors to try: none, and for each condition of any rule one that meets it, the
/// same with high bits set (ignored by the kernel, so they must be by the filter too), and
/// near misses.
fn argument_sets() -> Vec<[u64; 6]> {
    let mut sets = vec![[0; 6], [u64::MAX; 6]];
    let conditions = profile_rules(SeccompProfile::Strict).flat_map(|rule| rule.when);
    for c in conditions {
        let value = u64::from(c.value);
        for arg in [
            value,
            value | 0xffff_ffff_0000_0000,
            value | u64::from(!c.mask),
            value ^ 1,
            u64::from(c.value & !(c.value & c.value.wrapping_neg())),
        ] {
            sets.push(with_arg(usize::from(c.index), arg));
        }
    }
    sets
}

#[test]
fn every_program_answers_as_its_rules_say_for_every_syscall_and_argument() {
    let all: Vec<&str> = table::names().collect();
    let cases: [(SeccompProfile, &[&str]); 6] = [
        (SeccompProfile::Default, &[]),
        (SeccompProfile::Strict, &[]),
        (SeccompProfile::None, &["ptrace"]),
        (SeccompProfile::None, &["read", "write", "exit_group"]),
        (
            SeccompProfile::Default,
            &["clone", "ioctl", "getppid", "read"],
        ),
        // Every syscall, conditional ones included.
        (SeccompProfile::Strict, &all),
    ];
    let args = argument_sets();
    for (profile, extra) in cases {
        let program = built(profile, extra);
        let oracle = Oracle::new(profile, extra);
        for nr in numbers() {
            for a in &args {
                assert_eq!(
                    run(program.instructions(), AUDIT_ARCH, i64::from(nr), *a),
                    oracle.expected(nr, *a),
                    "{profile} + {} extra denies: syscall {nr:#x}, args {a:x?}",
                    extra.len()
                );
            }
            let foreign = run(
                program.instructions(),
                AUDIT_ARCH_I386,
                i64::from(nr),
                [0; 6],
            );
            assert_eq!(foreign, libc::SECCOMP_RET_KILL_PROCESS);
        }
    }
}

#[test]
fn syscall_table_resolves_names() {
    assert_eq!(table::number("read"), Some(libc::SYS_read));
    assert_eq!(table::number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(table::number("open_tree_attr"), Some(467));
    assert_eq!(table::number(""), None);
    assert_eq!(table::number("SYS_read"), None);
}

// ---------------------------------------------------------------------------------------------
// Real kernel

/// In a child: no core files (the kill tests end in SIGSYS), no_new_privs, then `program`.
fn enter_filter(program: &SeccompProgram) -> Result<(), String> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on valid arguments.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err("PR_SET_NO_NEW_PRIVS".into());
        }
    }
    program
        .install()
        .map_err(|e| format!("install failed: {e}"))
}

fn cstr(path: &std::path::Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

/// A raw `clone`/`clone3` that succeeded in the new process must not run the test any further.
fn exit_if_new_process(rc: libc::c_long) {
    if rc == 0 {
        // SAFETY: leaves the accidental grandchild immediately.
        unsafe { libc::_exit(0) };
    }
    if rc > 0 {
        let _ = waitpid(nix::unistd::Pid::from_raw(rc as i32), None);
    }
}

/// Opens a pseudo-terminal pair; returns the slave fd.
fn open_pty_slave() -> Result<libc::c_int, String> {
    // SAFETY: standard pty calls; ptsname's static buffer is copied at once.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        if master < 0 || libc::grantpt(master) != 0 || libc::unlockpt(master) != 0 {
            return Err("cannot create a pty".into());
        }
        let name = libc::ptsname(master);
        if name.is_null() {
            return Err("ptsname".into());
        }
        let slave = libc::open(name, libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return Err("cannot open the pty slave".into());
        }
        Ok(slave)
    }
}

#[test]
fn kernel_default_profile_denies_and_allows() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.txt");
    std::fs::write(&file, b"hello").unwrap();
    let file = cstr(&file);
    let missing = cstr(&dir.path().join("missing"));
    let program = built(SeccompProfile::Default, &[]);

    assert_child_ok(|| {
        let pty = open_pty_slave()?;
        enter_filter(&program)?;
        // SAFETY (whole block): raw syscalls with valid or deliberately harmless arguments.
        unsafe {
            use libc::syscall;
            let none = c"none".as_ptr();
            let tmpfs = c"tmpfs".as_ptr();
            // Unfiltered, each of these either succeeds as root or fails with another errno.
            let rc = syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
            expect_errno("ptrace(TRACEME)", rc, libc::EPERM)?;
            let rc = syscall(libc::SYS_mount, none, missing.as_ptr(), tmpfs, 0, 0);
            expect_errno("mount", rc, libc::EPERM)?;
            let flags = (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong;
            let rc = syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
            exit_if_new_process(rc);
            expect_errno("clone(NEWNS)", rc, libc::EPERM)?;
            let mut args: libc::clone_args = std::mem::zeroed();
            args.exit_signal = libc::SIGCHLD as u64;
            let size = std::mem::size_of::<libc::clone_args>();
            let rc = syscall(libc::SYS_clone3, &mut args as *mut libc::clone_args, size);
            exit_if_new_process(rc);
            expect_errno("clone3", rc, libc::ENOSYS)?;
            // KEYCTL_GET_KEYRING_ID of the session keyring, no create.
            let rc = syscall(libc::SYS_keyctl, 0, -3, 0);
            expect_errno("keyctl", rc, libc::EPERM)?;
            let byte = b'x';
            let rc = syscall(libc::SYS_ioctl, pty, libc::TIOCSTI, &byte as *const u8);
            expect_errno("ioctl(TIOCSTI)", rc, libc::EPERM)?;
            let high = (cmd(libc::TIOCSTI)) | 1 << 32;
            let rc = syscall(libc::SYS_ioctl, pty, high, &byte as *const u8);
            expect_errno("ioctl(TIOCSTI | 1<<32)", rc, libc::EPERM)?;
            let rc = syscall(libc::SYS_ioctl, pty, libc::TIOCLINUX, &byte as *const u8);
            expect_errno("ioctl(TIOCLINUX)", rc, libc::EPERM)?;
            let rc = syscall(libc::SYS_socket, libc::AF_VSOCK, libc::SOCK_STREAM, 0);
            expect_errno("socket(AF_VSOCK)", rc, libc::EPERM)?;
            let rc = syscall(libc::SYS_personality, 0xffff_ffffu32);
            expect_errno("personality", rc, libc::EPERM)?;
            // Last: unfiltered, it would change what the checks above see.
            let rc = syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
            expect_errno("unshare(NEWUSER)", rc, libc::EPERM)?;

            // Ordinary work still goes through.
            expect_ok("getpid", syscall(libc::SYS_getpid))?;
            let mut size: libc::winsize = std::mem::zeroed();
            let rc = syscall(libc::SYS_ioctl, pty, libc::TIOCGWINSZ, &mut size);
            expect_ok("ioctl(TIOCGWINSZ)", rc)?;
            let fd = libc::open(file.as_ptr(), libc::O_RDONLY);
            expect_ok("open", fd.into())?;
            let mut buf = [0u8; 16];
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if &buf[..n.max(0) as usize] != b"hello" {
                return Err(format!("read returned {n}"));
            }
            let rc = syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_DGRAM, 0);
            expect_ok("socket(AF_INET)", rc)?;
            let rc = syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if rc == 0 {
                libc::_exit(7);
            }
            expect_ok("clone(SIGCHLD)", rc)?;
            match waitpid(nix::unistd::Pid::from_raw(rc as i32), None) {
                Ok(WaitStatus::Exited(_, 7)) => {}
                other => return Err(format!("raw clone child: {other:?}")),
            }
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(8);
            }
            match waitpid(nix::unistd::Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, 8)) => {}
                other => return Err(format!("fork child: {other:?}")),
            }
        }
        // posix_spawn tries clone3 first and must fall back to clone on ENOSYS.
        match std::process::Command::new("/bin/true").status() {
            Ok(status) if status.success() => Ok(()),
            other => Err(format!("spawning /bin/true: {other:?}")),
        }
    });
}

#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_kills_x32_syscalls() {
    let program = built(SeccompProfile::Default, &[]);
    let status = in_child(|| {
        enter_filter(&program)?;
        // SAFETY: an x32 getpid; the filter kills the process before the kernel sees it (a
        // kernel without x32 support would return ENOSYS, which fails the test).
        unsafe { libc::syscall(libc::SYS_getpid | 0x4000_0000) };
        Err("the x32 syscall returned".into())
    });
    assert!(
        matches!(
            status,
            WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
        ),
        "{status:?}"
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_kills_i386_entry_point() {
    let program = built(SeccompProfile::None, &["ptrace"]);
    let status = in_child(|| {
        enter_filter(&program)?;
        let mut rax: u64 = 20; // getpid in the i386 table
                               // SAFETY: `int 0x80` enters the compat syscall table; the kernel zeroes r8-r11.
        unsafe {
            std::arch::asm!(
                "int 0x80",
                inout("rax") rax,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                options(nostack),
            );
        }
        Err(format!("the i386 syscall returned {rax}"))
    });
    assert!(
        matches!(
            status,
            WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)
        ),
        "{status:?}"
    );
}

#[test]
fn kernel_strict_profile_denies_extras() {
    let dir = tempfile::tempdir().unwrap();
    let device = cstr(&dir.path().join("null-device"));
    let fifo = cstr(&dir.path().join("fifo"));
    let root = cstr(dir.path());
    let strict = built(SeccompProfile::Strict, &[]);
    let default = built(SeccompProfile::Default, &[]);

    assert_child_ok(|| {
        enter_filter(&strict)?;
        // SAFETY: raw syscalls; the device node would only land in the test's temp dir.
        unsafe {
            use libc::syscall;
            let rc = syscall(libc::SYS_syslog, 10, 0, 0); // SYSLOG_ACTION_SIZE_BUFFER
            expect_errno("syslog", rc, libc::EPERM)?;
            let mode = libc::S_IFCHR | 0o600;
            let dev = libc::makedev(1, 3);
            let rc = syscall(
                libc::SYS_mknodat,
                libc::AT_FDCWD,
                device.as_ptr(),
                mode,
                dev,
            );
            expect_errno("mknodat(S_IFCHR)", rc, libc::EPERM)?;
            let mode = libc::S_IFIFO | 0o600;
            let rc = syscall(libc::SYS_mknodat, libc::AT_FDCWD, fifo.as_ptr(), mode, 0);
            expect_ok("mknodat(S_IFIFO)", rc)?;
            let rc = syscall(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_RAW, 0);
            expect_errno("socket(AF_NETLINK)", rc, libc::EPERM)?;
            let rc = syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
            expect_errno("ptrace", rc, libc::EPERM)?;
            // Last: unfiltered, it would change what the paths above resolve to.
            let rc = syscall(libc::SYS_chroot, root.as_ptr());
            expect_errno("chroot", rc, libc::EPERM)?;
        }
        Ok(())
    });

    assert_child_ok(|| {
        enter_filter(&default)?;
        // SAFETY: raw syscalls with valid arguments.
        unsafe {
            let rc = libc::syscall(libc::SYS_syslog, 10, 0, 0);
            expect_ok("syslog under default", rc)?;
            let rc = libc::syscall(libc::SYS_socket, libc::AF_NETLINK, libc::SOCK_RAW, 0);
            expect_ok("socket(AF_NETLINK) under default", rc)?;
        }
        Ok(())
    });
}

#[test]
fn kernel_extra_deny_applies() {
    let program = built(SeccompProfile::Default, &["getppid"]);
    assert_child_ok(|| {
        enter_filter(&program)?;
        // SAFETY: argument-less syscalls.
        unsafe {
            expect_errno("getppid", libc::syscall(libc::SYS_getppid), libc::EPERM)?;
            expect_ok("getpid", libc::syscall(libc::SYS_getpid))?;
        }
        Ok(())
    });
}

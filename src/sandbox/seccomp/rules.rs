//! The deny lists of the built-in seccomp profiles, as plain data.
//!
//! Each entry names a syscall and, optionally, argument conditions. An entry without conditions
//! denies the syscall outright; an entry with conditions denies it only when at least one
//! condition matches (the conditions are alternatives). Every comparison looks at the low 32
//! bits of the argument only, which is what the kernel itself uses for these arguments (`int`
//! domains, `unsigned int` ioctl commands, `lower_32_bits(clone_flags)`, `umode_t`), so setting
//! high bits cannot slip past a rule.

/// A condition on one syscall argument: `(arg[index] as u32) & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ArgCondition {
    pub index: u8,
    pub mask: u32,
    pub value: u32,
}

impl ArgCondition {
    /// Matches when the argument equals `value` exactly (low 32 bits).
    const fn equals(index: u8, value: u32) -> Self {
        Self {
            index,
            mask: u32::MAX,
            value,
        }
    }

    /// Matches when every bit of `bits` is set in the argument.
    const fn has_bits(index: u8, bits: u32) -> Self {
        Self {
            index,
            mask: bits,
            value: bits,
        }
    }

    /// Matches when the file-type bits of a mode argument equal `file_type`.
    const fn file_type(index: u8, file_type: u32) -> Self {
        Self {
            index,
            mask: libc::S_IFMT,
            value: file_type,
        }
    }
}

/// One deny entry of a profile.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DenyRule {
    /// The syscall name, as in `man 2`.
    pub syscall: &'static str,
    /// Alternatives; empty means "always".
    pub when: &'static [ArgCondition],
    /// How the entry reads in reports, e.g. `"socket(AF_VSOCK)"`.
    pub label: &'static str,
}

const fn always(syscall: &'static str) -> DenyRule {
    DenyRule {
        syscall,
        when: &[],
        label: syscall,
    }
}

const fn when(
    syscall: &'static str,
    when: &'static [ArgCondition],
    label: &'static str,
) -> DenyRule {
    DenyRule {
        syscall,
        when,
        label,
    }
}

/// `memfd_create`'s flag for an executable memfd (linux/memfd.h; not in every libc yet).
const MFD_EXEC: u32 = 0x10;
/// `memfd_create`'s flag for a memfd sealed against ever being executable.
const MFD_NOEXEC_SEAL: u32 = 0x08;

/// For a caller without root, who cannot set `vm.memfd_noexec` for the
/// job's pid namespace (the sysctl file is the host root's): every memfd
/// must be made sealed against exec, which is what the sysctl would do.
pub(crate) const UNSEALED_MEMFD: DenyRule = when(
    "memfd_create",
    &[ArgCondition {
        index: 1,
        mask: MFD_NOEXEC_SEAL,
        value: 0,
    }],
    "memfd_create(without MFD_NOEXEC_SEAL)",
);

// The constants are small positive values; `as u32` keeps their bit pattern.
const CLONE_NAMESPACE_FLAGS: [ArgCondition; 8] = [
    ArgCondition::has_bits(0, libc::CLONE_NEWNS as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWUTS as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWIPC as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWUSER as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWPID as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWNET as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWCGROUP as u32),
    ArgCondition::has_bits(0, libc::CLONE_NEWTIME as u32),
];

const TERMINAL_INJECTION: [ArgCondition; 2] = [
    ArgCondition::equals(1, libc::TIOCSTI as u32),
    ArgCondition::equals(1, libc::TIOCLINUX as u32),
];

#[cfg(target_arch = "x86_64")]
const DEVICE_NODE_MKNOD: [ArgCondition; 2] = [
    ArgCondition::file_type(1, libc::S_IFCHR),
    ArgCondition::file_type(1, libc::S_IFBLK),
];

const DEVICE_NODE_MKNODAT: [ArgCondition; 2] = [
    ArgCondition::file_type(2, libc::S_IFCHR),
    ArgCondition::file_type(2, libc::S_IFBLK),
];

/// A setuid or setgid bit in the mode argument at `index`: a job never makes
/// set-id files, which would outlive it on disk with their owner's rights.
const fn set_id_bits(index: u8) -> [ArgCondition; 2] {
    [
        ArgCondition::has_bits(index, libc::S_ISUID),
        ArgCondition::has_bits(index, libc::S_ISGID),
    ]
}

const MODE_ARG_1: [ArgCondition; 2] = set_id_bits(1);
const MODE_ARG_2: [ArgCondition; 2] = set_id_bits(2);
const MODE_ARG_3: [ArgCondition; 2] = set_id_bits(3);

/// The `default` profile: what no agent or CI job needs and what is the usual door out of a
/// sandbox or into the kernel's less-audited corners. Tracing other processes or taking their
/// descriptors and memory advice, kernel modules and kexec, eBPF and perf, the kernel keyring,
/// every mount API, new namespaces (`unshare`, `setns`, `clone` with a `CLONE_NEW*` flag),
/// io_uring (which bypasses seccomp for the operations it performs), userfaultfd (a
/// race-widening primitive), `personality` (can re-enable legacy address-space layouts),
/// accounting, swap, reboot, terminal input injection (`TIOCSTI`, `TIOCLINUX`), vsock (a
/// channel to the hypervisor), setuid and setgid bits on any file the job makes or changes,
/// and executable memfds (`MFD_EXEC`).
pub(crate) const DEFAULT: &[DenyRule] = &[
    always("ptrace"),
    always("process_vm_readv"),
    always("process_vm_writev"),
    always("pidfd_getfd"),
    always("kcmp"),
    always("process_madvise"),
    #[cfg(target_arch = "x86_64")]
    when("chmod", &MODE_ARG_1, "chmod(S_ISUID|S_ISGID)"),
    when("fchmod", &MODE_ARG_1, "fchmod(S_ISUID|S_ISGID)"),
    when("fchmodat", &MODE_ARG_2, "fchmodat(S_ISUID|S_ISGID)"),
    when("fchmodat2", &MODE_ARG_2, "fchmodat2(S_ISUID|S_ISGID)"),
    #[cfg(target_arch = "x86_64")]
    when("open", &MODE_ARG_2, "open(S_ISUID|S_ISGID)"),
    when("openat", &MODE_ARG_3, "openat(S_ISUID|S_ISGID)"),
    #[cfg(target_arch = "x86_64")]
    when("creat", &MODE_ARG_1, "creat(S_ISUID|S_ISGID)"),
    #[cfg(target_arch = "x86_64")]
    when("mkdir", &MODE_ARG_1, "mkdir(S_ISUID|S_ISGID)"),
    when("mkdirat", &MODE_ARG_2, "mkdirat(S_ISUID|S_ISGID)"),
    #[cfg(target_arch = "x86_64")]
    when("mknod", &MODE_ARG_1, "mknod(S_ISUID|S_ISGID)"),
    when("mknodat", &MODE_ARG_2, "mknodat(S_ISUID|S_ISGID)"),
    when(
        "memfd_create",
        &[ArgCondition::has_bits(1, MFD_EXEC)],
        "memfd_create(MFD_EXEC)",
    ),
    always("kexec_load"),
    always("kexec_file_load"),
    always("init_module"),
    always("finit_module"),
    always("delete_module"),
    always("bpf"),
    always("perf_event_open"),
    always("keyctl"),
    always("add_key"),
    always("request_key"),
    always("mount"),
    always("umount2"),
    always("pivot_root"),
    always("move_mount"),
    always("fsopen"),
    always("fsmount"),
    always("fsconfig"),
    always("fspick"),
    always("open_tree"),
    always("open_tree_attr"),
    always("mount_setattr"),
    always("unshare"),
    always("setns"),
    when("clone", &CLONE_NAMESPACE_FLAGS, "clone(CLONE_NEW*)"),
    always("io_uring_setup"),
    always("io_uring_enter"),
    always("io_uring_register"),
    always("userfaultfd"),
    always("personality"),
    always("acct"),
    always("swapon"),
    always("swapoff"),
    always("reboot"),
    when("ioctl", &TERMINAL_INJECTION, "ioctl(TIOCSTI|TIOCLINUX)"),
    when(
        "socket",
        &[ArgCondition::equals(0, libc::AF_VSOCK as u32)],
        "socket(AF_VSOCK)",
    ),
];

/// What the `strict` profile adds to `default`, for untrusted code: file handles (the classic
/// container escape through `open_by_handle_at`), `chroot`, quotas, the system clock, host and domain names, device nodes,
/// `vmsplice` (a history of page-cache bugs), netlink and packet sockets (routing, firewall and
/// raw-frame interfaces; note that `ip` and `getifaddrs` need netlink), fanotify, the kernel
/// log, and obsolete syscalls nobody should call (`lookup_dcookie`, `uselib`, `ustat`,
/// `sysfs`, `modify_ldt`, `iopl`, `ioperm`, `vhangup`) plus `memfd_secret`.
pub(crate) const STRICT_EXTRA: &[DenyRule] = &[
    always("open_by_handle_at"),
    always("name_to_handle_at"),
    always("chroot"),
    always("quotactl"),
    always("quotactl_fd"),
    always("settimeofday"),
    always("clock_settime"),
    always("clock_adjtime"),
    always("adjtimex"),
    always("sethostname"),
    always("setdomainname"),
    #[cfg(target_arch = "x86_64")]
    when("mknod", &DEVICE_NODE_MKNOD, "mknod(S_IFCHR|S_IFBLK)"),
    when("mknodat", &DEVICE_NODE_MKNODAT, "mknodat(S_IFCHR|S_IFBLK)"),
    always("vmsplice"),
    when(
        "socket",
        &[
            ArgCondition::equals(0, libc::AF_NETLINK as u32),
            ArgCondition::equals(0, libc::AF_PACKET as u32),
        ],
        "socket(AF_NETLINK|AF_PACKET)",
    ),
    always("fanotify_init"),
    always("syslog"),
    always("lookup_dcookie"),
    always("memfd_secret"),
    always("vhangup"),
    #[cfg(target_arch = "x86_64")]
    always("uselib"),
    #[cfg(target_arch = "x86_64")]
    always("ustat"),
    #[cfg(target_arch = "x86_64")]
    always("sysfs"),
    #[cfg(target_arch = "x86_64")]
    always("modify_ldt"),
    #[cfg(target_arch = "x86_64")]
    always("iopl"),
    #[cfg(target_arch = "x86_64")]
    always("ioperm"),
];

//! Seccomp deny-list filters for the job's process tree.
//!
//! The filter is compiled in the supervisor **before** the clone ([`build`]); the child then only
//! calls [`SeccompProgram::install`], which is one raw `seccomp(2)` call on prebuilt memory (no
//! allocation, no locks), right before `execve` and after `no_new_privs` is set.
//!
//! Layout of the program:
//! 1. a prefix: kill the process on any architecture other than the build target's (a 64-bit
//!    process can still enter the i386 syscall table with `int 0x80`, where the numbers mean
//!    different syscalls); on x86_64 kill it on x32 syscall numbers (bit 30 set, the same
//!    syscalls under numbers a deny list keyed on x86_64 numbers would not match); and answer
//!    `clone3` and `openat2` with `ENOSYS`, because their flags and modes live in memory a
//!    filter cannot read, so glibc falls back to `clone` and `openat`, whose arguments the
//!    filter can inspect;
//! 2. one block per denied syscall, in number order: `EPERM` for a denied syscall (or a
//!    conditional one whose arguments match); allow for everything else, at the end.
//!
//! Every jump lands inside its own block or on the instruction right after it, so no offset
//! comes near the 255 instructions a conditional jump of classic BPF can reach.
//!
//! This is a deny list: syscalls added to future kernels are allowed until listed here.

mod rules;
mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use nix::errno::Errno;

use rules::{ArgCondition, DenyRule};

/// Which built-in deny list a job runs under (policy key `seccomp`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Denies what no ordinary build, test or agent tool needs (see [`denied_syscalls`]).
    Default,
    /// `Default` plus more, for untrusted code; some tools (`ip`, `getifaddrs`) lose netlink.
    Strict,
    /// No built-in deny list (a policy's extra denies still apply).
    None,
}

impl SeccompProfile {
    /// The policy spelling: `"default"`, `"strict"` or `"none"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SeccompProfile::Default => "default",
            SeccompProfile::Strict => "strict",
            SeccompProfile::None => "none",
        }
    }
}

impl fmt::Display for SeccompProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SeccompProfile {
    type Err = SeccompError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "default" => Ok(SeccompProfile::Default),
            "strict" => Ok(SeccompProfile::Strict),
            "none" => Ok(SeccompProfile::None),
            other => Err(SeccompError::UnknownProfile(other.to_string())),
        }
    }
}

/// Why a filter could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompError {
    /// A profile name other than `default`, `strict`, `none`.
    UnknownProfile(String),
    /// A name in the extra denies is not a syscall of this architecture.
    UnknownSyscall {
        /// The name as given.
        name: String,
        /// The architecture it was looked up for.
        arch: &'static str,
    },
    /// The rules cannot be laid out as a program (a jump out of reach).
    Compile(String),
    /// The program is longer than the kernel accepts (4096 instructions).
    TooLarge {
        /// Instructions in the program.
        instructions: usize,
    },
}

impl fmt::Display for SeccompError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeccompError::UnknownProfile(name) => write!(
                f,
                "unknown seccomp profile {name:?}: use \"default\", \"strict\" or \"none\""
            ),
            SeccompError::UnknownSyscall { name, arch } => write!(
                f,
                "unknown syscall {name:?} in the seccomp extra denies: {arch} has no syscall of \
                 that name (use the name from `man 2`, e.g. \"ptrace\", without a prefix)"
            ),
            SeccompError::Compile(message) => {
                write!(f, "cannot compile the seccomp filter: {message}")
            }
            SeccompError::TooLarge { instructions } => write!(
                f,
                "the seccomp filter has {instructions} BPF instructions, more than the kernel's \
                 limit of {MAX_INSTRUCTIONS}: shorten the extra denies"
            ),
        }
    }
}

impl std::error::Error for SeccompError {}

/// A compiled filter, ready for [`SeccompProgram::install`] in the child.
#[derive(Clone)]
pub struct SeccompProgram {
    filter: Vec<libc::sock_filter>,
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.filter.len())
            .finish()
    }
}

impl SeccompProgram {
    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.filter.len()
    }

    /// Always false for a built program (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// The raw instructions (for inspection and tests).
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }

    /// Installs the filter on the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER, 0, …)`.
    ///
    /// Child-side: no allocation, no locks. `no_new_privs` must already be set (without it the
    /// kernel answers `EACCES` unless the caller has `CAP_SYS_ADMIN`). The filter is inherited by
    /// every later child and survives `execve`.
    pub fn install(&self) -> Result<(), Errno> {
        let Ok(len) = u16::try_from(self.filter.len()) else {
            return Err(Errno::EINVAL);
        };
        let program = libc::sock_fprog {
            len,
            // The kernel only reads through this pointer.
            filter: self.filter.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points at `len` initialised instructions that outlive the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &program as *const libc::sock_fprog,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    }
}

/// Compiles the filter for `profile` plus `extra_deny` (syscall names, denied outright with
/// `EPERM`; an extra deny of a syscall the profile denies conditionally makes it unconditional).
///
/// Returns `Ok(None)` for [`SeccompProfile::None`] without extra denies. With extra denies,
/// `None` still yields a filter: the policy asked for those syscalls to be refused, and dropping
/// that request silently would widen the sandbox.
/// `seal_memfds`: refuse memfds not sealed against exec (see
/// [`rules::UNSEALED_MEMFD`]); only with a profile.
pub fn build(
    profile: SeccompProfile,
    extra_deny: &[String],
    seal_memfds: bool,
) -> Result<Option<SeccompProgram>, SeccompError> {
    let mut denies: BTreeMap<u32, Option<Vec<ArgCondition>>> = BTreeMap::new();
    let sealing =
        (seal_memfds && profile != SeccompProfile::None).then_some(&rules::UNSEALED_MEMFD);
    for rule in profile_rules(profile).chain(sealing) {
        let nr = resolve(rule.syscall)?;
        add_deny(&mut denies, nr, rule.when);
    }
    for name in extra_deny {
        let nr = resolve(name)?;
        add_deny(&mut denies, nr, &[]);
    }
    if profile == SeccompProfile::None && denies.is_empty() {
        return Ok(None);
    }

    let mut program = prefix();
    for (nr, conditions) in &denies {
        deny_block(*nr, conditions.as_deref().unwrap_or_default(), &mut program)?;
    }
    program.push(stmt(BPF_RET_K, RET_ALLOW));
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLarge {
            instructions: program.len(),
        });
    }
    Ok(Some(SeccompProgram { filter: program }))
}

/// What `profile` denies, for reports: syscall names, conditional entries with their condition
/// (`"clone(CLONE_NEW*)"`), and `"clone3(ENOSYS)"`, `"openat2(ENOSYS)"` for the redirects
/// every filter has.
/// Excludes the architecture checks, which refuse foreign and x32 syscall entry points outright.
pub fn denied_syscalls(profile: SeccompProfile) -> Vec<&'static str> {
    if profile == SeccompProfile::None {
        return Vec::new();
    }
    let mut names = vec!["clone3(ENOSYS)", "openat2(ENOSYS)"];
    names.extend(profile_rules(profile).map(|rule| rule.label));
    names
}

/// The kernel's `BPF_MAXINSNS`.
const MAX_INSTRUCTIONS: usize = 4096;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
#[cfg(target_arch = "x86_64")]
const ARCH_NAME: &str = "x86_64";

#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
#[cfg(target_arch = "aarch64")]
const ARCH_NAME: &str = "aarch64";

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("agent-exec's seccomp filter supports x86_64 and aarch64 only");

/// Bit 30 of the syscall number marks the x32 ABI on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Classic BPF opcodes (linux/bpf_common.h), as the u16 `code` field wants them:
// class | size | mode, or class | op | source.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0x00) | BPF_W (0x00) | BPF_ABS (0x20)
const BPF_JEQ_K: u16 = 0x05 | 0x10;
#[cfg(target_arch = "x86_64")]
const BPF_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;
const BPF_ALU_AND_K: u16 = 0x04 | 0x50;

// Offsets in `struct seccomp_data`: `nr` (u32), `arch` (u32), `instruction_pointer` (u64),
// `args[6]` (u64).
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;

const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp layout loads the low half of a 64-bit argument at its first byte");

const fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The hand-written head of every program (see the module documentation). Each jump either
/// skips exactly the one `RET` that follows it or falls through to it.
fn prefix() -> Vec<libc::sock_filter> {
    let mut program = vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, DATA_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    program.extend([
        jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
    ]);
    // Syscalls whose arguments a filter cannot read, answered as a kernel
    // without them would: libc falls back to one it can (`clone`, whose
    // namespace flags are checked; `openat`, whose mode is). Small positive
    // numbers.
    for nr in [libc::SYS_clone3, libc::SYS_openat2] {
        program.extend([
            jump(BPF_JEQ_K, nr as u32, 0, 1),
            stmt(BPF_RET_K, RET_ENOSYS),
        ]);
    }
    program
}

/// The block of one denied syscall, entered with its number in the accumulator: on to the
/// next block for any other number; `EPERM` for this one, always (no conditions) or when any
/// condition matches (the arguments are loaded, so the block then ends in a `ret` either way).
fn deny_block(
    nr: u32,
    conditions: &[ArgCondition],
    out: &mut Vec<libc::sock_filter>,
) -> Result<(), SeccompError> {
    if conditions.is_empty() {
        out.push(jump(BPF_JEQ_K, nr, 0, 1));
        out.push(stmt(BPF_RET_K, RET_EPERM));
        return Ok(());
    }
    let mut checks = Vec::new();
    for c in conditions {
        checks.push(stmt(BPF_LD_W_ABS, DATA_ARGS + 8 * u32::from(c.index)));
        if c.mask != u32::MAX {
            checks.push(stmt(BPF_ALU_AND_K, c.mask));
        }
        checks.push(jump(BPF_JEQ_K, c.value, 0, 0)); // to the `ret EPERM`, set below
    }
    checks.push(stmt(BPF_RET_K, RET_ALLOW));
    let deny_at = checks.len();
    for (at, insn) in checks.iter_mut().enumerate() {
        if insn.code == BPF_JEQ_K {
            insn.jt = u8::try_from(deny_at - at - 1).map_err(|_| {
                SeccompError::Compile(format!("the conditions of syscall {nr} are too long"))
            })?;
        }
    }
    checks.push(stmt(BPF_RET_K, RET_EPERM));
    let skip = u8::try_from(checks.len()).map_err(|_| {
        SeccompError::Compile(format!("the conditions of syscall {nr} are too long"))
    })?;
    out.push(jump(BPF_JEQ_K, nr, 0, skip));
    out.extend(checks);
    Ok(())
}

fn profile_rules(profile: SeccompProfile) -> impl Iterator<Item = &'static DenyRule> {
    let (base, extra): (&[DenyRule], &[DenyRule]) = match profile {
        SeccompProfile::Default => (rules::DEFAULT, &[]),
        SeccompProfile::Strict => (rules::DEFAULT, rules::STRICT_EXTRA),
        SeccompProfile::None => (&[], &[]),
    };
    base.iter().chain(extra)
}

fn resolve(name: &str) -> Result<u32, SeccompError> {
    // Syscall numbers are small and non-negative: the table holds nothing else.
    let number = table::number(name).and_then(|nr| u32::try_from(nr).ok());
    number.ok_or_else(|| SeccompError::UnknownSyscall {
        name: name.to_string(),
        arch: ARCH_NAME,
    })
}

/// Records a deny of `nr` under `conditions` (empty: always). "Always" absorbs conditions;
/// conditional entries for one syscall add up as alternatives.
fn add_deny(
    denies: &mut BTreeMap<u32, Option<Vec<ArgCondition>>>,
    nr: u32,
    conditions: &[ArgCondition],
) {
    let entry = denies.entry(nr).or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), conditions.is_empty()) {
        (None, _) => {}
        (Some(_), true) => *entry = None,
        (Some(existing), false) => existing.extend_from_slice(conditions),
    }
}

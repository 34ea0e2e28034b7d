//! pid 1 of a job's pid namespace: a freshly exec'd agent-exec, not a copy
//! of the supervisor.
//!
//! The kernel drops every signal that a namespace's init has no handler for,
//! so a command running as pid 1 would ignore the timeout's SIGTERM and leave
//! its orphans unreaped. The command therefore runs as pid 2 and pid 1 is this
//! init. Were it a fork of the supervisor, the job could read the caller's
//! environment, command line and memory through `/proc/1`, take its
//! descriptors, or write a forged wait status into its status pipe. So the
//! child, once every layer is in force, forks the command (held until the
//! init is up) and execs this binary again under the name [`NAME`] with an
//! empty environment. The init makes itself non-dumpable before the command
//! may go on, so nothing in `/proc/1` but its command line
//! (`agent-exec-init`, two descriptor numbers and whether it forwards
//! signals) is readable to the job, and
//! it keeps only its status pipe, which the job never holds.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The name the init runs under (`argv[0]`), which is how `main` knows it.
pub const NAME: &str = "agent-exec-init";

/// The pid the command gets: the first fork of a fresh pid namespace's init.
pub(super) const COMMAND_PID: i32 = 2;

/// What the child needs to exec the init, prepared by the parent before the
/// clone: this binary as an `O_PATH` descriptor (the new root does not hold
/// it) and the init's argument vector.
pub(super) struct InitImage<'a> {
    exe: BorrowedFd<'a>,
    argv: [CString; 4],
    argv_ptrs: [*const libc::c_char; 5],
    envp_ptrs: [*const libc::c_char; 1],
}

/// Opens the running binary; what the kernel shows as `/proc/self/exe`
/// is the very file this process runs, even if it was replaced on disk.
pub fn open_exe() -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open("/proc/self/exe")?;
    Ok(OwnedFd::from(file))
}

impl<'a> InitImage<'a> {
    /// The init's argv: its name, the status pipe, the hold pipe, and
    /// whether it forwards signals to its namespace (`forward`: the job has
    /// no cgroup through which the supervisor reaches every process).
    pub(super) fn new(
        exe: BorrowedFd<'a>,
        status: RawFd,
        hold: RawFd,
        forward: bool,
    ) -> InitImage<'a> {
        let number = |fd: RawFd| CString::new(fd.to_string()).unwrap_or_default();
        let argv = [
            CString::new(NAME).unwrap_or_default(),
            number(status),
            number(hold),
            CString::from(if forward { c"forward" } else { c"-" }),
        ];
        // The CStrings' heap buffers do not move when the image does.
        let argv_ptrs = [
            argv[0].as_ptr(),
            argv[1].as_ptr(),
            argv[2].as_ptr(),
            argv[3].as_ptr(),
            std::ptr::null(),
        ];
        InitImage {
            exe,
            argv,
            argv_ptrs,
            envp_ptrs: [std::ptr::null()],
        }
    }

    /// Execs the init; returns only on failure, with the errno.
    ///
    /// # Safety
    /// To be called in the cloned child only, as pid 1 of the job's pid namespace.
    pub(super) unsafe fn exec(&self) -> i32 {
        let _ = &self.argv;
        libc::syscall(
            libc::SYS_execveat,
            self.exe.as_raw_fd(),
            c"".as_ptr(),
            self.argv_ptrs.as_ptr(),
            self.envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }
}

/// Whether this process was started as the job's init.
pub fn is_init(argv0: Option<&OsStr>) -> bool {
    argv0.is_some_and(|a| Path::new(a).file_name() == Some(OsStr::new(NAME)))
}

/// The init's whole life: release the command, reap everything, and when
/// the command ends tell the supervisor its wait status and how many
/// processes it left behind, then exit (the kernel kills whatever is left in
/// the namespace).
pub fn main(args: Vec<OsString>) -> ! {
    // SAFETY (whole function): plain syscalls on our own process and on
    // descriptors the child handed us by number.
    unsafe {
        // Before anything of the job runs: /proc/1's environ, mem, fd and
        // maps become unreadable to the job (ptrace checks, and no
        // capabilities in the job to pass them).
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let fd = |i: usize| {
            args.get(i)
                .and_then(|a| a.to_str())
                .and_then(|a| a.parse::<RawFd>().ok())
                .filter(|fd| *fd > 2)
        };
        let (Some(status), Some(hold), 1) = (fd(1), fd(2), libc::getpid()) else {
            eprintln!("{NAME} is agent-exec's init inside a job; it is not run by hand");
            libc::_exit(2);
        };
        // Without a cgroup the supervisor reaches the job only through us.
        // The kernel delivers a signal from outside the namespace to its
        // init only where the init has a handler for it.
        if args.get(3).is_some_and(|a| a == "forward") {
            forward_signals();
        }
        // What was held for us until now arrives (see hold_forwarded_signals).
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        // The job keeps its stdio; the init holds nothing but its status pipe.
        for stdio in 0..3 {
            libc::close(stdio);
        }
        libc::fcntl(status, libc::F_SETFD, libc::FD_CLOEXEC);
        // Release the command, which waits for this byte before its exec.
        let go = 1u8;
        libc::write(hold, (&go as *const u8).cast(), 1);
        libc::close(hold);
        loop {
            let mut wait_status = 0;
            let pid = libc::waitpid(-1, &mut wait_status, 0);
            if pid == COMMAND_PID {
                let leftovers = count_other_processes();
                let mut msg = [0u8; 8];
                msg[..4].copy_from_slice(&wait_status.to_ne_bytes());
                msg[4..].copy_from_slice(&leftovers.to_ne_bytes());
                libc::write(status, msg.as_ptr().cast(), msg.len());
                libc::_exit(0);
            }
            if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(0);
            }
        }
    }
}

/// Signals that are requests (not faults of our own, not the child
/// notices we wait for, not SIGPIPE of our status pipe).
const FORWARDED: [libc::c_int; 19] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGPOLL,
    libc::SIGPWR,
];

/// Child side, before the init's exec: the signals it may forward wait
/// (blocked signals stay pending across exec) until its handlers are in
/// place, so that a `kill` in the first instants is not lost.
///
/// # Safety
/// Raw syscalls only; for the cloned child.
pub(super) unsafe fn hold_forwarded_signals() {
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    for signal in FORWARDED {
        libc::sigaddset(&mut set, signal);
    }
    libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
}

/// The signals the init is sent are passed on to every process of the
/// namespace.
///
/// # Safety
/// For the init only: it changes the process's signal dispositions.
unsafe fn forward_signals() {
    extern "C" fn forward(signal: libc::c_int) {
        // SAFETY: kill is async-signal-safe; -1 from a namespace's init
        // reaches every other process of the namespace.
        unsafe { libc::kill(-1, signal) };
    }
    for signal in FORWARDED {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// Processes in our pid namespace other than us, from our fresh /proc.
fn count_other_processes() -> u32 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.as_encoded_bytes();
            !name.is_empty() && name.iter().all(u8::is_ascii_digit) && name != b"1"
        })
        .count() as u32
}

/// The dynamic loader this binary needs (its ELF `PT_INTERP`), or `None`
/// for a static build. The init runs inside the job's view, so a dynamic
/// build needs the policy to grant exec on its loader there.
pub fn interpreter() -> Option<std::path::PathBuf> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open("/proc/self/exe").ok()?;
    let mut head = [0u8; 64];
    file.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" || head[4] != 2 {
        return None;
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as u64;
    let u64_at = |b: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let (phoff, phentsize, phnum) = (
        u64_at(&head, 0x20),
        u16_at(&head, 0x36),
        u16_at(&head, 0x38),
    );
    for i in 0..phnum.min(64) {
        let mut ph = [0u8; 56];
        file.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        file.read_exact(&mut ph).ok()?;
        const PT_INTERP: u32 = 3;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) == PT_INTERP {
            let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32).min(4096));
            let mut path = vec![0u8; size as usize];
            file.seek(SeekFrom::Start(offset)).ok()?;
            file.read_exact(&mut path).ok()?;
            let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
            path.truncate(end);
            let path: OsString = std::os::unix::ffi::OsStringExt::from_vec(path);
            return Some(std::path::PathBuf::from(path));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loader_of_this_build_is_found_or_it_is_static() {
        // Test binaries are built like the tool: dynamic unless built static.
        if let Some(path) = interpreter() {
            assert!(path.is_absolute(), "{path:?}");
            assert!(path.exists(), "{path:?}");
        }
    }

    #[test]
    fn only_the_init_name_starts_the_init() {
        assert!(is_init(Some(OsStr::new("agent-exec-init"))));
        assert!(is_init(Some(OsStr::new("/x/agent-exec-init"))));
        assert!(!is_init(Some(OsStr::new("agent-exec"))));
        assert!(!is_init(None));
    }
}

//! The child's side of the launch, from clone to execve, in the order the
//! kernel needs: mounts need the capabilities the new user namespace gave
//! us, so they come before the capabilities are dropped; no_new_privs comes
//! before Landlock and seccomp, which require it; seccomp comes last so that
//! the filter does not have to allow the setup syscalls.
//!
//! Only raw syscalls here: everything was allocated by the parent before the
//! clone. Each step either succeeds, or writes a record (stage, errno) to the
//! report pipe: fatal under strict enforcement (the parent turns it into a
//! launch failure), a "not applied" note under best effort.

use std::os::fd::AsRawFd;

use super::landlock::{Enforcement, LandlockStatus};
use super::{namespaces, ChildArgs, LaunchError, LaunchPlan};

/// Steps of the child, numbered for the report pipe.
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Released = 1,
    Stdio = 2,
    Session = 3,
    Cwd = 4,
    Fds = 5,
    Exec = 6,
    MountPrivate = 7,
    MountProc = 8,
    MountTmpfs = 9,
    Loopback = 10,
    Hostname = 11,
    Rlimits = 12,
    Caps = 13,
    NoNewPrivs = 14,
    Landlock = 15,
    Seccomp = 16,
    Init = 17,
    Cgroup = 18,
}

const LANDLOCK_RECORD: u32 = 100;
const SKIP_OFFSET: u32 = 200;

/// One message from the child.
pub(super) enum Record {
    Landlock(LandlockStatus),
    Skipped(u32, i32),
    Failed(u32, i32),
}

impl Record {
    pub(super) fn decode(kind: u32, value: i32) -> Record {
        if kind == LANDLOCK_RECORD {
            let status = match value {
                2 => Enforcement::FullyEnforced,
                1 => Enforcement::PartiallyEnforced,
                _ => Enforcement::NotEnforced,
            };
            return Record::Landlock(LandlockStatus {
                abi: super::landlock::kernel_abi(),
                status,
            });
        }
        if kind > SKIP_OFFSET {
            return Record::Skipped(kind - SKIP_OFFSET, value);
        }
        Record::Failed(kind, value)
    }
}

/// Runs in the cloned child; never returns.
pub(super) fn run(args: &ChildArgs<'_>) -> ! {
    let layers = &args.plan.layers;
    // SAFETY (whole function): we are the only thread of a freshly cloned
    // process; every pointer passed below points into memory the parent
    // prepared before the clone and that this copy still owns.
    unsafe {
        // Signals: the supervisor blocks some for its signalfd and Rust
        // ignores SIGPIPE; both would otherwise survive exec into the job.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }

        // Die with the supervisor: an unsupervised job must not run on. (In
        // a new pid namespace getppid() is 0; the `go` pipe below reaching
        // EOF is how a dead parent shows there.)
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if !layers.namespaces.pid && libc::getppid() != args.parent_pid {
            libc::_exit(125);
        }

        // Into the job's v1 cgroups (memory, pids, cpu) before anything of
        // the job runs: a thread moving itself skips the kernel's global
        // cgroup lock that moving another process waits on.
        if let Err(e) = super::cgroup::join_self(args.join_fds) {
            fail(args, Stage::Cgroup, e);
        }

        // Wait until the parent has finished our setup (uid/gid maps).
        let mut go = [0u8; 1];
        if libc::read(args.go, go.as_mut_ptr().cast(), 1) != 1 {
            fail(args, Stage::Released, 0);
        }

        // Mounts, in our own mount namespace: first make every mount private
        // so nothing we do propagates back to the host, then a /proc that
        // shows only our pid namespace, then the private tmpfs directories.
        if layers.namespaces.mount {
            step(args, Stage::MountPrivate, namespaces::make_mounts_private());
            if layers.fresh_proc {
                step(args, Stage::MountProc, namespaces::mount_fresh_proc());
            }
            for path in &layers.tmpfs {
                step(
                    args,
                    Stage::MountTmpfs,
                    namespaces::mount_tmpfs(path, 256 << 20),
                );
            }
        }
        if layers.loopback {
            step(args, Stage::Loopback, namespaces::bring_loopback_up());
        }
        if let Some(name) = &layers.hostname {
            step(args, Stage::Hostname, namespaces::set_hostname(name));
        }

        // stdio: stdin from /dev/null or the job's stdin file, out/err into the pumps.
        for (from, to) in [
            (args.stdio.stdin.as_raw_fd(), 0),
            (args.stdio.stdout.as_raw_fd(), 1),
            (args.stdio.stderr.as_raw_fd(), 2),
        ] {
            if libc::dup2(from, to) < 0 {
                fail(args, Stage::Stdio, errno());
            }
        }

        // A new session: no controlling terminal, so no TIOCSTI into the caller's.
        if libc::setsid() < 0 {
            fail(args, Stage::Session, errno());
        }
        if libc::chdir(args.plan.cwd.as_ptr()) != 0 {
            fail(args, Stage::Cwd, errno());
        }
        if let Err(e) = super::rlimits::apply(&layers.rlimits) {
            fail(args, Stage::Rlimits, e.errno as i32);
        }

        // Nothing of the supervisor's leaks into the job: every fd above 2
        // closes at exec. (Marked close-on-exec rather than closed now: the
        // Landlock ruleset and the report pipe are still needed until then.)
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            fail(args, Stage::Fds, errno());
        }

        // No capabilities in any set, the bounding set emptied, securebits locked.
        if let Err(e) = super::caps::drop_all(&layers.caps) {
            fail(args, Stage::Caps, e as i32);
        }
        // Always: no exec can grant privileges again (setuid bits, file caps).
        if let Err(e) = super::caps::set_no_new_privs() {
            fail(args, Stage::NoNewPrivs, e as i32);
        }

        if let Some(prepared) = layers.landlock.as_ref() {
            for (path, access) in &layers.landlock_child_rules {
                if prepared.add_path_rule_in_child(path, *access).is_err() {
                    fail(args, Stage::Landlock, errno());
                }
            }
            match prepared.restrict_self() {
                Ok(status) => {
                    let value = match status.status {
                        Enforcement::FullyEnforced => 2,
                        Enforcement::PartiallyEnforced => 1,
                        Enforcement::NotEnforced => 0,
                    };
                    record(args, LANDLOCK_RECORD, value);
                }
                Err(_) => fail(args, Stage::Landlock, errno()),
            }
        }

        if let Some(filter) = layers.seccomp.as_ref() {
            if let Err(e) = filter.install() {
                fail(args, Stage::Seccomp, e as i32);
            }
        }

        if layers.namespaces.pid {
            // We are pid 1 of the job's pid namespace. The kernel drops every
            // signal that init has no handler for, so a command running as
            // init would ignore the timeout's SIGTERM, and orphans would pile
            // up unreaped. Stay as a minimal init and run the command as pid 2,
            // inside every layer applied above.
            let job = libc::fork();
            if job < 0 {
                fail(args, Stage::Init, errno());
            }
            if job > 0 {
                libc::close(args.report); // the parent waits for EOF on it
                init_loop(job, args.init_status);
            }
        }
        exec(args.plan);
        fail(args, Stage::Exec, errno());
    }
}

/// pid 1 of the job: reap everything; when the command ends, tell the
/// supervisor its wait status and how many processes it left behind, then
/// exit (the kernel kills whatever is left in the namespace).
unsafe fn init_loop(job: i32, status_fd: i32) -> ! {
    loop {
        let mut status = 0;
        let pid = libc::waitpid(-1, &mut status, 0);
        if pid == job {
            let leftovers = count_other_processes();
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&status.to_ne_bytes());
            msg[4..].copy_from_slice(&leftovers.to_ne_bytes());
            libc::write(status_fd, msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
        if pid < 0 && errno() != libc::EINTR {
            libc::_exit(0);
        }
    }
}

/// Processes in our pid namespace other than us, read from our fresh /proc
/// with getdents64 into a stack buffer (no allocation).
unsafe fn count_other_processes() -> u32 {
    let fd = libc::open(
        c"/proc".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if fd < 0 {
        return 0;
    }
    let mut count = 0;
    let mut buf = [0u8; 8192];
    loop {
        let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64 { u64 ino; i64 off; u16 reclen; u8 type; char name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            let name = &name[..len];
            if !name.is_empty() && name.iter().all(u8::is_ascii_digit) && name != b"1" {
                count += 1;
            }
            off += reclen;
        }
    }
    libc::close(fd);
    count
}

/// A setup step: fatal under strict enforcement, a note under best effort.
fn step(args: &ChildArgs<'_>, stage: Stage, result: Result<(), nix::errno::Errno>) {
    if let Err(e) = result {
        if args.plan.layers.strict {
            fail(args, stage, e as i32);
        }
        record(args, SKIP_OFFSET + stage as u32, e as i32);
    }
}

unsafe fn exec(plan: &LaunchPlan) {
    // The pointer arrays were built by the parent, null-terminated.
    libc::execve(
        plan.program.as_ptr(),
        plan.argv_ptrs.as_ptr(),
        plan.envp_ptrs.as_ptr(),
    );
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn record(args: &ChildArgs<'_>, kind: u32, value: i32) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&kind.to_ne_bytes());
    msg[4..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: raw write of a stack buffer to the report pipe.
    unsafe { libc::write(args.report, msg.as_ptr().cast(), msg.len()) };
}

fn fail(args: &ChildArgs<'_>, stage: Stage, errno: i32) -> ! {
    record(args, stage as u32, errno);
    // SAFETY: exit without running destructors of the parent's copied state.
    unsafe {
        libc::_exit(if stage == Stage::Exec && errno == libc::ENOENT {
            127
        } else {
            126
        });
    }
}

fn stage_name(stage: u32) -> &'static str {
    match stage {
        1 => "release by the supervisor",
        2 => "stdio",
        3 => "new session",
        4 => "working directory",
        5 => "closing inherited descriptors",
        7 => "private mount propagation",
        8 => "fresh /proc",
        9 => "private tmpfs",
        10 => "loopback interface",
        11 => "hostname",
        12 => "rlimits",
        13 => "dropping capabilities",
        14 => "no_new_privs",
        15 => "landlock",
        16 => "seccomp",
        17 => "pid namespace init",
        18 => "joining the job's v1 cgroups",
        _ => "exec",
    }
}

/// A best-effort step the kernel refused, for `sandbox.not_applied`.
pub(super) fn describe_skip(stage: u32, errno: i32) -> String {
    format!(
        "{}: {}",
        stage_name(stage),
        std::io::Error::from_raw_os_error(errno)
    )
}

/// Turns a child's failure record into a message and a shell-style exit status.
pub(super) fn describe_failure(stage: u32, errno: i32, plan: &LaunchPlan) -> LaunchError {
    let err = std::io::Error::from_raw_os_error(errno);
    match stage {
        6 => LaunchError {
            message: format!("cannot execute {}: {err}", plan.program.to_string_lossy()),
            exit_code: if errno == libc::ENOENT { 127 } else { 126 },
            unavailable: false,
        },
        4 => LaunchError::runner(format!(
            "cannot enter the working directory {:?}: {err}",
            plan.cwd
        )),
        7..=16 => LaunchError::unavailable(format!(
            "the {} layer could not be applied: {err}",
            stage_name(stage)
        )),
        _ => LaunchError::runner(format!(
            "cannot start the job ({}): {err}",
            stage_name(stage)
        )),
    }
}

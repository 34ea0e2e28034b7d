//! The child's side of the launch, from clone to execve.
//!
//! Only raw syscalls here: everything was allocated by the parent before the
//! clone. A failing step writes (stage, errno) to the report pipe and exits;
//! the parent turns that into a `launch_failed` result.

use std::os::fd::AsRawFd;

use super::{ChildArgs, LaunchError, LaunchPlan};

/// Which step of the child failed (sent to the parent with the errno).
#[repr(u32)]
#[derive(Clone, Copy)]
enum Stage {
    Released = 1,
    Stdio = 2,
    Session = 3,
    Cwd = 4,
    Fds = 5,
    Exec = 6,
}

/// Runs in the cloned child; never returns.
pub(super) fn run(args: &ChildArgs<'_>) -> ! {
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

        // Die with the supervisor: an unsupervised job must not run on.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != args.parent_pid {
            libc::_exit(125); // the supervisor died before we could ask
        }

        // Wait until the parent has finished our setup (v1 cgroups).
        let mut go = [0u8; 1];
        if libc::read(args.go, go.as_mut_ptr().cast(), 1) != 1 {
            fail(args, Stage::Released, 0);
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

        // A new session: no controlling terminal, no signals from the caller's.
        if libc::setsid() < 0 {
            fail(args, Stage::Session, errno());
        }

        if libc::chdir(args.plan.cwd.as_ptr()) != 0 {
            fail(args, Stage::Cwd, errno());
        }

        // Nothing of the supervisor's leaks into the job: every fd above 2
        // closes at exec (the report pipe too, which is how success is seen).
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            fail(args, Stage::Fds, errno());
        }

        exec(args.plan);
        fail(args, Stage::Exec, errno());
    }
}

unsafe fn exec(plan: &LaunchPlan) {
    // Pointer arrays are built here, on the stack of the child, from the
    // parent's CStrings: bounded arrays, no allocation.
    const MAX: usize = 4096;
    let mut argv: [*const libc::c_char; MAX] = [std::ptr::null(); MAX];
    let mut envp: [*const libc::c_char; MAX] = [std::ptr::null(); MAX];
    for (i, a) in plan.argv.iter().take(MAX - 1).enumerate() {
        argv[i] = a.as_ptr();
    }
    for (i, e) in plan.envp.iter().take(MAX - 1).enumerate() {
        envp[i] = e.as_ptr();
    }
    libc::execve(plan.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fail(args: &ChildArgs<'_>, stage: Stage, errno: i32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: raw write of a stack buffer, then exit without running destructors.
    unsafe {
        libc::write(args.report, msg.as_ptr().cast(), msg.len());
        libc::_exit(
            if stage as u32 == Stage::Exec as u32 && errno == libc::ENOENT {
                127
            } else {
                126
            },
        );
    }
}

/// Turns a child's report into a message and a shell-style exit status.
pub(super) fn describe_failure(stage: u32, errno: i32, plan: &LaunchPlan) -> LaunchError {
    let err = std::io::Error::from_raw_os_error(errno);
    let program = plan.program.to_string_lossy();
    let (what, exit_code) = match stage {
        1 => (
            "the job was not released by its supervisor".to_string(),
            125,
        ),
        2 => (format!("cannot set up stdio: {err}"), 125),
        3 => (format!("cannot start a new session: {err}"), 125),
        4 => (
            format!("cannot enter the working directory {:?}: {err}", plan.cwd),
            125,
        ),
        5 => (format!("cannot close inherited descriptors: {err}"), 125),
        _ => (
            format!("cannot execute {program}: {err}"),
            if errno == libc::ENOENT { 127 } else { 126 },
        ),
    };
    LaunchError {
        message: what,
        exit_code,
    }
}

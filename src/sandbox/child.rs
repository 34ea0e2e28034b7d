//! The child's side of the launch, from clone to execve, in the order the
//! kernel needs: mounts need the capabilities the new user namespace gave
//! us, so they come before the capabilities are dropped; no_new_privs comes
//! before Landlock and seccomp, which require it; seccomp comes last so that
//! the filter does not have to allow the setup syscalls.
//!
//! Only raw syscalls here: everything was allocated by the parent before the
//! clone, and the child of a clone must not touch locks another thread of
//! the parent might have held. Each step either succeeds, or sends a
//! [`Record`] (stage, errno) on the report pipe: fatal under strict
//! enforcement (the parent turns it into a launch failure), a "not applied"
//! note under best effort.

use std::os::fd::AsRawFd;

use super::landlock::Coverage;
use super::{namespaces, ChildArgs, LaunchError, LaunchPlan};

/// The child's steps, in the order they run.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    Cgroup = 1,
    MemfdNoexec,
    Released,
    Identity,
    MountPrivate,
    NewRoot,
    MountProc,
    MountTmpfs,
    Loopback,
    Proxy,
    Hostname,
    Stdio,
    Session,
    Cwd,
    Rlimits,
    Fds,
    Caps,
    NoNewPrivs,
    Landlock,
    Seccomp,
    Init,
    Exec,
}

/// Who is to blame when a stage fails, which decides the error a caller sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FailureClass {
    /// agent-exec itself could not start the job (exit status 125).
    Runner,
    /// A sandbox layer the policy asks for could not be applied (`sandbox_unavailable`).
    Layer,
    /// The command could not be executed (126, or 127 when it does not exist).
    Exec,
}

impl Stage {
    const ALL: [Stage; 22] = [
        Stage::Cgroup,
        Stage::MemfdNoexec,
        Stage::Released,
        Stage::Identity,
        Stage::MountPrivate,
        Stage::NewRoot,
        Stage::MountProc,
        Stage::MountTmpfs,
        Stage::Loopback,
        Stage::Proxy,
        Stage::Hostname,
        Stage::Stdio,
        Stage::Session,
        Stage::Cwd,
        Stage::Rlimits,
        Stage::Fds,
        Stage::Caps,
        Stage::NoNewPrivs,
        Stage::Landlock,
        Stage::Seccomp,
        Stage::Init,
        Stage::Exec,
    ];

    fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| *s as u32 == n)
    }

    /// What the stage does, for messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Stage::Cgroup => "joining the job's v1 cgroups",
            Stage::MemfdNoexec => "no executable memfds (vm.memfd_noexec)",
            Stage::Released => "release by the supervisor",
            Stage::Identity => "unprivileged host identity",
            Stage::MountPrivate => "private mount propagation",
            Stage::NewRoot => "new root",
            Stage::MountProc => "fresh /proc",
            Stage::MountTmpfs => "private tmpfs",
            Stage::Loopback => "loopback interface",
            Stage::Proxy => "the proxy's socket in the job's network",
            Stage::Hostname => "hostname",
            Stage::Stdio => "stdio",
            Stage::Session => "new session",
            Stage::Cwd => "working directory",
            Stage::Rlimits => "rlimits",
            Stage::Fds => "closing inherited descriptors",
            Stage::Caps => "dropping capabilities",
            Stage::NoNewPrivs => "no_new_privs",
            Stage::Landlock => "landlock",
            Stage::Seccomp => "seccomp",
            Stage::Init => "pid namespace init",
            Stage::Exec => "exec",
        }
    }

    pub(super) fn class(self) -> FailureClass {
        match self {
            Stage::MemfdNoexec
            | Stage::Identity
            | Stage::MountPrivate
            | Stage::NewRoot
            | Stage::MountProc
            | Stage::MountTmpfs
            | Stage::Loopback
            | Stage::Hostname
            | Stage::Rlimits
            | Stage::Caps
            | Stage::NoNewPrivs
            | Stage::Landlock
            | Stage::Seccomp => FailureClass::Layer,
            Stage::Exec => FailureClass::Exec,
            Stage::Cgroup
            | Stage::Released
            | Stage::Stdio
            | Stage::Session
            | Stage::Cwd
            | Stage::Fds
            | Stage::Proxy
            | Stage::Init => FailureClass::Runner,
        }
    }
}

/// One message from the child on the report pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// The Landlock ruleset is in force, this much of it.
    Landlock(Coverage),
    /// A best-effort stage the kernel refused (errno).
    Skipped(Stage, i32),
    /// The launch stops here (errno).
    Failed(Stage, i32),
}

impl Record {
    pub(super) const SIZE: usize = 12;

    fn encode(self) -> [u8; Self::SIZE] {
        let (tag, a, b): (u32, u32, i32) = match self {
            Record::Landlock(c) => (1, c as u32, 0),
            Record::Skipped(stage, errno) => (2, stage as u32, errno),
            Record::Failed(stage, errno) => (3, stage as u32, errno),
        };
        let mut out = [0u8; Self::SIZE];
        out[..4].copy_from_slice(&tag.to_ne_bytes());
        out[4..8].copy_from_slice(&a.to_ne_bytes());
        out[8..].copy_from_slice(&b.to_ne_bytes());
        out
    }

    pub(super) fn decode(bytes: &[u8; Self::SIZE]) -> Option<Record> {
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let tag = u32::from_ne_bytes(word(0));
        let a = u32::from_ne_bytes(word(4));
        let b = i32::from_ne_bytes(word(8));
        match tag {
            1 => [
                Coverage::FullyEnforced,
                Coverage::PartiallyEnforced,
                Coverage::NotEnforced,
            ]
            .into_iter()
            .find(|c| *c as u32 == a)
            .map(Record::Landlock),
            2 => Some(Record::Skipped(Stage::from_u32(a)?, b)),
            3 => Some(Record::Failed(Stage::from_u32(a)?, b)),
            _ => None,
        }
    }
}

/// Runs in the cloned child; never returns.
pub(super) fn run(args: &ChildArgs<'_>) -> ! {
    let layers = &args.plan.layers;
    // SAFETY (whole function): we are the only thread of a freshly cloned
    // process; every pointer passed below points into memory the parent
    // prepared before the clone and that this copy still owns.
    unsafe {
        // Signals: the supervisor blocks some for its signalfd; they would
        // otherwise stay blocked across exec into the job.
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
        // the job runs (see `cgroup::SelfJoin` for why the child moves itself).
        if let Err(e) = super::cgroup::join_self(args.join_fds) {
            fail(args, Stage::Cgroup, e);
        }

        // While we are still the caller's identity, which the sysctl wants.
        if layers.memfd_sysctl {
            step(
                args,
                Stage::MemfdNoexec,
                namespaces::forbid_executable_memfds(),
            );
        }

        // Wait until the parent has finished our setup (uid/gid maps).
        let mut go = [0u8; 1];
        if libc::read(args.go, go.as_mut_ptr().cast(), 1) != 1 {
            fail(args, Stage::Released, 0);
        }

        // Who the job is on the host. In our user namespace, before the
        // mounts: the files they make must belong to a mapped id. (Our
        // capabilities there stay: the namespace's root is not mapped.)
        let switch_early = layers.namespaces.user;
        if let (Some((uid, gid)), true) = (layers.switch_ids, switch_early) {
            if let Err(e) = super::identity::become_ids(uid, gid) {
                fail(args, Stage::Identity, e);
            }
        }

        // Mounts, in our own mount namespace: first make every mount private
        // so nothing we do propagates back to the host, then a /proc that
        // shows only our pid namespace, then the private tmpfs directories.
        if layers.namespaces.mount {
            step(args, Stage::MountPrivate, namespaces::make_mounts_private());
            if let Some(root) = &layers.root {
                // No half-built view ever runs a job, whatever the enforcement.
                if let Err(e) = super::view::build(root, c"/tmp") {
                    fail(args, Stage::NewRoot, e as i32);
                }
            } else {
                if layers.fresh_proc {
                    step(args, Stage::MountProc, namespaces::mount_fresh_proc());
                }
                for path in &layers.tmpfs {
                    step(
                        args,
                        Stage::MountTmpfs,
                        namespaces::mount_tmpfs(path, layers.tmpfs_bytes),
                    );
                }
            }
        }
        if layers.loopback {
            step(args, Stage::Loopback, namespaces::bring_loopback_up());
        }
        // The job's only way out, or no way out: never a job without its proxy.
        if let Some(port) = layers.proxy_port {
            if let Err(e) = namespaces::hand_over_proxy_listener(port, args.proxy_channel) {
                fail(args, Stage::Proxy, e as i32);
            }
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
        // Without a user namespace we are the host's root until here, and
        // become the job's host user as the capabilities go.
        let switch_late = layers.switch_ids.filter(|_| !switch_early);
        if let Err(e) = super::caps::drop_all(&layers.caps, switch_late) {
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
                Ok(status) => send(args, Record::Landlock(status.status)),
                Err(_) => fail(args, Stage::Landlock, errno()),
            }
        }

        if let Some(filter) = layers.seccomp.as_ref() {
            if let Err(e) = filter.install() {
                fail(args, Stage::Seccomp, e as i32);
            }
        }

        if let Some(init) = args.init {
            // We are pid 1 of the job's pid namespace (see `init` for why
            // the command is pid 2 and pid 1 a fresh exec). The command is
            // forked now, inside every layer applied above, and waits for
            // the init to be up before its exec.
            let job = libc::fork();
            if job < 0 {
                fail(args, Stage::Init, errno());
            }
            if job == 0 {
                let mut go = [0u8; 1];
                if libc::read(args.hold_read, go.as_mut_ptr().cast(), 1) != 1 {
                    // The init never came up; it has said why.
                    libc::_exit(125);
                }
                exec(args.plan);
                fail(args, Stage::Exec, errno());
            }
            if job != super::init::COMMAND_PID {
                fail(args, Stage::Init, libc::EINVAL);
            }
            // The init's two descriptors survive its exec; everything else
            // of ours closes there.
            for fd in [args.init_status, args.hold_write] {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    fail(args, Stage::Init, errno());
                }
            }
            super::init::hold_forwarded_signals();
            let e = init.exec();
            fail(args, Stage::Init, e);
        }
        exec(args.plan);
        fail(args, Stage::Exec, errno());
    }
}

/// A setup step: fatal under strict enforcement, a note under best effort.
fn step(args: &ChildArgs<'_>, stage: Stage, result: Result<(), nix::errno::Errno>) {
    if let Err(e) = result {
        if args.plan.layers.strict {
            fail(args, stage, e as i32);
        }
        send(args, Record::Skipped(stage, e as i32));
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

fn send(args: &ChildArgs<'_>, record: Record) {
    let msg = record.encode();
    // SAFETY: raw write of a stack buffer to the report pipe.
    unsafe { libc::write(args.report, msg.as_ptr().cast(), msg.len()) };
}

fn fail(args: &ChildArgs<'_>, stage: Stage, errno: i32) -> ! {
    send(args, Record::Failed(stage, errno));
    let code = match stage.class() {
        FailureClass::Exec if errno == libc::ENOENT => 127,
        FailureClass::Exec => 126,
        _ => 125,
    };
    // SAFETY: exit without running destructors of the parent's copied state.
    unsafe { libc::_exit(code) }
}

/// A best-effort stage the kernel refused, for `sandbox.not_applied`.
pub(super) fn describe_skip(stage: Stage, errno: i32) -> String {
    format!(
        "{}: {}",
        stage.name(),
        std::io::Error::from_raw_os_error(errno)
    )
}

/// Turns a child's failure record into a message and a shell-style exit status.
pub(super) fn describe_failure(stage: Stage, errno: i32, plan: &LaunchPlan) -> LaunchError {
    let err = std::io::Error::from_raw_os_error(errno);
    match stage.class() {
        FailureClass::Exec => LaunchError {
            message: format!("cannot execute {}: {err}", plan.program.to_string_lossy()),
            exit_code: if errno == libc::ENOENT { 127 } else { 126 },
            unavailable: false,
        },
        FailureClass::Layer => LaunchError::unavailable(format!(
            "the {} layer could not be applied: {err}",
            stage.name()
        )),
        FailureClass::Runner if stage == Stage::Cwd => LaunchError::runner(format!(
            "cannot enter the working directory {:?}: {err}",
            plan.cwd
        )),
        FailureClass::Runner if stage == Stage::Init => {
            // The init is this binary, exec'd inside the job's view.
            let hint = match super::init::interpreter() {
                Some(loader) => format!(
                    "; agent-exec is dynamically linked and its loader {} must be executable \
                     in the job's view (grant it in filesystem.exec), or install the static \
                     build (scripts/build-release.sh)",
                    loader.display()
                ),
                None => String::new(),
            };
            LaunchError::runner(format!(
                "cannot start the job's init (agent-exec-init): {err}{hint}"
            ))
        }
        FailureClass::Runner => {
            LaunchError::runner(format!("cannot start the job ({}): {err}", stage.name()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_as_it_was_sent() {
        for stage in Stage::ALL {
            for record in [Record::Skipped(stage, 13), Record::Failed(stage, -1)] {
                assert_eq!(Record::decode(&record.encode()), Some(record));
            }
            assert!(!stage.name().is_empty());
        }
        for c in [
            Coverage::FullyEnforced,
            Coverage::PartiallyEnforced,
            Coverage::NotEnforced,
        ] {
            assert_eq!(
                Record::decode(&Record::Landlock(c).encode()),
                Some(Record::Landlock(c))
            );
        }
        assert_eq!(Record::decode(&[0xff; Record::SIZE]), None);
    }
}

//! Everything between clone and exec.
//!
//! [`spawn`] is the whole launch sequence, top to bottom. The parent prepares
//! every allocation, path and filter first (the child of a clone only makes
//! raw syscalls), clones the child straight into the job's v2 cgroup (the
//! child moves itself into the v1 controllers), finishes the parent's part
//! (uid/gid maps) and only then lets the child go on. The child's steps are
//! in [`child::run`], in the order the kernel needs them.

pub mod caps;
pub mod cgroup;
mod child;
pub mod identity;
pub mod init;
pub mod landlock;
pub mod layers;
pub mod namespaces;
pub mod net_rules;
pub mod rlimits;
pub mod seccomp;
mod spec;
#[cfg(test)]
pub(crate) mod test_fork;
pub mod view;

pub use net_rules::ProxyRules;
pub use spec::{CgroupNeed, Enforcement, NetMode, NetModeError, SandboxSpec, SeccompProfile};

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use crate::sandbox::cgroup::JobCgroup;

/// `CLONE_INTO_CGROUP` (libc's constant is an int that overflows to 0).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Where the child's stdio comes from and goes to.
pub struct Stdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// Everything the child needs, prepared before the clone.
pub struct LaunchPlan {
    program: CString,
    /// execve's null-terminated pointer arrays, into `_owned` (the CStrings'
    /// heap buffers do not move when the plan does).
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    _owned: [Vec<CString>; 2],
    cwd: CString,
    pub layers: layers::Layers,
}

/// Why a job could not be launched, with the exit status a shell would give.
#[derive(Debug)]
pub struct LaunchError {
    pub message: String,
    /// 127 not found, 126 found but not executable, 125 the runner failed.
    pub exit_code: i32,
    /// A sandbox layer the policy requires could not be applied.
    pub unavailable: bool,
}

impl LaunchError {
    fn runner(message: String) -> LaunchError {
        LaunchError {
            message,
            exit_code: 125,
            unavailable: false,
        }
    }

    pub fn unavailable(message: String) -> LaunchError {
        LaunchError {
            message,
            exit_code: 125,
            unavailable: true,
        }
    }
}

/// The running child.
pub struct Launched {
    pub pid: i32,
    /// With a pid namespace the child is our minimal init; it reports the
    /// command's wait status and leftover count here when the command ends.
    pub init_status: Option<OwnedFd>,
    /// What the child reported of the layers it applied (Landlock verdict, best-effort skips).
    pub landlock: Option<landlock::LandlockStatus>,
    pub not_applied: Vec<String>,
    /// `net = proxy`: the socket listening in the job's network, for the
    /// supervisor to serve.
    pub proxy_listener: Option<OwnedFd>,
    /// The root of `$JOB_DIR`'s tmpfs where the child made it (a caller
    /// without root).
    pub job_dir: Option<OwnedFd>,
}

impl LaunchPlan {
    /// Resolves the program like execvp would (against the job's PATH) and
    /// prepares every C string the child will need.
    pub fn new(
        argv: &[String],
        env: &[(String, String)],
        cwd: &Path,
        layers: layers::Layers,
    ) -> Result<LaunchPlan, LaunchError> {
        let Some(name) = argv.first() else {
            return Err(LaunchError::runner("no command given".into()));
        };
        let path_var = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        let program = resolve_program(name, path_var, cwd, layers.exec_places.as_ref())?;
        let cstr = |s: &str, what: &str| {
            CString::new(s)
                .map_err(|_| LaunchError::runner(format!("{what} contains a NUL byte: {s:?}")))
        };
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| cstr(a, "an argument"))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| {
                CString::new(format!("{k}={v}")).map_err(|e| {
                    let entry = String::from_utf8_lossy(&e.into_vec()).into_owned();
                    LaunchError::runner(format!(
                        "an environment variable contains a NUL byte: {entry:?}"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let pointers = |strings: &[CString]| {
            let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            ptrs
        };
        Ok(LaunchPlan {
            program: cstr(&program.to_string_lossy(), "the program path")?,
            argv_ptrs: pointers(&argv),
            envp_ptrs: pointers(&envp),
            _owned: [argv, envp],
            cwd: cstr(&cwd.to_string_lossy(), "the working directory")?,
            layers,
        })
    }
}

/// Searches PATH in the parent, so that "not found" (127) and "not
/// executable" (126) are known before anything is cloned. Like execvp, an
/// entry the job cannot execute is skipped and the next one tried: with a
/// confined filesystem that is also one outside the places it may execute
/// from (a version manager's shim under `$HOME` before `/usr/bin`).
fn resolve_program(
    name: &str,
    path_var: &str,
    cwd: &Path,
    places: Option<&layers::ExecPlaces>,
) -> Result<PathBuf, LaunchError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let may_run = |p: &Path| match places {
        None => true,
        Some(places) => p.canonicalize().is_ok_and(|real| places.allow(&real)),
    };
    let refused = |p: &Path| LaunchError {
        message: format!(
            "cannot execute {name:?}: {} lies outside every path the policy lets the job \
             execute (filesystem.exec)",
            p.display()
        ),
        exit_code: 126,
        unavailable: false,
    };
    if name.contains('/') {
        let p = cwd.join(name);
        return match std::fs::metadata(&p) {
            Err(e) => Err(LaunchError {
                message: format!("cannot execute {name:?}: {e}"),
                exit_code: 127,
                unavailable: false,
            }),
            Ok(m) if m.is_dir() => Err(LaunchError {
                message: format!("cannot execute {name:?}: it is a directory"),
                exit_code: 126,
                unavailable: false,
            }),
            Ok(_) if !executable(&p) => Err(LaunchError {
                message: format!("cannot execute {name:?}: permission denied (no execute bit)"),
                exit_code: 126,
                unavailable: false,
            }),
            Ok(_) if !may_run(&p) => Err(refused(&p)),
            Ok(_) => Ok(p),
        };
    }
    let mut not_runnable: Option<LaunchError> = None;
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = cwd.join(dir).join(name);
        if executable(&candidate) {
            if may_run(&candidate) {
                return Ok(candidate);
            }
            not_runnable.get_or_insert_with(|| refused(&candidate));
        } else if candidate.is_file() && not_runnable.is_none() {
            not_runnable = Some(LaunchError {
                message: format!(
                    "cannot execute {name:?}: {} is not executable",
                    candidate.display()
                ),
                exit_code: 126,
                unavailable: false,
            });
        }
    }
    Err(not_runnable.unwrap_or_else(|| LaunchError {
        message: format!("command not found: {name:?} (searched PATH={path_var})"),
        exit_code: 127,
        unavailable: false,
    }))
}

/// Launches the job: the one place that shows the order of the layers.
/// Without a cgroup (a caller the host delegates none to) the job's init
/// forwards the signals it is sent to its whole pid namespace.
pub fn spawn(
    plan: &LaunchPlan,
    stdio: Stdio,
    cgroup: Option<&JobCgroup>,
) -> Result<Launched, LaunchError> {
    let ns_flags = plan.layers.namespaces.clone_flags();
    // 0. A job that is not to be root keeps none of root's groups.
    if plan.layers.switch_ids.is_some() {
        identity::drop_supplementary_groups().map_err(|e| {
            LaunchError::runner(format!("cannot drop the supplementary groups: {e}"))
        })?;
    }
    // 1. Channels to the child, made before the clone. `go` holds the child
    //    until the parent's half of the setup is done; `report` carries an
    //    errno back if exec fails (CLOEXEC: a successful exec closes it).
    let (go_read, go_write) = pipe().map_err(|e| LaunchError::runner(format!("pipe: {e}")))?;
    let (report_read, report_write) =
        pipe().map_err(|e| LaunchError::runner(format!("pipe: {e}")))?;
    //    `status` carries the command's wait status from the init, `hold`
    //    keeps the command from its exec until the init is up.
    let (status_read, status_write) =
        pipe().map_err(|e| LaunchError::runner(format!("pipe: {e}")))?;
    let (hold_read, hold_write) = pipe().map_err(|e| LaunchError::runner(format!("pipe: {e}")))?;
    //    `proxy` brings the proxy's listening socket back from the job's
    //    network namespace (a unix socket pair: descriptors travel on it).
    let proxy_channel = match plan.layers.proxy_port {
        Some(_) => {
            Some(socket_pair().map_err(|e| LaunchError::runner(format!("socketpair: {e}")))?)
        }
        None => None,
    };
    let init = plan.layers.init_exe.as_ref().map(|exe| {
        init::InitImage::new(
            exe.as_fd(),
            status_write.as_raw_fd(),
            hold_write.as_raw_fd(),
            cgroup.is_none(),
        )
    });
    //    The v1 controllers' `tasks` files, for the child to move itself
    //    (see `SelfJoin` for why the parent does not move it).
    let self_join = cgroup
        .map(JobCgroup::open_self_join)
        .transpose()
        .map_err(|e| LaunchError::runner(format!("cannot open the job's v1 cgroups: {e}")))?;
    let cgroup_dir = cgroup
        .map(|c| {
            std::fs::File::open(c.v2_dir()).map_err(|e| {
                LaunchError::runner(format!("cannot open cgroup {}: {e}", c.v2_dir().display()))
            })
        })
        .transpose()?;

    // 2. Clone straight into the job's v2 cgroup: the child never runs a
    //    single instruction outside it, so it cannot fork its way out first.
    let parent_pid = std::process::id() as i32;
    let child = ChildArgs {
        plan,
        stdio: &stdio,
        go: go_read.as_raw_fd(),
        report: report_write.as_raw_fd(),
        init_status: status_write.as_raw_fd(),
        init: init.as_ref(),
        hold_read: hold_read.as_raw_fd(),
        hold_write: hold_write.as_raw_fd(),
        parent_pid,
        join_fds: self_join.as_ref().map_or(&[], |j| j.raw_fds()),
        proxy_channel: proxy_channel
            .as_ref()
            .map_or(-1, |(_, theirs)| theirs.as_raw_fd()),
    };
    //    The namespaces the policy asks for are created by the same call.
    let mut into_cgroup = true;
    let mut pid = match &cgroup_dir {
        Some(dir) => clone3(CLONE_INTO_CGROUP | ns_flags, Some(dir.as_raw_fd())),
        None => clone3(ns_flags, None),
    };
    if cgroup_dir.is_some() && (pid == Err(libc::ENOSYS) || pid == Err(libc::E2BIG)) {
        // Kernels before 5.7: clone plainly, then move the child before it may go on.
        into_cgroup = false;
        pid = clone3(ns_flags, None);
    }
    if let Err(errno) = pid {
        if ns_flags != 0
            && matches!(
                errno,
                libc::EPERM | libc::EINVAL | libc::ENOSPC | libc::EUSERS
            )
        {
            return Err(LaunchError::unavailable(format!(
                "the kernel refused the namespaces {:?}: {}",
                plan.layers.namespaces.names(),
                std::io::Error::from_raw_os_error(errno)
            )));
        }
    }
    let pid = match pid {
        Ok(0) => child::run(&child),
        Ok(pid) => pid,
        Err(errno) => {
            return Err(LaunchError::runner(format!(
                "clone3 failed: {}",
                std::io::Error::from_raw_os_error(errno)
            )))
        }
    };
    drop(go_read);
    drop(report_write);
    drop(status_write);
    drop((hold_read, hold_write));
    let proxy_channel = proxy_channel.map(|(ours, _theirs)| ours);
    drop(stdio); // the child holds its ends; ours would keep the pipes from reaching EOF

    drop(self_join);

    // 3. Parent's half: the v2 cgroup on kernels without clone-into, and the
    //    uid/gid maps of the user namespace (only a process outside it may
    //    write them). The child has joined its v1 cgroups itself by now.
    let joined = (|| {
        if let (false, Some(cgroup)) = (into_cgroup, cgroup) {
            cgroup.join_v2(pid)?;
        }
        if let Some((in_uid, in_gid, out_uid, out_gid)) = plan.layers.id_map {
            namespaces::write_id_maps(
                nix::unistd::Pid::from_raw(pid),
                in_uid,
                in_gid,
                out_uid,
                out_gid,
            )?;
        }
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = joined {
        kill_and_reap(pid);
        return Err(LaunchError::runner(format!(
            "cannot set up the job's cgroup or user namespace: {e}"
        )));
    }

    // 4. Go. Then wait for exec: EOF on `report` means the exec succeeded.
    if write_all(go_write.as_raw_fd(), &[1]).is_err() {
        kill_and_reap(pid);
        return Err(LaunchError::runner(
            "the job died before it was released".into(),
        ));
    }
    drop(go_write);
    let mut launched = Launched {
        pid,
        init_status: plan.layers.namespaces.pid.then_some(status_read),
        landlock: None,
        not_applied: Vec::new(),
        proxy_listener: None,
        job_dir: None,
    };
    // Records until EOF: notes about layers, or one fatal failure.
    loop {
        let mut bytes = [0u8; child::Record::SIZE];
        if read_full(report_read.as_raw_fd(), &mut bytes) != bytes.len() {
            break;
        }
        match child::Record::decode(&bytes) {
            Some(child::Record::Landlock(coverage)) => {
                launched.landlock = Some(landlock::LandlockStatus {
                    abi: landlock::kernel_abi(),
                    status: coverage,
                })
            }
            Some(child::Record::Skipped(stage, errno)) => launched
                .not_applied
                .push(child::describe_skip(stage, errno)),
            Some(child::Record::Failed(stage, errno)) => {
                reap(pid);
                return Err(child::describe_failure(stage, errno, plan));
            }
            None => {
                kill_and_reap(pid);
                return Err(LaunchError::runner(
                    "the job's set-up sent a report that cannot be read".into(),
                ));
            }
        }
    }
    if let Some(channel) = plan
        .layers
        .root
        .as_ref()
        .and_then(|r| r.job_dir_channel.as_ref())
    {
        // Sent before the exec that just succeeded, like the proxy's socket.
        launched.job_dir = namespaces::receive_descriptor(channel.as_raw_fd());
        if launched.job_dir.is_none() {
            kill_and_reap(pid);
            return Err(LaunchError::runner(
                "the job's $JOB_DIR did not reach the supervisor".into(),
            ));
        }
    }
    if let Some(channel) = proxy_channel {
        // Sent before the exec that just succeeded: it is there, or the
        // job would run without its way out.
        launched.proxy_listener = namespaces::receive_descriptor(channel.as_raw_fd());
        if launched.proxy_listener.is_none() {
            kill_and_reap(pid);
            return Err(LaunchError::runner(
                "the job's proxy socket did not reach the supervisor".into(),
            ));
        }
    }
    Ok(launched)
}

/// A connected pair of unix stream sockets, close-on-exec.
pub(crate) fn socket_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Arguments of the child, borrowed from the parent's memory (the clone copies it).
pub(crate) struct ChildArgs<'a> {
    plan: &'a LaunchPlan,
    stdio: &'a Stdio,
    go: RawFd,
    report: RawFd,
    init_status: RawFd,
    /// With a pid namespace: how pid 1 becomes the fresh init.
    init: Option<&'a init::InitImage<'a>>,
    hold_read: RawFd,
    hold_write: RawFd,
    parent_pid: i32,
    /// v1 `tasks` files the child writes `0` into before it may go on.
    join_fds: &'a [RawFd],
    /// Where the child sends the proxy's listening socket (-1: no proxy).
    proxy_channel: RawFd,
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 without CLONE_VM: the child gets a copy of our memory, like fork.
fn clone3(flags: u64, cgroup_fd: Option<RawFd>) -> Result<i32, i32> {
    let mut args = CloneArgs {
        flags,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd.map(|fd| fd as u64).unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: args is a valid clone_args of the size we pass; without CLONE_VM
    // the child runs on a copy of our address space, like fork().
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(ret as i32)
    }
}

pub(crate) fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn write_all(fd: RawFd, bytes: &[u8]) -> std::io::Result<()> {
    // SAFETY: writing from a buffer we own.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n == bytes.len() as isize {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reading into the unfilled part of a buffer we own.
        let n = unsafe { libc::read(fd, buf[done..].as_mut_ptr().cast(), buf.len() - done) };
        if n > 0 {
            done += n as usize;
        } else if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    done
}

fn kill_and_reap(pid: i32) {
    // SAFETY: pid is our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    reap(pid);
}

fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
}

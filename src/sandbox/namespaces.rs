//! Small raw helpers around Linux namespaces, for both sides of the clone.
//!
//! Parent side: [`clone_flags`] / [`NamespaceSet`] pick the `CLONE_NEW*` flags, and
//! [`write_id_maps`] maps the child's user namespace once it exists.
//!
//! Child side (after clone, before execve): [`make_mounts_private`], [`mount_fresh_proc`],
//! [`mount_tmpfs`], [`bring_loopback_up`], [`set_hostname`]. These make plain syscalls on
//! caller-provided C strings and never allocate, so they are safe to call between clone and
//! execve of a process that was forked from a larger one.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// Which namespaces a job gets. Serialized as the JSON `namespaces` list via [`Self::names`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct NamespaceSet {
    /// New user namespace: the job's root is not the host's root.
    pub user: bool,
    /// New pid namespace: the job sees only its own processes.
    pub pid: bool,
    /// New mount namespace: the job's mounts (fresh /proc, tmpfs) stay private to it.
    pub mount: bool,
    /// New System V IPC / POSIX message queue namespace.
    pub ipc: bool,
    /// New hostname / domain name namespace.
    pub uts: bool,
    /// New cgroup namespace: /proc/self/cgroup is rooted at the job's cgroup.
    pub cgroup: bool,
    /// New network namespace: only a (down) loopback interface.
    pub net: bool,
}

impl NamespaceSet {
    /// Every namespace kind.
    pub const ALL: NamespaceSet = NamespaceSet {
        user: true,
        pid: true,
        mount: true,
        ipc: true,
        uts: true,
        cgroup: true,
        net: true,
    };

    /// The `CLONE_NEW*` bits for `clone3`'s `flags` field.
    pub fn clone_flags(&self) -> u64 {
        clone_flags(
            self.user,
            self.pid,
            self.mount,
            self.ipc,
            self.uts,
            self.cgroup,
            self.net,
        )
    }

    /// Names of the selected namespaces, in a fixed order
    /// (`user`, `pid`, `mount`, `ipc`, `uts`, `cgroup`, `net`), as reported in a job's `sandbox`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.user, "user"),
            (self.pid, "pid"),
            (self.mount, "mount"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.cgroup, "cgroup"),
            (self.net, "net"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// The `CLONE_NEW*` flags (as the `u64` that `clone3` takes) for the namespaces asked for.
pub fn clone_flags(
    user: bool,
    pid: bool,
    mount: bool,
    ipc: bool,
    uts: bool,
    cgroup: bool,
    net: bool,
) -> u64 {
    let pick = |on: bool, flag: libc::c_int| if on { flag as u64 } else { 0 };
    pick(user, libc::CLONE_NEWUSER)
        | pick(pid, libc::CLONE_NEWPID)
        | pick(mount, libc::CLONE_NEWNS)
        | pick(ipc, libc::CLONE_NEWIPC)
        | pick(uts, libc::CLONE_NEWUTS)
        | pick(cgroup, libc::CLONE_NEWCGROUP)
        | pick(net, libc::CLONE_NEWNET)
}

/// Parent side: map one uid and one gid of `child`'s new user namespace.
///
/// Writes `deny` to `/proc/<child>/setgroups` first (required before an unprivileged
/// `gid_map` write, and it keeps the job from dropping supplementary groups that might be
/// used to deny it access), then `gid_map`, then `uid_map`, each as `inside outside 1`.
/// Must be called exactly once, after the child has unshared/cloned its user namespace and
/// before it needs its identity (the child waits for the parent's go).
pub fn write_id_maps(
    child: Pid,
    inside_uid: u32,
    inside_gid: u32,
    outside_uid: u32,
    outside_gid: u32,
) -> io::Result<()> {
    let dir = format!("/proc/{}", child.as_raw());
    write_proc_file(&format!("{dir}/setgroups"), "deny")?;
    write_proc_file(
        &format!("{dir}/gid_map"),
        &format!("{inside_gid} {outside_gid} 1\n"),
    )?;
    write_proc_file(
        &format!("{dir}/uid_map"),
        &format!("{inside_uid} {outside_uid} 1\n"),
    )
}

/// The kernel accepts an id map only in a single write(2); std's `write` on a fresh file of
/// a few bytes is one syscall, and a short write is reported rather than retried.
fn write_proc_file(path: &str, content: &str) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {path} for writing: {e}")))?;
    let written = file
        .write(content.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {path}: {e}")))?;
    if written != content.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short write to {path}: {written} of {} bytes",
                content.len()
            ),
        ));
    }
    Ok(())
}

/// Child side: make every mount in this (new) mount namespace private, recursively, so that
/// nothing the job mounts propagates back to the host and no host mount event reaches it.
pub fn make_mounts_private() -> Result<(), Errno> {
    mount(
        None::<&CStr>,
        c"/",
        None::<&CStr>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&CStr>,
    )
}

/// Child side: mount a new procfs on `/proc` (nosuid, nodev, noexec).
///
/// Needed after entering a new pid namespace, so that `/proc` shows the job's processes
/// (its init is pid 1) and not the host's. Call from a process that is already inside the
/// new pid namespace and a private mount namespace.
pub fn mount_fresh_proc() -> Result<(), Errno> {
    mount(
        Some(c"proc"),
        c"/proc",
        Some(c"proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&CStr>,
    )
}

/// Child side: mount a private tmpfs of at most `size_bytes` on `path` (nosuid, nodev).
///
/// `size_bytes == 0` is rejected with `EINVAL`, because tmpfs reads `size=0` as "unlimited".
pub fn mount_tmpfs(path: &CStr, size_bytes: Option<u64>) -> Result<(), Errno> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let Some(size_bytes) = size_bytes else {
        // The kernel's default size: half the memory.
        return mount(Some(c"tmpfs"), path, Some(c"tmpfs"), flags, None::<&CStr>);
    };
    if size_bytes == 0 {
        return Err(Errno::EINVAL);
    }
    // "size=" + at most 20 digits + NUL, built on the stack: no allocation after clone.
    let mut data = [0u8; 32];
    let prefix = b"size=";
    data[..prefix.len()].copy_from_slice(prefix);
    let digits = write_decimal(size_bytes, &mut data[prefix.len()..]);
    let data = CStr::from_bytes_until_nul(&data[..prefix.len() + digits + 1])
        .map_err(|_| Errno::EINVAL)?;
    mount(Some(c"tmpfs"), path, Some(c"tmpfs"), flags, Some(data))
}

/// Writes `value` in decimal at the start of `out` and returns the number of digits.
/// `out` must hold at least 20 bytes (u64::MAX has 20 digits).
pub(crate) fn write_decimal(mut value: u64, out: &mut [u8]) -> usize {
    let mut tmp = [0u8; 20];
    let mut len = 0;
    loop {
        tmp[len] = b'0' + (value % 10) as u8;
        len += 1;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for (i, digit) in tmp[..len].iter().rev().enumerate() {
        out[i] = *digit;
    }
    len
}

/// An `ifreq` naming the loopback interface, for the SIOC[GS]IFFLAGS ioctls.
fn loopback_ifreq() -> libc::ifreq {
    // SAFETY: ifreq is a plain C struct/union for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    req
}

/// A short-lived AF_INET datagram socket: the handle the interface ioctls need.
fn ioctl_socket() -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn get_loopback_flags(sock: &OwnedFd, req: &mut libc::ifreq) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: req is a valid ifreq that outlives the call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFFLAGS,
            req as *mut libc::ifreq,
        )
    };
    Errno::result(rc).map(drop)
}

/// Whether the loopback interface of the current network namespace is up.
pub fn loopback_is_up() -> Result<bool, Errno> {
    let sock = ioctl_socket()?;
    let mut req = loopback_ifreq();
    get_loopback_flags(&sock, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(flags as libc::c_int & libc::IFF_UP != 0)
}

/// Child side: bring `lo` up in a new network namespace (where it starts down), for
/// `net = loopback`. Needs CAP_NET_ADMIN in the namespace's owning user namespace.
pub fn bring_loopback_up() -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let sock = ioctl_socket()?;
    let mut req = loopback_ifreq();
    get_loopback_flags(&sock, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union; we update that same member.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: req is a valid ifreq that outlives the call.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFFLAGS,
            &req as *const libc::ifreq,
        )
    };
    Errno::result(rc).map(drop)
}

/// Child side, `net = proxy`: a TCP socket listening on `127.0.0.1:port`
/// of the job's network namespace (`lo` is up), handed to the supervisor
/// over `channel` (SCM_RIGHTS) and closed here. The supervisor accepts and
/// serves it from outside: nothing of the proxy runs in the sandbox, and
/// the job, which never holds the socket, cannot close or take it over
/// (the port is ours before the job runs; no SO_REUSEPORT is set).
pub fn hand_over_proxy_listener(port: u16, channel: std::os::fd::RawFd) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain syscall; the descriptor is owned by the OwnedFd below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_in is plain data; all-zero is valid before we fill it.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: addr is a valid sockaddr_in of the size given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    Errno::result(rc)?;
    // SAFETY: plain syscall on our socket.
    Errno::result(unsafe { libc::listen(sock.as_raw_fd(), 128) })?;
    send_descriptor(channel, sock.as_raw_fd())
}

/// Sends `fd` over the unix socket `channel` with one byte of data.
pub(crate) fn send_descriptor(
    channel: std::os::fd::RawFd,
    fd: std::os::fd::RawFd,
) -> Result<(), Errno> {
    const SPACE: usize = 64;
    let mut byte = [1u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u8; SPACE];
    // SAFETY: msghdr is plain data; we fill the fields sendmsg reads.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen =
        unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as _;
    // SAFETY: the control buffer is large enough for one descriptor (CMSG_SPACE
    // of an int is well under SPACE); the header pointer is within it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
    }
    // SAFETY: msg points at live buffers for the duration of the call.
    let sent = unsafe { libc::sendmsg(channel, &msg, libc::MSG_NOSIGNAL) };
    Errno::result(sent).map(drop)
}

/// Parent side: the descriptor the child sent with [`hand_over_proxy_listener`],
/// if it sent one (non-blocking: it was sent before the exec we waited for).
/// The parent may allocate, so nix does the message here.
pub fn receive_descriptor(channel: std::os::fd::RawFd) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    let msg = recvmsg::<()>(
        channel,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Child side, as pid 1 of a new pid namespace: no memfd of the namespace
/// may ever be executed (`vm.memfd_noexec = 2`: a memfd is created sealed
/// against exec, `MFD_EXEC` is refused), so a job cannot run code that
/// never was a file under its exec rules. The setting belongs to the pid
/// namespace; outside one it would change the host's.
pub fn forbid_executable_memfds() -> Result<(), Errno> {
    // SAFETY: a constant path; the descriptor is closed before returning.
    let fd = unsafe {
        libc::open(
            c"/proc/sys/vm/memfd_noexec".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: writing a static buffer to the descriptor just opened.
    let written = unsafe { libc::write(fd, b"2".as_ptr().cast(), 1) };
    let result = if written == 1 {
        Ok(())
    } else {
        Err(Errno::last())
    };
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
    result
}

/// Child side: set the hostname of the (new) UTS namespace.
pub fn set_hostname(name: &CStr) -> Result<(), Errno> {
    let bytes = name.to_bytes();
    // SAFETY: pointer and length describe the bytes of a live CStr.
    let rc = unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) };
    Errno::result(rc).map(drop)
}

/// Fork-based test harness shared by the sandbox tests: run a closure in a forked child and
/// bring its verdict (and failure message) back to the test.
#[cfg(test)]
pub(crate) mod test_fork {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;

    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult, Pid};

    /// A forked child running a test closure.
    pub(crate) struct Child {
        pid: Pid,
        report: OwnedFd,
    }

    impl Child {
        pub(crate) fn pid(&self) -> Pid {
            self.pid
        }

        /// Waits for the child; `Err` carries its failure message or how it died.
        pub(crate) fn join(self) -> Result<(), String> {
            let mut msg = String::new();
            let _ = std::fs::File::from(self.report).read_to_string(&mut msg);
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, 0)) if msg.is_empty() => Ok(()),
                Ok(status) => Err(format!("child {status:?}: {msg}")),
                Err(e) => Err(format!("waitpid: {e}")),
            }
        }
    }

    /// Forks; the child runs `f` and exits 0 on `Ok`, or reports the `Err` text and exits 1.
    pub(crate) fn spawn<F: FnOnce() -> Result<(), String>>(f: F) -> Child {
        let (read, write) = pipe().unwrap();
        // SAFETY: the child only runs the test closure and then _exits.
        match unsafe { fork() }.unwrap() {
            ForkResult::Parent { child } => {
                drop(write);
                Child {
                    pid: child,
                    report: read,
                }
            }
            ForkResult::Child => {
                drop(read);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                let (code, msg) = match outcome {
                    Ok(Ok(())) => (0, String::new()),
                    Ok(Err(msg)) => (1, msg),
                    Err(_) => (2, "panicked".to_string()),
                };
                let _ = std::fs::File::from(write).write_all(msg.as_bytes());
                // SAFETY: leave without running the test harness's atexit handlers.
                unsafe { libc::_exit(code) }
            }
        }
    }

    /// Runs `f` in a forked child and waits for its verdict.
    pub(crate) fn in_child<F: FnOnce() -> Result<(), String>>(f: F) -> Result<(), String> {
        spawn(f).join()
    }

    /// `Err(context: errno)` helper for the closures.
    pub(crate) fn ctx<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, String> {
        r.map_err(|e| format!("{what}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_fork::{ctx, in_child, spawn};
    use super::*;
    use nix::sched::{unshare, CloneFlags};
    use std::ffi::CString;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;

    fn cpath(p: &std::path::Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    fn statfs(p: &CStr) -> Result<libc::statfs, String> {
        // SAFETY: st is an out-parameter filled by the kernel.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(p.as_ptr(), &mut st) };
        ctx(Errno::result(rc), "statfs")?;
        Ok(st)
    }

    fn mount_flags(p: &CStr) -> Result<u64, String> {
        // SAFETY: st is an out-parameter filled by the kernel.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statvfs(p.as_ptr(), &mut st) };
        ctx(Errno::result(rc), "statvfs")?;
        Ok(st.f_flag)
    }

    fn mounted_at(path: &std::path::Path) -> bool {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let want = path.to_str().unwrap();
        info.lines().any(|l| l.split(' ').nth(4) == Some(want))
    }

    #[test]
    fn clone_flags_match_kernel_constants() {
        assert_eq!(
            clone_flags(false, false, false, false, false, false, false),
            0
        );
        let all = clone_flags(true, true, true, true, true, true, true);
        let expected = (libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWNET) as u64;
        assert_eq!(all, expected);
        assert_eq!(NamespaceSet::ALL.clone_flags(), expected);
        let only_net = NamespaceSet {
            net: true,
            ..Default::default()
        };
        assert_eq!(only_net.clone_flags(), libc::CLONE_NEWNET as u64);
        assert_eq!(only_net.names(), vec!["net"]);
        assert_eq!(
            NamespaceSet::ALL.names(),
            vec!["user", "pid", "mount", "ipc", "uts", "cgroup", "net"]
        );
    }

    #[test]
    fn decimal_formatting_without_allocation() {
        let mut out = [0u8; 20];
        let n = write_decimal(0, &mut out);
        assert_eq!(&out[..n], b"0");
        let n = write_decimal(u64::MAX, &mut out);
        assert_eq!(&out[..n], u64::MAX.to_string().as_bytes());
        let n = write_decimal(1_048_576, &mut out);
        assert_eq!(&out[..n], b"1048576");
    }

    #[test]
    fn tmpfs_is_private_sized_and_hidden_from_parent() {
        let dir = tempfile::tempdir().unwrap();
        let target = cpath(dir.path());
        let path = dir.path().to_path_buf();
        let result = in_child(|| {
            ctx(unshare(CloneFlags::CLONE_NEWNS), "unshare(NEWNS)")?;
            ctx(make_mounts_private(), "make_mounts_private")?;
            if mount_tmpfs(&target, Some(0)) != Err(Errno::EINVAL) {
                return Err("size 0 must be rejected".into());
            }
            ctx(mount_tmpfs(&target, Some(1 << 20)), "mount_tmpfs")?;
            let st = statfs(&target)?;
            if st.f_type != libc::TMPFS_MAGIC {
                return Err(format!("f_type {:#x} is not tmpfs", st.f_type));
            }
            let size = st.f_blocks as u64 * st.f_bsize as u64;
            if size != 1 << 20 {
                return Err(format!("tmpfs size {size}, wanted 1 MiB"));
            }
            let want = libc::ST_NOSUID | libc::ST_NODEV;
            let flags = mount_flags(&target)?;
            if flags & want != want {
                return Err(format!("flags {flags:#x} lack nosuid/nodev"));
            }
            if !mounted_at(&path) {
                return Err("tmpfs not in the child's mountinfo".into());
            }
            ctx(std::fs::write(path.join("inside"), b"x"), "write in tmpfs")
        });
        assert_eq!(result, Ok(()));
        assert!(!mounted_at(dir.path()), "tmpfs leaked into the parent");
        assert!(!dir.path().join("inside").exists());
    }

    #[test]
    fn fresh_proc_shows_pid_namespace() {
        let result = in_child(|| {
            ctx(
                unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID),
                "unshare(NEWNS|NEWPID)",
            )?;
            ctx(make_mounts_private(), "make_mounts_private")?;
            // unshare(CLONE_NEWPID) only places our next child in the new namespace.
            in_child(|| {
                ctx(mount_fresh_proc(), "mount_fresh_proc")?;
                let me = ctx(std::fs::read_link("/proc/self"), "readlink /proc/self")?;
                if me.as_os_str() != "1" {
                    return Err(format!("/proc/self is {me:?}, wanted 1"));
                }
                let pids: Vec<_> = ctx(std::fs::read_dir("/proc"), "read /proc")?
                    .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .collect();
                if pids != [1] {
                    return Err(format!("/proc lists pids {pids:?}, wanted only 1"));
                }
                let st = statfs(c"/proc")?;
                if st.f_type != libc::PROC_SUPER_MAGIC {
                    return Err("/proc is not procfs".into());
                }
                let want = libc::ST_NOSUID | libc::ST_NODEV | libc::ST_NOEXEC;
                let flags = mount_flags(c"/proc")?;
                if flags & want != want {
                    return Err(format!("/proc flags {flags:#x} lack nosuid/nodev/noexec"));
                }
                Ok(())
            })
        });
        assert_eq!(result, Ok(()));
        let me = std::fs::read_link("/proc/self").unwrap();
        assert_eq!(me.to_str().unwrap(), std::process::id().to_string());
    }

    #[test]
    fn loopback_comes_up_in_new_net_namespace() {
        let result = in_child(|| {
            ctx(unshare(CloneFlags::CLONE_NEWNET), "unshare(NEWNET)")?;
            if ctx(loopback_is_up(), "SIOCGIFFLAGS")? {
                return Err("lo is up before bring_loopback_up".into());
            }
            ctx(bring_loopback_up(), "bring_loopback_up")?;
            if !ctx(loopback_is_up(), "SIOCGIFFLAGS")? {
                return Err("lo still down".into());
            }
            let listener = ctx(std::net::TcpListener::bind("127.0.0.1:0"), "bind")?;
            let addr = ctx(listener.local_addr(), "local_addr")?;
            ctx(std::net::TcpStream::connect(addr), "connect over lo").map(drop)
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn hostname_is_set_only_in_new_uts_namespace() {
        let before = nix::unistd::gethostname().unwrap();
        let result = in_child(|| {
            ctx(unshare(CloneFlags::CLONE_NEWUTS), "unshare(NEWUTS)")?;
            ctx(set_hostname(c"ae-test-host"), "set_hostname")?;
            let now = ctx(nix::unistd::gethostname(), "gethostname")?;
            if now != "ae-test-host" {
                return Err(format!("hostname is {now:?}"));
            }
            Ok(())
        });
        assert_eq!(result, Ok(()));
        assert_eq!(nix::unistd::gethostname().unwrap(), before);
    }

    fn parse_map(text: &str) -> Vec<Vec<u32>> {
        text.lines()
            .map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect())
            .collect()
    }

    #[test]
    fn id_maps_are_written_for_a_child_user_namespace() {
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        let (go_r, go_w) = nix::unistd::pipe().unwrap();
        // The closure owns the child's pipe ends; spawn drops them in the parent.
        let child = spawn(move || {
            ctx(unshare(CloneFlags::CLONE_NEWUSER), "unshare(NEWUSER)")?;
            ctx(std::fs::File::from(ready_w).write_all(b"r"), "signal ready")?;
            let mut go = [0u8; 1];
            ctx(std::fs::File::from(go_r).read_exact(&mut go), "wait for go")?;
            let uid = nix::unistd::getuid().as_raw();
            let gid = nix::unistd::getgid().as_raw();
            if (uid, gid) != (1000, 1001) {
                return Err(format!("inside ids are {uid}/{gid}, wanted 1000/1001"));
            }
            let setgroups = ctx(std::fs::read_to_string("/proc/self/setgroups"), "setgroups")?;
            if setgroups.trim() != "deny" {
                return Err(format!("setgroups is {setgroups:?}"));
            }
            Ok(())
        });
        let mut ready = [0u8; 1];
        std::fs::File::from(ready_r).read_exact(&mut ready).unwrap();
        // Our own (outside) ids must be the mapped ones for the child to see itself in the map.
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        write_id_maps(child.pid(), 1000, 1001, uid, gid).unwrap();
        let dir = format!("/proc/{}", child.pid());
        let uid_map = std::fs::read_to_string(format!("{dir}/uid_map")).unwrap();
        let gid_map = std::fs::read_to_string(format!("{dir}/gid_map")).unwrap();
        std::fs::File::from(go_w).write_all(b"g").unwrap();
        assert_eq!(child.join(), Ok(()));
        assert_eq!(parse_map(&uid_map), vec![vec![1000, uid, 1]]);
        assert_eq!(parse_map(&gid_map), vec![vec![1001, gid, 1]]);
        // A process that does not exist is reported, not ignored.
        assert!(write_id_maps(Pid::from_raw(i32::MAX), 0, 0, 0, 0).is_err());
    }
}

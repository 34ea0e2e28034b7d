//! Copying a TCP connection both ways, for `--publish` and the proxy.
//!
//! One thread per direction: simple, and a connection's two directions
//! never wait on each other. A direction ends at EOF or an error; it then
//! shuts the other side's writing down so the peer sees the end too.
//! Bytes are counted as they pass, so a reader of the counters sees what
//! has moved so far, not only finished connections.
//!
//! What a job can make the supervisor hold is bounded: connections take a
//! [`Slot`] from a budget sized to the supervisor's descriptor limit, with
//! a reserve kept for what the supervisor needs to kill the job (a job
//! that could exhaust its supervisor's descriptors would outlive its
//! timeout), and each connection's kernel buffers are capped (they are
//! charged to the supervisor, not to the job's memory limit).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// Large enough that a loopback copy is not bound by syscalls.
const BUFFER: usize = 256 << 10;
/// Each direction's pipe, and each socket's kernel buffer on our side.
const PIPE_SIZE: libc::c_int = 256 << 10;
const SOCKET_BUFFER: libc::c_int = 512 << 10;
/// The relaying threads touch little stack: the buffer is on the heap.
pub const THREAD_STACK: usize = 128 << 10;
/// Descriptors of one relayed connection: two sockets, a pipe each way.
const FDS_PER_CONNECTION: u64 = 6;
/// Descriptors never spent on connections: logs, pipes, cgroup files, the
/// kill request, a spare for every thread that opens one.
const RESERVE: u64 = 256;
/// Connections relayed at once by one supervisor, whatever its limit
/// (two thirds for the proxy, the rest for `--publish`).
const MAX_CONNECTIONS: usize = 192;

/// Raises the supervisor's soft descriptor limit to its hard one, for the
/// connections it relays; returns the soft limit it had (the job's to
/// start with), or `None` when it was already as high.
pub fn make_room() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return None;
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid in-pointer.
    (unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0).then_some(old)
}

/// How many connections fit in this process's descriptor limit.
fn capacity() -> usize {
    static CAPACITY: OnceLock<usize> = OnceLock::new();
    *CAPACITY.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 0;
        }
        let room = lim.rlim_cur.saturating_sub(RESERVE) / FDS_PER_CONNECTION;
        (room.min(MAX_CONNECTIONS as u64)) as usize
    })
}

/// Whose connection a slot is for: the job's proxy, or `--publish`, which
/// anyone on the host may connect to. Each has its own share, so that
/// neither starves the other.
#[derive(Clone, Copy)]
pub enum Use {
    Proxy,
    Publish,
}

static IN_USE: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// One connection's share of the budget, given back when dropped.
pub struct Slot(Use);

impl Slot {
    /// A slot, if the budget has one left for `use_`: the proxy two
    /// thirds of the capacity, `--publish` the rest.
    pub fn take(use_: Use) -> Option<Slot> {
        let total = capacity();
        let limit = match use_ {
            Use::Proxy => total * 2 / 3,
            Use::Publish => total - total * 2 / 3,
        };
        IN_USE[use_ as usize]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(use_))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_USE[self.0 as usize].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Caps what the kernel buffers for `sock` each way.
pub fn cap_buffers(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: setsockopt on our socket with an int of the right size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&SOCKET_BUFFER as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

/// Copies `a` → `b` on a new thread and `b` → `a` on this one, adding what
/// passes to `a_to_b` and `b_to_a`, then returns once both are done.
/// `first` is sent to `b` before anything else (what was read past a
/// request head).
pub fn both_ways(
    a: TcpStream,
    b: TcpStream,
    first: &[u8],
    a_to_b: Arc<AtomicU64>,
    b_to_a: Arc<AtomicU64>,
) -> io::Result<()> {
    if !first.is_empty() {
        (&b).write_all(first)?;
        a_to_b.fetch_add(first.len() as u64, Ordering::Relaxed);
    }
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (a2, b2) = (a.clone(), b.clone());
    let forward = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || one_way(&a2, &b2, &a_to_b))?;
    let _ = one_way(&b, &a, &b_to_a);
    let _ = forward.join();
    Ok(())
}

/// How a direction's bytes were moved.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// Through a pipe, never through this process's memory.
    Spliced,
    /// Through a buffer of ours (the kernel refused to splice).
    Copied,
}

/// Copies until EOF or an error, then ends `to`'s writing side.
pub fn one_way(from: &TcpStream, to: &TcpStream, counter: &AtomicU64) -> Moved {
    let moved = match splice_all(from, to, counter) {
        Ok(()) => Moved::Spliced,
        Err(Unspliced) => {
            copy_all(from, to, counter);
            Moved::Copied
        }
    };
    let _ = to.shutdown(Shutdown::Write);
    moved
}

/// The kernel could not splice these sockets: nothing was moved yet.
struct Unspliced;

/// Moves the bytes through a pipe with `splice`: the kernel hands the
/// socket's pages on without copying them into this process and out
/// again, which is what keeps a proxied download near the speed of a
/// direct one on a machine whose cores are busy with both ends.
fn splice_all(from: &TcpStream, to: &TcpStream, counter: &AtomicU64) -> Result<(), Unspliced> {
    use std::os::fd::AsRawFd;
    let Ok((pipe_read, pipe_write)) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) else {
        return Err(Unspliced);
    };
    // SAFETY: fcntl on a pipe we own; a smaller pipe only means more calls.
    unsafe { libc::fcntl(pipe_write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    let flags = libc::SPLICE_F_MOVE;
    let mut moved_any = false;
    loop {
        // SAFETY: splice between descriptors we own, no offsets.
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                pipe_write.as_raw_fd(),
                std::ptr::null_mut(),
                PIPE_SIZE as usize,
                flags,
            )
        };
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EINVAL) if !moved_any => return Err(Unspliced),
                _ => {
                    let _ = from.shutdown(Shutdown::Read);
                    return Ok(());
                }
            }
        }
        moved_any = true;
        let mut left = n as usize;
        while left > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    pipe_read.as_raw_fd(),
                    std::ptr::null_mut(),
                    to.as_raw_fd(),
                    std::ptr::null_mut(),
                    left,
                    flags,
                )
            };
            if m < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if m <= 0 {
                // The other side is gone: nothing more can be delivered.
                let _ = from.shutdown(Shutdown::Read);
                return Ok(());
            }
            left -= m as usize;
            counter.fetch_add(m as u64, Ordering::Relaxed);
        }
    }
}

/// The same through a buffer of ours, where splice is refused.
fn copy_all(mut from: &TcpStream, mut to: &TcpStream, counter: &AtomicU64) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if to.write_all(&buf[..n]).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            break;
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair of loopback TCP sockets.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    /// Every byte arrives, in order, counted, and the end is passed on; and
    /// between TCP sockets the bytes are spliced, never copied through our
    /// memory (what keeps a proxied download near a direct one: bench item
    /// 10). Copying instead makes this test fail.
    #[test]
    fn tcp_to_tcp_is_spliced_whole_and_counted() {
        let (mut job, job_side) = pair();
        let (host_side, mut host) = pair();
        let data: Vec<u8> = (0..(8 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            job.write_all(&sent).unwrap();
            job.shutdown(Shutdown::Write).unwrap();
            job
        });
        let counter = Arc::new(AtomicU64::new(0));
        let c = counter.clone();
        let relay = std::thread::spawn(move || one_way(&job_side, &host_side, &c));
        let mut got = Vec::new();
        host.read_to_end(&mut got).unwrap();
        assert_eq!(relay.join().unwrap(), Moved::Spliced);
        drop(writer.join().unwrap());
        assert!(got == data, "the bytes arrived changed");
        assert_eq!(counter.load(Ordering::Relaxed), data.len() as u64);
    }
}

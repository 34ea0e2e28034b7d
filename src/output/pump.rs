//! The log pump: moves one of the job's output pipes into its log file.
//!
//! Bytes are counted as the job wrote them, masked as they stream, and stored
//! up to the per-log cap; past the cap the pipe is still drained (a job must
//! never block on a full pipe) but nothing more reaches the disk. A failed
//! write (disk full) stops storing and is reported, never fatal to the job.
//!
//! Every pass first splices what the job's pipe holds (up to 1 MiB) into a
//! relay pipe of ours: that moves page references, copies nothing, and wakes
//! a job blocked on its full pipe once per MiB instead of once per read.
//! Without masking the relay is then spliced into the log, so the bytes never
//! enter our memory. Splicing the job's pipe straight into the log would hold
//! the job's pipe locked for the whole file write, and the job's own writes
//! would wait (spinning) that long. With masking, or where the log's
//! filesystem cannot splice, the relay is read into one reused buffer,
//! masked in place and written with one writev per read.
//!
//! Once nothing more can be stored (cap reached, write failed) the pipe is
//! spliced into /dev/null, which costs no copy at all.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::mask::Masker;
use crate::job::model::StreamStats;

/// Bytes read into memory at once: few calls, and still in the cache for
/// the masker's scan and the write that follows.
const CHUNK: usize = 256 * 1024;
/// Where in a page a byte sits matters to the kernel's copies (below).
const PAGE: usize = 4096;
/// Bytes asked of one splice: the whole pipe (its size is raised to 1 MiB).
const SPLICE_CHUNK: usize = 1 << 20;
/// Pieces gathered into one writev; more are written in further calls.
const IOV_BATCH: usize = 64;

/// Whether the pipe has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    Eof,
}

/// One stream: pipe in, log out.
pub struct Pump {
    pipe: Option<OwnedFd>,
    sink: Sink,
    masker: Option<Masker>,
    /// Allocated on the first read: a splicing pump never needs it.
    ///
    /// A read lands at `origin + pos % PAGE`, so a byte sits at the same
    /// offset within a page as in the pipe's page it comes from (when the
    /// job writes whole pages, as cat does) and as in the log's page it goes
    /// to (up to what masking took out). The kernel's copies ran 2 to 3
    /// times slower on the test machine when the destination was 1 to 31
    /// bytes past the source modulo a page; with a plain buffer that
    /// depended on where the heap put it.
    buf: Vec<u8>,
    /// A page-aligned index in `buf`, at least `hold_back` bytes in.
    origin: usize,
    /// Bytes read into `buf` so far.
    pos: u64,
    /// What the masker held back: the `held` bytes before the next read.
    held: usize,
    relay: RelayState,
    /// Cleared when the kernel refuses to splice into the log (EINVAL).
    log_splice: bool,
    /// Where the pipe goes once nothing more is stored: `None` until needed.
    null: Option<Null>,
}

enum RelayState {
    /// Made on the first bytes: a stream that stays silent costs no pipe.
    Untried,
    Ready(Relay),
    /// No pipe could be made (or it failed): work on the job's pipe itself.
    Failed,
}

/// A pipe of ours between the job's pipe and the log.
struct Relay {
    read: OwnedFd,
    write: OwnedFd,
    /// Its capacity: the most one splice into it can move.
    size: usize,
}

enum Null {
    Splice(File),
    /// /dev/null could not be opened or spliced into: read and forget.
    Read,
}

/// The log file and what was stored in it.
struct Sink {
    log: File,
    cap: u64,
    stats: StreamStats,
}

impl Pump {
    pub fn new(pipe: OwnedFd, log: File, masker: Option<Masker>, cap: u64) -> Pump {
        Pump {
            pipe: Some(pipe),
            sink: Sink {
                log,
                cap,
                stats: StreamStats::default(),
            },
            masker,
            buf: Vec::new(),
            origin: 0,
            pos: 0,
            held: 0,
            relay: RelayState::Untried,
            log_splice: true,
            null: None,
        }
    }

    /// The pipe's raw fd for poll, while it is open.
    pub fn fd(&self) -> Option<i32> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// Moves what is available (the pipe is non-blocking) and stores it.
    pub fn pump(&mut self) -> Flow {
        let Some(pipe) = self.pipe.as_ref() else {
            return Flow::Eof;
        };
        let fd = pipe.as_raw_fd();
        loop {
            if !self.sink.storing() {
                return self.drain(fd);
            }
            if matches!(self.relay, RelayState::Untried) {
                self.relay = Relay::new().map_or(RelayState::Failed, RelayState::Ready);
            }
            let step = match &self.relay {
                RelayState::Ready(relay) => {
                    let (to, want) = (relay.write.as_raw_fd(), relay.size);
                    self.relay_some(fd, to, want)
                }
                _ if self.masker.is_none() && self.log_splice => self.splice_direct(fd),
                _ => self.read_some(fd),
            };
            match step {
                Step::Drained => return Flow::More, // poll says when there is more
                Step::Eof => {
                    self.close();
                    return Flow::Eof;
                }
                Step::Again => continue,
            }
        }
    }

    /// Job pipe -> relay -> log (or memory).
    fn relay_some(&mut self, fd: i32, to: i32, want: usize) -> Step {
        let n = splice(fd, to, want, libc::SPLICE_F_NONBLOCK);
        if n > 0 {
            let n = n as usize;
            self.sink.stats.total_bytes += n as u64;
            self.empty_relay(n);
            return if n < want { Step::Drained } else { Step::Again };
        }
        if n == 0 {
            return Step::Eof;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Step::Drained,
            Some(libc::EINTR) => Step::Again,
            _ => {
                // Pipe to pipe cannot fail but for EAGAIN; should it, do without.
                self.relay = RelayState::Failed; // it is empty
                Step::Again
            }
        }
    }

    /// Moves the `n` bytes just put into the relay on into the log: spliced
    /// when there is no masking, else (or when the log refuses spliced bytes)
    /// read into memory, masked and written; once storing stopped they are
    /// read and dropped (they were counted already).
    fn empty_relay(&mut self, mut n: usize) {
        let RelayState::Ready(relay) = &self.relay else {
            return;
        };
        let from = relay.read.as_raw_fd();
        while n > 0 && self.masker.is_none() && self.log_splice && self.sink.storing() {
            let len = (n as u64).min(self.sink.room()) as usize;
            let m = splice(
                from,
                self.sink.log.as_raw_fd(),
                len,
                libc::SPLICE_F_NONBLOCK,
            );
            if m > 0 {
                n -= m as usize;
                self.sink.stats.log_bytes += m as u64;
                continue;
            }
            if m < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // This log's filesystem cannot splice: read and write instead.
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                        self.log_splice = false;
                        continue;
                    }
                    Some(libc::EAGAIN) => {}
                    // The relay cannot fail: the log is at fault.
                    _ => self.sink.failed(&err),
                }
            }
            break;
        }
        while n > 0 {
            match self.read_into_buf(from, n) {
                Ok(m) if m > 0 => n -= m,
                _ => break, // empty: nothing was left after all
            }
        }
    }

    /// Job pipe -> log, where there is no relay.
    fn splice_direct(&mut self, fd: i32) -> Step {
        let want = (SPLICE_CHUNK as u64).min(self.sink.room()) as usize;
        let n = splice(fd, self.sink.log.as_raw_fd(), want, libc::SPLICE_F_NONBLOCK);
        if n > 0 {
            self.sink.stats.total_bytes += n as u64;
            self.sink.stats.log_bytes += n as u64;
            return if (n as usize) < want {
                Step::Drained
            } else {
                Step::Again
            };
        }
        if n == 0 {
            return Step::Eof;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Step::Drained,
            Some(libc::EINTR) => {}
            // This log's filesystem cannot splice: read and write instead.
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => self.log_splice = false,
            // The pipe side cannot fail but for EAGAIN: the log is at fault.
            _ => self.sink.failed(&err),
        }
        Step::Again
    }

    /// Job pipe -> memory -> log, where there is no relay.
    fn read_some(&mut self, fd: i32) -> Step {
        match self.read_into_buf(fd, CHUNK) {
            Ok(0) => Step::Eof,
            Ok(n) => {
                self.sink.stats.total_bytes += n as u64;
                if n < CHUNK {
                    Step::Drained
                } else {
                    Step::Again
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Step::Drained,
            Err(_) => Step::Eof, // a pipe that cannot be read is as good as closed
        }
    }

    /// Reads at most `max` (and [`CHUNK`]) bytes from `fd` behind what the
    /// masker held back, and stores them (masked); `Ok(0)` at end of file.
    fn read_into_buf(&mut self, fd: i32, max: usize) -> io::Result<usize> {
        let hold = self.masker.as_ref().map_or(0, Masker::hold_back);
        let need = hold + 2 * PAGE + CHUNK;
        if self.buf.len() < need {
            // Allocated once, before anything was held back.
            self.buf = vec![0; need];
            let addr = self.buf.as_ptr() as usize;
            self.origin = hold + (PAGE - (addr + hold) % PAGE) % PAGE;
            self.held = 0;
        }
        let at = self.next_read_at();
        let room = &mut self.buf[at..at + max.min(CHUNK)];
        loop {
            // SAFETY: reading into a part of a buffer we own, of its length, from an fd we own.
            let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
            if n >= 0 {
                let n = n as usize;
                self.pos += n as u64;
                if n > 0 && self.masker.is_some() {
                    self.mask_and_store(at - self.held, at + n, false);
                } else if n > 0 {
                    self.sink.store(&self.buf[at..at + n]);
                }
                return Ok(n);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Where in `buf` the next read goes (see `buf`).
    fn next_read_at(&self) -> usize {
        self.origin + (self.pos % PAGE as u64) as usize
    }

    /// Masks `buf[start..end]` in place and stores what is final; the
    /// held-back tail moves to just before the next read (nothing is held
    /// back when `last`).
    fn mask_and_store(&mut self, start: usize, end: usize, last: bool) {
        let Some(masker) = self.masker.as_ref() else {
            return;
        };
        let sink = &mut self.sink;
        let mut gather = Gather::new();
        let keep = masker.scan(&self.buf[start..end], last, |piece| {
            gather.push(sink, piece)
        });
        gather.flush(sink);
        let tail = end - start - keep;
        let to = self.next_read_at() - tail;
        self.buf.copy_within(start + keep..end, to);
        self.held = tail;
    }

    /// Nothing more is stored: empties the pipe and only counts.
    fn drain(&mut self, fd: i32) -> Flow {
        // What the masker held back would have been stored after the cap.
        self.drop_held();
        if self.null.is_none() {
            self.null = Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open("/dev/null")
                    .map_or(Null::Read, Null::Splice),
            );
        }
        loop {
            let (n, ask) = match &self.null {
                Some(Null::Splice(null)) => (
                    splice(fd, null.as_raw_fd(), SPLICE_CHUNK, libc::SPLICE_F_NONBLOCK),
                    SPLICE_CHUNK,
                ),
                _ => {
                    if self.buf.len() < CHUNK {
                        self.buf.resize(CHUNK, 0);
                    }
                    // SAFETY: reading into a buffer we own, at most its length, from an fd we own.
                    let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), CHUNK) };
                    (n, CHUNK)
                }
            };
            if n > 0 {
                self.sink.stats.total_bytes += n as u64;
                self.sink.dropped();
                if (n as usize) < ask {
                    return Flow::More;
                }
                continue;
            }
            if n == 0 {
                self.close();
                return Flow::Eof;
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => return Flow::More,
                Some(libc::EINTR) => continue,
                _ if matches!(self.null, Some(Null::Splice(_))) => self.null = Some(Null::Read),
                _ => {
                    self.close();
                    return Flow::Eof;
                }
            }
        }
    }

    fn drop_held(&mut self) {
        if self.held > 0 {
            self.held = 0;
            self.sink.dropped();
        }
    }

    /// Stops reading (flushing what the masker held back).
    pub fn close(&mut self) {
        if self.pipe.take().is_some() && self.held > 0 {
            if self.sink.storing() {
                let at = self.next_read_at();
                self.mask_and_store(at - self.held, at, true);
            } else {
                self.drop_held();
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    pub fn stats(&self) -> &StreamStats {
        &self.sink.stats
    }
}

/// What one step of a pass did.
enum Step {
    /// The pipe is empty for now.
    Drained,
    /// There may be more: go on.
    Again,
    /// The job's end of the pipe is closed and nothing is left.
    Eof,
}

/// splice(2) between two fds of ours at their file positions.
fn splice(from: i32, to: i32, len: usize, flags: libc::c_uint) -> isize {
    // SAFETY: both fds are open and ours; null offsets use the file positions.
    unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    }
}

impl Relay {
    fn new() -> Option<Relay> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return None;
        }
        // SAFETY: fresh descriptors, owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own. As big as the job's pipe, so
        // one splice takes all it holds; the kernel may give less.
        let size = unsafe {
            libc::fcntl(fds[0], libc::F_SETPIPE_SZ, SPLICE_CHUNK as libc::c_int);
            libc::fcntl(fds[0], libc::F_GETPIPE_SZ)
        };
        (size > 0).then_some(Relay {
            read,
            write,
            size: size as usize,
        })
    }
}

impl Sink {
    /// Whether bytes still reach the log.
    fn storing(&self) -> bool {
        self.stats.log_error.is_none() && self.stats.log_bytes < self.cap
    }

    fn room(&self) -> u64 {
        self.cap.saturating_sub(self.stats.log_bytes)
    }

    /// Output that was not stored: past the cap (a failed log is not truncated, it failed).
    fn dropped(&mut self) {
        if self.stats.log_error.is_none() {
            self.stats.log_truncated = true;
        }
    }

    fn failed(&mut self, err: &io::Error) {
        self.stats.log_error = Some(format!("log write failed: {err}"));
    }

    fn store(&mut self, bytes: &[u8]) {
        let mut gather = Gather::new();
        gather.push(self, bytes);
        gather.flush(self);
    }
}

/// Pieces of output for one writev, cut at the log cap.
struct Gather<'a> {
    iov: [IoSlice<'a>; IOV_BATCH],
    len: usize,
    bytes: u64,
}

impl<'a> Gather<'a> {
    fn new() -> Gather<'a> {
        Gather {
            iov: [IoSlice::new(&[]); IOV_BATCH],
            len: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, sink: &mut Sink, piece: &'a [u8]) {
        if piece.is_empty() || sink.stats.log_error.is_some() {
            return;
        }
        if self.len == IOV_BATCH {
            self.flush(sink);
            if sink.stats.log_error.is_some() {
                return;
            }
        }
        let room = sink.room().saturating_sub(self.bytes);
        let take = (piece.len() as u64).min(room) as usize;
        if take < piece.len() {
            sink.stats.log_truncated = true;
        }
        if take == 0 {
            return;
        }
        self.iov[self.len] = IoSlice::new(&piece[..take]);
        self.len += 1;
        self.bytes += take as u64;
    }

    /// Writes what was gathered; stops storing on the first error.
    fn flush(&mut self, sink: &mut Sink) {
        let mut iov = &mut self.iov[..self.len];
        while !iov.is_empty() {
            match sink.log.write_vectored(iov) {
                Ok(0) => {
                    sink.failed(&io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => {
                    sink.stats.log_bytes += n as u64;
                    IoSlice::advance_slices(&mut iov, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    sink.failed(&e);
                    break;
                }
            }
        }
        self.len = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A pipe as the job gets it: non-blocking read end, blocking write end.
    fn job_pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptors.
        unsafe {
            libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fds[0], libc::F_SETPIPE_SZ, SPLICE_CHUNK as libc::c_int);
        }
        (r, w)
    }

    fn wait_readable(pump: &Pump) {
        let mut pfd = libc::pollfd {
            fd: pump.fd().unwrap(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
    }

    /// Pumps `data`, written by another thread, into `log` until EOF.
    fn pump_all(data: Vec<u8>, log: File, masker: Option<Masker>, cap: u64) -> StreamStats {
        let (r, w) = job_pipe();
        let writer = std::thread::spawn(move || {
            let mut w = w;
            w.write_all(&data).unwrap();
        });
        let mut pump = Pump::new(r, log, masker, cap);
        while pump.pump() == Flow::More {
            wait_readable(&pump);
        }
        writer.join().unwrap();
        pump.stats().clone()
    }

    /// Pumps `chunks`, each read on its own (so they are exactly the reads),
    /// through the relay or, with `relay` false, straight from the pipe.
    fn pump_chunks(
        chunks: &[&[u8]],
        log: File,
        masker: Option<Masker>,
        cap: u64,
        relay: bool,
    ) -> StreamStats {
        let (r, mut w) = job_pipe();
        let mut pump = Pump::new(r, log, masker, cap);
        if !relay {
            pump.relay = RelayState::Failed;
        }
        for c in chunks {
            w.write_all(c).unwrap();
            assert_eq!(pump.pump(), Flow::More);
        }
        drop(w);
        while pump.pump() == Flow::More {
            wait_readable(&pump);
        }
        pump.stats().clone()
    }

    fn masker(secrets: &[&str]) -> Option<Masker> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        Masker::new(&secrets)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn log_in(dir: &tempfile::TempDir, append: bool) -> (File, std::path::PathBuf) {
        let path = dir.path().join("out.log");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(!append)
            .append(append)
            .open(&path)
            .unwrap();
        (f, path)
    }

    fn read(path: &std::path::Path) -> Vec<u8> {
        let mut v = Vec::new();
        File::open(path).unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn secrets_split_at_every_read_boundary_are_masked() {
        let text = b"a tok-secret-01tok-secret-02 tok-secret-0 tok-secret-03 tok-sec";
        let secrets = ["tok-secret-01", "tok-secret-02", "tok-secret-03", "et-0"];
        let want = b"a ****** tok-secr*** *** tok-sec".to_vec();
        let dir = tempfile::tempdir().unwrap();
        for relay in [true, false] {
            for i in 0..=text.len() {
                for j in (i..=text.len()).step_by(3) {
                    let (log, path) = log_in(&dir, false);
                    let chunks = [&text[..i], &text[i..j], &text[j..]];
                    let stats = pump_chunks(&chunks, log, masker(&secrets), u64::MAX, relay);
                    assert_eq!(read(&path), want, "cuts at {i} and {j}, relay {relay}");
                    assert_eq!(stats.total_bytes, text.len() as u64);
                    assert_eq!(stats.log_bytes, want.len() as u64);
                    assert!(!stats.log_truncated);
                }
            }
        }
    }

    #[test]
    fn reads_of_every_size_land_page_aligned_with_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for i in 0..40_000 {
            text.extend_from_slice(format!("{i} hunter2-x ").as_bytes());
        }
        let want = String::from_utf8(text.clone())
            .unwrap()
            .replace("hunter2-x", "***")
            .into_bytes();
        let sizes = [
            1,
            4095,
            4097,
            CHUNK - 1,
            CHUNK + 1,
            3,
            2 * CHUNK + 7,
            100_000,
        ];
        for relay in [true, false] {
            let (log, path) = log_in(&dir, false);
            let (r, mut w) = job_pipe();
            let mut pump = Pump::new(r, log, masker(&["hunter2-x", "2-x 1"]), u64::MAX);
            if !relay {
                pump.relay = RelayState::Failed;
            }
            let mut rest = &text[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, r) = rest.split_at((*size).min(rest.len()));
                rest = r;
                w.write_all(chunk).unwrap();
                while pump.pump() == Flow::More && pump.pos < (text.len() - rest.len()) as u64 {}
                let at = pump.buf.as_ptr() as usize + pump.next_read_at();
                assert_eq!(at % PAGE, (pump.pos % PAGE as u64) as usize);
            }
            drop(w);
            while pump.pump() == Flow::More {
                wait_readable(&pump);
            }
            assert_eq!(read(&path), want, "relay {relay}");
            assert_eq!(pump.stats().total_bytes, text.len() as u64);
        }
    }

    #[test]
    fn masking_many_secrets_in_one_read() {
        // Far more pieces than one writev takes.
        let dir = tempfile::tempdir().unwrap();
        let text = b"ab".repeat(20_000);
        for relay in [true, false] {
            let (log, path) = log_in(&dir, false);
            let stats = pump_chunks(&[&text], log, masker(&["a", "zz"]), u64::MAX, relay);
            assert_eq!(read(&path), b"***b".repeat(20_000));
            assert_eq!(stats.total_bytes, text.len() as u64);
        }
    }

    #[test]
    fn masked_output_is_capped_where_the_cap_falls() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for i in 0..3000 {
            text.extend_from_slice(format!("line {i} hunter2 and some more\n").as_bytes());
        }
        let full: Vec<u8> = String::from_utf8(text.clone())
            .unwrap()
            .replace("hunter2", "***")
            .into_bytes();
        let len = full.len() as u64;
        for cap in [0, 1, 7, 8, 100_000, len - 1, len, len + 1] {
            for relay in [true, false] {
                let (log, path) = log_in(&dir, false);
                let chunks: Vec<&[u8]> = text.chunks(40_000).collect();
                let stats = pump_chunks(&chunks, log, masker(&["hunter2"]), cap, relay);
                let stored = cap.min(len) as usize;
                assert_eq!(read(&path), &full[..stored], "cap {cap}");
                assert_eq!(stats.total_bytes, text.len() as u64);
                assert_eq!(stats.log_bytes, stored as u64);
                assert_eq!(stats.log_truncated, cap < len, "cap {cap}");
            }
        }
    }

    #[test]
    fn a_secret_held_back_at_the_cap_counts_as_truncated() {
        // The log is full with "x" while "hun" waits for the rest of a secret.
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let stats = pump_chunks(&[b"xhun"], log, masker(&["hunter2"]), 1, true);
        assert_eq!(read(&path), b"x");
        assert!(stats.log_truncated);
        assert_eq!(stats.total_bytes, 4);
    }

    #[test]
    fn masking_into_a_full_disk_is_reported_and_the_pipe_still_drained() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let bytes = data(SPLICE_CHUNK * 2);
        let stats = pump_all(bytes.clone(), full, masker(&["abc"]), u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, 0);
        assert!(stats.log_error.is_some());
        assert!(!stats.log_truncated);
    }

    #[test]
    fn a_zero_cap_drains_everything_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let bytes = data(3 * SPLICE_CHUNK + 5);
        let stats = pump_all(bytes.clone(), log, None, 0);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, 0);
        assert!(stats.log_truncated);
        assert!(read(&path).is_empty());
    }

    #[test]
    fn without_a_relay_splices_straight_into_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let bytes = data(2 * CHUNK + 9);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK / 2).collect();
        let stats = pump_chunks(&chunks, log, None, CHUNK as u64, false);
        assert_eq!(read(&path), &bytes[..CHUNK]);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert!(stats.log_truncated);
    }

    #[test]
    fn splices_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let bytes = data(5 * SPLICE_CHUNK + 12345);
        let stats = pump_all(bytes.clone(), log, None, u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, bytes.len() as u64);
        assert!(!stats.log_truncated);
        assert_eq!(read(&path), bytes);
    }

    #[test]
    fn cap_stops_storing_but_keeps_counting() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let bytes = data(3 * SPLICE_CHUNK);
        let cap = SPLICE_CHUNK as u64 + 7;
        let stats = pump_all(bytes.clone(), log, None, cap);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, cap);
        assert!(stats.log_truncated);
        assert_eq!(read(&path), &bytes[..cap as usize]);
    }

    #[test]
    fn falls_back_to_reading_where_splice_is_refused() {
        // The kernel refuses to splice into a file opened for appending.
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, true);
        let bytes = data(2 * CHUNK + 3);
        let stats = pump_all(bytes.clone(), log, None, u64::MAX);
        assert_eq!(stats.log_bytes, bytes.len() as u64);
        assert!(stats.log_error.is_none());
        assert_eq!(read(&path), bytes);
    }

    #[test]
    fn a_full_disk_is_reported_and_the_pipe_still_drained() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let bytes = data(SPLICE_CHUNK * 2);
        let stats = pump_all(bytes.clone(), full, None, u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, 0);
        assert!(stats.log_error.is_some());
    }

    #[test]
    fn masking_reads_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir, false);
        let mut bytes = b"x".repeat(CHUNK - 3);
        bytes.extend_from_slice(b"hunter2 and hunter2");
        let masker = Masker::new(&["hunter2".to_string()]);
        let stats = pump_all(bytes.clone(), log, masker, u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        let mut want = b"x".repeat(CHUNK - 3);
        want.extend_from_slice(b"*** and ***");
        assert_eq!(read(&path), want);
    }
}

//! The log pump: moves one of the job's output pipes into its log file.
//!
//! Bytes are counted as the job wrote them, masked as they stream, and stored
//! up to the per-log cap; past the cap the pipe is still drained (a job must
//! never block on a full pipe) but nothing more reaches the disk. A failed
//! write (disk full) stops storing and is reported, never fatal to the job.
//!
//! Every pass first splices what the job's pipe holds (up to [`PIPE_SIZE`])
//! into a relay pipe of ours: that moves page references, copies nothing,
//! and wakes a job blocked on its full pipe once per pipeful instead of once
//! per read.
//! Then the relay is read into a buffer, masked in place (with masking), and
//! the pieces are written with writev by a writer thread (see `writer`)
//! while the pump reads the next ones. Without masking on a single core (or
//! without a writer thread), the relay is spliced into the log instead: one
//! copy fewer, but no second core (see `Pump::memory_is_faster`). Splicing
//! the job's pipe straight into the log would hold the job's pipe locked for
//! the whole file write, and the job's own writes would wait (spinning) that
//! long: hence the relay.
//!
//! Once nothing more can be stored (cap reached, write failed) the pipe is
//! spliced into /dev/null, which costs no copy at all.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use super::mask::{Masker, Piece};
use super::writer::{Batch, Writer, PAGE};
use super::StreamStats;

/// Bytes read into memory at once: few calls, and still in the cache for
/// the masker's scan and the write that follows.
const CHUNK: usize = 256 * 1024;
/// The size of the job's output pipes and of the relay, so that one splice
/// takes all the job's pipe holds. Big enough that the job sleeps on a full
/// pipe four times less often than with the kernel's 64 KiB; small enough
/// that the bytes the job wrote are still in the cache when the pump reads
/// them. 1 GiB through the pump (tmpfs, 2 cores, 100 alternating runs):
/// median 736 ms with 256 KiB, 796 ms with 1 MiB, and worse again with
/// 128 KiB or 2 MiB; `cat FILE > out`: 646 ms. Over four such batches
/// 256 KiB was faster in 128 of 210 pairs; with masking, in 57 of 120 (no
/// difference).
pub const PIPE_SIZE: usize = 256 * 1024;
/// Bytes asked of one splice: the whole pipe.
const SPLICE_CHUNK: usize = PIPE_SIZE;
/// Unmasked bytes spliced before the pump considers memory and a writer thread.
const MEMORY_AFTER: u64 = 1 << 20;

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
    /// Made at the first write from memory: a splicing pump needs none.
    writer: Option<Writer>,
    /// The batch being filled. A read lands at `origin + pos % PAGE` (see
    /// [`Batch::origin`]); with masking the `held` bytes just before that
    /// are what the masker held back.
    batch: Option<Batch>,
    /// Bytes read into memory so far.
    pos: u64,
    held: usize,
    /// For draining by reading, where /dev/null cannot be spliced into.
    scratch: Vec<u8>,
    relay: RelayState,
    /// Whether unmasked bytes are spliced from the relay into the log
    /// (else they go through memory and the writer thread); `None` while
    /// the stream is short (spliced, see [`Pump::splicing`]), false once the
    /// kernel refuses to splice into the log.
    splice_log: Option<bool>,
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
    log: Arc<File>,
    cap: u64,
    stats: StreamStats,
    /// Bytes spliced into the log or handed to the writer: what the cap counts.
    accepted: u64,
    /// Bytes spliced into the log (the writer counts the rest).
    spliced: u64,
}

impl Pump {
    pub fn new(pipe: OwnedFd, log: File, masker: Option<Masker>, cap: u64) -> Pump {
        Pump {
            pipe: Some(pipe),
            sink: Sink {
                log: Arc::new(log),
                cap,
                stats: StreamStats::default(),
                accepted: 0,
                spliced: 0,
            },
            masker,
            writer: None,
            batch: None,
            pos: 0,
            held: 0,
            scratch: Vec::new(),
            relay: RelayState::Untried,
            splice_log: None,
            null: None,
        }
    }

    /// The pipe's raw fd for poll, while it is open.
    pub fn fd(&self) -> Option<i32> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// What to do when poll reports `revents` on the pipe. A pipe that is
    /// empty with no writer left has ended: it closes without making a relay
    /// for bytes that will never come. Otherwise, [`Pump::pump`].
    pub fn ready(&mut self, revents: i16) -> Flow {
        if revents & libc::POLLIN == 0 && revents & libc::POLLHUP != 0 {
            self.close();
            return Flow::Eof;
        }
        self.pump()
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
            if self.splice_log.is_none()
                && self.masker.is_none()
                && self.sink.spliced >= MEMORY_AFTER
            {
                self.splice_log = Some(!self.memory_is_faster());
                // Reads keep the stream's offset within a page (see Batch::origin).
                self.pos = self.sink.spliced;
            }
            let step = match &self.relay {
                RelayState::Ready(relay) => {
                    let (to, want) = (relay.write.as_raw_fd(), relay.size);
                    self.relay_some(fd, to, want)
                }
                _ if self.splicing() => self.splice_direct(fd),
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

    /// Whether unmasked bytes reach the log faster through memory than by
    /// splice. Splicing copies once, but all on one core: the copy out of
    /// the pipe's pages, freeing them, and the file write. Reading the relay
    /// into memory and leaving the write to the writer thread copies twice
    /// but on two cores: on the test machine (2 cores, tmpfs) 1 GiB took 745
    /// instead of 929 ms (cat FILE > out: 701), for 880 instead of 912 ms of
    /// CPU. With one core, or no writer thread, splicing is faster.
    fn memory_is_faster(&mut self) -> bool {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        cores > 1 && self.writer().start_thread()
    }

    /// Whether unmasked bytes are spliced into the log: until the stream
    /// has shown it is long (a thread is not worth it for the kilobytes
    /// most jobs write), then as [`Pump::memory_is_faster`] decides.
    fn splicing(&self) -> bool {
        self.masker.is_none() && self.splice_log != Some(false)
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
        while n > 0 && self.splicing() && self.sink.storing() {
            let len = (n as u64).min(self.sink.room()) as usize;
            let m = splice(
                from,
                self.sink.log.as_raw_fd(),
                len,
                libc::SPLICE_F_NONBLOCK,
            );
            if m > 0 {
                n -= m as usize;
                self.sink.spliced(m as u64);
                continue;
            }
            if m < 0 {
                let err = io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // This log's filesystem cannot splice: read and write instead.
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
                        self.splice_log = Some(false);
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
            self.sink.spliced(n as u64);
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
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => self.splice_log = Some(false),
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
    /// masker held back, and hands them on (masked); `Ok(0)` at end of file.
    fn read_into_buf(&mut self, fd: i32, max: usize) -> io::Result<usize> {
        let mut batch = match self.batch.take() {
            Some(batch) => batch,
            None => self.writer().batch(),
        };
        let at = batch.origin + self.page_offset();
        let room = &mut batch.buf[at..at + max.min(CHUNK)];
        let n = loop {
            // SAFETY: reading into a part of a buffer we own, of its length, from an fd we own.
            let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
            if n >= 0 {
                break n as usize;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                self.batch = Some(batch);
                return Err(err);
            }
        };
        if n == 0 {
            self.batch = Some(batch);
            return Ok(0);
        }
        self.pos += n as u64;
        if self.masker.is_some() {
            self.mask_and_store(batch, at - self.held, at + n, false);
        } else {
            self.sink.accept(&mut batch.pieces, Piece::Text(at, at + n));
            self.hand_on(batch, at + n, 0);
        }
        Ok(n)
    }

    /// Where the next read goes within a page (see [`Batch::origin`]).
    fn page_offset(&self) -> usize {
        (self.pos % PAGE as u64) as usize
    }

    fn writer(&mut self) -> &mut Writer {
        let before = self.masker.as_ref().map_or(0, Masker::hold_back);
        let log = &self.sink.log;
        self.writer
            .get_or_insert_with(|| Writer::new(Arc::clone(log), CHUNK + PAGE, before))
    }

    /// Masks `batch.buf[start..end]` in place and hands on what is final;
    /// the held-back tail goes to just before the next read (nothing is held
    /// back when `last`).
    fn mask_and_store(&mut self, mut batch: Batch, start: usize, end: usize, last: bool) {
        let Some(masker) = self.masker.as_ref() else {
            self.batch = Some(batch);
            return;
        };
        let sink = &mut self.sink;
        let pieces = &mut batch.pieces;
        let keep = masker.scan(&batch.buf[start..end], last, |piece| {
            sink.accept(pieces, piece.shifted(start))
        });
        self.hand_on(batch, start + keep, end - start - keep);
    }

    /// Hands `batch` to the writer unless it has nothing to write; the
    /// `tail` bytes at `tail_at` (held back) go before the next read.
    fn hand_on(&mut self, mut batch: Batch, tail_at: usize, tail: usize) {
        let off = self.page_offset();
        if batch.pieces.is_empty() {
            let to = batch.origin + off - tail;
            batch.buf.copy_within(tail_at..tail_at + tail, to);
            self.batch = Some(batch);
        } else {
            let writer = self.writer();
            let mut next = writer.batch();
            let to = next.origin + off - tail;
            next.buf[to..to + tail].copy_from_slice(&batch.buf[tail_at..tail_at + tail]);
            writer.submit(batch);
            self.batch = Some(next);
            self.sync();
        }
        self.held = tail;
    }

    /// Takes in what the writer wrote, and how it failed.
    fn sync(&mut self) {
        let sink = &mut self.sink;
        let (written, error) = match &self.writer {
            Some(w) => (w.written(), w.error()),
            None => (0, None),
        };
        sink.stats.log_bytes = sink.spliced + written;
        if let (None, Some(e)) = (&sink.stats.log_error, error) {
            sink.stats.log_error = Some(format!("log write failed: {e}"));
        }
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
                    if self.scratch.len() < CHUNK {
                        self.scratch.resize(CHUNK, 0);
                    }
                    // SAFETY: reading into a buffer we own, at most its length, from an fd we own.
                    let n = unsafe { libc::read(fd, self.scratch.as_mut_ptr().cast(), CHUNK) };
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

    /// Stops reading (flushing what the masker held back, and waiting for
    /// the writer to write everything).
    pub fn close(&mut self) {
        if self.pipe.take().is_none() {
            return;
        }
        if self.held > 0 && self.sink.storing() {
            if let Some(batch) = self.batch.take() {
                let at = batch.origin + self.page_offset();
                self.mask_and_store(batch, at - self.held, at, true);
            }
        }
        self.drop_held();
        if let Some(w) = self.writer.as_mut() {
            w.finish();
        }
        self.sync();
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
        self.stats.log_error.is_none() && self.accepted < self.cap
    }

    fn room(&self) -> u64 {
        self.cap.saturating_sub(self.accepted)
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

    fn spliced(&mut self, n: u64) {
        self.spliced += n;
        self.accepted += n;
        self.stats.log_bytes += n;
    }

    /// Adds `piece` to what goes to the log, cut at the cap.
    fn accept(&mut self, pieces: &mut Vec<Piece>, piece: Piece) {
        if piece.is_empty() || self.stats.log_error.is_some() {
            return;
        }
        let room = self.cap.saturating_sub(self.accepted);
        let take = (piece.len() as u64).min(room) as usize;
        if take < piece.len() {
            self.stats.log_truncated = true;
        }
        if take > 0 {
            pieces.push(piece.cut(take));
            self.accepted += take as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A pipe as the job gets it: non-blocking read end, blocking write end.
    fn job_pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptors. Bigger than a job's pipe:
        // tests write up to 2 * CHUNK + 7 bytes before they pump.
        unsafe {
            libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 4 * PIPE_SIZE as libc::c_int);
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
        pump_all_via(data, log, masker, cap, None)
    }

    /// As [`pump_all`], splicing into the log or not as `splice_log` says
    /// (`None`: as the pump decides).
    fn pump_all_via(
        data: Vec<u8>,
        log: File,
        masker: Option<Masker>,
        cap: u64,
        splice_log: Option<bool>,
    ) -> StreamStats {
        let (r, w) = job_pipe();
        let writer = std::thread::spawn(move || {
            let mut w = w;
            w.write_all(&data).unwrap();
        });
        let mut pump = Pump::new(r, log, masker, cap);
        pump.splice_log = splice_log;
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
        pump_chunks_via(chunks, log, masker, cap, relay, None)
    }

    fn pump_chunks_via(
        chunks: &[&[u8]],
        log: File,
        masker: Option<Masker>,
        cap: u64,
        relay: bool,
        splice_log: Option<bool>,
    ) -> StreamStats {
        let (r, mut w) = job_pipe();
        let mut pump = Pump::new(r, log, masker, cap);
        pump.splice_log = splice_log;
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
                let batch = pump.batch.as_ref().unwrap();
                let at = batch.buf.as_ptr() as usize + batch.origin + pump.page_offset();
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
    fn masking_without_a_writer_thread_gives_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for i in 0..200_000 {
            text.extend_from_slice(format!("{i} tok-secret-0{} ", i % 10).as_bytes());
        }
        let want = String::from_utf8(text.clone()).unwrap();
        let mut want = want.into_bytes();
        for i in 0..10 {
            let s = format!("tok-secret-0{i}");
            want = String::from_utf8(want)
                .unwrap()
                .replace(&s, "***")
                .into_bytes();
        }
        let secrets: Vec<String> = (0..10).map(|i| format!("tok-secret-0{i}")).collect();
        for inline in [false, true] {
            let (log, path) = log_in(&dir, false);
            let (r, w) = job_pipe();
            let mut pump = Pump::new(r, log, Masker::new(&secrets), u64::MAX);
            if inline {
                let before = pump.masker.as_ref().map_or(0, Masker::hold_back);
                let log = Arc::clone(&pump.sink.log);
                pump.writer = Some(Writer::inline(log, CHUNK + PAGE, before));
            }
            let data = text.clone();
            let writer = std::thread::spawn(move || {
                let mut w = w;
                w.write_all(&data).unwrap();
            });
            while pump.pump() == Flow::More {
                wait_readable(&pump);
            }
            writer.join().unwrap();
            assert_eq!(read(&path), want, "inline {inline}");
            assert_eq!(pump.stats().log_bytes, want.len() as u64);
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
        for splice_log in [Some(true), Some(false)] {
            let (log, path) = log_in(&dir, false);
            let bytes = data(2 * CHUNK + 9);
            let chunks: Vec<&[u8]> = bytes.chunks(CHUNK / 2).collect();
            let stats = pump_chunks_via(&chunks, log, None, CHUNK as u64, false, splice_log);
            assert_eq!(read(&path), &bytes[..CHUNK]);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert!(stats.log_truncated);
        }
    }

    #[test]
    fn moves_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for splice_log in [None, Some(true), Some(false)] {
            let (log, path) = log_in(&dir, false);
            let bytes = data(5 * SPLICE_CHUNK + 12345);
            let stats = pump_all_via(bytes.clone(), log, None, u64::MAX, splice_log);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert_eq!(stats.log_bytes, bytes.len() as u64);
            assert!(!stats.log_truncated);
            assert_eq!(read(&path), bytes, "{splice_log:?}");
        }
    }

    #[test]
    fn cap_stops_storing_but_keeps_counting() {
        let dir = tempfile::tempdir().unwrap();
        for splice_log in [Some(true), Some(false)] {
            let (log, path) = log_in(&dir, false);
            let bytes = data(3 * SPLICE_CHUNK);
            let cap = SPLICE_CHUNK as u64 + 7;
            let stats = pump_all_via(bytes.clone(), log, None, cap, splice_log);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert_eq!(stats.log_bytes, cap);
            assert!(stats.log_truncated);
            assert_eq!(read(&path), &bytes[..cap as usize], "{splice_log:?}");
        }
    }

    #[test]
    fn falls_back_to_reading_where_splice_is_refused() {
        // The kernel refuses to splice into a file opened for appending.
        let dir = tempfile::tempdir().unwrap();
        for relay in [true, false] {
            let (log, path) = log_in(&dir, true);
            let bytes = data(2 * CHUNK + 3);
            let chunks: Vec<&[u8]> = bytes.chunks(CHUNK / 3).collect();
            let stats = pump_chunks_via(&chunks, log, None, u64::MAX, relay, Some(true));
            assert_eq!(stats.log_bytes, bytes.len() as u64);
            assert!(stats.log_error.is_none());
            assert_eq!(read(&path), bytes);
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn a_full_disk_is_reported_and_the_pipe_still_drained() {
        for splice_log in [Some(true), Some(false)] {
            let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
            let bytes = data(SPLICE_CHUNK * 2);
            let stats = pump_all_via(bytes.clone(), full, None, u64::MAX, splice_log);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert_eq!(stats.log_bytes, 0);
            assert!(stats.log_error.is_some());
        }
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

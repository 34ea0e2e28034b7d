//! Writes from memory into a log on a thread of their own, so that reading
//! and masking the next bytes overlaps with writing these: on the test
//! machine (2 cores, tmpfs) the write is over half of the masking pump's
//! work, and the job itself leaves room on the other core.
//!
//! The pump fills a [`Batch`] (a buffer and the pieces of it to write, cut at
//! the cap already) and hands it over; the writer thread writes it with
//! writev and hands it back for reuse, with what it wrote and how it failed.
//! After a failed write the thread writes nothing more. Buffers are made as
//! needed, at most [`MAX_BATCHES`]; when all are out, the pump waits for one
//! (the job then waits on its pipe, as it would on a slow disk anyway).
//! Where no thread can be made the pump writes each batch itself, at once.

use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::mask::Piece;

/// Where in a page a byte sits matters to the kernel's copies (see
/// [`Batch::origin`]).
pub const PAGE: usize = 4096;
/// Batches in use at most: enough to keep the reader and the writer both
/// busy when they share two cores with the job.
const MAX_BATCHES: usize = 4;
/// Pieces gathered into one writev; more are written in further calls.
const IOV_BATCH: usize = 64;
/// Bytes written inline before a thread is made: most jobs write a few
/// kilobytes, for which making and joining a thread costs more than it saves.
const THREAD_AFTER: u64 = 1 << 20;

/// A buffer, and the pieces of it that go to the log.
pub struct Batch {
    pub buf: Vec<u8>,
    /// A page-aligned index in `buf` with at least the requested room
    /// before it. The pump reads to `origin + stream position % PAGE`, so
    /// each byte keeps its offset within a page from the pipe to the log:
    /// the kernel's copies (`rep movsb`) ran 2 to 3 times slower on the test
    /// machine when the destination was 1 to 31 bytes past the source
    /// modulo a page (as, by chance of the heap, for a plain buffer).
    pub origin: usize,
    pub pieces: Vec<Piece>,
    written: u64,
    error: Option<io::Error>,
}

impl Batch {
    /// A zeroed buffer of `len` bytes, `origin` at least `before` bytes in.
    fn new(len: usize, before: usize) -> Batch {
        let buf = vec![0; len + before + PAGE];
        let addr = buf.as_ptr() as usize;
        let origin = before + (PAGE - (addr + before) % PAGE) % PAGE;
        Batch {
            buf,
            origin,
            pieces: Vec::new(),
            written: 0,
            error: None,
        }
    }

    /// Writes the pieces to `log`; stops at the first error.
    fn write_to(&mut self, mut log: &File) {
        for group in self.pieces.chunks(IOV_BATCH) {
            let mut slices = [IoSlice::new(&[]); IOV_BATCH];
            for (slice, piece) in slices.iter_mut().zip(group) {
                *slice = IoSlice::new(piece.bytes(&self.buf));
            }
            let mut iov = &mut slices[..group.len()];
            while !iov.is_empty() {
                match log.write_vectored(iov) {
                    Ok(0) => {
                        self.error = Some(io::Error::from(io::ErrorKind::WriteZero));
                        return;
                    }
                    Ok(n) => {
                        self.written += n as u64;
                        IoSlice::advance_slices(&mut iov, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.error = Some(e);
                        return;
                    }
                }
            }
        }
    }
}

/// The writing side of one log.
pub struct Writer {
    log: Arc<File>,
    thread: Option<Thread>,
    /// Whether a thread was tried already (it is made once at most).
    tried: bool,
    /// Batches not in use.
    free: Vec<Batch>,
    /// Batches made so far (free, being filled, or with the thread).
    made: usize,
    len: usize,
    before: usize,
    /// Bytes written and the first error, of the batches back so far.
    written: u64,
    error: Option<io::Error>,
}

struct Thread {
    to: Option<SyncSender<Batch>>,
    back: Receiver<Batch>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Batches hold `len` bytes after at least `before` bytes.
    pub fn new(log: Arc<File>, len: usize, before: usize) -> Writer {
        Writer {
            log,
            thread: None,
            tried: false,
            free: Vec::new(),
            made: 0,
            len,
            before,
            written: 0,
            error: None,
        }
    }

    /// A writer that writes each batch at once, as where no thread can be made.
    #[cfg(test)]
    pub fn inline(log: Arc<File>, len: usize, before: usize) -> Writer {
        let mut w = Writer::new(log, len, before);
        w.tried = true;
        w
    }

    /// Makes the thread now, unless one was tried already; whether there is one.
    pub fn start_thread(&mut self) -> bool {
        if !self.tried {
            self.tried = true;
            self.thread = spawn(Arc::clone(&self.log));
        }
        self.thread.is_some()
    }

    /// An empty batch: a free one, a new one, or the next one back.
    pub fn batch(&mut self) -> Batch {
        self.collect(false);
        if self.free.is_empty() && self.made >= MAX_BATCHES {
            self.collect(true);
        }
        match self.free.pop() {
            Some(batch) => batch,
            None => {
                self.made += 1;
                Batch::new(self.len, self.before)
            }
        }
    }

    /// Hands `batch` over to be written (written at once without a thread).
    pub fn submit(&mut self, mut batch: Batch) {
        if self.written >= THREAD_AFTER {
            self.start_thread();
        }
        if let Some(to) = self.thread.as_ref().and_then(|t| t.to.as_ref()) {
            // Never blocks: the channel has room for every batch there is.
            match to.send(batch) {
                Ok(()) => return,
                Err(e) => batch = e.0, // the thread is gone: write here
            }
            self.thread = None;
        }
        if self.error.is_none() {
            batch.write_to(&self.log);
        }
        self.take_back(batch);
    }

    /// Waits for every batch to be written; the thread ends.
    pub fn finish(&mut self) {
        if let Some(t) = self.thread.as_mut() {
            t.to = None;
        }
        self.collect(true);
        if let Some(handle) = self.thread.take().and_then(|mut t| t.handle.take()) {
            let _ = handle.join();
        }
    }

    /// Whether batches are written on a thread of their own.
    #[cfg(test)]
    pub fn has_thread(&self) -> bool {
        self.thread.is_some()
    }

    /// Bytes written so far (of the batches back).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// Takes in the batches back from the thread; with `wait`, waits for at
    /// least one (for all of them once the thread was told to end).
    fn collect(&mut self, mut wait: bool) {
        loop {
            let Some(t) = self.thread.as_ref() else {
                return;
            };
            let next = if wait {
                t.back.recv().ok()
            } else {
                t.back.try_recv().ok()
            };
            match next {
                Some(batch) => self.take_back(batch),
                None if wait && t.to.is_some() => {
                    // The thread is gone (it cannot be, but for a panic):
                    // what it held is lost; write here from now on.
                    self.thread = None;
                    self.made = self.free.len();
                    return;
                }
                None => return,
            }
            let ending = self.thread.as_ref().is_some_and(|t| t.to.is_none());
            wait = wait && ending;
        }
    }

    fn take_back(&mut self, mut batch: Batch) {
        self.written += batch.written;
        if self.error.is_none() {
            self.error = batch.error.take();
        }
        batch.written = 0;
        batch.error = None;
        batch.pieces.clear();
        self.free.push(batch);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The writer thread: writes what it gets until the pump hangs up; after
/// an error it only hands batches back.
fn spawn(log: Arc<File>) -> Option<Thread> {
    let (to, from_pump) = sync_channel::<Batch>(MAX_BATCHES);
    let (to_pump, back) = sync_channel::<Batch>(MAX_BATCHES);
    let handle = std::thread::Builder::new()
        .name("log-writer".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut failed = false;
            for mut batch in from_pump {
                if !failed {
                    batch.write_to(&log);
                    failed = batch.error.is_some();
                }
                if to_pump.send(batch).is_err() {
                    return;
                }
            }
        })
        .ok()?;
    Some(Thread {
        to: Some(to),
        back,
        handle: Some(handle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::mask::REPLACEMENT;

    fn log() -> (tempfile::TempDir, Arc<File>, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let file = File::create(&path).unwrap();
        (dir, Arc::new(file), path)
    }

    /// Writes batch `i` as "<i>" and "***" in pieces; returns what the log must hold.
    fn run(w: &mut Writer, batches: usize) -> Vec<u8> {
        let mut want = Vec::new();
        for i in 0..batches {
            let mut b = w.batch();
            assert_eq!((b.buf.as_ptr() as usize + b.origin) % PAGE, 0);
            assert!(b.origin >= 5);
            let text = format!("<{i}>");
            let at = b.origin;
            b.buf[at..at + text.len()].copy_from_slice(text.as_bytes());
            b.pieces.push(Piece::Text(at, at + 1));
            b.pieces.push(Piece::Text(at + 1, at + text.len()));
            b.pieces.push(Piece::Mask(2));
            want.extend_from_slice(text.as_bytes());
            want.extend_from_slice(&REPLACEMENT[..2]);
            w.submit(b);
        }
        w.finish();
        want
    }

    #[test]
    fn writes_every_batch_in_order_and_reuses_them() {
        for inline in [false, true] {
            let (_dir, file, path) = log();
            let mut w = if inline {
                Writer::inline(file, 100, 5)
            } else {
                let mut w = Writer::new(file, 100, 5);
                assert!(w.start_thread());
                w
            };
            let want = run(&mut w, 3 * MAX_BATCHES + 1);
            assert_eq!(std::fs::read(&path).unwrap(), want);
            assert_eq!(w.written(), want.len() as u64);
            assert!(w.error().is_none());
            assert!(w.made <= MAX_BATCHES, "made {}", w.made);
        }
    }

    #[test]
    fn a_failed_write_is_kept_and_nothing_more_written() {
        let full = Arc::new(File::options().write(true).open("/dev/full").unwrap());
        let mut w = Writer::new(full, 100, 0);
        assert!(w.start_thread());
        run(&mut w, 5);
        assert_eq!(w.written(), 0);
        assert!(w.error().is_some());
    }

    #[test]
    fn the_thread_is_made_once_a_megabyte_was_written_inline() {
        let (_dir, file, path) = log();
        let len = 256 * 1024;
        let mut w = Writer::new(file, len, 0);
        let mut want = Vec::new();
        for i in 0..6u8 {
            assert_eq!(w.has_thread(), i > 4, "batch {i}");
            let mut b = w.batch();
            let at = b.origin;
            b.buf[at..at + len].fill(b'a' + i);
            b.pieces.push(Piece::Text(at, at + len));
            want.extend(std::iter::repeat_n(b'a' + i, len));
            w.submit(b);
        }
        w.finish();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        assert_eq!(w.written(), want.len() as u64);
    }

    #[test]
    fn many_pieces_take_several_writev_calls() {
        let (_dir, file, path) = log();
        let mut w = Writer::new(file, 10_000, 0);
        let mut b = w.batch();
        let at = b.origin;
        for i in 0..1000 {
            b.buf[at + i] = b'a' + (i % 26) as u8;
            b.pieces.push(Piece::Text(at + i, at + i + 1));
        }
        let want: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
        w.submit(b);
        w.finish();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}

//! The log pump: moves one of the job's output pipes into its log file.
//!
//! Bytes are counted as the job wrote them, masked as they stream, and stored
//! up to the per-log cap. Past the cap the log keeps its head (the first half
//! of the cap) and its tail (the last half: where a test run's summary is):
//! the tail half of the file becomes a ring that the newest bytes overwrite,
//! and when the stream ends the ring is put in order behind a marker line
//! saying how much was left out. The pipe is always drained (a job must
//! never block on a full pipe). A failed write (disk full) stops storing and
//! is reported, never fatal to the job.
//!
//! Each read lands behind what the masker held back from the previous one
//! (the start of a secret whose end has not arrived yet); the masked result
//! is written to the log in one write.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::mask::Masker;
use super::{Omitted, StreamStats};

/// The capacity the supervisor gives the job's output pipes, and the most
/// the pump reads at once: all a full pipe holds. With the kernel's 64 KiB
/// the job sleeps on a full pipe four times as often, and a stream moves
/// markedly slower (docs/performance.md, items 4 and 5).
pub const PIPE_SIZE: usize = 256 * 1024;
const CHUNK: usize = PIPE_SIZE;

/// Whether the pipe has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    More,
    Eof,
}

/// One stream: pipe in, log out.
pub struct Pump {
    pipe: Option<OwnedFd>,
    log: File,
    masker: Option<Masker>,
    cap: u64,
    stats: StreamStats,
    /// What the masker held back, then the bytes just read.
    buf: Vec<u8>,
    held: usize,
    /// The masked bytes of one read, written at once.
    out: Vec<u8>,
    /// Bytes stored past the cap, into the ring of the log's tail half.
    ring_written: u64,
}

impl Pump {
    pub fn new(pipe: OwnedFd, log: File, masker: Option<Masker>, cap: u64) -> Pump {
        let hold_back = masker.as_ref().map_or(0, Masker::hold_back);
        Pump {
            pipe: Some(pipe),
            log,
            masker,
            cap,
            stats: StreamStats::default(),
            buf: vec![0; hold_back + CHUNK],
            held: 0,
            out: Vec::new(),
            ring_written: 0,
        }
    }

    /// Where the tail half of the log starts (the head is before it).
    fn tail_start(&self) -> u64 {
        self.cap / 2
    }

    /// The pipe's raw fd for poll, while it is open.
    pub fn fd(&self) -> Option<i32> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    pub fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Moves what is available (the pipe is non-blocking) into the log.
    pub fn pump(&mut self) -> Flow {
        let Some(fd) = self.fd() else {
            return Flow::Eof;
        };
        loop {
            let room = &mut self.buf[self.held..];
            // SAFETY: reading into the unfilled part of a buffer we own, of its length.
            let n = unsafe { libc::read(fd, room.as_mut_ptr().cast(), room.len()) };
            if n == 0 {
                self.close();
                return Flow::Eof;
            }
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => return Flow::More,
                    Some(libc::EINTR) => continue,
                    // A pipe that cannot be read is as good as closed.
                    _ => {
                        self.close();
                        return Flow::Eof;
                    }
                }
            }
            let n = n as usize;
            self.stats.total_bytes += n as u64;
            self.take(self.held + n, false);
            if n < CHUNK {
                return Flow::More; // poll tells when there is more
            }
        }
    }

    /// Stores `buf[..end]` (masked), keeping what the masker holds back at
    /// the front of the buffer; with `last`, nothing is held back.
    fn take(&mut self, end: usize, last: bool) {
        if !self.storing() {
            if self.held > 0 || end > 0 {
                self.dropped();
            }
            self.held = 0;
            return;
        }
        let Some(masker) = &self.masker else {
            self.store_from_buf(end);
            return;
        };
        let window = &self.buf[..end];
        self.out.clear();
        let out = &mut self.out;
        let keep = masker.scan(window, last, |piece| {
            out.extend_from_slice(piece.bytes(window))
        });
        let out = std::mem::take(&mut self.out);
        self.store(&out);
        self.out = out;
        self.buf.copy_within(keep..end, 0);
        self.held = end - keep;
    }

    fn store_from_buf(&mut self, end: usize) {
        let bytes = std::mem::take(&mut self.buf);
        self.store(&bytes[..end]);
        self.buf = bytes;
    }

    /// Appends `bytes` to the log up to the cap, and past it into the ring.
    fn store(&mut self, bytes: &[u8]) {
        if !self.storing() {
            self.dropped();
            return;
        }
        let room = self.cap - self.stats.log_bytes;
        let take = (bytes.len() as u64).min(room) as usize;
        if let Err(e) = self.log.write_all(&bytes[..take]) {
            self.failed(e);
            return;
        }
        self.stats.log_bytes += take as u64;
        let rest = &bytes[take..];
        if rest.is_empty() {
            return;
        }
        self.stats.log_truncated = true;
        // A cap too small to hold a head and a tail keeps the head only.
        let ring = self.cap - self.tail_start();
        if self.cap < 2 {
            return;
        }
        // Only the last `ring` bytes of `rest` can survive in the ring.
        let skip = rest.len().saturating_sub(ring as usize);
        self.ring_written += skip as u64;
        let mut rest = &rest[skip..];
        while !rest.is_empty() {
            let at = self.ring_written % ring;
            let n = rest.len().min((ring - at) as usize);
            if let Err(e) = self.log.write_all_at(&rest[..n], self.tail_start() + at) {
                self.failed(e);
                return;
            }
            self.ring_written += n as u64;
            rest = &rest[n..];
        }
    }

    /// Whether bytes still reach the log.
    fn storing(&self) -> bool {
        self.stats.log_error.is_none() && (self.stats.log_bytes < self.cap || self.cap >= 2)
    }

    /// Puts the ring in order behind a marker: head, marker, tail.
    fn finish_ring(&mut self) {
        if self.ring_written == 0 || self.stats.log_error.is_some() {
            return;
        }
        let start = self.tail_start();
        let ring = self.cap - start;
        let marker = format!(
            "\n… [{} bytes omitted: the log keeps the first {} and the last {} bytes] …\n",
            self.ring_written, start, ring
        );
        // The tail in order is ring[k..] + ring[..k]; it is written after
        // the end of the file with the marker in front, then moved down to
        // `start` (forward, so the overlap of the two ranges is safe).
        let k = self.ring_written % ring;
        let result = (|| -> io::Result<()> {
            let end = self.cap;
            self.log.write_all_at(marker.as_bytes(), end)?;
            let mut at = end + marker.len() as u64;
            let mut chunk = vec![0u8; CHUNK.min(ring as usize)];
            for (from, to) in [(start + k, start + ring), (start, start + k)] {
                let mut pos = from;
                while pos < to {
                    let n = ((to - pos) as usize).min(chunk.len());
                    self.log.read_exact_at(&mut chunk[..n], pos)?;
                    self.log.write_all_at(&chunk[..n], at)?;
                    pos += n as u64;
                    at += n as u64;
                }
            }
            let moved = marker.len() as u64 + ring;
            let mut done = 0;
            while done < moved {
                let n = ((moved - done) as usize).min(chunk.len());
                self.log.read_exact_at(&mut chunk[..n], end + done)?;
                self.log.write_all_at(&chunk[..n], start + done)?;
                done += n as u64;
            }
            self.log.set_len(start + moved)
        })();
        match result {
            Ok(()) => {
                self.stats.log_bytes = start + marker.len() as u64 + ring;
                self.stats.log_omitted = Some(Omitted {
                    at: start,
                    bytes: self.ring_written,
                });
            }
            Err(e) => self.failed(e),
        }
        self.ring_written = 0;
    }

    /// Output that was not stored (past the cap, or after a failed write).
    fn dropped(&mut self) {
        self.stats.log_truncated = true;
    }

    /// The log could not be written (disk full, …): what follows is not
    /// stored, and the log does not hold every byte.
    fn failed(&mut self, e: io::Error) {
        self.stats.log_error = Some(format!("log write failed: {e}"));
        self.stats.log_truncated = true;
    }

    /// Stops reading, after storing what the masker held back.
    pub fn close(&mut self) {
        if self.pipe.take().is_none() {
            return;
        }
        if self.held > 0 {
            self.take(self.held, true);
        }
        self.finish_ring();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    /// A pipe as the job gets it: non-blocking read end, blocking write end,
    /// big enough for what the tests write before they pump.
    fn job_pipe() -> (OwnedFd, File) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptors.
        unsafe {
            libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
            libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 1 << 20);
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

    /// Pumps `chunks`, each read on its own (so they are exactly the reads).
    fn pump_chunks(chunks: &[&[u8]], log: File, masker: Option<Masker>, cap: u64) -> StreamStats {
        let (r, mut w) = job_pipe();
        let mut pump = Pump::new(r, log, masker, cap);
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

    fn log_in(dir: &tempfile::TempDir) -> (File, std::path::PathBuf) {
        let path = dir.path().join("out.log");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
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
        for i in 0..=text.len() {
            for j in (i..=text.len()).step_by(3) {
                let (log, path) = log_in(&dir);
                let chunks = [&text[..i], &text[i..j], &text[j..]];
                let stats = pump_chunks(&chunks, log, masker(&secrets), u64::MAX);
                assert_eq!(read(&path), want, "cuts at {i} and {j}");
                assert_eq!(stats.total_bytes, text.len() as u64);
                assert_eq!(stats.log_bytes, want.len() as u64);
                assert!(!stats.log_truncated);
            }
        }
    }

    #[test]
    fn a_long_masked_stream_is_masked_across_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::new();
        for i in 0..200_000 {
            text.extend_from_slice(format!("{i} tok-secret-0{} ", i % 10).as_bytes());
        }
        let mut want = String::from_utf8(text.clone()).unwrap();
        for i in 0..10 {
            want = want.replace(&format!("tok-secret-0{i}"), "***");
        }
        let secrets: Vec<String> = (0..10).map(|i| format!("tok-secret-0{i}")).collect();
        let (log, path) = log_in(&dir);
        let stats = pump_all(text.clone(), log, Masker::new(&secrets), u64::MAX);
        assert_eq!(read(&path), want.as_bytes());
        assert_eq!(stats.log_bytes, want.len() as u64);
        assert_eq!(stats.total_bytes, text.len() as u64);
    }

    #[test]
    fn masking_many_secrets_in_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let text = b"ab".repeat(20_000);
        let (log, path) = log_in(&dir);
        let stats = pump_chunks(&[&text], log, masker(&["a", "zz"]), u64::MAX);
        assert_eq!(read(&path), b"***b".repeat(20_000));
        assert_eq!(stats.total_bytes, text.len() as u64);
    }

    /// What a log of `cap` keeps of `full`: all of it, or its head and its
    /// tail around a marker (just the head when the cap is too small).
    fn kept(full: &[u8], cap: u64) -> Vec<u8> {
        let len = full.len() as u64;
        if len <= cap {
            return full.to_vec();
        }
        if cap < 2 {
            return full[..cap as usize].to_vec();
        }
        let (head, tail) = (cap / 2, cap - cap / 2);
        let mut out = full[..head as usize].to_vec();
        out.extend_from_slice(
            format!(
                "\n… [{} bytes omitted: the log keeps the first {head} and the last {tail} bytes] …\n",
                len - cap
            )
            .as_bytes(),
        );
        out.extend_from_slice(&full[(len - tail) as usize..]);
        out
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
            let (log, path) = log_in(&dir);
            let chunks: Vec<&[u8]> = text.chunks(40_000).collect();
            let stats = pump_chunks(&chunks, log, masker(&["hunter2"]), cap);
            let want = kept(&full, cap);
            assert_eq!(read(&path), want, "cap {cap}");
            assert_eq!(stats.total_bytes, text.len() as u64);
            assert_eq!(stats.log_bytes, want.len() as u64);
            assert_eq!(stats.log_truncated, cap < len, "cap {cap}");
            let omitted = (cap < len && cap >= 2).then_some(Omitted {
                at: cap / 2,
                bytes: len - cap,
            });
            assert_eq!(stats.log_omitted, omitted, "cap {cap}");
        }
    }

    #[test]
    fn a_secret_held_back_at_the_cap_counts_as_truncated() {
        // The log is full with "x" while "hun" waits for the rest of a secret.
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        let stats = pump_chunks(&[b"xhun"], log, masker(&["hunter2"]), 1);
        assert_eq!(read(&path), b"x");
        assert!(stats.log_truncated);
        assert_eq!(stats.total_bytes, 4);
    }

    #[test]
    fn a_full_disk_is_reported_and_the_pipe_still_drained() {
        for masked in [false, true] {
            let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
            let bytes = data(CHUNK * 4 + 3);
            let m = if masked { masker(&["abc"]) } else { None };
            let stats = pump_all(bytes.clone(), full, m, u64::MAX);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert_eq!(stats.log_bytes, 0);
            assert!(stats.log_error.is_some());
            assert!(
                stats.log_truncated,
                "a log that failed does not hold every byte"
            );
        }
    }

    #[test]
    fn a_zero_cap_drains_everything_and_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        let bytes = data(3 * CHUNK + 5);
        let stats = pump_all(bytes.clone(), log, None, 0);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, 0);
        assert!(stats.log_truncated);
        assert!(read(&path).is_empty());
    }

    #[test]
    fn moves_every_byte_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        let bytes = data(5 * CHUNK + 12345);
        let stats = pump_all(bytes.clone(), log, None, u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        assert_eq!(stats.log_bytes, bytes.len() as u64);
        assert!(!stats.log_truncated);
        assert_eq!(read(&path), bytes);
    }

    #[test]
    fn past_the_cap_the_log_keeps_its_head_and_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        for (size, cap) in [
            (3 * CHUNK, CHUNK as u64 + 7),
            (3 * CHUNK + 1, 3),
            (10 * CHUNK + 5, 2 * CHUNK as u64 + 1),
        ] {
            let (log, path) = log_in(&dir);
            let bytes = data(size);
            let stats = pump_all(bytes.clone(), log, None, cap);
            assert_eq!(stats.total_bytes, bytes.len() as u64);
            assert!(stats.log_truncated);
            let want = kept(&bytes, cap);
            assert_eq!(stats.log_bytes, want.len() as u64);
            assert!(read(&path) == want, "size {size} cap {cap}");
        }
    }

    #[test]
    fn masking_reads_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        let mut bytes = b"x".repeat(CHUNK - 3);
        bytes.extend_from_slice(b"hunter2 and hunter2");
        let stats = pump_all(bytes.clone(), log, masker(&["hunter2"]), u64::MAX);
        assert_eq!(stats.total_bytes, bytes.len() as u64);
        let mut want = b"x".repeat(CHUNK - 3);
        want.extend_from_slice(b"*** and ***");
        assert_eq!(read(&path), want);
    }
}

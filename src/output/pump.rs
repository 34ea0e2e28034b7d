//! The log pump: moves one of the job's output pipes into its log file.
//!
//! Bytes are counted as the job wrote them, masked as they stream, and stored
//! up to the per-log cap; past the cap the pipe is still drained (a job must
//! never block on a full pipe) but nothing more reaches the disk. A failed
//! write (disk full) stops storing and is reported, never fatal to the job.
//!
//! Without masking the bytes never enter our memory: splice(2) moves them
//! from the pipe into the log file inside the kernel, which saves one copy
//! per byte (the pump's main cost). With masking, or where the log's
//! filesystem cannot splice, the pump reads into one reused buffer.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::mask::Masker;
use crate::job::model::StreamStats;

const CHUNK: usize = 256 * 1024;
/// Bytes asked of one splice: the whole pipe (its size is raised to 1 MiB).
const SPLICE_CHUNK: usize = 1 << 20;

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
    /// Allocated on the first read: a splicing pump never needs it.
    buf: Vec<u8>,
    masked: Vec<u8>,
    /// Cleared when the kernel refuses to splice into the log (EINVAL).
    splice: bool,
}

impl Pump {
    pub fn new(pipe: OwnedFd, log: File, masker: Option<Masker>, cap: u64) -> Pump {
        Pump {
            pipe: Some(pipe),
            log,
            masker,
            cap,
            stats: StreamStats::default(),
            buf: Vec::new(),
            masked: Vec::new(),
            splice: true,
        }
    }

    /// The pipe's raw fd for poll, while it is open.
    pub fn fd(&self) -> Option<i32> {
        self.pipe.as_ref().map(|p| p.as_raw_fd())
    }

    /// Reads what is available (the pipe is non-blocking) and stores it.
    pub fn pump(&mut self) -> Flow {
        let Some(pipe) = self.pipe.as_ref() else {
            return Flow::Eof;
        };
        let fd = pipe.as_raw_fd();
        loop {
            if self.can_splice() {
                match self.splice_once(fd) {
                    Some(flow) => return flow,
                    None => continue, // splicing stopped: go on reading
                }
            }
            if self.buf.is_empty() {
                self.buf = vec![0; CHUNK];
            }
            // SAFETY: reading into a buffer we own, of its length, from an fd we own.
            let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n > 0 {
                let n = n as usize;
                self.stats.total_bytes += n as u64;
                if let Some(masker) = self.masker.as_mut() {
                    masker.feed(&self.buf[..n], &mut self.masked);
                    let chunk = std::mem::take(&mut self.masked);
                    self.store(&chunk);
                    self.masked = chunk;
                } else {
                    let chunk = std::mem::take(&mut self.buf);
                    self.store(&chunk[..n]);
                    self.buf = chunk;
                }
                if n < self.buf.len() {
                    return Flow::More; // drained for now; poll says when there is more
                }
                continue;
            }
            if n == 0 {
                self.close();
                return Flow::Eof;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Flow::More,
                Some(libc::EINTR) => continue,
                _ => {
                    self.close();
                    return Flow::Eof;
                }
            }
        }
    }

    fn can_splice(&self) -> bool {
        self.splice
            && self.masker.is_none()
            && self.stats.log_error.is_none()
            && self.stats.log_bytes < self.cap
    }

    /// Splices until the pipe is empty; `None` when splicing must stop (the
    /// log cap is reached, or the log cannot take spliced or any more bytes).
    fn splice_once(&mut self, fd: i32) -> Option<Flow> {
        loop {
            let room = self.cap.saturating_sub(self.stats.log_bytes);
            if room == 0 {
                return None;
            }
            let want = (SPLICE_CHUNK as u64).min(room) as usize;
            // SAFETY: both fds are ours and open; null offsets use the file positions.
            let n = unsafe {
                libc::splice(
                    fd,
                    std::ptr::null_mut(),
                    self.log.as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
                )
            };
            if n > 0 {
                let n = n as u64;
                self.stats.total_bytes += n;
                self.stats.log_bytes += n;
                if n < want as u64 {
                    return Some(Flow::More); // drained for now; poll says when there is more
                }
                continue;
            }
            if n == 0 {
                self.close();
                return Some(Flow::Eof);
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => return Some(Flow::More),
                Some(libc::EINTR) => continue,
                // This log's filesystem cannot splice: read and write instead.
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
                    self.splice = false;
                    return None;
                }
                // The pipe side cannot fail but for EAGAIN: the log is at fault.
                _ => {
                    self.stats.log_error = Some(format!("log write failed: {err}"));
                    return None;
                }
            }
        }
    }

    /// Stops reading (flushing what the masker held back).
    pub fn close(&mut self) {
        if self.pipe.take().is_some() {
            if let Some(masker) = self.masker.as_mut() {
                masker.finish(&mut self.masked);
                let chunk = std::mem::take(&mut self.masked);
                self.store(&chunk);
                self.masked = chunk;
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    fn store(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.stats.log_error.is_some() {
            return;
        }
        let room = self.cap.saturating_sub(self.stats.log_bytes);
        let take = (bytes.len() as u64).min(room) as usize;
        if take < bytes.len() {
            self.stats.log_truncated = true;
        }
        if take == 0 {
            return;
        }
        match self.log.write_all(&bytes[..take]) {
            Ok(()) => self.stats.log_bytes += take as u64,
            Err(e) => self.stats.log_error = Some(format!("log write failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Read;
    use std::os::fd::FromRawFd;

    /// Pumps `data`, written by another thread, into `log` until EOF.
    fn pump_all(data: Vec<u8>, log: File, masker: Option<Masker>, cap: u64) -> StreamStats {
        let mut fds = [0; 2];
        // SAFETY: fds has room for two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors owned here.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptor.
        unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) };
        let writer = std::thread::spawn(move || {
            let mut w = w;
            w.write_all(&data).unwrap();
        });
        let mut pump = Pump::new(r, log, masker, cap);
        while pump.pump() == Flow::More {
            let mut pfd = libc::pollfd {
                fd: pump.fd().unwrap(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
        }
        writer.join().unwrap();
        pump.stats().clone()
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn log_in(dir: &tempfile::TempDir, append: bool) -> (File, std::path::PathBuf) {
        let path = dir.path().join("out.log");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
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

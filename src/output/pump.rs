//! The log pump: moves one of the job's output pipes into its log file.
//!
//! Bytes are counted as the job wrote them, masked as they stream, and stored
//! up to the per-log cap; past the cap the pipe is still drained (a job must
//! never block on a full pipe) but nothing more reaches the disk. A failed
//! write (disk full) stops storing and is reported, never fatal to the job.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use super::mask::Masker;
use crate::job::model::StreamStats;

const CHUNK: usize = 256 * 1024;

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
    buf: Vec<u8>,
    masked: Vec<u8>,
}

impl Pump {
    pub fn new(pipe: OwnedFd, log: File, masker: Option<Masker>, cap: u64) -> Pump {
        Pump {
            pipe: Some(pipe),
            log,
            masker,
            cap,
            stats: StreamStats::default(),
            buf: vec![0; CHUNK],
            masked: Vec::new(),
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

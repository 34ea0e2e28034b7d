//! Reading the kernel's generated text files (/proc) in one system call.
//!
//! `fs::read_to_string` sizes its buffer from the file's length, which
//! procfs reports as 0, and so starts with 32-byte reads: six read calls
//! for /proc/PID/stat, each regenerating the text. These files are a few
//! hundred bytes; one 4 KiB read takes them whole.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The whole text of a small generated file.
pub fn read_text(path: impl AsRef<Path>) -> io::Result<String> {
    let mut buf = Vec::with_capacity(4096);
    File::open(path)?.read_to_end(&mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_proc_file_whole() {
        let stat = read_text("/proc/self/stat").expect("/proc/self/stat");
        assert!(stat.starts_with(&format!("{} (", std::process::id())));
        assert!(stat.ends_with('\n'));
    }

    #[test]
    fn reads_past_the_first_buffer() {
        // Longer than 4 KiB: read_to_end grows the buffer.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long");
        let text = "x".repeat(10_000);
        std::fs::write(&path, &text).expect("write");
        assert_eq!(read_text(&path).expect("read"), text);
    }
}

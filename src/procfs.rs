//! Reading the kernel's generated text files (/proc, cgroupfs) with as few
//! system calls as they allow.
//!
//! `fs::read_to_string` sizes its buffer from the file's length, which
//! procfs reports as 0, and so starts with 32-byte reads: six read calls
//! for /proc/PID/stat, each regenerating the text. `read_to_end` with a
//! 4 KiB buffer still asks for the length and position first (statx,
//! lseek). Here: open, a 4 KiB read that takes a small file whole, the
//! read that finds the end, close. (A short read is not the end: some
//! generated files, /proc/kallsyms for one, come a page at a time.)

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The whole text of a small generated file.
pub fn read_text(path: impl AsRef<Path>) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let n = match file.read(&mut buf[len..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        len += n;
    }
    buf.truncate(len);
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
    fn reads_past_the_first_buffer_and_to_the_exact_end() {
        // Longer than 4 KiB the buffer grows; a file that fills it exactly
        // takes one more read, which finds the end.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("long");
        for len in [0, 1, 4095, 4096, 4097, 8192, 10_000] {
            let text = "x".repeat(len);
            std::fs::write(&path, &text).expect("write");
            assert_eq!(read_text(&path).expect("read"), text, "{len} bytes");
        }
    }

    #[test]
    fn reads_a_generated_file_as_std_does() {
        // kallsyms: megabytes, generated a record at a time.
        for path in [
            "/proc/self/mountinfo",
            "/proc/self/cgroup",
            "/proc/kallsyms",
        ] {
            let ours = read_text(path).expect(path);
            let std = std::fs::read_to_string(path).expect(path);
            assert_eq!(ours.lines().count(), std.lines().count(), "{path}");
        }
    }
}

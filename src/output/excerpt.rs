//! Bounded excerpts of a log: the head and the tail with a marker between.
//!
//! An agent must never drown in output, yet the first lines (the command
//! line, the first error) and the last lines (the summary) are the ones that
//! matter. Only the two ends are read from disk, whatever the log's size.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A piece of a log ready for JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Excerpt {
    pub text: String,
    /// Some bytes of the log are not in `text`.
    pub truncated: bool,
    /// Size of the log file when read.
    pub log_bytes: u64,
    /// The bytes of the log the excerpt spans, `[first, end)` (a head and
    /// tail excerpt spans the whole log and leaves out a middle).
    pub range: [u64; 2],
}

/// Head and tail of the log within `max_bytes` (marker excluded).
/// With `tail_lines`, only the last N lines (still within `max_bytes`).
pub fn head_and_tail(
    path: &Path,
    max_bytes: u64,
    tail_lines: Option<usize>,
) -> io::Result<Excerpt> {
    let file = match crate::job::store::open_plain(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Excerpt::default()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if let Some(n) = tail_lines {
        return last_lines(&file, len, n, max_bytes, path);
    }
    if len <= max_bytes {
        let bytes = read_range(&file, 0, len)?;
        return Ok(Excerpt {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            truncated: false,
            log_bytes: len,
            range: [0, len],
        });
    }
    let head_len = max_bytes / 2;
    let tail_len = max_bytes - head_len;
    let head = read_range(&file, 0, head_len)?;
    let tail = read_range(&file, len - tail_len, tail_len)?;
    let head = trim_to_char_boundary_end(&head);
    let tail = trim_to_char_boundary_start(&tail);
    let omitted = len - head.len() as u64 - tail.len() as u64;
    let mut text = String::from_utf8_lossy(head).into_owned();
    text.push_str(&marker(omitted, path));
    text.push_str(&String::from_utf8_lossy(tail));
    Ok(Excerpt {
        text,
        truncated: true,
        log_bytes: len,
        range: [0, len],
    })
}

/// The bytes `[offset, offset + max_bytes)` of the log, cut back to a character boundary.
/// Returns the excerpt and the offset to continue from.
pub fn from_offset(path: &Path, offset: u64, max_bytes: u64) -> io::Result<(Excerpt, u64)> {
    let file = match crate::job::store::open_plain(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Excerpt::default(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = offset.min(len);
    let want = (len - start).min(max_bytes);
    let bytes = read_range(&file, start, want)?;
    let cut = if start + want < len {
        trim_to_char_boundary_end(&bytes)
    } else {
        &bytes[..]
    };
    let next = start + cut.len() as u64;
    Ok((
        Excerpt {
            text: String::from_utf8_lossy(cut).into_owned(),
            truncated: next < len,
            log_bytes: len,
            range: [start, next],
        },
        next,
    ))
}

pub fn marker(omitted: u64, path: &Path) -> String {
    format!("\n… [{omitted} bytes omitted; log: {}] …\n", path.display())
}

fn last_lines(
    file: &File,
    len: u64,
    lines: usize,
    max_bytes: u64,
    path: &Path,
) -> io::Result<Excerpt> {
    let window = len.min(max_bytes);
    let bytes = read_range(file, len - window, window)?;
    // Ignore one trailing newline so "a\nb\n" has two lines, not three.
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let mut start = 0;
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                start = i + 1;
                break;
            }
        }
    }
    if lines == 0 {
        start = bytes.len();
    }
    let mut kept = &bytes[start..];
    if start == 0 && window < len {
        kept = trim_to_char_boundary_start(kept);
    }
    let omitted = len - kept.len() as u64;
    let mut text = String::new();
    if omitted > 0 {
        text.push_str(marker(omitted, path).trim_start_matches('\n'));
    }
    text.push_str(&String::from_utf8_lossy(kept));
    Ok(Excerpt {
        text,
        truncated: omitted > 0,
        log_bytes: len,
        range: [len - kept.len() as u64, len],
    })
}

fn read_range(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Drops a partial UTF-8 sequence at the end.
fn trim_to_char_boundary_end(bytes: &[u8]) -> &[u8] {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes,
        Err(e) if e.error_len().is_none() => &bytes[..e.valid_up_to()],
        Err(_) => bytes, // binary data: keep it, lossy conversion will show it
    }
}

/// Drops continuation bytes at the start.
fn trim_to_char_boundary_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    &bytes[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn log(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn small_logs_are_whole() {
        let f = log(b"hello\n");
        let e = head_and_tail(f.path(), 100, None).unwrap();
        assert_eq!(e.text, "hello\n");
        assert!(!e.truncated);
    }

    #[test]
    fn big_logs_keep_head_and_tail() {
        let body: Vec<u8> = (0..1000).map(|i| b'a' + (i % 26) as u8).collect();
        let f = log(&body);
        let e = head_and_tail(f.path(), 100, None).unwrap();
        assert!(e.truncated);
        assert!(e
            .text
            .starts_with(std::str::from_utf8(&body[..50]).unwrap()));
        assert!(e.text.ends_with(std::str::from_utf8(&body[950..]).unwrap()));
        assert!(e.text.contains("[900 bytes omitted; log: "));
    }

    #[test]
    fn multibyte_characters_are_not_split() {
        let f = log("é".repeat(100).as_bytes());
        let e = head_and_tail(f.path(), 51, None).unwrap();
        assert!(!e.text.contains('\u{FFFD}'), "{}", e.text);
        let (e, next) = from_offset(f.path(), 0, 5).unwrap();
        assert_eq!(e.text, "éé");
        assert_eq!(next, 4);
    }

    #[test]
    fn last_lines_only() {
        let f = log(b"1\n2\n3\n4\n");
        let e = head_and_tail(f.path(), 1000, Some(2)).unwrap();
        assert!(e.text.ends_with("3\n4\n"), "{}", e.text);
        assert!(e.truncated);
    }
}

//! Streaming secret masking: every `--mask` value is replaced by `***` as the
//! job's output streams into its log, including a secret split across reads.
//!
//! The masker holds back at most `longest secret - 1` bytes between calls:
//! those bytes could be the start of a secret whose end has not arrived yet.
//! Everything before that point is final and goes straight to the log.

use aho_corasick::{AhoCorasick, MatchKind};

/// The text that replaces every secret.
pub const REPLACEMENT: &[u8] = b"***";

/// A streaming replacer for one output stream.
pub struct Masker {
    finder: AhoCorasick,
    longest: usize,
    /// Unfinished tail of the previous chunk followed by the current chunk.
    window: Vec<u8>,
}

impl Masker {
    /// Returns `None` when there is nothing to mask (no allocation on the hot path then).
    pub fn new(secrets: &[String]) -> Option<Masker> {
        let secrets: Vec<&str> = secrets
            .iter()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.is_empty() {
            return None;
        }
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&secrets)
            .ok()?;
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(1);
        Some(Masker {
            finder,
            longest,
            window: Vec::with_capacity(256 * 1024),
        })
    }

    /// Masks `input` and appends what is final to `out` (cleared first).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.clear();
        self.window.extend_from_slice(input);
        // A secret starting at or after `hold` might still be incomplete.
        let hold = self.window.len().saturating_sub(self.longest - 1);
        let mut emitted = 0;
        for m in self.finder.find_iter(&self.window) {
            if m.start() >= hold {
                break;
            }
            out.extend_from_slice(&self.window[emitted..m.start()]);
            out.extend_from_slice(REPLACEMENT);
            emitted = m.end();
        }
        let keep_from = emitted.max(hold);
        out.extend_from_slice(&self.window[emitted..keep_from]);
        self.window.drain(..keep_from);
    }

    /// Masks and emits whatever was held back; call once at end of stream.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let mut emitted = 0;
        for m in self.finder.find_iter(&self.window) {
            out.extend_from_slice(&self.window[emitted..m.start()]);
            out.extend_from_slice(REPLACEMENT);
            emitted = m.end();
        }
        out.extend_from_slice(&self.window[emitted..]);
        self.window.clear();
    }
}

/// Masks a whole string at once (argv, env values shown in JSON).
pub fn mask_str(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], chunks: &[&[u8]]) -> Vec<u8> {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        let mut m = Masker::new(&secrets).unwrap();
        let mut all = Vec::new();
        let mut out = Vec::new();
        for c in chunks {
            m.feed(c, &mut out);
            all.extend_from_slice(&out);
        }
        m.finish(&mut out);
        all.extend_from_slice(&out);
        all
    }

    #[test]
    fn secret_split_across_every_boundary() {
        let text = b"token=hunter2-secret; again hunter2-secret.";
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                run(&["hunter2-secret"], &[a, b]),
                b"token=***; again ***.",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn byte_at_a_time_and_overlapping_secrets() {
        let text = b"abcabcd xyz";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&["abc", "abcd", "xyz"], &chunks), b"****** ***");
    }

    #[test]
    fn no_secret_means_no_masker() {
        assert!(Masker::new(&[]).is_none());
        assert!(Masker::new(&[String::new()]).is_none());
    }

    #[test]
    fn strings() {
        assert_eq!(
            mask_str("curl -H 'k: s3cr3t'", &["s3cr3t".into()]),
            "curl -H 'k: ***'"
        );
    }
}

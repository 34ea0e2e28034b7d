//! Streaming secret masking: every `--mask` value is replaced by `***` as the
//! job's output streams into its log, including a secret split across reads.
//!
//! The masker scans the caller's buffer in place and hands back the final
//! pieces (ranges of that buffer and `***`) for one gathered write; it holds
//! back at most `longest secret - 1` bytes at the end of the buffer: those
//! could be the start of a secret whose end has not arrived yet. The caller
//! keeps them at the front of its buffer and reads the next bytes behind them.
//!
//! Matching is leftmost-longest and non-overlapping over the whole stream:
//! where secrets overlap, the one starting first wins, and of those starting
//! at the same byte the longest.

use aho_corasick::{packed, AhoCorasick, MatchKind};

/// The text that replaces every secret.
pub const REPLACEMENT: &[u8] = b"***";

/// A piece of masked output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Bytes `start..end` of the scanned window (or of a buffer it lies in).
    Text(usize, usize),
    /// The first `n` bytes of [`REPLACEMENT`] (all of it but at a cap).
    Mask(usize),
}

impl Piece {
    pub fn len(self) -> usize {
        match self {
            Piece::Text(start, end) => end - start,
            Piece::Mask(n) => n,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The first `len` bytes of the piece.
    pub fn cut(self, len: usize) -> Piece {
        match self {
            Piece::Text(start, end) => Piece::Text(start, end.min(start + len)),
            Piece::Mask(n) => Piece::Mask(n.min(len)),
        }
    }

    /// The piece with its range moved `by` bytes further.
    pub fn shifted(self, by: usize) -> Piece {
        match self {
            Piece::Text(start, end) => Piece::Text(start + by, end + by),
            mask => mask,
        }
    }

    /// Its bytes, `buf` being what a `Text` range points into.
    pub fn bytes(self, buf: &[u8]) -> &[u8] {
        match self {
            Piece::Text(start, end) => &buf[start..end],
            Piece::Mask(n) => &REPLACEMENT[..n],
        }
    }
}

/// A streaming replacer for one output stream. It owns no buffer: the pump
/// scans its own read buffer with it.
pub struct Masker {
    finder: Finder,
    longest: usize,
}

/// The search behind a masker; both kinds find the same matches.
enum Finder {
    /// SIMD (Teddy) search for several secrets at once. The automaton's
    /// prefilters look for one rare byte, which in ordinary text shows up
    /// every few dozen bytes when secrets share a prefix: the automaton then
    /// runs at a tenth of the speed of this one.
    Packed(packed::Searcher),
    /// One secret (memmem prefilter, as fast as Teddy), or secrets the packed
    /// searcher cannot take (more than 64, very short ones, no SIMD).
    Automaton(AhoCorasick),
}

impl Finder {
    fn new(secrets: &[&str]) -> Option<Finder> {
        if secrets.len() > 1 {
            let packed = packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostLongest)
                .builder()
                .extend(secrets)
                .build();
            if let Some(p) = packed {
                return Some(Finder::Packed(p));
            }
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(secrets)
            .ok()
            .map(Finder::Automaton)
    }

    /// Calls `each(start, end)` for every match in order until it returns false.
    fn for_each(&self, haystack: &[u8], mut each: impl FnMut(usize, usize) -> bool) {
        match self {
            Finder::Packed(p) => {
                for m in p.find_iter(haystack) {
                    if !each(m.start(), m.end()) {
                        break;
                    }
                }
            }
            Finder::Automaton(a) => {
                for m in a.find_iter(haystack) {
                    if !each(m.start(), m.end()) {
                        break;
                    }
                }
            }
        }
    }
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
        let finder = Finder::new(&secrets)?;
        let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(1);
        Some(Masker { finder, longest })
    }

    /// Most bytes [`Masker::scan`] ever holds back: `longest secret - 1`.
    pub fn hold_back(&self) -> usize {
        self.longest - 1
    }

    /// Masks `window` (what was held back last time followed by new bytes)
    /// and passes what is final, in order, to `emit`: ranges of `window` and
    /// [`REPLACEMENT`], some possibly empty. Returns where the held-back tail
    /// starts: `window[keep..]` (at most [`Masker::hold_back`] bytes) must
    /// begin the next window. With `last` (end of stream) nothing is held.
    pub fn scan(&self, window: &[u8], last: bool, mut emit: impl FnMut(Piece)) -> usize {
        // A secret starting at or after `hold` might still be incomplete; one
        // starting before it lies whole in the window, and so does every
        // longer secret that could start at the same byte.
        let hold = if last {
            window.len()
        } else {
            window.len().saturating_sub(self.hold_back())
        };
        let mut emitted = 0;
        self.finder.for_each(window, |start, end| {
            if start >= hold {
                return false;
            }
            emit(Piece::Text(emitted, start));
            emit(Piece::Mask(REPLACEMENT.len()));
            emitted = end;
            true
        });
        let keep = emitted.max(hold);
        emit(Piece::Text(emitted, keep));
        keep
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

    fn strings(secrets: &[&str]) -> Vec<String> {
        secrets.iter().map(|s| s.to_string()).collect()
    }

    /// Both finders for `secrets`: the one `new` picks, and the automaton.
    fn maskers(secrets: &[&str]) -> Vec<Masker> {
        let mut all = vec![Masker::new(&strings(secrets)).unwrap()];
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(secrets)
            .unwrap();
        all.push(Masker {
            finder: Finder::Automaton(automaton),
            longest: secrets.iter().map(|s| s.len()).max().unwrap(),
        });
        all
    }

    /// Streams `chunks` through `m` the way the pump does: the held-back
    /// tail stays at the front of one buffer and new bytes go behind it.
    fn stream(m: &Masker, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            let keep = m.scan(&buf, false, |p| out.extend_from_slice(p.bytes(&buf)));
            assert!(buf.len() - keep <= m.hold_back());
            buf.drain(..keep);
        }
        let keep = m.scan(&buf, true, |p| out.extend_from_slice(p.bytes(&buf)));
        assert_eq!(keep, buf.len());
        out
    }

    fn run(secrets: &[&str], chunks: &[&[u8]]) -> Vec<u8> {
        let outs: Vec<Vec<u8>> = maskers(secrets).iter().map(|m| stream(m, chunks)).collect();
        assert_eq!(outs[0], outs[1], "the finders disagree");
        outs[0].clone()
    }

    /// Leftmost-longest replacement, the slow and obvious way.
    fn reference(secrets: &[&str], text: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            let longest = secrets
                .iter()
                .filter(|s| text[i..].starts_with(s.as_bytes()))
                .map(|s| s.len())
                .max();
            match longest {
                Some(len) => {
                    out.extend_from_slice(REPLACEMENT);
                    i += len;
                }
                None => {
                    out.push(text[i]);
                    i += 1;
                }
            }
        }
        out
    }

    #[test]
    fn secret_split_across_every_boundary() {
        let text = b"token=hunter2-secret; again hunter2-secret.";
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(
                run(&["hunter2-secret"], &[a, b]),
                b"token=***; again ***.",
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn secrets_split_across_every_pair_of_boundaries() {
        let secrets = ["tok-secret-01", "tok-secret-02", "tok-sec", "et-0"];
        let text = b"a tok-secret-01tok-secret-02 tok-secret-0 tok-secret-03 tok-sec!";
        let want = reference(&secrets, text);
        assert_eq!(want, b"a ****** ***r*** ***r***3 ***!".to_vec());
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let chunks = [&text[..i], &text[i..j], &text[j..]];
                assert_eq!(run(&secrets, &chunks), want, "cuts at {i} and {j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_and_overlapping_secrets() {
        let text = b"abcabcd xyz";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&["abc", "abcd", "xyz"], &chunks), b"****** ***");
        // Overlapping, not nested: the secret starting first wins.
        let text = b"abcde bcdef";
        let chunks: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(run(&["abcd", "bcdef"], &chunks), b"***e ***");
        assert_eq!(run(&["abcd", "bcdef"], &[text]), b"***e ***");
    }

    #[test]
    fn matches_the_reference_on_random_text_and_chunks() {
        // A tiny alphabet, so secrets overlap, nest and repeat all the time.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let word = |next: &mut dyn FnMut(usize) -> usize, len: usize| -> String {
            (0..len).map(|_| (b'a' + next(3) as u8) as char).collect()
        };
        for round in 0..300 {
            let count = 1 + next(6);
            let owned: Vec<String> = (0..count)
                .map(|_| {
                    let len = 1 + next(6);
                    word(&mut next, len)
                })
                .collect();
            let secrets: Vec<&str> = owned.iter().map(String::as_str).collect();
            let len = next(200);
            let text = word(&mut next, len).into_bytes();
            let want = reference(&secrets, &text);
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &text[..];
            while !rest.is_empty() {
                let (c, r) = rest.split_at((1 + next(9)).min(rest.len()));
                chunks.push(c);
                rest = r;
            }
            assert_eq!(run(&secrets, &chunks), want, "round {round}: {secrets:?}");
            assert_eq!(run(&secrets, &[&text]), want, "round {round}: {secrets:?}");
        }
    }

    #[test]
    fn several_secrets_use_the_packed_searcher() {
        let m = Masker::new(&strings(&["tok-secret-00", "tok-secret-01"])).unwrap();
        if cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("ssse3") {
            assert!(matches!(m.finder, Finder::Packed(_)));
        }
        assert_eq!(m.hold_back(), 12);
    }

    #[test]
    fn no_secret_means_no_masker() {
        assert!(Masker::new(&[]).is_none());
        assert!(Masker::new(&[String::new()]).is_none());
    }

    #[test]
    fn strings_are_masked() {
        assert_eq!(
            mask_str("curl -H 'k: s3cr3t'", &["s3cr3t".into()]),
            "curl -H 'k: ***'"
        );
    }
}

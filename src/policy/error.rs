//! The error a user sees when a policy or floor file cannot be used, with
//! the file position they need to fix it.

use std::fmt;
use std::ops::Range;

/// What kind of problem a [`PolicyError`] reports, so that callers can map
/// it to a stable error code without parsing the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyErrorKind {
    /// No built-in, host policy or file by that name.
    NotFound,
    /// The file exists but could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// A key this version does not know (a typo, or a newer format).
    UnknownKey,
    /// A value of the wrong TOML type (a string where a number belongs...).
    WrongType,
    /// The right type but an unacceptable value (bad size, duration, path).
    BadValue,
    /// Fields that are fine on their own but contradict each other.
    Conflict,
    /// `extends` loops back to a policy already being loaded, or nests too deep.
    Cycle,
}

impl PolicyErrorKind {
    /// Stable error code for the JSON `error.code` field.
    pub fn code(self) -> &'static str {
        match self {
            PolicyErrorKind::NotFound => "policy_not_found",
            PolicyErrorKind::Io => "policy_unreadable",
            _ => "policy_invalid",
        }
    }
}

/// A policy or floor file that cannot be used.
///
/// `line` and `column` are 1-based (columns count characters, not bytes);
/// both are 0 when the problem has no position in a file (a policy name
/// that does not exist, a file that cannot be read). `field` is the dotted
/// path of the offending key (`limits.memory`, `filesystem.read[2]`), empty
/// for syntax errors. Display is `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub field: String,
    pub message: String,
    pub kind: PolicyErrorKind,
}

impl PolicyError {
    /// An error with no position in a file.
    pub(crate) fn unpositioned(
        file: impl Into<String>,
        kind: PolicyErrorKind,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            file: file.into(),
            line: 0,
            column: 0,
            field: String::new(),
            message: message.into(),
            kind,
        }
    }

    /// An error at byte `span.start` of `text`.
    pub(crate) fn at(
        file: &str,
        text: &str,
        span: &Range<usize>,
        field: &str,
        kind: PolicyErrorKind,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(text, span.start);
        PolicyError {
            file: file.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
            kind,
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.line) {
            (true, _) => write!(f, "{}", self.message),
            (false, 0) => write!(f, "{}: {}", self.file, self.message),
            (false, _) => write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Converts a byte offset into a 1-based line and character column.
pub(crate) fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters_from_one() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_column(text, 12), (2, 6));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn display_forms() {
        let mut e = PolicyError::at(
            "p.toml",
            "x\ny = 2",
            &(2..3),
            "y",
            PolicyErrorKind::BadValue,
            "bad",
        );
        assert_eq!(e.to_string(), "p.toml:2:1: bad");
        e.line = 0;
        assert_eq!(e.to_string(), "p.toml: bad");
        e.file.clear();
        assert_eq!(e.to_string(), "bad");
        assert_eq!(PolicyErrorKind::NotFound.code(), "policy_not_found");
        assert_eq!(PolicyErrorKind::Conflict.code(), "policy_invalid");
    }
}

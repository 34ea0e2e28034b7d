//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-saphyr's `Spanned<T>` records the line/column of any node, so the file is
//! read once into this generic tree and then interpreted by hand (`parse.rs`). That
//! way every problem (unknown key, wrong type, bad reference) can be reported at its
//! exact place, and all of them at once instead of stopping at the first.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// 1-based line and column (characters) of a node in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    /// Start of the document, for problems without a more precise place.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// One YAML node and where it starts.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: NodeKind,
    pub pos: Pos,
    /// Byte offset of the node in the source, when the parser knows it.
    pub byte: Option<usize>,
    /// Source text of a plain non-string scalar (`true`, `010`, `1.50`), so that a field
    /// meant as text (`run: true`, `name: 1.10`) keeps exactly what was written.
    pub raw: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key, rendered as text (YAML allows non-string keys; we only read strings).
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub text: String,
    pub pos: Pos,
}

impl Node {
    /// Human name of the node's YAML type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Text of a scalar: strings verbatim, numbers and booleans as written in the file
    /// (or their canonical form when the source text is unavailable).
    pub fn scalar_text(&self) -> Option<String> {
        if let Some(raw) = &self.raw {
            return Some(raw.clone());
        }
        match &self.kind {
            NodeKind::Str(s) => Some(s.clone()),
            NodeKind::Bool(b) => Some(b.to_string()),
            NodeKind::Int(i) => Some(i.to_string()),
            NodeKind::Float(x) => Some(x.to_string()),
            _ => None,
        }
    }
}

/// Why the text is not a YAML document we can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty document yields a `Null` node at 1:1.
///
/// Booleans follow YAML 1.2 (`true`/`false` only), so `name: y` or `N: no` stay
/// strings instead of silently turning into booleans as YAML 1.1 would have it.
pub(crate) fn parse_document(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(root) => Ok(convert(root, text)),
        Err(e) => {
            let pos = e
                .location()
                .map(|l| pos_of(&l))
                .filter(|p| p.line > 0)
                .unwrap_or(Pos::START);
            Err(SyntaxError {
                pos,
                message: strip_location_suffix(&e.without_snippet().to_string()),
            })
        }
    }
}

/// serde-saphyr appends " at line N, column M"; our Display already starts with the place.
fn strip_location_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

fn pos_of(l: &Location) -> Pos {
    Pos {
        line: u32::try_from(l.line()).unwrap_or(u32::MAX),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
    }
}

fn convert(s: Spanned<Raw>, text: &str) -> Node {
    let pos = pos_of(&s.referenced);
    let span = s.referenced.span();
    let byte = span.byte_offset().and_then(|b| usize::try_from(b).ok());
    let raw = match s.value {
        Raw::Bool(_) | Raw::Int(_) | Raw::Float(_) => byte
            .zip(span.byte_len().and_then(|l| usize::try_from(l).ok()))
            .and_then(|(b, l)| text.get(b..b + l))
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        _ => None,
    };
    let kind = match s.value {
        Raw::Null => NodeKind::Null,
        Raw::Bool(b) => NodeKind::Bool(b),
        Raw::Int(i) => NodeKind::Int(i),
        Raw::Float(x) => NodeKind::Float(x),
        Raw::Str(x) => NodeKind::Str(x),
        Raw::Seq(items) => NodeKind::Seq(items.into_iter().map(|i| convert(i, text)).collect()),
        Raw::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key = convert(k, text);
                    let key_text = key
                        .scalar_text()
                        .unwrap_or_else(|| format!("<{}>", key.type_name()));
                    let key = Key {
                        text: key_text,
                        pos: key.pos,
                    };
                    (key, convert(v, text))
                })
                .collect(),
        ),
    };
    Node {
        kind,
        pos,
        byte,
        raw,
    }
}

/// Any YAML value; deserialized through `Spanned` so each node keeps its location.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        // Beyond i64 only a float can hold it; such values are rejected later anyway.
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(i64::try_from(v).map_or(Raw::Float(v as f64), Raw::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = a.next_key()? {
            let v = a.next_value()?;
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn nodes_and_keys_carry_their_positions() {
        let doc = parse_document("phases:\n  - name: a\n    on: [x, 2]\n").unwrap();
        let NodeKind::Map(top) = &doc.kind else {
            panic!("not a map")
        };
        assert_eq!(top[0].0.text, "phases");
        assert_eq!(top[0].0.pos, p(1, 1));
        let NodeKind::Seq(items) = &top[0].1.kind else {
            panic!("not a seq")
        };
        let NodeKind::Map(phase) = &items[0].kind else {
            panic!("not a map")
        };
        assert_eq!(phase[0].0.pos, p(2, 5));
        assert_eq!(phase[0].1.pos, p(2, 11));
        assert_eq!(phase[0].1.byte, Some(18));
        let NodeKind::Seq(list) = &phase[1].1.kind else {
            panic!("not a seq")
        };
        assert!(matches!(list[1].kind, NodeKind::Int(2)));
        assert_eq!(list[1].pos, p(3, 13));
        assert_eq!(list[1].raw.as_deref(), Some("2"));
    }

    #[test]
    fn syntax_errors_have_place_and_short_message() {
        let e = parse_document("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.pos, p(2, 1));
        assert!(
            e.message.starts_with("duplicate mapping key: a"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("at line"), "{}", e.message);
        let e = parse_document("a: [1\nb: 2\n").unwrap_err();
        assert_eq!(e.pos, p(2, 2));
    }

    #[test]
    fn empty_document_is_null() {
        assert!(matches!(parse_document("").unwrap().kind, NodeKind::Null));
    }
}

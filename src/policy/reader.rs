//! Typed access to a spanned TOML document, turning every mistake into a
//! [`PolicyError`] that points at the offending key or value.
//!
//! A hand walk over `toml::de::DeTable` rather than serde derive: serde's
//! errors carry a span but not the key path, and every message here names
//! the field it is about.

use std::ops::Range;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{PolicyError, PolicyErrorKind};
use crate::units::{parse_duration, parse_size};

/// One file's text and the name errors are reported under.
pub(crate) struct Doc<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

impl<'a> Doc<'a> {
    pub fn error(
        &self,
        span: &Range<usize>,
        field: &str,
        kind: PolicyErrorKind,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::at(self.name, self.text, span, field, kind, message)
    }

    /// Parses the text as TOML; a syntax error points where the parser
    /// stopped.
    pub fn parse(&self) -> Result<Spanned<DeTable<'a>>, PolicyError> {
        DeTable::parse(self.text).map_err(|e| {
            let message = e.message().trim_end().replace('\n', "; ");
            match e.span() {
                Some(span) => self.error(&span, "", PolicyErrorKind::Syntax, message),
                None => PolicyError::unpositioned(self.name, PolicyErrorKind::Syntax, message),
            }
        })
    }
}

/// A table of the document; `prefix` is its dotted path ("" at top level).
pub(crate) struct Section<'d, 'a> {
    pub doc: &'d Doc<'a>,
    pub prefix: String,
    pub table: &'d DeTable<'a>,
}

/// One `key = value` of a section, with its dotted field path.
pub(crate) struct Item<'d, 'a> {
    pub doc: &'d Doc<'a>,
    pub field: String,
    pub value: &'d Spanned<DeValue<'a>>,
}

impl<'d, 'a> Section<'d, 'a> {
    pub fn root(doc: &'d Doc<'a>, table: &'d DeTable<'a>) -> Self {
        Section {
            doc,
            prefix: String::new(),
            table,
        }
    }

    fn field(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    /// Rejects the first key (in file order) that is not in `known`.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), PolicyError> {
        let mut keys: Vec<&Spanned<_>> = self.table.keys().collect();
        keys.sort_by_key(|k| k.span().start);
        for key in keys {
            let name: &str = key.get_ref();
            if known.contains(&name) {
                continue;
            }
            let place = if self.prefix.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{}]", self.prefix)
            };
            let hint = match closest(name, known) {
                Some(near) => format!("did you mean `{near}`?"),
                None => format!("expected one of: {}", known.join(", ")),
            };
            return Err(self.doc.error(
                &key.span(),
                &self.field(name),
                PolicyErrorKind::UnknownKey,
                format!("unknown key `{name}` {place}; {hint}"),
            ));
        }
        Ok(())
    }

    /// Every entry in file order, with the span of its key.
    pub fn entries(&self) -> Vec<(&'d str, Range<usize>, Item<'d, 'a>)> {
        let table: &'d DeTable<'a> = self.table;
        let mut out: Vec<_> = table
            .iter()
            .map(|(key, value)| {
                let name: &'d str = key.get_ref();
                (
                    name,
                    key.span(),
                    Item {
                        doc: self.doc,
                        field: self.field(name),
                        value,
                    },
                )
            })
            .collect();
        out.sort_by_key(|(_, span, _)| span.start);
        out
    }

    pub fn get(&self, key: &str) -> Option<Item<'d, 'a>> {
        self.table.get(key).map(|value| Item {
            doc: self.doc,
            field: self.field(key),
            value,
        })
    }

    /// A sub-table, or `None` when the key is absent.
    pub fn section(&self, key: &str) -> Result<Option<Section<'d, 'a>>, PolicyError> {
        let Some(item) = self.get(key) else {
            return Ok(None);
        };
        match item.value.get_ref() {
            DeValue::Table(table) => Ok(Some(Section {
                doc: self.doc,
                prefix: item.field,
                table,
            })),
            _ => Err(item.wrong_type("a table")),
        }
    }
}

impl<'d, 'a> Item<'d, 'a> {
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    pub fn wrong_type(&self, expected: &str) -> PolicyError {
        self.doc.error(
            &self.span(),
            &self.field,
            PolicyErrorKind::WrongType,
            format!(
                "{} must be {expected}, found {}",
                self.field,
                describe(self.value.get_ref())
            ),
        )
    }

    pub fn bad_value(&self, message: impl Into<String>) -> PolicyError {
        self.doc.error(
            &self.span(),
            &self.field,
            PolicyErrorKind::BadValue,
            message,
        )
    }

    pub fn bool(&self) -> Result<bool, PolicyError> {
        self.value
            .get_ref()
            .as_bool()
            .ok_or_else(|| self.wrong_type("true or false"))
    }

    pub fn str(&self) -> Result<&str, PolicyError> {
        self.value
            .get_ref()
            .as_str()
            .ok_or_else(|| self.wrong_type("a string"))
    }

    /// A string that must be one of `choices`.
    pub fn choice(&self, choices: &[&str]) -> Result<String, PolicyError> {
        let s = self.str()?;
        if choices.contains(&s) {
            Ok(s.to_string())
        } else {
            Err(self.bad_value(format!(
                "{} must be one of {}, found {s:?}",
                self.field,
                choices.join(", ")
            )))
        }
    }

    fn integer(&self) -> Option<Result<i128, PolicyError>> {
        let DeValue::Integer(i) = self.value.get_ref() else {
            return None;
        };
        Some(
            i128::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| self.bad_value(format!("{} is out of range", self.field))),
        )
    }

    /// A positive integer (a count such as `pids`), or `"none"` when
    /// `allow_none`.
    pub fn count(&self, allow_none: bool) -> Result<Option<u64>, PolicyError> {
        let expected = if allow_none {
            "a positive integer or \"none\""
        } else {
            "a positive integer"
        };
        if allow_none && self.value.get_ref().as_str() == Some("none") {
            return Ok(None);
        }
        let n = self.integer().ok_or_else(|| self.wrong_type(expected))??;
        match u64::try_from(n) {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(self.bad_value(format!("{} must be {expected}, found {n}", self.field))),
        }
    }

    /// A positive number (integer or float).
    pub fn positive_float(&self, allow_none: bool) -> Result<Option<f64>, PolicyError> {
        let expected = if allow_none {
            "a positive number or \"none\""
        } else {
            "a positive number"
        };
        let value = match self.value.get_ref() {
            DeValue::String(s) if allow_none && s == "none" => return Ok(None),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => self.integer().and_then(Result::ok).map(|n| n as f64),
            _ => return Err(self.wrong_type(expected)),
        };
        match value {
            Some(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(self.bad_value(format!(
                "{} must be {expected}, found {}",
                self.field,
                describe(self.value.get_ref())
            ))),
        }
    }

    /// A byte size: `"512M"`, an integer byte count, or `"none"` when
    /// `allow_none`. Zero is rejected (use `"none"` for no limit).
    pub fn size(&self, allow_none: bool) -> Result<Option<u64>, PolicyError> {
        let expected = if allow_none {
            "a size such as \"512M\" or \"none\""
        } else {
            "a size such as \"512M\""
        };
        let bytes = match self.value.get_ref() {
            DeValue::String(s) if allow_none && s == "none" => return Ok(None),
            DeValue::String(s) => {
                parse_size(s).map_err(|e| self.bad_value(format!("{}: {e}", self.field)))?
            }
            DeValue::Integer(_) => {
                let n = self.integer().ok_or_else(|| self.wrong_type(expected))??;
                u64::try_from(n).map_err(|_| {
                    self.bad_value(format!("{} must be {expected}, found {n}", self.field))
                })?
            }
            _ => return Err(self.wrong_type(expected)),
        };
        if bytes == 0 {
            return Err(self.bad_value(format!(
                "{} must be greater than zero{}",
                self.field,
                if allow_none {
                    " (use \"none\" for no limit)"
                } else {
                    ""
                }
            )));
        }
        Ok(Some(bytes))
    }

    /// A duration: `"10s"`, a number of seconds, or `"none"` when
    /// `allow_none`. Zero is rejected unless `allow_zero`.
    pub fn duration(
        &self,
        allow_none: bool,
        allow_zero: bool,
    ) -> Result<Option<Duration>, PolicyError> {
        let expected = if allow_none {
            "a duration such as \"30s\" or \"none\""
        } else {
            "a duration such as \"30s\""
        };
        let text = match self.value.get_ref() {
            DeValue::String(s) if allow_none && s == "none" => return Ok(None),
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().to_string(),
            DeValue::Float(f) => f.as_str().to_string(),
            _ => return Err(self.wrong_type(expected)),
        };
        let d =
            parse_duration(&text).map_err(|e| self.bad_value(format!("{}: {e}", self.field)))?;
        if d.is_zero() && !allow_zero {
            return Err(self.bad_value(format!(
                "{} must be greater than zero{}",
                self.field,
                if allow_none {
                    " (use \"none\" for no limit)"
                } else {
                    ""
                }
            )));
        }
        Ok(Some(d))
    }

    /// An array; each element comes back as an item named `field[i]`.
    pub fn array(&self) -> Result<Vec<Item<'d, 'a>>, PolicyError> {
        let value: &'d Spanned<DeValue<'a>> = self.value;
        let DeValue::Array(items) = value.get_ref() else {
            return Err(self.wrong_type("an array"));
        };
        Ok(items
            .iter()
            .enumerate()
            .map(|(i, value)| Item {
                doc: self.doc,
                field: format!("{}[{i}]", self.field),
                value,
            })
            .collect())
    }

    /// An array of strings.
    pub fn strings(&self) -> Result<Vec<(String, Range<usize>, String)>, PolicyError> {
        self.array()?
            .iter()
            .map(|item| Ok((item.str()?.to_string(), item.span(), item.field.clone())))
            .collect()
    }
}

/// "a string (\"x\")", "an integer (5)", ... for type errors.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("a string ({s:?})"),
        DeValue::Integer(i) => format!("an integer ({i})"),
        DeValue::Float(f) => format!("a float ({f})"),
        DeValue::Boolean(b) => format!("a boolean ({b})"),
        DeValue::Datetime(d) => format!("a datetime ({d})"),
        DeValue::Array(_) => "an array".to_string(),
        DeValue::Table(_) => "a table".to_string(),
    }
}

/// The known key within edit distance 2 of `name`, to suggest on a typo.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev + usize::from(ca != *cb);
            prev = row[j + 1];
            row[j + 1] = substitute.min(prev + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("memroy", "memory"), 2);
        assert_eq!(edit_distance("pid", "pids"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(closest("memroy", &["memory", "pids"]), Some("memory"));
        assert_eq!(closest("banana", &["memory", "pids"]), None);
    }
}

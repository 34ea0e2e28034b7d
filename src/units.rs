//! Human-friendly sizes and durations, shared by the CLI and policy files.
//!
//! One grammar everywhere so that `--memory 512M` on the command line and
//! `memory = "512M"` in a policy mean the same thing. Sizes are binary
//! (`K` = 1024); durations accept a bare number of seconds (`1.5`) or a unit
//! suffix (`500ms`, `10s`, `5m`, `2h`, `7d`).

use std::fmt;
use std::time::Duration;

/// Why a size or duration string was rejected; the message names the input
/// and the accepted forms so a user can fix it without reading the docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    pub input: String,
    pub expected: &'static str,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {:?}", self.expected, self.input)?;
        match self.expected {
            "size" => write!(
                f,
                " (expected a byte count with an optional unit: 4096, 64K, 512M, 1G, 1.5G)"
            ),
            _ => write!(
                f,
                " (expected seconds or a number with a unit: 1.5, 500ms, 10s, 5m, 2h, 7d)"
            ),
        }
    }
}

impl std::error::Error for UnitError {}

/// Parses `4096`, `64K`, `64KiB`, `512M`, `1G`, `1.5G` (binary units,
/// case-insensitive, optional trailing `B`/`iB`).
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        input: input.to_string(),
        expected: "size",
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| err())?;
        let bytes = value * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(err());
        }
        Ok(bytes.round() as u64)
    } else {
        let value: u64 = number.parse().map_err(|_| err())?;
        value.checked_mul(multiplier).ok_or_else(err)
    }
}

/// Parses `1.5` (seconds), `500ms`, `10s`, `5m`, `2h`, `7d`.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        input: input.to_string(),
        expected: "duration",
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(err()),
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || !(0.0..=1e12).contains(&seconds) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Renders a byte count the way `parse_size` reads it back (`512M`).
pub fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let multiple = 1u64 << shift;
        if bytes >= multiple && bytes % multiple == 0 {
            return format!("{}{unit}", bytes / multiple);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(format_size(512 << 20), "512M");
        assert_eq!(format_size(1000), "1000");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-3").is_err());
        assert!(parse_duration("3 weeks").is_err());
    }
}

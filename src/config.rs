//! The caller's defaults: `$XDG_CONFIG_HOME/agent-exec/config.toml`, else
//! `~/.config/agent-exec/config.toml`. No file means the built-in defaults.
//!
//! ```toml
//! [gc]
//! auto = true            # collect after jobs end (at most once a minute)
//! older_than = "30d"     # finished jobs older than this go
//! max_jobs = 10000       # keep at most this many finished jobs (newest)
//! max_bytes = "4G"       # ... and at most this much of their files
//!
//! [shell]
//! unix = ["sh", "-c"]    # what runs a command given as one string
//!
//! [compression]
//! default = "off"        # the view answers inline (--compress)
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::job::retention::Retention;
use crate::units::{parse_duration, parse_size};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub gc: GcConfig,
    #[serde(default)]
    pub shell: ShellConfig,
    #[serde(default)]
    pub compression: CompressionConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShellConfig {
    /// The program and flags that run a command given as one string.
    pub unix: Vec<String>,
    /// tumf/agent-exec's key for Windows; read and unused here.
    pub windows: Vec<String>,
}

impl Default for ShellConfig {
    fn default() -> ShellConfig {
        ShellConfig {
            unix: vec!["sh".into(), "-c".into()],
            windows: vec!["cmd".into(), "/C".into()],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// The view answers inline when `--compress` is not given.
    pub default: String,
}

impl Default for CompressionConfig {
    fn default() -> CompressionConfig {
        CompressionConfig {
            default: "off".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    pub auto: bool,
    pub older_than: String,
    /// 0: no bound.
    pub max_jobs: usize,
    /// "0": no bound.
    pub max_bytes: String,
}

impl Default for GcConfig {
    fn default() -> GcConfig {
        GcConfig {
            auto: true,
            older_than: "30d".into(),
            max_jobs: 10_000,
            max_bytes: "4G".into(),
        }
    }
}

/// A config file that cannot be used: where, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

impl Config {
    /// Where the caller's config file is looked for.
    pub fn path() -> Option<PathBuf> {
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        xdg.or_else(|| crate::job::store::caller_home().map(|h| h.join(".config")))
            .map(|dir| dir.join("agent-exec/config.toml"))
    }

    /// The caller's config, or the defaults when there is no file.
    pub fn load() -> Result<Config, ConfigError> {
        match Config::path() {
            Some(path) => Config::read(&path),
            None => Ok(Config::default()),
        }
    }

    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let error = |line, column, message: String| ConfigError {
            file: path.to_path_buf(),
            line,
            column,
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(error(0, 0, format!("cannot read: {e}"))),
        };
        let config: Config = toml::from_str(&text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |s| crate::policy::line_column(&text, s.start));
            error(line, column, e.message().to_string())
        })?;
        // The values are checked here, so that a bad one is reported with
        // its place rather than at the first collection.
        let at = |key: &str| {
            let offset = text.find(key).unwrap_or(0);
            crate::policy::line_column(&text, offset)
        };
        if let Err(e) = crate::output::views::check_mode(&config.compression.default) {
            let (line, column) = at("default");
            return Err(error(line, column, format!("compression.{e}")));
        }
        if config.shell.unix.is_empty() || config.shell.unix[0].is_empty() {
            let (line, column) = at("unix");
            return Err(error(line, column, "shell.unix: name a program".into()));
        }
        if let Err(e) = config.gc.retention() {
            let key = if e.contains("older_than") {
                "older_than"
            } else {
                "max_bytes"
            };
            let (line, column) = at(key);
            return Err(error(line, column, e));
        }
        Ok(config)
    }
}

impl GcConfig {
    /// What the store keeps, by these settings.
    pub fn retention(&self) -> Result<Retention, String> {
        let window = parse_duration(&self.older_than).map_err(|e| format!("gc.older_than: {e}"))?;
        let max_bytes = parse_size(&self.max_bytes).map_err(|e| format!("gc.max_bytes: {e}"))?;
        Ok(Retention {
            older_than: self.older_than.clone(),
            older_than_ms: window.as_millis() as u64,
            max_jobs: (self.max_jobs > 0).then_some(self.max_jobs),
            max_bytes: (max_bytes > 0).then_some(max_bytes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Config::read(&dir.path().join("none.toml")).expect("defaults");
        let r = c.gc.retention().expect("retention");
        assert!(c.gc.auto);
        assert_eq!(r.older_than_ms, 30 * 86_400_000);
        assert_eq!(r.max_jobs, Some(10_000));
        assert_eq!(r.max_bytes, Some(4 << 30));
    }

    #[test]
    fn a_bad_config_names_file_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[gc]\nauto = true\nolder_than = \"soon\"\n").expect("write");
        let e = Config::read(&path).expect_err("bad duration");
        assert_eq!((e.line, e.column), (3, 1), "{e}");
        assert!(e.to_string().contains("older_than"), "{e}");
        std::fs::write(&path, "[gc]\nmax_job = 3\n").expect("write");
        let e = Config::read(&path).expect_err("unknown key");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.to_string().contains("max_job"), "{e}");
        std::fs::write(&path, "[gc]\nmax_jobs = 0\nmax_bytes = \"0\"\n").expect("write");
        let r = Config::read(&path)
            .expect("no bounds")
            .gc
            .retention()
            .expect("ok");
        assert_eq!((r.max_jobs, r.max_bytes), (None, None));
    }
}

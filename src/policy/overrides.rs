//! Command-line sandbox overrides (`--allow-read`, `--net`, `--memory`...)
//! merged into a policy. Tightening is always allowed; loosening only
//! where the policy's `[overrides]` section says so.

use std::fmt;
use std::path::{Component, PathBuf};
use std::time::Duration;

use super::model::{format_duration, format_opt_duration, format_opt_size, NetMode, Policy};
use crate::units::format_size;

/// What the user asked for on the command line; `None`/empty = no change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Absolute paths (the CLI resolves relative ones against its cwd).
    pub allow_read: Vec<PathBuf>,
    pub allow_write: Vec<PathBuf>,
    pub allow_exec: Vec<PathBuf>,
    pub net: Option<NetMode>,
    /// `--allow-domain`: hosts added to `network.allow_domains`; without
    /// `--net`, they turn a narrower mode into `proxy`.
    pub allow_domains: Vec<String>,
    pub memory: Option<u64>,
    pub pids: Option<u64>,
    pub cpus: Option<f64>,
    pub timeout: Option<Duration>,
}

/// Why overrides could not be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum OverrideError {
    /// Loosening `field` (the `[overrides]` key) is not permitted by the policy.
    Forbidden {
        field: &'static str,
        policy: String,
        requested: String,
        current: String,
    },
    /// The value itself is unusable (zero, not finite, relative path, `..`).
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl fmt::Display for OverrideError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OverrideError::Forbidden {
                field,
                policy,
                requested,
                current,
            } => write!(
                f,
                "policy {policy:?} does not allow loosening {field}: requested {requested}, the policy allows {current} (ask for no more than that, or use a policy whose [overrides] sets {field} = true)"
            ),
            OverrideError::Invalid { field, message } => write!(f, "--{}: {message}", flag(field)),
        }
    }
}

impl std::error::Error for OverrideError {}

/// The command-line flag for an `[overrides]` key.
fn flag(field: &str) -> String {
    field.replace('_', "-")
}

impl Policy {
    /// The policy with `o` applied, or the first override it refuses.
    pub fn apply_overrides(&self, o: &Overrides) -> Result<Policy, OverrideError> {
        let mut p = self.clone();
        let forbid = |field, requested: String, current: String| OverrideError::Forbidden {
            field,
            policy: self.name.clone(),
            requested,
            current,
        };

        for (field, paths, permitted) in [
            ("allow_read", &o.allow_read, self.overrides.allow_read),
            ("allow_write", &o.allow_write, self.overrides.allow_write),
            ("allow_exec", &o.allow_exec, self.overrides.allow_exec),
        ] {
            for path in paths {
                if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
                    return Err(OverrideError::Invalid {
                        field,
                        message: format!("{path:?} must be an absolute path without `..`"),
                    });
                }
            }
            // Without landlock everything is already reachable.
            if paths.is_empty() || !p.filesystem.landlock {
                continue;
            }
            if !permitted {
                let listed: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                return Err(forbid(
                    field,
                    listed.join(", "),
                    "only the paths it lists".to_string(),
                ));
            }
            let list = match field {
                "allow_read" => &mut p.filesystem.read,
                "allow_write" => &mut p.filesystem.write,
                _ => &mut p.filesystem.exec,
            };
            for path in paths {
                let path: PathBuf = path.components().collect();
                if !list.contains(&path) {
                    list.push(path);
                }
            }
        }

        let mut net = o.net;
        if !o.allow_domains.is_empty() {
            for d in &o.allow_domains {
                if let Some(why) = crate::sandbox::net_rules::pattern_problem(d) {
                    return Err(OverrideError::Invalid {
                        field: "allow_domain",
                        message: why,
                    });
                }
                // The host's loopback, a private network, the cloud's
                // metadata address: a policy file's decision, never a flag
                // an agent passes because a job asked for it.
                if crate::sandbox::net_rules::names_private_address(d) {
                    return Err(OverrideError::Invalid {
                        field: "allow_domain",
                        message: format!(
                            "{d:?} is a loopback, private or link-local address: name it in a \
                             policy file (network.allow_domains or network.hosts) if a job is \
                             to reach it"
                        ),
                    });
                }
            }
            let mode = net.unwrap_or(self.network.mode);
            if mode == NetMode::Host {
                return Err(OverrideError::Invalid {
                    field: "allow_domain",
                    message: "the job's network is host (it reaches every host already); \
                              --allow-domain needs --net proxy"
                        .to_string(),
                });
            }
            if mode != NetMode::Proxy && o.net.is_some() {
                return Err(OverrideError::Invalid {
                    field: "allow_domain",
                    message: format!(
                        "--net {mode} has no way out to any host; --allow-domain needs --net proxy"
                    ),
                });
            }
            net = Some(NetMode::Proxy);
            let new: Vec<&String> = o
                .allow_domains
                .iter()
                .filter(|d| !self.network.allow_domains.contains(d))
                .collect();
            if !new.is_empty() && !self.overrides.net {
                let listed: Vec<&str> = new.iter().map(|d| d.as_str()).collect();
                return Err(forbid(
                    "net",
                    format!("--allow-domain {}", listed.join(", ")),
                    "only the hosts it lists".to_string(),
                ));
            }
            for d in new {
                if !p.network.added_domains.contains(d) {
                    p.network.added_domains.push(d.clone());
                }
            }
        }
        if let Some(net) = net {
            if net > self.network.mode && !self.overrides.net {
                return Err(forbid(
                    "net",
                    net.to_string(),
                    format!("at most {}", self.network.mode),
                ));
            }
            if net != self.network.mode {
                p.network.mode = net;
                // Port lists belong to the mode they were written for.
                p.network.connect_ports = None;
                p.network.bind_ports = None;
            }
        }

        if let Some(memory) = o.memory {
            positive("memory", memory)?;
            if self.limits.memory.is_some_and(|m| memory > m) && !self.overrides.memory {
                return Err(forbid(
                    "memory",
                    format_size(memory),
                    at_most(format_opt_size(self.limits.memory)),
                ));
            }
            p.limits.memory = Some(memory);
        }
        if let Some(pids) = o.pids {
            positive("pids", pids)?;
            if self.limits.pids.is_some_and(|m| pids > m) && !self.overrides.pids {
                let current = self.limits.pids.map_or_else(String::new, |n| n.to_string());
                return Err(forbid("pids", pids.to_string(), at_most(current)));
            }
            p.limits.pids = Some(pids);
        }
        if let Some(cpus) = o.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                return Err(OverrideError::Invalid {
                    field: "cpus",
                    message: format!("{cpus} is not a positive number of CPUs"),
                });
            }
            if self.limits.cpu.is_some_and(|m| cpus > m) && !self.overrides.cpus {
                let current = self.limits.cpu.map_or_else(String::new, |c| c.to_string());
                return Err(forbid("cpus", cpus.to_string(), at_most(current)));
            }
            p.limits.cpu = Some(cpus);
        }
        if let Some(timeout) = o.timeout {
            if timeout.is_zero() {
                return Err(OverrideError::Invalid {
                    field: "timeout",
                    message: "must be greater than zero".to_string(),
                });
            }
            if self.limits.timeout.is_some_and(|m| timeout > m) && !self.overrides.timeout {
                return Err(forbid(
                    "timeout",
                    format_duration(timeout),
                    at_most(format_opt_duration(self.limits.timeout)),
                ));
            }
            p.limits.timeout = Some(timeout);
        }
        Ok(p)
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), OverrideError> {
    if value == 0 {
        Err(OverrideError::Invalid {
            field,
            message: "must be greater than zero".to_string(),
        })
    } else {
        Ok(())
    }
}

fn at_most(current: String) -> String {
    format!("at most {current}")
}

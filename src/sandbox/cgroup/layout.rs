//! Where this process's cgroups live, on pure cgroup v2 and on hybrid hosts.
//!
//! Job cgroups are only ever created under the cgroup this process already
//! belongs to, in every hierarchy (the host's own management lives in
//! sibling cgroups we must not touch). Reading `/proc/self/cgroup` gives the
//! paths, `statfs` tells a pure v2 host from a hybrid one, and
//! `/proc/self/mountinfo` where each hierarchy is mounted (and which subtree
//! the mount shows).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The v1 controllers a job uses (`v1.rs`): memory and pids always, cpu
/// when limited. The others a hybrid host mounts are none of our business.
const V1_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// One cgroup2 hierarchy with every controller (most current distributions).
    V2,
    /// v1 controllers plus a controller-less cgroup2 (`/sys/fs/cgroup/unified`).
    Hybrid,
}

/// The cgroup directories this process belongs to.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: LayoutKind,
    /// Our own cgroup directory in the v2 hierarchy (pure or `unified`).
    pub v2_own: PathBuf,
    /// v1 controller name -> our own cgroup directory in that hierarchy
    /// (of [`V1_CONTROLLERS`], those mounted).
    pub v1_own: BTreeMap<String, PathBuf>,
}

/// Why cgroups cannot be used on this host.
#[derive(Debug)]
pub enum LayoutError {
    NoCgroup2,
    Io(&'static str, io::Error),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::NoCgroup2 => write!(
                f,
                "no cgroup2 hierarchy is mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified); \
                 agent-exec needs cgroup v2 to contain and kill job trees"
            ),
            LayoutError::Io(what, e) => write!(f, "cannot read {what}: {e}"),
        }
    }
}

impl std::error::Error for LayoutError {}

impl Layout {
    /// Detects the layout of the calling process.
    pub fn detect() -> Result<Layout, LayoutError> {
        let (kind, cgroup) = Self::kind_and_own_paths()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| LayoutError::Io("/proc/self/mountinfo", e))?;
        Self::from_proc(kind, &cgroup, &mountinfo).ok_or(LayoutError::NoCgroup2)
    }

    fn kind_and_own_paths() -> Result<(LayoutKind, String), LayoutError> {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| LayoutError::Io("/proc/self/cgroup", e))?;
        let kind = if is_cgroup2(Path::new("/sys/fs/cgroup")) {
            LayoutKind::V2
        } else if is_cgroup2(Path::new("/sys/fs/cgroup/unified")) {
            LayoutKind::Hybrid
        } else {
            return Err(LayoutError::NoCgroup2);
        };
        Ok((kind, cgroup))
    }

    /// Builds the layout from the text of `/proc/self/cgroup` and `/proc/self/mountinfo`.
    fn from_proc(kind: LayoutKind, cgroup: &str, mountinfo: &str) -> Option<Layout> {
        Self::from_mounts(kind, cgroup, &parse_mountinfo(mountinfo))
    }

    /// Builds the layout from the text of `/proc/self/cgroup` and the cgroup mounts.
    fn from_mounts(kind: LayoutKind, cgroup: &str, mounts: &[Mount]) -> Option<Layout> {
        let mut v2_own = None;
        let mut v1_own = BTreeMap::new();
        for line in cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                let mount = mounts.iter().find(|m| m.fstype == "cgroup2")?;
                v2_own = Some(mount.resolve(path));
            } else if kind == LayoutKind::Hybrid {
                for controller in controllers.split(',') {
                    if !V1_CONTROLLERS.contains(&controller) {
                        continue;
                    }
                    if let Some(mount) = mounts.iter().find(|m| m.holds(controller)) {
                        v1_own.insert(controller.to_string(), mount.resolve(path));
                    }
                }
            }
        }
        Some(Layout {
            kind,
            v2_own: v2_own?,
            v1_own,
        })
    }
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
    options: String,
}

impl Mount {
    /// A v1 hierarchy with `controller` attached.
    fn holds(&self, controller: &str) -> bool {
        self.fstype == "cgroup" && self.options.split(',').any(|o| o == controller)
    }

    /// Maps a path from /proc/self/cgroup to a directory under this mount
    /// (the mount may expose only a subtree, e.g. inside a cgroup namespace).
    fn resolve(&self, cgroup_path: &str) -> PathBuf {
        let rel = cgroup_path
            .strip_prefix(self.root.as_str())
            .unwrap_or(cgroup_path)
            .trim_start_matches('/');
        if rel.is_empty() {
            self.point.clone()
        } else {
            self.point.join(rel)
        }
    }
}

/// The cgroup mounts of a mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        // id parent maj:min root point options [optional...] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let mut left = left.split(' ').skip(3);
        let (Some(root), Some(point)) = (left.next(), left.next()) else {
            continue;
        };
        mounts.push(Mount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
            fstype: fstype.to_string(),
            options: options.to_string(),
        });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTS: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_paths_follow_our_own_cgroup() {
        let l = Layout::from_proc(LayoutKind::Hybrid, HYBRID_CGROUP, HYBRID_MOUNTS).unwrap();
        assert_eq!(l.v2_own, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(
            l.v1_own["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        assert_eq!(l.v1_own["pids"], PathBuf::from("/sys/fs/cgroup/pids"));
        assert!(!l.v1_own.contains_key("cpuacct"), "cpuacct is not mounted");
    }

    #[test]
    fn v2_namespaced_mount_root_is_stripped() {
        let mounts = "40 1 0:30 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l =
            Layout::from_proc(LayoutKind::V2, "0::/user.slice/session.scope\n", mounts).unwrap();
        assert_eq!(l.v2_own, PathBuf::from("/sys/fs/cgroup/session.scope"));
        assert!(l.v1_own.is_empty());
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

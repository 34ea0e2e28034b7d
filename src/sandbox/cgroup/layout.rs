//! Where this process's cgroups live, on pure cgroup v2 and on hybrid hosts.
//!
//! Job cgroups are only ever created under the cgroup this process already
//! belongs to, in every hierarchy (the host's own management lives in
//! sibling cgroups we must not touch). Reading `/proc/self/cgroup` gives the
//! paths, and `statfs` tells a pure v2 host from a hybrid one. Where each
//! hierarchy is mounted (and which subtree the mount shows) comes from the
//! kernel for the usual places (`/sys/fs/cgroup`, `…/unified`,
//! `…/<controller>`): `statx` gives the mount's id and `statmount` its root,
//! type and options, a few microseconds each. Every launch detects the
//! layout, and `/proc/self/mountinfo` costs ~0.1 ms to generate and parse,
//! so it is read only where that falls short: a kernel before 6.11, or a
//! hierarchy mounted somewhere else.

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
        if let Some(layout) = Self::from_usual_mounts(kind, &cgroup) {
            return Ok(layout);
        }
        Self::from_mountinfo(kind, &cgroup)
    }

    /// The layout as `/proc/self/mountinfo` describes it (what [`detect`]
    /// falls back to; public for the test that compares the two).
    ///
    /// [`detect`]: Layout::detect
    pub fn detect_from_mountinfo() -> Result<Layout, LayoutError> {
        let (kind, cgroup) = Self::kind_and_own_paths()?;
        Self::from_mountinfo(kind, &cgroup)
    }

    /// The layout from the kernel's answers about the usual mount points
    /// alone, if every hierarchy we need is mounted there (public for the
    /// test that compares it with mountinfo's).
    pub fn detect_from_usual_mounts() -> Option<Layout> {
        let (kind, cgroup) = Self::kind_and_own_paths().ok()?;
        Self::from_usual_mounts(kind, &cgroup)
    }

    fn kind_and_own_paths() -> Result<(LayoutKind, String), LayoutError> {
        let cgroup = crate::procfs::read_text("/proc/self/cgroup")
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

    fn from_mountinfo(kind: LayoutKind, cgroup: &str) -> Result<Layout, LayoutError> {
        let mountinfo = crate::procfs::read_text("/proc/self/mountinfo")
            .map_err(|e| LayoutError::Io("/proc/self/mountinfo", e))?;
        Self::from_proc(kind, cgroup, &mountinfo).ok_or(LayoutError::NoCgroup2)
    }

    /// The layout if the v2 hierarchy and each v1 controller we use that
    /// `/proc/self/cgroup` lists are mounted where systemd and the
    /// distributions mount them; None sends the caller to mountinfo.
    fn from_usual_mounts(kind: LayoutKind, cgroup: &str) -> Option<Layout> {
        let v2_point = match kind {
            LayoutKind::V2 => "/sys/fs/cgroup",
            LayoutKind::Hybrid => "/sys/fs/cgroup/unified",
        };
        let mut mounts = vec![mount_at(v2_point).filter(|m| m.fstype == "cgroup2")?];
        if kind == LayoutKind::Hybrid {
            let listed = cgroup.lines().filter_map(|line| line.split(':').nth(1));
            for controller in listed.flat_map(|list| list.split(',')) {
                if V1_CONTROLLERS.contains(&controller) {
                    let mount = mount_at(&format!("/sys/fs/cgroup/{controller}"))
                        .filter(|m| m.holds(controller))?;
                    mounts.push(mount);
                }
            }
        }
        Self::from_mounts(kind, cgroup, &mounts)
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

/// The cgroup mounts of a mountinfo text (every launch reads it: the other
/// lines are skipped before anything is allocated for them).
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

/// The mount whose root `path` is (symlinks followed), as the kernel
/// describes it; None if `path` is not a mount's root or the kernel cannot
/// say (statmount with options needs Linux 6.11).
fn mount_at(path: &str) -> Option<Mount> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    const SYS_STATMOUNT: libc::c_long = 457;
    const STATMOUNT_MNT_ROOT: u64 = 0x08;
    const STATMOUNT_FS_TYPE: u64 = 0x20;
    const STATMOUNT_MNT_OPTS: u64 = 0x80;
    const NEEDED: u64 = STATMOUNT_MNT_ROOT | STATMOUNT_FS_TYPE;
    /// `struct mnt_id_req`, first version (`MNT_ID_REQ_SIZE_VER0`).
    #[repr(C)]
    struct MntIdReq {
        size: u32,
        spare: u32,
        mnt_id: u64,
        param: u64,
    }
    /// Offsets in `struct statmount` (include/uapi/linux/mount.h): the
    /// fixed part is 512 bytes, then the strings, each field of type
    /// `[str]` an offset into them.
    const MNT_OPTS: usize = 4;
    const FS_TYPE: usize = 36;
    const MNT_ROOT: usize = 104;
    const STRINGS: usize = 512;

    let c_path = std::ffi::CString::new(path).ok()?;
    // SAFETY: statx fills the struct we pass; all-zero is a valid value of it.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and buffer for the duration of the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            STATX_MNT_ID_UNIQUE,
            &mut stx,
        )
    };
    if rc != 0
        || stx.stx_mask & STATX_MNT_ID_UNIQUE == 0
        || stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT == 0
        || stx.stx_attributes & STATX_ATTR_MOUNT_ROOT == 0
    {
        return None;
    }
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id: stx.stx_mnt_id,
        param: NEEDED | STATMOUNT_MNT_OPTS,
    };
    let mut buf = [0u64; 128]; // 1 KiB (the strings are short), 8-byte aligned like the struct
    let len = std::mem::size_of_val(&buf);
    // SAFETY: `req` and `buf` are valid for the call; the kernel writes at
    // most `len` bytes.
    let rc = unsafe { libc::syscall(SYS_STATMOUNT, &req, buf.as_mut_ptr(), len, 0) };
    if rc != 0 {
        return None;
    }
    // SAFETY: a plain byte view of the buffer we own.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) };
    let u32_at =
        |at: usize| u32::from_ne_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mask = buf[1]; // `mask`, at byte 8
    if mask & NEEDED != NEEDED {
        return None;
    }
    let string = |field: usize| -> Option<String> {
        let tail = bytes.get(STRINGS + u32_at(field) as usize..)?;
        let end = tail.iter().position(|&b| b == 0)?;
        String::from_utf8(tail[..end].to_vec()).ok()
    };
    Some(Mount {
        root: string(MNT_ROOT)?,
        point: PathBuf::from(path),
        fstype: string(FS_TYPE)?,
        // The kernel leaves the flag out when there are no options, and
        // before 6.11 it has none to give: either way no v1 controller is
        // found here, and the caller reads mountinfo.
        options: if mask & STATMOUNT_MNT_OPTS != 0 {
            string(MNT_OPTS)?
        } else {
            String::new()
        },
    })
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

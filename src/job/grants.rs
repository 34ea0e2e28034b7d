//! The paths a job is granted, as they will be launched.
//!
//! Every grant is resolved once, here, into the real path it names: the
//! record keeps real paths, so that what `status` shows is what the job
//! gets, and the launch refuses a path that has gained a symlink since
//! (`sandbox::view`). The symlinks met on the way (`/bin -> usr/bin`) are
//! remembered, for the job's view to have them too. Grants no job may have
//! are refused with the reason.

use std::path::{Component, Path, PathBuf};

use super::define::DefineError;
use crate::policy::{ExpandedFilesystem, Policy};

/// Top-level directories of the host that no grant may be, unless a policy
/// names it (a working directory of `/` must not make the host writable).
const SYSTEM_ROOTS: [&str; 9] = [
    "/", "/usr", "/etc", "/var", "/boot", "/proc", "/sys", "/dev", "/run",
];

/// Trees of the host that no write grant may lie in, unless a policy names
/// it: a root caller's job owns its write grants (they are idmapped), so
/// `--cwd /usr/bin` would let it replace the host's programs, and
/// `/var/lib/dpkg` the scripts the package manager runs. (`/dev` is never
/// idmapped; its devices are granted by name.) Below `/var/tmp` is the
/// caller's own.
const SYSTEM_TREES: [&str; 14] = [
    "/usr", "/etc", "/boot", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
    "/libx32", "/var", "/run", "/opt",
];

/// Shared directories of the host that no write grant may be (what lies in
/// them is someone's), unless a policy names it.
const SHARED_DIRS: [&str; 10] = [
    "/home",
    "/srv",
    "/tmp",
    "/mnt",
    "/media",
    "/var/tmp",
    "/run/user",
    "/dev/shm",
    "/root",
    "/nonexistent",
];

/// Why a write grant is the host's rather than the caller's, if it is.
fn host_write(path: &Path, home: &Path) -> Option<&'static str> {
    let own_tmp = path.starts_with("/var/tmp") && path != Path::new("/var/tmp");
    if SYSTEM_TREES.iter().any(|t| path.starts_with(t)) && !own_tmp {
        return Some("inside a system directory");
    }
    if home != Path::new("/") && home.starts_with(path) {
        return Some(
            "your home directory or above it (start-up files, keys and tokens live there)",
        );
    }
    if SHARED_DIRS.iter().any(|d| Path::new(d) == path) {
        return Some("a directory shared by every user");
    }
    None
}

/// The first symlink on the way to `path` (absolute, or relative to the
/// current directory) that lies outside the system's own trees: a job may
/// have left it (`backend -> /home/other/.ssh`), and a path the caller
/// names through it would be steered where the job chose. `None`: the
/// path goes through no such link.
pub fn planted_link(path: &Path) -> Option<PathBuf> {
    const SYSTEM: [&str; 12] = [
        "/usr", "/etc", "/boot", "/proc", "/sys", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
        "/libx32", "/dev",
    ];
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut so_far = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(name) => so_far.push(name),
            Component::ParentDir => {
                so_far.pop();
                continue;
            }
            _ => continue,
        }
        let is_link = std::fs::symlink_metadata(&so_far).is_ok_and(|m| m.file_type().is_symlink());
        let system = SYSTEM.iter().any(|s| so_far.starts_with(s));
        if is_link && !system {
            return Some(so_far);
        }
        if is_link {
            // Follow a system link (`/lib64 -> usr/lib64`) to judge the rest.
            so_far = so_far.canonicalize().ok()?;
        }
    }
    None
}

/// The grants of one job, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub fs: ExpandedFilesystem,
    /// Symlinks met on the way to a grant: (link, its target as read).
    pub links: Vec<(PathBuf, PathBuf)>,
    /// The grants that are the caller's own trees (see `SandboxSpec::own_trees`).
    pub own_trees: Vec<PathBuf>,
    /// Grants not given, each with the symlink in the caller's home or
    /// working directory it was reached through.
    pub dropped: Vec<(PathBuf, PathBuf)>,
}

/// The job's own directories, which lie inside the store by design, and
/// the caller's home.
pub struct OwnDirs<'a> {
    pub store: &'a Path,
    pub tmpdir: &'a Path,
    pub job_dir: &'a Path,
    pub home: &'a Path,
}

/// Resolves every grant of `fs` (expanded for a job in `cwd`), and refuses
/// the grants no job may have; `policy` is the policy as its files say,
/// before the command line's overrides (what it names it may grant).
pub fn resolve(
    policy: &Policy,
    fs: ExpandedFilesystem,
    cwd: &Path,
    own: &OwnDirs<'_>,
) -> Result<Resolved, DefineError> {
    if cwd.starts_with(own.store) {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies inside the job store {}: run the job from a \
             project directory, or pass --cwd DIR",
            cwd.display(),
            own.store.display()
        )));
    }
    let mut links = Vec::new();
    let mut dropped = Vec::new();
    // A grant reached through a symlink in the caller's home or working
    // directory is not granted: a job may have left that link (`~/.deno/bin
    // -> ../.ssh`), and the next job's grant would follow it.
    let root = Path::new("/");
    let plantable = |link: &Path| {
        (cwd != root && link.starts_with(cwd)) || (own.home != root && link.starts_with(own.home))
    };
    let mut real = |paths: Vec<PathBuf>, grant: bool| -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for path in paths {
            let mut met = Vec::new();
            let resolved = resolve_links(&path, &mut met);
            if grant {
                if let Some((link, _)) = met.iter().find(|(l, _)| plantable(l)) {
                    dropped.push((path.clone(), link.clone()));
                    continue;
                }
            }
            links.extend(met);
            if !out.contains(&resolved) {
                out.push(resolved);
            }
        }
        out
    };
    let fs = ExpandedFilesystem {
        landlock: fs.landlock,
        read: real(fs.read, true),
        write: real(fs.write, true),
        exec: real(fs.exec, true),
        tmpfs: real(fs.tmpfs, false),
        deny: real(fs.deny, false),
        read_only: real(fs.read_only, false),
    };
    // What the view covers in the store would uncover it.
    let mut fs = fs;
    fs.read_only.retain(|p| !p.starts_with(own.store));
    fs.deny.retain(|p| !p.starts_with(own.store));
    let fs = fs;
    // A working directory is not a way to name a hidden place: a symlink
    // one job leaves (`frontend -> ../.ssh`, `sub -> .git`) would make the
    // next job's `--cwd` the very place the policy hides or keeps read-only.
    if let Some(hidden) = fs.deny.iter().find(|d| cwd.starts_with(d)) {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies in {}, which the policy hides (filesystem.deny); \
             run the job from a project directory, or pass --cwd DIR",
            cwd.display(),
            hidden.display()
        )));
    }
    if cwd.components().any(|c| c.as_os_str() == ".git") {
        return Err(DefineError::Invalid(format!(
            "the working directory {} lies in a git directory, which would make its hooks and \
             config writable; run the job from the work tree, or pass --cwd DIR",
            cwd.display()
        )));
    }
    // The most specific rule wins; on a tie, the grant (a command line's
    // `--allow-read ~/.ssh` shows what the policy would hide).
    let mut fs = fs;
    let granted: Vec<PathBuf> = fs
        .read
        .iter()
        .chain(&fs.write)
        .chain(&fs.exec)
        .cloned()
        .collect();
    fs.deny.retain(|p| !granted.contains(p));
    fs.read_only.retain(|p| !fs.write.contains(p));
    // What the policy file itself lets be written in the home.
    let policy_writes: Vec<PathBuf> = policy
        .filesystem
        .write
        .iter()
        .filter_map(|t| match t.strip_prefix("$HOME") {
            Ok(rest) => Some(own.home.join(rest)),
            Err(_) => t.is_absolute().then(|| t.clone()),
        })
        .collect();
    let named = |templates: &[PathBuf]| -> Vec<PathBuf> {
        templates
            .iter()
            .filter(|t| !t.to_string_lossy().starts_with('$'))
            .cloned()
            .collect()
    };
    let f = &policy.filesystem;
    for (class, granted, by_name) in [
        ("read", &fs.read, named(&f.read)),
        ("write", &fs.write, named(&f.write)),
        ("exec", &fs.exec, named(&f.exec)),
    ] {
        for path in granted {
            let system = SYSTEM_ROOTS.iter().any(|r| Path::new(r) == path);
            if system && !by_name.contains(path) {
                return Err(refusal(class, path, cwd, "a system directory"));
            }
            if class == "write" && !by_name.contains(path) {
                if let Some(what) = host_write(path, own.home) {
                    return Err(refusal(class, path, cwd, what));
                }
                // Hidden directories of the home hold programs and settings
                // that run as the caller (`~/.local/bin`, `~/.config/systemd`):
                // writable only inside what the policy itself names there.
                let hidden = path
                    .strip_prefix(own.home)
                    .ok()
                    .and_then(|rest| rest.components().next())
                    .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with('.'));
                let named_there = policy_writes.iter().any(|w| path.starts_with(w));
                if hidden && own.home != Path::new("/") && !named_there {
                    return Err(refusal(
                        class,
                        path,
                        cwd,
                        "a hidden directory of your home, where programs and settings live",
                    ));
                }
            }
            let own_dir = path.starts_with(own.tmpdir) || path.starts_with(own.job_dir);
            if path.starts_with(own.store) && !own_dir {
                return Err(refusal(class, path, cwd, "inside the job store"));
            }
        }
    }
    links.sort();
    links.dedup();
    let own_trees = own_trees(&fs, cwd, own.home);
    Ok(Resolved {
        fs,
        links,
        own_trees,
        dropped,
    })
}

/// The grants that are the caller's own trees: every write path, and what
/// is granted of the working directory or of `$HOME`. Never a system
/// directory, a device, `/proc` or `/sys`: those are the host's, whoever
/// the caller (an idmapped `/dev/null` would let the job chmod the host's).
/// A directory the caller made in the shared-memory tmpfs is its own.
fn own_trees(fs: &ExpandedFilesystem, cwd: &Path, home: &Path) -> Vec<PathBuf> {
    let host = |p: &Path| {
        let in_shm = p.starts_with("/dev/shm") && p != Path::new("/dev/shm");
        SYSTEM_ROOTS.iter().any(|r| Path::new(r) == p)
            || (p.starts_with("/dev") && !in_shm)
            || p.starts_with("/proc")
            || p.starts_with("/sys")
    };
    let caller_home = !host(home) && home.is_absolute();
    let mut out: Vec<PathBuf> = Vec::new();
    let all = fs.read.iter().chain(&fs.write).chain(&fs.exec);
    for path in all {
        let own = fs.write.contains(path)
            || path.starts_with(cwd)
            || (caller_home && path.starts_with(home));
        if own && !host(path) && !out.contains(path) {
            out.push(path.clone());
        }
    }
    out.sort();
    out
}

fn refusal(class: &str, path: &Path, cwd: &Path, what: &str) -> DefineError {
    let hint = if path == cwd {
        "it is the working directory: run the job from a project directory, or pass --cwd DIR"
            .to_string()
    } else {
        "grant a directory within it instead".to_string()
    };
    DefineError::Invalid(format!(
        "the job would be granted {class} access to {}, {what}; {hint}",
        path.display()
    ))
}

/// `path` with every symlink on the way resolved (as written from the
/// first component that does not exist: it grants nothing), recording each
/// symlink met.
fn resolve_links(path: &Path, links: &mut Vec<(PathBuf, PathBuf)>) -> PathBuf {
    walk(PathBuf::from("/"), path, links, 0)
}

/// Walks `rest` from the real directory `cur`.
fn walk(mut cur: PathBuf, rest: &Path, links: &mut Vec<(PathBuf, PathBuf)>, depth: u32) -> PathBuf {
    let mut missing = false;
    for component in rest.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::ParentDir => {
                if !missing {
                    cur.pop();
                    continue;
                }
                cur.push("..");
                continue;
            }
            _ => continue,
        };
        let next = cur.join(name);
        if missing {
            cur = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() && depth < 40 => {
                let Ok(target) = std::fs::read_link(&next) else {
                    cur = next;
                    continue;
                };
                links.push((next, target.clone()));
                let from = if target.is_absolute() {
                    PathBuf::from("/")
                } else {
                    cur.clone()
                };
                cur = walk(from, &target, links, depth + 1);
            }
            Ok(_) => cur = next,
            Err(_) => {
                missing = true;
                cur = next;
            }
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn own_trees_are_the_callers_never_the_hosts() {
        let paths = |v: &[&str]| v.iter().map(PathBuf::from).collect::<Vec<_>>();
        let fs = ExpandedFilesystem {
            landlock: true,
            read: paths(&["/usr", "/etc", "/dev/null", "/home/u/.cargo", "/dev/shm/w"]),
            write: paths(&["/dev/shm/w", "/dev/null", "/srv/out", "/dev/shm"]),
            exec: paths(&["/usr", "/home/u/.cargo/bin"]),
            tmpfs: Vec::new(),
            deny: Vec::new(),
            read_only: Vec::new(),
        };
        assert_eq!(
            own_trees(&fs, Path::new("/dev/shm/w"), Path::new("/home/u")),
            paths(&[
                "/dev/shm/w",
                "/home/u/.cargo",
                "/home/u/.cargo/bin",
                "/srv/out"
            ])
        );
        // A home that is a system directory makes nothing of it the caller's.
        assert_eq!(
            own_trees(&fs, Path::new("/srv/out"), Path::new("/")),
            paths(&["/dev/shm/w", "/srv/out"])
        );
    }

    #[test]
    fn links_are_resolved_and_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink(root.join("usr"), root.join("abs")).unwrap();
        let mut links = Vec::new();
        assert_eq!(
            resolve_links(&root.join("bin"), &mut links),
            root.join("usr/bin")
        );
        assert_eq!(
            resolve_links(&root.join("abs/bin"), &mut links),
            root.join("usr/bin")
        );
        assert_eq!(
            resolve_links(&root.join("missing/x"), &mut links),
            root.join("missing/x")
        );
        assert_eq!(
            links,
            [
                (root.join("bin"), PathBuf::from("usr/bin")),
                (root.join("abs"), root.join("usr"))
            ]
        );
    }
}

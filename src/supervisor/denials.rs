//! What the sandbox refused the job, told by the job itself.
//!
//! Landlock leaves no record where the kernel's audit is off, and a path
//! outside the new root is simply absent, so the evidence is what the
//! job's programs print on stderr when a call fails: `Permission denied`,
//! `Read-only file system`, a name that does not resolve. Each such line is
//! matched to the policy, and only what the sandbox caused is kept: a path
//! that exists on the host but is not granted (or not writable, or
//! executable, as the error says), a name lookup in a job without a
//! network. Every denial carries the flag that would allow it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{NetMode, SandboxSpec};

/// At most this many denials are reported.
const MAX_DENIALS: usize = 20;
/// At most this much of the start and of the end of stderr is read.
const SCAN_BYTES: u64 = 1 << 20;
/// At most this many paths are looked at on the host, each at most this
/// long, and for at most this long in all: the job chooses them, and the
/// result waits for the scan (a chain of symlinks costs a lookup dearly).
const MAX_PATHS: usize = 64;
const MAX_PATH_LEN: usize = 512;
const SCAN_TIME: std::time::Duration = std::time::Duration::from_millis(300);
/// Places whose lookup can block or trigger the host (automounts, fuse).
const NOT_LOOKED_AT: [&str; 8] = [
    "/proc", "/sys", "/dev", "/run", "/net", "/misc", "/mnt", "/media",
];

/// One thing the job tried and the sandbox refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Denial {
    /// `filesystem` or `network`.
    pub kind: String,
    /// The path or host name.
    pub target: String,
    /// The error as the job reported it.
    pub error: String,
    /// The flag or policy key that would allow it.
    pub hint: String,
}

const FS_ERRORS: [&str; 3] = [
    "Permission denied",
    "Read-only file system",
    "No such file or directory",
];

const NET_ERRORS: [&str; 8] = [
    "Could not resolve host",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
    "getaddrinfo ENOTFOUND",
    "getaddrinfo EAI_AGAIN",
    "Network is unreachable",
    "nodename nor servname provided",
];

/// The denials evidenced in the stderr log at `log`.
pub fn find(log: &Path, spec: &SandboxSpec, cwd: &Path) -> Vec<Denial> {
    let Ok(text) = read_ends(log) else {
        return Vec::new();
    };
    let mut out: Vec<Denial> = Vec::new();
    let mut budget = Budget {
        paths: MAX_PATHS,
        until: std::time::Instant::now() + SCAN_TIME,
    };
    for line in text.lines() {
        if out.len() >= MAX_DENIALS || budget.spent() {
            break;
        }
        for denial in judge_line(line, spec, cwd, &mut budget) {
            if !out
                .iter()
                .any(|d| d.kind == denial.kind && d.target == denial.target)
            {
                out.push(denial);
            }
        }
    }
    out.truncate(MAX_DENIALS);
    out
}

fn read_ends(log: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = crate::job::store::open_plain(log)?;
    let len = file.metadata()?.len();
    let mut bytes = Vec::new();
    (&mut file).take(SCAN_BYTES).read_to_end(&mut bytes)?;
    if len > 2 * SCAN_BYTES {
        file.seek(SeekFrom::Start(len - SCAN_BYTES))?;
        bytes.push(b'\n');
        file.take(SCAN_BYTES).read_to_end(&mut bytes)?;
    } else if len > SCAN_BYTES {
        file.take(SCAN_BYTES).read_to_end(&mut bytes)?;
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// What the scan may still look at on the host.
struct Budget {
    paths: usize,
    until: std::time::Instant,
}

impl Budget {
    fn spent(&self) -> bool {
        self.paths == 0 || std::time::Instant::now() >= self.until
    }
}

fn judge_line(line: &str, spec: &SandboxSpec, cwd: &Path, budget: &mut Budget) -> Vec<Denial> {
    let mut out = Vec::new();
    // With a proxy, every refusal is known exactly (the proxy's own
    // denials); a job's words about the network would only add forgeries.
    if spec.network != NetMode::Host && spec.network != NetMode::Proxy {
        if let Some(error) = NET_ERRORS.iter().find(|e| line.contains(*e)) {
            let host = host_in(line);
            let allow = match &host {
                Some(h) if !crate::sandbox::net_rules::names_private_address(h) => {
                    format!("--allow-domain {h}")
                }
                _ => "--allow-domain HOST".to_string(),
            };
            let hint = format!(
                "the job's network is {} (no route out): {allow} reaches that host through a \
                 proxy; --net host opens the host's network",
                spec.network
            );
            out.push(Denial {
                kind: "network".into(),
                target: host.unwrap_or_else(|| "the network".to_string()),
                error: (*error).to_string(),
                hint,
            });
        }
    }
    if !spec.landlock {
        return out;
    }
    let Some(error) = FS_ERRORS.iter().find(|e| line.contains(*e)) else {
        return out;
    };
    let mut paths = paths_in(line);
    if let Some(relative) = relative_path_before(line, error) {
        paths.push(cwd.join(relative));
    }
    for path in paths {
        if budget.spent() {
            break;
        }
        let text = path.as_os_str().len();
        if text > MAX_PATH_LEN || NOT_LOOKED_AT.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        budget.paths -= 1;
        if let Some(hint) = fs_hint(&path, error, spec) {
            out.push(Denial {
                kind: "filesystem".into(),
                target: path.display().to_string(),
                error: (*error).to_string(),
                hint,
            });
        }
    }
    out
}

/// What would allow `path`, if the policy is why `error` happened.
fn fs_hint(path: &Path, error: &str, spec: &SandboxSpec) -> Option<String> {
    let under = |list: &[PathBuf]| list.iter().any(|g| path.starts_with(g));
    // Only a path that is there on the host can be one the sandbox hid; a
    // file that could not be made is judged by its directory.
    let real = match path.canonicalize() {
        Ok(real) => real,
        Err(_) if error != "No such file or directory" => path.parent()?.canonicalize().ok()?,
        Err(_) => return None,
    };
    if spec.deny.iter().any(|d| real.starts_with(d)) {
        // No flag offered: what a job prints is the job's to choose, and a
        // hint to show a credential would be advice to hand it over.
        return Some(
            "filesystem.deny hides it: the policy keeps it from jobs on purpose (a \
             credential or a history); a policy of your own can grant it"
                .into(),
        );
    }
    let readable = under(&spec.read) || under(&spec.write) || under(&spec.exec);
    if !readable {
        return Some(format!(
            "--allow-read {} (outside what the policy grants)",
            real.display()
        ));
    }
    if error == "No such file or directory" {
        return None;
    }
    let file = std::fs::metadata(&real).ok()?;
    let executable =
        file.is_file() && std::os::unix::fs::PermissionsExt::mode(&file.permissions()) & 0o111 != 0;
    if error == "Permission denied" && executable && !under(&spec.exec) {
        return Some(format!(
            "--allow-exec {} (not executable in this policy)",
            real.display()
        ));
    }
    let in_read_only = spec.read_only.iter().any(|r| real.starts_with(r));
    if !under(&spec.write) || in_read_only {
        let key = if in_read_only {
            "filesystem.read_only keeps it read-only"
        } else {
            "read-only in this policy"
        };
        return Some(format!("--allow-write {} ({key})", real.display()));
    }
    None
}

/// Absolute paths in a line of an error message.
fn paths_in(line: &str) -> Vec<PathBuf> {
    line.split(|c: char| c.is_whitespace() || "'\"`‘’“”(),;".contains(c))
        .map(|w| w.trim_end_matches([':', '.']))
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .map(PathBuf::from)
        .collect()
}

/// The relative path of `prog: PATH: error` (`cat: secret.env: Permission
/// denied`), as programs name what they were given: taken as relative to
/// the job's working directory (a job that changed directory first is
/// judged at the wrong place, and then most likely not at all).
fn relative_path_before(line: &str, error: &str) -> Option<PathBuf> {
    let before = line[..line.find(error)?].trim_end().strip_suffix(':')?;
    // `prog: PATH`: a lone word before the error is the program's name.
    let (_, segment) = before.rsplit_once(": ")?;
    // `cannot touch 'out/a.txt'`: the quoted last word.
    let quoted = segment.ends_with(['\'', '’', '"']);
    let word = match segment.rsplit_once(char::is_whitespace) {
        Some((_, last)) if quoted => last,
        _ => segment,
    }
    .trim_matches(['\'', '"', '`', '‘', '’']);
    let plain = !word.is_empty()
        && !word.starts_with(['/', '-'])
        && !word.contains(char::is_whitespace)
        && !word.split('/').any(|c| c == "..");
    plain.then(|| PathBuf::from(word))
}

/// The host name a resolver error names, when it names one that is a
/// host name (the job writes these lines: anything else would put its
/// words into the caller's advice).
fn host_in(line: &str) -> Option<String> {
    let host = named_host(line)?;
    let plain = crate::sandbox::net_rules::name_problem(&host).is_none()
        || host.parse::<std::net::IpAddr>().is_ok();
    plain.then_some(host)
}

fn named_host(line: &str) -> Option<String> {
    for marker in [
        "Could not resolve host: ",
        "getaddrinfo ENOTFOUND ",
        "getaddrinfo EAI_AGAIN ",
    ] {
        if let Some(rest) = line.split(marker).nth(1) {
            let host: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || ".-".contains(*c))
                .collect();
            if !host.is_empty() {
                return Some(host);
            }
        }
    }
    // Python: "... host='pypi.org', port=443 ..."
    let rest = line.split("host='").nth(1)?;
    let host: String = rest.chars().take_while(|c| *c != '\'').collect();
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_cannot_make_the_scan_look_at_everything() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let line = format!(
            "x: Permission denied {}\n",
            format!("{} ", file.display()).repeat(5000)
        );
        let log = dir.path().join("stderr.log");
        std::fs::write(&log, line.repeat(50)).unwrap();
        let none = dir.path().join("none");
        let policy =
            crate::policy::resolve("default", &crate::policy::PolicySources::new(&none, &none))
                .unwrap();
        let vars = crate::policy::PathVars {
            cwd: "/nonexistent/app".into(),
            home: "/nonexistent/home".into(),
            job_dir: "/nonexistent/j".into(),
            tmpdir: "/nonexistent/t".into(),
        };
        let fs = policy.expand_paths(&vars).unwrap();
        let spec = policy.sandbox_spec(fs, vars.tmpdir, vars.job_dir);
        let started = std::time::Instant::now();
        let found = find(&log, &spec, Path::new("/nonexistent/app"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(found.len(), 1, "one target, reported once");
    }

    #[test]
    fn paths_and_hosts_are_found_in_error_lines() {
        assert_eq!(
            paths_in("cat: /srv/data/x.txt: No such file or directory"),
            [PathBuf::from("/srv/data/x.txt")]
        );
        assert_eq!(
            paths_in("touch: cannot touch '/work/a b': Permission denied"),
            [PathBuf::from("/work/a")]
        );
        for (line, path) in [
            ("cat: secret.env: Permission denied", Some("secret.env")),
            (
                "touch: cannot touch 'out/a.txt': Read-only file system",
                Some("out/a.txt"),
            ),
            ("sh: 1: ./build.sh: Permission denied", Some("./build.sh")),
            ("error: Permission denied", None),
            ("cat: ../x: Permission denied", None),
            ("cat: a b: Permission denied", None),
        ] {
            let error = FS_ERRORS.iter().find(|e| line.contains(*e)).unwrap();
            assert_eq!(
                relative_path_before(line, error),
                path.map(PathBuf::from),
                "{line}"
            );
        }
        assert_eq!(
            host_in("curl: (6) Could not resolve host: pypi.org"),
            Some("pypi.org".into())
        );
        assert_eq!(
            host_in("HTTPSConnectionPool(host='files.pythonhosted.org', port=443)"),
            Some("files.pythonhosted.org".into())
        );
        assert_eq!(host_in("Temporary failure in name resolution"), None);
    }
}

//! One policy file, read into a patch: the values it sets, where it set
//! them, and how they merge onto the policy it extends.
//!
//! Merge rules: scalars and lists set in the file replace the inherited
//! value; `env.set` merges key by key; `description` is never inherited.
//! Setting `filesystem.landlock = false` clears inherited read/write/exec
//! lists, and setting `network.mode` resets inherited port lists to "any",
//! because those lists only make sense with the setting they came with.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::error::PolicyError;
use super::model::{CgroupNeed, Enforcement, NetMode, Policy, SeccompProfile};
use super::paths::check_template;
use super::reader::{Doc, Item, Section};

/// Field path → span of the value that set it, for pointing conflicts at
/// the line that caused them.
pub(crate) type Spans = BTreeMap<String, Range<usize>>;

/// What one file sets.
#[derive(Debug, Default)]
pub(crate) struct PolicyFile {
    pub extends: Option<(String, Range<usize>)>,
    pub description: Option<String>,
    pub enforcement: Option<Enforcement>,
    pub cgroup: Option<CgroupNeed>,
    pub limits: LimitsPatch,
    pub filesystem: FilesystemPatch,
    pub network: NetworkPatch,
    pub namespaces: NamespacesPatch,
    pub env: EnvPatch,
    pub seccomp: SeccompPatch,
    pub overrides: [Option<bool>; 8],
    pub spans: Spans,
}

/// Outer `Option`: set in this file; inner: `"none"` (no limit).
#[derive(Debug, Default)]
pub(crate) struct LimitsPatch {
    pub timeout: Option<Option<Duration>>,
    pub kill_after: Option<Option<Duration>>,
    pub memory: Option<Option<u64>>,
    pub pids: Option<Option<u64>>,
    pub cpu: Option<Option<f64>>,
    pub file_size: Option<Option<u64>>,
    pub open_files: Option<Option<u64>>,
    pub output_bytes: Option<u64>,
    pub disk: Option<Option<u64>>,
}

#[derive(Debug, Default)]
pub(crate) struct FilesystemPatch {
    pub landlock: Option<bool>,
    pub read: Option<Vec<PathBuf>>,
    pub write: Option<Vec<PathBuf>>,
    pub exec: Option<Vec<PathBuf>>,
    pub tmpfs: Option<Vec<PathBuf>>,
    pub deny: Option<Vec<PathBuf>>,
    pub read_only: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default)]
pub(crate) struct NetworkPatch {
    pub mode: Option<NetMode>,
    pub connect_ports: Option<Option<Vec<u16>>>,
    pub bind_ports: Option<Option<Vec<u16>>>,
    pub allow_domains: Option<Vec<String>>,
    pub deny_domains: Option<Vec<String>>,
    pub hosts: BTreeMap<String, std::net::IpAddr>,
}

#[derive(Debug, Default)]
pub(crate) struct NamespacesPatch {
    pub flags: [Option<bool>; 6],
    pub hostname: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct EnvPatch {
    pub inherit: Option<bool>,
    pub allow: Option<Vec<String>>,
    pub set: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub(crate) struct SeccompPatch {
    pub profile: Option<SeccompProfile>,
    pub deny: Option<Vec<String>>,
}

const TOP_KEYS: &[&str] = &[
    "description",
    "enforcement",
    "cgroup",
    "extends",
    "limits",
    "filesystem",
    "network",
    "namespaces",
    "env",
    "seccomp",
    "overrides",
];
const LIMIT_KEYS: &[&str] = &[
    "timeout",
    "kill_after",
    "memory",
    "pids",
    "cpu",
    "file_size",
    "open_files",
    "output_bytes",
    "disk",
];
const FS_KEYS: &[&str] = &[
    "landlock",
    "read",
    "write",
    "exec",
    "tmpfs",
    "deny",
    "read_only",
];
const NET_KEYS: &[&str] = &[
    "mode",
    "connect_ports",
    "bind_ports",
    "allow_domains",
    "deny_domains",
    "hosts",
];
pub(crate) const NS_FLAGS: [&str; 6] = ["user", "pid", "mount", "ipc", "uts", "cgroup"];
const ENV_KEYS: &[&str] = &["inherit", "allow", "set"];
const SECCOMP_KEYS: &[&str] = &["profile", "deny"];
pub(crate) const OVERRIDE_KEYS: [&str; 8] = [
    "allow_read",
    "allow_write",
    "allow_exec",
    "net",
    "memory",
    "pids",
    "cpus",
    "timeout",
];

/// Reads `key` of `sec` with `f` and records where it was set.
fn read<'d, 'a, T>(
    sec: &Section<'d, 'a>,
    key: &str,
    spans: &mut Spans,
    f: impl FnOnce(&Item<'d, 'a>) -> Result<T, PolicyError>,
) -> Result<Option<T>, PolicyError> {
    let Some(item) = sec.get(key) else {
        return Ok(None);
    };
    let value = f(&item)?;
    spans.insert(item.field.clone(), item.span());
    Ok(Some(value))
}

/// Parses and checks one policy file on its own (no merge yet).
pub(crate) fn parse_policy(doc: &Doc<'_>) -> Result<PolicyFile, PolicyError> {
    let root = doc.parse()?;
    let top = Section::root(doc, root.get_ref());
    top.deny_unknown(TOP_KEYS)?;
    let mut file = PolicyFile::default();
    let spans = &mut file.spans;

    file.extends = read(&top, "extends", spans, |i| {
        let name = i.str()?;
        if name.is_empty() {
            return Err(i.bad_value("extends must name a policy"));
        }
        Ok((name.to_string(), i.span()))
    })?;
    file.description = read(&top, "description", spans, |i| Ok(i.str()?.to_string()))?;
    file.enforcement = read(&top, "enforcement", spans, |i| {
        Ok(match i.choice(&["strict", "best_effort"])?.as_str() {
            "strict" => Enforcement::Strict,
            _ => Enforcement::BestEffort,
        })
    })?;
    file.cgroup = read(&top, "cgroup", spans, |i| {
        Ok(match i.choice(&["required", "optional"])?.as_str() {
            "optional" => CgroupNeed::Optional,
            _ => CgroupNeed::Required,
        })
    })?;

    if let Some(sec) = top.section("limits")? {
        sec.deny_unknown(LIMIT_KEYS)?;
        let l = &mut file.limits;
        l.timeout = read(&sec, "timeout", spans, |i| i.duration(true, false))?;
        l.kill_after = read(&sec, "kill_after", spans, |i| i.duration(true, true))?;
        l.memory = read(&sec, "memory", spans, |i| i.size(true))?;
        l.pids = read(&sec, "pids", spans, |i| i.count(true))?;
        l.cpu = read(&sec, "cpu", spans, |i| i.positive_float(true))?;
        l.file_size = read(&sec, "file_size", spans, |i| i.size(true))?;
        l.open_files = read(&sec, "open_files", spans, |i| i.count(true))?;
        l.output_bytes = read(&sec, "output_bytes", spans, |i| i.size(false))?.flatten();
        l.disk = read(&sec, "disk", spans, |i| i.size(true))?;
    }

    if let Some(sec) = top.section("filesystem")? {
        sec.deny_unknown(FS_KEYS)?;
        let f = &mut file.filesystem;
        f.landlock = read(&sec, "landlock", spans, Item::bool)?;
        f.read = read(&sec, "read", spans, paths)?;
        f.write = read(&sec, "write", spans, paths)?;
        f.exec = read(&sec, "exec", spans, paths)?;
        f.tmpfs = read(&sec, "tmpfs", spans, paths)?;
        f.deny = read(&sec, "deny", spans, paths)?;
        f.read_only = read(&sec, "read_only", spans, paths)?;
    }

    if let Some(sec) = top.section("network")? {
        sec.deny_unknown(NET_KEYS)?;
        let n = &mut file.network;
        n.mode = read(&sec, "mode", spans, |i| {
            let mode = i.choice(&["none", "loopback", "proxy", "host"])?;
            mode.parse::<NetMode>()
                .map_err(|e| i.bad_value(e.to_string()))
        })?;
        n.connect_ports = read(&sec, "connect_ports", spans, ports)?;
        n.bind_ports = read(&sec, "bind_ports", spans, ports)?;
        n.allow_domains = read(&sec, "allow_domains", spans, domains)?;
        n.deny_domains = read(&sec, "deny_domains", spans, domains)?;
        if let Some(hosts) = sec.section("hosts")? {
            for (name, name_span, item) in hosts.entries() {
                let key = crate::sandbox::net_rules::normalise(name);
                if let Some(why) = crate::sandbox::net_rules::name_problem(&key) {
                    return Err(doc.error(
                        &name_span,
                        &item.field,
                        super::error::PolicyErrorKind::BadValue,
                        format!("network.hosts: {name:?} is not a host name: {why}"),
                    ));
                }
                let ip = item
                    .str()?
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| item.bad_value(format!("{} must be an IP address", item.field)))?;
                let unspecified = match ip {
                    std::net::IpAddr::V6(v6) => {
                        v6.is_unspecified()
                            || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified())
                    }
                    v4 => v4.is_unspecified(),
                };
                if unspecified {
                    return Err(item.bad_value(format!(
                        "{}: the unspecified address reaches this host itself, never allowed",
                        item.field
                    )));
                }
                n.hosts.insert(key, ip);
                spans.insert(item.field.clone(), item.span());
            }
        }
    }

    if let Some(sec) = top.section("namespaces")? {
        let mut known = NS_FLAGS.to_vec();
        known.push("hostname");
        sec.deny_unknown(&known)?;
        for (slot, key) in file.namespaces.flags.iter_mut().zip(NS_FLAGS) {
            *slot = read(&sec, key, spans, Item::bool)?;
        }
        file.namespaces.hostname = read(&sec, "hostname", spans, hostname)?;
    }

    if let Some(sec) = top.section("env")? {
        sec.deny_unknown(ENV_KEYS)?;
        file.env.inherit = read(&sec, "inherit", spans, Item::bool)?;
        file.env.allow = read(&sec, "allow", spans, env_patterns)?;
        if let Some(set) = sec.section("set")? {
            for (key, key_span, item) in set.entries() {
                if let Err(why) = env_name_problem(key) {
                    return Err(doc.error(
                        &key_span,
                        &item.field,
                        super::error::PolicyErrorKind::BadValue,
                        format!("env.set: {key:?} is not a valid variable name: {why}"),
                    ));
                }
                let value = item.str()?;
                if value.contains('\0') {
                    return Err(
                        item.bad_value(format!("{} must not contain a NUL byte", item.field))
                    );
                }
                file.env.set.insert(key.to_string(), value.to_string());
                spans.insert(item.field.clone(), item.span());
            }
        }
    }

    if let Some(sec) = top.section("seccomp")? {
        sec.deny_unknown(SECCOMP_KEYS)?;
        file.seccomp.profile = read(&sec, "profile", spans, |i| {
            Ok(match i.choice(&["default", "strict", "none"])?.as_str() {
                "default" => SeccompProfile::Default,
                "strict" => SeccompProfile::Strict,
                _ => SeccompProfile::None,
            })
        })?;
        file.seccomp.deny = read(&sec, "deny", spans, syscalls)?;
    }

    if let Some(sec) = top.section("overrides")? {
        sec.deny_unknown(&OVERRIDE_KEYS)?;
        for (slot, key) in file.overrides.iter_mut().zip(OVERRIDE_KEYS) {
            *slot = read(&sec, key, spans, Item::bool)?;
        }
    }
    Ok(file)
}

fn paths(item: &Item<'_, '_>) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for element in item.array()? {
        let path = check_template(&element.field, element.str()?)
            .map_err(|message| element.bad_value(message))?;
        if !out.contains(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

/// `"any"` or a list of TCP ports.
fn ports(item: &Item<'_, '_>) -> Result<Option<Vec<u16>>, PolicyError> {
    if item.value.get_ref().as_str() == Some("any") {
        return Ok(None);
    }
    if item.value.get_ref().as_array().is_none() {
        return Err(item.wrong_type("an array of TCP ports or \"any\""));
    }
    let mut out = Vec::new();
    for element in item.array()? {
        let n = element
            .count(false)?
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                element.bad_value(format!("{} must be a port from 1 to 65535", element.field))
            })?;
        out.push(n);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// Host patterns of `allow_domains` / `deny_domains`, lower case.
fn domains(item: &Item<'_, '_>) -> Result<Vec<String>, PolicyError> {
    let mut out = Vec::new();
    for element in item.array()? {
        let pattern = crate::sandbox::net_rules::normalise_pattern(element.str()?);
        if let Some(why) = crate::sandbox::net_rules::pattern_problem(&pattern) {
            return Err(element.bad_value(format!("{}: {why}", element.field)));
        }
        if !out.contains(&pattern) {
            out.push(pattern);
        }
    }
    Ok(out)
}

fn hostname(item: &Item<'_, '_>) -> Result<String, PolicyError> {
    let name = item.str()?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(name.to_string())
    } else {
        Err(item.bad_value(format!(
            "{} must be 1 to 64 letters, digits, '-' or '.', found {name:?}",
            item.field
        )))
    }
}

/// Why `name` cannot be an environment variable name, if it cannot.
fn env_name_problem(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("it is empty")
    } else if name.contains(['=', '\0']) {
        Err("it contains '=' or a NUL byte")
    } else if name.contains('*') {
        Err("it contains '*'")
    } else {
        Ok(())
    }
}

fn env_patterns(item: &Item<'_, '_>) -> Result<Vec<String>, PolicyError> {
    let mut out = Vec::new();
    for element in item.array()? {
        let pattern = element.str()?;
        let stem = pattern.strip_suffix('*').unwrap_or(pattern);
        let problem = if pattern == "*" {
            Ok(())
        } else {
            env_name_problem(stem)
        };
        if let Err(why) = problem {
            return Err(element.bad_value(format!(
                "{}: {pattern:?} is not a variable name or a prefix ending in '*': {why}",
                element.field
            )));
        }
        if !out.iter().any(|p| p == pattern) {
            out.push(pattern.to_string());
        }
    }
    Ok(out)
}

fn syscalls(item: &Item<'_, '_>) -> Result<Vec<String>, PolicyError> {
    let mut out = Vec::new();
    for element in item.array()? {
        let name = element.str()?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(element.bad_value(format!(
                "{}: {name:?} is not a syscall name (lowercase letters, digits, '_')",
                element.field
            )));
        }
        if !out.iter().any(|s| s == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

impl PolicyFile {
    /// The file's settings laid over `base` (see the module doc for the
    /// rules). Name, source and chain are the caller's to set.
    pub(crate) fn apply(&self, mut p: Policy) -> Policy {
        p.description = self.description.clone().unwrap_or_default();
        if let Some(e) = self.enforcement {
            p.enforcement = e;
        }
        if let Some(c) = self.cgroup {
            p.cgroup = c;
        }

        let l = &self.limits;
        let pl = &mut p.limits;
        set(&mut pl.timeout, l.timeout);
        set(&mut pl.kill_after, l.kill_after);
        set(&mut pl.memory, l.memory);
        set(&mut pl.pids, l.pids);
        set(&mut pl.cpu, l.cpu);
        set(&mut pl.file_size, l.file_size);
        set(&mut pl.open_files, l.open_files);
        set(&mut pl.output_bytes, l.output_bytes);
        set(&mut pl.disk, l.disk);

        let f = &self.filesystem;
        let pf = &mut p.filesystem;
        if f.landlock == Some(false) {
            pf.read.clear();
            pf.write.clear();
            pf.exec.clear();
            // No view of its own: nothing to hide or protect inside it.
            pf.deny.clear();
            pf.read_only.clear();
        }
        set(&mut pf.landlock, f.landlock);
        set(&mut pf.read, f.read.clone());
        set(&mut pf.write, f.write.clone());
        set(&mut pf.exec, f.exec.clone());
        set(&mut pf.tmpfs, f.tmpfs.clone());
        set(&mut pf.deny, f.deny.clone());
        set(&mut pf.read_only, f.read_only.clone());

        let n = &self.network;
        if n.mode.is_some() {
            p.network.connect_ports = None;
            p.network.bind_ports = None;
        }
        set(&mut p.network.mode, n.mode);
        set(&mut p.network.connect_ports, n.connect_ports.clone());
        set(&mut p.network.bind_ports, n.bind_ports.clone());
        set(&mut p.network.allow_domains, n.allow_domains.clone());
        set(&mut p.network.deny_domains, n.deny_domains.clone());
        for (name, ip) in &n.hosts {
            p.network.hosts.insert(name.clone(), *ip);
        }

        let ns = &mut p.namespaces;
        let flags = [
            &mut ns.user,
            &mut ns.pid,
            &mut ns.mount,
            &mut ns.ipc,
            &mut ns.uts,
            &mut ns.cgroup,
        ];
        for (slot, value) in flags.into_iter().zip(self.namespaces.flags) {
            set(slot, value);
        }
        if let Some(h) = &self.namespaces.hostname {
            ns.hostname = Some(h.clone());
        }

        set(&mut p.env.inherit, self.env.inherit);
        set(&mut p.env.allow, self.env.allow.clone());
        for (k, v) in &self.env.set {
            p.env.set.insert(k.clone(), v.clone());
        }

        set(&mut p.seccomp.profile, self.seccomp.profile);
        set(&mut p.seccomp.deny, self.seccomp.deny.clone());

        let o = &mut p.overrides;
        let slots = [
            &mut o.allow_read,
            &mut o.allow_write,
            &mut o.allow_exec,
            &mut o.net,
            &mut o.memory,
            &mut o.pids,
            &mut o.cpus,
            &mut o.timeout,
        ];
        for (slot, value) in slots.into_iter().zip(self.overrides) {
            set(slot, value);
        }
        p
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

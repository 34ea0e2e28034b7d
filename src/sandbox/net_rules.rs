//! Which hosts a job in `network.mode = "proxy"` may reach: the policy's
//! `allow_domains` / `deny_domains` and its `hosts` map, as the proxy
//! judges each destination a job asks for.
//!
//! A destination is a host and a port. The host is judged by name first,
//! and what it resolves to is judged again: a public name that resolves to
//! the host's own addresses or to a private network (DNS rebinding, or
//! simply an internal name) is refused unless the policy itself said where
//! the name goes (`hosts`) or listed that very address. The job never
//! reaches the host's own services by asking the proxy for them. A pattern
//! without a port allows the web's ports only (80 and 443): a name that
//! `hosts` maps to an address of the host must not open all of its ports.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The port of the job's `127.0.0.1` its proxy listens on (HTTP and
/// SOCKS5 alike): squid's, which tools know as a proxy's.
pub const PROXY_PORT: u16 = 3128;

/// The ports a pattern without one allows.
pub const WEB_PORTS: [u16; 2] = [80, 443];

/// The destinations of a proxied job, as the policy names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyRules {
    /// Host patterns the job may reach: `example.com`, `*.example.com`
    /// (any name below it, not itself), `*` (any public host) or an IP
    /// address, each optionally with `:PORT` or `:*` (without: 80 and 443).
    pub allow_domains: Vec<String>,
    /// Host patterns refused even where `allow_domains` matches; here
    /// `*.example.com` covers `example.com` too, and an address is refused
    /// however it is reached (a name that resolves to it included).
    #[serde(default)]
    pub deny_domains: Vec<String>,
    /// Names the proxy resolves to a fixed address instead of asking DNS
    /// (as `/etc/hosts` would); such an address is trusted even when it is
    /// the host's loopback or a private network.
    #[serde(default)]
    pub hosts: BTreeMap<String, IpAddr>,
    /// `network.connect_ports`: when set, the only destination ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<u16>>,
    /// Patterns added on the command line (`--allow-domain`): they reach
    /// public addresses only. What lies at an address of the host or of a
    /// private network is opened by a policy file, never by a flag an
    /// agent passes because a job asked for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_domains: Vec<String>,
}

/// What allowed a destination by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// A pattern of a policy file naming this very host (no wildcard) and
    /// allowing this port: only such a grant reaches a private address.
    pub exact: bool,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny_domains` pattern matches the name or its address.
    Denied(String),
    /// No `allow_domains` pattern matches the name.
    NotAllowed,
    /// The name is allowed, but not on this port.
    Port(u16),
    /// The name is not a host name or address (or is an address in a
    /// notation only the C library reads, such as `2130706433`).
    BadName,
    /// The address is the host's own, unspecified, loopback, private,
    /// shared or link-local, and the policy does not name it.
    PrivateAddress(IpAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Denied(p) => write!(f, "denied by network.deny_domains ({p})"),
            Refusal::NotAllowed => f.write_str("not in network.allow_domains"),
            Refusal::Port(p) => write!(
                f,
                "port {p} is not allowed for this host (a pattern without a port allows 80 and 443)"
            ),
            Refusal::BadName => f.write_str("not a host name or address"),
            Refusal::PrivateAddress(ip) => write!(
                f,
                "{ip} is an address of this host, or a loopback, private or link-local one, \
                 which the proxy reaches only where a policy file names it"
            ),
        }
    }
}

/// Longest host name accepted (DNS allows 253).
const MAX_NAME: usize = 253;

/// Which ports a pattern allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    Web,
    One(u16),
    Any,
}

impl Ports {
    fn allow(self, port: u16) -> bool {
        match self {
            Ports::Web => WEB_PORTS.contains(&port),
            Ports::One(p) => p == port,
            Ports::Any => true,
        }
    }
}

/// A pattern split into its host part and its ports.
fn split_pattern(pattern: &str) -> Option<(&str, Ports)> {
    if pattern.parse::<IpAddr>().is_ok() {
        return Some((pattern, Ports::Web));
    }
    if let Some(rest) = pattern.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let ports = match after {
            "" => Ports::Web,
            _ => port_spec(after.strip_prefix(':')?)?,
        };
        return Some((host, ports));
    }
    match pattern.rsplit_once(':') {
        Some((host, spec)) => Some((host, port_spec(spec)?)),
        None => Some((pattern, Ports::Web)),
    }
}

fn port_spec(spec: &str) -> Option<Ports> {
    if spec == "*" {
        return Some(Ports::Any);
    }
    spec.parse::<u16>().ok().filter(|p| *p != 0).map(Ports::One)
}

/// What is wrong with `pattern` as an `allow_domains` / `deny_domains`
/// entry, if anything.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    let expected = "expected example.com, *.example.com, *, or an IP address, each optionally with :PORT or :*";
    let Some((host, _)) = split_pattern(pattern) else {
        return Some(format!("{pattern:?} is not a host pattern: {expected}"));
    };
    if host == "*" {
        return None;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if canonical(ip).is_unspecified() {
            return Some(format!(
                "{pattern:?}: the unspecified address reaches this host itself, never allowed"
            ));
        }
        return None;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    let why = name_problem(name)
        .or_else(|| legacy_number(name).then_some("an address in a legacy notation"))?;
    Some(format!(
        "{pattern:?} is not a host pattern ({why}); {expected}"
    ))
}

/// Whether `pattern` names an address that only a policy file may open:
/// the host's loopback, a private, link-local or shared network.
pub fn names_private_address(pattern: &str) -> bool {
    split_pattern(pattern)
        .and_then(|(host, _)| host.parse::<IpAddr>().ok())
        .is_some_and(|ip| !is_public(ip))
}

/// What is wrong with `name` as a host name, if anything.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some("empty or longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Some("a label is empty or longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Some("only letters, digits, '-', '_' and '.' (IDNs in their xn-- form)");
        }
    }
    None
}

/// Whether the C library's resolver would read `name` as an address
/// (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) where Rust reads a
/// name: such a name is refused, since it names an address without being
/// judged as one.
fn legacy_number(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: in_addr is plain data; inet_aton reads a NUL-terminated string.
    let mut out: libc::in_addr = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `out` outlives the call.
    let parsed = unsafe { inet_aton(c.as_ptr(), &mut out) } != 0;
    parsed && name.parse::<IpAddr>().is_err()
}

extern "C" {
    fn inet_aton(cp: *const libc::c_char, inp: *mut libc::in_addr) -> libc::c_int;
}

/// A destination as the job named it, normalised: lower case, no trailing
/// dot, an IPv6 address without brackets.
pub fn normalise(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // One spelling per address (`::ffff:5db8:d70e` is `93.184.215.14`), so
    // that the record cannot be flooded with one address's many names.
    match host.parse::<IpAddr>() {
        Ok(ip) => canonical(ip).to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// A pattern normalised: lower case, no trailing dot on its host part.
pub fn normalise_pattern(pattern: &str) -> String {
    let lower = pattern.to_ascii_lowercase();
    match split_pattern(&lower) {
        Some((host, _)) if host.ends_with('.') => {
            let trimmed = host.trim_end_matches('.');
            lower.replacen(host, trimmed, 1)
        }
        _ => lower,
    }
}

/// A host as the job wrote it, safe to show: a host name or address as
/// it is (at most 253 characters), anything else as `(not a host name)`,
/// so that what a job asks for can neither bloat its record, nor hide
/// where bytes went behind a cut, nor speak in it.
pub fn shown(host: &str) -> String {
    if host.parse::<IpAddr>().is_ok() || name_problem(host).is_none() {
        host.to_string()
    } else {
        "(not a host name)".to_string()
    }
}

fn host_matches(pattern_host: &str, host: &str, apex_too: bool) -> bool {
    if pattern_host == "*" {
        return true;
    }
    if let Some(suffix) = pattern_host.strip_prefix("*.") {
        let below = host.len() > suffix.len() + 1
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
        return below || (apex_too && host.eq_ignore_ascii_case(suffix));
    }
    if let (Ok(a), Ok(b)) = (pattern_host.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    pattern_host.eq_ignore_ascii_case(host)
}

impl ProxyRules {
    /// Whether the job may ask for `host` (normalised) on `port`, judged
    /// by name (an address given as the host is judged by
    /// [`Self::judge_address`] too), and by which kind of pattern.
    pub fn judge_name(&self, host: &str, port: u16) -> Result<Grant, Refusal> {
        let literal = host.parse::<IpAddr>().ok();
        if literal.is_none() && (name_problem(host).is_some() || legacy_number(host)) {
            return Err(Refusal::BadName);
        }
        if let Some(ip) = literal {
            if canonical(ip).is_unspecified() {
                return Err(Refusal::PrivateAddress(ip));
            }
        }
        for p in &self.deny_domains {
            if let Some((h, ports)) = split_pattern(p) {
                if host_matches(h, host, true) && (ports == Ports::Web || ports.allow(port)) {
                    return Err(Refusal::Denied(p.clone()));
                }
            }
        }
        let port_ok = |ports: Ports| {
            ports.allow(port) && self.ports.as_ref().is_none_or(|list| list.contains(&port))
        };
        let mut by_name = false;
        let mut grant: Option<Grant> = None;
        let policy = self.allow_domains.iter().map(|p| (p, true));
        let added = self.added_domains.iter().map(|p| (p, false));
        for (p, from_policy) in policy.chain(added) {
            let Some((h, ports)) = split_pattern(p) else {
                continue;
            };
            if !host_matches(h, host, false) {
                continue;
            }
            by_name = true;
            if port_ok(ports) {
                let exact = from_policy && !h.starts_with('*');
                grant = Some(Grant {
                    exact: exact || grant.is_some_and(|g| g.exact),
                });
            }
        }
        let Some(grant) = grant else {
            // An address of the host or a private network: no flag opens
            // it, so the refusal must not read as if one would.
            if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
                return Err(Refusal::PrivateAddress(ip));
            }
            return Err(if by_name {
                Refusal::Port(port)
            } else {
                Refusal::NotAllowed
            });
        };
        // An address of the host or a private network, asked for as such:
        // only a policy file's pattern naming it (and the port) opens it.
        if let Some(ip) = literal {
            if !is_public(ip) && !grant.exact {
                return Err(Refusal::PrivateAddress(ip));
            }
        }
        Ok(grant)
    }

    /// The address the policy fixes for `host`, if any.
    pub fn fixed_address(&self, host: &str) -> Option<IpAddr> {
        self.hosts
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, ip)| *ip)
    }

    /// Whether the job may reach `ip`, which `host` (allowed by name with
    /// `grant`) resolved to, is mapped to by `hosts`, or is itself. An
    /// address of the host itself, its loopback or a private network needs
    /// an exact grant of a policy file.
    pub fn judge_address(&self, ip: IpAddr, grant: Grant) -> Result<(), Refusal> {
        if let Some(p) = self
            .deny_domains
            .iter()
            .find(|p| pattern_address(p) == Some(canonical(ip)))
        {
            return Err(Refusal::Denied(p.clone()));
        }
        if canonical(ip).is_unspecified() {
            return Err(Refusal::PrivateAddress(ip));
        }
        if (is_public(ip) && !is_local(ip)) || grant.exact {
            return Ok(());
        }
        Err(Refusal::PrivateAddress(ip))
    }
}

/// Whether `ip` is an address of this host: one of its interfaces', or
/// one a local route makes its own (a socket can be bound to it). Where the
/// host lets any address be bound (`ip_nonlocal_bind`), every address looks
/// local, and is refused: the check fails closed.
pub fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    std::net::UdpSocket::bind((ip, 0)).is_ok() || local_addresses().contains(&ip)
}

/// The address a pattern names, if it names one.
fn pattern_address(pattern: &str) -> Option<IpAddr> {
    split_pattern(pattern)
        .and_then(|(h, _)| h.parse::<IpAddr>().ok())
        .map(canonical)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of the host's own interfaces (a service bound to all of
/// them answers on each).
pub fn local_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let sa = a.address?;
            if let Some(v4) = sa.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            sa.as_sockaddr_in6()
                .map(|v6| canonical(IpAddr::V6(v6.ip())))
        })
        .collect()
}

/// Whether `ip` is an address of the public internet: not the host's
/// loopback, not unspecified, not a private, shared, link-local,
/// multicast, documentation or reserved range.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
        || s[0] == 0x2002 // 6to4: likewise
        || (s[0] == 0x100 && s[1..4] == [0, 0, 0]) // discard-only
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0..6] == [0, 0, 0, 0, 0, 0])) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> ProxyRules {
        ProxyRules {
            allow_domains: allow.iter().map(|s| s.to_string()).collect(),
            deny_domains: deny.iter().map(|s| s.to_string()).collect(),
            ..ProxyRules::default()
        }
    }

    const LOOSE: Grant = Grant { exact: false };

    #[test]
    fn wildcards_match_below_a_label_boundary_only() {
        let r = rules(&["*.example.com", "pypi.org"], &["evil.example.com"]);
        assert!(r.judge_name("a.example.com", 443).is_ok());
        assert!(r.judge_name("a.b.example.com", 80).is_ok());
        assert_eq!(r.judge_name("example.com", 443), Err(Refusal::NotAllowed));
        assert_eq!(
            r.judge_name("badexample.com", 443),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            r.judge_name("pypi.org.evil.net", 443),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(r.judge_name("xpypi.org", 443), Err(Refusal::NotAllowed));
        assert!(matches!(
            r.judge_name("evil.example.com", 443),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(r.judge_name("a b", 443), Err(Refusal::BadName));
        assert_eq!(r.judge_name("a/b.example.com", 443), Err(Refusal::BadName));
        assert_eq!(r.judge_name("pypi.org", 443), Ok(Grant { exact: true }));
        assert_eq!(r.judge_name("a.example.com", 443), Ok(LOOSE));
        assert_eq!(normalise("PyPI.org."), "pypi.org");
        assert_eq!(normalise("[::1]"), "::1");
        assert_eq!(normalise_pattern("PyPI.org.:8443"), "pypi.org:8443");
    }

    #[test]
    fn ports_are_the_webs_unless_the_pattern_names_them() {
        let r = rules(
            &["web.test", "api.test:8443", "any.test:*"],
            &["any.test:22"],
        );
        assert!(r.judge_name("web.test", 443).is_ok());
        assert!(r.judge_name("web.test", 80).is_ok());
        assert_eq!(r.judge_name("web.test", 22), Err(Refusal::Port(22)));
        assert!(r.judge_name("api.test", 8443).is_ok());
        assert_eq!(r.judge_name("api.test", 443), Err(Refusal::Port(443)));
        assert!(r.judge_name("any.test", 5432).is_ok());
        assert!(matches!(
            r.judge_name("any.test", 22),
            Err(Refusal::Denied(_))
        ));
        let mut limited = rules(&["any.test:*"], &[]);
        limited.ports = Some(vec![443]);
        assert_eq!(
            limited.judge_name("any.test", 5432),
            Err(Refusal::Port(5432))
        );
    }

    #[test]
    fn a_deny_wildcard_covers_its_apex_and_a_denied_address_every_way_to_it() {
        let r = rules(&["*"], &["*.evil.test", "93.184.215.14"]);
        assert!(matches!(
            r.judge_name("evil.test", 443),
            Err(Refusal::Denied(_))
        ));
        let ip: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(matches!(
            r.judge_address(ip, LOOSE),
            Err(Refusal::Denied(_))
        ));
        // Even where an exact grant (a `hosts` name) leads to it.
        assert!(matches!(
            r.judge_address(ip, Grant { exact: true }),
            Err(Refusal::Denied(_))
        ));
        let mapped: IpAddr = "::ffff:93.184.215.14".parse().unwrap();
        assert!(matches!(
            r.judge_address(mapped, LOOSE),
            Err(Refusal::Denied(_))
        ));
        // The C library's notations of an address are not names.
        for legacy in ["1572395042", "0x7f.1", "127.1", "0177.0.0.1"] {
            assert_eq!(r.judge_name(legacy, 80), Err(Refusal::BadName), "{legacy}");
        }
    }

    #[test]
    fn private_and_own_addresses_need_an_exact_pattern_of_a_policy_file() {
        let mut r = rules(&["*:*", "10.1.2.3:8080"], &[]);
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip}");
            assert!(r.judge_address(ip, LOOSE).is_err(), "{ip}");
        }
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(r.judge_address(public, LOOSE).is_ok());
        // The host's own addresses are the host.
        for own in ["127.0.0.1", "::1"] {
            assert!(is_local(own.parse().unwrap()), "{own}");
        }
        // Listed literally, with its port, and asked for literally.
        assert_eq!(r.judge_name("10.1.2.3", 8080), Ok(Grant { exact: true }));
        assert_eq!(normalise("[::ffff:5db8:d70e]"), "93.184.215.14");
        assert!(pattern_problem("[::ffff:0.0.0.0]:80").is_some());
        // Not listed at all: refused as private, so that no flag is offered.
        assert!(matches!(
            rules(&["pypi.org"], &[]).judge_name("127.0.0.1", 443),
            Err(Refusal::PrivateAddress(_))
        ));
        // Another port of it: `*:*` does not open it.
        assert_eq!(
            r.judge_name("10.1.2.3", 8081),
            Err(Refusal::PrivateAddress("10.1.2.3".parse().unwrap()))
        );
        // The unspecified address is the host, listed or not.
        assert!(matches!(
            r.judge_name("0.0.0.0", 80),
            Err(Refusal::PrivateAddress(_))
        ));
        // A name mapped to the loopback is opened by its exact pattern and
        // port only: not by a wildcard, not by the command line.
        r.hosts
            .insert("registry.test".into(), "127.0.0.1".parse().unwrap());
        r.allow_domains.push("registry.test:5000".into());
        r.added_domains.push("registry.test:6000".into());
        assert_eq!(
            r.judge_name("registry.test", 5000),
            Ok(Grant { exact: true })
        );
        assert_eq!(r.judge_name("registry.test", 443), Ok(LOOSE));
        assert_eq!(r.judge_name("registry.test", 6000), Ok(LOOSE));
        assert_eq!(
            r.fixed_address("Registry.test"),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn patterns_are_checked() {
        for good in [
            "*",
            "example.com",
            "*.example.com",
            "10.0.0.1",
            "::1",
            "[::1]:8443",
            "a_b.test",
            "example.com:8080",
            "*.example.com:*",
            "*:443",
        ] {
            assert_eq!(pattern_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "*.",
            "**.a",
            "a..b",
            "exa mple.com",
            "http://x",
            "a.*.b",
            "*x.com",
            "a.test:0",
            "a.test:http",
            "0.0.0.0",
            "::",
            "2130706433",
        ] {
            assert!(pattern_problem(bad).is_some(), "{bad}");
        }
        assert!(names_private_address("127.0.0.1"));
        assert!(names_private_address("[fd00::1]:22"));
        assert!(!names_private_address("pypi.org"));
    }

    #[test]
    fn what_a_job_names_is_shown_whole_or_not_at_all() {
        assert_eq!(shown("pypi.org"), "pypi.org");
        let long = format!("registry.npmjs.org.{}.attacker.test", "a".repeat(60));
        assert_eq!(shown(&long), long, "a host name is never cut");
        assert_eq!(shown("the sandbox needs --net host"), "(not a host name)");
        assert_eq!(shown(&"x".repeat(1000)), "(not a host name)");
    }
}

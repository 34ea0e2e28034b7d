//! Which hosts a job in `network.mode = "proxy"` may reach: the policy's
//! `allow_domains` / `deny_domains` and its `hosts` map, as the proxy
//! judges each destination a job asks for.
//!
//! A name is judged before it is resolved, and what it resolves to is
//! judged again: a public name that resolves to the host's own loopback or
//! to a private network (DNS rebinding, or simply an internal name) is
//! refused unless the policy itself said where the name goes (`hosts`) or
//! listed that very address. The job never reaches the host's own services
//! by asking the proxy for them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The port of the job's `127.0.0.1` its proxy listens on (HTTP and
/// SOCKS5 alike): squid's, which tools know as a proxy's.
pub const PROXY_PORT: u16 = 3128;

/// The destinations of a proxied job, as the policy names them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyRules {
    /// Host patterns the job may reach: `example.com`, `*.example.com`
    /// (any name below it, not itself), `*` (any public host) or an IP
    /// address.
    pub allow_domains: Vec<String>,
    /// Host patterns refused even where `allow_domains` matches.
    #[serde(default)]
    pub deny_domains: Vec<String>,
    /// Names the proxy resolves to a fixed address instead of asking DNS
    /// (as `/etc/hosts` would); such an address is trusted even when it is
    /// the host's loopback or a private network.
    #[serde(default)]
    pub hosts: BTreeMap<String, IpAddr>,
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A `deny_domains` pattern matches the name.
    Denied(String),
    /// No `allow_domains` pattern matches the name.
    NotAllowed,
    /// The name is not a host name or address.
    BadName,
    /// The name resolves to an address the job may not reach through the
    /// proxy (the host's loopback, a private or link-local network).
    PrivateAddress(IpAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Denied(p) => write!(f, "denied by network.deny_domains ({p})"),
            Refusal::NotAllowed => f.write_str("not in network.allow_domains"),
            Refusal::BadName => f.write_str("not a host name or address"),
            Refusal::PrivateAddress(ip) => write!(
                f,
                "{ip} is a loopback, private or link-local address, which the proxy reaches \
                 only where the policy names it"
            ),
        }
    }
}

/// Longest host name accepted (DNS allows 253).
const MAX_NAME: usize = 253;

/// What is wrong with `pattern` as an `allow_domains` / `deny_domains`
/// entry, if anything.
pub fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern == "*" || pattern.parse::<IpAddr>().is_ok() {
        return None;
    }
    let name = pattern.strip_prefix("*.").unwrap_or(pattern);
    name_problem(name).map(|why| {
        format!(
            "{pattern:?} is not a host pattern ({why}); expected example.com, *.example.com, * or an IP address"
        )
    })
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

/// A destination as the job named it, normalised: lower case, no trailing
/// dot, an IPv6 address without brackets.
pub fn normalise(host: &str) -> String {
    let host = host.trim_end_matches('.');
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.to_ascii_lowercase()
}

fn matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host.len() > suffix.len() + 1
            && host.ends_with(suffix)
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
    }
    if let (Ok(a), Ok(b)) = (pattern.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        return a == b;
    }
    pattern.eq_ignore_ascii_case(host)
}

impl ProxyRules {
    /// Whether the job may ask for `host` (normalised), judged by name.
    pub fn judge_name(&self, host: &str) -> Result<(), Refusal> {
        if host.parse::<IpAddr>().is_err() && name_problem(host).is_some() {
            return Err(Refusal::BadName);
        }
        if let Some(p) = self.deny_domains.iter().find(|p| matches(p, host)) {
            return Err(Refusal::Denied(p.clone()));
        }
        if !self.allow_domains.iter().any(|p| matches(p, host)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }

    /// The address the policy fixes for `host`, if any.
    pub fn fixed_address(&self, host: &str) -> Option<IpAddr> {
        self.hosts
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(host))
            .map(|(_, ip)| *ip)
    }

    /// Whether the job may reach `ip`, which `host` (allowed by name)
    /// resolved to through DNS or is itself.
    pub fn judge_address(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        if is_public(ip) {
            return Ok(());
        }
        // Listed as that very address: the policy's author meant it.
        let listed = self
            .allow_domains
            .iter()
            .filter_map(|p| p.parse::<IpAddr>().ok())
            .any(|a| a == ip);
        if listed && host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        Err(Refusal::PrivateAddress(ip))
    }
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
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
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
            hosts: BTreeMap::new(),
        }
    }

    #[test]
    fn wildcards_match_below_a_label_boundary_only() {
        let r = rules(&["*.example.com", "pypi.org"], &["evil.example.com"]);
        assert!(r.judge_name("a.example.com").is_ok());
        assert!(r.judge_name("a.b.example.com").is_ok());
        assert_eq!(r.judge_name("example.com"), Err(Refusal::NotAllowed));
        assert_eq!(r.judge_name("badexample.com"), Err(Refusal::NotAllowed));
        assert_eq!(r.judge_name("pypi.org.evil.net"), Err(Refusal::NotAllowed));
        assert_eq!(r.judge_name("xpypi.org"), Err(Refusal::NotAllowed));
        assert!(matches!(
            r.judge_name("evil.example.com"),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(r.judge_name("a b"), Err(Refusal::BadName));
        assert_eq!(r.judge_name("a/b.example.com"), Err(Refusal::BadName));
        assert_eq!(normalise("PyPI.org."), "pypi.org");
        assert_eq!(normalise("[::1]"), "::1");
    }

    #[test]
    fn private_addresses_need_the_policy_to_name_them() {
        let mut r = rules(&["*", "10.1.2.3"], &[]);
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
            "64:ff9b::7f00:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!is_public(ip), "{ip}");
            assert!(r.judge_address("example.com", ip).is_err(), "{ip}");
        }
        assert!(r
            .judge_address("example.com", "93.184.215.14".parse().unwrap())
            .is_ok());
        // Listed literally and asked for literally.
        assert!(r
            .judge_address("10.1.2.3", "10.1.2.3".parse().unwrap())
            .is_ok());
        // A name that DNS turns into the listed address is still refused.
        assert!(r
            .judge_address("x.example.com", "10.1.2.3".parse().unwrap())
            .is_err());
        r.hosts
            .insert("Registry.test".into(), "127.0.0.1".parse().unwrap());
        assert_eq!(
            r.fixed_address("registry.test"),
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
            "a_b.test",
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
        ] {
            assert!(pattern_problem(bad).is_some(), "{bad}");
        }
    }
}

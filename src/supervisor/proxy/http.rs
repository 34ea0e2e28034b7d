//! The HTTP side of the proxy: `CONNECT host:port` tunnels (what HTTPS
//! clients use) and plain `GET http://host/...` requests.
//!
//! A plain request goes on to its host in origin form with
//! `Connection: close`, and everything after it on that connection goes to
//! the same host: whatever a client sends next, the bytes reach only the
//! host that was judged, under its own `Host` header. The `Proxy-*`
//! headers stay with us.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Longest request head accepted.
const MAX_HEAD: usize = 64 << 10;

/// What the job asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub host: String,
    pub port: u16,
    /// What to send the host first: nothing for a tunnel; the rewritten
    /// head and whatever followed it for a plain request.
    pub forward: Vec<u8>,
    pub tunnel: bool,
}

/// Why a request head cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// Reads one request head from `client` (the bytes read past it are kept).
pub fn read_request(client: &mut TcpStream) -> io::Result<Result<Request, BadRequest>> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(Err(BadRequest("the request head is over 64 KiB".into())));
        }
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    Ok(parse(&buf[..end], &buf[end..]))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a head (ending in the blank line) and what followed it.
pub fn parse(head: &[u8], rest: &[u8]) -> Result<Request, BadRequest> {
    let bad = |why: &str| BadRequest(why.to_string());
    let text = std::str::from_utf8(head).map_err(|_| bad("the request head is not UTF-8"))?;
    // A bare CR or LF is a line break to some servers and not to us: what
    // we judge and what the host reads must be the same lines.
    if text
        .split("\r\n")
        .any(|l| l.chars().any(|c| c.is_control() && c != '\t'))
    {
        return Err(bad(
            "control characters (a bare CR or LF) in the request head",
        ));
    }
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut words = first.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(bad("the request line is not METHOD TARGET VERSION"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("only HTTP/1.x is proxied"));
    }
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(target, None).ok_or_else(|| bad("CONNECT needs host:port"))?;
        return Ok(Request {
            host,
            port,
            forward: rest.to_vec(),
            tunnel: true,
        });
    }
    let (host, port, path) = if let Some(after) = target.strip_prefix("http://") {
        let (auth, path) = match after.find(['/', '?', '#']) {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        let (host, port) = authority(auth, Some(80)).ok_or_else(|| bad("bad host in the URL"))?;
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        (host, port, path)
    } else if target.starts_with('/') {
        // Origin form, as to a web server: the Host header names it.
        let host_header = headers
            .iter()
            .find_map(|h| header_value(h, "host"))
            .ok_or_else(|| bad("no host: neither an absolute URL nor a Host header"))?;
        let (host, port) =
            authority(host_header, Some(80)).ok_or_else(|| bad("bad Host header"))?;
        (host, port, target.to_string())
    } else {
        return Err(bad(
            "only http:// URLs are proxied as requests; HTTPS goes through CONNECT",
        ));
    };
    // The Host header is the judged host whatever the job wrote: a server
    // shared by many sites (a CDN) routes by it.
    let shown = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let mut out = format!("{method} {path} {version}\r\nHost: {shown}:{port}\r\n").into_bytes();
    for h in headers {
        let name = h.split(':').next().unwrap_or_default().trim();
        let ours = [
            "host",
            "proxy-connection",
            "proxy-authorization",
            "connection",
            "keep-alive",
        ];
        if ours.iter().any(|o| name.eq_ignore_ascii_case(o)) {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(rest);
    Ok(Request {
        host,
        port,
        forward: out,
        tunnel: false,
    })
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (n, v) = line.split_once(':')?;
    n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

/// `host[:port]` or `[v6][:port]`, userinfo refused; the host normalised.
fn authority(text: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    if text.contains('@') {
        return None;
    }
    let (host, port) = if let Some(inner) = text.strip_prefix('[') {
        let (h, after) = inner.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (h, port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return None,
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default_port?,
    };
    if host.is_empty() {
        return None;
    }
    Some((crate::sandbox::net_rules::normalise(host), port))
}

/// Tells the job its tunnel is open.
pub fn tunnel_open(client: &mut TcpStream) -> io::Result<()> {
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
}

/// Answers with an error status and a line saying why (and what would
/// allow it), then the connection closes.
pub fn refuse(client: &mut TcpStream, status: &str, why: &str) {
    let body = format!("agent-exec proxy: {why}\n");
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(reply.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(head: &str) -> Result<Request, BadRequest> {
        parse(head.as_bytes(), b"")
    }

    #[test]
    fn connect_and_plain_requests_name_their_host() {
        let r = req("CONNECT PyPI.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n").unwrap();
        assert_eq!((r.host.as_str(), r.port, r.tunnel), ("pypi.org", 443, true));
        let r = req("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", 8443));
        let r = req(
            "GET http://a.test:8080/x?y=1 HTTP/1.1\r\nHost: other.test\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nAccept: */*\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.host.as_str(), r.port, r.tunnel), ("a.test", 8080, false));
        let sent = String::from_utf8(r.forward).unwrap();
        assert_eq!(
            sent,
            "GET /x?y=1 HTTP/1.1\r\nHost: a.test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let r = req("GET http://b.test HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((r.host.as_str(), r.port), ("b.test", 80));
        assert!(String::from_utf8(r.forward)
            .unwrap()
            .starts_with("GET / HTTP/1.0\r\nHost: b.test:80\r\n"));
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for head in [
            // userinfo: which host is meant depends on who parses it
            "GET http://allowed.test@evil.test/ HTTP/1.1\r\n\r\n",
            "CONNECT allowed.test@evil.test:443 HTTP/1.1\r\n\r\n",
            "CONNECT evil.test HTTP/1.1\r\n\r\n",
            "CONNECT evil.test:0 HTTP/1.1\r\n\r\n",
            "CONNECT evil.test:99999 HTTP/1.1\r\n\r\n",
            "GET https://evil.test/ HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET http://a.test/ HTTP/2\r\n\r\n",
            "GET  http://a.test/ HTTP/1.1\r\n\r\n",
            "GET http://a.test/v HTTP/1.1\nHost: evil.test\r\n\r\n",
            "GET http://a.test/ HTTP/1.1\r\nX-A: 1\nHost: evil.test\r\n\r\n",
        ] {
            assert!(req(head).is_err(), "{head:?}");
        }
    }
}

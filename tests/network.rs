//! `network.mode = "proxy"`: a job reaches the hosts its policy names, by
//! name, through a proxy in its own network served from outside, and
//! nothing else. The servers are this test's own, on the host's loopback;
//! the names reach them through the policy's `network.hosts`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;

/// A web server on the host's loopback that answers each request with
/// `reached:<request line>` and remembers every request head it saw.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(head);
                let body = format!("reached:{line}\n");
                let _ = write!(
                    conn,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { port, seen }
    }

    /// The request lines seen so far.
    fn lines(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|h| h.lines().next().unwrap_or_default().to_string())
            .collect()
    }

    fn head_of(&self, path: &str) -> String {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|h| h.starts_with(&format!("GET {path} ")))
            .cloned()
            .unwrap_or_default()
    }
}

/// A policy file outside the job's trees.
fn policy(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    write_file(&fx.sub("policies"), &format!("{name}.toml"), text)
}

fn curl_present() {
    assert!(
        Path::new("/usr/bin/curl").exists(),
        "these tests need curl (.ci/run installs it)"
    );
}

fn destination<'a>(v: &'a serde_json::Value, host: &str) -> &'a serde_json::Value {
    v["network"]["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no network record: {v:#}"))
        .iter()
        .find(|d| d["host"] == host)
        .unwrap_or_else(|| panic!("{host} not recorded: {v:#}"))
}

/// Allowed names are reached over a CONNECT tunnel, a plain HTTP request
/// and SOCKS5; a name not allowed, or allowed by a wildcard and denied by
/// `deny_domains`, is refused with a reason and a hint, and never reaches
/// the server; a direct connection has no route. The result lists every
/// destination with the bytes moved.
#[test]
fn the_proxy_reaches_allowed_names_only() {
    if !privileged() {
        return;
    }
    curl_present();
    let env = Env::new();
    let fx = Fixture::new();
    let server = Server::start();
    let p = server.port;
    let file = policy(
        &fx,
        "proxied",
        r#"extends = "default"
[network]
mode = "proxy"
allow_domains = ["allowed.test", "*.wild.test"]
deny_domains = ["no.wild.test"]
[network.hosts]
"allowed.test" = "127.0.0.1"
"a.wild.test" = "127.0.0.1"
"no.wild.test" = "127.0.0.1"
"refused.test" = "127.0.0.1"
"#,
    );
    let script = format!(
        "curl -sS http://allowed.test:{p}/plain; \
         curl -sS -p -H 'Host: refused.test' http://allowed.test:{p}/tunnel; \
         curl -sS -x socks5h://127.0.0.1:3128 http://a.wild.test:{p}/socks; \
         curl -sS http://refused.test:{p}/refused; echo \"refused=$?\"; \
         curl -sS -p http://no.wild.test:{p}/denied; echo \"denied=$?\"; \
         curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:{p}/direct; echo \"direct=$?\""
    );
    let v = env.job(s(&file), &fx.cwd(), &[], &[], &["sh", "-c", &script]);
    let out = v["stdout"].as_str().unwrap();
    for path in ["/plain", "/tunnel", "/socks"] {
        assert!(out.contains(&format!("reached:GET {path} ")), "{v:#}");
    }
    assert!(
        out.contains("allow it with --allow-domain refused.test"),
        "{v:#}"
    );
    assert!(
        out.contains("denied=56") || out.contains("denied=22"),
        "{v:#}"
    );
    assert!(!out.contains("direct=0"), "{v:#}");
    let lines = server.lines();
    assert_eq!(
        lines.len(),
        3,
        "only the allowed requests arrive: {lines:?}"
    );
    // A plain request leaves as origin form, under the host that was judged.
    let plain = server.head_of("/plain");
    assert!(
        plain.contains(&format!("Host: allowed.test:{p}")),
        "{plain}"
    );
    assert!(!plain.to_ascii_lowercase().contains("proxy-"), "{plain}");

    let allowed = destination(&v, "allowed.test");
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["port"], p);
    assert_eq!(allowed["requests"], 2);
    assert!(allowed["bytes_sent"].as_u64().unwrap() > 50, "{v:#}");
    assert!(allowed["bytes_received"].as_u64().unwrap() > 50, "{v:#}");
    assert_eq!(destination(&v, "a.wild.test")["allowed"], true);
    let refused = destination(&v, "refused.test");
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["bytes_sent"], 0);
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("allow_domains"));
    let denied = destination(&v, "no.wild.test");
    assert!(denied["reason"].as_str().unwrap().contains("deny_domains"));
    let denials = v["denials"].as_array().unwrap();
    let first = &denials[0];
    assert_eq!(first["kind"], "network");
    assert_eq!(first["target"], format!("refused.test:{p}"));
    assert!(
        first["hint"]
            .as_str()
            .unwrap()
            .starts_with("--allow-domain refused.test"),
        "{v:#}"
    );
    assert_eq!(v["sandbox"]["network"], "proxy");

    // Control: with the host's network the direct connection arrives, so
    // its failure above was the sandbox.
    let v = env.job(
        "permissive",
        &fx.cwd(),
        &[],
        &[],
        &["curl", "-sS", &format!("http://127.0.0.1:{p}/direct")],
    );
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .contains("reached:GET /direct"),
        "{v:#}"
    );
}

/// `--allow-domain` on the command line turns a policy's network into
/// `proxy` and adds the host; a policy that keeps its network refuses it.
#[test]
fn allow_domain_on_the_command_line() {
    if !privileged() {
        return;
    }
    curl_present();
    let env = Env::new();
    let fx = Fixture::new();
    let server = Server::start();
    let p = server.port;
    let file = policy(
        &fx,
        "named",
        "extends = \"default\"\n[network.hosts]\n\"registry.test\" = \"127.0.0.1\"\n",
    );
    let url = format!("http://registry.test:{p}/pkg");
    let v = env.job(
        s(&file),
        &fx.cwd(),
        &["--allow-domain", "Registry.TEST"],
        &[],
        &["curl", "-sS", &url],
    );
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(v["stdout"].as_str().unwrap().contains("reached:GET /pkg"));
    assert_eq!(v["sandbox"]["network"], "proxy");
    // Without the flag the same policy has no network: the hint says which
    // flag reaches the host.
    let v = env.job(s(&file), &fx.cwd(), &[], &[], &["curl", "-sS", &url]);
    assert_eq!(v["result"], "exit_code", "{v:#}");
    let hint = v["denials"][0]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("--allow-domain registry.test"), "{v:#}");
    // A mode with no way out, or a policy that keeps its network.
    let (_, e) = env.run(&[
        "run",
        "--net",
        "loopback",
        "--allow-domain",
        "x.test",
        "--",
        "true",
    ]);
    assert_eq!(e["error"]["code"], "invalid_argument", "{e:#}");
    let (_, e) = env.run(&[
        "run",
        "--policy",
        "untrusted",
        "--allow-domain",
        "x.test",
        "--",
        "true",
    ]);
    assert_eq!(e["error"]["code"], "override_forbidden", "{e:#}");
    assert_eq!(server.lines().len(), 1);
}

/// Attack: through the proxy, reach the host's own services — its
/// loopback by address, by `localhost`, by IPv6 and IPv4-mapped forms, by
/// the numeric spellings the resolver accepts, over HTTP and SOCKS5 — with
/// a policy that allows every public host. None of it arrives. The job
/// cannot take the proxy's port either. Control: the same requests arrive
/// once the policy lists the address.
#[test]
fn attack_the_hosts_loopback_through_the_proxy() {
    if !privileged() {
        return;
    }
    curl_present();
    let env = Env::new();
    let fx = Fixture::new();
    let server = Server::start();
    let p = server.port;
    let attempts = format!(
        "for u in http://127.0.0.1:{p}/a http://localhost:{p}/b 'http://[::1]:{p}/c' \
                  'http://[::ffff:127.0.0.1]:{p}/d' http://2130706433:{p}/e http://127.1:{p}/f \
                  http://0.0.0.0:{p}/g; do \
           curl -sS --noproxy '' -x http://127.0.0.1:3128 \"$u\"; \
           curl -sS --noproxy '' -p -x http://127.0.0.1:3128 \"$u\"; \
           curl -sS --noproxy '' -x socks5://127.0.0.1:3128 \"$u\"; \
           curl -sS --noproxy '' -x socks5h://127.0.0.1:3128 \"$u\"; \
         done; \
         python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 3128))' 2>&1 | tail -1"
    );
    let open = policy(
        &fx,
        "anywhere",
        "extends = \"default\"\n[network]\nmode = \"proxy\"\nallow_domains = [\"*\"]\n",
    );
    let v = env.job(s(&open), &fx.cwd(), &[], &[], &["sh", "-c", &attempts]);
    assert_eq!(server.lines(), Vec::<String>::new(), "{v:#}");
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .contains("Address already in use"),
        "{v:#}"
    );
    for d in v["network"]["destinations"].as_array().unwrap() {
        assert_eq!(d["allowed"], false, "{d}");
        assert_eq!(d["bytes_sent"], 0, "{d}");
    }

    // Control: listed by address, the loopback is reached.
    let listed = policy(
        &fx,
        "listed",
        "extends = \"default\"\n[network]\nmode = \"proxy\"\nallow_domains = [\"127.0.0.1\"]\n",
    );
    let v = env.job(
        s(&listed),
        &fx.cwd(),
        &[],
        &[],
        &[
            "curl",
            "-sS",
            "--noproxy",
            "",
            &format!("http://127.0.0.1:{p}/a"),
        ],
    );
    assert!(
        v["stdout"].as_str().unwrap().contains("reached:GET /a"),
        "{v:#}"
    );
}

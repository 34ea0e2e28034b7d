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
                // Read a body the request announces, to its end.
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let _ = std::io::copy(&mut (&mut conn).take(length), &mut std::io::sink());
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
    let other = Server::start();
    let p = server.port;
    let o = other.port;
    let file = policy(
        &fx,
        "proxied",
        &format!(
            r#"extends = "default"
[network]
mode = "proxy"
allow_domains = ["allowed.test:{p}", "a.wild.test:{p}", "*.wild.test:*"]
deny_domains = ["no.wild.test"]
[network.hosts]
"allowed.test" = "127.0.0.1"
"a.wild.test" = "127.0.0.1"
"no.wild.test" = "127.0.0.1"
"#
        ),
    );
    // `other` is another service of the host's loopback: allowed.test is
    // allowed on one port only, so the others stay out of reach.
    let script = format!(
        "curl -sS http://allowed.test:{p}/plain; \
         curl -sS -p -H 'Host: refused.test' http://allowed.test:{p}/tunnel; \
         curl -sS -x socks5h://127.0.0.1:3128 http://a.wild.test:{p}/socks; \
         curl -sS http://refused.test:{p}/refused; echo \"refused=$?\"; \
         curl -sS -p http://no.wild.test:{p}/denied; echo \"denied=$?\"; \
         curl -sS --noproxy '*' --max-time 5 http://127.0.0.1:{p}/direct; echo \"direct=$?\"; \
         curl -sS http://allowed.test:{o}/other-port; echo \"other=$?\""
    );
    let v = env.job(s(&file), &fx.cwd(), &[], &[], &["sh", "-c", &script]);
    let out = v["stdout"].as_str().unwrap();
    for path in ["/plain", "/tunnel", "/socks"] {
        assert!(out.contains(&format!("reached:GET {path} ")), "{v:#}");
    }
    assert!(
        out.contains(&format!(
            "What would allow it: --allow-domain refused.test:{p}"
        )),
        "{v:#}"
    );
    assert!(
        out.contains("denied=56") || out.contains("denied=22"),
        "{v:#}"
    );
    assert!(!out.contains("direct=0"), "{v:#}");
    // Another port of the host's loopback: no flag opens it, none is offered.
    assert_eq!(
        other.lines(),
        Vec::<String>::new(),
        "another port of the host"
    );
    assert!(
        out.contains(&format!(
            "allowed.test:{o} is refused: 127.0.0.1 is an address of this host"
        )),
        "{v:#}"
    );
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
            .starts_with(&format!("--allow-domain refused.test:{p}")),
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
/// A flag reaches public addresses only: a name the policy maps to the
/// host's loopback is reached where the policy file names it (and its
/// port), and no flag opens another of its ports, nor is one offered.
#[test]
fn allow_domain_on_the_command_line() {
    if !privileged() {
        return;
    }
    curl_present();
    let env = Env::new();
    let fx = Fixture::new();
    let server = Server::start();
    let other = Server::start();
    let (p, o) = (server.port, other.port);
    let file = policy(
        &fx,
        "named",
        &format!(
            "extends = \"default\"\n[network]\nallow_domains = [\"registry.test:{p}\"]\n\
             [network.hosts]\n\"registry.test\" = \"127.0.0.1\"\n"
        ),
    );
    let url = format!("http://registry.test:{p}/pkg");
    // Without a flag the policy has no network: the hint names the flag.
    let v = env.job(s(&file), &fx.cwd(), &[], &[], &["curl", "-sS", &url]);
    assert_eq!(v["result"], "exit_code", "{v:#}");
    let hint = v["denials"][0]["hint"].as_str().unwrap_or_default();
    assert!(hint.contains("--allow-domain registry.test"), "{v:#}");
    // Any --allow-domain turns the proxy on; the policy's own pattern
    // reaches the mapped name.
    let v = env.job(
        s(&file),
        &fx.cwd(),
        &["--allow-domain", "pypi.org"],
        &[],
        &["curl", "-sS", &url],
    );
    assert_eq!(v["result"], "success", "{v:#}");
    assert!(v["stdout"].as_str().unwrap().contains("reached:GET /pkg"));
    assert_eq!(v["sandbox"]["network"], "proxy");
    // Another port of the loopback, even named by the flag: refused, and
    // the advice is no flag.
    let other_url = format!("http://registry.test:{o}/other");
    let v = env.job(
        s(&file),
        &fx.cwd(),
        &["--allow-domain", &format!("Registry.TEST:{o}")],
        &[],
        &["curl", "-sS", &other_url],
    );
    assert_eq!(other.lines(), Vec::<String>::new(), "{v:#}");
    let hint = v["denials"][0]["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("policy file") && !hint.contains("--allow"),
        "{v:#}"
    );
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
        "extends = \"default\"\n[network]\nmode = \"proxy\"\nallow_domains = [\"*:*\"]\n",
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
    // Refused, or (`localhost`, resolved as an absolute name) never found:
    // never connected.
    for d in v["network"]["destinations"].as_array().unwrap() {
        assert!(d["address"].is_null(), "{d}");
        assert_eq!(d["bytes_sent"], 0, "{d}");
    }
    // The advice never opens the host: no flag for its addresses, and the
    // flag refuses them.
    for d in v["denials"].as_array().unwrap() {
        let hint = d["hint"].as_str().unwrap();
        assert!(!hint.contains("--allow-domain"), "{d}");
    }
    for address in ["127.0.0.1", "169.254.169.254", "[::1]:22", "0.0.0.0"] {
        let (_, e) = env.run(&["run", "--allow-domain", address, "--", "true"]);
        assert_eq!(e["error"]["code"], "invalid_argument", "{address}: {e:#}");
    }

    // Listed by address for one port, with `*:*` beside it: another port
    // of the loopback stays closed, however the address is spelled.
    let one_port = policy(
        &fx,
        "one-port",
        "extends = \"default\"\n[network]\nmode = \"proxy\"\n\
         allow_domains = [\"*:*\", \"127.0.0.1:1\"]\n",
    );
    let v = env.job(s(&one_port), &fx.cwd(), &[], &[], &["sh", "-c", &attempts]);
    assert_eq!(server.lines(), Vec::<String>::new(), "{v:#}");

    // Control: listed by address, the loopback is reached.
    let listed = policy(
        &fx,
        "listed",
        "extends = \"default\"\n[network]\nmode = \"proxy\"\nallow_domains = [\"127.0.0.1:*\"]\n",
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

/// Attack: bloat or flood the proxy's record. Names of 60 KB, then a
/// hundred refused destinations, then an upload to the allowed host: the
/// record stays small and readable, shows no name longer than a host's,
/// and still lists the upload with its bytes (refusals cannot push it
/// out).
#[test]
fn attack_the_record_of_the_proxy() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    let server = Server::start();
    let p = server.port;
    let file = policy(
        &fx,
        "upload",
        &format!(
            "extends = \"default\"\n[network]\nmode = \"proxy\"\n\
             allow_domains = [\"allowed.test:{p}\"]\n[network.hosts]\n\"allowed.test\" = \"127.0.0.1\"\n"
        ),
    );
    let script = format!(
        r#"
import socket
def ask(head):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(head)
    s.recv(4096)
    s.close()
for i in range(40):
    ask(b"CONNECT %03d" % i + b"a" * 60000 + b":1 HTTP/1.1\r\n\r\n")
for i in range(100):
    ask(b"CONNECT junk%d.test:443 HTTP/1.1\r\n\r\n" % i)
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(b"CONNECT allowed.test:{p} HTTP/1.1\r\n\r\n")
s.recv(4096)
s.sendall(b"POST /upload HTTP/1.0\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000)
answer = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
print(answer.decode().splitlines()[-1])
"#
    );
    let v = env.job(s(&file), &fx.cwd(), &[], &[], &["python3", "-c", &script]);
    assert!(
        v["stdout"]
            .as_str()
            .unwrap()
            .contains("reached:POST /upload"),
        "{v:#}"
    );
    let upload = destination(&v, "allowed.test");
    assert!(upload["bytes_sent"].as_u64().unwrap() > 100_000, "{v:#}");
    let destinations = v["network"]["destinations"].as_array().unwrap();
    assert!(destinations
        .iter()
        .all(|d| d["host"].as_str().unwrap().len() <= 67));
    assert!(
        v["network"]["destinations_omitted"].as_u64().unwrap() > 0,
        "{v:#}"
    );
    let state = std::fs::metadata(env.root().join(job_id(&v)).join("state.json")).unwrap();
    assert!(state.len() < 100_000, "state.json is {} bytes", state.len());
}

/// Attack: exhaust the supervisor's descriptors through the proxy (each
/// relayed connection costs several) so that it can no longer kill the
/// job, with a caller whose descriptor limit is 1024, soft and hard. The
/// connections beyond the supervisor's budget are closed, and the job
/// still ends at its timeout.
#[test]
fn attack_the_supervisors_descriptors_through_the_proxy() {
    if !privileged() {
        return;
    }
    let env = Env::new();
    let fx = Fixture::new();
    // A host service that accepts and never reads: every relay stays open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let file = policy(
        &fx,
        "hold",
        &format!(
            "extends = \"default\"\n[limits]\ntimeout = \"3s\"\nkill_after = \"1s\"\n\
             [network]\nmode = \"proxy\"\nallow_domains = [\"hold.test:{p}\"]\n\
             [network.hosts]\n\"hold.test\" = \"127.0.0.1\"\n"
        ),
    );
    let script = format!(
        r#"
import socket, time
held = []
for i in range(400):
    try:
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"CONNECT hold.test:{p} HTTP/1.1\r\n\r\n")
        held.append(s)
    except OSError:
        pass
print("opened", len(held), flush=True)
while True:
    for s in held:
        try:
            s.send(b"x" * 65536, socket.MSG_DONTWAIT)
        except OSError:
            pass
    time.sleep(0.1)
"#
    );
    let started = std::time::Instant::now();
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\""])
        .arg(bin())
        .args([
            "--root",
            s(&env.root()),
            "run",
            "--until",
            "60",
            "--policy",
            s(&file),
        ])
        .args(["--cwd", s(&fx.cwd()), "--", "python3", "-c", &script])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (_, v) = parse_one(&out);
    assert_eq!(v["result"], "timeout", "{v:#}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{v:#}"
    );
    assert!(v["stdout"].as_str().unwrap().contains("opened"), "{v:#}");
}

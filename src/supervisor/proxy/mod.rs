//! `network.mode = "proxy"`: the job's only way out, served from outside.
//!
//! The job's network namespace has `lo` and one listening socket on
//! `127.0.0.1:3128`, made there by the child before the job runs and
//! handed to us (see `namespaces::hand_over_proxy_listener`). Nothing else
//! routes anywhere, so a connection that does not go through it goes
//! nowhere. We accept on that socket from the supervisor, outside the
//! sandbox: each connection is read as HTTP (`CONNECT` or a plain request)
//! or SOCKS5 (first byte 5), its destination judged by the policy
//! ([`crate::sandbox::ProxyRules`]), and only then is a connection made,
//! from the host, to the address that was judged. Every destination asked
//! for lands in the [`Ledger`], which becomes the result's `network`.

mod http;
mod ledger;
mod socks;

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

pub use ledger::{Destination, NetworkReport};

use self::ledger::{Counters, Ledger, Verdict};
use super::denials::Denial;
use crate::sandbox::net_rules::{self, Grant, ProxyRules, Refusal};

/// How long a job may take to say where it goes.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment that points a job's programs at its proxy.
pub fn environment() -> Vec<(String, String)> {
    let http = format!("http://127.0.0.1:{}", net_rules::PROXY_PORT);
    let socks = format!("socks5h://127.0.0.1:{}", net_rules::PROXY_PORT);
    let no_proxy = "localhost,127.0.0.1,::1".to_string();
    let mut out = Vec::new();
    for (name, value) in [
        ("HTTP_PROXY", &http),
        ("HTTPS_PROXY", &http),
        ("ALL_PROXY", &socks),
        ("NO_PROXY", &no_proxy),
    ] {
        out.push((name.to_string(), value.clone()));
        out.push((name.to_ascii_lowercase(), value.clone()));
    }
    out
}

/// The running proxy of one job.
pub struct Proxy {
    ledger: Arc<Ledger>,
}

impl Proxy {
    /// Serves `listener` (in the job's network) by `rules` until the
    /// supervisor exits.
    pub fn start(listener: OwnedFd, rules: ProxyRules) -> io::Result<Proxy> {
        let listener = TcpListener::from(listener);
        let ledger = Arc::new(Ledger::default());
        let shared = (Arc::new(rules), ledger.clone());
        std::thread::Builder::new()
            .name("proxy".into())
            .stack_size(super::relay::THREAD_STACK)
            .spawn(move || accept_loop(listener, shared.0, shared.1))?;
        Ok(Proxy { ledger })
    }

    /// Every destination asked for so far.
    pub fn report(&self) -> NetworkReport {
        self.ledger.report()
    }

    /// What the proxy refused, as denials with what would allow each.
    pub fn denials(&self) -> Vec<Denial> {
        self.ledger.denials()
    }
}

fn accept_loop(listener: TcpListener, rules: Arc<ProxyRules>, ledger: Arc<Ledger>) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            // Out of descriptors (or interrupted): wait rather than spin;
            // the connection stays in the backlog meanwhile.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Over the budget, the job sees the connection close.
        let Some(slot) = super::relay::Slot::take(super::relay::Use::Proxy) else {
            continue;
        };
        let (rules, ledger) = (rules.clone(), ledger.clone());
        let _ = std::thread::Builder::new()
            .stack_size(super::relay::THREAD_STACK)
            .spawn(move || {
                let _ = serve(client, &rules, &ledger);
                drop(slot);
            });
    }
}

/// One connection of the job, from its first byte to its end.
fn serve(mut client: TcpStream, rules: &ProxyRules, ledger: &Ledger) -> io::Result<()> {
    client.set_read_timeout(Some(HEAD_TIMEOUT))?;
    let _ = client.set_nodelay(true);
    let mut first = [0u8; 1];
    if client.peek(&mut first)? == 0 {
        return Ok(());
    }
    if first[0] == 5 {
        io::Read::read_exact(&mut client, &mut first)?;
        let Some(req) = socks::read_request(&mut client)? else {
            return Ok(());
        };
        match open(&req.host, req.port, rules, ledger) {
            Ok((upstream, counters)) => {
                socks::answer(&mut client, socks::reply::SUCCEEDED)?;
                relay(client, upstream, &[], &counters)
            }
            Err(e) => socks::answer(&mut client, e.socks),
        }
    } else {
        let req = match http::read_request(&mut client)? {
            Ok(req) => req,
            Err(http::BadRequest(why)) => {
                http::refuse(&mut client, "400 Bad Request", &why);
                return Ok(());
            }
        };
        match open(&req.host, req.port, rules, ledger) {
            Ok((upstream, counters)) => {
                if req.tunnel {
                    http::tunnel_open(&mut client)?;
                }
                relay(client, upstream, &req.forward, &counters)
            }
            Err(e) => {
                http::refuse(&mut client, e.status, &e.why);
                Ok(())
            }
        }
    }
}

fn relay(client: TcpStream, upstream: TcpStream, first: &[u8], c: &Counters) -> io::Result<()> {
    client.set_read_timeout(None)?;
    super::relay::cap_buffers(&client);
    super::relay::cap_buffers(&upstream);
    let _ = upstream.set_nodelay(true);
    super::relay::both_ways(client, upstream, first, c.sent.clone(), c.received.clone())
}

/// Why no connection was made, as each protocol says it.
struct NotOpened {
    status: &'static str,
    socks: u8,
    why: String,
}

/// Judges `host:port`, resolves it, judges the addresses, connects, and
/// records the request either way. `host` is as the job wrote it
/// (normalised); only [`net_rules::shown`] of it is ever recorded or told.
fn open(
    host: &str,
    port: u16,
    rules: &ProxyRules,
    ledger: &Ledger,
) -> Result<(TcpStream, Arc<Counters>), NotOpened> {
    let shown = net_rules::shown(host);
    let refused = |r: Refusal| {
        let hint = hint(&shown, port, &r);
        let why = format!("{shown}:{port} is refused: {r}. What would allow it: {hint}");
        ledger.record(
            &shown,
            port,
            Verdict::Refused {
                reason: r.to_string(),
                hint,
            },
        );
        NotOpened {
            status: "403 Forbidden",
            socks: socks::reply::NOT_ALLOWED,
            why,
        }
    };
    let failed = |why: String, socks: u8| {
        ledger.record(
            &shown,
            port,
            Verdict::Failed {
                reason: why.clone(),
            },
        );
        NotOpened {
            status: "502 Bad Gateway",
            socks,
            why: format!("{shown}:{port}: {why}"),
        }
    };
    let fixed = rules.fixed_address(host);
    let grant = match (rules.judge_name(host, port), fixed) {
        (Ok(grant), _) => grant,
        // A name the policy maps to an address of the host or a private
        // network: no flag may open it, so none is offered.
        (Err(Refusal::NotAllowed | Refusal::Port(_)), Some(ip))
            if !net_rules::is_public(ip) || net_rules::is_local(ip) =>
        {
            return Err(refused(Refusal::PrivateAddress(ip)))
        }
        (Err(r), _) => return Err(refused(r)),
    };
    let addresses: Vec<SocketAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
        rules.judge_address(ip, grant).map_err(refused)?;
        vec![SocketAddr::new(ip, port)]
    } else if let Some(ip) = fixed {
        // The policy said where this name goes; where that is the host or
        // its network, only an exact pattern of a policy file opens it.
        rules.judge_address(ip, grant).map_err(refused)?;
        vec![SocketAddr::new(ip, port)]
    } else {
        // As an absolute name: the resolver's search domains must not turn
        // the name judged into another one.
        let absolute = format!("{host}.");
        let resolved: Vec<SocketAddr> = match (absolute.as_str(), port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(failed(
                    format!("cannot resolve: {e}"),
                    socks::reply::HOST_UNREACHABLE,
                ))
            }
        };
        // Every address must pass: a name that is partly private is a
        // name someone pointed at the inside.
        for a in &resolved {
            rules
                .judge_address(a.ip(), Grant { exact: false })
                .map_err(refused)?;
        }
        resolved
    };
    let mut last = None;
    for a in &addresses {
        match TcpStream::connect_timeout(a, CONNECT_TIMEOUT) {
            Ok(stream) => {
                let counters = ledger.record(&shown, port, Verdict::Allowed { address: a.ip() });
                return Ok((stream, counters));
            }
            Err(e) => last = Some(e),
        }
    }
    let (why, code) = match last {
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => (
            format!("connection refused: {e}"),
            socks::reply::CONNECTION_REFUSED,
        ),
        Some(e) => (
            format!("cannot connect: {e}"),
            socks::reply::HOST_UNREACHABLE,
        ),
        None => ("no address".to_string(), socks::reply::GENERAL_FAILURE),
    };
    Err(failed(why, code))
}

/// What would let the job reach `host:port`, for its denials. Never a
/// flag for an address of the host or of a private network: opening those
/// is a policy file's decision, not one an agent makes because a job
/// asked.
fn hint(host: &str, port: u16, r: &Refusal) -> String {
    let pattern = |p: u16| {
        if net_rules::WEB_PORTS.contains(&p) {
            host.to_string()
        } else if host.contains(':') {
            format!("[{host}]:{p}")
        } else {
            format!("{host}:{p}")
        }
    };
    match r {
        Refusal::NotAllowed | Refusal::Port(_) => format!(
            "--allow-domain {} (or network.allow_domains)",
            pattern(port)
        ),
        Refusal::Denied(p) => format!(
            "network.deny_domains refuses it ({p}); only a policy without that pattern allows it"
        ),
        Refusal::BadName => "ask for a host name or an IP address".to_string(),
        Refusal::PrivateAddress(_) => "only a policy file can open it (network.hosts, or the \
             address in network.allow_domains); think twice: it reaches this host or its \
             network"
            .to_string(),
    }
}

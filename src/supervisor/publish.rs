//! `--publish`: the host's loopback ports that reach the job's own.
//!
//! The listening sockets are made on the host before the job starts (a
//! port in use fails the launch, not the job). Once the job runs, one
//! thread enters the job's network namespace (`setns` changes only the
//! calling thread's) and accepts: each connection gets a socket made there,
//! to the job's `127.0.0.1:PORT`, copied both ways by [`super::relay`].
//! Nothing is added to the sandbox; the threads end with the supervisor,
//! when the job is over.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::job::model::Publish;

/// The host side, bound before the launch.
pub struct Listeners {
    bound: Vec<(Publish, TcpListener)>,
}

impl Listeners {
    /// Binds `127.0.0.1:HOST_PORT` for each port (0: any free one).
    pub fn bind(ports: &[Publish]) -> Result<Listeners, String> {
        let mut bound = Vec::new();
        for p in ports {
            let listener = TcpListener::bind(("127.0.0.1", p.host_port)).map_err(|e| {
                format!(
                    "cannot publish port {} on 127.0.0.1:{}: {e}",
                    p.port, p.host_port
                )
            })?;
            let host_port = listener
                .local_addr()
                .map_err(|e| format!("cannot publish port {}: {e}", p.port))?
                .port();
            bound.push((
                Publish {
                    port: p.port,
                    host_port,
                },
                listener,
            ));
        }
        Ok(Listeners { bound })
    }

    /// What is published where, for the record.
    pub fn published(&self) -> Vec<Publish> {
        self.bound.iter().map(|(p, _)| *p).collect()
    }

    /// Starts forwarding into the network namespace of `pid` (the job's
    /// pid 1, as the host sees it).
    pub fn forward_into(self, pid: i32) -> io::Result<()> {
        if self.bound.is_empty() {
            return Ok(());
        }
        let netns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net"))?.into();
        for (publish, listener) in self.bound {
            let netns = netns.try_clone()?;
            std::thread::Builder::new()
                .name(format!("publish-{}", publish.port))
                .spawn(move || accept_loop(netns, listener, publish.port))?;
        }
        Ok(())
    }
}

/// Connections relayed at once per published port: each costs the
/// supervisor two threads, and anyone on the host may connect.
const MAX_CONNECTIONS: usize = 64;

fn accept_loop(netns: OwnedFd, listener: TcpListener, port: u16) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let open = Arc::new(AtomicUsize::new(0));
    // SAFETY: setns on a namespace descriptor we own; it changes this
    // thread's network namespace only (sockets made later are the job's).
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return;
    }
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            drop(client);
            continue;
        }
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(job) => relay(client, job, open.clone()),
            // Nothing listens yet: the client sees the connection close.
            Err(_) => drop(client),
        }
    }
}

/// Copies both ways on a thread of its own until each side is done, then
/// closes; `open` counts the connections still copying.
fn relay(client: TcpStream, job: TcpStream, open: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    open.fetch_add(1, Ordering::SeqCst);
    let done = open.clone();
    let spawned = std::thread::Builder::new()
        .stack_size(super::relay::THREAD_STACK)
        .spawn(move || {
            let _ =
                super::relay::both_ways(client, job, &[], Default::default(), Default::default());
            done.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        open.fetch_sub(1, Ordering::SeqCst);
    }
}

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

fn accept_loop(netns: OwnedFd, listener: TcpListener, port: u16) {
    // SAFETY: setns on a namespace descriptor we own; it changes this
    // thread's network namespace only (sockets made later are the job's).
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return;
    }
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors: wait rather than spin.
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        // Over the budget (shared with the proxy), the client sees the
        // connection close.
        let Some(slot) = super::relay::Slot::take(super::relay::Use::Publish) else {
            continue;
        };
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(job) => relay(client, job, slot),
            // Nothing listens yet: the client sees the connection close.
            Err(_) => drop(client),
        }
    }
}

/// Copies both ways on a thread of its own until each side is done.
fn relay(client: TcpStream, job: TcpStream, slot: super::relay::Slot) {
    super::relay::cap_buffers(&client);
    super::relay::cap_buffers(&job);
    let _ = std::thread::Builder::new()
        .stack_size(super::relay::THREAD_STACK)
        .spawn(move || {
            let _ =
                super::relay::both_ways(client, job, &[], Default::default(), Default::default());
            drop(slot);
        });
}

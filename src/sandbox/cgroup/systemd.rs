//! A cgroup from systemd for a caller without one: a transient scope with
//! `Delegate=yes`, asked of the caller's own service manager over its
//! D-Bus (`systemd-run --user --scope -p Delegate=yes`, without the tool).
//!
//! A login shell lives in a session scope that belongs to root; the user's
//! service manager owns a subtree and hands parts of it out on request.
//! The supervisor asks for a scope holding only itself, then moves into a
//! leaf of it (`supervisor`): cgroup v2 lets a cgroup with controllers in
//! its `cgroup.subtree_control` hold no processes of its own, so the job's
//! cgroup and the supervisor are siblings under the scope. systemd removes
//! the scope, and what is left in it, once the supervisor is gone.
//!
//! The client is the least of D-Bus that this needs: SASL EXTERNAL over the
//! bus's unix socket, `Hello`, one method call, its reply (little-endian
//! wire format, as every bus daemon on the machines we run on speaks).

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the whole conversation with the bus may take, and then the
/// move into the scope: a bus that stalls or chatters costs the launch
/// this, never more.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The leaf of the scope the supervisor moves into.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// Asks the caller's service manager for the scope
/// `agent-exec-<name>-<pid>.scope` holding this process, delegated to the
/// caller; returns once this process is in it.
pub fn start_scope(name: &str) -> io::Result<()> {
    let address = bus_address().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no user bus (neither DBUS_SESSION_BUS_ADDRESS nor $XDG_RUNTIME_DIR/bus)",
        )
    })?;
    // The supervisor's pid in the name: a restarted job's new supervisor
    // must not meet its predecessor's scope, which systemd collects later.
    let unit = format!("agent-exec-{name}-{}.scope", std::process::id());
    let mut bus = Bus::connect(&address)?;
    bus.call(
        &Message::call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "Hello",
        ),
        "Hello",
    )?;
    let mut call = Message::call(
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
    );
    call.signature = "ssa(sv)a(sa(sv))";
    let body = &mut call.body;
    body.string(&unit);
    body.string("fail");
    // a(sv): the unit's properties.
    body.array(8, |props| {
        props.property("Description", "s", |v| {
            v.string("agent-exec job supervisor")
        });
        props.property("PIDs", "au", |v| {
            v.array(4, |pids| pids.u32(std::process::id()))
        });
        props.property("Delegate", "b", |v| v.u32(1));
        props.property("CollectMode", "s", |v| v.string("inactive-or-failed"));
    });
    // a(sa(sv)): no auxiliary units.
    body.array(8, |_| {});
    bus.call(&call, "StartTransientUnit")?;
    // The reply names the start job; the move happens when it runs.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if own_v2_path().is_some_and(|p| p.ends_with(&format!("/{unit}"))) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("systemd did not move the supervisor into {unit}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Moves this process into `<scope>/supervisor`, leaving the scope free
/// for controllers (see the module doc).
pub fn leave_scope_root(scope_dir: &Path) -> io::Result<()> {
    let leaf = scope_dir.join(SUPERVISOR_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
}

/// The path of our cgroup in the v2 hierarchy (`0::PATH`).
fn own_v2_path() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// The user bus: `DBUS_SESSION_BUS_ADDRESS` (its first `unix:` address
/// with a `path` or `abstract`), else `$XDG_RUNTIME_DIR/bus`.
fn bus_address() -> Option<Address> {
    if let Some(value) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        let value = value.to_string_lossy().into_owned();
        for entry in value.split(';') {
            let Some(params) = entry.strip_prefix("unix:") else {
                continue;
            };
            for kv in params.split(',') {
                match kv.split_once('=') {
                    Some(("path", p)) => return Some(Address::Path(PathBuf::from(unescape(p)))),
                    Some(("abstract", a)) => return Some(Address::Abstract(unescape(a))),
                    _ => {}
                }
            }
        }
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")?;
    let path = Path::new(&runtime).join("bus");
    path.exists().then_some(Address::Path(path))
}

/// What the bus says goes into the job's report: printable, and short.
fn tame(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// D-Bus addresses escape bytes as `%XX`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects with the deadline already set: a blocking connect to a socket
/// whose listener never accepts (a full backlog; an abstract name another
/// user squats) waits for the send timeout, which std only lets us set
/// after connecting.
fn connect_within(address: &Address, timeout: Duration) -> io::Result<UnixStream> {
    use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let limit = nix::sys::time::TimeVal::new(timeout.as_secs() as _, 0);
    socket::setsockopt(&fd, sockopt::SendTimeout, &limit)?;
    let addr = match address {
        Address::Path(path) => UnixAddr::new(path.as_path())?,
        Address::Abstract(name) => UnixAddr::new_abstract(name.as_bytes())?,
    };
    socket::connect(fd.as_raw_fd(), &addr).map_err(|e| {
        if e == nix::errno::Errno::EAGAIN {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the user bus did not accept in time",
            )
        } else {
            io::Error::from(e)
        }
    })?;
    Ok(UnixStream::from(fd))
}

enum Address {
    Path(PathBuf),
    Abstract(String),
}

struct Bus {
    stream: UnixStream,
    serial: u32,
    /// Bytes read past the last message.
    pending: Vec<u8>,
    /// When the conversation must be over.
    deadline: Instant,
}

impl Bus {
    fn connect(address: &Address) -> io::Result<Bus> {
        let stream = connect_within(address, TIMEOUT)?;
        let mut bus = Bus {
            stream,
            serial: 0,
            pending: Vec::new(),
            deadline: Instant::now() + TIMEOUT,
        };
        bus.authenticate()?;
        Ok(bus)
    }

    /// SASL EXTERNAL: the bus knows us by the socket's peer credentials.
    fn authenticate(&mut self) -> io::Result<()> {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.stream.write_all(b"\0")?;
        self.stream
            .write_all(format!("AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        let line = self.read_line()?;
        if !line.starts_with("OK ") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the user bus refused us: {}", tame(&line)),
            ));
        }
        self.stream.write_all(b"BEGIN\r\n")
    }

    /// Reads what is there, waiting at most until the deadline.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the user bus did not answer in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the user bus did not answer in time",
                )
            } else {
                e
            }
        })
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if self.read_some(&mut byte)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.push(byte[0]);
            if line.len() > 4096 {
                return Err(io::Error::other("the user bus sent an endless line"));
            }
        }
        Ok(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
    }

    /// Sends `message` and waits for its reply; a D-Bus error is an error
    /// naming `what`.
    fn call(&mut self, message: &Message, what: &str) -> io::Result<()> {
        self.serial += 1;
        let serial = self.serial;
        self.stream.write_all(&message.encode(serial))?;
        loop {
            let reply = self.next_message()?;
            if reply.reply_serial != Some(serial) {
                continue; // a signal (NameAcquired) or someone else's business
            }
            return match reply.kind {
                2 => Ok(()),
                3 => Err(io::Error::other(format!(
                    "{what}: {}{}",
                    tame(&reply.error_name.unwrap_or_default()),
                    reply
                        .error_message
                        .map(|m| format!(": {}", tame(&m)))
                        .unwrap_or_default()
                ))),
                _ => continue,
            };
        }
    }

    fn next_message(&mut self) -> io::Result<Reply> {
        loop {
            if let Some((reply, used)) = Reply::parse(&self.pending)? {
                self.pending.drain(..used);
                return Ok(reply);
            }
            let mut chunk = [0u8; 4096];
            let n = self.read_some(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&chunk[..n]);
            if self.pending.len() > 1 << 20 {
                return Err(io::Error::other("the user bus sent an oversized message"));
            }
        }
    }
}

/// A method call to encode.
struct Message {
    destination: &'static str,
    path: &'static str,
    interface: &'static str,
    member: &'static str,
    signature: &'static str,
    body: Writer,
}

impl Message {
    fn call(
        destination: &'static str,
        path: &'static str,
        interface: &'static str,
        member: &'static str,
    ) -> Message {
        Message {
            destination,
            path,
            interface,
            member,
            signature: "",
            body: Writer::default(),
        }
    }

    fn encode(&self, serial: u32) -> Vec<u8> {
        let mut header = Writer::default();
        header.bytes(&[b'l', 1, 0, 1]);
        header.u32(self.body.buf.len() as u32);
        header.u32(serial);
        header.array(8, |fields| {
            fields.field(1, "o", self.path);
            fields.field(6, "s", self.destination);
            fields.field(2, "s", self.interface);
            fields.field(3, "s", self.member);
            if !self.signature.is_empty() {
                fields.align(8);
                fields.bytes(&[8]);
                fields.signature("g");
                fields.signature(self.signature);
            }
        });
        header.align(8);
        header.buf.extend_from_slice(&self.body.buf);
        header.buf
    }
}

/// D-Bus marshalling, little-endian; alignment is relative to the start
/// of the message, which for a body is also 8-aligned.
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, to: usize) {
        while self.buf.len() % to != 0 {
            self.buf.push(0);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn signature(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array whose elements align to `element_align`; its length counts
    /// from after the padding to the first element.
    fn array(&mut self, element_align: usize, fill: impl FnOnce(&mut Writer)) {
        self.align(4);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.align(element_align);
        let start = self.buf.len();
        fill(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    /// A header field `(yv)` holding a string-like value.
    fn field(&mut self, code: u8, kind: &str, value: &str) {
        self.align(8);
        self.bytes(&[code]);
        self.signature(kind);
        self.string(value);
    }
    /// A property `(sv)`.
    fn property(&mut self, key: &str, kind: &str, value: impl FnOnce(&mut Writer)) {
        self.align(8);
        self.string(key);
        self.signature(kind);
        value(self);
    }
}

/// What we need of a received message.
struct Reply {
    kind: u8,
    reply_serial: Option<u32>,
    error_name: Option<String>,
    error_message: Option<String>,
}

impl Reply {
    /// One whole message at the front of `buf`, and its length; `None`
    /// until it has all arrived.
    fn parse(buf: &[u8]) -> io::Result<Option<(Reply, usize)>> {
        if buf.len() < 16 {
            return Ok(None);
        }
        if buf[0] != b'l' {
            return Err(io::Error::other("the user bus speaks big-endian D-Bus"));
        }
        let u32_at = |i: usize| -> Option<u32> {
            buf.get(i..i + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        let body_len = u32_at(4).unwrap_or(0) as usize;
        let fields_len = u32_at(12).unwrap_or(0) as usize;
        let header_end = (16 + fields_len).div_ceil(8) * 8;
        let total = header_end + body_len;
        if total > 1 << 20 {
            return Err(io::Error::other("the user bus sent an oversized message"));
        }
        if buf.len() < total {
            return Ok(None);
        }
        let mut reply = Reply {
            kind: buf[1],
            reply_serial: None,
            error_name: None,
            error_message: None,
        };
        let mut signature = String::new();
        let mut i = 16;
        let read_string = |at: usize| -> Option<(String, usize)> {
            let len = u32_at(at)? as usize;
            let s = buf.get(at + 4..at + 4 + len)?;
            Some((String::from_utf8_lossy(s).into_owned(), at + 4 + len + 1))
        };
        while i < 16 + fields_len {
            i = i.div_ceil(8) * 8;
            let Some(&code) = buf.get(i) else { break };
            let Some(&sig_len) = buf.get(i + 1) else {
                break;
            };
            let kind = buf.get(i + 2..i + 2 + sig_len as usize).unwrap_or(b"");
            let mut at = i + 2 + sig_len as usize + 1;
            match kind {
                b"u" => {
                    at = at.div_ceil(4) * 4;
                    if code == 5 {
                        reply.reply_serial = u32_at(at);
                    }
                    at += 4;
                }
                b"s" | b"o" => {
                    at = at.div_ceil(4) * 4;
                    let Some((s, next)) = read_string(at) else {
                        break;
                    };
                    if code == 4 {
                        reply.error_name = Some(s);
                    }
                    at = next;
                }
                b"g" => {
                    let len = *buf.get(at).unwrap_or(&0) as usize;
                    signature =
                        String::from_utf8_lossy(buf.get(at + 1..at + 1 + len).unwrap_or(b""))
                            .into_owned();
                    at += 1 + len + 1;
                }
                _ => break, // not a field we read; the ones we need come first in practice
            }
            i = at;
        }
        if reply.kind == 3 && signature.starts_with('s') {
            reply.error_message = read_string(header_end).map(|(s, _)| s);
        }
        Ok(Some((reply, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call is one whole message: header, fields padded to 8, body; the
    /// real bus is spoken to in `tests/rootless.rs`.
    #[test]
    fn a_call_is_a_whole_little_endian_message_that_parses_back() {
        let mut call = Message::call("a.b", "/a/b", "a.b.C", "Do");
        call.signature = "su";
        call.body.string("x");
        call.body.u32(7);
        let bytes = call.encode(3);
        assert_eq!(&bytes[..4], &[b'l', 1, 0, 1]);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 12);
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
        let (parsed, used) = Reply::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(parsed.kind, 1);
        assert!(Reply::parse(&bytes[..bytes.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn arrays_count_from_their_first_element() {
        let mut w = Writer::default();
        w.u32(1); // 4 bytes: the array's padding to 8 comes after its length
        w.array(8, |a| {
            a.property("Delegate", "b", |v| v.u32(1));
        });
        let len = u32::from_le_bytes(w.buf[4..8].try_into().unwrap());
        assert_eq!(len as usize, w.buf.len() - 8);
    }

    /// A bus that chatters without ever answering (or a hostile one) costs
    /// the launch the deadline, never a hang.
    #[test]
    fn a_bus_that_never_answers_costs_the_deadline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut peer, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            let mut line = Vec::new();
            // The NUL byte, then the AUTH line.
            while !line.ends_with(b"\r\n") {
                if peer.read(&mut byte).unwrap_or(0) == 0 {
                    return;
                }
                line.push(byte[0]);
            }
            let _ = peer.write_all(b"OK 0123456789abcdef\r\n");
            // Signals, forever: well-formed messages that answer nothing.
            let mut signal = Message::call("x.y", "/x", "x.y", "Noise");
            signal.body.string("noise");
            signal.signature = "s";
            let mut bytes = signal.encode(1);
            bytes[1] = 4; // a signal
            while peer.write_all(&bytes).is_ok() {}
        });
        let started = Instant::now();
        let mut bus = Bus::connect(&Address::Path(path)).unwrap();
        let hello = Message::call("a.b", "/a/b", "a.b", "Hello");
        let err = bus.call(&hello, "Hello").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    }

    /// A listener that never accepts (its backlog full, or an abstract
    /// name another user squats) costs the deadline, never a hang.
    #[test]
    fn a_bus_that_never_accepts_costs_the_deadline_only() {
        use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus");
        let listener = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        socket::bind(
            std::os::fd::AsRawFd::as_raw_fd(&listener),
            &UnixAddr::new(path.as_path()).unwrap(),
        )
        .unwrap();
        socket::listen(&listener, Backlog::new(0).unwrap()).unwrap();
        // Fill the backlog: the next connect waits for an accept that
        // never comes.
        let mut held = Vec::new();
        for _ in 0..4 {
            let fd = socket::socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            let _ = socket::connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &UnixAddr::new(path.as_path()).unwrap(),
            );
            held.push(fd);
        }
        let started = Instant::now();
        let err = connect_within(&Address::Path(path), Duration::from_secs(1))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn bus_addresses_unescape() {
        assert_eq!(unescape("/run/user/1000/bus"), "/run/user/1000/bus");
        assert_eq!(unescape("/tmp/a%20b"), "/tmp/a b");
    }
}

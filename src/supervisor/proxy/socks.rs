//! The SOCKS5 side of the proxy (RFC 1928): no authentication, `CONNECT`
//! only. A name is judged as the job gave it (`socks5h://`, the proxy
//! resolves); an address as itself.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream};

/// What the job asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub host: String,
    pub port: u16,
}

/// RFC 1928 reply codes.
pub mod reply {
    pub const SUCCEEDED: u8 = 0;
    pub const GENERAL_FAILURE: u8 = 1;
    pub const NOT_ALLOWED: u8 = 2;
    pub const HOST_UNREACHABLE: u8 = 4;
    pub const CONNECTION_REFUSED: u8 = 5;
    pub const COMMAND_NOT_SUPPORTED: u8 = 7;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;
}

/// Reads the greeting and the request (the version byte, 5, is already
/// read). `Ok(None)`: the job asked for something we do not serve, and
/// was told so.
pub fn read_request(client: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut n = [0u8; 1];
    client.read_exact(&mut n)?;
    let mut methods = vec![0u8; n[0] as usize];
    client.read_exact(&mut methods)?;
    if !methods.contains(&0) {
        // No acceptable method: we offer only "no authentication".
        client.write_all(&[5, 0xff])?;
        return Ok(None);
    }
    client.write_all(&[5, 0])?;
    let mut head = [0u8; 4];
    client.read_exact(&mut head)?;
    let [version, command, _, kind] = head;
    if version != 5 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let host = match kind {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a)?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; len[0] as usize];
            client.read_exact(&mut name)?;
            crate::sandbox::net_rules::normalise(&String::from_utf8_lossy(&name))
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a)?;
            Ipv6Addr::from(a).to_string()
        }
        _ => {
            answer(client, reply::ADDRESS_TYPE_NOT_SUPPORTED)?;
            return Ok(None);
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    if command != 1 {
        // BIND and UDP ASSOCIATE would open ways in and out we do not judge.
        answer(client, reply::COMMAND_NOT_SUPPORTED)?;
        return Ok(None);
    }
    Ok(Some(Request {
        host,
        port: u16::from_be_bytes(port),
    }))
}

/// Sends the reply `code` (bound address left unspecified).
pub fn answer(client: &mut TcpStream, code: u8) -> io::Result<()> {
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0])
}

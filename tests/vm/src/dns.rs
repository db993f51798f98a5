//! Round-robin DNS for the public addresses: `dnsmasq` in a namespace answering
//! one name with every public address, and a resolver that asks it directly and
//! keeps the answer's order.
//!
//! ```text
//!   client netns
//!     resolve_a() ──UDP 127.0.0.1:53──> dnsmasq --host-record=nas.test,<ip> (xN)
//!                 <── A records, order rotated on every answer
//! ```
//!
//! The resolver is ours, a few dozen lines over a UDP socket made inside the
//! namespace ([`crate::watch::in_netns`]), rather than glibc's: glibc re-sorts
//! the addresses of an answer (RFC 6724 destination ordering), so
//! `getaddrinfo` callers, libnfs's tools among them, see the same first address
//! every time and do not spread over the nodes; what dnsmasq sends is what a
//! client that takes the first answer in order would use.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::process::Background;
use crate::sandbox::NetNs;
use crate::wait::wait_until;
use crate::watch::in_netns;

/// The dnsmasq binary (Debian's `dnsmasq-base`).
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// Where [`Dnsmasq`] listens, inside its namespace.
pub const LISTEN: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53);

/// How long one query waits for its answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A `dnsmasq` answering one name with a set of IPv4 addresses, in a network
/// namespace, on [`LISTEN`]. It reads no configuration, hosts file or upstream
/// server. Dropping it ends the process (by PID).
#[derive(Debug)]
pub struct Dnsmasq {
    process: Background,
    netns: PathBuf,
    name: String,
}

impl Dnsmasq {
    /// Starts dnsmasq in `netns` with one `--host-record` per address, and waits
    /// until it answers `name`.
    pub fn start(netns: &NetNs, name: &str, addrs: &[Ipv4Addr]) -> anyhow::Result<Self> {
        if !Path::new(DNSMASQ).is_file() {
            bail!("{DNSMASQ} is missing (apt-get install dnsmasq-base)");
        }
        let mut cmd: Command = netns.command(DNSMASQ);
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--log-facility=-",
        ])
        .arg(format!("--listen-address={}", LISTEN.ip()))
        .arg(format!("--port={}", LISTEN.port()));
        for addr in addrs {
            cmd.arg(format!("--host-record={name},{addr}"));
        }
        let mut process = Background::spawn(&format!("dnsmasq in {}", netns.name()), cmd)?;
        let netns = netns.path();
        let ready = wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = process.try_wait() {
                return Ok(Err(format!("dnsmasq exited with {status}")));
            }
            match resolve_a(&netns, LISTEN, name, QUERY_TIMEOUT) {
                Ok(answer) if !answer.is_empty() => Ok(Ok(())),
                Ok(_) => Err("an empty answer".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        });
        let why = match ready {
            Ok(Ok(())) => {
                return Ok(Self {
                    process,
                    netns,
                    name: name.to_owned(),
                })
            }
            Ok(Err(why)) => why,
            Err(t) => t.to_string(),
        };
        Err(anyhow!(
            "dnsmasq never answered {name}: {why}\n---- its log ----\n{}",
            process.log()
        ))
    }

    /// Asks it for the A records of its name: the addresses in the answer's
    /// order.
    pub fn resolve(&self) -> io::Result<Vec<Ipv4Addr>> {
        resolve_a(&self.netns, LISTEN, &self.name, QUERY_TIMEOUT)
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What it has logged.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Sends one A query for `name` to `server` from inside the network namespace
/// at `netns` (its bind mount, e.g. [`NetNs::path`]) and returns the addresses
/// of the answer section in the order received.
pub fn resolve_a(
    netns: &Path,
    server: SocketAddrV4,
    name: &str,
    timeout: Duration,
) -> io::Result<Vec<Ipv4Addr>> {
    // Different ids for successive queries, so a late answer to an earlier one
    // is not taken for this one's.
    let id = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        & 0xffff) as u16;
    let query = encode_query(id, name)?;
    let socket = in_netns(netns, || {
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    })?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(&query, server)?;
    let mut buf = [0u8; 1500];
    loop {
        let (len, from) = socket.recv_from(&mut buf)?;
        if from != SocketAddr::V4(server) {
            continue;
        }
        match parse_a_answers(id, &buf[..len]) {
            Err(ParseError::OtherId) => continue,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            Ok(addrs) => return Ok(addrs),
        }
    }
}

/// A DNS query for the A records of `name`, recursion desired.
///
/// ```text
///   header (12 bytes): id | flags 0x0100 (RD) | qdcount 1 | an, ns, ar 0
///   question: labels (length byte + bytes)... 0 | qtype 1 (A) | qclass 1 (IN)
/// ```
pub fn encode_query(id: u16, name: &str) -> io::Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(18 + name.len());
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0x0100u16.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&[0; 6]);
    for label in name.trim_end_matches('.').split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|len| (1..64).contains(len))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad label {label:?} in {name:?}"),
                )
            })?;
        msg.push(len);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&1u16.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    Ok(msg)
}

/// Why an answer was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The answer is to another query (its id differs): keep waiting.
    OtherId,
    /// The message is a query, not an answer.
    NotAnAnswer,
    /// The server answered with an error code (3: no such name, 5: refused).
    Rcode(u8),
    /// The message ends inside the named part.
    Truncated(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OtherId => write!(f, "answer to another query"),
            Self::NotAnAnswer => write!(f, "not an answer"),
            Self::Rcode(code) => write!(f, "server answered with rcode {code}"),
            Self::Truncated(at) => write!(f, "message truncated in the {at}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The A records (class IN) of an answer to query `id`, in the answer's order;
/// other record types (a CNAME on the way) are skipped.
pub fn parse_a_answers(id: u16, msg: &[u8]) -> Result<Vec<Ipv4Addr>, ParseError> {
    let u16_at = |pos: usize, what| {
        msg.get(pos..pos + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(ParseError::Truncated(what))
    };
    if u16_at(0, "header")? != id {
        return Err(ParseError::OtherId);
    }
    let flags = u16_at(2, "header")?;
    if flags & 0x8000 == 0 {
        return Err(ParseError::NotAnAnswer);
    }
    let rcode = (flags & 0x000f) as u8;
    if rcode != 0 {
        return Err(ParseError::Rcode(rcode));
    }
    let questions = u16_at(4, "header")?;
    let answers = u16_at(6, "header")?;
    let mut pos = 12;
    for _ in 0..questions {
        pos = skip_name(msg, pos, "question")? + 4;
    }
    let mut addrs = Vec::new();
    for _ in 0..answers {
        pos = skip_name(msg, pos, "answer")?;
        let rtype = u16_at(pos, "answer")?;
        let class = u16_at(pos + 2, "answer")?;
        let rdlength = usize::from(u16_at(pos + 8, "answer")?);
        let rdata = msg
            .get(pos + 10..pos + 10 + rdlength)
            .ok_or(ParseError::Truncated("answer data"))?;
        if rtype == 1 && class == 1 && rdlength == 4 {
            addrs.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        pos += 10 + rdlength;
    }
    Ok(addrs)
}

/// The position just past the (possibly compressed) name at `pos`.
fn skip_name(msg: &[u8], mut pos: usize, what: &'static str) -> Result<usize, ParseError> {
    loop {
        let len = *msg.get(pos).ok_or(ParseError::Truncated(what))?;
        match len {
            0 => return Ok(pos + 1),
            // A pointer ends the name: two bytes, whatever it points to.
            l if l & 0xc0 == 0xc0 => {
                msg.get(pos + 1).ok_or(ParseError::Truncated(what))?;
                return Ok(pos + 2);
            }
            l => pos += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_query_for_an_a_record() {
        let q = encode_query(0x1234, "nas.test").unwrap();
        let want: &[u8] = &[
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, //
            3, b'n', b'a', b's', 4, b't', b'e', b's', b't', 0, //
            0, 1, 0, 1,
        ];
        assert_eq!(q, want);
        assert!(encode_query(1, "a..b").is_err());
    }

    /// An answer as dnsmasq sends it: the question, then A records whose names
    /// point back at it (0xc00c).
    fn answer(id: u16, addrs: &[[u8; 4]]) -> Vec<u8> {
        let mut msg = encode_query(id, "nas.test").unwrap();
        msg[2] = 0x85; // QR, AA, RD
        msg[3] = 0x80; // RA, rcode 0
        msg[7] = addrs.len() as u8;
        for a in addrs {
            msg.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
            msg.extend_from_slice(a);
        }
        msg
    }

    #[test]
    fn parses_answers_in_their_order() {
        let msg = answer(7, &[[10, 0, 20, 102], [10, 0, 20, 101]]);
        assert_eq!(
            parse_a_answers(7, &msg).unwrap(),
            [Ipv4Addr::new(10, 0, 20, 102), Ipv4Addr::new(10, 0, 20, 101)]
        );
    }

    #[test]
    fn rejects_what_is_not_our_answer() {
        let msg = answer(7, &[[10, 0, 20, 101]]);
        assert_eq!(parse_a_answers(8, &msg), Err(ParseError::OtherId));
        assert_eq!(
            parse_a_answers(7, &encode_query(7, "nas.test").unwrap()),
            Err(ParseError::NotAnAnswer)
        );
        let mut refused = msg.clone();
        refused[3] = 0x85;
        assert_eq!(parse_a_answers(7, &refused), Err(ParseError::Rcode(5)));
        for cut in 0..msg.len() {
            assert!(parse_a_answers(7, &msg[..cut]).is_err(), "cut at {cut}");
        }
    }
}

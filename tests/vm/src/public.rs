//! Public addresses seen from outside: a TCP service in every node that answers with
//! the node's name, a client in the client namespace that asks it, `ctdb ip` parsed,
//! and a power loss that takes both of a node's links.
//!
//! ```text
//!   client netns 10.0.20.200 ──TCP 4445──> 10.0.20.10x (pub0 of whichever node
//!                                          hosts it) ── ctdbrs-serve-name "node<pnn>"
//! ```
//!
//! The client's sockets are made on a thread that has entered the client namespace
//! ([`crate::watch::in_netns`]), so a connect costs no process start and its timing is
//! the network's.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use ctdbd::protocol::control::Connection;
use ctdbd::protocol::packet::CURRENT_NODE;
use ctdbd::protocol::{Body, Framer, Header, Opcode, Packet, ReqControl};

use crate::cluster::Cluster;
use crate::daemon::{built_binary, Tool};
use crate::process::Background;
use crate::sandbox::NetNs;
use crate::wait::wait_until;
use crate::watch::in_netns;

/// The port every node's service listens on.
pub const SERVICE_PORT: u16 = 4445;

/// The harness's default public address of `i`: `10.0.20.(101 + i)`.
pub fn default_public(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        10,
        0,
        20,
        101 + u8::try_from(i).expect("fewer than 150 addresses"),
    )
}

/// The name node `pnn`'s service answers with.
pub fn service_name(pnn: u32) -> String {
    format!("node{pnn}")
}

/// The pnn in a service's answer (`node2` -> 2).
pub fn pnn_of_answer(answer: &str) -> Option<u32> {
    answer.trim().strip_prefix("node")?.parse().ok()
}

/// Starts `ctdbrs-serve-name node<pnn> 4445` in every present node and waits until
/// each is listening. The processes end when the returned handles drop.
pub fn start_services(cluster: &Cluster) -> anyhow::Result<Vec<Background>> {
    let program = built_binary("ctdbrs-serve-name")?;
    let mut services = Vec::new();
    for pnn in cluster.present_pnns() {
        let mut cmd = cluster.node(pnn).command(&program);
        cmd.arg(service_name(pnn)).arg(SERVICE_PORT.to_string());
        let service = Background::spawn(&format!("node {pnn} service"), cmd)?;
        wait_until(Duration::from_secs(10), || {
            if service.log().contains("listening") {
                Ok(())
            } else {
                Err(service.log())
            }
        })
        .map_err(|t| anyhow!("node {pnn}'s service never listened: {t}"))?;
        services.push(service);
    }
    Ok(services)
}

/// Opens a TCP connection from the client namespace to `addr`:4445, within
/// `timeout`, and reads the service's answer line (within `timeout` too). Returns the
/// connection (still open) and the answer.
pub fn open(client: &NetNs, addr: Ipv4Addr, timeout: Duration) -> io::Result<(TcpStream, String)> {
    let stream = in_netns(&client.path(), || {
        TcpStream::connect_timeout(&SocketAddr::from((addr, SERVICE_PORT)), timeout)
    })?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed without an answer",
        ));
    }
    Ok((stream, line.trim().to_owned()))
}

/// Asks the service at `addr` who it is: the answering node's pnn.
pub fn ask(client: &NetNs, addr: Ipv4Addr, timeout: Duration) -> io::Result<u32> {
    let (_, answer) = open(client, addr, timeout)?;
    pnn_of_answer(&answer).ok_or_else(|| io::Error::other(format!("odd answer {answer:?}")))
}

/// Asks `addr` until a node other than `not` answers (`not: None`: any node);
/// returns that node and the time since `since`. Each attempt has `attempt` to
/// connect and answer.
pub fn ask_until_answered(
    client: &NetNs,
    addr: Ipv4Addr,
    not: Option<u32>,
    since: Instant,
    attempt: Duration,
    timeout: Duration,
) -> anyhow::Result<(u32, Duration)> {
    let mut last = String::new();
    while since.elapsed() < timeout {
        match ask(client, addr, attempt) {
            Ok(pnn) if Some(pnn) != not => return Ok((pnn, since.elapsed())),
            Ok(pnn) => last = format!("answered by node {pnn}"),
            Err(e) => {
                last = e.to_string();
                // A refused or unreachable connect returns at once; do not spin.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    Err(anyhow!(
        "{addr}:{SERVICE_PORT} not answered by a node other than {not:?} within {timeout:?}; last: {last}"
    ))
}

/// `ctdb ip` (the stock tool) on node `on`: every public address it knows and its
/// owner (`None` for -1, unassigned).
pub fn ctdb_ip(cluster: &Cluster, on: u32) -> Result<BTreeMap<Ipv4Addr, Option<u32>>, String> {
    let out = cluster.ctdb_ok(on, Tool::observer(), &["ip"])?;
    parse_ctdb_ip(&out.stdout).map_err(|e| format!("{e}\n{out}"))
}

/// Parses `ctdb ip`: a `Public IPs on node N` header, then `<addr> <pnn>` lines.
pub fn parse_ctdb_ip(text: &str) -> Result<BTreeMap<Ipv4Addr, Option<u32>>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.starts_with("Public IPs on ") => {}
        other => return Err(format!("unexpected header {other:?}")),
    }
    lines
        .map(|line| {
            let (addr, pnn) = line
                .split_once(' ')
                .ok_or_else(|| format!("odd line {line:?}"))?;
            let addr = addr
                .parse()
                .map_err(|_| format!("bad address in {line:?}"))?;
            let pnn = match pnn.trim() {
                "-1" => None,
                p => Some(p.parse().map_err(|_| format!("bad pnn in {line:?}"))?),
            };
            Ok((addr, pnn))
        })
        .collect()
}

/// Waits until `ctdb ip` on node `pnn` shows it hosting a public address, and
/// returns one such address (the lowest).
pub fn address_held_by(cluster: &Cluster, pnn: u32, timeout: Duration) -> anyhow::Result<Ipv4Addr> {
    wait_until(timeout, || {
        let ips = ctdb_ip(cluster, pnn)?;
        ips.iter()
            .find(|(_, host)| **host == Some(pnn))
            .map(|(addr, _)| *addr)
            .ok_or_else(|| format!("node {pnn} holds no address: {ips:?}"))
    })
    .with_context(|| format!("an address held by node {pnn}"))
}

/// Waits until `ctdb ip` on every node of `on` shows exactly `addrs`, each hosted by
/// a node of `hosts`, all nodes agreeing, and returns that placement. The nodes are
/// asked one after another, so a takeover run between two answers can make them
/// disagree for a moment: asked again until they agree or `timeout` passes.
pub fn wait_placed(
    cluster: &Cluster,
    on: &[u32],
    addrs: &[Ipv4Addr],
    hosts: &[u32],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<Ipv4Addr, u32>> {
    let what = format!("{addrs:?} all hosted by nodes of {hosts:?}, every node agreeing");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let views = cluster.wait_on(on, left, &what, |c, pnn| {
            let view = ctdb_ip(c, pnn)?;
            let keys: Vec<Ipv4Addr> = view.keys().copied().collect();
            let mut want = addrs.to_vec();
            want.sort();
            let placed: Option<BTreeMap<Ipv4Addr, u32>> = view
                .iter()
                .map(|(a, p)| p.filter(|p| hosts.contains(p)).map(|p| (*a, p)))
                .collect();
            match placed {
                Some(placed) if keys == want => Ok(placed),
                _ => Err(format!("{view:?}")),
            }
        })?;
        let first = views[0].1.clone();
        match views.iter().find(|(_, v)| *v != first) {
            None => return Ok(first),
            Some((pnn, other)) if std::time::Instant::now() >= deadline => {
                return Err(anyhow!(
                    "nodes disagree on the placement: node {} says {first:?}, node {pnn} says {other:?}",
                    views[0].0
                ));
            }
            Some(_) => std::thread::sleep(crate::wait::POLL_INTERVAL),
        }
    }
}

/// Power loss of a whole machine: [`Cluster::power_off`] (private link cut, daemon
/// killed; its guardian removes its addresses), then its public link cut too, so
/// that nothing of it is left on the public network. In that order: a public link
/// cut while the daemon lives is an interface failure, which the daemon handles
/// itself at once (it releases the addresses and asks for a takeover run).
pub fn power_off_machine(cluster: &mut Cluster, pnn: u32) -> anyhow::Result<()> {
    cluster.power_off(pnn)?;
    cluster
        .fabric()
        .ip(&["link", "set", &format!("n{pnn}pub"), "down"])
        .with_context(|| format!("cutting node {pnn}'s public link"))
}

/// Undoes [`power_off_machine`]: links up, daemon started (not awaited).
pub fn power_on_machine(cluster: &mut Cluster, pnn: u32) -> anyhow::Result<()> {
    cluster
        .fabric()
        .ip(&["link", "set", &format!("n{pnn}pub"), "up"])
        .with_context(|| format!("restoring node {pnn}'s public link"))?;
    cluster.power_on(pnn)
}

/// The daemon's client socket inside a node.
pub const SOCKET: &str = "/run/ctdb/ctdbd.socket";

/// Reads one whole packet from a daemon's socket within `timeout` (the socket needs
/// a short read timeout of its own, which sets the polling period).
pub fn read_packet(stream: &mut UnixStream, timeout: Duration) -> anyhow::Result<Packet> {
    let framer = Framer::for_clients();
    let mut buf = Vec::new();
    let start = Instant::now();
    loop {
        if let Some(len) = framer.frame_len(&buf)? {
            return Ok(Packet::decode(&buf[..len])?);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => bail!("connection closed after {} bytes, no reply", buf.len()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if start.elapsed() > timeout {
                    bail!("no reply within {timeout:?} ({} bytes read)", buf.len());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Registers `conn` with node `pnn`'s daemon as smbd does: TCP_CLIENT on its client
/// socket, which the daemon copies to every node. The daemon forgets the connection
/// when this client goes, so the returned socket must stay open.
pub fn register_connection(
    cluster: &Cluster,
    pnn: u32,
    conn: Connection,
) -> anyhow::Result<UnixStream> {
    let mut stream = UnixStream::connect(cluster.node(pnn).path(SOCKET))
        .with_context(|| format!("connecting to node {pnn}'s socket"))?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    let request = Packet {
        header: Header {
            generation: 0,
            destnode: CURRENT_NODE,
            srcnode: 0,
            reqid: 1,
        },
        body: Body::ReqControl(ReqControl {
            opcode: Opcode::TCP_CLIENT.0,
            srvid: 0,
            client_id: 0,
            flags: 0,
            data: conn.encode(),
        }),
    };
    stream.write_all(&request.encode())?;
    match read_packet(&mut stream, Duration::from_secs(5))?.body {
        Body::ReplyControl(r) if r.status == 0 => Ok(stream),
        other => bail!("TCP_CLIENT refused: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctdb_ip() {
        let text = "Public IPs on node 0\n10.0.20.101 1\n10.0.20.102 -1\n";
        let ips = parse_ctdb_ip(text).unwrap();
        assert_eq!(ips[&Ipv4Addr::new(10, 0, 20, 101)], Some(1));
        assert_eq!(ips[&Ipv4Addr::new(10, 0, 20, 102)], None);
        assert!(parse_ctdb_ip("").is_err());
        assert_eq!(pnn_of_answer("node2\n"), Some(2));
    }
}

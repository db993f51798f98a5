//! CTDB's tunnels between clients on two nodes, on real daemons (ours, and the
//! stock 4.17 daemon with `CTDB_RS_DAEMON=stock`, which shows the expectations).
//!
//! ```text
//!   node 0: client A ──TUNNEL_REGISTER T──> ctdbd ──REQ_TUNNEL(T)──> ctdbd :node 1
//!                                                                  └─> client B (registered T)
//! ```

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ctdbd::protocol::packet::{ReqTunnel, CURRENT_NODE, TUNNEL_FLAG_REPLY, TUNNEL_FLAG_REQUEST};
use ctdbd::protocol::{Body, Header, Opcode, Packet, ReqControl};
use vm::public::read_packet;
use vm::{Cluster, Daemon};

const SOCKET: &str = "/run/ctdb/ctdbd.socket";
const TIMEOUT: Duration = Duration::from_secs(60);
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// CTDB's own test tunnel id (`CTDB_TUNNEL_TEST`).
const TUNNEL: u64 = 0xFFFF_FFFF_0000_0000;

fn connect(cluster: &Cluster, pnn: u32) -> anyhow::Result<UnixStream> {
    let stream = UnixStream::connect(cluster.node(pnn).path(SOCKET))?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(stream)
}

/// Sends a tunnel (de)registration; its status.
fn tunnel_control(client: &mut UnixStream, opcode: Opcode, reqid: u32) -> anyhow::Result<i32> {
    let packet = Packet {
        header: Header {
            generation: 0,
            destnode: CURRENT_NODE,
            srcnode: 0,
            reqid,
        },
        body: Body::ReqControl(ReqControl {
            opcode: opcode.0,
            srvid: TUNNEL,
            client_id: 0,
            flags: 0,
            data: Vec::new(),
        }),
    };
    client.write_all(&packet.encode())?;
    let reply = read_packet(client, REPLY_TIMEOUT)?;
    match reply.body {
        Body::ReplyControl(r) if reply.header.reqid == reqid => Ok(r.status),
        other => anyhow::bail!("{opcode:?}: expected its reply, got {other:?}"),
    }
}

fn send_tunnel(client: &mut UnixStream, to: u32, flags: u32, data: &[u8]) -> anyhow::Result<()> {
    let packet = Packet {
        header: Header {
            generation: 0,
            destnode: to,
            srcnode: 0,
            reqid: 0,
        },
        body: Body::ReqTunnel(ReqTunnel {
            tunnel_id: TUNNEL,
            flags,
            data: data.to_vec(),
        }),
    };
    client.write_all(&packet.encode())?;
    Ok(())
}

fn receive_tunnel(client: &mut UnixStream, who: &str) -> anyhow::Result<ReqTunnel> {
    let packet = read_packet(client, REPLY_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("{who} expected a tunnel packet: {e:#}"))?;
    match packet.body {
        Body::ReqTunnel(t) => Ok(t),
        other => anyhow::bail!("{who} expected a tunnel packet, got {other:?}"),
    }
}

/// Scenario: a request and its reply through a tunnel between two nodes.
///
/// Given two nodes, a client on each registered for one tunnel id,
/// When a second client on node 0 tries to register the same id, then it is
///   refused (−1);
/// When client A on node 0 sends a request to node 1 on the tunnel, then client B
///   on node 1 gets it with its flags and data, and B's reply to node 0 reaches A;
/// When A deregisters, then a second deregistration is refused.
#[test]
fn a_tunnel_carries_a_request_and_its_reply_between_nodes() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder().nodes(2).shared_volume(true).build()?;
    cluster.start(Daemon::from_env()?, TIMEOUT)?;
    cluster.wait_agreement(&[0, 1], &[0, 1], TIMEOUT)?;
    let mut a = connect(&cluster, 0)?;
    let mut b = connect(&cluster, 1)?;
    let mut intruder = connect(&cluster, 0)?;
    assert_eq!(tunnel_control(&mut a, Opcode::TUNNEL_REGISTER, 1)?, 0);
    assert_eq!(tunnel_control(&mut b, Opcode::TUNNEL_REGISTER, 2)?, 0);
    assert_eq!(
        tunnel_control(&mut intruder, Opcode::TUNNEL_REGISTER, 3)?,
        -1,
        "a second client registered a taken tunnel id"
    );

    send_tunnel(&mut a, 1, TUNNEL_FLAG_REQUEST, b"ping from node 0")?;
    let got = receive_tunnel(&mut b, "client B on node 1")?;
    assert_eq!(
        (got.flags, got.data.as_slice()),
        (TUNNEL_FLAG_REQUEST, &b"ping from node 0"[..])
    );
    send_tunnel(&mut b, 0, TUNNEL_FLAG_REPLY, b"pong from node 1")?;
    let got = receive_tunnel(&mut a, "client A on node 0")?;
    assert_eq!(
        (got.flags, got.data.as_slice()),
        (TUNNEL_FLAG_REPLY, &b"pong from node 1"[..])
    );

    assert_eq!(tunnel_control(&mut a, Opcode::TUNNEL_DEREGISTER, 4)?, 0);
    assert_eq!(tunnel_control(&mut a, Opcode::TUNNEL_DEREGISTER, 5)?, -1);
    Ok(())
}

//! A client of one node's daemon that talks CTDB's protocol on its socket, as
//! smbd does: controls, and calls on records (the record benchmarks and the
//! record tests use it).

use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{bail, Context as _};
use ctdbd::protocol::call::{call_flags, call_id, ReqCall};
use ctdbd::protocol::packet::CURRENT_NODE;
use ctdbd::protocol::{Body, Header, Opcode, Packet, ReplyControl, ReqControl};

use crate::public::read_packet;
use crate::Node;

/// Where a node's daemon listens for clients, inside the node.
pub const SOCKET: &str = "/run/ctdb/ctdbd.socket";
/// How long a control or a call may take to be answered.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one node's daemon.
pub struct Connection {
    /// The socket.
    pub stream: UnixStream,
    /// The node.
    pub pnn: u32,
    /// The last request id used.
    pub reqid: u32,
}

impl Connection {
    /// Connects to node `pnn`'s daemon.
    pub fn open(node: &Node, pnn: u32) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(node.path(SOCKET))
            .with_context(|| format!("connecting to node {pnn}"))?;
        stream.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Connection {
            stream,
            pnn,
            reqid: 1,
        })
    }
}

impl Connection {
    /// A fresh request id.
    pub fn next_reqid(&mut self) -> u32 {
        self.reqid += 1;
        self.reqid
    }

    /// A control and its answer, whatever its status.
    fn exchange(&mut self, opcode: Opcode, data: Vec<u8>) -> anyhow::Result<ReplyControl> {
        let reqid = self.next_reqid();
        self.send_control(opcode, reqid, data)?;
        let reply = read_packet(&mut self.stream, REPLY_TIMEOUT)?;
        match reply.body {
            Body::ReplyControl(r) if reply.header.reqid == reqid => Ok(r),
            other => bail!("control {opcode:?} on node {}: {other:?}", self.pnn),
        }
    }

    /// A control answered in its status (GET_RECMODE).
    pub fn status(&mut self, opcode: Opcode) -> anyhow::Result<i32> {
        Ok(self.exchange(opcode, Vec::new())?.status)
    }

    /// Sends a control without waiting for its answer.
    pub fn send_control(
        &mut self,
        opcode: Opcode,
        reqid: u32,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: CURRENT_NODE,
                srcnode: 0,
                reqid,
            },
            body: Body::ReqControl(ReqControl {
                opcode: opcode.0,
                srvid: 0,
                client_id: 0,
                flags: 0,
                data,
            }),
        };
        self.stream.write_all(&packet.encode())?;
        Ok(())
    }

    /// A control that must succeed: its answer's data.
    pub fn control(&mut self, opcode: Opcode, data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let reply = self.exchange(opcode, data)?;
        if reply.status != 0 {
            bail!("control {opcode:?} on node {}: {reply:?}", self.pnn);
        }
        Ok(reply.data)
    }

    /// Asks the daemon to bring `key` of `db_id` here (smbd's migration call).
    pub fn migrate(&mut self, db_id: u32, key: &[u8]) -> anyhow::Result<()> {
        self.call(
            db_id,
            call_id::NULL_FUNC,
            call_flags::IMMEDIATE_MIGRATION,
            key,
        )
        .map(drop)
    }

    /// A call on `key` of `db_id` as smbd sends it (`callid`, `flags`); the
    /// daemon's answer: status and data.
    pub fn call(
        &mut self,
        db_id: u32,
        callid: u32,
        flags: u32,
        key: &[u8],
    ) -> anyhow::Result<(i32, Vec<u8>)> {
        let reqid = self.next_reqid();
        let packet = Packet {
            header: Header {
                generation: 0,
                destnode: CURRENT_NODE,
                srcnode: 0,
                reqid,
            },
            body: Body::ReqCall(ReqCall {
                flags,
                db_id,
                callid,
                hopcount: 0,
                key: key.to_vec(),
                calldata: Vec::new(),
            }),
        };
        self.stream.write_all(&packet.encode())?;
        let reply = read_packet(&mut self.stream, REPLY_TIMEOUT)?;
        match reply.body {
            Body::ReplyCall(r) if reply.header.reqid == reqid => Ok((r.status, r.data)),
            other => bail!("call on node {}: {other:?}", self.pnn),
        }
    }
}

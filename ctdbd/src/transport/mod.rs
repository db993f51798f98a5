//! Sockets and helper processes at the edge of the core: the Unix client socket, the
//! peer TCP links, the recovery-lock holder. Each turns I/O into [`CoreEvent`]s for the
//! one core task, and carries out what the core asks. None of them holds cluster state.
//!
//! ```text
//!   unix accept loop ──> connection task per client ──┐
//!   peer listener + connector per peer ───────────────┼──> CoreEvent ──> core task
//!   reclock holder (child process) ────────────────────┘         │
//!          ^                      ^                               │ Outputs
//!          └──── ReclockHandle ───┴── PeerLinks / client outboxes <┘
//! ```

use tokio::sync::mpsc;

pub use crate::core::ReclockStatus;
use crate::core::{ClientId, Input, DATA_PATH_REQIDS};
use crate::protocol::control::{srvid, Opcode};
use crate::protocol::packet::{Body, Packet, CURRENT_NODE};

pub mod peer;
pub mod unix;

/// Everything the edges tell the core task: a core [`Input`] as it comes, or a client
/// connecting or leaving, which also carries what only the core task keeps (the
/// client's outbox).
#[derive(Debug)]
pub enum CoreEvent {
    /// A client connected; `outbox` is where the core queues packets to it.
    ClientConnected {
        /// Its id.
        client: ClientId,
        /// Peer pid.
        pid: i32,
        /// Encoded packets to write to it. Dropping the sender closes the connection.
        outbox: mpsc::Sender<Vec<u8>>,
    },
    /// The client's connection is gone.
    ClientGone {
        /// Its id.
        client: ClientId,
    },
    /// Any other input for the core, as the core defines it.
    Input(Input),
}

/// What the edges tell the database thread (the data path, DESIGN.md "Databases").
#[derive(Debug)]
pub enum DataEvent {
    /// A data-path packet from a local client; `replies` writes to its socket.
    Client {
        /// The connection.
        client: ClientId,
        /// Encoded replies for it. Unbounded: a client gets a reply only for what
        /// it asked, and its connection task stops reading its requests while
        /// it does not read its replies, so what waits here stays small.
        replies: mpsc::UnboundedSender<Vec<u8>>,
        /// The packet.
        packet: Packet,
    },
    /// The client's connection is gone.
    ClientGone {
        /// The connection.
        client: ClientId,
    },
    /// A data-path packet from node `pnn`.
    Peer {
        /// The peer.
        pnn: u32,
        /// The packet.
        packet: Packet,
    },
    /// The core leads a recovery: make the databases of `nodes` the same, then
    /// tell the core (`Input::DatabasesRecovered`).
    Recover {
        /// The generation the recovery installs.
        generation: u32,
        /// The active connected nodes, this one among them.
        nodes: Vec<u32>,
    },
}

/// Where the edges send data-path packets: this node's pnn (to recognise
/// controls addressed to it) and the database thread's two queues.
#[derive(Debug, Clone)]
pub struct DataPath {
    /// This node.
    pub pnn: u32,
    /// Local clients' packets; bounded, so a busy thread slows the senders down
    /// (smbd waits, it is never dropped).
    pub events: mpsc::Sender<DataEvent>,
    /// Other nodes' packets; never waited on: a peer link that waited for the
    /// database thread would hold up the keepalives and lease requests behind
    /// it on the same connection, and a busy database (a big recovery pull, a
    /// traverse meeting a held chain) would cost the node its peers or its
    /// addresses. What queues here is bounded by the peers' own requests.
    pub peer_events: mpsc::UnboundedSender<DataEvent>,
}

/// Controls about databases, answered by the database thread.
fn is_database_control(opcode: u32) -> bool {
    matches!(
        Opcode(opcode),
        Opcode::GETDBPATH
            | Opcode::GET_DBMAP
            | Opcode::DB_ATTACH
            | Opcode::GET_DBNAME
            | Opcode::DB_GET_HEALTH
            | Opcode::GET_DB_STATISTICS
            | Opcode::ENABLE_SEQNUM
            | Opcode::UPDATE_SEQNUM
            | Opcode::DB_ATTACH_PERSISTENT
            | Opcode::UPDATE_RECORD
            | Opcode::TRANS3_COMMIT
            | Opcode::GET_DB_SEQNUM
            | Opcode::SCHEDULE_FOR_DELETION
            | Opcode::SET_DB_READONLY
            | Opcode::SET_DB_STICKY
            | Opcode::DB_OPEN_FLAGS
            | Opcode::DB_FREEZE
            | Opcode::DB_THAW
            | Opcode::DB_TRANSACTION_START
            | Opcode::DB_TRANSACTION_COMMIT
            | Opcode::DB_TRANSACTION_CANCEL
            | Opcode::DB_PUSH_START
            | Opcode::DB_PUSH_CONFIRM
            | Opcode::DB_SET_HEALTHY
            | Opcode::WIPE_DATABASE
            | Opcode::TRAVERSE_START
            | Opcode::TRAVERSE_START_EXT
            | Opcode::TRAVERSE_ALL
            | Opcode::TRAVERSE_ALL_EXT
            | Opcode::TRAVERSE_DATA
            | Opcode::TRAVERSE_KILL
            | Opcode::TRY_DELETE_RECORDS
            | Opcode::VACUUM_FETCH
            | Opcode::DB_DETACH
            | Opcode::DB_PULL
    )
}

impl DataPath {
    /// Whether a packet from a local client goes to the database thread: calls,
    /// and database controls addressed to this node (those for other nodes go
    /// through the core, which forwards them).
    pub fn takes_from_client(&self, packet: &Packet) -> bool {
        match &packet.body {
            Body::ReqCall(_) => true,
            Body::ReqControl(c) => {
                is_database_control(c.opcode)
                    && (packet.header.destnode == CURRENT_NODE
                        || packet.header.destnode == self.pnn)
            }
            // A restore's records for this node (those for others go through the
            // core to their node).
            Body::ReqMessage(m) => {
                m.srvid == srvid::TOOL_PUSHDB
                    && (packet.header.destnode == CURRENT_NODE
                        || packet.header.destnode == self.pnn)
            }
            _ => false,
        }
    }

    /// Whether a packet from another node goes to the database thread: record
    /// migration, database controls, and replies to the thread's own controls.
    pub fn takes_from_peer(&self, packet: &Packet) -> bool {
        match &packet.body {
            Body::ReqCall(_)
            | Body::ReplyCall(_)
            | Body::ReqDmaster(_)
            | Body::ReplyDmaster(_)
            | Body::ReplyError(_) => true,
            Body::ReqControl(c) => is_database_control(c.opcode),
            // A restore's records, and a recovery's pulled and pushed ones.
            Body::ReqMessage(m) => {
                m.srvid == srvid::TOOL_PUSHDB
                    || [srvid::RECOVERY_PULL, srvid::RECOVERY_PUSH]
                        .contains(&(m.srvid & srvid::RECOVERY_KIND_MASK))
            }
            Body::ReplyControl(_) => packet.header.reqid >= DATA_PATH_REQIDS,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{Header, ReqControl};

    /// Given another node's vacuuming controls, then they go to the database
    /// thread (which holds the files), not to the core.
    #[test]
    fn vacuum_controls_from_peers_go_to_the_database_thread() {
        let path = DataPath {
            pnn: 0,
            events: mpsc::channel(1).0,
            peer_events: mpsc::unbounded_channel().0,
        };
        let control = |opcode: Opcode| Packet {
            header: Header {
                generation: 1,
                destnode: 0,
                srcnode: 1,
                reqid: 5,
            },
            body: Body::ReqControl(ReqControl {
                opcode: opcode.0,
                srvid: 0,
                client_id: 0,
                flags: 0,
                data: Vec::new(),
            }),
        };
        for opcode in [Opcode::TRY_DELETE_RECORDS, Opcode::VACUUM_FETCH] {
            assert!(path.takes_from_peer(&control(opcode)), "{opcode:?}");
        }
        assert!(!path.takes_from_peer(&control(Opcode::GET_PNN)));
    }
}

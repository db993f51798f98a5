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

use std::net::IpAddr;

use tokio::sync::mpsc;

use crate::core::ClientId;
pub use crate::core::ReclockStatus;
use crate::protocol::Packet;

pub mod peer;
pub mod unix;

/// Everything the edges tell the core task.
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
    /// A well-formed packet from a client.
    Packet {
        /// Sender.
        client: ClientId,
        /// The packet.
        packet: Packet,
    },
    /// The client's connection is gone.
    ClientGone {
        /// Its id.
        client: ClientId,
    },
    /// Both TCP connections with node `pnn` are up (CTDB counts a node connected only
    /// then, §2.3).
    PeerConnected {
        /// The peer.
        pnn: u32,
    },
    /// A connection with node `pnn` closed or failed; the transport reconnects by itself.
    PeerDisconnected {
        /// The peer.
        pnn: u32,
    },
    /// A well-formed packet from node `pnn` (identified by the connection's source
    /// address, not by the header).
    PeerPacket {
        /// The peer.
        pnn: u32,
        /// The packet.
        packet: Packet,
    },
    /// What became of the recovery lock.
    Reclock(ReclockStatus),
    /// A public address was added (or not) as the core asked.
    AddressAdded {
        /// The address.
        addr: IpAddr,
        /// Success, or the kernel's refusal.
        result: Result<(), String>,
    },
    /// A public address was removed (or not) as the core asked.
    AddressRemoved {
        /// The address.
        addr: IpAddr,
        /// Success, or the kernel's refusal.
        result: Result<(), String>,
    },
    /// `public_addresses` was read again (after RELOAD_PUBLIC_IPS).
    PublicAddresses {
        /// Token from the core's request.
        request: u64,
        /// The good lines, or why the file could not be read.
        result: Result<Vec<(IpAddr, u8, Vec<String>)>, String>,
    },
    /// A public interface's link changed.
    LinkChanged {
        /// Interface name.
        iface: String,
        /// Up (admin up with carrier).
        up: bool,
    },
    /// The nodes file was read again (after RELOAD_NODES_FILE or GET_NODES_FILE).
    NodesFile {
        /// Token from the core's request.
        request: u64,
        /// Entries (`None` = deleted line), or why the file could not be read.
        result: Result<Vec<Option<IpAddr>>, String>,
    },
}

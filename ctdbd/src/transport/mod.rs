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
use crate::core::{ClientId, Input};

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

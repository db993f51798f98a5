//! Sockets: the Unix client socket today; peer TCP links with the cluster issue.
//!
//! Task layout (one task per connection, none of them holds cluster state):
//!
//! ```text
//!   accept loop ──spawns──> connection task (per client)
//!                              │ read: frame → decode → CoreEvent::Packet ──> core task
//!                              │ write: <── bounded queue of encoded packets ── core task
//!                              └ on bad input / EOF / cancel: CoreEvent::ClientGone
//! ```

pub mod unix;

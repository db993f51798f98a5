//! The network-interface edge: public addresses on and off interfaces (rtnetlink),
//! link up/down watch, and the packets that tell the network an address moved
//! (gratuitous ARP, unsolicited neighbour advertisements) and tell clients their
//! connection is gone (tickle ACKs, resets).
//!
//! # Layout
//! Pure encoders, no I/O, byte-tested: [`checksum`], [`arp`], [`ndp`], [`tcp`]
//! (which also reads received segments), [`filter`] (the receive sockets' BPF
//! program). Pure decisions: [`tickle`] (when to tickle, which answer to reset).
//! I/O (tokio, raw sockets, netlink): [`netlink`] (the one task owning the
//! rtnetlink handle, and the link watcher), [`send`] (the [`Announcer`]),
//! [`tickler`] (the one tickle task, with its raw receive sockets) and
//! [`sockdiag`] (does this node hold a TCP connection?).
//!
//! The core never calls into this module: it emits outputs such as "add address",
//! "release address", "announce", "tickle", the daemon's loop carries them out here
//! and feeds the results back as inputs.
//!
//! # What the caller must order
//! - An address moves by **removing it on the old node, then adding it on the new
//!   one** (DESIGN.md "How a failover flows"): [`Netlink::add_address`] succeeds even
//!   while another node still holds the address, since nothing in the kernel knows.
//! - On this node, requests to one [`Netlink`] are carried out in the order sent, so
//!   "remove, then add" from one task needs no further waiting.
//! - Announce and tickle **after** the add has returned `Ok`: the tickle depends on
//!   this node's kernel answering the client's ACK with a RST, which needs the
//!   address to be configured (else the ACK is not delivered here at all).

pub mod arp;
pub mod checksum;
pub mod filter;
pub mod ndp;
pub mod netlink;
pub mod send;
pub mod sockdiag;
pub mod tcp;
pub mod tickle;
pub mod tickler;

pub use netlink::{watch_links, LinkChange, LinkWatcher, Netlink, NetlinkError};
pub use send::{Announcer, SendError, ANNOUNCE_INTERVAL, ANNOUNCE_ROUNDS};
pub use tickler::Tickler;

/// An Ethernet hardware address, as the kernel reports it for an interface.
pub type MacAddr = [u8; 6];

#[cfg(test)]
mod tests;

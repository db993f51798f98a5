//! CTDB's wire protocol: framing, packets, controls and the types they carry.
//!
//! Pure encode/decode, no I/O: the transport edges feed bytes in and take bytes out.
//! Every layout follows `shared/reference/ctdb-protocol-core.md` (CTDB 4.17.12 on
//! LP64 little-endian Linux), or `ctdb-protocol-samba.md` ("samba §") for the
//! database traffic; the sections are cited beside each type. Decoding
//! arbitrary bytes returns an error naming the field, never panics (fuzzed and
//! property-tested).

pub mod call;
pub mod control;
pub mod dbctl;
pub mod dbstats;
pub mod marshall;
pub mod packet;
pub mod statistics;
pub mod wire;

pub use control::{Opcode, Runstate};
pub use packet::{Body, Framer, Header, Packet, ReplyControl, ReqControl, ReqMessage};
pub use wire::DecodeError;

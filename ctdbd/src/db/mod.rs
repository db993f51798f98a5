//! Clustered TDB databases: the data path beside the control path (DESIGN.md,
//! "Databases").
//!
//! smbd keeps share modes, byte-range locks, leases and sessions in TDB files that it
//! reads and writes itself with libtdb; ctdbd only moves records between nodes, so
//! that the node whose smbd wants a record becomes its *dmaster* (the holder of the
//! authoritative copy), and keeps persistent databases identical on every node.
//!
//! # Layout
//! Pure (no I/O, no clock, no tokio; tested without files or sockets):
//! - `hash`: Bob Jenkins' lookup3, which names databases (db_id) and places keys on
//!   their lmaster.
//! - `ltdb`: the 24-byte header in front of every clustered record.
//! - `limits`: how long keys and values may be, checked wherever records come in.
//! - `migrate`: one database's record migration: client calls, the node-to-node
//!   hand-over (REQ_CALL → REQ_DMASTER → REPLY_DMASTER), calls waiting per key,
//!   generation checks.
//! - `readonly`: read-only delegations' header arithmetic and tracking bitmap,
//!   and the sticky-record tunables (the flow is in `migrate`).
//! - `recovery`: how the copies of a database are merged in a recovery.
//! - `recovery_run`: the leader's recovery of all databases as a state machine
//!   (maps, names, attach, freeze, pull, merge, wipe and push).
//! - `commit`: persistent transactions (TRANS3_COMMIT): when one may start, when
//!   it is acknowledged, which replicated record a node stores.
//! - `vacuum`: removing empty records from volatile databases on every node,
//!   never one whose newest copy has a value.
//!
//! Edges:
//! - `tdb`: a small binding of libtdb (Debian's `libtdb1`), the library smbd uses on
//!   the same files.
//! - the lock helper binary (`ctdb-rs-lock-helper`): waits for a chain lock or the
//!   all-record lock in its own process, as fcntl locks and robust mutexes require,
//!   so that no daemon thread ever blocks on smbd; `lock_helper` is the daemon's
//!   side of it (start, wait for "held", release).

pub mod commit;
pub mod hash;
pub mod limits;
pub mod lock_helper;
pub mod ltdb;
pub mod migrate;
pub mod readonly;
pub mod recovery;
pub mod recovery_run;
pub mod registry;
pub mod tdb;
pub mod vacuum;

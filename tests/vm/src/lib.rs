//! ctdb-rs tests with real daemons in Linux namespaces: the harness, and (under
//! `tests/`) the compatibility and bad-input suites.
//!
//! # Layout
//! - [`wait`]: polling a condition until a deadline (the only way tests wait).
//! - [`process`]: commands with a deadline; background processes with captured logs.
//! - [`sandbox`]: unique names, temporary directories, named network namespaces,
//!   the prerequisites check, and the sweep of what killed runs left behind.
//! - [`node`]: one node's sandbox (network + mount namespace with private
//!   `/etc/ctdb`, `/var/lib/ctdb`, `/run`) and the `ctdbd` running in it.
//! - [`cluster`]: nodes wired by private and public bridges, plus a client.
//! - [`daemon`]: which `ctdbd`/`ctdb` to run, ours or Debian's stock 4.17.
//!
//! Everything runs as root and fails loudly when a prerequisite is missing;
//! nothing is skipped. Every resource is released in `Drop`, panics included.

pub mod cluster;
pub mod daemon;
pub mod node;
pub mod process;
pub mod sandbox;
pub mod wait;

pub use cluster::{Cluster, ClusterBuilder};
pub use daemon::{Daemon, Tool};
pub use node::Node;
pub use process::Output;
pub use wait::wait_until;

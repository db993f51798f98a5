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
//! - [`cluster`]: nodes wired by private and public bridges, plus a client; an
//!   optional shared directory standing in for the cluster volume; faults (kill,
//!   power off, link cut, partition, lock file removal).
//! - [`gluster`]: a replica GlusterFS volume across the nodes (one glusterd and
//!   brick per node, FUSE-mounted at the shared path), chosen with
//!   [`ClusterBuilder::volume`] or `CTDB_RS_VOLUME=gluster`.
//! - [`observe`]: `ctdb status`, `-X nodestatus all` and `leader` parsed, and
//!   cluster-wide waits on them.
//! - [`daemon`]: which `ctdbd`/`ctdb` to run, ours or Debian's stock 4.17.
//! - [`watch`]: the public-address watcher (no address on two live nodes, no
//!   expected address missing for long), a background thread dumping every node.
//! - [`public`]: a TCP service per node, a client asking it, `ctdb ip` parsed.
//! - [`records`]: a protocol client of one node's daemon (controls, calls on
//!   records), as smbd talks to it.
//! - [`nfs`]: NFS-Ganesha in the nodes through `events.d/60.nfs.script`, its
//!   configuration, and libnfs's `nfs-cp`/`nfs-cat`/`nfs-ls` in the client.
//! - [`dns`]: `dnsmasq` answering one name with every public address in
//!   rotation, and a resolver that keeps the answer's order.
//! - [`scripts`]: the repository's `events.d` installed in a node as CTDB lays
//!   them out, and run by hand with the event runner's environment.
//! - [`nas`]: a NAS cluster's scripts and options installed on every node.
//! - [`samba`]: clustered Samba in the nodes (`smb.conf` with `clustering = yes`
//!   on the shared volume, private state per node, the test user in the clustered
//!   `passdb.tdb`) and `smbclient` in the client namespace.
//! - [`smb_client`]: an SMB2 client driven step by step (share modes, byte-range
//!   locks, oplock breaks) over connections to several public addresses.
//!
//! Everything runs as root and fails loudly when a prerequisite is missing;
//! nothing is skipped. Every resource is released in `Drop`, panics included.

pub mod cluster;
pub mod daemon;
pub mod dns;
pub mod gluster;
pub mod nas;
pub mod nfs;
pub mod node;
pub mod observe;
pub mod process;
pub mod public;
pub mod records;
pub mod samba;
pub mod sandbox;
pub mod scripts;
pub mod smb_client;
pub mod wait;
pub mod watch;

pub use cluster::{Cluster, ClusterBuilder};
pub use daemon::{Daemon, Tool};
pub use gluster::{GlusterOptions, Volume};
pub use node::{Entry, Node};
pub use observe::{Agreement, NodeRow, Status};
pub use process::Output;
pub use wait::wait_until;

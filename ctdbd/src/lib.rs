//! ctdb-rs daemon library: everything `ctdbd` is made of, and what the `ctdb` tool
//! shares with it.
//!
//! # Layout
//! Pure modules (no I/O, no clock, no tokio):
//! - [`protocol`]: CTDB's wire format.
//! - [`config`]: `ctdb.conf`, `nodes`, `public_addresses`, `ctdb.tunables`,
//!   `script.options`, legacy `/etc/sysconfig/ctdb` variables.
//! - [`tunables`]: CTDB's tunables: names, defaults, get/set/list.
//! - [`core`]: the node's state and its answers to controls and messages.
//! - [`db`]: clustered TDB databases (the pure parts; its libtdb binding is an
//!   edge).
//! - [`fanout`]: one round of a leader's requests to many nodes (takeover runs and
//!   the database recovery).
//! - [`histogram`]: durations counted into fixed buckets (for the metrics).
//! - [`ipalloc`]: public IP allocation (CTDB's deterministic, non-deterministic and
//!   LCP2 algorithms) and the takeover test case format.
//!
//! Edges (I/O):
//! - [`transport`]: the Unix client socket server and the peer TCP links.
//! - [`reclock`]: runs the recovery-lock holder (ours or a CTDB mutex helper).
//! - [`netif`]: public addresses on interfaces (rtnetlink), link watch, gratuitous
//!   ARP / unsolicited NA, tickle ACKs (raw sockets).
//! - [`paths`]: where files live, with CTDB's environment overrides.
//! - [`daemon`]: wiring of config, core and the edges; signals; pid file; logging;
//!   the address worker and the guardian.
//! - [`events`]: event scripts: enable/disable, the runner (process groups, output
//!   capture, deadline), and `ctdb event status` / `scriptstatus` text.

pub mod config;
pub mod core;
pub mod daemon;
pub mod db;
pub mod events;
pub mod fanout;
pub mod histogram;
pub mod ipalloc;
pub mod netif;
pub mod paths;
pub mod protocol;
pub mod reclock;
pub mod transport;
pub mod tunables;

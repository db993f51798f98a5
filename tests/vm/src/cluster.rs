//! A cluster topology built from sandboxes: nodes joined by a private and a public
//! bridge, and optionally a client namespace on the public side.
//!
//! ```text
//!                 fabric netns (ctdbrs-...-f)
//!        +-----------------------------------------+
//!        |   bridge priv            bridge pub      |
//!        |   |     |     |          |     |     |   |
//!        | n0priv n1priv ..      n0pub n1pub  clpub |
//!        +---|-----|--------------|-----|------|----+
//!            |     |  veth pairs  |     |      |
//!   node 0: priv0 192.168.20.41   pub0 (public IPs)   client: eth0 10.0.20.200
//!   node 1: priv0 192.168.20.42   pub0
//! ```
//!
//! Every address lives only inside namespaces this module creates: nothing is
//! added to the host's network namespace and no traffic leaves. A node listed in
//! the `nodes` file but not made `present` has no sandbox, so the others see it
//! DISCONNECTED. Dropping the cluster removes everything, panics included.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::Context as _;

use crate::daemon::Daemon;
use crate::node::Node;
use crate::sandbox::{check_prerequisites, unique_name, NetNs};

/// Default `ctdb.conf`: no realtime scheduling, so test daemons cannot starve the
/// machine; everything else at CTDB's defaults.
pub const DEFAULT_CTDB_CONF: &str = "\
[logging]
\tlog level = NOTICE
[legacy]
\trealtime scheduling = false
";

/// Address of the client namespace on the public network.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 20, 200);

/// How a [`Cluster`] is to be built; see [`Cluster::builder`].
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    nodes: u32,
    present: Option<Vec<u32>>,
    public_addresses: Option<Vec<String>>,
    ctdb_conf: String,
    tunables: String,
    client: bool,
}

/// Sandboxes wired into one cluster. Nodes are indexed by pnn.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: nodes (and their daemons) before the fabric.
    nodes: Vec<Option<Node>>,
    client: Option<NetNs>,
    fabric: NetNs,
}

impl ClusterBuilder {
    /// Number of nodes in the `nodes` file (default 1).
    pub fn nodes(mut self, count: u32) -> Self {
        self.nodes = count;
        self
    }

    /// Only these pnns get a sandbox; the others are in the `nodes` file only, and
    /// appear DISCONNECTED. Default: all.
    pub fn present(mut self, pnns: impl IntoIterator<Item = u32>) -> Self {
        self.present = Some(pnns.into_iter().collect());
        self
    }

    /// Lines of `public_addresses` (for example `10.0.20.101/24 pub0`). Default: one
    /// address per node, `10.0.20.(101 + i)/24` on `pub0`.
    pub fn public_addresses<S: Into<String>>(mut self, lines: impl IntoIterator<Item = S>) -> Self {
        self.public_addresses = Some(lines.into_iter().map(Into::into).collect());
        self
    }

    /// The whole text of `ctdb.conf` (default [`DEFAULT_CTDB_CONF`]).
    pub fn ctdb_conf(mut self, text: &str) -> Self {
        self.ctdb_conf = text.to_owned();
        self
    }

    /// The text of `ctdb.tunables` (default: no file).
    pub fn tunables(mut self, text: &str) -> Self {
        self.tunables = text.to_owned();
        self
    }

    /// Whether to add a client namespace on the public bridge (default no).
    pub fn client(mut self, yes: bool) -> Self {
        self.client = yes;
        self
    }

    /// Creates the namespaces, links and configuration. No daemon is started.
    pub fn build(self) -> anyhow::Result<Cluster> {
        check_prerequisites()?;
        let base = unique_name();
        let fabric = NetNs::create(&format!("{base}-f")).context("creating the fabric netns")?;
        for bridge in ["priv", "pub"] {
            fabric.ip(&["link", "add", bridge, "type", "bridge"])?;
            fabric.ip(&["link", "set", bridge, "up"])?;
        }
        let public = self.public_addresses.clone().unwrap_or_else(|| {
            (0..self.nodes)
                .map(|i| format!("{}/24 pub0", Ipv4Addr::new(10, 0, 20, 101 + i as u8)))
                .collect()
        });
        let nodes_file: String = (0..self.nodes)
            .map(|pnn| format!("{}\n", private_addr(pnn)))
            .collect();
        let mut nodes = Vec::new();
        for pnn in 0..self.nodes {
            let wanted = self.present.as_ref().is_none_or(|p| p.contains(&pnn));
            if !wanted {
                nodes.push(None);
                continue;
            }
            let netns = NetNs::create(&format!("{base}-n{pnn}"))
                .with_context(|| format!("creating node {pnn}'s netns"))?;
            for (net, local) in [("priv", "priv0"), ("pub", "pub0")] {
                let outer = format!("n{pnn}{net}");
                fabric.ip(&[
                    "link",
                    "add",
                    &outer,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    local,
                    "netns",
                    netns.name(),
                ])?;
                fabric.ip(&["link", "set", &outer, "master", net])?;
                fabric.ip(&["link", "set", &outer, "up"])?;
                netns.ip(&["link", "set", local, "up"])?;
            }
            netns.ip(&[
                "addr",
                "add",
                &format!("{}/24", private_addr(pnn)),
                "dev",
                "priv0",
            ])?;
            let node = Node::create(pnn, netns, private_addr(pnn))?;
            node.write_config("ctdb.conf", &self.ctdb_conf)?;
            node.write_config("nodes", &nodes_file)?;
            node.write_config("public_addresses", &lines(&public))?;
            if !self.tunables.is_empty() {
                node.write_config("ctdb.tunables", &self.tunables)?;
            }
            nodes.push(Some(node));
        }
        let client = if self.client {
            let netns = NetNs::create(&format!("{base}-c")).context("creating the client netns")?;
            fabric.ip(&[
                "link",
                "add",
                "clpub",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                netns.name(),
            ])?;
            fabric.ip(&["link", "set", "clpub", "master", "pub"])?;
            fabric.ip(&["link", "set", "clpub", "up"])?;
            netns.ip(&["link", "set", "eth0", "up"])?;
            netns.ip(&["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", "eth0"])?;
            Some(netns)
        } else {
            None
        };
        Ok(Cluster {
            nodes,
            client,
            fabric,
        })
    }
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

/// The private address of `pnn`: 192.168.20.(41 + pnn).
pub fn private_addr(pnn: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        192,
        168,
        20,
        41 + u8::try_from(pnn).expect("fewer than 200 nodes"),
    )
}

impl Cluster {
    /// A builder for a one-node cluster with default configuration.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            nodes: 1,
            present: None,
            public_addresses: None,
            ctdb_conf: DEFAULT_CTDB_CONF.to_owned(),
            tunables: String::new(),
            client: false,
        }
    }

    /// The sandbox of `pnn`. Panics if that node was not made present, which is a
    /// mistake in the test itself.
    pub fn node(&self, pnn: u32) -> &Node {
        self.nodes
            .get(pnn as usize)
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("node {pnn} has no sandbox in this cluster"))
    }

    /// The sandbox of `pnn`, mutably (to start or stop its daemon).
    pub fn node_mut(&mut self, pnn: u32) -> &mut Node {
        self.nodes
            .get_mut(pnn as usize)
            .and_then(Option::as_mut)
            .unwrap_or_else(|| panic!("node {pnn} has no sandbox in this cluster"))
    }

    /// The sandboxes that exist.
    pub fn present_nodes(&mut self) -> impl Iterator<Item = &mut Node> {
        self.nodes.iter_mut().flatten()
    }

    /// The client namespace, if built with one.
    pub fn client(&self) -> Option<&NetNs> {
        self.client.as_ref()
    }

    /// The namespace holding the bridges (to cut or heal links).
    pub fn fabric(&self) -> &NetNs {
        &self.fabric
    }

    /// Starts `kind` of daemon on every present node and waits until each says
    /// RUNNING.
    pub fn start(&mut self, kind: Daemon, timeout: Duration) -> anyhow::Result<()> {
        for node in self.present_nodes() {
            node.start_daemon(kind)?;
        }
        for node in self.present_nodes() {
            node.wait_runstate("RUNNING", timeout)?;
        }
        Ok(())
    }
}

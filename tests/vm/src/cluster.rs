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
//!
//! With [`ClusterBuilder::shared_volume`], one host temporary directory stands in
//! for the cluster filesystem: every node sees it at [`SHARED_MOUNT`], it holds the
//! `nodes` and `public_addresses` files (each node's `/etc/ctdb` links to them) and
//! the recovery lock file named by `cluster lock` in every `ctdb.conf`:
//!
//! ```text
//!   host: /tmp/ctdbrs-...-shared ──bind──> /srv/shared in node 0, 1, 2 ...
//!     nodes, public_addresses, .ctdb.reclock
//!   node i: /etc/ctdb/nodes -> /srv/shared/nodes
//!           /etc/ctdb/public_addresses -> /srv/shared/public_addresses
//!           /etc/ctdb/ctdb.conf: [cluster] cluster lock = /srv/shared/.ctdb.reclock
//! ```
//!
//! With [`ClusterBuilder::volume`]`(`[`Volume::Gluster`]`)`, or `CTDB_RS_VOLUME=gluster`
//! for any cluster built with a shared volume, the same files live on a real
//! GlusterFS volume instead: one glusterd and one brick per node, the volume
//! FUSE-mounted at [`SHARED_MOUNT`] in every node ([`crate::gluster`]); the host
//! reaches it through a node's mount ([`Cluster::shared_dir`]).
//!
//! Faults are injected from outside the nodes: SIGKILL of a daemon by PID, a node's
//! private veth end in the fabric set down, nodes moved onto separate bridges
//! (a partition), the lock file removed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::daemon::Daemon;
use crate::gluster::{GlusterOptions, Volume};
use crate::node::{Node, SHARED_MOUNT};
use crate::sandbox::{check_prerequisites, unique_name, NetNs, TempDir};

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
    shared_volume: bool,
    volume: Option<Volume>,
    samba: bool,
    deleted: Vec<u32>,
}

/// What stands in for the cluster volume of a built [`Cluster`].
#[derive(Debug)]
enum Shared {
    /// One host directory bound in every node.
    Dir(TempDir),
    /// A GlusterFS volume across the nodes ([`crate::gluster`]).
    Gluster {
        /// The options the volume was created with.
        options: GlusterOptions,
        /// Pnns whose gluster side is down ([`Cluster::power_off`]): the host
        /// reaches the volume through another node's mount.
        down: Vec<u32>,
    },
}

/// Sandboxes wired into one cluster. Nodes are indexed by pnn.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: nodes (and their daemons) before the fabric, the
    // shared directory last (the nodes' mount namespaces bind it).
    nodes: Vec<Option<Node>>,
    client: Option<NetNs>,
    fabric: NetNs,
    /// Bridges created by [`Cluster::partition`] besides `priv`.
    extra_bridges: Vec<String>,
    shared: Option<Shared>,
    /// Built with [`ClusterBuilder::samba`].
    samba: bool,
    /// The node through which the test user was registered with Samba, once it is.
    samba_user_node: Option<u32>,
}

/// The recovery lock file, as the nodes see it, with a shared volume.
pub const RECLOCK_PATH: &str = "/srv/shared/.ctdb.reclock";

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

    /// Gives the cluster a shared directory standing in for the cluster volume (see
    /// the module documentation): the `nodes` and `public_addresses` files live
    /// there, each node's `/etc/ctdb` links to them, and `[cluster] cluster lock =`
    /// [`RECLOCK_PATH`] is appended to every `ctdb.conf` (so the `ctdb_conf` text
    /// must then have no `[cluster]` section of its own). Default: no shared volume,
    /// every file private to each node.
    pub fn shared_volume(mut self, yes: bool) -> Self {
        self.shared_volume = yes;
        self
    }

    /// What stands in for the cluster volume, which implies
    /// [`ClusterBuilder::shared_volume`]: a plain directory or a GlusterFS volume
    /// ([`crate::gluster`]). Default: what `CTDB_RS_VOLUME` says
    /// ([`Volume::from_env`]), so any scenario with a shared volume can run on
    /// either.
    pub fn volume(mut self, volume: Volume) -> Self {
        self.volume = Some(volume);
        self
    }

    /// Makes every node able to run Samba clustered, in the clustered-NAS layout of
    /// [`crate::samba`]: `smb.conf` ([`crate::samba::smb_conf`], `clustering =
    /// yes`) and the share on the shared volume (so this implies
    /// [`ClusterBuilder::shared_volume`]), private Samba directories per node, and
    /// the test user [`crate::samba::SAMBA_USER`] as a Unix account in each node.
    /// smbd keeps its sessions, share modes, locks and users in the daemons'
    /// clustered databases, so registering the user with Samba needs a running
    /// daemon: [`Cluster::start`] and [`Cluster::start_nodes`] do it once the
    /// daemons they start are RUNNING ([`Cluster::samba_user_node`]). No smbd is
    /// started here (the `50.samba` event script does that). Default: no.
    pub fn samba(mut self, yes: bool) -> Self {
        self.samba = yes;
        self
    }

    /// Writes these pnns' lines of the `nodes` file commented out (`#<address>`),
    /// as CTDB marks a deleted node. Their sandboxes are still created if present.
    pub fn deleted(mut self, pnns: impl IntoIterator<Item = u32>) -> Self {
        self.deleted = pnns.into_iter().collect();
        self
    }

    /// Creates the namespaces, links and configuration. No daemon is started.
    pub fn build(self) -> anyhow::Result<Cluster> {
        check_prerequisites()?;
        if self.samba {
            crate::samba::check_prerequisites()?;
        }
        let volume = if self.shared_volume || self.samba || self.volume.is_some() {
            Some(match self.volume {
                Some(v) => v,
                None => Volume::from_env()?,
            })
        } else {
            None
        };
        if volume.is_some() && !Path::new("/srv").is_dir() {
            bail!("/srv is missing: the nodes mount the shared volume under it (mkdir /srv)");
        }
        if let Some(Volume::Gluster(_)) = volume {
            crate::gluster::check_prerequisites()?;
        }
        let shared_dir = match volume {
            Some(Volume::Dir) => Some(TempDir::new("shared")?),
            _ => None,
        };
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
            .map(|pnn| {
                let mark = if self.deleted.contains(&pnn) { "#" } else { "" };
                format!("{mark}{}\n", private_addr(pnn))
            })
            .collect();
        let mut ctdb_conf = self.ctdb_conf.clone();
        if volume.is_some() {
            ctdb_conf.push_str(&format!("[cluster]\n\tcluster lock = {RECLOCK_PATH}\n"));
        }
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
            let node = Node::create_with_shared(
                pnn,
                netns,
                private_addr(pnn),
                shared_dir.as_ref().map(TempDir::path),
            )?;
            node.write_config("ctdb.conf", &ctdb_conf)?;
            if volume.is_some() {
                for name in ["nodes", "public_addresses"] {
                    let link = node.etc_dir().join(name);
                    std::os::unix::fs::symlink(format!("{SHARED_MOUNT}/{name}"), &link)
                        .with_context(|| format!("linking {}", link.display()))?;
                }
            } else {
                node.write_config("nodes", &nodes_file)?;
                node.write_config("public_addresses", &lines(&public))?;
            }
            if !self.tunables.is_empty() {
                node.write_config("ctdb.tunables", &self.tunables)?;
            }
            if self.samba {
                crate::samba::prepare_node(&node)?;
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
        let mut cluster = Cluster {
            nodes,
            client,
            fabric,
            extra_bridges: Vec::new(),
            shared: shared_dir.map(Shared::Dir),
            samba: self.samba,
            samba_user_node: None,
        };
        if let Some(Volume::Gluster(options)) = volume {
            // Marked first, so that a failure below still tears the volume down
            // when `cluster` drops.
            cluster.shared = Some(Shared::Gluster {
                options,
                down: Vec::new(),
            });
            let nodes: Vec<&Node> = cluster.nodes.iter().flatten().collect();
            crate::gluster::create_volume(&nodes, options)
                .context("creating the GlusterFS volume across the nodes")?;
        }
        if volume.is_some() {
            cluster.write_shared("nodes", &nodes_file)?;
            cluster.write_shared("public_addresses", &lines(&public))?;
            if self.samba {
                let dir = cluster.shared_dir().expect("a shared volume was built");
                let volume = cluster.volume().expect("a shared volume was built");
                crate::samba::prepare_shared(&dir, volume)?;
            }
        }
        Ok(cluster)
    }
}

impl Drop for Cluster {
    /// On GlusterFS, before the nodes go: every daemon stopped (they and their
    /// helpers keep files open on the volume), then the volume unmounted and the
    /// gluster processes stopped by PID in every node.
    fn drop(&mut self) {
        if !self.on_gluster() {
            return;
        }
        for node in self.nodes.iter_mut().flatten() {
            if let Err(e) = node.stop_daemon() {
                eprintln!("cleanup: node {}: stopping ctdbd: {e:#}", node.pnn());
            }
        }
        for node in self.nodes.iter().flatten() {
            crate::gluster::teardown_node(node);
        }
    }
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
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
            shared_volume: false,
            volume: None,
            samba: false,
            deleted: Vec::new(),
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

    /// The pnns that have a sandbox.
    pub fn present_pnns(&self) -> Vec<u32> {
        self.nodes.iter().flatten().map(Node::pnn).collect()
    }

    /// The host path of the cluster volume's root, if built with one: the shared
    /// directory itself, or on GlusterFS the volume's mount in the lowest node
    /// whose gluster side is up (`/proc/<holder>/root/srv/shared`).
    pub fn shared_dir(&self) -> Option<PathBuf> {
        match self.shared.as_ref()? {
            Shared::Dir(dir) => Some(dir.path().to_owned()),
            Shared::Gluster { down, .. } => self
                .nodes
                .iter()
                .flatten()
                .find(|n| !down.contains(&n.pnn()))
                .map(|n| n.path(SHARED_MOUNT)),
        }
    }

    /// What stands in for the cluster volume, if built with one.
    pub fn volume(&self) -> Option<Volume> {
        match self.shared.as_ref()? {
            Shared::Dir(_) => Some(Volume::Dir),
            Shared::Gluster { options, .. } => Some(Volume::Gluster(*options)),
        }
    }

    /// Whether the cluster volume is GlusterFS.
    pub fn on_gluster(&self) -> bool {
        matches!(self.shared, Some(Shared::Gluster { .. }))
    }

    /// The host path of `name` in the shared volume. Fails without one.
    pub fn shared_path(&self, name: &str) -> anyhow::Result<PathBuf> {
        match self.shared_dir() {
            Some(dir) => Ok(dir.join(name)),
            None => bail!("this cluster was built without a shared volume"),
        }
    }

    /// Writes `name` in the shared volume (for example `nodes`), seen by every node.
    pub fn write_shared(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        write_file(&self.shared_path(name)?, contents)
    }

    /// Starts `kind` of daemon on the given nodes and waits until each says RUNNING;
    /// with Samba, then registers the test user through the first of them unless
    /// it is registered already ([`Cluster::samba_user_node`]).
    pub fn start_nodes(
        &mut self,
        pnns: &[u32],
        kind: Daemon,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        for &pnn in pnns {
            self.node_mut(pnn).start_daemon(kind)?;
        }
        for &pnn in pnns {
            self.node_mut(pnn).wait_runstate("RUNNING", timeout)?;
        }
        if let Some(&first) = pnns.first() {
            self.register_samba_user(first)?;
        }
        Ok(())
    }

    /// The node through which [`Cluster::start`] or [`Cluster::start_nodes`]
    /// registered the test user with Samba (`smbpasswd -a` on that node only), or
    /// `None` before a daemon ran or without Samba.
    pub fn samba_user_node(&self) -> Option<u32> {
        self.samba_user_node
    }

    /// With Samba, registers the test user through `pnn`, whose daemon runs, unless
    /// that was done already. `smbpasswd` writes the clustered persistent
    /// `passdb.tdb`, which the daemons replicate to every node (also to those
    /// started later), so once is enough. smbd may already run (the `startup`
    /// event starts it before the node is RUNNING): it reads the user from the
    /// database at each login, and no client has connected yet.
    fn register_samba_user(&mut self, pnn: u32) -> anyhow::Result<()> {
        if !self.samba || self.samba_user_node.is_some() {
            return Ok(());
        }
        crate::samba::add_samba_user(self.node(pnn)).context(
            "registering the test user with clustered Samba (smbpasswd -a writes the \
             clustered passdb.tdb through the node's daemon)",
        )?;
        self.samba_user_node = Some(pnn);
        Ok(())
    }

    // ---- faults --------------------------------------------------------------

    /// `kill -9` of node `pnn`'s daemon, by PID: its peers see the TCP connections
    /// close at once. The recovery-lock helper dies with the daemon.
    pub fn kill_daemon(&mut self, pnn: u32) -> anyhow::Result<()> {
        self.node_mut(pnn).kill_daemon()
    }

    /// Starts node `pnn`'s daemon again (same kind as before) without waiting.
    pub fn restart_daemon(&mut self, pnn: u32) -> anyhow::Result<()> {
        self.node_mut(pnn).restart_daemon()
    }

    /// Cuts node `pnn` off the private network: its veth end in the fabric goes
    /// down, so the node's `priv0` loses carrier. Nothing is closed: the peers only
    /// notice through missed keepalives.
    pub fn cut_links(&self, pnn: u32) -> anyhow::Result<()> {
        self.node(pnn);
        self.fabric
            .ip(&["link", "set", &format!("n{pnn}priv"), "down"])
            .with_context(|| format!("cutting node {pnn}'s private link"))
    }

    /// Undoes [`Cluster::cut_links`].
    pub fn restore_links(&self, pnn: u32) -> anyhow::Result<()> {
        self.node(pnn);
        self.fabric
            .ip(&["link", "set", &format!("n{pnn}priv"), "up"])
            .with_context(|| format!("restoring node {pnn}'s private link"))
    }

    /// Power loss: the node vanishes from the network without closing anything,
    /// and its daemon is gone.
    ///
    /// On a real cluster the dead node's fcntl lock on the cluster filesystem is
    /// freed by the filesystem (its lease or membership times out). Here the shared
    /// directory is a local one, so the lock lives as long as the process holding
    /// it: the recovery-lock helper must die too, which it does with its daemon
    /// (SIGKILL of the daemon, `PR_SET_PDEATHSIG` in the helper). Links are cut
    /// first, so the peers see silence, not a closed connection.
    ///
    /// On GlusterFS the node's gluster processes (glusterd, brick, self-heal
    /// daemon, FUSE client) are killed too, after the links went down: the other
    /// bricks keep the node's fcntl locks until they notice the silence, as on a
    /// real cluster.
    pub fn power_off(&mut self, pnn: u32) -> anyhow::Result<()> {
        self.cut_links(pnn)?;
        self.kill_daemon(pnn)?;
        if let Some(Shared::Gluster { down, .. }) = &mut self.shared {
            down.push(pnn);
            let node = self.nodes[pnn as usize]
                .as_ref()
                .expect("cut_links checked");
            crate::gluster::kill_node(node)?;
        }
        Ok(())
    }

    /// Undoes [`Cluster::power_off`]: links back up, on GlusterFS the node's
    /// glusterd and mount back (awaited: the daemon reads its configuration from
    /// the volume), daemon started (not awaited).
    pub fn power_on(&mut self, pnn: u32) -> anyhow::Result<()> {
        self.restore_links(pnn)?;
        let all: Vec<Ipv4Addr> = self
            .nodes
            .iter()
            .flatten()
            .map(Node::private_addr)
            .collect();
        if let Some(Shared::Gluster { down, .. }) = &mut self.shared {
            if down.contains(&pnn) {
                let node = self.nodes[pnn as usize]
                    .as_ref()
                    .expect("restore_links checked");
                crate::gluster::revive_node(node, &all)
                    .with_context(|| format!("bringing node {pnn}'s GlusterFS side back"))?;
                down.retain(|p| *p != pnn);
            }
        }
        self.restart_daemon(pnn)
    }

    /// Splits the private network: each group of pnns gets a bridge of its own,
    /// so nodes reach only the nodes of their group. Present nodes in no group stay
    /// with the first group. Links stay up: the nodes see silence, as through a
    /// broken switch. A previous partition is healed first.
    pub fn partition(&mut self, groups: &[&[u32]]) -> anyhow::Result<()> {
        self.heal()?;
        for (k, group) in groups.iter().enumerate().skip(1) {
            let bridge = format!("priv{k}");
            self.fabric
                .ip(&["link", "add", &bridge, "type", "bridge"])?;
            self.extra_bridges.push(bridge.clone());
            self.fabric.ip(&["link", "set", &bridge, "up"])?;
            for &pnn in *group {
                self.node(pnn);
                self.fabric
                    .ip(&["link", "set", &format!("n{pnn}priv"), "master", &bridge])?;
            }
        }
        Ok(())
    }

    /// Puts every node back on the one private bridge (undoes
    /// [`Cluster::partition`]; links cut by [`Cluster::cut_links`] stay cut).
    pub fn heal(&mut self) -> anyhow::Result<()> {
        for pnn in self.present_pnns() {
            self.fabric
                .ip(&["link", "set", &format!("n{pnn}priv"), "master", "priv"])?;
        }
        for bridge in std::mem::take(&mut self.extra_bridges) {
            self.fabric.ip(&["link", "del", &bridge])?;
        }
        Ok(())
    }

    /// Removes the recovery lock file from the shared volume (as an administrator's
    /// mistake or a volume problem would).
    pub fn remove_lock_file(&self) -> anyhow::Result<()> {
        let path = self.shared_path(".ctdb.reclock")?;
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))
    }

    /// Starts `kind` of daemon on every present node and waits until each says
    /// RUNNING; with Samba, then registers the test user through the lowest
    /// present pnn unless it is registered already ([`Cluster::samba_user_node`]).
    pub fn start(&mut self, kind: Daemon, timeout: Duration) -> anyhow::Result<()> {
        let pnns = self.present_pnns();
        self.start_nodes(&pnns, kind, timeout)
    }
}

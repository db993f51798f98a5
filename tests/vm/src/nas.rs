//! A NAS cluster as an administrator sets one up: the event scripts of `events.d`
//! installed and enabled on every node, `script.options` naming the shared volume,
//! and, for NFS, NFS-Ganesha's configuration and `60.nfs`. Samba's side (smbd with
//! `clustering = yes`, the test user registered once the daemons run) comes from
//! [`crate::ClusterBuilder::samba`].
//!
//! Under Debian's stock daemon ([`prepare_for`] with [`Daemon::Stock`]) one more
//! script, [`STOCK_ADDRESS_SCRIPT`], puts the public addresses on the interfaces:
//! CTDB 4.17 leaves that to its own `10.interface`, while ctdb-rs does it itself
//! (so ours only watches), and without it a stock node would hold addresses that
//! no interface carries.

use std::os::unix::fs::PermissionsExt as _;

use anyhow::Context as _;

use crate::daemon::Daemon;
use crate::nfs::{write_ganesha_conf, GaneshaConf, NfsSettings};
use crate::node::SHARED_MOUNT;
use crate::Cluster;

/// The harness's stand-in, for the stock daemon only, for the address handling
/// of CTDB's own `10.interface`: `takeip IFACE IP BITS`, `releaseip IFACE IP
/// BITS` and `updateip OLD NEW IP BITS` add and remove the address. Enabled as
/// `11.stock-addresses` (after our `10.interface`, which checks the arguments).
///
/// A stock daemon killed with `kill -9` (or by the harness's power loss) leaves
/// its addresses on `pub0`; started again, it finds one there that it does not
/// host and releases it naming the interface `__none__` (it does not know which
/// one carries it). The script then takes it off `pub0`, the one interface
/// public addresses go on here, or the stock daemon bans itself.
pub const STOCK_ADDRESS_SCRIPT: &str = r#"#!/bin/sh
# Written by the ctdb-rs test harness for Debian's stock ctdbd: it moves public
# addresses on and off pub0 as the stock daemon asks.
case "$1" in
takeip) exec ip addr replace "$3/$4" dev "$2" ;;
releaseip)
    dev=$2
    [ "$dev" = __none__ ] && dev=pub0
    ip addr del "$3/$4" dev "$dev" 2>/dev/null || true
    ;;
updateip)
    ip addr del "$4/$5" dev "$2" 2>/dev/null || true
    exec ip addr replace "$4/$5" dev "$3"
    ;;
esac
exit 0
"#;

/// The scripts every NAS node runs.
pub const BASE_SCRIPTS: [&str; 4] = ["00.ctdb", "01.reclock", "10.interface", "50.samba"];

/// Installs and enables [`BASE_SCRIPTS`] (and `60.nfs` with `nfs`) on every present
/// node and writes its `script.options`. Call before the daemons start; the cluster
/// must have been built with `samba(true)`.
pub fn prepare(cluster: &Cluster, nfs: Option<NfsSettings>) -> anyhow::Result<()> {
    prepare_for(cluster, nfs, Daemon::Ours)
}

/// [`prepare`] for the daemon that will run: with [`Daemon::Stock`] it also
/// enables [`STOCK_ADDRESS_SCRIPT`] on every node.
pub fn prepare_for(
    cluster: &Cluster,
    nfs: Option<NfsSettings>,
    daemon: Daemon,
) -> anyhow::Result<()> {
    let mut scripts = BASE_SCRIPTS.to_vec();
    let mut options = format!("CTDB_SHARED_VOLUME={SHARED_MOUNT}\n");
    if let Some(settings) = nfs {
        scripts.push("60.nfs");
        options.push_str(&settings.script_options());
    }
    for pnn in cluster.present_pnns() {
        if nfs.is_some() {
            write_ganesha_conf(cluster, pnn, &GaneshaConf::default())?;
        }
        let node = cluster.node(pnn);
        node.install_event_scripts(&scripts)?;
        node.write_config("script.options", &options)?;
        if daemon == Daemon::Stock {
            let path = node
                .etc_dir()
                .join("events/legacy/11.stock-addresses.script");
            std::fs::write(&path, STOCK_ADDRESS_SCRIPT)
                .with_context(|| format!("writing {}", path.display()))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", path.display()))?;
        }
    }
    Ok(())
}

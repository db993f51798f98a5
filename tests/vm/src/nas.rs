//! A NAS cluster as an administrator sets one up: the event scripts of `events.d`
//! installed and enabled on every node, `script.options` naming the shared volume,
//! and, for NFS, NFS-Ganesha's configuration and `60.nfs`. Samba's side comes from
//! [`crate::ClusterBuilder::samba`].

use crate::nfs::{write_ganesha_conf, GaneshaConf, NfsSettings};
use crate::node::SHARED_MOUNT;
use crate::Cluster;

/// The scripts every NAS node runs.
pub const BASE_SCRIPTS: [&str; 4] = ["00.ctdb", "01.reclock", "10.interface", "50.samba"];

/// Installs and enables [`BASE_SCRIPTS`] (and `60.nfs` with `nfs`) on every present
/// node and writes its `script.options`. Call before the daemons start; the cluster
/// must have been built with `samba(true)`.
pub fn prepare(cluster: &Cluster, nfs: Option<NfsSettings>) -> anyhow::Result<()> {
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
    }
    Ok(())
}

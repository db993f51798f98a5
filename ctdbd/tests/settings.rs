//! The daemon's settings loader on real files: the classic clustered-NAS layout with
//! `nodes` and `public_addresses` on the shared volume, symlinked into the config
//! directory; a legacy `/etc/sysconfig/ctdb`; and bad input naming file and line.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use ctdbd::daemon::logging::LogTarget;
use ctdbd::daemon::settings::Settings;
use ctdbd::paths::Paths;

/// A temporary directory removed on drop, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ctdbd-settings-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("shared")).unwrap();
        Self(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn paths(&self) -> Paths {
        let etc = self.0.join("etc");
        Paths::from_env(|k| (k == "CTDB_BASE").then(|| etc.display().to_string()))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn shared_volume_symlinks_and_legacy_variables() {
    // Given nodes and public_addresses on the shared volume, symlinked into etc/,
    // and an old-style sysconfig file.
    let t = TempDir::new("symlinks");
    let nodes = t.write(
        "shared/nodes",
        "192.168.20.41\n192.168.20.42\n#192.168.20.43\n",
    );
    let public = t.write(
        "shared/public_addresses",
        "10.0.0.31/24\n10.0.0.32/33 eth1\n10.0.0.33/24 eth2\n",
    );
    symlink(&nodes, t.0.join("etc/nodes")).unwrap();
    symlink(&public, t.0.join("etc/public_addresses")).unwrap();
    t.write("etc/ctdb.conf", "[logging]\n\tlocation = file:/tmp/x.log\n");
    let sysconfig = t.write(
        "sysconfig",
        "CTDB_RECOVERY_LOCK=\"/gluster/ctdb_lock/lockfile\"\nCTDB_PUBLIC_INTERFACE=eth0\n\
         CTDB_MANAGES_SAMBA=yes\nCTDB_DEBUGLEVEL=ERR\nCTDB_SET_KeepaliveInterval=2\n",
    );

    // When the daemon loads its settings,
    let s = Settings::load(&t.paths(), Some(&sysconfig)).unwrap();

    // then the symlinked files were read,
    assert_eq!(s.nodes.len(), 3);
    assert_eq!(
        s.nodes[2], None,
        "a # line is a deleted node that keeps its pnn"
    );
    let addrs: Vec<String> = s
        .public_addresses
        .iter()
        .map(|(a, p, i)| format!("{a}/{p} {}", i.join(",")))
        .collect();
    // the line without an interface took CTDB_PUBLIC_INTERFACE; the bad line was
    // skipped and reported with file and line; the others are still served,
    assert_eq!(addrs, vec!["10.0.0.31/24 eth0", "10.0.0.33/24 eth2"]);
    assert_eq!(s.public_address_errors.len(), 1);
    assert!(
        s.public_address_errors[0].contains("public_addresses:2"),
        "{:?}",
        s.public_address_errors
    );
    // and the legacy variables replaced their ctdb.conf settings, each noticed once.
    assert_eq!(
        s.cluster_lock.as_deref(),
        Some("/gluster/ctdb_lock/lockfile")
    );
    assert_eq!(s.debug_level, 0);
    assert_eq!(s.tunables.get("KeepaliveInterval"), Ok(2));
    assert_eq!(s.log_target, LogTarget::File("/tmp/x.log".into()));
    for var in [
        "CTDB_RECOVERY_LOCK",
        "CTDB_PUBLIC_INTERFACE",
        "CTDB_MANAGES_SAMBA",
        "CTDB_DEBUGLEVEL",
    ] {
        assert_eq!(
            s.notices.iter().filter(|n| n.contains(var)).count(),
            1,
            "{var} noticed once: {:?}",
            s.notices
        );
    }
}

fn load_error(t: &TempDir) -> String {
    format!(
        "{:#}",
        Settings::load(&t.paths(), None::<&Path>).unwrap_err()
    )
}

#[test]
fn errors_name_the_file_and_line() {
    let t = TempDir::new("errors");
    t.write("etc/nodes", "192.168.20.41\n");
    t.write(
        "etc/ctdb.conf",
        "[cluster]\n  cluster lock = /x\n  bogus key = 1\n",
    );
    let err = load_error(&t);
    assert!(err.contains("ctdb.conf:3"), "{err}");

    t.write("etc/ctdb.conf", "");
    t.write("etc/nodes", "192.168.20.41\nnot-an-address\n");
    let err = load_error(&t);
    assert!(err.contains("nodes:2"), "{err}");

    t.write("etc/nodes", "192.168.20.41\n");
    t.write(
        "etc/ctdb.tunables",
        "KeepaliveInterval=1\nNoSuchTunable=3\n",
    );
    let err = load_error(&t);
    assert!(err.contains("ctdb.tunables:2"), "{err}");
}

#[test]
fn missing_nodes_file_is_a_clear_error() {
    let t = TempDir::new("nonodes");
    let err = load_error(&t);
    assert!(err.contains("nodes"), "{err}");
}

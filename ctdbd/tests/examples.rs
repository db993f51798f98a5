//! The example files in `etc/` parse with the daemon's own parsers, so the README's
//! "copy etc/ and edit" stays true. (`etc/smb.conf` is checked with Samba's testparm
//! in `tests/vm/tests/scripts.rs`.)

use std::path::{Path, PathBuf};

use ctdbd::config::conf::CtdbConf;
use ctdbd::config::nodes::parse_nodes;
use ctdbd::config::public_addresses::parse_public_addresses;
use ctdbd::config::script_options::parse_script_options;

fn example(name: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../etc")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, text)
}

#[test]
fn example_ctdb_conf_parses() {
    let (path, text) = example("ctdb.conf");
    CtdbConf::parse(&text, &path).unwrap();
}

/// The commented-out `[metrics]` and `[dns]` examples parse once uncommented, with
/// the values they show.
#[test]
fn example_ctdb_conf_metrics_and_dns_parse_uncommented() {
    let (path, text) = example("ctdb.conf");
    let uncommented: String = text
        .lines()
        .map(|line| {
            let section = matches!(line, "# [metrics]" | "# [dns]");
            let key = ["listen", "name", "ttl"]
                .iter()
                .any(|k| line.starts_with(&format!("\t# {k} = ")));
            if section || key {
                format!("{}\n", line.replacen("# ", "", 1))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let conf = CtdbConf::parse(&uncommented, &path).unwrap();
    assert_eq!(
        conf.metrics.listen,
        Some("192.168.20.41:9479".parse().unwrap())
    );
    assert_eq!(conf.dns.listen, Some("10.0.20.11:53".parse().unwrap()));
    assert_eq!(conf.dns.name.as_deref(), Some("nas.example."));
    assert_eq!(conf.dns.ttl, 1);
}

#[test]
fn example_nodes_and_public_addresses_parse() {
    let (path, text) = example("nodes");
    assert_eq!(parse_nodes(&text, &path).unwrap().len(), 3);
    let (path, text) = example("public_addresses");
    let (good, bad) = parse_public_addresses(&text, &path, None);
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(good.len(), 3);
}

#[test]
fn example_script_options_parse_and_name_the_shared_volume() {
    let (path, text) = example("script.options");
    let options = parse_script_options(&text, &path).unwrap();
    assert!(options.iter().any(|o| o.name == "CTDB_SHARED_VOLUME"));
}

/// The configuration the Debian package installs (`packaging/deb/`): it parses, and
/// it sets no cluster lock and no shared volume, so a fresh single node becomes
/// healthy as soon as `nodes` lists it.
#[test]
fn package_conffiles_parse_and_need_no_shared_volume() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/deb");
    let path = dir.join("ctdb.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let conf = CtdbConf::parse(&text, &path).unwrap();
    assert_eq!(conf.cluster.cluster_lock, None, "{conf:?}");
    let path = dir.join("script.options");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_script_options(&text, &path).unwrap(), vec![]);
}

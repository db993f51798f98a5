//! Reads every configuration file from disk (following symlinks, so `nodes` and
//! `public_addresses` may live on the shared volume) and turns the parsed files into
//! the daemon's [`Settings`]. The parsing itself is pure and lives in `crate::config`.
//!
//! Order, as in CTDB: `ctdb.conf`, then the legacy `/etc/sysconfig/ctdb` (or Debian's
//! `/etc/default/ctdb`) variables mapped onto it, then `nodes`, `public_addresses`,
//! `ctdb.tunables` and `script.options`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::logging::LogTarget;
use crate::config::conf::{ClusterLock, CtdbConf, LogLocation};
use crate::config::legacy::LegacyConfig;
use crate::config::{nodes, public_addresses, script_options, tunables_file};
use crate::paths::Paths;
use crate::tunables::Tunables;

/// Legacy variable files, first found wins. `CTDB_SYSCONFIG` names another one.
const LEGACY_FILES: [&str; 2] = ["/etc/sysconfig/ctdb", "/etc/default/ctdb"];

/// The legacy variables file to read: `$CTDB_SYSCONFIG`, else the first of
/// legacy files (`/etc/sysconfig/ctdb`, `/etc/default/ctdb`) that exists.
pub fn legacy_file_from_env() -> Option<PathBuf> {
    std::env::var_os("CTDB_SYSCONFIG")
        .map(PathBuf::from)
        .or_else(|| LEGACY_FILES.iter().map(PathBuf::from).find(|p| p.exists()))
}

/// Everything the daemon needs from its configuration files.
#[derive(Debug, Clone)]
pub struct Settings {
    /// File locations.
    pub paths: Paths,
    /// `[logging] location`.
    pub log_target: LogTarget,
    /// `[logging] log level` as CTDB's number.
    pub debug_level: u32,
    /// `nodes`: one entry per line, `None` for deleted nodes.
    pub nodes: Vec<Option<IpAddr>>,
    /// `[cluster] node address`.
    pub node_address: Option<IpAddr>,
    /// Good lines of `public_addresses`.
    pub public_addresses: Vec<(IpAddr, u8, Vec<String>)>,
    /// Bad lines of `public_addresses`, to be logged; the good ones are still served.
    pub public_address_errors: Vec<String>,
    /// Tunables after `ctdb.tunables` and legacy `CTDB_SET_*`.
    pub tunables: Tunables,
    /// `[cluster] leader capability`.
    pub leader_capability: bool,
    /// `[legacy] lmaster capability`.
    pub lmaster_capability: bool,
    /// `[cluster] cluster lock`, as text (a path or `!command args`).
    pub cluster_lock: Option<String>,
    /// `[cluster] cluster lock`, parsed.
    pub cluster_lock_spec: Option<ClusterLock>,
    /// `[cluster] leader timeout`, seconds.
    pub leader_timeout_s: u32,
    /// `[legacy] start as disabled`.
    pub start_as_disabled: bool,
    /// `[legacy] start as stopped`.
    pub start_as_stopped: bool,
    /// Messages to log once logging is up (legacy variables mapped, obsolete tunables).
    pub notices: Vec<String>,
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Settings {
    /// Loads the files under `paths`, and the legacy variables in `legacy_file`. Any
    /// error is fatal, except bad `public_addresses` lines, which are reported and
    /// skipped.
    pub fn load(paths: &Paths, legacy_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut notices = Vec::new();
        let conf_path = paths.conf();
        let mut conf = match read_optional(&conf_path)? {
            Some(text) => CtdbConf::parse(&text, &conf_path)?,
            None => CtdbConf::default(),
        };

        for d in &conf.deprecated {
            notices.push(format!(
                "{}:{}: [{}] {} is deprecated; use {}",
                conf_path.display(),
                d.line,
                d.section,
                d.key,
                d.replacement
            ));
        }

        let mut legacy = None;
        if let Some(path) = legacy_file {
            if let Some(text) = read_optional(path)? {
                let parsed = LegacyConfig::parse(&text, path)?;
                parsed.apply_to(&mut conf);
                for n in &parsed.notices {
                    notices.push(format!(
                        "{}:{}: legacy variable {} is replaced by: {}",
                        path.display(),
                        n.line,
                        n.variable,
                        n.replacement
                    ));
                }
                legacy = Some(parsed);
            }
        }

        let nodes_path = legacy
            .as_ref()
            .and_then(|l| l.nodes_file.clone())
            .unwrap_or_else(|| paths.nodes());
        let nodes_text = std::fs::read_to_string(&nodes_path)
            .with_context(|| format!("reading nodes file {}", nodes_path.display()))?;
        let nodes = nodes::parse_nodes(&nodes_text, &nodes_path)?
            .into_iter()
            .map(|n| n.addr)
            .collect();

        let pa_path = legacy
            .as_ref()
            .and_then(|l| l.public_addresses_file.clone())
            .unwrap_or_else(|| paths.public_addresses());
        let default_iface = legacy.as_ref().and_then(|l| l.public_interface.clone());
        let (addresses, errors) = match read_optional(&pa_path)? {
            Some(text) => {
                public_addresses::parse_public_addresses(&text, &pa_path, default_iface.as_deref())
            }
            None => (Vec::new(), Vec::new()),
        };

        let mut tunables = Tunables::default();
        let tunables_path = paths.tunables();
        if let Some(text) = read_optional(&tunables_path)? {
            for t in tunables_file::parse_tunables_file(&text, &tunables_path)? {
                if t.obsolete {
                    notices.push(format!(
                        "{}:{}: tunable {} is obsolete",
                        tunables_path.display(),
                        t.line,
                        t.name
                    ));
                }
                // The name was validated by the parser.
                let _ = tunables.set(t.name, t.value);
            }
        }
        if let Some(l) = &legacy {
            for t in &l.tunables {
                let _ = tunables.set(t.name, t.value);
            }
        }
        let options_path = paths.script_options();
        if let Some(text) = read_optional(&options_path)? {
            // Parsed now so that a bad file fails at start-up, not at the first event.
            script_options::parse_script_options(&text, &options_path)?;
        }

        let log_target = match &conf.logging.location {
            LogLocation::File(path) => LogTarget::File(path.clone()),
            LogLocation::Syslog(_) => LogTarget::Syslog,
        };
        Ok(Self {
            paths: paths.clone(),
            log_target,
            debug_level: conf.logging.log_level.debug_level(),
            nodes,
            node_address: conf.cluster.node_address,
            public_addresses: addresses
                .into_iter()
                .map(|a| (a.addr, a.prefix_len, a.ifaces))
                .collect(),
            public_address_errors: errors.iter().map(ToString::to_string).collect(),
            tunables,
            leader_capability: conf.cluster.leader_capability,
            lmaster_capability: conf.legacy.lmaster_capability,
            cluster_lock: conf.cluster.cluster_lock.as_ref().map(|l| match l {
                ClusterLock::File(p) => p.display().to_string(),
                ClusterLock::Helper { command } => format!("!{command}"),
            }),
            cluster_lock_spec: conf.cluster.cluster_lock.clone(),
            leader_timeout_s: conf.cluster.leader_timeout,
            start_as_disabled: conf.legacy.start_as_disabled,
            start_as_stopped: conf.legacy.start_as_stopped,
            notices,
        })
    }
}

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
use crate::netif::netlink::NetlinkError;
use crate::paths::Paths;
use crate::tunables::{Tunables, LEADERLESS_HOLD_MS};

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
    /// The line of `public_addresses` each entry of `public_addresses` came from
    /// (same order and length), for messages about it after loading.
    pub public_address_lines: Vec<usize>,
    /// Bad lines of `public_addresses`, to be logged; the good ones are still served.
    pub public_address_errors: Vec<String>,
    /// The `public_addresses` file (legacy `CTDB_PUBLIC_ADDRESSES` may move it), for
    /// `ctdb reloadips`.
    pub public_addresses_file: PathBuf,
    /// Legacy `CTDB_PUBLIC_INTERFACE`: interface for lines that name none.
    pub default_public_iface: Option<String>,
    /// Tunables after `ctdb.tunables` and legacy `CTDB_SET_*`.
    pub tunables: Tunables,
    /// `[database]`: where database files go, and whether volatile ones use
    /// robust mutexes.
    pub database: crate::config::conf::DatabaseConf,
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
    /// `[event] debug script`, resolved in the configuration directory.
    pub event_debug_script: Option<PathBuf>,
    /// Event scripts the legacy `CTDB_MANAGES_*` variables ask to enable.
    pub enable_scripts: Vec<String>,
    /// Script options from the legacy file, passed to every event script.
    pub legacy_script_env: Vec<(String, String)>,
    /// Messages to log once logging is up (legacy variables mapped, obsolete tunables).
    pub notices: Vec<String>,
    /// `[metrics] listen`: where the Prometheus endpoint listens, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[dns]`: the DNS responder, if `listen` is set.
    pub dns: crate::config::DnsConf,
}

/// Lengthens the default `LeaderlessHoldMs` when the lock file `lock` is on a volume
/// that keeps a dead holder's lock longer than the default hold covers (GlusterFS at
/// its defaults: `lockvol::mounts`); returns the notice to log. Decided once, at
/// start-up, from the mount that holds the lock file then.
fn lengthen_hold_for_volume(tunables: &mut Tunables, lock: &Path) -> Option<String> {
    let mount = lockvol::mounts::mount_holding(lock).ok()??;
    let bound = lockvol::mounts::dead_holder_lock_bound(&mount.fstype)?;
    let hold_ms = tunables.leaderless_hold_for_volume(bound)?;
    let _ = tunables.set(LEADERLESS_HOLD_MS, hold_ms);
    Some(format!(
        "{LEADERLESS_HOLD_MS} defaults to {hold_ms} here: the cluster lock {} is on {} \
         ({}), which may keep a dead node's lock up to {bound:?}; set it in \
         ctdb.tunables to choose another value",
        lock.display(),
        mount.mount_point.display(),
        mount.fstype
    ))
}

fn read_optional(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Settings {
    /// The core's configuration from these settings; what identifies this run of
    /// the daemon (pnn, pid, incarnation, seed, start time) comes from the caller.
    pub fn node_config(
        &self,
        pnn: u32,
        daemon_pid: i32,
        incarnation: u64,
        seed: u64,
        start: crate::core::Now,
    ) -> crate::core::NodeConfig {
        crate::core::NodeConfig {
            pnn,
            nodes: self.nodes.clone(),
            public_addresses: self.public_addresses.clone(),
            tunables: self.tunables.clone(),
            debug_level: self.debug_level,
            leader_capability: self.leader_capability,
            lmaster_capability: self.lmaster_capability,
            cluster_lock: self.cluster_lock.clone(),
            leader_timeout_s: self.leader_timeout_s,
            start_disabled: self.start_as_disabled,
            start_stopped: self.start_as_stopped,
            daemon_pid,
            incarnation,
            seed,
            start,
        }
    }

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
        let mut hold_set = false;
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
                hold_set |= t.name.eq_ignore_ascii_case(LEADERLESS_HOLD_MS);
            }
        }
        if let Some(l) = &legacy {
            for t in &l.tunables {
                let _ = tunables.set(t.name, t.value);
                hold_set |= t.name.eq_ignore_ascii_case(LEADERLESS_HOLD_MS);
            }
        }
        if let (false, Some(ClusterLock::File(lock))) = (hold_set, &conf.cluster.cluster_lock) {
            if let Some(notice) = lengthen_hold_for_volume(&mut tunables, lock) {
                notices.push(notice);
            }
        }
        let options_path = paths.script_options();
        if let Some(text) = read_optional(&options_path)? {
            // Parsed now so that a bad file fails at start-up, not at the first event.
            script_options::parse_script_options(&text, &options_path)?;
        }

        let log_target = match &conf.logging.location {
            LogLocation::File(path) => LogTarget::File(path.clone()),
            LogLocation::Syslog(_) => LogTarget::Syslog(paths.syslog_socket.clone()),
        };
        Ok(Self {
            paths: paths.clone(),
            log_target,
            debug_level: conf.logging.log_level.debug_level(),
            nodes,
            node_address: conf.cluster.node_address,
            public_address_lines: addresses.iter().map(|a| a.line).collect(),
            public_addresses: addresses
                .into_iter()
                .map(|a| (a.addr, a.prefix_len, a.ifaces))
                .collect(),
            public_address_errors: errors.iter().map(ToString::to_string).collect(),
            public_addresses_file: pa_path.clone(),
            default_public_iface: default_iface.clone(),
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
            // ctdb.conf(5): only the file name counts, found in the configuration
            // directory.
            metrics_listen: conf.metrics.listen,
            database: conf.database.clone(),
            dns: conf.dns.clone(),
            event_debug_script: conf
                .event
                .debug_script
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|name| paths.etc_dir.join(name)),
            enable_scripts: legacy
                .as_ref()
                .map(|l| l.enable_scripts.clone())
                .unwrap_or_default(),
            legacy_script_env: legacy
                .as_ref()
                .map(|l| {
                    l.script_options
                        .iter()
                        .map(|o| (o.name.clone(), o.value.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            notices,
        })
    }

    /// Drops every public interface for which `exists` says no (see
    /// [`keep_existing_interfaces`]). Start-up does this once.
    pub fn keep_existing_interfaces(
        &mut self,
        exists: impl Fn(&str) -> bool,
    ) -> Vec<InterfaceProblem> {
        let entries = std::mem::take(&mut self.public_addresses);
        let lines = std::mem::take(&mut self.public_address_lines);
        let (kept, problems) = keep_existing_interfaces(
            &self.public_addresses_file,
            entries.into_iter().zip(lines).collect(),
            exists,
        );
        (self.public_addresses, self.public_address_lines) = kept.into_iter().unzip();
        problems
    }
}

/// One `public_addresses` entry: address, prefix length, interfaces.
pub type PublicEntry = (IpAddr, u8, Vec<String>);

/// The one rule for interfaces named in `public_addresses`, at start-up and on
/// `ctdb reloadips`: every interface for which `exists` says no is dropped; an
/// address none of whose interfaces exists is not served at all (it could never be
/// hosted here, and a takeover run that gave it to us would fail every time); an
/// address with some missing keeps the others. `entries` carry their line in `path`;
/// returns the kept ones and one problem per affected line, in order, for the
/// caller to log.
pub fn keep_existing_interfaces(
    path: &Path,
    entries: Vec<(PublicEntry, usize)>,
    exists: impl Fn(&str) -> bool,
) -> (Vec<(PublicEntry, usize)>, Vec<InterfaceProblem>) {
    let mut problems = Vec::new();
    let mut kept_entries = Vec::new();
    for ((addr, prefix_len, ifaces), line) in entries {
        let (kept, missing): (Vec<String>, Vec<String>) =
            ifaces.into_iter().partition(|iface| exists(iface));
        let path = path.to_owned();
        if kept.is_empty() {
            problems.push(InterfaceProblem::AddressSkipped {
                path,
                line,
                addr,
                missing,
            });
            continue;
        }
        if !missing.is_empty() {
            problems.push(InterfaceProblem::InterfacesDropped {
                path,
                line,
                addr,
                missing,
                kept: kept.clone(),
            });
        }
        kept_entries.push(((addr, prefix_len, kept), line));
    }
    (kept_entries, problems)
}

/// Whether a lookup of a public interface means it does not exist. Only the
/// kernel's "no such interface" does: an interface that cannot be looked up for
/// another reason is kept, and the takeover reports it if it is really missing.
pub fn interface_missing<T>(lookup: &Result<T, NetlinkError>) -> bool {
    matches!(lookup, Err(NetlinkError::NoSuchInterface { .. }))
}

/// A `public_addresses` line names interfaces this node does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterfaceProblem {
    /// None of the line's interfaces exists: the address is not served by this node
    /// (an error; the other addresses still are).
    #[error("{}:{line}: {} on this node; {addr} is not served", path.display(), Missing(missing))]
    AddressSkipped {
        /// The `public_addresses` file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The address of that line.
        addr: IpAddr,
        /// The interfaces that do not exist.
        missing: Vec<String>,
    },
    /// Some of the line's interfaces do not exist: the address goes only on the
    /// others (a warning).
    #[error(
        "{}:{line}: {} on this node; {addr} may only go on {}",
        path.display(),
        Missing(missing),
        kept.join(",")
    )]
    InterfacesDropped {
        /// The `public_addresses` file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// The address of that line.
        addr: IpAddr,
        /// The interfaces that do not exist.
        missing: Vec<String>,
        /// The interfaces that do, which it may still go on.
        kept: Vec<String>,
    },
}

impl InterfaceProblem {
    /// Whether the address is lost to this node (logged as an error), rather than
    /// merely restricted (a warning).
    pub fn is_error(&self) -> bool {
        matches!(self, Self::AddressSkipped { .. })
    }
}

/// `interface X does not exist` / `interfaces X,Y do not exist`.
struct Missing<'a>(&'a [String]);

impl std::fmt::Display for Missing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            [one] => write!(f, "interface {one} does not exist"),
            many => write!(f, "interfaces {} do not exist", many.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_with(lines: &[(usize, &str, &[&str])]) -> Settings {
        let paths = Paths::from_env(|_| None);
        Settings {
            log_target: LogTarget::Stderr,
            debug_level: 3,
            nodes: Vec::new(),
            node_address: None,
            public_addresses: lines
                .iter()
                .map(|(_, addr, ifaces)| {
                    (
                        addr.parse().unwrap(),
                        24,
                        ifaces.iter().map(|i| i.to_string()).collect(),
                    )
                })
                .collect(),
            public_address_lines: lines.iter().map(|(line, _, _)| *line).collect(),
            public_addresses_file: paths.public_addresses(),
            default_public_iface: None,
            public_address_errors: Vec::new(),
            tunables: Tunables::default(),
            leader_capability: true,
            lmaster_capability: true,
            cluster_lock: None,
            cluster_lock_spec: None,
            leader_timeout_s: 5,
            start_as_disabled: false,
            start_as_stopped: false,
            event_debug_script: None,
            database: Default::default(),
            metrics_listen: None,
            dns: crate::config::DnsConf::default(),
            enable_scripts: Vec::new(),
            legacy_script_env: Vec::new(),
            notices: Vec::new(),
            paths,
        }
    }

    #[test]
    fn missing_interfaces_drop_the_address_or_the_interface_naming_file_and_line() {
        // Given a file whose line 3 names only a missing interface and line 5 names
        // a missing one besides an existing one,
        let mut settings = settings_with(&[
            (1, "10.0.20.101", &["pub0"]),
            (3, "10.0.20.102", &["eth9"]),
            (5, "10.0.20.103", &["eth8", "pub0", "eth9"]),
        ]);
        // when only pub0 exists,
        let problems = settings.keep_existing_interfaces(|iface| iface == "pub0");
        // then line 3's address is skipped (an error), line 5's keeps pub0 (a warning),
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "/etc/ctdb/public_addresses:3: interface eth9 does not exist on this node; \
                 10.0.20.102 is not served",
                "/etc/ctdb/public_addresses:5: interfaces eth8,eth9 do not exist on this \
                 node; 10.0.20.103 may only go on pub0",
            ]
        );
        assert_eq!(
            problems
                .iter()
                .map(InterfaceProblem::is_error)
                .collect::<Vec<_>>(),
            vec![true, false]
        );
        // and the others are still served, lines kept in step.
        let served: Vec<String> = settings
            .public_addresses
            .iter()
            .map(|(a, p, i)| format!("{a}/{p} {}", i.join(",")))
            .collect();
        assert_eq!(served, vec!["10.0.20.101/24 pub0", "10.0.20.103/24 pub0"]);
        assert_eq!(settings.public_address_lines, vec![1, 5]);
    }

    /// Start-up and `reloadips` share this rule: only the kernel's "no such
    /// interface" makes an interface missing; another lookup failure keeps it.
    #[test]
    fn only_no_such_interface_counts_as_missing() {
        let gone: Result<u32, NetlinkError> = Err(NetlinkError::NoSuchInterface {
            iface: "eth9".into(),
        });
        assert!(interface_missing(&gone));
        assert!(!interface_missing(&Ok::<u32, NetlinkError>(3)));
        let unknown: Result<u32, NetlinkError> =
            Err(NetlinkError::Open(std::io::Error::other("no netlink")));
        assert!(!interface_missing(&unknown));
    }

    #[test]
    fn all_interfaces_present_changes_nothing() {
        let mut settings = settings_with(&[(2, "10.0.20.101", &["pub0", "pub1"])]);
        let before = settings.public_addresses.clone();
        assert!(settings.keep_existing_interfaces(|_| true).is_empty());
        assert_eq!(settings.public_addresses, before);
        assert_eq!(settings.public_address_lines, vec![2]);
    }
}

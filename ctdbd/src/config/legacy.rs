//! The pre-4.9 service configuration file, `/etc/sysconfig/ctdb` (Red Hat) or
//! `/etc/default/ctdb` (Debian): a shell fragment of `CTDB_*` variables that old
//! clusters still carry.
//!
//! CTDB 4.17 reads none of these variables (`ctdb.sysconfig(5)` documents only
//! `CTDB_INIT_STYLE` and resource limits). We accept them so an old cluster keeps
//! working: [`LegacyConfig::parse`] maps each variable to the setting that replaced it
//! (the same mapping as CTDB's `config_migrate.sh`) and records a [`LegacyNotice`] so
//! the daemon can log, once per variable, what to write instead. The daemon parses
//! `ctdb.conf`, then calls [`LegacyConfig::apply_to`], so a legacy variable wins over
//! `ctdb.conf` (as command-line options built from it once did), and uses the other
//! fields (tunables, nodes and public addresses paths, default interface, event
//! scripts to enable, resource limits) itself.
//!
//! Only assignments are understood (see `shell.rs`); nothing is run or expanded,
//! and `if` blocks are not evaluated, so an assignment inside one always counts. Other
//! shell commands become notices. Variables not starting with `CTDB_` are ignored;
//! unknown `CTDB_*` variables become notices. An empty value counts as unset. A bad value
//! or malformed `CTDB_*` line is an error.

use std::path::{Path, PathBuf};

use super::conf::{parse_bool, CtdbConf, LogLevel};
use super::public_addresses::is_valid_interface_name;
use super::script_options::ScriptOption;
use super::shell::{self, ShellLine};
use super::tunables_file::TunableSetting;
use super::{parse_c_unsigned, ConfigError, ConfigErrorKind};
use crate::tunables::Tunables;

/// Where the daemon looks for the nodes file when no legacy path is set.
const DEFAULT_NODES_FILE: &str = "/etc/ctdb/nodes";
/// Where the daemon looks for the public addresses file when no legacy path is set.
const DEFAULT_PUBLIC_ADDRESSES_FILE: &str = "/etc/ctdb/public_addresses";

/// Everything a legacy file said, mapped onto today's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyConfig {
    /// `ctdb.conf` settings, in file order; [`Self::apply_to`] sets them.
    pub settings: Vec<LegacySetting>,
    /// `CTDB_SET_<Tunable>=N`, as `ctdb.tunables` lines, in file order.
    pub tunables: Vec<TunableSetting>,
    /// Event scripts to enable (`50.samba`, ...) for `CTDB_MANAGES_*` and
    /// `CTDB_MANAGED_SERVICES`, in order of first mention, without repeats.
    pub enable_scripts: Vec<String>,
    /// `CTDB_NODES`: the nodes file to read instead of `/etc/ctdb/nodes`.
    pub nodes_file: Option<PathBuf>,
    /// `CTDB_PUBLIC_ADDRESSES`: the public addresses file to read instead of
    /// `/etc/ctdb/public_addresses`.
    pub public_addresses_file: Option<PathBuf>,
    /// `CTDB_PUBLIC_INTERFACE`: interface for public address lines that name none.
    pub public_interface: Option<String>,
    /// `CTDB_MAX_OPEN_FILES`: open-file limit to raise to; `unlimited` is `u64::MAX`
    /// (`RLIM_INFINITY` on Linux).
    pub max_open_files: Option<u64>,
    /// `CTDB_SUPPRESS_COREFILE`: `Some(true)` to forbid core files, `Some(false)` to
    /// allow them without limit.
    pub suppress_core_files: Option<bool>,
    /// Event script options set here, which now belong in `script.options`; the daemon
    /// passes them to event scripts.
    pub script_options: Vec<ScriptOption>,
    /// One notice per legacy variable (or shell command) met, in file order.
    pub notices: Vec<LegacyNotice>,
}

/// One `ctdb.conf` setting derived from a legacy variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySetting {
    /// Section, canonical name.
    pub section: &'static str,
    /// Option name.
    pub key: &'static str,
    /// Value, as it would be written in `ctdb.conf`.
    pub value: String,
    /// Line of the legacy file it came from.
    pub line: usize,
}

/// A legacy variable was used; the daemon logs this once, at warning level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyNotice {
    /// The variable (or, for a shell command, its first word).
    pub variable: String,
    /// Line of the legacy file.
    pub line: usize,
    /// What replaces it today, such as `[cluster] cluster lock = /shared/lock`, or why
    /// it was ignored.
    pub replacement: String,
}

/// How a variable with a direct `ctdb.conf` equivalent turns into its value.
#[derive(Debug, Clone, Copy)]
enum Convert {
    /// Copied as is.
    Verbatim,
    /// A log level, written back under its canonical name.
    Level,
    /// yes/no into true/false.
    Bool,
    /// yes/no into false/true.
    InvertedBool,
}

/// Variables with a direct `ctdb.conf` equivalent: variable, section, key, conversion.
const CONF_VARIABLES: &[(&str, &str, &str, Convert)] = &[
    (
        "CTDB_RECOVERY_LOCK",
        "cluster",
        "cluster lock",
        Convert::Verbatim,
    ),
    (
        "CTDB_NODE_ADDRESS",
        "cluster",
        "node address",
        Convert::Verbatim,
    ),
    ("CTDB_TRANSPORT", "cluster", "transport", Convert::Verbatim),
    (
        "CTDB_CAPABILITY_RECMASTER",
        "cluster",
        "leader capability",
        Convert::Bool,
    ),
    ("CTDB_LOGGING", "logging", "location", Convert::Verbatim),
    ("CTDB_DEBUGLEVEL", "logging", "log level", Convert::Level),
    (
        "CTDB_DBDIR",
        "database",
        "volatile database directory",
        Convert::Verbatim,
    ),
    (
        "CTDB_DBDIR_PERSISTENT",
        "database",
        "persistent database directory",
        Convert::Verbatim,
    ),
    (
        "CTDB_DBDIR_STATE",
        "database",
        "state database directory",
        Convert::Verbatim,
    ),
    (
        "CTDB_DEBUG_LOCKS",
        "database",
        "lock debug script",
        Convert::Verbatim,
    ),
    (
        "CTDB_DEBUG_HUNG_SCRIPT",
        "event",
        "debug script",
        Convert::Verbatim,
    ),
    (
        "CTDB_CAPABILITY_LMASTER",
        "legacy",
        "lmaster capability",
        Convert::Bool,
    ),
    (
        "CTDB_NOSETSCHED",
        "legacy",
        "realtime scheduling",
        Convert::InvertedBool,
    ),
    (
        "CTDB_START_AS_DISABLED",
        "legacy",
        "start as disabled",
        Convert::Bool,
    ),
    (
        "CTDB_START_AS_STOPPED",
        "legacy",
        "start as stopped",
        Convert::Bool,
    ),
    (
        "CTDB_SCRIPT_LOG_LEVEL",
        "legacy",
        "script log level",
        Convert::Level,
    ),
];

/// Obsolete tunables that became `ctdb.conf` booleans: tunable, section, key, and
/// whether a non-zero value means true.
const TUNABLE_TO_CONF: &[(&str, &str, &str, bool)] = &[
    ("TDBMutexEnabled", "database", "tdb mutexes", true),
    ("DisableIPFailover", "failover", "disabled", true),
];

/// Services `CTDB_MANAGES_*` / `CTDB_MANAGED_SERVICES` name, and their event script.
const SERVICE_SCRIPTS: &[(&str, &str)] = &[
    ("samba", "50.samba"),
    ("winbind", "49.winbind"),
    ("nfs", "60.nfs"),
    ("apache2", "41.httpd"),
    ("httpd", "41.httpd"),
    ("clamd", "31.clamd"),
    ("iscsi", "70.iscsi"),
    ("vsftpd", "40.vsftpd"),
];

/// Variables the event scripts read, which now belong in `script.options`.
const SCRIPT_VARIABLES: &[&str] = &[
    "CTDB_PARTIALLY_ONLINE_INTERFACES",
    "CTDB_NATGW_DEFAULT_GATEWAY",
    "CTDB_NATGW_NODES",
    "CTDB_NATGW_PRIVATE_NETWORK",
    "CTDB_NATGW_PUBLIC_IFACE",
    "CTDB_NATGW_PUBLIC_IP",
    "CTDB_NATGW_STATIC_ROUTES",
    "CTDB_PER_IP_ROUTING_CONF",
    "CTDB_PER_IP_ROUTING_RULE_PREF",
    "CTDB_PER_IP_ROUTING_TABLE_ID_LOW",
    "CTDB_PER_IP_ROUTING_TABLE_ID_HIGH",
    "CTDB_LVS_NODES",
    "CTDB_LVS_PUBLIC_IFACE",
    "CTDB_LVS_PUBLIC_IP",
    "CTDB_MONITOR_MPDEVICES",
    "CTDB_CLAMD_SOCKET",
    "CTDB_SERVICE_NMB",
    "CTDB_SERVICE_WINBIND",
    "CTDB_SAMBA_CHECK_PORTS",
    "CTDB_SAMBA_SKIP_SHARE_CHECK",
    "CTDB_SERVICE_SMB",
    "CTDB_NFS_CALLOUT",
    "CTDB_NFS_CHECKS_DIR",
    "CTDB_NFS_SKIP_SHARE_CHECK",
    "CTDB_RPCINFO_LOCALHOST",
    "CTDB_RPCINFO_LOCALHOST6",
    "CTDB_NFS_STATE_FS_TYPE",
    "CTDB_NFS_STATE_MNT",
    "CTDB_START_ISCSI_SCRIPTS",
    "CTDB_MAX_CORRUPT_DB_BACKUPS",
    "CTDB_MONITOR_FILESYSTEM_USAGE",
    "CTDB_MONITOR_MEMORY_USAGE",
    "CTDB_DEBUG_HUNG_SCRIPT_STACKPAT",
];

/// Variables that were removed without a replacement.
const REMOVED_VARIABLES: &[&str] = &[
    "CTDB_BASE",
    "CTDB_PIDFILE",
    "CTDB_SOCKET",
    "CTDB_EVENT_SCRIPT_DIR",
    "CTDB_NOTIFY_SCRIPT",
    "CTDB_MAX_PERSISTENT_CHECK_ERRORS",
    "CTDB_SHUTDOWN_TIMEOUT",
    "CTDB_MONITOR_SWAP_USAGE",
];

const EXPECT_YES_NO: &str = "yes or no";

impl LegacyConfig {
    /// Parses the text of a legacy file read from `path` (`path` only labels errors).
    /// The first bad line is returned as an error.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut legacy = Self::default();
        // Every setting is tried on this scratch copy as it is read, so a bad value is
        // reported against its own line and `apply_to` cannot fail later.
        let mut scratch = CtdbConf::default();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let parsed = shell::parse_line(raw).or_else(|expected| {
                let (name, _) = shell::split_name(raw.trim_matches([' ', '\t', '\r']));
                if name.starts_with("CTDB_") {
                    Err(ConfigError::new(
                        path,
                        line,
                        ConfigErrorKind::Syntax { expected },
                    ))
                } else {
                    // Not ours: a shell line we cannot read, which the shell may well.
                    Ok(ShellLine::Blank)
                }
            })?;
            match parsed {
                ShellLine::Blank => {}
                ShellLine::Command(word) => legacy.notice(
                    word,
                    line,
                    "nothing: shell commands in this file are not run".to_owned(),
                ),
                ShellLine::Assignment { name, value } => {
                    if !name.starts_with("CTDB_") || value.is_empty() {
                        continue;
                    }
                    legacy
                        .variable(name, &value, line, &mut scratch)
                        .map_err(|kind| ConfigError::new(path, line, kind))?;
                }
            }
        }
        Ok(legacy)
    }

    /// Sets every mapped `ctdb.conf` option in `conf`, in file order, overriding what
    /// `ctdb.conf` said.
    pub fn apply_to(&self, conf: &mut CtdbConf) {
        for setting in &self.settings {
            // Cannot fail: `parse` already set this exact value on a CtdbConf.
            let _ = conf.set(setting.section, setting.key, &setting.value);
        }
    }

    fn notice(&mut self, variable: &str, line: usize, replacement: String) {
        self.notices.push(LegacyNotice {
            variable: variable.to_owned(),
            line,
            replacement,
        });
    }

    /// Records `section`/`key` = `value`, checking it on `scratch` first.
    fn setting(
        &mut self,
        variable: &str,
        line: usize,
        (section, key): (&'static str, &'static str),
        value: String,
        scratch: &mut CtdbConf,
    ) -> Result<(), ConfigErrorKind> {
        scratch
            .set(section, key, &value)
            .map_err(|kind| match kind {
                ConfigErrorKind::InvalidValue { expected, .. } => ConfigErrorKind::InvalidValue {
                    key: variable.to_owned(),
                    value: value.clone(),
                    expected,
                },
                other => other,
            })?;
        self.notice(variable, line, format!("[{section}] {key} = {value}"));
        self.settings.push(LegacySetting {
            section,
            key,
            value,
            line,
        });
        Ok(())
    }

    /// Handles one non-empty `CTDB_*` assignment.
    fn variable(
        &mut self,
        name: &str,
        value: &str,
        line: usize,
        scratch: &mut CtdbConf,
    ) -> Result<(), ConfigErrorKind> {
        let invalid = |expected| ConfigErrorKind::InvalidValue {
            key: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let yes_no = || parse_bool(value).ok_or_else(|| invalid(EXPECT_YES_NO));

        if name == "CTDB_DBDIR" && value == "tmpfs" {
            self.notice(
                name,
                line,
                "nothing: CTDB_DBDIR=tmpfs is gone; mount a tmpfs on the volatile database \
                 directory instead"
                    .to_owned(),
            );
            return Ok(());
        }
        if let Some(&(_, section, key, convert)) =
            CONF_VARIABLES.iter().find(|(var, ..)| *var == name)
        {
            let converted = match convert {
                Convert::Verbatim => value.to_owned(),
                Convert::Level => legacy_log_level(value)
                    .ok_or_else(|| {
                        invalid("ERR, ERROR, WARNING, NOTICE, INFO, DEBUG or a number from 0 to 10")
                    })?
                    .name()
                    .to_owned(),
                Convert::Bool => yes_no()?.to_string(),
                Convert::InvertedBool => (!yes_no()?).to_string(),
            };
            return self.setting(name, line, (section, key), converted, scratch);
        }
        if let Some(tunable) = name.strip_prefix("CTDB_SET_") {
            return self.tunable(name, tunable, value, line, scratch);
        }
        if let Some(service) = name.strip_prefix("CTDB_MANAGES_") {
            if yes_no()? {
                self.manage_service(name, &service.to_ascii_lowercase(), line);
            } else {
                self.notice(
                    name,
                    line,
                    "nothing: the service stays unmanaged".to_owned(),
                );
            }
            return Ok(());
        }
        match name {
            "CTDB_MANAGED_SERVICES" => {
                for service in value.split_whitespace() {
                    self.manage_service(name, service, line);
                }
            }
            "CTDB_NODES" => {
                self.nodes_file = Some(PathBuf::from(value));
                self.notice(name, line, file_location(DEFAULT_NODES_FILE, value));
            }
            "CTDB_PUBLIC_ADDRESSES" => {
                self.public_addresses_file = Some(PathBuf::from(value));
                self.notice(
                    name,
                    line,
                    file_location(DEFAULT_PUBLIC_ADDRESSES_FILE, value),
                );
            }
            "CTDB_PUBLIC_INTERFACE" => {
                if !is_valid_interface_name(value) {
                    return Err(ConfigErrorKind::BadInterface {
                        name: value.to_owned(),
                    });
                }
                self.public_interface = Some(value.to_owned());
                self.notice(
                    name,
                    line,
                    format!("the interface written on each public_addresses line ({value})"),
                );
            }
            "CTDB_MAX_OPEN_FILES" => {
                let limit = if value == "unlimited" {
                    u64::MAX
                } else {
                    value
                        .parse::<u64>()
                        .ok()
                        .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                        .ok_or_else(|| invalid("a number of files or unlimited"))?
                };
                self.max_open_files = Some(limit);
                let systemd = if value == "unlimited" {
                    "infinity"
                } else {
                    value
                };
                self.notice(
                    name,
                    line,
                    format!("LimitNOFILE={systemd} in the ctdb service unit (systemd.exec(5))"),
                );
            }
            "CTDB_SUPPRESS_COREFILE" => {
                let suppress = yes_no()?;
                self.suppress_core_files = Some(suppress);
                let limit = if suppress { "0" } else { "infinity" };
                self.notice(
                    name,
                    line,
                    format!("LimitCORE={limit} in the ctdb service unit (systemd.exec(5))"),
                );
            }
            // Still documented for this file by ctdb.sysconfig(5): not legacy at all.
            "CTDB_INIT_STYLE" => self.script_option(name, value, line),
            _ if SCRIPT_VARIABLES.contains(&name) => {
                self.script_option(name, value, line);
                self.notice(
                    name,
                    line,
                    format!("/etc/ctdb/script.options: {name}={value}"),
                );
            }
            _ if REMOVED_VARIABLES.contains(&name) => self.notice(
                name,
                line,
                "nothing: no longer supported, ignored".to_owned(),
            ),
            _ => self.notice(name, line, "nothing: unknown variable, ignored".to_owned()),
        }
        Ok(())
    }

    /// `CTDB_SET_<tunable>=N`.
    fn tunable(
        &mut self,
        variable: &str,
        tunable: &str,
        value: &str,
        line: usize,
        scratch: &mut CtdbConf,
    ) -> Result<(), ConfigErrorKind> {
        let number = parse_c_unsigned(value)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| ConfigErrorKind::InvalidValue {
                key: variable.to_owned(),
                value: value.to_owned(),
                expected: "a number from 0 to 4294967295 (decimal, 0x hex or 0 octal)",
            })?;
        if let Some(&(_, section, key, nonzero_means)) = TUNABLE_TO_CONF
            .iter()
            .find(|(t, ..)| t.eq_ignore_ascii_case(tunable))
        {
            let flag = (number != 0) == nonzero_means;
            return self.setting(variable, line, (section, key), flag.to_string(), scratch);
        }
        let Some(def) = Tunables::definition(tunable) else {
            self.notice(
                variable,
                line,
                "nothing: unknown tunable, ignored".to_owned(),
            );
            return Ok(());
        };
        let obsolete = if def.obsolete {
            " (obsolete: accepted, has no effect)"
        } else {
            ""
        };
        self.notice(
            variable,
            line,
            format!("/etc/ctdb/ctdb.tunables: {}={number}{obsolete}", def.name),
        );
        self.tunables.push(TunableSetting {
            name: def.name,
            value: number,
            line,
            obsolete: def.obsolete,
        });
        Ok(())
    }

    fn manage_service(&mut self, variable: &str, service: &str, line: usize) {
        let Some(&(_, script)) = SERVICE_SCRIPTS.iter().find(|(s, _)| *s == service) else {
            self.notice(
                variable,
                line,
                format!("nothing: unknown service {service:?}; enable its event script by hand"),
            );
            return;
        };
        if !self.enable_scripts.iter().any(|s| s == script) {
            self.enable_scripts.push(script.to_owned());
        }
        self.notice(
            variable,
            line,
            format!("the enabled event script {script} (ctdb event script enable legacy {script})"),
        );
    }

    fn script_option(&mut self, name: &str, value: &str, line: usize) {
        self.script_options.push(ScriptOption {
            name: name.to_owned(),
            value: value.to_owned(),
            line,
        });
    }
}

/// A log level as old CTDB releases wrote it: today's forms, plus the syslog-style
/// EMERG, ALERT and CRIT, which all mean ERROR now.
fn legacy_log_level(text: &str) -> Option<LogLevel> {
    if ["EMERG", "ALERT", "CRIT"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(text))
    {
        return Some(LogLevel::Error);
    }
    LogLevel::parse(text)
}

fn file_location(default: &str, value: &str) -> String {
    if value == default {
        format!("the default location {default} (nothing to do)")
    } else {
        format!("a symlink {default} -> {value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::conf::ClusterLock;
    use proptest::prelude::*;

    const PATH: &str = "/etc/default/ctdb";

    fn parse(text: &str) -> Result<LegacyConfig, ConfigError> {
        LegacyConfig::parse(text, Path::new(PATH))
    }

    fn notices(legacy: &LegacyConfig) -> Vec<(&str, usize, &str)> {
        legacy
            .notices
            .iter()
            .map(|n| (n.variable.as_str(), n.line, n.replacement.as_str()))
            .collect()
    }

    #[test]
    fn gluster_example_maps_every_variable() {
        let text = "\
CTDB_RECOVERY_LOCK=\"/gluster/ctdb_lock/lockfile\"
CTDB_PUBLIC_INTERFACE=eth0
CTDB_PUBLIC_ADDRESSES=/etc/ctdb/public_addresses
CTDB_MANAGES_SAMBA=yes
CTDB_MANAGES_NFS=yes
CTDB_MANAGES_WINBIND=yes
CTDB_NODES=/etc/ctdb/nodes
CTDB_DEBUGLEVEL=ERR
";
        let legacy = parse(text).unwrap();
        assert_eq!(
            legacy.settings,
            vec![
                LegacySetting {
                    section: "cluster",
                    key: "cluster lock",
                    value: "/gluster/ctdb_lock/lockfile".into(),
                    line: 1,
                },
                LegacySetting {
                    section: "logging",
                    key: "log level",
                    value: "ERROR".into(),
                    line: 8,
                },
            ]
        );
        assert_eq!(legacy.public_interface.as_deref(), Some("eth0"));
        assert_eq!(
            legacy.public_addresses_file,
            Some(PathBuf::from("/etc/ctdb/public_addresses"))
        );
        assert_eq!(legacy.nodes_file, Some(PathBuf::from("/etc/ctdb/nodes")));
        assert_eq!(legacy.enable_scripts, ["50.samba", "60.nfs", "49.winbind"]);
        assert!(legacy.tunables.is_empty());
        assert_eq!(
            notices(&legacy),
            vec![
                (
                    "CTDB_RECOVERY_LOCK",
                    1,
                    "[cluster] cluster lock = /gluster/ctdb_lock/lockfile"
                ),
                (
                    "CTDB_PUBLIC_INTERFACE",
                    2,
                    "the interface written on each public_addresses line (eth0)"
                ),
                (
                    "CTDB_PUBLIC_ADDRESSES",
                    3,
                    "the default location /etc/ctdb/public_addresses (nothing to do)"
                ),
                (
                    "CTDB_MANAGES_SAMBA",
                    4,
                    "the enabled event script 50.samba (ctdb event script enable legacy 50.samba)"
                ),
                (
                    "CTDB_MANAGES_NFS",
                    5,
                    "the enabled event script 60.nfs (ctdb event script enable legacy 60.nfs)"
                ),
                (
                    "CTDB_MANAGES_WINBIND",
                    6,
                    "the enabled event script 49.winbind \
                     (ctdb event script enable legacy 49.winbind)"
                ),
                (
                    "CTDB_NODES",
                    7,
                    "the default location /etc/ctdb/nodes (nothing to do)"
                ),
                ("CTDB_DEBUGLEVEL", 8, "[logging] log level = ERROR"),
            ]
        );

        let mut conf = CtdbConf::default();
        legacy.apply_to(&mut conf);
        assert_eq!(
            conf.cluster.cluster_lock,
            Some(ClusterLock::File("/gluster/ctdb_lock/lockfile".into()))
        );
        assert_eq!(conf.logging.log_level, LogLevel::Error);
    }

    #[test]
    fn every_conf_variable_maps_and_applies() {
        let text = "\
export CTDB_NODE_ADDRESS=10.0.0.1
CTDB_TRANSPORT=tcp
CTDB_CAPABILITY_RECMASTER=no
CTDB_CAPABILITY_LMASTER=no
CTDB_LOGGING=syslog:nonblocking
CTDB_DEBUGLEVEL=2
CTDB_SCRIPT_LOG_LEVEL=notice
CTDB_DBDIR=/run/ctdb/volatile
CTDB_DBDIR_PERSISTENT=/srv/persistent
CTDB_DBDIR_STATE=/srv/state
CTDB_DEBUG_LOCKS=/etc/ctdb/debug_locks.sh
CTDB_DEBUG_HUNG_SCRIPT=/etc/ctdb/debug-hung-script.sh
CTDB_NOSETSCHED=yes
CTDB_START_AS_DISABLED=yes
CTDB_START_AS_STOPPED=YES
CTDB_RECOVERY_LOCK='!/usr/bin/helper --lock x'
CTDB_SET_TDBMutexEnabled=0
CTDB_SET_DisableIpFailover=1
";
        let legacy = parse(text).unwrap();
        let shown: Vec<&str> = legacy
            .notices
            .iter()
            .map(|n| n.replacement.as_str())
            .collect();
        assert_eq!(
            shown,
            [
                "[cluster] node address = 10.0.0.1",
                "[cluster] transport = tcp",
                "[cluster] leader capability = false",
                "[legacy] lmaster capability = false",
                "[logging] location = syslog:nonblocking",
                "[logging] log level = WARNING",
                "[legacy] script log level = NOTICE",
                "[database] volatile database directory = /run/ctdb/volatile",
                "[database] persistent database directory = /srv/persistent",
                "[database] state database directory = /srv/state",
                "[database] lock debug script = /etc/ctdb/debug_locks.sh",
                "[event] debug script = /etc/ctdb/debug-hung-script.sh",
                "[legacy] realtime scheduling = false",
                "[legacy] start as disabled = true",
                "[legacy] start as stopped = true",
                "[cluster] cluster lock = !/usr/bin/helper --lock x",
                "[database] tdb mutexes = false",
                "[failover] disabled = true",
            ]
        );
        let mut conf = CtdbConf::default();
        legacy.apply_to(&mut conf);
        assert_eq!(conf.cluster.node_address, Some("10.0.0.1".parse().unwrap()));
        assert!(!conf.cluster.leader_capability);
        assert!(!conf.legacy.lmaster_capability);
        assert_eq!(conf.logging.log_level, LogLevel::Warning);
        assert_eq!(conf.legacy.script_log_level, LogLevel::Notice);
        assert_eq!(conf.database.volatile_dir, Path::new("/run/ctdb/volatile"));
        assert_eq!(conf.database.persistent_dir, Path::new("/srv/persistent"));
        assert_eq!(conf.database.state_dir, Path::new("/srv/state"));
        assert!(!conf.legacy.realtime_scheduling);
        assert!(conf.legacy.start_as_disabled);
        assert!(conf.legacy.start_as_stopped);
        assert!(!conf.database.tdb_mutexes);
        assert!(conf.failover.disabled);
        assert_eq!(
            conf.cluster.cluster_lock,
            Some(ClusterLock::Helper {
                command: "/usr/bin/helper --lock x".into()
            })
        );
    }

    #[test]
    fn tunables_services_limits_and_script_options() {
        let text = "\
CTDB_SET_MonitorInterval=20
CTDB_SET_recoverybanperiod=0x10
CTDB_SET_DeterministicIPs=1
CTDB_SET_foobar=0
CTDB_MANAGED_SERVICES=\"vsftpd samba foo\"
CTDB_MANAGES_SAMBA=yes
CTDB_MANAGES_HTTPD=no
CTDB_MAX_OPEN_FILES=1048576
CTDB_SUPPRESS_COREFILE=yes
CTDB_NATGW_PUBLIC_IFACE=eth1
CTDB_INIT_STYLE=debian
CTDB_NOTIFY_SCRIPT=/etc/ctdb/notify-custom.sh
CTDB_FOO=bar
CTDB_DBDIR=tmpfs
CTDB_NODES=/clusterfs/nodes
";
        let legacy = parse(text).unwrap();
        assert_eq!(
            legacy.tunables,
            vec![
                TunableSetting {
                    name: "MonitorInterval",
                    value: 20,
                    line: 1,
                    obsolete: false
                },
                TunableSetting {
                    name: "RecoveryBanPeriod",
                    value: 16,
                    line: 2,
                    obsolete: false
                },
                TunableSetting {
                    name: "DeterministicIPs",
                    value: 1,
                    line: 3,
                    obsolete: true
                },
            ]
        );
        assert_eq!(legacy.enable_scripts, ["40.vsftpd", "50.samba"]);
        assert_eq!(legacy.max_open_files, Some(1_048_576));
        assert_eq!(legacy.suppress_core_files, Some(true));
        assert_eq!(
            legacy.script_options,
            vec![
                ScriptOption {
                    name: "CTDB_NATGW_PUBLIC_IFACE".into(),
                    value: "eth1".into(),
                    line: 10
                },
                ScriptOption {
                    name: "CTDB_INIT_STYLE".into(),
                    value: "debian".into(),
                    line: 11
                },
            ]
        );
        assert!(legacy.settings.is_empty());
        assert_eq!(
            notices(&legacy),
            vec![
                ("CTDB_SET_MonitorInterval", 1, "/etc/ctdb/ctdb.tunables: MonitorInterval=20"),
                (
                    "CTDB_SET_recoverybanperiod",
                    2,
                    "/etc/ctdb/ctdb.tunables: RecoveryBanPeriod=16"
                ),
                (
                    "CTDB_SET_DeterministicIPs",
                    3,
                    "/etc/ctdb/ctdb.tunables: DeterministicIPs=1 (obsolete: accepted, has no effect)"
                ),
                ("CTDB_SET_foobar", 4, "nothing: unknown tunable, ignored"),
                (
                    "CTDB_MANAGED_SERVICES",
                    5,
                    "the enabled event script 40.vsftpd (ctdb event script enable legacy 40.vsftpd)"
                ),
                (
                    "CTDB_MANAGED_SERVICES",
                    5,
                    "the enabled event script 50.samba (ctdb event script enable legacy 50.samba)"
                ),
                (
                    "CTDB_MANAGED_SERVICES",
                    5,
                    "nothing: unknown service \"foo\"; enable its event script by hand"
                ),
                (
                    "CTDB_MANAGES_SAMBA",
                    6,
                    "the enabled event script 50.samba (ctdb event script enable legacy 50.samba)"
                ),
                ("CTDB_MANAGES_HTTPD", 7, "nothing: the service stays unmanaged"),
                (
                    "CTDB_MAX_OPEN_FILES",
                    8,
                    "LimitNOFILE=1048576 in the ctdb service unit (systemd.exec(5))"
                ),
                (
                    "CTDB_SUPPRESS_COREFILE",
                    9,
                    "LimitCORE=0 in the ctdb service unit (systemd.exec(5))"
                ),
                (
                    "CTDB_NATGW_PUBLIC_IFACE",
                    10,
                    "/etc/ctdb/script.options: CTDB_NATGW_PUBLIC_IFACE=eth1"
                ),
                ("CTDB_NOTIFY_SCRIPT", 12, "nothing: no longer supported, ignored"),
                ("CTDB_FOO", 13, "nothing: unknown variable, ignored"),
                (
                    "CTDB_DBDIR",
                    14,
                    "nothing: CTDB_DBDIR=tmpfs is gone; mount a tmpfs on the volatile \
                     database directory instead"
                ),
                ("CTDB_NODES", 15, "a symlink /etc/ctdb/nodes -> /clusterfs/nodes"),
            ]
        );
        assert_eq!(
            parse("CTDB_MAX_OPEN_FILES=unlimited")
                .unwrap()
                .max_open_files,
            Some(u64::MAX)
        );
    }

    #[test]
    fn shell_noise_is_tolerated() {
        let text = "\
# Options to ctdbd
PATH=$PATH:/opt/bin
OTHER=\"unterminated
ulimit -n 10000

CTDB_PUBLIC_INTERFACE=
CTDB_DEBUGLEVEL=EMERG # very old name
";
        let legacy = parse(text).unwrap();
        assert_eq!(
            notices(&legacy),
            vec![
                (
                    "ulimit",
                    4,
                    "nothing: shell commands in this file are not run"
                ),
                ("CTDB_DEBUGLEVEL", 7, "[logging] log level = ERROR"),
            ]
        );
        assert_eq!(legacy.public_interface, None);
    }

    #[test]
    fn later_assignment_wins_when_applied() {
        let legacy = parse("CTDB_DEBUGLEVEL=INFO\nCTDB_DEBUGLEVEL=DEBUG\n").unwrap();
        let mut conf = CtdbConf::default();
        legacy.apply_to(&mut conf);
        assert_eq!(conf.logging.log_level, LogLevel::Debug);
    }

    #[test]
    fn errors_name_variable_and_line() {
        let invalid =
            |key: &str, value: &str, expected: &'static str| ConfigErrorKind::InvalidValue {
                key: key.into(),
                value: value.into(),
                expected,
            };
        let cases = vec![
            (
                "CTDB_DEBUGLEVEL=LOUD",
                invalid(
                    "CTDB_DEBUGLEVEL",
                    "LOUD",
                    "ERR, ERROR, WARNING, NOTICE, INFO, DEBUG or a number from 0 to 10",
                ),
            ),
            (
                "CTDB_NOSETSCHED=maybe",
                invalid("CTDB_NOSETSCHED", "maybe", "yes or no"),
            ),
            (
                "CTDB_MANAGES_NFS=1",
                invalid("CTDB_MANAGES_NFS", "1", "yes or no"),
            ),
            (
                "CTDB_NODE_ADDRESS=node1",
                invalid("CTDB_NODE_ADDRESS", "node1", "a bare IPv4 or IPv6 address"),
            ),
            ("CTDB_TRANSPORT=ib", invalid("CTDB_TRANSPORT", "ib", "tcp")),
            (
                "CTDB_LOGGING=stderr",
                invalid(
                    "CTDB_LOGGING",
                    "stderr",
                    "file:PATH, syslog, syslog:nonblocking, syslog:udp or syslog:udp-rfc5424",
                ),
            ),
            (
                "CTDB_SET_EnableBans=yes",
                invalid(
                    "CTDB_SET_EnableBans",
                    "yes",
                    "a number from 0 to 4294967295 (decimal, 0x hex or 0 octal)",
                ),
            ),
            (
                "CTDB_MAX_OPEN_FILES=lots",
                invalid(
                    "CTDB_MAX_OPEN_FILES",
                    "lots",
                    "a number of files or unlimited",
                ),
            ),
            (
                "CTDB_PUBLIC_INTERFACE=eth0,eth1",
                ConfigErrorKind::BadInterface {
                    name: "eth0,eth1".into(),
                },
            ),
            (
                "CTDB_RECOVERY_LOCK=\"/shared/lock",
                ConfigErrorKind::Syntax {
                    expected: "a closing double quote",
                },
            ),
            (
                "CTDB_RECOVERY_LOCK=$LOCK",
                ConfigErrorKind::Syntax {
                    expected: "a literal value (no $ or ` expansions; use single quotes)",
                },
            ),
            (
                "export CTDB_NODES = /x",
                ConfigErrorKind::Syntax {
                    expected: "no spaces around '=' (NAME=value)",
                },
            ),
        ];
        for (bad, kind) in cases {
            let text = format!("# header\nCTDB_NODES=/etc/ctdb/nodes\n{bad}\n");
            let e = parse(&text).expect_err(bad);
            assert_eq!((e.line, e.kind), (3, kind), "{bad}");
        }
        assert_eq!(
            parse("CTDB_RECOVERY_LOCK=/l\nCTDB_NOSETSCHED=maybe\n")
                .unwrap_err()
                .to_string(),
            "/etc/default/ctdb:2: invalid value \"maybe\" for \"CTDB_NOSETSCHED\", expected yes or no"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            if let Ok(legacy) = parse(&text) {
                legacy.apply_to(&mut CtdbConf::default());
            }
        }

        #[test]
        fn legacy_like_text_never_panics(
            lines in proptest::collection::vec(
                "(export )?CTDB_(SET_|MANAGES_)?[A-Z_]{0,12}=[\"'!/:a-z0-9 .$]{0,20}", 0..20)
        ) {
            if let Ok(legacy) = parse(&lines.join("\n")) {
                let mut conf = CtdbConf::default();
                legacy.apply_to(&mut conf);
            }
        }
    }
}

//! `ctdb.conf`: the daemon's main configuration file (`ctdb.conf(5)`), parsed into
//! [`CtdbConf`], one typed struct per section, with CTDB 4.17's defaults.
//!
//! The daemon reads `/etc/ctdb/ctdb.conf` (missing file: [`CtdbConf::default`]) and
//! calls [`CtdbConf::parse`]; [`super::legacy::LegacyConfig::apply_to`] then layers old
//! shell variables on top through [`CtdbConf::set`]. Syntax is described in
//! `ini.rs`. Section names match case-insensitively, option names exactly. A later
//! value for the same option replaces an earlier one. Unknown sections and options,
//! empty values and values of the wrong type are errors, as they are for CTDB.
//!
//! Two sections are ctdb-rs's own (CTDB 4.17 refuses them): `[metrics]` (a
//! Prometheus endpoint) and `[dns]` (a DNS responder for the public addresses of
//! healthy nodes). Both are off unless `listen` is given.
//!
//! Checks that need the filesystem are left to the daemon, as CTDB does them at load
//! time: the three database directories must exist, and `lock debug script` /
//! `debug script` name a file in the configuration directory (only the file name
//! counts; any directory part is dropped).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::ini::{self, IniItem};
use super::{parse_bare_ip, parse_c_unsigned, ConfigError, ConfigErrorKind};

/// Log file used by `location = file:` with no path, and by default (Debian's build).
pub const DEFAULT_LOG_FILE: &str = "/var/log/ctdb/log.ctdb";
/// Default `[database] volatile database directory`.
pub const DEFAULT_VOLATILE_DB_DIR: &str = "/var/lib/ctdb/volatile";
/// Default `[database] persistent database directory`.
pub const DEFAULT_PERSISTENT_DB_DIR: &str = "/var/lib/ctdb/persistent";
/// Default `[database] state database directory`.
pub const DEFAULT_STATE_DB_DIR: &str = "/var/lib/ctdb/state";
/// Default `[cluster] leader timeout`, in seconds.
pub const DEFAULT_LEADER_TIMEOUT: u32 = 5;

const EXPECT_BOOL: &str = "true, false, yes or no";
const EXPECT_LOG_LEVEL: &str = "ERROR, WARNING, NOTICE, INFO, DEBUG or a number from 0 to 10";

/// The whole of `ctdb.conf`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CtdbConf {
    /// `[logging]`.
    pub logging: LoggingConf,
    /// `[cluster]`.
    pub cluster: ClusterConf,
    /// `[database]`.
    pub database: DatabaseConf,
    /// `[event]`.
    pub event: EventConf,
    /// `[failover]`.
    pub failover: FailoverConf,
    /// `[legacy]`.
    pub legacy: LegacyConf,
    /// `[metrics]` (ctdb-rs).
    pub metrics: MetricsConf,
    /// `[dns]` (ctdb-rs).
    pub dns: DnsConf,
    /// Deprecated option names the file used; the daemon logs one warning for each,
    /// as CTDB does.
    pub deprecated: Vec<DeprecatedKey>,
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggingConf {
    /// `location`: where the daemon logs. Default `file:/var/log/ctdb/log.ctdb`
    /// (Debian's packaged `ctdb.conf` overrides it with `syslog`).
    pub location: LogLocation,
    /// `log level`. Default NOTICE.
    pub log_level: LogLevel,
}

impl Default for LoggingConf {
    fn default() -> Self {
        Self {
            location: LogLocation::File(PathBuf::from(DEFAULT_LOG_FILE)),
            log_level: LogLevel::Notice,
        }
    }
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConf {
    /// `transport`. Default tcp; 4.17 as built by Debian rejects `ib`.
    pub transport: Transport,
    /// `node address`: the private address to bind to. Default: none (the daemon picks
    /// the first nodes-file address it can bind).
    pub node_address: Option<IpAddr>,
    /// `cluster lock` (or its deprecated name `recovery lock`). Default: none.
    pub cluster_lock: Option<ClusterLock>,
    /// `leader timeout`: seconds without a leader broadcast before an election.
    /// Default 5; must be at least 1.
    pub leader_timeout: u32,
    /// `leader capability`: whether this node may become leader. Default true.
    pub leader_capability: bool,
}

impl Default for ClusterConf {
    fn default() -> Self {
        Self {
            transport: Transport::Tcp,
            node_address: None,
            cluster_lock: None,
            leader_timeout: DEFAULT_LEADER_TIMEOUT,
            leader_capability: true,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConf {
    /// `volatile database directory`. Default `/var/lib/ctdb/volatile`.
    pub volatile_dir: PathBuf,
    /// `persistent database directory`. Default `/var/lib/ctdb/persistent`.
    pub persistent_dir: PathBuf,
    /// `state database directory`. Default `/var/lib/ctdb/state`.
    pub state_dir: PathBuf,
    /// `lock debug script`, as written; only its file name is used, relative to the
    /// configuration directory. Default: none.
    pub lock_debug_script: Option<PathBuf>,
    /// `tdb mutexes`: robust-mutex locking on volatile databases. Default true.
    pub tdb_mutexes: bool,
}

impl Default for DatabaseConf {
    fn default() -> Self {
        Self {
            volatile_dir: PathBuf::from(DEFAULT_VOLATILE_DB_DIR),
            persistent_dir: PathBuf::from(DEFAULT_PERSISTENT_DB_DIR),
            state_dir: PathBuf::from(DEFAULT_STATE_DB_DIR),
            lock_debug_script: None,
            tdb_mutexes: true,
        }
    }
}

/// `[event]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventConf {
    /// `debug script`, run when an event script times out; as written, only its file
    /// name is used, relative to the configuration directory. Default: none.
    pub debug_script: Option<PathBuf>,
}

/// `[failover]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FailoverConf {
    /// `disabled`: no public IP failover at all. Default false.
    pub disabled: bool,
}

/// `[metrics]` (ctdb-rs): the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConf {
    /// `listen = ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6): where `GET /metrics`
    /// is served over HTTP. Default: none, no endpoint.
    pub listen: Option<SocketAddr>,
}

/// Default `[dns] ttl`, in seconds: clients ask again soon after a failover.
pub const DEFAULT_DNS_TTL: u32 = 1;
/// Largest `[dns] ttl`: a longer one would keep clients on a failed node.
pub const MAX_DNS_TTL: u32 = 300;

/// `[dns]` (ctdb-rs): the DNS responder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConf {
    /// `listen = ADDRESS:PORT`: where DNS queries are answered (UDP). Default:
    /// none, no responder.
    pub listen: Option<SocketAddr>,
    /// `name`: the name answered, lower case, with its final dot (`nas.example.`).
    /// Required with `listen`.
    pub name: Option<String>,
    /// `ttl`: seconds clients may keep an answer, 0 to [`MAX_DNS_TTL`]. Default
    /// [`DEFAULT_DNS_TTL`].
    pub ttl: u32,
}

impl Default for DnsConf {
    fn default() -> Self {
        Self {
            listen: None,
            name: None,
            ttl: DEFAULT_DNS_TTL,
        }
    }
}

/// `[legacy]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConf {
    /// `realtime scheduling`. Default true.
    pub realtime_scheduling: bool,
    /// `lmaster capability`: whether this node is in the vnn map. Default true.
    pub lmaster_capability: bool,
    /// `start as stopped`. Default false.
    pub start_as_stopped: bool,
    /// `start as disabled`. Default false.
    pub start_as_disabled: bool,
    /// `script log level`: level at which event script output is logged. Default
    /// ERROR.
    pub script_log_level: LogLevel,
}

impl Default for LegacyConf {
    fn default() -> Self {
        Self {
            realtime_scheduling: true,
            lmaster_capability: true,
            start_as_stopped: false,
            start_as_disabled: false,
            script_log_level: LogLevel::Error,
        }
    }
}

/// A deprecated option name found in the file; its value was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeprecatedKey {
    /// Line it appeared on.
    pub line: usize,
    /// Section, canonical name.
    pub section: &'static str,
    /// The deprecated name.
    pub key: &'static str,
    /// The name to use instead.
    pub replacement: &'static str,
}

/// `[logging] location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLocation {
    /// `file:PATH`; `file` or `file:` alone means [`DEFAULT_LOG_FILE`].
    File(PathBuf),
    /// `syslog[:METHOD]`.
    Syslog(SyslogMethod),
}

impl LogLocation {
    /// Parses a `location` value; case-sensitive, as in CTDB.
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("file") {
            let path = match rest.strip_prefix(':') {
                Some("") => DEFAULT_LOG_FILE,
                Some(path) => path,
                None if rest.is_empty() => DEFAULT_LOG_FILE,
                None => return None,
            };
            return Some(Self::File(PathBuf::from(path)));
        }
        let method = match text.strip_prefix("syslog")? {
            "" | ":" => SyslogMethod::Blocking,
            ":nonblocking" => SyslogMethod::NonBlocking,
            ":udp" => SyslogMethod::Udp,
            ":udp-rfc5424" => SyslogMethod::UdpRfc5424,
            _ => return None,
        };
        Some(Self::Syslog(method))
    }
}

impl fmt::Display for LogLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Syslog(SyslogMethod::Blocking) => f.write_str("syslog"),
            Self::Syslog(SyslogMethod::NonBlocking) => f.write_str("syslog:nonblocking"),
            Self::Syslog(SyslogMethod::Udp) => f.write_str("syslog:udp"),
            Self::Syslog(SyslogMethod::UdpRfc5424) => f.write_str("syslog:udp-rfc5424"),
        }
    }
}

/// How `syslog` logging sends messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogMethod {
    /// `syslog`: the blocking `syslog(3)` API.
    Blocking,
    /// `syslog:nonblocking`: `/dev/log` in non-blocking mode.
    NonBlocking,
    /// `syslog:udp`: UDP to localhost:514, RFC 3164 format.
    Udp,
    /// `syslog:udp-rfc5424`: UDP to localhost:514, RFC 5424 format.
    UdpRfc5424,
}

/// A CTDB log level (`ctdb(7)` LOG LEVELS), least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// ERROR (numeric 0).
    Error,
    /// WARNING (numeric 1).
    Warning,
    /// NOTICE (numeric 3).
    Notice,
    /// INFO (numeric 5).
    Info,
    /// DEBUG (numeric 10).
    Debug,
}

impl LogLevel {
    const ALL: [Self; 5] = [
        Self::Error,
        Self::Warning,
        Self::Notice,
        Self::Info,
        Self::Debug,
    ];

    /// Parses a level as CTDB does: a name or any leading part of one, any case (`ERR`,
    /// `warn`, `D`), or a decimal number from 0 to 10 (see [`Self::from_numeric`]).
    pub fn parse(text: &str) -> Option<Self> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok().and_then(Self::from_numeric);
        }
        if text.is_empty() {
            return None;
        }
        // The five names start with different letters, so a prefix is never ambiguous.
        Self::ALL.into_iter().find(|level| {
            let name = level.name();
            name.len() >= text.len() && name[..text.len()].eq_ignore_ascii_case(text)
        })
    }

    /// The numeric debug level CTDB sends and stores for this name (what `ctdb
    /// setdebug NAME` sets): 0, 1, 3, 5 or 10.
    pub fn debug_level(self) -> u32 {
        match self {
            Self::Error => 0,
            Self::Warning => 1,
            Self::Notice => 3,
            Self::Info => 5,
            Self::Debug => 10,
        }
    }

    /// The level a numeric debug level falls in: 0 ERROR, 1–2 WARNING, 3–4 NOTICE,
    /// 5–9 INFO, 10 DEBUG; above 10 is not a level.
    pub fn from_numeric(level: u32) -> Option<Self> {
        match level {
            0 => Some(Self::Error),
            1..=2 => Some(Self::Warning),
            3..=4 => Some(Self::Notice),
            5..=9 => Some(Self::Info),
            10 => Some(Self::Debug),
            _ => None,
        }
    }

    /// The upper-case name, as `ctdb getdebug` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `[cluster] transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `tcp`, the only transport CTDB 4.17 accepts.
    Tcp,
}

/// `[cluster] cluster lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterLock {
    /// A lock file on the cluster filesystem, taken with `fcntl` by CTDB's default
    /// helper.
    File(PathBuf),
    /// `!command args`: a cluster mutex helper program that holds the lock while it
    /// runs (`ctdb(7)` CLUSTER LOCK); it is run directly, not through a shell.
    Helper {
        /// The command line after `!`, trimmed; never empty.
        command: String,
    },
}

impl ClusterLock {
    /// Parses a `cluster lock` value: `!command args` or a file path.
    pub fn parse(text: &str) -> Option<Self> {
        match text.strip_prefix('!') {
            Some(command) => {
                let command = command.trim();
                (!command.is_empty()).then(|| Self::Helper {
                    command: command.to_owned(),
                })
            }
            None => (!text.is_empty()).then(|| Self::File(PathBuf::from(text))),
        }
    }
}

impl fmt::Display for ClusterLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Helper { command } => write!(f, "!{command}"),
        }
    }
}

/// The sections, by canonical name: CTDB's six, then ctdb-rs's own.
const SECTIONS: [&str; 8] = [
    "logging", "cluster", "database", "event", "failover", "legacy", "metrics", "dns",
];

/// `[cluster]`'s old name for `cluster lock`, still accepted with a warning.
const RECOVERY_LOCK: &str = "recovery lock";

impl CtdbConf {
    /// Parses the text of a `ctdb.conf` read from `path` (`path` only labels errors).
    /// The first problem found is returned.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut conf = Self::default();
        let mut section: Option<&'static str> = None;
        // Kept apart because `cluster lock` wins over it wherever each appears.
        let mut recovery_lock = None;
        // `[dns] listen` needs a name; checked once the whole file is read.
        let mut dns_listen_line = None;
        for (line, item) in ini::items(text) {
            let error = |kind| ConfigError::new(path, line, kind);
            match item {
                IniItem::Section(name) => {
                    let found = SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(&name));
                    section =
                        Some(*found.ok_or_else(|| {
                            error(ConfigErrorKind::UnknownSection { section: name })
                        })?);
                }
                IniItem::UnclosedSection => {
                    return Err(error(ConfigErrorKind::Syntax {
                        expected: "a closing ']' after the section name",
                    }))
                }
                IniItem::NoEquals(_) => {
                    // CTDB silently skips such lines, which hides typos such as a
                    // missing '=' in `cluster lock /path`; we refuse them.
                    return Err(error(ConfigErrorKind::Syntax {
                        expected: "`key = value` or `[section]`",
                    }));
                }
                IniItem::Param { name, value } => {
                    if name.is_empty() {
                        return Err(error(ConfigErrorKind::Syntax {
                            expected: "an option name before '='",
                        }));
                    }
                    let Some(section) = section else {
                        return Err(error(ConfigErrorKind::KeyOutsideSection { key: name }));
                    };
                    if section == "cluster" && name == RECOVERY_LOCK {
                        if value.is_empty() {
                            return Err(error(ConfigErrorKind::EmptyValue { key: name }));
                        }
                        recovery_lock = Some(parse_cluster_lock(&name, &value).map_err(error)?);
                        conf.deprecated.push(DeprecatedKey {
                            line,
                            section: "cluster",
                            key: RECOVERY_LOCK,
                            replacement: "cluster lock",
                        });
                        continue;
                    }
                    conf.set(section, &name, &value).map_err(error)?;
                    if section == "dns" && name == "listen" {
                        dns_listen_line = Some(line);
                    }
                }
            }
        }
        if let (Some(line), None) = (dns_listen_line, &conf.dns.name) {
            return Err(ConfigError::new(
                path,
                line,
                ConfigErrorKind::MissingKey {
                    section: "dns",
                    key: "listen",
                    needed: "name",
                },
            ));
        }
        if conf.cluster.cluster_lock.is_none() {
            conf.cluster.cluster_lock = recovery_lock;
        }
        Ok(conf)
    }

    /// Sets one option as if `key = value` appeared in `[section]` (section matched
    /// case-insensitively, key exactly, value already trimmed). On error nothing
    /// changes.
    pub fn set(&mut self, section: &str, key: &str, value: &str) -> Result<(), ConfigErrorKind> {
        let Some(section) = SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(section)) else {
            return Err(ConfigErrorKind::UnknownSection {
                section: section.to_owned(),
            });
        };
        let unknown = || ConfigErrorKind::UnknownKey {
            section: (*section).to_owned(),
            key: key.to_owned(),
        };
        // Check the name before the value, so a misspelt option is reported as such.
        if !known_key(section, key) {
            return Err(unknown());
        }
        if value.is_empty() {
            return Err(ConfigErrorKind::EmptyValue {
                key: key.to_owned(),
            });
        }
        let invalid = |expected| ConfigErrorKind::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let boolean = || parse_bool(value).ok_or_else(|| invalid(EXPECT_BOOL));
        let log_level = || LogLevel::parse(value).ok_or_else(|| invalid(EXPECT_LOG_LEVEL));
        match (*section, key) {
            ("logging", "location") => {
                self.logging.location = LogLocation::parse(value).ok_or_else(|| {
                    invalid(
                        "file:PATH, syslog, syslog:nonblocking, syslog:udp or syslog:udp-rfc5424",
                    )
                })?;
            }
            ("logging", "log level") => self.logging.log_level = log_level()?,
            ("cluster", "transport") => {
                if value != "tcp" {
                    return Err(invalid("tcp"));
                }
                self.cluster.transport = Transport::Tcp;
            }
            ("cluster", "node address") => {
                let addr =
                    parse_bare_ip(value).ok_or_else(|| invalid("a bare IPv4 or IPv6 address"))?;
                self.cluster.node_address = Some(addr);
            }
            ("cluster", "cluster lock") => {
                self.cluster.cluster_lock = Some(parse_cluster_lock(key, value)?);
            }
            ("cluster", "leader timeout") => {
                // CTDB stores it in a C int and refuses 0.
                self.cluster.leader_timeout = parse_c_unsigned(value)
                    .filter(|&t| t >= 1 && t <= i32::MAX as u64)
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| invalid("a number of seconds from 1 to 2147483647"))?;
            }
            ("cluster", "leader capability") => self.cluster.leader_capability = boolean()?,
            ("database", "volatile database directory") => {
                self.database.volatile_dir = PathBuf::from(value);
            }
            ("database", "persistent database directory") => {
                self.database.persistent_dir = PathBuf::from(value);
            }
            ("database", "state database directory") => {
                self.database.state_dir = PathBuf::from(value);
            }
            ("database", "lock debug script") => {
                self.database.lock_debug_script = Some(PathBuf::from(value));
            }
            ("database", "tdb mutexes") => self.database.tdb_mutexes = boolean()?,
            ("event", "debug script") => self.event.debug_script = Some(PathBuf::from(value)),
            ("failover", "disabled") => self.failover.disabled = boolean()?,
            ("legacy", "realtime scheduling") => self.legacy.realtime_scheduling = boolean()?,
            ("legacy", "lmaster capability") => self.legacy.lmaster_capability = boolean()?,
            ("legacy", "start as stopped") => self.legacy.start_as_stopped = boolean()?,
            ("legacy", "start as disabled") => self.legacy.start_as_disabled = boolean()?,
            ("legacy", "script log level") => self.legacy.script_log_level = log_level()?,
            ("metrics", "listen") => self.metrics.listen = Some(parse_listen(value, invalid)?),
            ("dns", "listen") => self.dns.listen = Some(parse_listen(value, invalid)?),
            ("dns", "name") => {
                self.dns.name = Some(parse_dns_name(value).ok_or_else(|| {
                    invalid(
                        "a domain name: dot-separated labels of letters, digits and '-', \
                         each 1 to 63 characters, 253 in all",
                    )
                })?);
            }
            ("dns", "ttl") => {
                self.dns.ttl = parse_c_unsigned(value)
                    .filter(|&t| t <= u64::from(MAX_DNS_TTL))
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| invalid("a number of seconds from 0 to 300"))?;
            }
            _ => return Err(unknown()),
        }
        Ok(())
    }
}

/// Whether `[section] key` is an option of CTDB 4.17 (`recovery lock` aside, which
/// [`CtdbConf::parse`] handles itself).
fn known_key(section: &str, key: &str) -> bool {
    let keys: &[&str] = match section {
        "logging" => &["location", "log level"],
        "cluster" => &[
            "transport",
            "node address",
            "cluster lock",
            "leader timeout",
            "leader capability",
        ],
        "database" => &[
            "volatile database directory",
            "persistent database directory",
            "state database directory",
            "lock debug script",
            "tdb mutexes",
        ],
        "event" => &["debug script"],
        "failover" => &["disabled"],
        "legacy" => &[
            "realtime scheduling",
            "lmaster capability",
            "start as stopped",
            "start as disabled",
            "script log level",
        ],
        "metrics" => &["listen"],
        "dns" => &["listen", "name", "ttl"],
        _ => &[],
    };
    keys.contains(&key)
}

/// CTDB's booleans: true/yes and false/no, any case; nothing else (not 1/0 or on/off).
pub(super) fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

/// `ADDRESS:PORT` or `[IPV6]:PORT` with a port from 1 to 65535 (0 would listen on
/// a port nobody knows).
fn parse_listen(
    value: &str,
    invalid: impl Fn(&'static str) -> ConfigErrorKind,
) -> Result<SocketAddr, ConfigErrorKind> {
    value
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.port() != 0)
        .ok_or_else(|| invalid("ADDRESS:PORT or [IPV6-ADDRESS]:PORT, port 1 to 65535"))
}

/// A domain name as RFC 1035 section 2.3.1 ("preferred name syntax") allows for
/// host names, with digits anywhere (RFC 1123 section 2.1), at most 253
/// characters without the final dot; returned lower case with the final dot.
fn parse_dns_name(value: &str) -> Option<String> {
    let bare = value.strip_suffix('.').unwrap_or(value);
    if bare.is_empty() || bare.len() > 253 {
        return None;
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    bare.split('.')
        .all(label_ok)
        .then(|| format!("{}.", bare.to_ascii_lowercase()))
}

fn parse_cluster_lock(key: &str, value: &str) -> Result<ClusterLock, ConfigErrorKind> {
    ClusterLock::parse(value).ok_or_else(|| ConfigErrorKind::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        expected: "a lock file path or !helper-command [args]",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/ctdb/ctdb.conf";

    fn parse(text: &str) -> Result<CtdbConf, ConfigError> {
        CtdbConf::parse(text, Path::new(PATH))
    }

    fn err(text: &str) -> (usize, ConfigErrorKind, String) {
        let e = parse(text).expect_err(text);
        let shown = e.to_string();
        (e.line, e.kind, shown)
    }

    #[test]
    fn empty_file_gives_every_default() {
        let conf = parse("").unwrap();
        assert_eq!(conf, CtdbConf::default());
        assert_eq!(
            conf.logging.location,
            LogLocation::File("/var/log/ctdb/log.ctdb".into())
        );
        assert_eq!(conf.logging.log_level, LogLevel::Notice);
        assert_eq!(conf.cluster.transport, Transport::Tcp);
        assert_eq!(conf.cluster.node_address, None);
        assert_eq!(conf.cluster.cluster_lock, None);
        assert_eq!(conf.cluster.leader_timeout, 5);
        assert!(conf.cluster.leader_capability);
        assert_eq!(
            conf.database.volatile_dir,
            Path::new("/var/lib/ctdb/volatile")
        );
        assert_eq!(
            conf.database.persistent_dir,
            Path::new("/var/lib/ctdb/persistent")
        );
        assert_eq!(conf.database.state_dir, Path::new("/var/lib/ctdb/state"));
        assert_eq!(conf.database.lock_debug_script, None);
        assert!(conf.database.tdb_mutexes);
        assert_eq!(conf.event.debug_script, None);
        assert!(!conf.failover.disabled);
        assert!(conf.legacy.realtime_scheduling);
        assert!(conf.legacy.lmaster_capability);
        assert!(!conf.legacy.start_as_stopped);
        assert!(!conf.legacy.start_as_disabled);
        assert_eq!(conf.legacy.script_log_level, LogLevel::Error);
        assert!(conf.deprecated.is_empty());
    }

    #[test]
    fn debian_packaged_file_parses() {
        // /etc/ctdb/ctdb.conf as Debian's ctdb 4.17 package installs it, in substance.
        let text = "# See ctdb.conf(5)\n#\n\n[logging]\n\t# to syslog\n\tlocation = syslog\n\n\
                    \t# level\n\tlog level = NOTICE\n\n[cluster]\n\t# lock\n\t#\n\
                    \t# cluster lock = !/bin/false CLUSTER LOCK NOT CONFIGURED\n";
        let conf = parse(text).unwrap();
        assert_eq!(
            conf.logging.location,
            LogLocation::Syslog(SyslogMethod::Blocking)
        );
        assert_eq!(conf.logging.log_level, LogLevel::Notice);
        assert_eq!(conf.cluster, ClusterConf::default());
    }

    #[test]
    fn every_option_can_be_set() {
        let text = "\
[logging]
  location = file:/var/log/ctdb/other.log
  log level = debug
[cluster]
  transport = tcp
  node address = 192.168.1.1
  cluster lock = !/usr/libexec/ctdb/ctdb_mutex_fcntl_helper /shared/.ctdb/lock 10
  leader timeout = 0x10
  leader capability = no
[database]
  volatile database directory = /run/ctdb/volatile
  persistent database directory = /srv/ctdb/persistent
  state database directory = /srv/ctdb/state
  lock debug script = debug_locks.sh
  tdb mutexes = FALSE
[event]
  debug script = /etc/ctdb/debug-hung-script.sh
[failover]
  disabled = Yes
[legacy]
  realtime scheduling = false
  lmaster capability = false
  start as stopped = true
  start as disabled = TRUE
  script log level = 3
";
        let conf = parse(text).unwrap();
        assert_eq!(
            conf.logging,
            LoggingConf {
                location: LogLocation::File("/var/log/ctdb/other.log".into()),
                log_level: LogLevel::Debug,
            }
        );
        assert_eq!(
            conf.cluster,
            ClusterConf {
                transport: Transport::Tcp,
                node_address: Some("192.168.1.1".parse().unwrap()),
                cluster_lock: Some(ClusterLock::Helper {
                    command: "/usr/libexec/ctdb/ctdb_mutex_fcntl_helper /shared/.ctdb/lock 10"
                        .into()
                }),
                leader_timeout: 16,
                leader_capability: false,
            }
        );
        assert_eq!(
            conf.database,
            DatabaseConf {
                volatile_dir: "/run/ctdb/volatile".into(),
                persistent_dir: "/srv/ctdb/persistent".into(),
                state_dir: "/srv/ctdb/state".into(),
                lock_debug_script: Some("debug_locks.sh".into()),
                tdb_mutexes: false,
            }
        );
        assert_eq!(
            conf.event.debug_script,
            Some(PathBuf::from("/etc/ctdb/debug-hung-script.sh"))
        );
        assert!(conf.failover.disabled);
        assert_eq!(
            conf.legacy,
            LegacyConf {
                realtime_scheduling: false,
                lmaster_capability: false,
                start_as_stopped: true,
                start_as_disabled: true,
                script_log_level: LogLevel::Notice,
            }
        );
    }

    #[test]
    fn metrics_and_dns_sections() {
        let conf = parse(
            "[metrics]\n\tlisten = 192.168.20.41:9479\n[DNS]\n\tlisten = [fd00::1]:53\n\
             \tname = NAS.Example\n\tttl = 5\n",
        )
        .unwrap();
        assert_eq!(
            conf.metrics.listen,
            Some("192.168.20.41:9479".parse().unwrap())
        );
        assert_eq!(
            conf.dns,
            DnsConf {
                listen: Some("[fd00::1]:53".parse().unwrap()),
                name: Some("nas.example.".into()),
                ttl: 5,
            }
        );
        // Off by default; a name alone serves nothing.
        let conf = parse("[dns]\nname = nas.example.\n").unwrap();
        assert_eq!((conf.metrics.listen, conf.dns.listen), (None, None));
        assert_eq!(conf.dns.ttl, DEFAULT_DNS_TTL);
    }

    #[test]
    fn metrics_and_dns_bad_values_name_the_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("[metrics]\nlisten = 9479\n", "listen", "9479"),
            (
                "[metrics]\nlisten = localhost:9479\n",
                "listen",
                "localhost:9479",
            ),
            ("[metrics]\nlisten = 10.0.0.1:0\n", "listen", "10.0.0.1:0"),
            (
                "[metrics]\nlisten = 10.0.0.1:65536\n",
                "listen",
                "10.0.0.1:65536",
            ),
            ("[metrics]\nlisten = ::1:9479\n", "listen", "::1:9479"),
            ("[dns]\nlisten = 10.0.0.1\n", "listen", "10.0.0.1"),
            ("[dns]\nname = nas..example\n", "name", "nas..example"),
            ("[dns]\nname = -nas.example\n", "name", "-nas.example"),
            ("[dns]\nname = nas_1.example\n", "name", "nas_1.example"),
            ("[dns]\nname = .\n", "name", "."),
            ("[dns]\nttl = 301\n", "ttl", "301"),
            ("[dns]\nttl = -1\n", "ttl", "-1"),
            ("[dns]\nttl = 1s\n", "ttl", "1s"),
        ];
        for (text, key, value) in cases {
            let (line, kind, shown) = err(text);
            assert_eq!(line, 2, "{text}");
            match kind {
                ConfigErrorKind::InvalidValue {
                    key: k, value: v, ..
                } => assert_eq!((k.as_str(), v.as_str()), (*key, *value)),
                other => panic!("{text}: {other:?}"),
            }
            assert!(
                shown.starts_with(&format!("{PATH}:2: invalid value")),
                "{shown}"
            );
        }
        let long_label = format!("[dns]\nname = {}.example\n", "a".repeat(64));
        assert_eq!(err(&long_label).0, 2);
        assert_eq!(
            err("[metrics]\nport = 9479\n").1,
            ConfigErrorKind::UnknownKey {
                section: "metrics".into(),
                key: "port".into()
            }
        );
        let (line, _, shown) = err("[logging]\nlog level = NOTICE\n[dns]\nlisten = 10.0.0.1:53\n");
        assert_eq!(line, 4);
        assert_eq!(
            shown,
            "/etc/ctdb/ctdb.conf:4: [dns] listen needs \"name\" in the same section"
        );
    }

    #[test]
    fn symlinked_layout_example_values() {
        // A cluster keeping its lock on GlusterFS, with the stock file otherwise.
        let text = "[logging]\n\tlocation = syslog\n\tlog level = NOTICE\n\n[cluster]\n\
                    \tcluster lock = /gluster/ctdb_lock/lockfile\n";
        let conf = parse(text).unwrap();
        assert_eq!(
            conf.cluster.cluster_lock,
            Some(ClusterLock::File("/gluster/ctdb_lock/lockfile".into()))
        );
    }

    #[test]
    fn sections_match_any_case_and_keys_exactly() {
        let conf = parse("[LOGGING]\nlog level = INFO\n[Cluster]\nleader timeout = 7").unwrap();
        assert_eq!(conf.logging.log_level, LogLevel::Info);
        assert_eq!(conf.cluster.leader_timeout, 7);
        let (line, kind, _) = err("[logging]\nLog Level = INFO\n");
        assert_eq!(line, 2);
        assert_eq!(
            kind,
            ConfigErrorKind::UnknownKey {
                section: "logging".into(),
                key: "Log Level".into()
            }
        );
    }

    #[test]
    fn later_value_wins_and_inline_hash_is_part_of_the_value() {
        let conf = parse("[cluster]\ncluster lock = /a\ncluster lock = /b # shared").unwrap();
        assert_eq!(
            conf.cluster.cluster_lock,
            Some(ClusterLock::File("/b # shared".into()))
        );
        assert!(matches!(
            err("[logging]\nlog level = INFO # chatty").1,
            ConfigErrorKind::InvalidValue { .. }
        ));
    }

    #[test]
    fn recovery_lock_is_deprecated_and_loses_to_cluster_lock() {
        let conf = parse("[cluster]\nrecovery lock = /old\n").unwrap();
        assert_eq!(
            conf.cluster.cluster_lock,
            Some(ClusterLock::File("/old".into()))
        );
        assert_eq!(
            conf.deprecated,
            vec![DeprecatedKey {
                line: 2,
                section: "cluster",
                key: "recovery lock",
                replacement: "cluster lock",
            }]
        );
        let both = parse("[cluster]\ncluster lock = /new\nrecovery lock = /old\n").unwrap();
        assert_eq!(
            both.cluster.cluster_lock,
            Some(ClusterLock::File("/new".into()))
        );
        let (line, kind, _) = err("[cluster]\n\nrecovery lock = !\n");
        assert_eq!(line, 3);
        assert!(matches!(kind, ConfigErrorKind::InvalidValue { .. }));
    }

    #[test]
    fn log_locations() {
        let cases = [
            ("file:/tmp/x y", LogLocation::File("/tmp/x y".into())),
            ("file:", LogLocation::File(DEFAULT_LOG_FILE.into())),
            ("file", LogLocation::File(DEFAULT_LOG_FILE.into())),
            ("syslog", LogLocation::Syslog(SyslogMethod::Blocking)),
            ("syslog:", LogLocation::Syslog(SyslogMethod::Blocking)),
            (
                "syslog:nonblocking",
                LogLocation::Syslog(SyslogMethod::NonBlocking),
            ),
            ("syslog:udp", LogLocation::Syslog(SyslogMethod::Udp)),
            (
                "syslog:udp-rfc5424",
                LogLocation::Syslog(SyslogMethod::UdpRfc5424),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(LogLocation::parse(text), Some(want), "{text}");
        }
        for bad in [
            "filex",
            "FILE:/x",
            "Syslog",
            "syslogx",
            "syslog:foo",
            "stderr",
            "",
        ] {
            assert_eq!(LogLocation::parse(bad), None, "{bad}");
        }
        assert_eq!(
            LogLocation::Syslog(SyslogMethod::UdpRfc5424).to_string(),
            "syslog:udp-rfc5424"
        );
        assert_eq!(
            LogLocation::File("/var/log/ctdb/log.ctdb".into()).to_string(),
            "file:/var/log/ctdb/log.ctdb"
        );
    }

    #[test]
    fn log_levels_by_name_prefix_and_number() {
        for (text, want) in [
            ("ERROR", LogLevel::Error),
            ("err", LogLevel::Error),
            ("E", LogLevel::Error),
            ("WARN", LogLevel::Warning),
            ("warning", LogLevel::Warning),
            ("Notice", LogLevel::Notice),
            ("INF", LogLevel::Info),
            ("DEB", LogLevel::Debug),
            ("0", LogLevel::Error),
            ("2", LogLevel::Warning),
            ("4", LogLevel::Notice),
            ("9", LogLevel::Info),
            ("10", LogLevel::Debug),
            ("010", LogLevel::Debug),
        ] {
            assert_eq!(LogLevel::parse(text), Some(want), "{text}");
        }
        for bad in [
            "",
            "ERRORS",
            "WARN2",
            "DEBUG_ERR",
            "11",
            "-1",
            "3abc",
            "0x3",
            "foo",
        ] {
            assert_eq!(LogLevel::parse(bad), None, "{bad}");
        }
        let numbers: Vec<u32> = LogLevel::ALL.iter().map(|l| l.debug_level()).collect();
        assert_eq!(numbers, [0, 1, 3, 5, 10]);
        for level in LogLevel::ALL {
            assert_eq!(LogLevel::from_numeric(level.debug_level()), Some(level));
            assert_eq!(LogLevel::parse(level.name()), Some(level));
        }
        assert_eq!(LogLevel::from_numeric(11), None);
        assert_eq!(LogLevel::Warning.to_string(), "WARNING");
    }

    #[test]
    fn cluster_lock_forms() {
        assert_eq!(
            ClusterLock::parse("!/bin/helper  a"),
            Some(ClusterLock::Helper {
                command: "/bin/helper  a".into()
            })
        );
        assert_eq!(ClusterLock::parse("!"), None);
        assert_eq!(ClusterLock::parse("! "), None);
        assert_eq!(ClusterLock::parse(""), None);
        assert_eq!(ClusterLock::parse("/x").unwrap().to_string(), "/x");
        assert_eq!(
            ClusterLock::parse("!/bin/h a").unwrap().to_string(),
            "!/bin/h a"
        );
    }

    #[test]
    fn value_errors_name_key_value_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            ("[failover]\ndisabled = 1\n", "disabled", "1"),
            ("[failover]\ndisabled = on\n", "disabled", "on"),
            ("[cluster]\ntransport = ib\n", "transport", "ib"),
            ("[cluster]\ntransport = TCP\n", "transport", "TCP"),
            ("[cluster]\nnode address = [::1]\n", "node address", "[::1]"),
            ("[cluster]\nnode address = 1.2.3\n", "node address", "1.2.3"),
            ("[cluster]\nleader timeout = 0\n", "leader timeout", "0"),
            ("[cluster]\nleader timeout = -1\n", "leader timeout", "-1"),
            ("[cluster]\nleader timeout = 5s\n", "leader timeout", "5s"),
            (
                "[cluster]\nleader timeout = 2147483648\n",
                "leader timeout",
                "2147483648",
            ),
            ("[cluster]\ncluster lock = !\n", "cluster lock", "!"),
            ("[logging]\nlocation = stderr\n", "location", "stderr"),
            ("[logging]\nlog level = 11\n", "log level", "11"),
            (
                "[legacy]\nscript log level = foo\n",
                "script log level",
                "foo",
            ),
        ];
        for (text, key, value) in cases {
            let (line, kind, shown) = err(text);
            assert_eq!(line, 2, "{text}");
            match kind {
                ConfigErrorKind::InvalidValue {
                    key: k, value: v, ..
                } => {
                    assert_eq!((k.as_str(), v.as_str()), (*key, *value));
                }
                other => panic!("{text}: {other:?}"),
            }
            assert!(
                shown.starts_with(&format!("{PATH}:2: invalid value")),
                "{shown}"
            );
        }
        assert_eq!(
            err("[failover]\ndisabled = 1\n").2,
            "/etc/ctdb/ctdb.conf:2: invalid value \"1\" for \"disabled\", \
             expected true, false, yes or no"
        );
        assert_eq!(
            parse("[cluster]\nleader timeout = 2147483647")
                .unwrap()
                .cluster
                .leader_timeout,
            i32::MAX as u32
        );
    }

    #[test]
    fn structural_errors() {
        let (line, kind, shown) = err("[logging]\n\n[foo]\nx = 1\n");
        assert_eq!(line, 3);
        assert_eq!(
            kind,
            ConfigErrorKind::UnknownSection {
                section: "foo".into()
            }
        );
        assert!(shown.starts_with("/etc/ctdb/ctdb.conf:3: unknown section [foo]"));

        // CTDB does not trim inside the brackets either.
        assert_eq!(
            err("[ logging ]\n").1,
            ConfigErrorKind::UnknownSection {
                section: " logging ".into()
            }
        );
        assert_eq!(
            err("# c\nlog level = INFO\n"),
            (
                2,
                ConfigErrorKind::KeyOutsideSection {
                    key: "log level".into()
                },
                "/etc/ctdb/ctdb.conf:2: option \"log level\" is outside any section, \
                 expected a [section] line before it"
                    .into()
            )
        );
        assert_eq!(
            err("[legacy]\nctdb start as stopped = true\n").1,
            ConfigErrorKind::UnknownKey {
                section: "legacy".into(),
                key: "ctdb start as stopped".into()
            }
        );
        assert_eq!(
            err("[legacy]\nrecmaster capability = false\n").1,
            ConfigErrorKind::UnknownKey {
                section: "legacy".into(),
                key: "recmaster capability".into()
            }
        );
        assert_eq!(
            err("[logging]\nlog level =\n"),
            (
                2,
                ConfigErrorKind::EmptyValue {
                    key: "log level".into()
                },
                "/etc/ctdb/ctdb.conf:2: empty value for \"log level\", expected a value after '='"
                    .into()
            )
        );
        assert_eq!(
            err("[cluster]\nrecovery lock =\n").1,
            ConfigErrorKind::EmptyValue {
                key: "recovery lock".into()
            }
        );
        assert_eq!(
            err("[cluster]\ncluster lock /shared/lock\n"),
            (
                2,
                ConfigErrorKind::Syntax {
                    expected: "`key = value` or `[section]`"
                },
                "/etc/ctdb/ctdb.conf:2: syntax error, expected `key = value` or `[section]`".into()
            )
        );
        assert_eq!(
            err("\n[cluster\n").1,
            ConfigErrorKind::Syntax {
                expected: "a closing ']' after the section name"
            }
        );
        assert_eq!(
            err("[cluster]\n = /x\n").1,
            ConfigErrorKind::Syntax {
                expected: "an option name before '='"
            }
        );
    }

    #[test]
    fn unknown_key_is_reported_before_its_value() {
        assert_eq!(
            err("[event]\nscript = \n").1,
            ConfigErrorKind::UnknownKey {
                section: "event".into(),
                key: "script".into()
            }
        );
    }

    #[test]
    fn set_changes_nothing_on_error() {
        let mut conf = CtdbConf::default();
        assert!(conf.set("CLUSTER", "leader timeout", "9").is_ok());
        assert_eq!(conf.cluster.leader_timeout, 9);
        let before = conf.clone();
        assert!(conf.set("cluster", "leader timeout", "x").is_err());
        assert!(conf.set("nope", "x", "y").is_err());
        assert!(conf.set("cluster", "recovery lock", "/x").is_err());
        assert_eq!(conf, before);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn conf_like_text_never_panics(
            lines in proptest::collection::vec(
                "[\\[\\] a-z=#;!:/\\\\\t0-9\r]{0,40}", 0..20)
        ) {
            let _ = parse(&lines.join("\n"));
        }
    }
}

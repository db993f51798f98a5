//! Parsing of CTDB's configuration files into typed values: `ctdb.conf` ([`conf`]), the
//! nodes file ([`nodes`]), `public_addresses` ([`public_addresses`]), `ctdb.tunables`
//! ([`tunables_file`]), `script.options` ([`script_options`]) and the pre-4.9
//! `/etc/sysconfig/ctdb` / `/etc/default/ctdb` shell fragment ([`legacy`]).
//!
//! This module is pure: every parser takes the file's text plus the path it came from,
//! and the path is only used to label errors. The daemon (`crate::daemon`) and the `ctdb`
//! tool read the files (following symlinks, since clusters often link these files into
//! a cluster filesystem), call these parsers, and log what comes back. Nothing here
//! panics, whatever the input.
//!
//! Formats follow CTDB 4.17 as shipped by Debian: `ctdb.conf(5)`,
//! `ctdb-script.options(5)`, `ctdb.sysconfig(5)`, `ctdb-tunables(7)`, `ctdb(7)`, and
//! `reference/ctdb-protocol-core.md` §7 for the nodes file. Every error carries the
//! file, the 1-based line and a structured [`ConfigErrorKind`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub mod conf;
mod ini;
pub mod legacy;
pub mod nodes;
pub mod public_addresses;
pub mod script_options;
mod shell;
pub mod tunables_file;

pub use conf::{
    ClusterConf, ClusterLock, CtdbConf, DatabaseConf, DeprecatedKey, DnsConf, EventConf,
    FailoverConf, LegacyConf, LogLevel, LogLocation, LoggingConf, MetricsConf, SyslogMethod,
    Transport,
};
pub use legacy::{LegacyConfig, LegacyNotice, LegacySetting};
pub use nodes::{parse_nodes, NodeEntry};
pub use public_addresses::{is_valid_interface_name, parse_public_addresses, PublicAddress};
pub use script_options::{parse_script_options, ScriptOption};
pub use tunables_file::{parse_tunables_file, TunableSetting};

/// A configuration file could not be used as written. Nothing was applied from the
/// file (except for `public_addresses`, whose parser skips only the bad line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {kind}", path.display())]
pub struct ConfigError {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// 1-based line the problem starts on; 0 means the file as a whole.
    pub line: usize,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// An error at `line` (1-based; 0 for the whole file) of `path`.
    pub fn new(path: &Path, line: usize, kind: ConfigErrorKind) -> Self {
        Self {
            path: path.to_path_buf(),
            line,
            kind,
        }
    }
}

/// What is wrong with a configuration line or file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigErrorKind {
    /// The line does not have the shape the format requires.
    #[error("syntax error, expected {expected}")]
    Syntax {
        /// What the line should have looked like.
        expected: &'static str,
    },
    /// `ctdb.conf` names a section CTDB 4.17 does not have.
    #[error(
        "unknown section [{section}], expected one of [logging], [cluster], [database], \
         [event], [failover], [legacy], [metrics], [dns]"
    )]
    UnknownSection {
        /// The section name as written.
        section: String,
    },
    /// A `ctdb.conf` option appears before the first `[section]` line.
    #[error("option {key:?} is outside any section, expected a [section] line before it")]
    KeyOutsideSection {
        /// The option name as written.
        key: String,
    },
    /// `ctdb.conf` names an option its section does not have (names are case-sensitive).
    #[error("unknown option {key:?} in section [{section}]")]
    UnknownKey {
        /// The section the option appeared in.
        section: String,
        /// The option name as written.
        key: String,
    },
    /// `key =` or `Name=` with nothing after the equals sign.
    #[error("empty value for {key:?}, expected a value after '='")]
    EmptyValue {
        /// The option, tunable or variable name.
        key: String,
    },
    /// A value that does not parse as its option's type.
    #[error("invalid value {value:?} for {key:?}, expected {expected}")]
    InvalidValue {
        /// The option, tunable or variable name.
        key: String,
        /// The value as written (after unquoting, for shell files).
        value: String,
        /// What the option accepts.
        expected: &'static str,
    },
    /// An option that another one needs is missing from its section.
    #[error("[{section}] {key} needs {needed:?} in the same section")]
    MissingKey {
        /// The section.
        section: &'static str,
        /// The option given.
        key: &'static str,
        /// The option it needs.
        needed: &'static str,
    },
    /// Text that should be a bare IPv4 or IPv6 address is not one.
    #[error("invalid address {text:?}, expected a bare IPv4 or IPv6 address")]
    BadAddress {
        /// The text as written.
        text: String,
    },
    /// A public address without its `/BITS` suffix.
    #[error("missing prefix length in {text:?}, expected ADDR/BITS")]
    MissingPrefixLength {
        /// The address field as written.
        text: String,
    },
    /// A public address whose `/BITS` is not a number in range for its family.
    #[error("invalid prefix length in {text:?}, expected /0 to /{max}")]
    BadPrefixLength {
        /// The address field as written.
        text: String,
        /// Largest prefix length for the address family (32 or 128).
        max: u8,
    },
    /// The same address is listed twice; the later line is the one reported.
    #[error("duplicate address {addr}, first listed on line {first_line}")]
    DuplicateAddress {
        /// The repeated address.
        addr: IpAddr,
        /// Line of its first appearance.
        first_line: usize,
    },
    /// The nodes file lists no node at all.
    #[error("no nodes listed, expected at least one address")]
    NoNodes,
    /// The nodes file lists more nodes than a pnn can number.
    #[error("too many nodes, expected at most 4294967295")]
    TooManyNodes,
    /// A public address line names no interface and no default interface was given.
    #[error("no interface for {addr}, expected ADDR/BITS IFACE[,IFACE...]")]
    MissingInterface {
        /// The address on that line.
        addr: IpAddr,
    },
    /// An interface name Linux would not accept.
    #[error(
        "invalid interface name {name:?}, expected 1 to 15 bytes without '/', ',' or whitespace"
    )]
    BadInterface {
        /// The name as written.
        name: String,
    },
    /// `ctdb.tunables` names a tunable CTDB does not have.
    #[error("unknown tunable {name:?}, expected a name listed in ctdb-tunables(7)")]
    UnknownTunable {
        /// The name as written.
        name: String,
    },
}

/// Parses an unsigned number the way C's `strtoul(text, .., 0)` does when the whole
/// string must be consumed: `0x`/`0X` hexadecimal, a leading `0` octal, else decimal.
/// CTDB reads tunables and integer `ctdb.conf` options this way.
fn parse_c_unsigned(text: &str) -> Option<u64> {
    let (digits, radix) =
        if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
            (hex, 16)
        } else if text.len() > 1 && text.starts_with('0') {
            (&text[1..], 8)
        } else {
            (text, 10)
        };
    // from_str_radix alone would also take a leading '+', which strtoul's callers in
    // CTDB never see in practice; keep to plain digits.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Parses an address the way CTDB's `inet_pton`-based parsers do: bare IPv4 or IPv6
/// text only (no brackets, port or zone), an IPv4-mapped IPv6 address becoming IPv4.
fn parse_bare_ip(text: &str) -> Option<IpAddr> {
    if text.starts_with('[') {
        return None;
    }
    crate::protocol::wire::parse_ip(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_file_and_line() {
        let err = ConfigError::new(
            Path::new("/etc/ctdb/ctdb.conf"),
            7,
            ConfigErrorKind::UnknownKey {
                section: "cluster".into(),
                key: "recmaster capability".into(),
            },
        );
        assert_eq!(
            err.to_string(),
            "/etc/ctdb/ctdb.conf:7: unknown option \"recmaster capability\" in section [cluster]"
        );
        let whole = ConfigError::new(Path::new("/etc/ctdb/nodes"), 0, ConfigErrorKind::NoNodes);
        assert_eq!(
            whole.to_string(),
            "/etc/ctdb/nodes:0: no nodes listed, expected at least one address"
        );
    }

    #[test]
    fn c_unsigned_accepts_decimal_hex_and_octal_only() {
        assert_eq!(parse_c_unsigned("0"), Some(0));
        assert_eq!(parse_c_unsigned("42"), Some(42));
        assert_eq!(parse_c_unsigned("0x1F"), Some(31));
        assert_eq!(parse_c_unsigned("0Xf"), Some(15));
        assert_eq!(parse_c_unsigned("072"), Some(58));
        for bad in ["", "0x", "08", "0xgg", "+5", "-1", "5s", " 5", "1e3"] {
            assert_eq!(parse_c_unsigned(bad), None, "{bad:?}");
        }
        assert_eq!(parse_c_unsigned("99999999999999999999999"), None);
    }

    #[test]
    fn bare_ip_rejects_brackets_and_maps_v4_in_v6() {
        assert_eq!(parse_bare_ip("10.0.0.1"), "10.0.0.1".parse().ok());
        assert_eq!(parse_bare_ip("::ffff:10.0.0.1"), "10.0.0.1".parse().ok());
        assert_eq!(parse_bare_ip("fd00::1"), "fd00::1".parse().ok());
        for bad in [
            "[fd00::1]",
            "10.0.0.1:4379",
            "fe80::1%eth0",
            "1.2.3",
            "010.1.1.1",
            "",
        ] {
            assert_eq!(parse_bare_ip(bad), None, "{bad:?}");
        }
    }
}

//! `/etc/ctdb/ctdb.tunables`: tunable values applied at start-up (`ctdb-tunables(7)`).
//!
//! The daemon reads the file if it exists, parses it here and sets each value in
//! [`crate::tunables::Tunables`] in file order (a later line for the same tunable wins).
//! Lines are `Name=Value`, read with the same line rules as `ctdb.conf` (see
//! `ini.rs`): whitespace around the name and value is allowed, whole-line `#` and
//! `;` comments and blank lines are skipped, and a trailing comment is not allowed. Names
//! match case-insensitively. The value is a whole unsigned 32-bit number in C notation:
//! decimal, `0x` hexadecimal or leading-`0` octal. Section headers are an error.

use std::path::Path;

use super::ini::{self, IniItem};
use super::{parse_c_unsigned, ConfigError, ConfigErrorKind};
use crate::tunables::Tunables;

/// One `Name=Value` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunableSetting {
    /// The tunable's canonical name (as `ctdb listvars` prints it).
    pub name: &'static str,
    /// The value to set.
    pub value: u32,
    /// Line of the file it came from.
    pub line: usize,
    /// The tunable is obsolete: CTDB stores the value but nothing uses it. The daemon
    /// should warn about it.
    pub obsolete: bool,
}

/// Parses the text of a tunables file read from `path` (`path` only labels errors).
/// The first problem found is returned.
pub fn parse_tunables_file(text: &str, path: &Path) -> Result<Vec<TunableSetting>, ConfigError> {
    let mut settings = Vec::new();
    for (line, item) in ini::items(text) {
        let error = |kind| ConfigError::new(path, line, kind);
        let (name, value) = match item {
            IniItem::Param { name, value } if !name.is_empty() => (name, value),
            IniItem::Section(_) | IniItem::UnclosedSection => {
                return Err(error(ConfigErrorKind::Syntax {
                    expected: "`Name=Value` (this file has no sections)",
                }))
            }
            IniItem::Param { .. } | IniItem::NoEquals(_) => {
                return Err(error(ConfigErrorKind::Syntax {
                    expected: "`Name=Value`",
                }))
            }
        };
        let Some(def) = Tunables::definition(&name) else {
            return Err(error(ConfigErrorKind::UnknownTunable { name }));
        };
        if value.is_empty() {
            return Err(error(ConfigErrorKind::EmptyValue { key: name }));
        }
        let parsed = parse_c_unsigned(&value).and_then(|v| u32::try_from(v).ok());
        let Some(parsed) = parsed else {
            return Err(error(ConfigErrorKind::InvalidValue {
                key: name,
                value,
                expected: "a number from 0 to 4294967295 (decimal, 0x hex or 0 octal)",
            }));
        };
        settings.push(TunableSetting {
            name: def.name,
            value: parsed,
            line,
            obsolete: def.obsolete,
        });
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/ctdb/ctdb.tunables";

    fn parse(text: &str) -> Result<Vec<TunableSetting>, ConfigError> {
        parse_tunables_file(text, Path::new(PATH))
    }

    fn setting(name: &'static str, value: u32, line: usize) -> TunableSetting {
        TunableSetting {
            name,
            value,
            line,
            obsolete: false,
        }
    }

    #[test]
    fn debian_example_file_sets_nothing() {
        let text = "# Set some CTDB tunable variables during CTDB startup?\n# MutexEnabled=0\n";
        assert_eq!(parse(text).unwrap(), vec![]);
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn names_any_case_values_in_c_notation_whitespace_anywhere() {
        let text = "# leading comment\nenablebans=0\nReCoVerInTeRvAl\t =    10\n\n\
                    ; another comment\n  ELECTIONTIMEOUT=25   \nMonitorInterval = 0x14\n\
                    KeepaliveLimit=012\nMaxQueueDropMsg=4294967295\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                setting("EnableBans", 0, 2),
                setting("RecoverInterval", 10, 3),
                setting("ElectionTimeout", 25, 6),
                setting("MonitorInterval", 20, 7),
                setting("KeepaliveLimit", 10, 8),
                setting("MaxQueueDropMsg", u32::MAX, 9),
            ]
        );
    }

    #[test]
    fn obsolete_tunables_are_flagged() {
        assert_eq!(
            parse("DeterministicIPs=1").unwrap(),
            vec![TunableSetting {
                name: "DeterministicIPs",
                value: 1,
                line: 1,
                obsolete: true
            }]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases: Vec<(&str, usize, ConfigErrorKind)> = vec![
            (
                "EnableBans=1\nHello\n",
                2,
                ConfigErrorKind::Syntax {
                    expected: "`Name=Value`",
                },
            ),
            (
                "\n=123\n",
                2,
                ConfigErrorKind::Syntax {
                    expected: "`Name=Value`",
                },
            ),
            (
                "[tunables]\n",
                1,
                ConfigErrorKind::Syntax {
                    expected: "`Name=Value` (this file has no sections)",
                },
            ),
            (
                "HelloWorld=123\n",
                1,
                ConfigErrorKind::UnknownTunable {
                    name: "HelloWorld".into(),
                },
            ),
            (
                "EnableBans=\n",
                1,
                ConfigErrorKind::EmptyValue {
                    key: "EnableBans".into(),
                },
            ),
        ];
        for (text, line, kind) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!((e.line, e.kind), (line, kind), "{text:?}");
        }
        for bad in ["value", "0xgg", "-1", "4294967296", "1 # one", "08", "+1"] {
            let e = parse(&format!("# c\nEnableBans={bad}\n")).expect_err(bad);
            assert_eq!(e.line, 2);
            assert!(
                matches!(&e.kind, ConfigErrorKind::InvalidValue { key, value, .. }
                    if key == "EnableBans" && value == bad),
                "{bad}: {:?}",
                e.kind
            );
        }
        assert_eq!(
            parse("EnableBans=1\nNoSuchTunable=1\n")
                .unwrap_err()
                .to_string(),
            "/etc/ctdb/ctdb.tunables:2: unknown tunable \"NoSuchTunable\", \
             expected a name listed in ctdb-tunables(7)"
        );
        assert_eq!(
            parse("EnableBans=yes\n").unwrap_err().to_string(),
            "/etc/ctdb/ctdb.tunables:1: invalid value \"yes\" for \"EnableBans\", \
             expected a number from 0 to 4294967295 (decimal, 0x hex or 0 octal)"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn tunable_like_text_never_panics(
            lines in proptest::collection::vec("[A-Za-z]{0,20}[ \t]*=?[ \t]*[0-9xXa-f]{0,12}", 0..20)
        ) {
            let _ = parse(&lines.join("\n"));
        }
    }
}

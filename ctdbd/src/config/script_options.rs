//! Event script option files: `/etc/ctdb/script.options` and the per-script
//! `SCRIPT.options` beside each event script (`ctdb-script.options(5)`).
//!
//! The event scripts source these files themselves; the daemon parses them to check
//! them at start-up and to show them, and [`super::legacy`] produces the same
//! [`ScriptOption`]s for old variables that belong here now. The format is simple shell
//! assignments (see `shell.rs` for the exact subset); any other line is an error,
//! since CTDB documents nothing else for these files.

use std::path::Path;

use super::shell::{self, ShellLine};
use super::{ConfigError, ConfigErrorKind};

/// One `NAME=value` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOption {
    /// The variable name, such as `CTDB_PARTIALLY_ONLINE_INTERFACES`.
    pub name: String,
    /// The value with shell quoting removed.
    pub value: String,
    /// Line of the file it came from.
    pub line: usize,
}

/// Parses the text of an options file read from `path` (`path` only labels errors).
/// Assignments come back in file order, repeats included (the last one is what the
/// scripts see). The first invalid line is returned as an error.
pub fn parse_script_options(text: &str, path: &Path) -> Result<Vec<ScriptOption>, ConfigError> {
    let mut options = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let error = |expected| ConfigError::new(path, line, ConfigErrorKind::Syntax { expected });
        match shell::parse_line(raw).map_err(error)? {
            ShellLine::Blank => {}
            ShellLine::Assignment { name, value } => options.push(ScriptOption {
                name: name.to_owned(),
                value,
                line,
            }),
            ShellLine::Command(_) => return Err(error("a `NAME=value` assignment or a # comment")),
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATH: &str = "/etc/ctdb/script.options";

    fn parse(text: &str) -> Result<Vec<ScriptOption>, ConfigError> {
        parse_script_options(text, Path::new(PATH))
    }

    fn option(name: &str, value: &str, line: usize) -> ScriptOption {
        ScriptOption {
            name: name.into(),
            value: value.into(),
            line,
        }
    }

    #[test]
    fn debian_example_file() {
        let text = "# For now, use script.options to demonstrate these options.  See\n\
                    # *.options examples for more specific examples.\n\n#\n# Samba configuration\n\
                    #\n\n# 50.samba.options\n# CTDB_SAMBA_SKIP_SHARE_CHECK=yes\n\n#\n\
                    # NFS configuration\n#\n\n# 60.nfs.options\nCTDB_RPCINFO_LOCALHOST=\"127.0.0.1\"\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![option("CTDB_RPCINFO_LOCALHOST", "127.0.0.1", 16)]
        );
    }

    #[test]
    fn quoting_export_and_repeats() {
        let text = "CTDB_PARTIALLY_ONLINE_INTERFACES=yes\n\
                    export CTDB_NATGW_STATIC_ROUTES='10.1.0.0/16 10.2.0.0/16@10.0.0.254'\n\
                    CTDB_NATGW_NODES=/etc/ctdb/natgw_nodes # group A\n\
                    CTDB_PARTIALLY_ONLINE_INTERFACES=no\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                option("CTDB_PARTIALLY_ONLINE_INTERFACES", "yes", 1),
                option(
                    "CTDB_NATGW_STATIC_ROUTES",
                    "10.1.0.0/16 10.2.0.0/16@10.0.0.254",
                    2
                ),
                option("CTDB_NATGW_NODES", "/etc/ctdb/natgw_nodes", 3),
                option("CTDB_PARTIALLY_ONLINE_INTERFACES", "no", 4),
            ]
        );
    }

    #[test]
    fn invalid_lines_name_file_and_line() {
        for (text, expected) in [
            (
                "A=1\nulimit -n 4096\n",
                "a `NAME=value` assignment or a # comment",
            ),
            ("A=1\nB=\"open\n", "a closing double quote"),
            ("A=1\nB = 2\n", "no spaces around '=' (NAME=value)"),
            (
                "A=1\nB=$A\n",
                "a literal value (no $ or ` expansions; use single quotes)",
            ),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(
                (e.line, e.kind),
                (2, ConfigErrorKind::Syntax { expected }),
                "{text:?}"
            );
        }
        assert_eq!(
            parse("\n\nif true\n").unwrap_err().to_string(),
            "/etc/ctdb/script.options:3: syntax error, expected a `NAME=value` assignment \
             or a # comment"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn shell_like_text_never_panics(
            lines in proptest::collection::vec("(export )?[A-Z_]{0,8}=?[\"'$`\\\\a-z #;]{0,20}", 0..20)
        ) {
            let _ = parse(&lines.join("\n"));
        }
    }
}

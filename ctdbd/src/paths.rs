//! Where CTDB 4.17 keeps its files, with the environment overrides it honours
//! (reference/ctdb-protocol-core.md §7).
//!
//! | what | default (Debian) | override |
//! |---|---|---|
//! | configuration | `/etc/ctdb` | `CTDB_BASE` |
//! | run directory (socket, pid file) | `/run/ctdb` | `$CTDB_BASE/run` with `CTDB_TEST_MODE` |
//! | state | `/var/lib/ctdb` | `$CTDB_BASE/var` with `CTDB_TEST_MODE` |
//! | client socket | `<rundir>/ctdbd.socket` | `CTDB_SOCKET` |
//! | provided event scripts | `/usr/share/ctdb/events/legacy` | `$CTDB_BASE/share/events/legacy` with `CTDB_TEST_MODE`; `CTDB_DATADIR` (ctdb-rs) |
//! | syslog socket (`location = syslog`) | `/dev/log` | `CTDB_RS_SYSLOG_SOCKET` (ctdb-rs; for tests) |
//!
//! Pure: the environment is passed in, so tests and the tool share one rule.

use std::path::PathBuf;

/// The resolved locations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Configuration directory.
    pub etc_dir: PathBuf,
    /// Run-time directory.
    pub run_dir: PathBuf,
    /// State directory.
    pub var_dir: PathBuf,
    /// Client socket.
    pub socket: PathBuf,
    /// Read-only data: the provided event scripts live in `events/legacy` below it.
    pub data_dir: PathBuf,
    /// The local syslog socket that `[logging] location = syslog` sends to.
    pub syslog_socket: PathBuf,
}

impl Paths {
    /// Resolves paths from an environment lookup (`std::env::var` in binaries).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let base = var("CTDB_BASE").filter(|s| !s.is_empty());
        let test_mode = var("CTDB_TEST_MODE").is_some();
        let etc_dir = PathBuf::from(base.as_deref().unwrap_or("/etc/ctdb"));
        let (run_dir, var_dir) = if test_mode {
            (etc_dir.join("run"), etc_dir.join("var"))
        } else {
            (PathBuf::from("/run/ctdb"), PathBuf::from("/var/lib/ctdb"))
        };
        let socket = var("CTDB_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| run_dir.join("ctdbd.socket"));
        // 4.17's test mode keeps its read-only data under CTDB_BASE too.
        let data_dir = var("CTDB_DATADIR")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                if test_mode {
                    etc_dir.join("share")
                } else {
                    PathBuf::from("/usr/share/ctdb")
                }
            });
        let syslog_socket = var("CTDB_RS_SYSLOG_SOCKET")
            .filter(|s| !s.is_empty())
            .map_or_else(|| PathBuf::from("/dev/log"), PathBuf::from);
        Self {
            etc_dir,
            run_dir,
            var_dir,
            socket,
            data_dir,
            syslog_socket,
        }
    }

    /// The process environment's paths.
    pub fn from_process_env() -> Self {
        Self::from_env(|k| std::env::var(k).ok())
    }

    /// `nodes` file.
    pub fn nodes(&self) -> PathBuf {
        self.etc_dir.join("nodes")
    }

    /// `public_addresses` file.
    pub fn public_addresses(&self) -> PathBuf {
        self.etc_dir.join("public_addresses")
    }

    /// `ctdb.conf`.
    pub fn conf(&self) -> PathBuf {
        self.etc_dir.join("ctdb.conf")
    }

    /// `ctdb.tunables`.
    pub fn tunables(&self) -> PathBuf {
        self.etc_dir.join("ctdb.tunables")
    }

    /// `script.options`.
    pub fn script_options(&self) -> PathBuf {
        self.etc_dir.join("script.options")
    }

    /// Daemon pid file.
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir.join("ctdbd.pid")
    }

    /// Enabled event scripts (symlinks or local scripts): `<etc>/events/legacy`.
    pub fn enabled_scripts(&self) -> PathBuf {
        self.etc_dir.join("events").join("legacy")
    }

    /// Event scripts provided to enable: `<data>/events/legacy`.
    pub fn provided_scripts(&self) -> PathBuf {
        self.data_dir.join("events").join("legacy")
    }

    /// The scripts' state directory (`CTDB_SCRIPT_VARDIR`).
    pub fn script_vardir(&self) -> PathBuf {
        self.var_dir.join("scripts")
    }

    /// The event socket the `ctdb event` tools talk to.
    pub fn eventd_socket(&self) -> PathBuf {
        self.run_dir.join("eventd.socket")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn debian_defaults() {
        let p = Paths::from_env(env(&[]));
        assert_eq!(p.socket, PathBuf::from("/run/ctdb/ctdbd.socket"));
        assert_eq!(p.nodes(), PathBuf::from("/etc/ctdb/nodes"));
        assert_eq!(p.var_dir, PathBuf::from("/var/lib/ctdb"));
        assert_eq!(p.syslog_socket, PathBuf::from("/dev/log"));
    }

    #[test]
    fn overrides() {
        let p = Paths::from_env(env(&[("CTDB_BASE", "/tmp/b"), ("CTDB_SOCKET", "/tmp/s")]));
        assert_eq!(p.socket, PathBuf::from("/tmp/s"));
        assert_eq!(p.conf(), PathBuf::from("/tmp/b/ctdb.conf"));
        assert_eq!(p.run_dir, PathBuf::from("/run/ctdb"));
        let t = Paths::from_env(env(&[("CTDB_BASE", "/tmp/b"), ("CTDB_TEST_MODE", "1")]));
        assert_eq!(t.socket, PathBuf::from("/tmp/b/run/ctdbd.socket"));
        assert_eq!(
            t.provided_scripts(),
            PathBuf::from("/tmp/b/share/events/legacy")
        );
        assert_eq!(t.eventd_socket(), PathBuf::from("/tmp/b/run/eventd.socket"));
        assert_eq!(
            p.provided_scripts(),
            PathBuf::from("/usr/share/ctdb/events/legacy")
        );
        let s = Paths::from_env(env(&[("CTDB_RS_SYSLOG_SOCKET", "/tmp/log.sock")]));
        assert_eq!(s.syslog_socket, PathBuf::from("/tmp/log.sock"));
    }
}

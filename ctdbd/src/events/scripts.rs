//! The event script directories, laid out as CTDB 4.17 lays them out.
//!
//! - Scripts CTDB-rs provides live in a data directory (`/usr/share/ctdb/events/legacy`
//!   on Debian) as `NN.name.script`.
//! - A script is enabled by a symlink of the same file name in the configuration
//!   directory (`/etc/ctdb/events/legacy`). Local scripts may also be regular files
//!   there; those are enabled and disabled by their execute bits.
//! - An event runs every `NN.*.script` in the configuration directory, in byte order of
//!   the name. One that is not executable (or a symlink whose target is gone) is
//!   listed in the event's status as `DISABLED` and does not run; it does not fail
//!   the event.
//!
//! Sources: `ctdb(1)` (`event script list|enable|disable`), the installed layout
//! (`ls -la /usr/share/ctdb/events/legacy /etc/ctdb/events/legacy`), and the stock
//! `ctdb-event` tool and `ctdb-eventd` run against a scratch `CTDB_BASE`.
//!
//! Paths are parameters so tests use temporary directories. This module does blocking
//! file-system calls (a few `stat`s and `readdir`s); the runner calls it from its own
//! task, and it is cheap enough not to need `spawn_blocking`.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Suffix of an event script's file name.
pub const SCRIPT_SUFFIX: &str = ".script";
/// Suffix of a script's own options file, beside it in the configuration directory
/// (`ctdb-script.options(5)`; the stock `functions` reads `${0%.script}.options`).
pub const OPTIONS_SUFFIX: &str = ".options";

/// Execute bits for owner, group and others.
const EXECUTE_BITS: u32 = 0o111;

/// A script's name as CTDB shows it: `NN.name`, two decimal digits, a dot, and at
/// least one more character; no `/` (CTDB's file pattern is `[0-9][0-9].*.script`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ScriptName(String);

impl ScriptName {
    /// Checks `name`, with or without the `.script` suffix (CTDB's tool accepts both).
    pub fn parse(name: &str) -> Result<Self, ScriptError> {
        let bare = name.strip_suffix(SCRIPT_SUFFIX).unwrap_or(name);
        let bytes = bare.as_bytes();
        let valid = bytes.len() > 3
            && bytes[0].is_ascii_digit()
            && bytes[1].is_ascii_digit()
            && bytes[2] == b'.'
            && !bare.contains(['/', '\0']);
        if valid {
            Ok(Self(bare.to_owned()))
        } else {
            Err(ScriptError::InvalidName {
                name: name.to_owned(),
            })
        }
    }

    /// The name, such as `10.interface`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The script's file name, such as `10.interface.script`.
    pub fn file_name(&self) -> String {
        format!("{}{SCRIPT_SUFFIX}", self.0)
    }

    /// Its options file's name, such as `10.interface.options`.
    pub fn options_file_name(&self) -> String {
        format!("{}{OPTIONS_SUFFIX}", self.0)
    }

    /// The name of a directory entry if it is an event script (`NN.*.script`).
    fn from_file_name(file_name: &OsStr) -> Option<Self> {
        let text = std::str::from_utf8(file_name.as_bytes()).ok()?;
        let bare = text.strip_suffix(SCRIPT_SUFFIX)?;
        Self::parse(bare).ok()
    }
}

impl std::fmt::Display for ScriptName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A script directory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The name is not `NN.name`; nothing was changed.
    #[error("script name {name:?} is not of the form NN.name")]
    InvalidName {
        /// The name as given.
        name: String,
    },
    /// No script of that name is provided or installed; nothing was changed.
    #[error("script {name} does not exist")]
    NotFound {
        /// The script.
        name: ScriptName,
    },
    /// The path exists but is not a regular file or a symlink to one; nothing was
    /// changed.
    #[error("{} is not a script file or a link to one", path.display())]
    NotAScript {
        /// What was found.
        path: PathBuf,
    },
    /// A file-system call failed; the script's state is as `path` shows it now.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

impl ScriptError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where a listed script comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptSource {
    /// In the data directory; enabled by a symlink to it.
    Provided,
    /// Only in the configuration directory (a local or third-party script); enabled
    /// when executable.
    Local,
}

/// One line of `ctdb event script list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptEntry {
    /// The script.
    pub name: ScriptName,
    /// Provided or local.
    pub source: ScriptSource,
    /// Whether events will try to run it.
    pub enabled: bool,
}

/// Whether a script in the configuration directory will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Executable: it runs.
    Executable,
    /// Enabled by a symlink, but the file it points to is not executable: reported,
    /// not run (CTDB shows it as `DISABLED`).
    NotExecutable,
    /// A local script without execute bits, or a symlink whose target is gone:
    /// CTDB's way of disabling; reported as `DISABLED`, not run.
    Disabled,
}

/// A script an event will visit, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedScript {
    /// The script.
    pub name: ScriptName,
    /// Its path in the configuration directory (possibly a symlink).
    pub path: PathBuf,
    /// Whether it runs.
    pub readiness: Readiness,
}

/// The scripts an event in `dir` (the configuration directory) visits: every
/// `NN.*.script`, in byte order of the name, with whether it will run. Other files
/// (such as `NN.name.options`) are ignored, as CTDB ignores them.
pub fn planned_scripts(dir: &Path) -> Result<Vec<PlannedScript>, ScriptError> {
    let mut planned: Vec<PlannedScript> = read_script_names(dir)?
        .into_iter()
        .map(|name| {
            let path = dir.join(name.file_name());
            let readiness = readiness(&path);
            PlannedScript {
                name,
                path,
                readiness,
            }
        })
        .collect();
    planned.sort_by(|a, b| a.name.as_str().as_bytes().cmp(b.name.as_str().as_bytes()));
    Ok(planned)
}

fn readiness(path: &Path) -> Readiness {
    // stat() follows the link: a dangling one is "gone", which CTDB treats as
    // disabled rather than as an error.
    let Ok(meta) = fs::metadata(path) else {
        return Readiness::Disabled;
    };
    if meta.permissions().mode() & 0o100 != 0 {
        return Readiness::Executable;
    }
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link {
        Readiness::NotExecutable
    } else {
        Readiness::Disabled
    }
}

/// Names of the `NN.*.script` entries in `dir`, unsorted.
fn read_script_names(dir: &Path) -> Result<Vec<ScriptName>, ScriptError> {
    let entries = fs::read_dir(dir).map_err(|e| ScriptError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ScriptError::io(dir, e))?;
        if let Some(name) = ScriptName::from_file_name(&entry.file_name()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The two directories of one component (CTDB has only `legacy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptDirs {
    /// Where provided scripts live (`/usr/share/ctdb/events/legacy`).
    pub available: PathBuf,
    /// Where enabled scripts are linked and local scripts live
    /// (`/etc/ctdb/events/legacy`); events run from here.
    pub enabled: PathBuf,
}

impl ScriptDirs {
    /// The directories of the `legacy` component.
    pub fn new(available: impl Into<PathBuf>, enabled: impl Into<PathBuf>) -> Self {
        Self {
            available: available.into(),
            enabled: enabled.into(),
        }
    }

    /// What `ctdb event script list` shows: provided scripts in name order, each
    /// enabled when the configuration directory holds a symlink of the same name to
    /// it; then the remaining (local) scripts of the configuration directory,
    /// enabled when executable. A missing data directory just means no provided
    /// scripts (cut-down installs populate only the configuration directory).
    pub fn list(&self) -> Result<Vec<ScriptEntry>, ScriptError> {
        let mut provided = match read_script_names(&self.available) {
            Ok(names) => names,
            Err(ScriptError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        provided.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
        let mut installed = read_script_names(&self.enabled)?;
        installed.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));

        let mut list = Vec::new();
        let mut matched = Vec::new();
        for name in provided {
            let target = self.available.join(name.file_name());
            let link = self.enabled.join(name.file_name());
            let enabled = fs::read_link(&link).is_ok_and(|to| same_file(&to, &target));
            if enabled {
                matched.push(name.clone());
            }
            list.push(ScriptEntry {
                name,
                source: ScriptSource::Provided,
                enabled,
            });
        }
        for name in installed.into_iter().filter(|n| !matched.contains(n)) {
            let path = self.enabled.join(name.file_name());
            let enabled = readiness(&path) == Readiness::Executable;
            list.push(ScriptEntry {
                name,
                source: ScriptSource::Local,
                enabled,
            });
        }
        Ok(list)
    }

    /// `ctdb event script enable`: a provided script gets its symlink; a local script
    /// (a regular file in the configuration directory) gets its execute bits. An
    /// existing symlink means already enabled.
    pub fn enable(&self, name: &str) -> Result<(), ScriptError> {
        let name = ScriptName::parse(name)?;
        let link = self.enabled.join(name.file_name());
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => Ok(()),
            Ok(meta) if meta.file_type().is_file() => set_execute(&link, true),
            Ok(_) => Err(ScriptError::NotAScript { path: link }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let target = self.available.join(name.file_name());
                match fs::metadata(&target) {
                    Ok(meta) if meta.is_file() => {
                        symlink(&target, &link).map_err(|e| ScriptError::io(&link, e))
                    }
                    Ok(_) => Err(ScriptError::NotAScript { path: target }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        Err(ScriptError::NotFound { name })
                    }
                    Err(e) => Err(ScriptError::io(&target, e)),
                }
            }
            Err(e) => Err(ScriptError::io(&link, e)),
        }
    }

    /// `ctdb event script disable`: removes the symlink, or clears a local script's
    /// execute bits. Disabling a provided script that is not enabled does nothing.
    pub fn disable(&self, name: &str) -> Result<(), ScriptError> {
        let name = ScriptName::parse(name)?;
        let link = self.enabled.join(name.file_name());
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::remove_file(&link).map_err(|e| ScriptError::io(&link, e))
            }
            Ok(meta) if meta.file_type().is_file() => set_execute(&link, false),
            Ok(_) => Err(ScriptError::NotAScript { path: link }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.available.join(name.file_name()).exists() {
                    Ok(())
                } else {
                    Err(ScriptError::NotFound { name })
                }
            }
            Err(e) => Err(ScriptError::io(&link, e)),
        }
    }
}

/// Whether a symlink's target names `target` (the same text, as CTDB compares, or
/// the same file once both are resolved).
fn same_file(link_target: &Path, target: &Path) -> bool {
    if link_target == target {
        return true;
    }
    match (fs::canonicalize(link_target), fs::canonicalize(target)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn set_execute(path: &Path, on: bool) -> Result<(), ScriptError> {
    let meta = fs::metadata(path).map_err(|e| ScriptError::io(path, e))?;
    let mode = meta.permissions().mode();
    let mode = if on {
        mode | EXECUTE_BITS
    } else {
        mode & !EXECUTE_BITS
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ScriptError::io(path, e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A unique temporary directory, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("ctdb-rs-events-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("create temporary directory");
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Writes `body` to `path` with permission bits `mode`.
    pub(crate) fn write_script(path: &Path, body: &str, mode: u32) {
        fs::write(path, body).expect("write script");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod script");
    }

    fn dirs(tmp: &TempDir) -> ScriptDirs {
        let dirs = ScriptDirs::new(tmp.0.join("share"), tmp.0.join("etc"));
        fs::create_dir_all(&dirs.available).unwrap();
        fs::create_dir_all(&dirs.enabled).unwrap();
        dirs
    }

    #[test]
    fn names() {
        assert_eq!(
            ScriptName::parse("10.interface").unwrap().as_str(),
            "10.interface"
        );
        let with_suffix = ScriptName::parse("10.interface.script").unwrap();
        assert_eq!(with_suffix.as_str(), "10.interface");
        assert_eq!(with_suffix.file_name(), "10.interface.script");
        assert_eq!(with_suffix.options_file_name(), "10.interface.options");
        for bad in [
            "interface",
            "1.interface",
            "100interface",
            "10.",
            "10",
            "ab.x",
            "10.a/b",
            "",
        ] {
            assert!(
                matches!(ScriptName::parse(bad), Err(ScriptError::InvalidName { ref name }) if name == bad),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn list_enable_disable_follow_the_symlink_layout() {
        let tmp = TempDir::new("layout");
        let dirs = dirs(&tmp);
        for name in ["50.samba", "10.interface", "00.ctdb"] {
            write_script(
                &dirs.available.join(format!("{name}.script")),
                "#!/bin/sh\n",
                0o755,
            );
        }
        fs::write(dirs.available.join("README"), "not a script").unwrap();
        write_script(&dirs.enabled.join("02.local.script"), "#!/bin/sh\n", 0o755);
        write_script(&dirs.enabled.join("03.off.script"), "#!/bin/sh\n", 0o644);

        dirs.enable("00.ctdb").unwrap();
        dirs.enable("10.interface.script").unwrap();
        dirs.enable("10.interface").unwrap(); // already enabled: fine
        assert_eq!(
            fs::read_link(dirs.enabled.join("00.ctdb.script")).unwrap(),
            dirs.available.join("00.ctdb.script")
        );

        let listed: Vec<_> = dirs
            .list()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.to_string(), e.source, e.enabled))
            .collect();
        use ScriptSource::*;
        assert_eq!(
            listed,
            [
                ("00.ctdb".to_owned(), Provided, true),
                ("10.interface".to_owned(), Provided, true),
                ("50.samba".to_owned(), Provided, false),
                ("02.local".to_owned(), Local, true),
                ("03.off".to_owned(), Local, false),
            ]
        );

        dirs.disable("10.interface").unwrap();
        assert!(fs::symlink_metadata(dirs.enabled.join("10.interface.script")).is_err());
        dirs.disable("10.interface").unwrap(); // already disabled: fine
                                               // The provided script itself is untouched.
        assert!(dirs.available.join("10.interface.script").exists());

        // Local scripts switch by execute bits.
        dirs.disable("02.local").unwrap();
        dirs.enable("03.off").unwrap();
        let local: Vec<_> = dirs
            .list()
            .unwrap()
            .into_iter()
            .filter(|e| e.source == Local)
            .map(|e| (e.name.to_string(), e.enabled))
            .collect();
        assert_eq!(
            local,
            [("02.local".to_owned(), false), ("03.off".to_owned(), true)]
        );
    }

    #[test]
    fn enable_errors_are_clear() {
        let tmp = TempDir::new("errors");
        let dirs = dirs(&tmp);
        assert!(matches!(
            dirs.enable("samba"),
            Err(ScriptError::InvalidName { .. })
        ));
        assert!(matches!(
            dirs.enable("60.nfs"),
            Err(ScriptError::NotFound { ref name }) if name.as_str() == "60.nfs"
        ));
        assert!(matches!(
            dirs.disable("60.nfs"),
            Err(ScriptError::NotFound { .. })
        ));
        fs::create_dir(dirs.available.join("70.dir.script")).unwrap();
        assert!(matches!(
            dirs.enable("70.dir"),
            Err(ScriptError::NotAScript { .. })
        ));
        let message = dirs.enable("x").unwrap_err().to_string();
        assert_eq!(message, "script name \"x\" is not of the form NN.name");
    }

    #[test]
    fn plan_orders_by_name_and_reports_readiness() {
        let tmp = TempDir::new("plan");
        let dirs = dirs(&tmp);
        write_script(
            &dirs.available.join("05.system.script"),
            "#!/bin/sh\n",
            0o644,
        );
        symlink(
            dirs.available.join("05.system.script"),
            dirs.enabled.join("05.system.script"),
        )
        .unwrap();
        symlink(
            dirs.available.join("gone.script"),
            dirs.enabled.join("07.gone.script"),
        )
        .unwrap();
        write_script(&dirs.enabled.join("10.b.script"), "#!/bin/sh\n", 0o755);
        write_script(&dirs.enabled.join("01.a.script"), "#!/bin/sh\n", 0o755);
        write_script(&dirs.enabled.join("03.off.script"), "#!/bin/sh\n", 0o600);
        fs::write(dirs.enabled.join("10.b.options"), "X=1\n").unwrap();
        fs::write(dirs.enabled.join("notes.txt"), "").unwrap();

        let plan: Vec<_> = planned_scripts(&dirs.enabled)
            .unwrap()
            .into_iter()
            .map(|p| (p.name.to_string(), p.readiness))
            .collect();
        use Readiness::*;
        assert_eq!(
            plan,
            [
                ("01.a".to_owned(), Executable),
                ("03.off".to_owned(), Disabled),
                ("05.system".to_owned(), NotExecutable),
                ("07.gone".to_owned(), Disabled),
                ("10.b".to_owned(), Executable),
            ]
        );
    }
}

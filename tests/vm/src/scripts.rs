//! The repository's event scripts (`events.d/`) installed into a node sandbox the
//! way CTDB 4.17 lays them out, and run by hand with the environment the daemon's
//! event runner gives them.
//!
//! ```text
//!   repo events.d/NN.name.script ──copy──> <node tmp>/events-legacy/
//!        ──bind (node mount ns)──> /usr/share/ctdb/events/legacy/NN.name.script
//!   repo events.d/functions ──copy──> /etc/ctdb/functions
//!   enabled: /etc/ctdb/events/legacy/NN.name.script
//!                -> /usr/share/ctdb/events/legacy/NN.name.script
//! ```
//!
//! The bind mount hides the host's Debian scripts from the node only; nothing on
//! the host changes. The copies are taken at install time, so a test sees the
//! scripts as they were when it started.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::daemon::workspace_root;
use crate::node::{Node, TOOL_TIMEOUT};
use crate::process::{run, run_ok, Output};

/// Where installed scripts live inside a node (CTDB's data directory).
pub const INSTALL_DIR: &str = "/usr/share/ctdb/events/legacy";

/// Where a node's enabled scripts are linked (`CTDB_BASE/events/legacy`).
pub const ENABLED_DIR: &str = "/etc/ctdb/events/legacy";

/// `CTDB_SCRIPT_VARDIR` as the daemon sets it.
pub const SCRIPT_VARDIR: &str = "/var/lib/ctdb/scripts";

/// Every event the daemon runs, in the order of a node's life.
pub const EVENTS: &[&str] = &[
    "init",
    "setup",
    "startup",
    "monitor",
    "takeip",
    "releaseip",
    "updateip",
    "ipreallocated",
    "startrecovery",
    "recovered",
    "shutdown",
];

/// The repository's `events.d` directory.
pub fn source_dir() -> PathBuf {
    workspace_root().join("events.d")
}

/// The names (`00.ctdb`, `50.samba`, ...) of every script in `events.d`, sorted.
pub fn script_names() -> anyhow::Result<Vec<String>> {
    let dir = source_dir();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".script") {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

impl Node {
    /// Installs every script of `events.d` in [`INSTALL_DIR`] and `functions` as
    /// `/etc/ctdb/functions`, then enables the scripts named in `enable` (`50.samba`)
    /// by linking them from [`ENABLED_DIR`]. Installing again refreshes the copies
    /// and adds links; it removes none.
    pub fn install_event_scripts(&self, enable: &[&str]) -> anyhow::Result<()> {
        let source = source_dir();
        let copy = self.sandbox_dir().join("events-legacy");
        std::fs::create_dir_all(&copy).with_context(|| format!("creating {}", copy.display()))?;
        let names = script_names()?;
        for name in &names {
            let file = format!("{name}.script");
            copy_file(&source.join(&file), &copy.join(&file))?;
        }
        copy_file(&source.join("functions"), &self.etc_dir().join("functions"))?;
        if !self.run("mountpoint", &["-q", INSTALL_DIR])?.success() {
            let mut cmd = self.command("mount");
            cmd.arg("--bind").arg(&copy).arg(INSTALL_DIR);
            run_ok(cmd, TOOL_TIMEOUT)
                .with_context(|| format!("node {}: binding the scripts", self.pnn()))?;
        }
        for name in enable {
            self.enable_event_script(name)?;
        }
        Ok(())
    }

    /// Enables an installed script: the link `/etc/ctdb/events/legacy/<name>.script`
    /// (as `ctdb event script enable legacy <name>` makes it).
    pub fn enable_event_script(&self, name: &str) -> anyhow::Result<()> {
        if !script_names()?.iter().any(|n| n == name) {
            bail!("no script {name}.script in {}", source_dir().display());
        }
        let link = self
            .etc_dir()
            .join("events/legacy")
            .join(format!("{name}.script"));
        if link.symlink_metadata().is_ok() {
            return Ok(());
        }
        std::os::unix::fs::symlink(format!("{INSTALL_DIR}/{name}.script"), &link)
            .with_context(|| format!("linking {}", link.display()))
    }

    /// Runs the installed script `name` (`50.samba`) in the node as the event
    /// runner would: `<script> <args...>` with `CTDB_BASE=/etc/ctdb`,
    /// `CTDB_SCRIPT_VARDIR` and then `env`. Returns its output whatever its status;
    /// fails only if it cannot be run or takes longer than the daemon's default
    /// event timeout.
    pub fn run_event_script(
        &self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Output> {
        let mut cmd = self.command(format!("{INSTALL_DIR}/{name}.script"));
        cmd.args(args)
            .env("CTDB_BASE", "/etc/ctdb")
            .env("CTDB_SCRIPT_VARDIR", SCRIPT_VARDIR)
            .current_dir("/");
        for (key, value) in env {
            cmd.env(key, value);
        }
        run(cmd, TOOL_TIMEOUT)
    }
}

fn copy_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

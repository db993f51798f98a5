//! Which `ctdbd` and which `ctdb` a test runs: ours (built in this workspace) or
//! Debian's stock 4.17, the reference our output must match.
//!
//! Tests choose the daemon with [`Daemon::from_env`] (`CTDB_RS_DAEMON=stock` proves
//! a suite's expectations against the reference daemon; the default is ours).
//! The harness watches a cluster with [`Tool::observer`]: the stock tool where
//! Debian's `ctdb` is installed (an outside witness for both daemons), else ours
//! (the demo needs only what ctdb-rs needs).

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// The stock daemon, from Debian's `ctdb` package.
pub const STOCK_CTDBD: &str = "/usr/sbin/ctdbd";
/// The stock tool, from Debian's `ctdb` package.
pub const STOCK_CTDB: &str = "/usr/bin/ctdb";

/// A `ctdbd` implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// `target/debug/ctdbd` of this workspace.
    Ours,
    /// Debian's CTDB 4.17 daemon.
    Stock,
}

/// A `ctdb` tool implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `target/debug/ctdb` of this workspace.
    Ours,
    /// Debian's CTDB 4.17 tool.
    Stock,
}

/// The workspace root, found from this crate's manifest directory (`tests/vm`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .expect("tests/vm sits two levels below the workspace root")
        .to_path_buf()
}

/// `<workspace>/target/<profile>/<name>`, failing loudly if it has not been built.
/// The profile is `debug` unless `CTDB_RS_PROFILE` says otherwise (benchmarks use
/// `release`).
pub fn built_binary(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let profile = std::env::var("CTDB_RS_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (cargo build --workspace, or tests/run-all.sh)",
            path.display()
        );
    }
    Ok(path)
}

fn stock_binary(path: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!(
            "{} is missing: apt-get install ctdb (or run .ci/run)",
            path.display()
        );
    }
    Ok(path)
}

impl Daemon {
    /// The daemon chosen by `CTDB_RS_DAEMON` (`ours`, the default, or `stock`).
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("CTDB_RS_DAEMON").as_deref() {
            Err(std::env::VarError::NotPresent) | Ok("ours") | Ok("") => Ok(Self::Ours),
            Ok("stock") => Ok(Self::Stock),
            other => bail!("CTDB_RS_DAEMON must be `ours` or `stock`, not {other:?}"),
        }
    }

    /// Path of the daemon binary, failing if it does not exist.
    pub fn ctdbd_path(self) -> anyhow::Result<PathBuf> {
        match self {
            Self::Ours => built_binary("ctdbd"),
            Self::Stock => stock_binary(STOCK_CTDBD),
        }
        .context("locating ctdbd")
    }
}

impl Tool {
    /// Path of the tool binary, failing if it does not exist.
    pub fn path(self) -> anyhow::Result<PathBuf> {
        // It once made `Ours` run the stock tool, so that a comparison compared the
        // stock tool with itself and proved nothing: refuse it rather than ignore it.
        if std::env::var_os("CTDB_RS_TOOL").is_some() {
            bail!("CTDB_RS_TOOL is not supported: the comparisons always run both tools; unset it");
        }
        match self {
            Self::Ours => built_binary("ctdb"),
            Self::Stock => stock_binary(STOCK_CTDB),
        }
        .context("locating the ctdb tool")
    }

    /// The tool the harness reads a cluster's state with: the stock one where it is
    /// installed, else ours.
    pub fn observer() -> Self {
        if std::path::Path::new(STOCK_CTDB).is_file() {
            Self::Stock
        } else {
            Self::Ours
        }
    }
}

//! What the nodes say about the cluster, parsed: `ctdb status`, `ctdb -X nodestatus
//! all` and `ctdb leader`, and waits that poll them on given nodes until a condition
//! holds or a deadline passes (STYLE §11: wait for conditions, never for time).
//!
//! On timeout a wait fails with the last output each polled node gave and the tail
//! of every daemon's log, so the failure shows the state the cluster was stuck in.

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::cluster::Cluster;
use crate::daemon::Tool;
use crate::process::{indent, Output};
use crate::wait::wait_until;

/// How many lines of each daemon's log a failed wait shows.
const LOG_TAIL: usize = 60;
/// How many panic and error lines of a dead daemon a failure report shows.
const LOG_WHY: usize = 10;

/// One row of `ctdb -X nodestatus all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node number.
    pub pnn: u32,
    /// Private address.
    pub ip: String,
    /// DISCONNECTED: the observing node has no link with it.
    pub disconnected: bool,
    /// UNKNOWN.
    pub unknown: bool,
    /// BANNED.
    pub banned: bool,
    /// DISABLED (administratively).
    pub disabled: bool,
    /// UNHEALTHY.
    pub unhealthy: bool,
    /// STOPPED.
    pub stopped: bool,
    /// INACTIVE (disconnected, banned or stopped).
    pub inactive: bool,
    /// The observing node itself.
    pub this_node: bool,
}

impl NodeRow {
    /// No flag set: CTDB's `OK`.
    pub fn ok(&self) -> bool {
        !(self.disconnected
            || self.unknown
            || self.banned
            || self.disabled
            || self.unhealthy
            || self.stopped
            || self.inactive)
    }
}

/// Parses `ctdb -X nodestatus all` (4.17's machine-readable node status).
pub fn parse_nodestatus(text: &str) -> Result<Vec<NodeRow>, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty output")?;
    if !header.starts_with("|Node|IP|Disconnected|") {
        return Err(format!("unexpected header {header:?}"));
    }
    lines
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            if f.len() < 12 {
                return Err(format!("short row {line:?}"));
            }
            let bit = |i: usize| f[i] == "1";
            Ok(NodeRow {
                pnn: f[1].parse().map_err(|_| format!("bad pnn in {line:?}"))?,
                ip: f[2].to_owned(),
                disconnected: bit(3),
                unknown: bit(4),
                banned: bit(5),
                disabled: bit(6),
                unhealthy: bit(7),
                stopped: bit(8),
                inactive: bit(9),
                this_node: f[11] == "Y",
            })
        })
        .collect()
}

/// `ctdb status`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `(pnn, flags text)` per `pnn:` line, e.g. `(1, "DISABLED")`; the
    /// ` (THIS NODE)` marker is removed.
    pub nodes: Vec<(u32, String)>,
    /// `Generation:` value as printed (`INVALID` or a number).
    pub generation: String,
    /// The vnn map: the `lmaster:` of each `hash:` line, in order.
    pub vnn_map: Vec<u32>,
    /// `Recovery mode:` value, e.g. `NORMAL (0)`.
    pub recovery_mode: String,
    /// `Leader:` value; `None` for `UNKNOWN`.
    pub leader: Option<u32>,
}

impl Status {
    /// The flags text of `pnn`, if listed.
    pub fn flags(&self, pnn: u32) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(p, _)| *p == pnn)
            .map(|(_, f)| f.as_str())
    }

    /// Whether every one of `pnns` is shown `OK`.
    pub fn all_ok(&self, pnns: &[u32]) -> bool {
        pnns.iter().all(|&p| self.flags(p) == Some("OK"))
    }
}

/// Parses 4.17's `ctdb status` text.
pub fn parse_status(text: &str) -> Result<Status, String> {
    let mut status = Status {
        nodes: Vec::new(),
        generation: String::new(),
        vnn_map: Vec::new(),
        recovery_mode: String::new(),
        leader: None,
    };
    let mut saw_leader = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("pnn:") {
            let mut words = rest.splitn(2, ' ');
            let pnn = words
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("bad pnn in {line:?}"))?;
            // "192.168.20.41    OK (THIS NODE)": address, spaces, flags.
            let flags = words
                .next()
                .map(str::trim_start)
                .and_then(|r| r.split_once(' '))
                .map(|(_, f)| f.trim().trim_end_matches("(THIS NODE)").trim_end())
                .ok_or_else(|| format!("no flags in {line:?}"))?;
            status.nodes.push((pnn, flags.to_owned()));
        } else if let Some(g) = line.strip_prefix("Generation:") {
            status.generation = g.to_owned();
        } else if let Some(h) = line.strip_prefix("hash:") {
            let lmaster = h
                .split_once(" lmaster:")
                .and_then(|(_, l)| l.parse().ok())
                .ok_or_else(|| format!("bad vnn map line {line:?}"))?;
            status.vnn_map.push(lmaster);
        } else if let Some(m) = line.strip_prefix("Recovery mode:") {
            status.recovery_mode = m.to_owned();
        } else if let Some(l) = line.strip_prefix("Leader:") {
            saw_leader = true;
            status.leader = match l {
                "UNKNOWN" => None,
                n => Some(n.parse().map_err(|_| format!("bad leader in {line:?}"))?),
            };
        }
    }
    if status.nodes.is_empty() || !saw_leader {
        return Err("not a `ctdb status` output".to_owned());
    }
    Ok(status)
}

/// Parses `ctdb leader`: a pnn, or `None` for `UNKNOWN`.
pub fn parse_leader(text: &str) -> Result<Option<u32>, String> {
    match text.trim() {
        "UNKNOWN" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|_| format!("not a leader: {n:?}")),
    }
}

/// What a cluster-wide wait saw on each polled node last.
#[derive(Debug, Default)]
pub struct Seen(Vec<(u32, String)>);

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pnn, what) in &self.0 {
            writeln!(f, "-- on node {pnn}:\n{what}")?;
        }
        Ok(())
    }
}

/// The cluster's agreed view after [`Cluster::wait_agreement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The leader every observer names.
    pub leader: u32,
    /// The generation every observer shows.
    pub generation: String,
    /// Each observer's `ctdb status`.
    pub statuses: Vec<(u32, Status)>,
}

impl Cluster {
    /// Runs `tool` with `args` on node `on`, requiring exit status 0.
    pub fn ctdb_ok(&self, on: u32, tool: Tool, args: &[&str]) -> Result<Output, String> {
        match self.node(on).ctdb(tool, args) {
            Ok(out) if out.success() => Ok(out),
            Ok(out) => Err(out.to_string()),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// `ctdb -t 2 status` (our tool) on node `on`, parsed. The tool waits up to
    /// `-t` for a leader broadcast when the node knows no leader; 2 s keeps
    /// leaderless polls short.
    pub fn status(&self, on: u32) -> Result<Status, String> {
        let out = self.ctdb_ok(on, Tool::Ours, &["-t", "2", "status"])?;
        parse_status(&out.stdout).map_err(|e| format!("{e}\n{out}"))
    }

    /// `ctdb -X nodestatus all` (our tool) on node `on`, parsed. The tool exits
    /// non-zero when a node is not OK, so the exit status is not checked.
    pub fn nodestatus(&self, on: u32) -> Result<Vec<NodeRow>, String> {
        let out = self
            .node(on)
            .ctdb(Tool::Ours, &["-X", "nodestatus", "all"])
            .map_err(|e| format!("{e:#}"))?;
        parse_nodestatus(&out.stdout).map_err(|e| format!("{e}\n{out}"))
    }

    /// `ctdb -t 2 leader` (our tool) on node `on`: the leader, or `None` if no
    /// leader broadcast arrived within 2 s.
    pub fn leader(&self, on: u32) -> Result<Option<u32>, String> {
        let out = self.ctdb_ok(on, Tool::Ours, &["-t", "2", "leader"])?;
        parse_leader(&out.stdout).map_err(|e| format!("{e}\n{out}"))
    }

    /// The tail of every present node's daemon log, for failure messages.
    ///
    /// A daemon that has exited comes first, with how it ended and the lines that
    /// say why (panics, errors): failure reports are often cut short, and a dead
    /// daemon explains most of what follows it.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for pnn in self.present_pnns() {
            let node = self.node(pnn);
            let Some(exit) = node.daemon_exit() else {
                continue;
            };
            let log = node.daemon_log();
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("panicked") || l.contains(" ERROR "))
                .collect();
            let why = why[why.len().saturating_sub(LOG_WHY)..].join("\n");
            text.push_str(&format!(
                "---- node {pnn}: ctdbd is not running ({exit}); its panics and errors ----\n{}\n",
                indent(&format!("{why}\n"))
            ));
        }
        for pnn in self.present_pnns() {
            let log = self.node(pnn).daemon_log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n");
            text.push_str(&format!(
                "---- node {pnn} ctdbd log (last {LOG_TAIL} lines) ----\n{}\n",
                indent(&format!("{tail}\n"))
            ));
        }
        text
    }

    /// Polls `probe` on every node of `on` until it accepts all of them, at most
    /// `timeout`; returns each node's value. Fails with `what`, each node's last
    /// output and the daemon logs.
    pub fn wait_on<T>(
        &self,
        on: &[u32],
        timeout: Duration,
        what: &str,
        mut probe: impl FnMut(&Cluster, u32) -> Result<T, String>,
    ) -> anyhow::Result<Vec<(u32, T)>> {
        let result = wait_until(timeout, || {
            let mut seen = Seen::default();
            let mut values = Vec::new();
            for &pnn in on {
                match probe(self, pnn) {
                    Ok(v) => values.push((pnn, v)),
                    Err(e) => seen.0.push((pnn, e)),
                }
            }
            if seen.0.is_empty() {
                Ok(values)
            } else {
                Err(seen)
            }
        });
        result.map_err(|t| {
            anyhow!(
                "waited {:.1?} for {what} on nodes {on:?}; last seen:\n{}\n{}",
                t.waited,
                t.last_seen,
                self.logs()
            )
        })
    }

    /// Waits until `ctdb status` on every node of `on` satisfies `good`.
    pub fn wait_status(
        &self,
        on: &[u32],
        timeout: Duration,
        what: &str,
        good: impl Fn(&Status) -> bool,
    ) -> anyhow::Result<Vec<(u32, Status)>> {
        self.wait_on(on, timeout, what, |c, pnn| {
            let s = c.status(pnn)?;
            if good(&s) {
                Ok(s)
            } else {
                Err(format!("{s:#?}"))
            }
        })
    }

    /// Waits until `ctdb -X nodestatus all` on every node of `on` satisfies `good`.
    pub fn wait_nodestatus(
        &self,
        on: &[u32],
        timeout: Duration,
        what: &str,
        good: impl Fn(&[NodeRow]) -> bool,
    ) -> anyhow::Result<Vec<(u32, Vec<NodeRow>)>> {
        self.wait_on(on, timeout, what, |c, pnn| {
            let rows = c.nodestatus(pnn)?;
            if good(&rows) {
                Ok(rows)
            } else {
                Err(format!("{rows:#?}"))
            }
        })
    }

    /// Waits until `ctdb leader` on every node of `on` satisfies `good`.
    pub fn wait_leader(
        &self,
        on: &[u32],
        timeout: Duration,
        what: &str,
        good: impl Fn(Option<u32>) -> bool,
    ) -> anyhow::Result<Vec<(u32, Option<u32>)>> {
        self.wait_on(on, timeout, what, |c, pnn| {
            let leader = c.leader(pnn)?;
            if good(leader) {
                Ok(leader)
            } else {
                Err(format!("leader: {leader:?}"))
            }
        })
    }

    /// Waits until the nodes of `on` agree: each one's `ctdb status` shows every
    /// node of `ok` as `OK` and recovery mode `NORMAL (0)`, and all name the same
    /// leader (one of `ok`) and show the same valid generation.
    pub fn wait_agreement(
        &self,
        on: &[u32],
        ok: &[u32],
        timeout: Duration,
    ) -> anyhow::Result<Agreement> {
        let what = format!("nodes {ok:?} OK, one leader and one generation");
        let result = wait_until(timeout, || {
            let mut seen = Seen::default();
            let mut statuses = Vec::new();
            for &pnn in on {
                match self.status(pnn) {
                    Ok(s) => statuses.push((pnn, s)),
                    Err(e) => seen.0.push((pnn, e)),
                }
            }
            if !seen.0.is_empty() {
                return Err(seen);
            }
            let first = &statuses[0].1;
            let agreed = statuses.iter().all(|(_, s)| {
                s.all_ok(ok)
                    && s.recovery_mode == "NORMAL (0)"
                    && s.leader.is_some_and(|l| ok.contains(&l))
                    && s.leader == first.leader
                    && s.generation == first.generation
                    && s.generation != "INVALID"
            });
            if agreed {
                Ok(Agreement {
                    leader: first.leader.expect("checked above"),
                    generation: first.generation.clone(),
                    statuses,
                })
            } else {
                Err(Seen(
                    statuses
                        .into_iter()
                        .map(|(p, s)| (p, format!("{s:#?}")))
                        .collect(),
                ))
            }
        });
        result.map_err(|t| {
            anyhow!(
                "waited {:.1?} for {what} on nodes {on:?}; last seen:\n{}\n{}",
                t.waited,
                t.last_seen,
                self.logs()
            )
        })
    }

    /// Waits until node `pnn`'s daemon log contains `needle`; returns that line.
    pub fn wait_log(&self, pnn: u32, timeout: Duration, needle: &str) -> anyhow::Result<String> {
        let found = wait_until(timeout, || {
            let log = self.node(pnn).daemon_log();
            log.lines()
                .find(|l| l.contains(needle))
                .map(str::to_owned)
                .ok_or(())
        });
        match found {
            Ok(line) => Ok(line),
            Err(t) => bail!(
                "node {pnn}'s ctdbd never logged {needle:?} (waited {:.1?})\n{}",
                t.waited,
                self.logs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "\
Number of nodes:3
pnn:0 192.168.20.41    OK (THIS NODE)
pnn:1 192.168.20.42    DISABLED
pnn:2 192.168.20.43    DISCONNECTED|UNHEALTHY|INACTIVE
Generation:654321
Size:1
hash:0 lmaster:0
Recovery mode:NORMAL (0)
Leader:0
";
        let s = parse_status(text).unwrap();
        assert_eq!(s.flags(0), Some("OK"));
        assert_eq!(s.flags(1), Some("DISABLED"));
        assert_eq!(s.flags(2), Some("DISCONNECTED|UNHEALTHY|INACTIVE"));
        assert_eq!(s.generation, "654321");
        assert_eq!(s.vnn_map, [0]);
        assert_eq!(s.recovery_mode, "NORMAL (0)");
        assert_eq!(s.leader, Some(0));
        assert!(s.all_ok(&[0]) && !s.all_ok(&[0, 1]));
        let unknown = parse_status(&text.replace("Leader:0", "Leader:UNKNOWN")).unwrap();
        assert_eq!(unknown.leader, None);
    }

    #[test]
    fn parses_nodestatus() {
        let text = "\
|Node|IP|Disconnected|Unknown|Banned|Disabled|Unhealthy|Stopped|Inactive|PartiallyOnline|ThisNode|
|0|192.168.20.41|0|0|0|0|0|0|0|0|Y|
|1|192.168.20.42|1|0|0|0|1|0|1|0|N|
";
        let rows = parse_nodestatus(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].ok() && rows[0].this_node);
        assert!(rows[1].disconnected && rows[1].inactive && !rows[1].ok());
        assert!(parse_nodestatus("garbage\n").is_err());
    }

    #[test]
    fn parses_leader() {
        assert_eq!(parse_leader("2\n"), Ok(Some(2)));
        assert_eq!(parse_leader("UNKNOWN\n"), Ok(None));
        assert!(parse_leader("").is_err());
    }
}

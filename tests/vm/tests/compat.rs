//! Compatibility: Debian's stock `ctdb` 4.17 tool and ours print the same thing,
//! byte for byte, when driving the same daemon; and our extensions behave.
//!
//! The daemon is ours by default; `CTDB_RS_DAEMON=stock` runs the same suite
//! against the stock 4.17 daemon, which proves the expectations (STYLE §11).
//!
//! Topology (one sandbox; the `nodes` file lists three nodes, only the first
//! exists, so the other two are DISCONNECTED):
//!
//! ```text
//!   node 0 sandbox: priv0 192.168.20.41, pub0, ctdbd
//!   nodes file:     192.168.20.41  192.168.20.42 (absent)  192.168.20.43 (absent)
//!   public_addresses: 10.0.20.101/24 pub0, 10.0.20.102/24 pub0
//! ```

use std::time::Duration;

use vm::process::indent;
use vm::{Cluster, Daemon, Node, Output, Tool};

/// Cold start of the stock daemon to RUNNING takes about 22 s (leader broadcast
/// timeout, election, recovery, `RerecoveryTimeout`); allow for a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `ctdb shutdown` may take to make the daemon exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after RUNNING the node may take to become healthy and host its IPs
/// (the stock daemon's first monitor event comes within seconds).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One node present out of three in the `nodes` file, two public addresses.
fn one_of_three() -> anyhow::Result<Cluster> {
    Cluster::builder()
        .nodes(3)
        .present([0])
        .public_addresses(["10.0.20.101/24 pub0", "10.0.20.102/24 pub0"])
        .build()
}

/// Starts the daemon in node 0 and waits until it has settled: RUNNING, then node
/// 0 healthy (the stock daemon is UNHEALTHY until its first monitor event, a few
/// seconds after RUNNING) and, if `ips`, every public address assigned (4.17 hosts
/// them all on the only healthy node). Outputs compared before that could change
/// between the two tools' runs. Not reaching RUNNING is fatal; not settling is returned as
/// failures, so the other checks still run and report.
fn start_and_settle(node: &mut Node, daemon: Daemon, ips: bool) -> anyhow::Result<Vec<String>> {
    node.start_daemon(daemon)?;
    node.wait_runstate("RUNNING", START_TIMEOUT)?;
    let mut failures = Vec::new();
    let healthy = node.wait_ctdb(&["nodestatus"], SETTLE_TIMEOUT, |out| {
        out.success() && out.stdout.contains(" OK (THIS NODE)")
    });
    if let Err(e) = healthy {
        failures.push(format!("node 0 never became healthy: {e:#}\n"));
    }
    if ips {
        let hosted = node.wait_ctdb(&["ip"], SETTLE_TIMEOUT, |out| {
            out.success() && !out.stdout.contains(" -1\n")
        });
        if let Err(e) = hosted {
            failures.push(format!(
                "the public addresses were never all assigned: {e:#}\n"
            ));
        }
    }
    Ok(failures)
}

/// A text transformation hiding what legitimately differs between two runs.
type Mask = fn(&str) -> String;

fn exact(text: &str) -> String {
    text.to_owned()
}

/// Replaces what lies between `open` and the following `close` with `*`.
fn blank_between(line: &str, open: &str, close: &str) -> String {
    let Some(start) = line.find(open).map(|i| i + open.len()) else {
        return line.to_owned();
    };
    let Some(len) = line[start..].find(close) else {
        return line.to_owned();
    };
    format!("{}*{}", &line[..start], &line[start + len..])
}

fn map_lines(text: &str, mut f: impl FnMut(&str) -> String) -> String {
    text.split_inclusive('\n')
        .map(|l| match l.strip_suffix('\n') {
            Some(body) => format!("{}\n", f(body)),
            None => f(l),
        })
        .collect()
}

/// `response from 0 time=0.000035 sec  (2 clients)`: the time and client count.
fn mask_ping(text: &str) -> String {
    map_lines(text, |l| {
        blank_between(&blank_between(l, "time=", " sec"), "(", " client")
    })
}

/// `uptime`: the current time, and the durations in parentheses.
fn mask_uptime(text: &str) -> String {
    map_lines(text, |l| {
        if l.starts_with("Current time of node") {
            blank_between(l, ":", "\u{0}")
                .split_once(':')
                .map(|(k, _)| format!("{k}: *"))
                .unwrap_or_else(|| l.to_owned())
        } else {
            blank_between(l, "(", ")")
        }
    })
}

/// Counters of `statistics` that move whenever any client talks to the daemon.
const MOVING_COUNTERS: [&str; 11] = [
    "num_clients",
    "client_packets_sent",
    "client_packets_recv",
    "node_packets_sent",
    "node_packets_recv",
    "keepalive_packets_sent",
    "keepalive_packets_recv",
    "req_message",
    "req_control",
    "reply_control",
    "memory_used",
];

/// `statistics`: the current time, the elapsed time, and the moving counters.
fn mask_statistics(text: &str) -> String {
    map_lines(text, |l| {
        let name = l.split_whitespace().next().unwrap_or("");
        if l.starts_with("Current time of statistics") {
            format!("{}: *", l.split_once(':').map_or(l, |(k, _)| k))
        } else if l.starts_with("Statistics collected since") {
            blank_between(l, "(", ")")
        } else if MOVING_COUNTERS.contains(&name) {
            let indent = &l[..l.len() - l.trim_start().len()];
            format!("{indent}{name} *")
        } else {
            l.to_owned()
        }
    })
}

/// `-X statistics`: the same fields, found by their column names.
fn mask_statistics_machine(text: &str) -> String {
    let mut lines = text.split_inclusive('\n');
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        return text.to_owned();
    };
    let names: Vec<&str> = header.trim_end_matches('\n').split('|').collect();
    let masked: Vec<String> = values
        .trim_end_matches('\n')
        .split('|')
        .enumerate()
        .map(|(i, v)| {
            let name = names.get(i).copied().unwrap_or("");
            let leaf = name.rsplit('.').next().unwrap_or(name);
            if name == "Current time of statistics" || MOVING_COUNTERS.contains(&leaf) {
                "*".to_owned()
            } else {
                v.to_owned()
            }
        })
        .collect();
    let rest: String = lines.collect();
    format!("{header}{}\n{rest}", masked.join("|"))
}

/// A wrong command line's usage: 4.17's layout, but the one-line summary after the
/// arguments column (which starts at byte 47) is in our own words (README, "The
/// ctdb tool"), so it is blanked; the options, the command and its arguments stay.
fn mask_usage_summary(text: &str) -> String {
    let mut in_commands = false;
    map_lines(text, |l| {
        if l == "Commands:" {
            in_commands = true;
            return l.to_owned();
        }
        match (in_commands, l.get(..47)) {
            (true, Some(head)) if l.starts_with("  ") => format!("{head}*"),
            _ => l.to_owned(),
        }
    })
}

/// `dumpmemory`, `rddumpmemory`: the stock daemon prints a talloc report of its C
/// heap, whose sizes, pointers and client entries change with every call, so only
/// its first words are kept; ours prints a summary of its tables, compared whole.
fn mask_talloc_report(text: &str) -> String {
    if text.starts_with("full talloc report on ") {
        "full talloc report on *\n".to_owned()
    } else {
        text.to_owned()
    }
}

/// `stats`: each block is one interval of the history, which moves on every
/// second, so both its times are blanked (not only the durations), and the moving
/// counters as in `statistics`.
fn mask_stats(text: &str) -> String {
    map_lines(&mask_statistics(text), |l| {
        if l.starts_with("Statistics collected since") {
            format!("{}: *", l.split_once(':').map_or(l, |(k, _)| k))
        } else {
            l.to_owned()
        }
    })
}

/// `-X stats`: every value line masked like `-X statistics`', and the interval's
/// start time too (see [`mask_stats`]).
fn mask_stats_machine(text: &str) -> String {
    let mut lines = text.split_inclusive('\n');
    let Some(header) = lines.next() else {
        return text.to_owned();
    };
    let names: Vec<&str> = header.trim_end_matches('\n').split('|').collect();
    let mut out = header.to_owned();
    for values in lines {
        let masked: Vec<String> = values
            .trim_end_matches('\n')
            .split('|')
            .enumerate()
            .map(|(i, v)| {
                let name = names.get(i).copied().unwrap_or("");
                let leaf = name.rsplit('.').next().unwrap_or(name);
                if name.starts_with("Current time")
                    || name.starts_with("Statistics collected")
                    || MOVING_COUNTERS.contains(&leaf)
                {
                    "*".to_owned()
                } else {
                    v.to_owned()
                }
            })
            .collect();
        out.push_str(&masked.join("|"));
        out.push('\n');
    }
    out
}

/// Compares the two tools' outputs after masking; `None` when equal.
fn difference(stock: &Output, ours: &Output, mask: Mask) -> Option<String> {
    let same = stock.code == ours.code
        && mask(&stock.stdout) == mask(&ours.stdout)
        && mask(&stock.stderr) == mask(&ours.stderr);
    (!same).then(|| {
        let mut what = Vec::new();
        if stock.code != ours.code {
            what.push("exit code");
        }
        if mask(&stock.stdout) != mask(&ours.stdout) {
            what.push("stdout");
        }
        if mask(&stock.stderr) != mask(&ours.stderr) {
            what.push("stderr");
        }
        format!(
            "`ctdb {}` differs in {}\n--- stock:\n{stock}\n--- ours:\n{ours}\n",
            args_of(stock),
            what.join(", ")
        )
    })
}

/// The tool's arguments (after the `nsenter ... --  /path/ctdb` prefix).
fn args_of(output: &Output) -> String {
    let after = output
        .argv
        .iter()
        .position(|a| a.ends_with("/ctdb"))
        .map_or(0, |i| i + 1);
    output.argv[after..].join(" ")
}

/// Scenario: every command of the list, stock tool vs ours, against one daemon.
///
/// Given a daemon in a sandbox whose `nodes` file lists 3 nodes (only node 0
///   present) and whose `public_addresses` lists 2 addresses,
/// When it reports RUNNING and has settled (healthy, IPs assigned), and each command is run by the stock `ctdb` and then
///   by ours,
/// Then both print the same stdout and stderr and exit alike (times, durations,
///   moving counters and client counts masked);
/// And finally `ctdb shutdown` by either tool stops the daemon the same way, and
///   removes its pid file.
#[test]
fn stock_tool_and_ours_print_the_same() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    let mut cluster = one_of_three()?;
    let node = cluster.node_mut(0);
    // Both daemons assign their public addresses a moment after RUNNING, which
    // changes `ctdb ip`: wait for that before comparing.
    let mut failures = start_and_settle(node, daemon, true)?;
    let pid = node.daemon()?.process.pid().to_string();

    let rows: Vec<(Vec<&str>, Mask)> = vec![
        (vec!["status"], exact),
        (vec!["-X", "status"], exact),
        (vec!["nodestatus"], exact),
        (vec!["nodestatus", "all"], exact),
        (vec!["-X", "nodestatus", "all"], exact),
        (vec!["pnn"], exact),
        (vec!["listnodes"], exact),
        (vec!["-X", "listnodes"], exact),
        (vec!["ping"], mask_ping),
        (vec!["uptime"], mask_uptime),
        (vec!["getpid"], exact),
        (vec!["runstate"], exact),
        (vec!["runstate", "RUNNING"], exact),
        (vec!["runstate", "STARTUP"], exact),
        (vec!["getcapabilities"], exact),
        (vec!["-X", "getcapabilities"], exact),
        (vec!["leader"], exact),
        (vec!["listvars"], exact),
        (vec!["getvar", "EnableBans"], exact),
        (vec!["getvar", "enablebans"], exact),
        (vec!["getvar", "NoSuchVar"], exact),
        (vec!["setvar", "RecoverInterval", "2"], exact),
        (vec!["getvar", "RecoverInterval"], exact),
        (vec!["setvar", "DeterministicIPs", "1"], exact),
        (vec!["ip"], exact),
        (vec!["ip", "all"], exact),
        (vec!["-v", "ip"], exact),
        (vec!["-X", "ip"], exact),
        (vec!["-X", "-v", "ip", "all"], exact),
        (vec!["-Y", "-x", ",", "ip"], exact),
        (vec!["ifaces"], exact),
        (vec!["-X", "ifaces"], exact),
        (vec!["statistics"], mask_statistics),
        (vec!["-X", "statistics"], mask_statistics_machine),
        (vec!["getdebug"], exact),
        (vec!["setdebug", "INFO"], exact),
        (vec!["getdebug"], exact),
        (vec!["setdebug", "bogus"], exact),
        (vec!["process-exists", &pid], exact),
        (vec!["process-exists", "999999"], exact),
        (vec!["-n", "1", "ping"], mask_ping),
        (vec!["-n", "7", "ping"], mask_ping),
        // The administrative commands of 4.17 that are not about databases.
        (vec!["getreclock"], exact),
        (vec!["getreclock", "x"], mask_usage_summary),
        (vec!["statisticsreset"], exact),
        (vec!["statisticsreset", "x"], mask_usage_summary),
        (vec!["statistics"], mask_statistics),
        (vec!["stats", "2"], mask_stats),
        (vec!["-X", "stats", "1"], mask_stats_machine),
        (vec!["stats", "1", "2"], mask_usage_summary),
        (vec!["ipreallocate"], exact),
        (vec!["sync"], exact),
        (vec!["ipreallocate", "x"], mask_usage_summary),
        (vec!["gratarp", "10.0.20.101", "pub0"], exact),
        (vec!["gratarp", "bogus", "pub0"], exact),
        (vec!["gratarp", "10.0.20.101"], mask_usage_summary),
        // To this node's private address: routed with either daemon (the stock one
        // configures no public address without event scripts).
        (
            vec!["tickle", "192.168.20.41:445", "192.168.20.77:40000"],
            exact,
        ),
        // Unroutable here: both tools fail alike.
        (vec!["tickle", "10.99.0.1:445", "10.99.0.2:40000"], exact),
        (vec!["tickle"], exact),
        (vec!["tickle", "bogus", "10.0.20.77:40000"], exact),
        (vec!["tickle", "10.0.20.101:445"], mask_usage_summary),
        (vec!["-n", "0", "tickle"], exact),
        (vec!["setlmasterrole", "on"], exact),
        (vec!["setleaderrole", "on"], exact),
        (vec!["setleaderrole", "maybe"], mask_usage_summary),
        (vec!["setlmasterrole"], mask_usage_summary),
        (vec!["getcapabilities"], exact),
        (vec!["dumpmemory"], mask_talloc_report),
        (vec!["rddumpmemory"], mask_talloc_report),
        (vec!["recover"], exact),
        (vec!["recover", "now"], mask_usage_summary),
        (vec!["status"], exact),
        (vec!["ip"], exact),
    ];
    for (args, mask) in &rows {
        let stock = node.ctdb(Tool::Stock, args)?;
        let ours = node.ctdb(Tool::Ours, args)?;
        if let Some(diff) = difference(&stock, &ours, *mask) {
            failures.push(diff);
        }
    }

    // The comparison above would pass on an empty history: the daemon has run for
    // seconds, so `stats 2` must print three intervals (indices 0 to 2).
    let stats = node.ctdb(Tool::Ours, &["stats", "2"])?;
    let blocks = stats.stdout.matches("CTDB version").count();
    if !(stats.success() && blocks == 3) {
        failures.push(format!(
            "`ctdb stats 2` should print 3 intervals, printed {blocks}:\n{stats}"
        ));
    }

    // `shutdown` ends the daemon, so each tool gets a daemon of its own, one after
    // the other in the same sandbox.
    let mut shutdowns = Vec::new();
    for tool in [Tool::Stock, Tool::Ours] {
        if tool == Tool::Ours {
            // Settling problems were reported after the first start.
            let _ = start_and_settle(node, daemon, false)?;
        }
        let out = node.ctdb(tool, &["shutdown"])?;
        let pid_file = node.path("/run/ctdb/ctdbd.pid");
        match node.daemon()?.process.wait_exit(EXIT_TIMEOUT) {
            Err(e) => failures.push(format!(
                "`ctdb shutdown` by the {tool:?} tool did not stop the daemon: {e:#}\n{out}\n"
            )),
            Ok(_) if pid_file.exists() => failures.push(format!(
                "after `ctdb shutdown` by the {tool:?} tool the daemon exited but left {}\n",
                pid_file.display()
            )),
            Ok(_) => {}
        }
        shutdowns.push(out);
    }
    if let Some(diff) = difference(&shutdowns[0], &shutdowns[1], exact) {
        failures.push(diff);
    }

    assert!(
        failures.is_empty(),
        "{} failures in {} checks against the {daemon:?} daemon:\n\n{}",
        failures.len(),
        rows.len() + 5,
        failures.join("\n")
    );
    Ok(())
}

/// Scenario: our tool's own commands and extensions.
///
/// Given the same sandbox (node 0 of 3 present) with its daemon RUNNING,
/// When our tool runs `version`, `ping -n all`, `-n 0,1 ping` and `--json status`,
/// Then `version` prints our version; `ping -n all` answers once per connected
///   node; a list naming a disconnected node is refused the way the stock tool
///   refuses that node alone; and `--json status` is one JSON document with the
///   node map, generation, recovery mode and leader.
#[test]
fn our_tool_extensions() -> anyhow::Result<()> {
    let daemon = Daemon::from_env()?;
    let mut cluster = one_of_three()?;
    let node = cluster.node_mut(0);
    // Public addresses play no part in these checks.
    let mut failures = start_and_settle(node, daemon, false)?;

    let version = node.ctdb(Tool::Ours, &["version"])?;
    let ours = env!("CARGO_PKG_VERSION");
    if !(version.success() && version.stdout.contains(ours) && version.stderr.is_empty()) {
        failures.push(format!("`ctdb version` should print {ours}:\n{version}"));
    }

    let all = node.ctdb(Tool::Ours, &["ping", "-n", "all"])?;
    let lines: Vec<&str> = all.stdout.lines().collect();
    if !(all.success()
        && lines.len() == 1
        && lines[0].starts_with("response from 0 time=")
        && all.stderr.is_empty())
    {
        failures.push(format!(
            "`ctdb ping -n all` should answer once, from node 0 (the only connected node):\n{all}"
        ));
    }

    let list = node.ctdb(Tool::Ours, &["-n", "0,1", "ping"])?;
    let single = node.ctdb(Tool::Stock, &["-n", "1", "ping"])?;
    if list.code != single.code || list.stdout != single.stdout || list.stderr != single.stderr {
        failures.push(format!(
            "`ctdb -n 0,1 ping` should be refused like the stock `ctdb -n 1 ping`\n--- stock -n 1:\n{single}\n--- ours -n 0,1:\n{list}"
        ));
    }

    let json = node.ctdb(Tool::Ours, &["--json", "status"])?;
    if let Err(why) = check_json_status(&json) {
        failures.push(format!("`ctdb --json status`: {why}\n{json}"));
    }

    assert!(
        failures.is_empty(),
        "{} failures in the extension checks against the {daemon:?} daemon:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

/// The fields a `--json status` document must carry for this sandbox
/// (README.md, "JSON output", `status`).
fn check_json_status(out: &Output) -> Result<(), String> {
    if !out.success() {
        return Err("exit code is not 0".into());
    }
    let doc: serde_json::Value =
        serde_json::from_str(&out.stdout).map_err(|e| format!("not JSON: {e}"))?;
    let field = |path: &str| doc.pointer(path).cloned().unwrap_or_default();
    let expect = |path: &str, want: serde_json::Value| {
        let got = field(path);
        if got == want {
            Ok(())
        } else {
            Err(format!("{path} is {got}, expected {want}"))
        }
    };
    use serde_json::json;
    expect("/num_nodes", json!(3))?;
    expect("/num_deleted", json!(0))?;
    expect("/recovery_mode", json!(0))?;
    expect("/leader", json!(0))?;
    expect("/vnn_map/lmasters", json!([0]))?;
    if !field("/vnn_map/generation").is_u64() {
        return Err("/vnn_map/generation is not an integer".into());
    }
    expect("/nodes/0/pnn", json!(0))?;
    expect("/nodes/0/address", json!("192.168.20.41"))?;
    expect("/nodes/0/flags", json!(0))?;
    expect("/nodes/0/flag_names", json!(["OK"]))?;
    expect("/nodes/0/this_node", json!(true))?;
    for pnn in [1, 2] {
        expect(&format!("/nodes/{pnn}/pnn"), json!(pnn))?;
        expect(
            &format!("/nodes/{pnn}/flag_names"),
            json!(["DISCONNECTED", "UNHEALTHY", "INACTIVE"]),
        )?;
        expect(&format!("/nodes/{pnn}/this_node"), json!(false))?;
    }
    Ok(())
}

#[test]
fn masks_hide_only_what_moves() {
    assert_eq!(
        mask_ping("response from 0 time=0.000035 sec  (2 clients)\n"),
        "response from 0 time=* sec  (* clients)\n"
    );
    assert_eq!(
        mask_uptime("Current time of node 0        :                Sat Nov 21 06:52:15 2026\nCtdbd start time              : (000 00:00:27) Sat Nov 21 06:51:48 2026\n"),
        "Current time of node 0        : *\nCtdbd start time              : (*) Sat Nov 21 06:51:48 2026\n"
    );
    assert_eq!(
        mask_statistics(" num_clients                        2\n     req_control                  630\n num_recoveries                     1\n"),
        " num_clients *\n     req_control *\n num_recoveries                     1\n"
    );
    assert_eq!(
        mask_statistics_machine("CTDB version|num_clients|frozen|node.req_control|\n1|2|0|633|\n"),
        "CTDB version|num_clients|frozen|node.req_control|\n1|*|0|*|\n"
    );
    assert_eq!(
        mask_usage_summary("Usage: [-?YXv]\n\nCommands:\n  getreclock                                   get recovery lock file\n"),
        "Usage: [-?YXv]\n\nCommands:\n  getreclock                                   *\n"
    );
    assert_eq!(
        mask_stats("Statistics collected since  : (000 00:00:01) Sat Nov 21 06:51:48 2026\n num_recoveries                     1\n"),
        "Statistics collected since  : *\n num_recoveries                     1\n"
    );
    assert_eq!(
        mask_stats_machine(
            "CTDB version|Statistics collected since|num_clients|frozen|\n1|17|2|0|\n1|16|1|0|\n"
        ),
        "CTDB version|Statistics collected since|num_clients|frozen|\n1|*|*|0|\n1|*|*|0|\n"
    );
    assert_eq!(
        mask_talloc_report("full talloc report on 'null_context' (total 8 bytes)\n  x\n"),
        "full talloc report on *\n"
    );
    assert_eq!(mask_talloc_report("ctdb-rs daemon\n"), "ctdb-rs daemon\n");
    let _ = indent("");
}

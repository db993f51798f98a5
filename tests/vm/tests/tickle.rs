//! The tickle reset fallback (`TickleResetFallback`, `ctdbd/src/netif/tickle.rs`):
//! when this node's kernel's reset never reaches a tickled client, the daemon
//! resets the client itself.
//!
//! A tickle ACK draws an ACK from the client; normally the taking node's kernel,
//! which has no such connection, answers it with a RST (RFC 9293 §3.10.7.1: since
//! the client's segment has ACK set, a plain RST with sequence number = its
//! acknowledgment number, no ACK flag). Here a firewall rule in the taking node
//! drops exactly those: outgoing segments from the service port with RST set and
//! ACK clear. The daemon's own reset carries RST and ACK, so the rule lets it
//! through (both go through the output hook: the kernel's from its control socket,
//! ours from an `IPPROTO_RAW` socket). Counters on both rules show what happened.
//!
//! Topology (as `public_ips.rs`):
//!
//! ```text
//!            fabric netns: bridge priv (192.168.20.0/24)      bridge pub (10.0.20.0/24)
//!   node 0 .41 priv0  node 1 .42 priv0  node 2 .43 priv0   pub0 ×3, client .200 eth0
//!   public_addresses: 10.0.20.101/24, .102, .103 on pub0; a service on TCP 4445 in
//!   each node answering "node<pnn>"
//!   in each survivor's netns, table inet ctdbrs_tickle, chain out (hook output):
//!     oifname pub0 tcp sport 4445 tcp flags & (rst|ack) == rst      counter drop
//!     oifname pub0 tcp sport 4445 tcp flags & (rst|ack) == rst|ack  counter accept
//! ```
//!
//! Waits poll a condition up to a deadline; the one fixed stretch is the
//! measurement window in which the client must (or, without the fallback, must not)
//! be reset. The rules live in the nodes' namespaces and go with them.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use ctdbd::protocol::control::Connection;
use vm::cluster::CLIENT_ADDR;
use vm::process::Background;
use vm::public::register_connection;
use vm::public::{
    default_public, open, power_off_machine, start_services, wait_placed, SERVICE_PORT,
};
use vm::watch::Watcher;
use vm::{wait_until, Cluster, Daemon, Tool};

/// Cold start to RUNNING.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Elections, recoveries and takeover runs after a fault.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// One client connection: connect and read the answer.
const ATTEMPT: Duration = Duration::from_secs(3);
/// How soon after the address is back the client must be reset (the fallback
/// resets on the client's second answer, drawn by the tickle 800 ms in), and how
/// long the control run watches it not being reset.
const RESET_WINDOW: Duration = Duration::from_secs(3);

const ALL: [u32; 3] = [0, 1, 2];
const TABLE: &str = "ctdbrs_tickle";
/// Comments naming the two counting rules.
const KERNEL_RST: &str = "kernel-rst";
const OUR_RST: &str = "rst-ack";
/// The daemon's log message for a fallback reset.
const FALLBACK_LOG: &str = "tickle reset fallback";

/// What one run of the scenario saw.
struct Outcome {
    /// The node that took the address.
    taker: u32,
    /// The connection.
    server: SocketAddr,
    client: SocketAddr,
    /// The blocked read's result, and when it returned after the address was back.
    read: std::io::Result<usize>,
    after_back: Duration,
    /// The taker's rule counters: the kernel's RSTs dropped, RST|ACKs let through.
    kernel_rsts: u64,
    our_rsts: u64,
    /// The taker's daemon log.
    taker_log: String,
}

/// The client's blocked read on its own thread. Dropping it shuts the socket down,
/// which ends the read, and joins the thread: nothing outlives the scenario.
struct BlockedRead {
    stream: TcpStream,
    done: mpsc::Receiver<(Instant, std::io::Result<usize>)>,
    thread: Option<JoinHandle<()>>,
}

impl BlockedRead {
    fn start(stream: TcpStream) -> anyhow::Result<Self> {
        let handle = stream.try_clone()?;
        stream.set_read_timeout(None)?;
        let (tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut stream = stream;
            let mut buf = [0u8; 64];
            let result = stream.read(&mut buf);
            let _ = tx.send((Instant::now(), result));
        });
        Ok(Self {
            stream: handle,
            done,
            thread: Some(thread),
        })
    }

    /// The read's result if it returns before `deadline`; else the read is ended
    /// by shutting the socket down for reading, and `None` is returned.
    fn until(&mut self, deadline: Instant) -> Option<(Instant, std::io::Result<usize>)> {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(wait) {
            Ok(result) => Some(result),
            Err(_) => {
                let _ = self.stream.shutdown(Shutdown::Read);
                None
            }
        }
    }
}

impl Drop for BlockedRead {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Installs the RST rules of the module docs in node `pnn`'s namespace.
fn drop_kernel_resets(cluster: &Cluster, pnn: u32) -> anyhow::Result<()> {
    let node = cluster.node(pnn);
    let chain = "{ type filter hook output priority 0; policy accept; }";
    let match_service = format!("oifname \"pub0\" tcp sport {SERVICE_PORT}");
    let commands: [Vec<String>; 4] = [
        vec!["add".into(), "table".into(), "inet".into(), TABLE.into()],
        vec![
            "add".into(),
            "chain".into(),
            "inet".into(),
            TABLE.into(),
            "out".into(),
            chain.into(),
        ],
        vec![format!(
            "add rule inet {TABLE} out {match_service} tcp flags & (rst | ack) == rst \
             counter drop comment \"{KERNEL_RST}\""
        )],
        vec![format!(
            "add rule inet {TABLE} out {match_service} tcp flags & (rst | ack) == rst | ack \
             counter accept comment \"{OUR_RST}\""
        )],
    ];
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = node.run("nft", &args)?;
        ensure!(out.success(), "node {pnn}: nft {}:\n{out}", args.join(" "));
    }
    Ok(())
}

/// The packet counters of the two rules in node `pnn`: (kernel RSTs dropped,
/// RST|ACKs let through).
fn reset_counters(cluster: &Cluster, pnn: u32) -> anyhow::Result<(u64, u64)> {
    let out = cluster
        .node(pnn)
        .run("nft", &["-j", "list", "chain", "inet", TABLE, "out"])?;
    ensure!(out.success(), "node {pnn}: nft list:\n{out}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .with_context(|| format!("node {pnn}: nft -j output:\n{}", out.stdout))?;
    let count = |comment: &str| -> anyhow::Result<u64> {
        let rules = json["nftables"].as_array().context("no nftables array")?;
        let rule = rules
            .iter()
            .filter_map(|item| item.get("rule"))
            .find(|rule| rule["comment"] == comment)
            .with_context(|| format!("no rule {comment:?} in {}", out.stdout))?;
        rule["expr"]
            .as_array()
            .and_then(|exprs| exprs.iter().find_map(|e| e["counter"]["packets"].as_u64()))
            .with_context(|| format!("no counter in rule {comment:?}"))
    };
    Ok((count(KERNEL_RST)?, count(OUR_RST)?))
}

/// The scenario, with the fallback on or off:
///
/// Given three nodes with a service each, and an idle connection from the client to
///   address A's service on its host h (a follower), registered with h's daemon by
///   TCP_CLIENT (as smbd does) and copied to the others (`ctdb gettickles` on both
///   survivors lists it), and the RST rules in both survivors,
/// When h loses power (links cut, daemon killed: the client gets no FIN) and a
///   survivor takes A,
/// Then the client's blocked read ends, or not, within [`RESET_WINDOW`] of A being
///   back; the taker's counters and log say why.
fn scenario(fallback: bool) -> anyhow::Result<Outcome> {
    let tunables = if fallback {
        ""
    } else {
        "TickleResetFallback=0\n"
    };
    let mut cluster = Cluster::builder()
        .nodes(3)
        .shared_volume(true)
        .client(true)
        .tunables(tunables)
        .build()?;
    let _services: Vec<Background> = start_services(&cluster)?;
    let watcher = Watcher::start(&cluster, [])?;
    cluster.start(Daemon::Ours, START_TIMEOUT)?;
    let leader = cluster.wait_agreement(&ALL, &ALL, CONVERGE_TIMEOUT)?.leader;
    let addrs: Vec<Ipv4Addr> = ALL.iter().map(|&i| default_public(i)).collect();
    let placement = wait_placed(&cluster, &ALL, &addrs, &ALL, CONVERGE_TIMEOUT)?;
    let h = (leader + 1) % 3;
    let survivors: Vec<u32> = ALL.into_iter().filter(|&p| p != h).collect();
    let addr = *placement
        .iter()
        .find(|(_, &p)| p == h)
        .ok_or_else(|| anyhow!("node {h} hosts nothing: {placement:?}"))?
        .0;
    for &pnn in &survivors {
        let var = cluster
            .ctdb_ok(pnn, Tool::Stock, &["getvar", "TickleResetFallback"])
            .map_err(|e| anyhow!(e))?;
        let words: Vec<&str> = var.stdout.split_whitespace().collect();
        let want = u8::from(fallback).to_string();
        ensure!(
            words == ["TickleResetFallback", "=", want.as_str()],
            "node {pnn}: {}",
            var.stdout
        );
    }

    let client_ns = cluster.client().context("built with a client")?;
    let (stream, answer) = open(client_ns, addr, ATTEMPT)?;
    ensure!(answer == format!("node{h}"), "answered by {answer}");
    let client = stream.local_addr()?;
    let server = SocketAddr::from((addr, SERVICE_PORT));
    ensure!(
        client.ip() == IpAddr::V4(CLIENT_ADDR),
        "client address {client}"
    );
    let _registration = register_connection(
        &cluster,
        h,
        Connection {
            src: client,
            dst: server,
        },
    )?;
    let src = client.to_string();
    for &pnn in &survivors {
        cluster.node_mut(pnn).wait_ctdb(
            &["gettickles", &addr.to_string()],
            CONVERGE_TIMEOUT,
            |out| out.success() && out.stdout.contains(&src),
        )?;
        drop_kernel_resets(&cluster, pnn)?;
    }
    let mut read = BlockedRead::start(stream)?;

    watcher.set_live(h, false);
    power_off_machine(&mut cluster, h)?;
    // Measured, not awaited: the moment A is back (to a poll interval).
    let taker = wait_until(CONVERGE_TIMEOUT, || {
        match watcher.hosts(addr).into_iter().next() {
            Some(pnn) => Ok(pnn),
            None => Err(watcher.snapshot()),
        }
    })
    .map_err(|t| anyhow!("{addr} never came back: {t}\n{}", cluster.logs()))?;
    let back = Instant::now();
    ensure!(survivors.contains(&taker), "{addr} back on node {taker}");

    let (returned, result) = match read.until(back + RESET_WINDOW) {
        Some((at, result)) => (at, result),
        None => (
            Instant::now(),
            Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "still blocked when the window closed",
            )),
        ),
    };
    // Before the socket is closed: its FIN would draw one more kernel RST.
    let (kernel_rsts, our_rsts) = reset_counters(&cluster, taker)?;
    drop(read);
    let report = watcher.stop();
    eprintln!("==== tickle, fallback {fallback} ====\n{report}");
    let taker_log = cluster.node(taker).daemon_log();
    for line in taker_log.lines().filter(|l| l.contains("tickle")) {
        eprintln!("  node {taker}: {line}");
    }
    let after_back = returned.saturating_duration_since(back);
    eprintln!(
        "tickle, fallback {fallback}: {client} -> {server} taken by node {taker}; read \
         {result:?} {after_back:.3?} after the address was back; the taker dropped \
         {kernel_rsts} kernel RST(s) and let {our_rsts} RST|ACK(s) out"
    );
    Ok(Outcome {
        taker,
        server,
        client,
        read: result,
        after_back,
        kernel_rsts,
        our_rsts,
        taker_log,
    })
}

/// Scenario: the fallback resets the client where the taker's kernel reset is
/// dropped.
///
/// Given the scenario's set-up with `TickleResetFallback` at its default (1),
/// When h loses power and a survivor takes A,
/// Then the client's blocked read fails with ECONNRESET within [`RESET_WINDOW`] of A
///   being back; the taker dropped at least one kernel RST (the client answered the
///   tickle and the kernel's reset never left) and let at least one RST|ACK out (our
///   reset), and logged the fallback reset with both ends.
#[test]
fn tickle_reset_fallback_resets_a_client_whose_kernel_reset_is_dropped() -> anyhow::Result<()> {
    let o = scenario(true)?;
    match &o.read {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => bail!(
            "the client's read gave {other:?} {:.3?} after the address was back, not a reset\n\
             ---- node {} log ----\n{}",
            o.after_back,
            o.taker,
            o.taker_log
        ),
    }
    ensure!(
        o.after_back <= RESET_WINDOW,
        "reset {:?} after the address was back",
        o.after_back
    );
    ensure!(
        o.kernel_rsts >= 1,
        "no kernel RST was dropped: the reset may have been the kernel's"
    );
    ensure!(o.our_rsts >= 1, "no RST|ACK left node {}", o.taker);
    let logged = o.taker_log.lines().any(|l| {
        l.contains(FALLBACK_LOG)
            && l.contains(&format!("server={}", o.server))
            && l.contains(&format!("client={}", o.client))
    });
    ensure!(
        logged,
        "node {} did not log the fallback reset with both ends:\n{}",
        o.taker,
        o.taker_log
    );
    Ok(())
}

/// Scenario (control): without the fallback, the same dropped kernel reset leaves
/// the client hanging, so the reset above is the fallback's doing.
///
/// Given the scenario's set-up with `TickleResetFallback=0` in `ctdb.tunables`,
/// When h loses power and a survivor takes A,
/// Then the client's read is still blocked when [`RESET_WINDOW`] after A is back
///   runs out; the taker dropped at least one kernel RST (the tickle drew the
///   client's answer), let no RST|ACK out, and logged no fallback reset.
#[test]
fn without_the_fallback_a_dropped_kernel_reset_leaves_the_client_hanging() -> anyhow::Result<()> {
    let o = scenario(false)?;
    match &o.read {
        Err(e) if e.kind() == ErrorKind::TimedOut => {}
        other => bail!(
            "without the fallback the client's read gave {other:?} {:.3?} after the address \
             was back; the rule should have kept every reset from it",
            o.after_back
        ),
    }
    ensure!(
        o.kernel_rsts >= 1,
        "no kernel RST was dropped: the tickle drew no answer, so this run proves nothing"
    );
    ensure!(
        o.our_rsts == 0,
        "{} RST|ACK(s) left node {}",
        o.our_rsts,
        o.taker
    );
    ensure!(
        !o.taker_log.contains(FALLBACK_LOG),
        "node {} logged a fallback reset with the fallback off",
        o.taker
    );
    Ok(())
}

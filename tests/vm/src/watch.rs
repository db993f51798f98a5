//! The public-address watcher: a background thread that lists every node's `pub0`
//! addresses as fast as it sensibly can and records the two things DESIGN.md
//! ("Safety") forbids or bounds:
//!
//! - a **duplicate**: one address configured on two live nodes in the same round;
//! - an **absence**: an address the scenario expects to be served configured on no
//!   live node, with the length of each such stretch (a stretch longer than the
//!   scenario's takeover window is a violation).
//!
//! ```text
//!   watcher thread (test process)
//!     netlink socket opened inside node 0's netns ──RTM_GETADDR dump──> pub0 addrs
//!     netlink socket opened inside node 1's netns ──RTM_GETADDR dump──> pub0 addrs
//!     ...                    one round = one dump per live node, then a short pause
//! ```
//!
//! Each node's socket is created once, from a thread that has entered that node's
//! network namespace (`setns`): a socket stays in the namespace it was made in, so
//! one thread can then dump every node with no process started per round (an
//! `ip -o addr show dev pub0` through `nsenter` costs milliseconds; a dump costs
//! tens of microseconds). A node the scenario has powered off is not live
//! ([`Watcher::set_live`]): its addresses do not count, as a switched-off machine's
//! do not.
//!
//! "Expected" addresses are those some node can host: the scenario names them
//! ([`Watcher::expect`]) once they have first been placed and withdraws one
//! ([`Watcher::unexpect`]) before it removes it from the cluster. Duplicates are
//! checked for every address seen, expected or not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::net::if_::if_nametoindex;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::{TimeVal, TimeValLike as _};

use crate::cluster::Cluster;

/// Pause between two rounds. Not a wait for a condition: the watcher's sampling
/// period, short against any takeover (hundreds of ms) and long enough to leave the
/// two cores to the daemons.
pub const ROUND_PAUSE: Duration = Duration::from_millis(2);

/// The public interface every node's addresses are listed on.
pub const PUBLIC_IFACE: &str = "pub0";

/// One address on two or more live nodes, over consecutive rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// The address.
    pub addr: Ipv4Addr,
    /// Every node it was seen on during the stretch.
    pub on: BTreeSet<u32>,
    /// Since the watcher started: first and last round that saw it.
    pub first: Duration,
    /// See `first`.
    pub last: Duration,
    /// How many rounds saw it.
    pub rounds: u64,
}

/// One expected address on no live node, over consecutive rounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absence {
    /// The address.
    pub addr: Ipv4Addr,
    /// First round that found it nowhere (since the watcher started).
    pub from: Duration,
    /// First round that found it again, or the watcher's stop if it never came back
    /// (then `open` is set).
    pub to: Duration,
    /// Still absent when the watcher stopped.
    pub open: bool,
    /// The node that held it last before the stretch, if known.
    pub last_on: Option<u32>,
    /// The node that held it first after the stretch, if any.
    pub then_on: Option<u32>,
}

impl Absence {
    /// How long it lasted (to the resolution of one round).
    pub fn length(&self) -> Duration {
        self.to.saturating_sub(self.from)
    }
}

/// A change in where an address is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Since the watcher started.
    pub at: Duration,
    /// The address.
    pub addr: Ipv4Addr,
    /// The live nodes it is configured on from this round on.
    pub on: BTreeSet<u32>,
}

/// Something the scenario did, recorded in the timeline (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Since the watcher started.
    pub at: Duration,
    /// What happened.
    pub text: String,
}

/// What a stopped watcher saw.
#[derive(Debug, Clone)]
pub struct WatchReport {
    /// When it started: every `Duration` in the report counts from here.
    pub started: Instant,
    /// How long it ran.
    pub ran: Duration,
    /// Rounds completed.
    pub rounds: u64,
    /// Time to dump every live node in one round: median and maximum.
    pub round_median: Duration,
    /// See `round_median`.
    pub round_max: Duration,
    /// Largest gap between the ends of two consecutive rounds (the worst resolution).
    pub worst_gap: Duration,
    /// Every stretch of an address on two live nodes.
    pub duplicates: Vec<Duplicate>,
    /// Every stretch of an expected address on no live node.
    pub absences: Vec<Absence>,
    /// Every change in where an address is, in order.
    pub changes: Vec<Change>,
    /// What the scenario noted, in order.
    pub notes: Vec<Note>,
    /// Dumps that failed (a node's namespace gone, netlink errors).
    pub errors: Vec<String>,
}

impl WatchReport {
    /// Rounds that saw some address on two live nodes (0 is the only good answer).
    pub fn duplicate_moments(&self) -> u64 {
        self.duplicates.iter().map(|d| d.rounds).sum()
    }

    /// Absences longer than `window`.
    pub fn absences_beyond(&self, window: Duration) -> Vec<&Absence> {
        self.absences
            .iter()
            .filter(|a| a.length() > window)
            .collect()
    }

    /// The longest absence of `addr`, if it was ever absent.
    pub fn longest_absence(&self, addr: Ipv4Addr) -> Option<Duration> {
        self.absences
            .iter()
            .filter(|a| a.addr == addr)
            .map(Absence::length)
            .max()
    }

    /// Fails, with the whole report, on any duplicate moment or failed dump.
    pub fn check_no_duplicates(&self) -> Result<(), String> {
        if self.duplicate_moments() == 0 && self.errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} duplicate moment(s), {} failed dump(s):\n{self}",
                self.duplicate_moments(),
                self.errors.len()
            ))
        }
    }

    /// Fails, with the whole report, on any duplicate moment, failed dump, or absence
    /// longer than `window`.
    pub fn check(&self, window: Duration) -> Result<(), String> {
        self.check_no_duplicates()?;
        let long = self.absences_beyond(window);
        if long.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} absence(s) longer than {window:?}:\n{self}",
                long.len()
            ))
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

fn pnns(set: &BTreeSet<u32>) -> String {
    if set.is_empty() {
        return "nowhere".to_owned();
    }
    let list: Vec<String> = set.iter().map(|p| format!("node {p}")).collect();
    list.join(" + ")
}

impl fmt::Display for WatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "watcher: {} rounds in {}; one round (dump of every live node) median {:?}, \
             max {:?}; worst gap between rounds {:?}",
            self.rounds,
            secs(self.ran),
            self.round_median,
            self.round_max,
            self.worst_gap
        )?;
        writeln!(f, "  duplicate moments: {}", self.duplicate_moments())?;
        for d in &self.duplicates {
            writeln!(
                f,
                "    DUPLICATE {} on {} from {} to {} ({} rounds)",
                d.addr,
                pnns(&d.on),
                secs(d.first),
                secs(d.last),
                d.rounds
            )?;
        }
        writeln!(f, "  absences: {}", self.absences.len())?;
        for a in &self.absences {
            let node = |p: Option<u32>| p.map_or("-".to_owned(), |p| format!("node {p}"));
            writeln!(
                f,
                "    {} absent {} from {} to {}{} (was on {}, then on {})",
                a.addr,
                secs(a.length()),
                secs(a.from),
                secs(a.to),
                if a.open { ", still absent at stop" } else { "" },
                node(a.last_on),
                node(a.then_on)
            )?;
        }
        for e in &self.errors {
            writeln!(f, "  dump error: {e}")?;
        }
        writeln!(f, "  timeline:")?;
        let mut notes = self.notes.iter().peekable();
        for c in &self.changes {
            while let Some(n) = notes.next_if(|n| n.at <= c.at) {
                writeln!(f, "    {} -- {}", secs(n.at), n.text)?;
            }
            writeln!(f, "    {} {} on {}", secs(c.at), c.addr, pnns(&c.on))?;
        }
        for n in notes {
            writeln!(f, "    {} -- {}", secs(n.at), n.text)?;
        }
        Ok(())
    }
}

/// One node as the watcher thread sees it.
struct Target {
    pnn: u32,
    socket: OwnedFd,
    ifindex: u32,
}

/// State shared between the scenario and the watcher thread.
#[derive(Default)]
struct State {
    live: BTreeMap<u32, bool>,
    expected: BTreeSet<Ipv4Addr>,
    /// Where each address was seen in the last round.
    current: BTreeMap<Ipv4Addr, BTreeSet<u32>>,
    /// Last node each address was seen on alone.
    last_host: BTreeMap<Ipv4Addr, u32>,
    rounds: u64,
    round_times: Vec<Duration>,
    worst_gap: Duration,
    last_round_end: Option<Duration>,
    duplicates: Vec<Duplicate>,
    open_duplicates: BTreeMap<Ipv4Addr, usize>,
    absences: Vec<Absence>,
    open_absences: BTreeMap<Ipv4Addr, usize>,
    changes: Vec<Change>,
    notes: Vec<Note>,
    errors: Vec<String>,
}

struct Shared {
    start: Instant,
    stop: AtomicBool,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running watcher; [`Watcher::stop`] ends it and returns its report. Dropping it
/// (a panicking scenario) stops the thread too.
pub struct Watcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching every present node of `cluster` (all live), with `expected`
    /// addresses to be served from now on.
    pub fn start(
        cluster: &Cluster,
        expected: impl IntoIterator<Item = Ipv4Addr>,
    ) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        for pnn in cluster.present_pnns() {
            let path = cluster.node(pnn).netns().path();
            let (socket, ifindex) = open_in(&path)
                .map_err(|e| anyhow::anyhow!("node {pnn}: netlink socket in its netns: {e}"))?;
            targets.push(Target {
                pnn,
                socket,
                ifindex,
            });
        }
        let state = State {
            live: targets.iter().map(|t| (t.pnn, true)).collect(),
            expected: expected.into_iter().collect(),
            ..State::default()
        };
        let shared = Arc::new(Shared {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            state: Mutex::new(state),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("pubip-watcher".into())
                .spawn(move || run(&shared, &targets))?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Marks `pnn` live or not (powered off: its addresses no longer count).
    pub fn set_live(&self, pnn: u32, live: bool) {
        self.shared.state().live.insert(pnn, live);
        self.note(format!(
            "node {pnn} {}",
            if live { "live again" } else { "powered off" }
        ));
    }

    /// From now on `addrs` must be served (absences are counted).
    pub fn expect(&self, addrs: impl IntoIterator<Item = Ipv4Addr>) {
        let mut state = self.shared.state();
        state.expected.extend(addrs);
    }

    /// From now on `addr` need not be served (an open absence of it ends now).
    pub fn unexpect(&self, addr: Ipv4Addr) {
        let at = self.shared.start.elapsed();
        let mut state = self.shared.state();
        state.expected.remove(&addr);
        if let Some(i) = state.open_absences.remove(&addr) {
            state.absences[i].to = at;
        }
    }

    /// Records what the scenario does, for the report's timeline; returns when (since
    /// the watcher started), to compare with the report's times.
    pub fn note(&self, text: impl Into<String>) -> Duration {
        let at = self.shared.start.elapsed();
        self.shared.state().notes.push(Note {
            at,
            text: text.into(),
        });
        at
    }

    /// Live nodes `addr` was configured on in the latest round.
    pub fn hosts(&self, addr: Ipv4Addr) -> BTreeSet<u32> {
        self.shared
            .state()
            .current
            .get(&addr)
            .cloned()
            .unwrap_or_default()
    }

    /// Where every address was in the latest round (addresses on no node omitted).
    pub fn snapshot(&self) -> BTreeMap<Ipv4Addr, BTreeSet<u32>> {
        self.shared.state().current.clone()
    }

    /// Rounds completed so far (to wait for a fresh one).
    pub fn rounds(&self) -> u64 {
        self.shared.state().rounds
    }

    /// Stops the thread and returns what it saw.
    pub fn stop(mut self) -> WatchReport {
        self.halt();
        let ran = self.shared.start.elapsed();
        let mut state = self.shared.state();
        for (_, i) in std::mem::take(&mut state.open_absences) {
            state.absences[i].to = ran;
            state.absences[i].open = true;
        }
        let mut times = state.round_times.clone();
        times.sort();
        WatchReport {
            started: self.shared.start,
            ran,
            rounds: state.rounds,
            round_median: times.get(times.len() / 2).copied().unwrap_or_default(),
            round_max: times.last().copied().unwrap_or_default(),
            worst_gap: state.worst_gap,
            duplicates: state.duplicates.clone(),
            absences: state.absences.clone(),
            changes: state.changes.clone(),
            notes: state.notes.clone(),
            errors: state.errors.clone(),
        }
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The watcher thread: rounds until told to stop.
fn run(shared: &Shared, targets: &[Target]) {
    let mut seq = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        let live = shared.state().live.clone();
        let started = shared.start.elapsed();
        let mut seen: BTreeMap<Ipv4Addr, BTreeSet<u32>> = BTreeMap::new();
        let mut errors = Vec::new();
        for t in targets {
            if !live.get(&t.pnn).copied().unwrap_or(false) {
                continue;
            }
            seq = seq.wrapping_add(1);
            match dump_addresses(&t.socket, t.ifindex, seq) {
                Ok(addrs) => {
                    for a in addrs {
                        seen.entry(a).or_default().insert(t.pnn);
                    }
                }
                Err(e) => errors.push(format!("node {}: {e}", t.pnn)),
            }
        }
        let ended = shared.start.elapsed();
        record(&mut shared.state(), started, ended, seen, errors);
        std::thread::sleep(ROUND_PAUSE);
    }
}

/// Folds one round into the state. A round's observations are dated at its end.
fn record(
    state: &mut State,
    started: Duration,
    at: Duration,
    seen: BTreeMap<Ipv4Addr, BTreeSet<u32>>,
    errors: Vec<String>,
) {
    state.rounds += 1;
    state.round_times.push(at - started);
    if let Some(prev) = state.last_round_end {
        state.worst_gap = state.worst_gap.max(at - prev);
    }
    state.last_round_end = Some(at);
    for e in errors {
        if state.errors.len() < 20 {
            state.errors.push(format!("at {}: {e}", secs(at)));
        }
    }
    // Changes.
    let addrs: BTreeSet<Ipv4Addr> = seen.keys().chain(state.current.keys()).copied().collect();
    for addr in &addrs {
        let now = seen.get(addr).cloned().unwrap_or_default();
        if state.current.get(addr).cloned().unwrap_or_default() != now {
            state.changes.push(Change {
                at,
                addr: *addr,
                on: now,
            });
        }
    }
    // Duplicates.
    for (addr, on) in &seen {
        if on.len() < 2 {
            state.open_duplicates.remove(addr);
            continue;
        }
        match state.open_duplicates.get(addr) {
            Some(&i) => {
                let d = &mut state.duplicates[i];
                d.on.extend(on.iter().copied());
                d.last = at;
                d.rounds += 1;
            }
            None => {
                state.duplicates.push(Duplicate {
                    addr: *addr,
                    on: on.clone(),
                    first: at,
                    last: at,
                    rounds: 1,
                });
                let i = state.duplicates.len() - 1;
                state.open_duplicates.insert(*addr, i);
            }
        }
    }
    state.open_duplicates.retain(|a, _| seen.contains_key(a));
    // Absences.
    let expected: Vec<Ipv4Addr> = state.expected.iter().copied().collect();
    for addr in expected {
        let on = seen.get(&addr);
        match (on, state.open_absences.get(&addr).copied()) {
            (None, None) => {
                let last_on = state.last_host.get(&addr).copied();
                state.absences.push(Absence {
                    addr,
                    from: at,
                    to: at,
                    open: false,
                    last_on,
                    then_on: None,
                });
                let i = state.absences.len() - 1;
                state.open_absences.insert(addr, i);
            }
            (Some(on), Some(i)) => {
                state.open_absences.remove(&addr);
                let a = &mut state.absences[i];
                a.to = at;
                a.then_on = on.iter().next().copied();
            }
            _ => {}
        }
    }
    for (addr, on) in &seen {
        if let Some(&p) = on.iter().next() {
            state.last_host.insert(*addr, p);
        }
    }
    state.current = seen;
}

// ---- netlink ----------------------------------------------------------------------

/// Runs `f` on a fresh thread that has entered the network namespace at `netns`
/// (an `ip netns` bind mount). Sockets it creates stay in that namespace.
pub fn in_netns<T: Send>(netns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let path: PathBuf = netns.to_path_buf();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let file = std::fs::File::open(&path)?;
                // Only this thread changes namespace; it ends when `f` returns.
                setns(&file, CloneFlags::CLONE_NEWNET)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("thread in netns panicked")))
    })
}

/// A route netlink socket inside `netns`, and `pub0`'s index there.
fn open_in(netns: &Path) -> io::Result<(OwnedFd, u32)> {
    in_netns(netns, || {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        setsockopt(&socket, sockopt::ReceiveTimeout, &TimeVal::seconds(2))?;
        // Looked up in this thread's namespace.
        let ifindex = if_nametoindex(PUBLIC_IFACE)?;
        Ok((socket, ifindex))
    })
}

const NLMSG_HDRLEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;

/// The IPv4 addresses on interface `ifindex`, by an RTM_GETADDR dump.
fn dump_addresses(socket: &OwnedFd, ifindex: u32, seq: u32) -> io::Result<Vec<Ipv4Addr>> {
    let mut req = Vec::with_capacity(NLMSG_HDRLEN + IFADDRMSG_LEN);
    let len = (NLMSG_HDRLEN + IFADDRMSG_LEN) as u32;
    req.extend_from_slice(&len.to_ne_bytes());
    req.extend_from_slice(&libc::RTM_GETADDR.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    // ifaddrmsg: family, prefixlen, flags, scope, index.
    req.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    req.extend_from_slice(&0u32.to_ne_bytes());
    sendto(
        socket.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut found = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        let mut rest = &buf[..n];
        while rest.len() >= NLMSG_HDRLEN {
            let u32_at = |b: &[u8], i: usize| u32::from_ne_bytes(b[i..i + 4].try_into().unwrap());
            let u16_at = |b: &[u8], i: usize| u16::from_ne_bytes(b[i..i + 2].try_into().unwrap());
            let msg_len = u32_at(rest, 0) as usize;
            let msg_type = u16_at(rest, 4);
            let msg_seq = u32_at(rest, 8);
            if msg_len < NLMSG_HDRLEN || msg_len > rest.len() {
                return Err(io::Error::other("truncated netlink message"));
            }
            let msg = &rest[..msg_len];
            rest = &rest[align4(msg_len).min(rest.len())..];
            if msg_seq != seq {
                continue; // A stale reply from a dump abandoned earlier.
            }
            match i32::from(msg_type) {
                libc::NLMSG_DONE => return Ok(found),
                libc::NLMSG_ERROR => {
                    let errno = if msg.len() >= NLMSG_HDRLEN + 4 {
                        -(u32_at(msg, NLMSG_HDRLEN) as i32)
                    } else {
                        0
                    };
                    return Err(io::Error::from_raw_os_error(errno));
                }
                t if t == i32::from(libc::RTM_NEWADDR) => {
                    if msg.len() < NLMSG_HDRLEN + IFADDRMSG_LEN {
                        continue;
                    }
                    let body = &msg[NLMSG_HDRLEN..];
                    if i32::from(body[0]) != libc::AF_INET || u32_at(body, 4) != ifindex {
                        continue;
                    }
                    let mut attrs = &body[IFADDRMSG_LEN..];
                    let mut local = None;
                    let mut address = None;
                    while attrs.len() >= 4 {
                        let rta_len = usize::from(u16_at(attrs, 0));
                        let rta_type = u16_at(attrs, 2);
                        if rta_len < 4 || rta_len > attrs.len() {
                            break;
                        }
                        if rta_len == 8 {
                            let a = Ipv4Addr::new(attrs[4], attrs[5], attrs[6], attrs[7]);
                            match rta_type {
                                libc::IFA_LOCAL => local = Some(a),
                                libc::IFA_ADDRESS => address = Some(a),
                                _ => {}
                            }
                        }
                        attrs = &attrs[align4(rta_len).min(attrs.len())..];
                    }
                    if let Some(a) = local.or(address) {
                        found.push(a);
                    }
                }
                _ => {}
            }
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 20, last)
    }

    fn round(state: &mut State, ms: u64, seen: &[(u8, &[u32])]) {
        let seen = seen
            .iter()
            .map(|(l, on)| (a(*l), on.iter().copied().collect()))
            .collect();
        let at = Duration::from_millis(ms);
        record(state, at, at, seen, Vec::new());
    }

    #[test]
    fn records_duplicates_and_absences_with_their_length() {
        let mut state = State {
            expected: [a(101)].into(),
            ..State::default()
        };
        round(&mut state, 0, &[(101, &[0])]);
        round(&mut state, 10, &[]);
        round(&mut state, 20, &[]);
        round(&mut state, 30, &[(101, &[1])]);
        round(&mut state, 40, &[(101, &[1, 2])]);
        round(&mut state, 50, &[(101, &[1, 2])]);
        round(&mut state, 60, &[(101, &[2])]);
        assert_eq!(state.absences.len(), 1);
        let gap = &state.absences[0];
        assert_eq!(gap.length(), Duration::from_millis(20));
        assert_eq!((gap.last_on, gap.then_on), (Some(0), Some(1)));
        assert_eq!(state.duplicates.len(), 1);
        assert_eq!(state.duplicates[0].rounds, 2);
        assert_eq!(state.duplicates[0].on, [1, 2].into());
        assert_eq!(state.changes.len(), 5);
    }
}

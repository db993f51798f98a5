//! Public IP allocation: given what every node knows about the floating public
//! addresses, decide which node hosts each one after a takeover run.
//!
//! This module owns the three allocation algorithms CTDB offers through the
//! `IPAllocAlgorithm` tunable and nothing else: it does not gather the per-node views
//! (the leader's takeover run does that over the wire), it does not add or remove
//! addresses (that is `netif`), and it keeps no state between runs. [`allocate`] is a
//! pure function of its [`Input`]: no clock, no randomness, no I/O, and no iteration
//! over hash maps, so the same input always gives the same [`Allocation`], including
//! the order of its log lines. [`case`] reads the data-driven test cases in
//! `ctdbd/tests/data/takeover/` that pin the behaviour down against CTDB 4.17.
//!
//! # The merged address list
//!
//! Every algorithm works on one list holding each address known to any node, sorted
//! from the highest address to the lowest (see [`Allocation`] for IPv6). Each
//! entry starts with an owner taken from the nodes' claims, but a claim only counts
//! when a node says it holds the address itself: what a node believes about other
//! nodes may be stale. When several nodes claim the same address for themselves, the
//! highest pnn wins. An address nobody claims starts unassigned.
//!
//! A node *can host* an address if the address is on its available list (empty for a
//! node that is banned, stopped, disconnected, unhealthy, ... or not yet running, see
//! [`can_host_ips`]). It *can take over* an address if it can host it and the
//! `NoIPTakeover` tunable is off. Every algorithm first drops each address from an
//! owner that cannot host it (logged at DEBUG as `Unassign IP: ...`); the
//! deterministic one does so after reshuffling.
//!
//! # Deterministic (`IPAllocAlgorithm = 0`)
//!
//! Ignores the current owners: the n-th address of the list (counting from 0) goes to
//! node `n % node_count`, so the layout depends only on the address set and the node
//! count. Addresses whose "home" node cannot host them are then unassigned and placed
//! like the non-deterministic algorithm places unassigned addresses. It never fails
//! back, so `NoIPFailback` means nothing to it.
//!
//! # Non-deterministic (`IPAllocAlgorithm = 1`)
//!
//! Keeps addresses where they are when possible. Each unassigned address, in list
//! order, goes to the node that can take it over and currently holds the fewest
//! addresses (the lowest pnn among equals). Then, unless `NoIPFailback` is set, it
//! evens out the counts: walking the list, for each assigned address it looks at the
//! nodes that could take it; if the busiest of them (lowest pnn among equals) holds
//! two or more addresses more than the idlest, the busiest node's first address in
//! list order is handed to the least-loaded node that can take it, and the walk starts
//! again from the top. At most `address count + 5` such moves are made per run.
//!
//! # LCP2 (`IPAllocAlgorithm = 2`, the default)
//!
//! Balances by address *similarity*, so that addresses from the same subnet spread
//! over different nodes. Two addresses are compared as 128-bit keys (IPv4 `a.b.c.d`
//! is the key `::a.b.c.d`); their closeness is the number of leading bits their keys
//! share, counted per 32-bit word and summed over the four words (a word that differs
//! contributes its own leading common bits, and later words still count; for two IPv4
//! addresses this is `96 +` their common prefix length). The cost of placing an
//! address on a node is the sum of the squared closeness to every other address the
//! node holds, and a node's *imbalance* is the sum of that over all pairs of addresses
//! it holds. Large imbalance means many similar addresses crowd one node.
//!
//! 1. Drop addresses from nodes that cannot host them.
//! 2. Work out each node's imbalance. Nodes holding no address at this point are the
//!    *rebalance candidates* (newly healthy nodes; the only ones that may receive
//!    addresses in step 4), as are the nodes in the forced-rebalance set (CTDB's
//!    `REBALANCE_NODE` message).
//! 3. Place unassigned addresses one at a time: over every unassigned address (list
//!    order) and every node that can take it over (pnn order), pick the pair with the
//!    lowest cost; the first pair seen wins a tie. Addresses no node can take stay
//!    unassigned (WARNING `Failed to find node to cover ip ...`).
//! 4. Unless `NoIPFailback` is set or there are no candidates, fail back: sort the
//!    nodes by imbalance, highest first (a stable sort, so pnn order among equals),
//!    and for the first node with a non-zero imbalance that has a worthwhile move,
//!    make the best one and start step 4 again. A move of one of the source node's
//!    addresses to a candidate node is worthwhile when the destination's new
//!    imbalance stays below the source's current one and the address costs the
//!    destination less than it costs the source; the best move minimises the sum of
//!    the two nodes' new imbalances (first seen wins a tie, scanning the source's
//!    addresses in list order and the destinations in pnn order). Step 4 ends when no
//!    node has a worthwhile move.
//!
//! CTDB keeps imbalances in 32-bit unsigned integers, which would wrap for a node
//! holding more than roughly 500 similar addresses; we use 64 bits, so such (absurd)
//! layouts may be balanced differently.
//!
//! # Log lines
//!
//! The algorithms report what they do as [`LogLine`]s in [`Allocation::log`], with the
//! same texts and levels as CTDB's takeover test program, so the case files can check
//! them. Only lines at or below [`Input::log_level`] are produced (and formatted at
//! all, which matters for LCP2 at DEBUG).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::protocol::control::{node_flags, Runstate};
use crate::tunables::{keys, Tunables};

pub mod case;
mod deterministic;
mod lcp2;
mod nondeterministic;

/// The allocation algorithm, from the `IPAllocAlgorithm` tunable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// 0: address `n` of the sorted list goes to node `n % node_count`.
    Deterministic,
    /// 1: keep addresses where they are, even out the per-node counts.
    NonDeterministic,
    /// 2: keep addresses where they are, spread similar addresses apart.
    #[default]
    Lcp2,
}

impl Algorithm {
    /// From the tunable's value; CTDB treats any value other than 0 and 1 as LCP2.
    pub fn from_tunable(value: u32) -> Self {
        match value {
            0 => Self::Deterministic,
            1 => Self::NonDeterministic,
            _ => Self::Lcp2,
        }
    }

    /// The tunable's value for this algorithm.
    pub fn tunable_value(self) -> u32 {
        match self {
            Self::Deterministic => 0,
            Self::NonDeterministic => 1,
            Self::Lcp2 => 2,
        }
    }

    /// The short name CTDB's test harness uses (`det`, `nondet`, `lcp2`).
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Deterministic => "det",
            Self::NonDeterministic => "nondet",
            Self::Lcp2 => "lcp2",
        }
    }

    /// Parses a [`short_name`](Self::short_name).
    pub fn from_short_name(name: &str) -> Option<Self> {
        [Self::Deterministic, Self::NonDeterministic, Self::Lcp2]
            .into_iter()
            .find(|a| a.short_name() == name)
    }
}

/// The tunables and requests that steer an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// `IPAllocAlgorithm`.
    pub algorithm: Algorithm,
    /// `NoIPFailback`: never move an address off a node that can still host it
    /// (non-deterministic and LCP2 skip their rebalancing step).
    pub no_ip_failback: bool,
    /// `NoIPTakeover`: no node may take an address it does not already hold, so
    /// addresses on nodes that cannot host them end up unassigned.
    pub no_ip_takeover: bool,
    /// Nodes that asked to be rebalanced onto (`REBALANCE_NODE`), in the order asked.
    /// LCP2 lets them receive addresses in its failback step even if they hold some.
    /// Unknown pnns are logged at ERR and ignored.
    pub force_rebalance_nodes: Vec<u32>,
}

impl Settings {
    /// Reads `IPAllocAlgorithm`, `NoIPFailback` and `NoIPTakeover` from the tunables.
    pub fn from_tunables(tunables: &Tunables, force_rebalance_nodes: Vec<u32>) -> Self {
        Self {
            algorithm: Algorithm::from_tunable(tunables.value(keys::IP_ALLOC_ALGORITHM)),
            no_ip_failback: tunables.enabled(keys::NO_IP_FAILBACK),
            no_ip_takeover: tunables.enabled(keys::NO_IP_TAKEOVER),
            force_rebalance_nodes,
        }
    }
}

/// One public address as a node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownIp {
    /// The address.
    pub addr: IpAddr,
    /// The node this node believes holds it; `None` for unassigned. Only a node's
    /// claim for itself is trusted (see the module docs).
    pub owner: Option<u32>,
}

/// One node's view, as the leader collects it during a takeover run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeView {
    /// The public addresses configured on the node, each with the owner it reports.
    pub known: Vec<KnownIp>,
    /// The addresses the node can host now: empty if the node cannot host addresses
    /// at all (see [`can_host_ips`]), otherwise usually its known addresses (CTDB
    /// leaves out addresses whose interfaces are all down).
    pub available: Vec<IpAddr>,
}

impl NodeView {
    /// A view whose available list is its known list if `can_host`, else empty.
    pub fn new(known: Vec<KnownIp>, can_host: bool) -> Self {
        let available = if can_host {
            known.iter().map(|k| k.addr).collect()
        } else {
            Vec::new()
        };
        Self { known, available }
    }
}

/// Whether a node in this state may host public addresses: it is running and neither
/// inactive (disconnected, banned, deleted, stopped) nor disabled (unhealthy,
/// permanently disabled).
pub fn can_host_ips(flags: u32, runstate: Runstate) -> bool {
    runstate == Runstate::Running && flags & (node_flags::INACTIVE | node_flags::DISABLED) == 0
}

/// CTDB's debug levels, from most to least severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `ERR`.
    Error,
    /// `WARNING`.
    Warning,
    /// `NOTICE`.
    Notice,
    /// `INFO`.
    Info,
    /// `DEBUG`.
    Debug,
}

impl LogLevel {
    /// All levels, most severe first.
    pub const ALL: [LogLevel; 5] = [
        Self::Error,
        Self::Warning,
        Self::Notice,
        Self::Info,
        Self::Debug,
    ];

    /// CTDB's name for the level.
    pub fn name(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Warning => "WARNING",
            Self::Notice => "NOTICE",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
        }
    }

    /// Parses a non-empty, case-insensitive prefix of a level name (`ERR`, `info`),
    /// as CTDB's test program reads `CTDB_TEST_LOGLEVEL`.
    pub fn parse_prefix(text: &str) -> Option<Self> {
        if text.is_empty() {
            return None;
        }
        Self::ALL.into_iter().find(|level| {
            level
                .name()
                .get(..text.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(text))
        })
    }
}

/// Everything an allocation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// One view per node, indexed by pnn.
    pub nodes: Vec<NodeView>,
    /// Tunables and rebalance requests.
    pub settings: Settings,
    /// The least severe log level to produce; lines below it are never formatted.
    pub log_level: LogLevel,
}

/// One address and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    /// The address.
    pub addr: IpAddr,
    /// Its new owner; `None` if no node can host it (CTDB's `-1`).
    pub owner: Option<u32>,
}

impl fmt::Display for Assignment {
    /// The test program's output row: `ADDR PNN`, with `-1` for unassigned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.owner {
            Some(pnn) => write!(f, "{} {}", self.addr, pnn),
            None => write!(f, "{} -1", self.addr),
        }
    }
}

/// One diagnostic line of an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level.
    pub level: LogLevel,
    /// The text, without level or prefix.
    pub text: String,
}

/// The result of [`allocate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Every address known to any node, exactly once, from the highest to the lowest:
    /// addresses compare as 128-bit numbers with IPv4 `a.b.c.d` taken as `::a.b.c.d`
    /// (so IPv4 addresses come after every IPv6 address outside `::/96`), and an IPv4
    /// address comes after the IPv6 address with the same number.
    pub ips: Vec<Assignment>,
    /// Diagnostics at or below [`Input::log_level`], in the order they happened.
    pub log: Vec<LogLine>,
}

impl Allocation {
    /// The new owner of `addr`: `None` if the address is not in the allocation,
    /// `Some(None)` if it is but stays unassigned.
    pub fn owner(&self, addr: IpAddr) -> Option<Option<u32>> {
        self.ips.iter().find(|a| a.addr == addr).map(|a| a.owner)
    }
}

/// Runs the configured algorithm over the nodes' views. Never fails: claims that make
/// no sense are ignored and unknown rebalance pnns are logged, as CTDB does.
pub fn allocate(input: &Input) -> Allocation {
    let mut state = State::new(input);
    match input.settings.algorithm {
        Algorithm::Deterministic => deterministic::allocate(&mut state, &input.settings),
        Algorithm::NonDeterministic => nondeterministic::allocate(&mut state, &input.settings),
        Algorithm::Lcp2 => lcp2::allocate(&mut state, &input.settings),
    }
    Allocation {
        ips: state
            .addrs
            .iter()
            .zip(&state.owner)
            .map(|(&addr, &owner)| Assignment { addr, owner })
            .collect(),
        log: state.log.lines,
    }
}

/// The sort key of an address: its 128-bit number, then IPv6 above IPv4.
fn order_key(addr: IpAddr) -> (u128, bool) {
    match addr {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), false),
        IpAddr::V6(v6) => (u128::from(v6), true),
    }
}

/// A cheap hasher for address keys: [`State::new`] looks up one key per known and
/// per available address of every node (a million for 256 nodes with 4096
/// addresses), where SipHash's resistance to chosen keys buys nothing: the keys come
/// from our own nodes' configuration.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_u64(&mut self, v: u64) {
        // Multiply by an odd constant so every input bit reaches the high bits.
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u128(&mut self, v: u128) {
        // Truncating casts split the value into its two halves.
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
}

/// Collects log lines at or below a level.
struct Logger {
    level: LogLevel,
    lines: Vec<LogLine>,
}

impl Logger {
    fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    /// Records a line; `text` is only called if the level is enabled.
    fn log(&mut self, level: LogLevel, text: impl FnOnce() -> String) {
        if self.enabled(level) {
            self.lines.push(LogLine {
                level,
                text: text(),
            });
        }
    }
}

/// The working state shared by the algorithms: the merged list and who holds what.
struct State {
    /// The merged list, highest address first; indices into it name addresses.
    addrs: Vec<IpAddr>,
    /// Current owner of each address.
    owner: Vec<Option<u32>>,
    /// Number of nodes.
    nodes: usize,
    /// `hostable[ip * nodes + pnn]`: the address is on the node's available list.
    hostable: Vec<bool>,
    /// For each node, the addresses it holds now (in no particular order).
    held: Vec<Vec<usize>>,
    /// `NoIPTakeover`.
    no_ip_takeover: bool,
    log: Logger,
}

impl State {
    fn new(input: &Input) -> Self {
        let nodes = input.nodes.len();
        // Merge the claims in pnn order: a node's claim for itself replaces what is
        // there, any other claim counts as "unassigned" and never replaces anything.
        // The map is only looked up, never iterated, so its order cannot leak into
        // the result; the list order comes from sorting the keys.
        let mut slot: HashMap<(u128, bool), usize, BuildHasherDefault<AddrHasher>> =
            HashMap::default();
        let mut merged: Vec<((u128, bool), IpAddr, Option<u32>)> = Vec::new();
        for (pnn, view) in (0u32..).zip(&input.nodes) {
            for known in &view.known {
                let key = order_key(known.addr);
                let pos = *slot.entry(key).or_insert_with(|| {
                    merged.push((key, known.addr, None));
                    merged.len() - 1
                });
                if known.owner == Some(pnn) {
                    merged[pos].2 = Some(pnn);
                }
            }
        }
        // Keys are unique, so an unstable sort is deterministic.
        let mut order: Vec<usize> = (0..merged.len()).collect();
        order.sort_unstable_by(|&a, &b| merged[b].0.cmp(&merged[a].0));
        let mut index = vec![0; merged.len()];
        for (ip, &pos) in order.iter().enumerate() {
            index[pos] = ip;
        }
        let (addrs, owner): (Vec<IpAddr>, Vec<Option<u32>>) = order
            .iter()
            .map(|&pos| (merged[pos].1, merged[pos].2))
            .unzip();

        let mut hostable = vec![false; addrs.len() * nodes];
        for (pnn, view) in input.nodes.iter().enumerate() {
            for addr in &view.available {
                // An available address no node knows about is not in the list.
                if let Some(&pos) = slot.get(&order_key(*addr)) {
                    hostable[index[pos] * nodes + pnn] = true;
                }
            }
        }

        let mut held = vec![Vec::new(); nodes];
        for (ip, owner) in owner.iter().enumerate() {
            if let Some(pnn) = owner {
                // Trusted claims come from a node of the input, so pnn < nodes.
                held[*pnn as usize].push(ip);
            }
        }

        Self {
            addrs,
            owner,
            nodes,
            hostable,
            held,
            no_ip_takeover: input.settings.no_ip_takeover,
            log: Logger {
                level: input.log_level,
                lines: Vec::new(),
            },
        }
    }

    fn can_host(&self, pnn: usize, ip: usize) -> bool {
        self.hostable[ip * self.nodes + pnn]
    }

    fn can_take_over(&self, pnn: usize, ip: usize) -> bool {
        !self.no_ip_takeover && self.can_host(pnn, ip)
    }

    fn set_owner(&mut self, ip: usize, new: Option<u32>) {
        if let Some(old) = self.owner[ip] {
            let list = &mut self.held[old as usize];
            if let Some(pos) = list.iter().position(|&i| i == ip) {
                list.swap_remove(pos);
            }
        }
        if let Some(pnn) = new {
            self.held[pnn as usize].push(ip);
        }
        self.owner[ip] = new;
    }

    /// Drops every address from an owner that cannot host it.
    fn unassign_unsuitable(&mut self) {
        for ip in 0..self.addrs.len() {
            let Some(pnn) = self.owner[ip] else { continue };
            if !self.can_host(pnn as usize, ip) {
                let addr = self.addrs[ip];
                self.log.log(LogLevel::Debug, || {
                    format!("Unassign IP: {addr} from {pnn}")
                });
                self.set_owner(ip, None);
            }
        }
    }

    /// Gives the address to the node that can take it over and holds the fewest
    /// addresses (lowest pnn among equals). False if no node can take it.
    fn give_to_least_loaded(&mut self, ip: usize) -> bool {
        let mut best: Option<usize> = None;
        for pnn in 0..self.nodes {
            if !self.can_take_over(pnn, ip) {
                continue;
            }
            if best.is_none_or(|b| self.held[pnn].len() < self.held[b].len()) {
                best = Some(pnn);
            }
        }
        match best {
            Some(pnn) => {
                self.set_owner(ip, Some(pnn as u32));
                true
            }
            None => {
                let addr = self.addrs[ip];
                self.log.log(LogLevel::Warning, || {
                    format!("No node can take over public address {addr}")
                });
                false
            }
        }
    }

    /// Places every unassigned address, in list order, on the least-loaded node.
    fn allocate_unassigned_by_count(&mut self) {
        for ip in 0..self.addrs.len() {
            if self.owner[ip].is_none() && !self.give_to_least_loaded(ip) {
                let addr = self.addrs[ip];
                self.log.log(LogLevel::Warning, || {
                    format!("Failed to find node to cover ip {addr}")
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse::<Ipv4Addr>().unwrap())
    }

    fn shared_input(algorithm: Algorithm, up: &[bool], ips: &[(&str, Option<u32>)]) -> Input {
        let known: Vec<KnownIp> = ips
            .iter()
            .map(|&(a, owner)| KnownIp { addr: v4(a), owner })
            .collect();
        Input {
            nodes: up
                .iter()
                .map(|&u| NodeView::new(known.clone(), u))
                .collect(),
            settings: Settings {
                algorithm,
                ..Settings::default()
            },
            log_level: LogLevel::Debug,
        }
    }

    #[test]
    fn algorithm_from_tunable_defaults_to_lcp2() {
        assert_eq!(Algorithm::from_tunable(0), Algorithm::Deterministic);
        assert_eq!(Algorithm::from_tunable(1), Algorithm::NonDeterministic);
        assert_eq!(Algorithm::from_tunable(2), Algorithm::Lcp2);
        assert_eq!(Algorithm::from_tunable(7), Algorithm::Lcp2);
        assert_eq!(
            Algorithm::from_short_name("nondet"),
            Some(Algorithm::NonDeterministic)
        );
    }

    #[test]
    fn settings_from_default_tunables() {
        let s = Settings::from_tunables(&Tunables::default(), vec![]);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn log_level_prefixes() {
        assert_eq!(LogLevel::parse_prefix("ERR"), Some(LogLevel::Error));
        assert_eq!(LogLevel::parse_prefix("info"), Some(LogLevel::Info));
        assert_eq!(LogLevel::parse_prefix("D"), Some(LogLevel::Debug));
        assert_eq!(LogLevel::parse_prefix(""), None);
        assert_eq!(LogLevel::parse_prefix("ERRORS"), None);
    }

    #[test]
    fn availability_rule() {
        assert!(can_host_ips(0, Runstate::Running));
        assert!(!can_host_ips(0, Runstate::Startup));
        for flag in [0x01, 0x02, 0x04, 0x08, 0x10, 0x20] {
            assert!(!can_host_ips(flag, Runstate::Running), "{flag:#x}");
        }
    }

    #[test]
    fn merged_list_is_descending_and_trusts_only_self_claims() {
        // Node 0 says node 1 holds .1, node 1 does not know .1: nobody holds it.
        let input = Input {
            nodes: vec![
                NodeView::new(
                    vec![
                        KnownIp {
                            addr: v4("10.0.0.1"),
                            owner: Some(1),
                        },
                        KnownIp {
                            addr: v4("9.0.0.9"),
                            owner: Some(0),
                        },
                    ],
                    false,
                ),
                NodeView::new(
                    vec![KnownIp {
                        addr: v4("10.0.0.2"),
                        owner: Some(1),
                    }],
                    false,
                ),
                NodeView::new(
                    vec![KnownIp {
                        addr: v4("10.0.0.2"),
                        owner: Some(2),
                    }],
                    false,
                ),
            ],
            settings: Settings {
                algorithm: Algorithm::NonDeterministic,
                no_ip_takeover: true,
                ..Settings::default()
            },
            log_level: LogLevel::Error,
        };
        let state = State::new(&input);
        assert_eq!(
            state.addrs,
            vec![v4("10.0.0.2"), v4("10.0.0.1"), v4("9.0.0.9")]
        );
        // Two self-claims for 10.0.0.2: the highest pnn wins.
        assert_eq!(state.owner, vec![Some(2), None, Some(0)]);
    }

    #[test]
    fn ipv6_sorts_above_ipv4() {
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let input = Input {
            nodes: vec![NodeView::new(
                vec![
                    KnownIp {
                        addr: v4("255.0.0.1"),
                        owner: None,
                    },
                    KnownIp {
                        addr: v6,
                        owner: None,
                    },
                ],
                true,
            )],
            settings: Settings::default(),
            log_level: LogLevel::Error,
        };
        let out = allocate(&input);
        assert_eq!(out.ips[0].addr, v6);
        assert_eq!(out.ips[1].to_string(), "255.0.0.1 0");
    }

    #[test]
    fn no_nodes_no_addresses() {
        for algorithm in [
            Algorithm::Deterministic,
            Algorithm::NonDeterministic,
            Algorithm::Lcp2,
        ] {
            let out = allocate(&shared_input(algorithm, &[], &[]));
            assert!(out.ips.is_empty());
        }
    }

    #[test]
    fn every_algorithm_moves_off_a_failed_node() {
        let ips = [
            ("10.0.0.1", Some(0)),
            ("10.0.0.2", Some(1)),
            ("10.0.0.3", Some(1)),
        ];
        for algorithm in [
            Algorithm::Deterministic,
            Algorithm::NonDeterministic,
            Algorithm::Lcp2,
        ] {
            let out = allocate(&shared_input(algorithm, &[true, false], &ips));
            assert!(
                out.ips.iter().all(|a| a.owner == Some(0)),
                "{algorithm:?}: {out:?}"
            );
        }
    }

    #[test]
    fn unassigned_log_line_at_warning() {
        let input = shared_input(Algorithm::Lcp2, &[false], &[("10.0.0.1", Some(0))]);
        let out = allocate(&Input {
            log_level: LogLevel::Warning,
            ..input
        });
        assert_eq!(out.ips[0].to_string(), "10.0.0.1 -1");
        assert_eq!(
            out.log,
            vec![LogLine {
                level: LogLevel::Warning,
                text: "Failed to find node to cover ip 10.0.0.1".into()
            }]
        );
    }
}

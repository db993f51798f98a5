//! LCP2 (`IPAllocAlgorithm = 2`): keep addresses where they are, place unassigned
//! ones where they cost least, then move addresses onto newly healthy nodes while
//! that lowers the imbalance. The cost model and the steps are described in the
//! parent module; the log lines are the ones CTDB prints, level for level.

use std::net::IpAddr;

use super::{LogLevel, Settings, State};

const SEPARATOR: &str = " ----------------------------------------";

/// Runs the four LCP2 steps.
pub(super) fn allocate(state: &mut State, settings: &Settings) {
    state.unassign_unsuitable();

    let keys: Vec<[u32; 4]> = state.addrs.iter().map(|&a| key_words(a)).collect();
    let mut lcp2 = Lcp2 {
        imbalance: (0..state.nodes)
            .map(|pnn| node_imbalance(&keys, &state.held[pnn]))
            .collect(),
        candidate: vec![true; state.nodes],
        keys,
    };
    // A node already holding an address after the repair must have been healthy
    // before this run; only the others may receive addresses when failing back.
    for owner in state.owner.iter().flatten() {
        lcp2.candidate[*owner as usize] = false;
    }
    for &pnn in &settings.force_rebalance_nodes {
        if pnn as usize >= state.nodes {
            state.log.log(LogLevel::Error, || {
                format!("Cannot rebalance unknown node {pnn}")
            });
            continue;
        }
        state.log.log(LogLevel::Notice, || {
            format!("Forcing rebalancing of IPs to node {pnn}")
        });
        lcp2.candidate[pnn as usize] = true;
    }

    lcp2.allocate_unassigned(state);

    if settings.no_ip_failback || !lcp2.candidate.contains(&true) {
        return;
    }
    lcp2.fail_back(state);
}

/// An address as four 32-bit words, most significant first (IPv4 in the last word).
fn key_words(addr: IpAddr) -> [u32; 4] {
    let value = match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    // Truncating casts pick out each word.
    [
        (value >> 96) as u32,
        (value >> 64) as u32,
        (value >> 32) as u32,
        value as u32,
    ]
}

/// Squared closeness of two addresses: per word, 32 if equal, else the word's leading
/// common bits; summed over all four words (CTDB does not stop at the first word that
/// differs, which only matters for IPv6).
fn closeness_squared(a: &[u32; 4], b: &[u32; 4]) -> u64 {
    let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).leading_zeros()).sum();
    u64::from(bits) * u64::from(bits)
}

/// A node's imbalance: the squared closeness summed over all pairs it holds.
fn node_imbalance(keys: &[[u32; 4]], held: &[usize]) -> u64 {
    held.iter()
        .enumerate()
        .flat_map(|(n, &a)| held[n + 1..].iter().map(move |&b| (a, b)))
        .map(|(a, b)| closeness_squared(&keys[a], &keys[b]))
        .sum()
}

/// LCP2's bookkeeping next to the shared [`State`].
struct Lcp2 {
    /// Each address's key words, by list index.
    keys: Vec<[u32; 4]>,
    /// Each node's imbalance, kept in step with its holdings.
    imbalance: Vec<u64>,
    /// Nodes that may receive addresses when failing back.
    candidate: Vec<bool>,
}

impl Lcp2 {
    /// What holding `ip` costs node `pnn`: its squared closeness to every other
    /// address the node holds (never to itself, so this is also what the node saves by
    /// giving `ip` away).
    fn cost(&self, state: &State, ip: usize, pnn: usize) -> u64 {
        state.held[pnn]
            .iter()
            .filter(|&&other| other != ip)
            .map(|&other| closeness_squared(&self.keys[ip], &self.keys[other]))
            .sum()
    }

    /// Step 3: repeatedly place the cheapest (unassigned address, node) pair.
    fn allocate_unassigned(&mut self, state: &mut State) {
        // CTDB runs one round even when nothing is unassigned, which shows at DEBUG.
        loop {
            state.log.log(LogLevel::Debug, || SEPARATOR.to_string());
            state.log.log(LogLevel::Debug, || {
                " CONSIDERING MOVES (UNASSIGNED)".to_string()
            });
            // (address, node, cost) of the cheapest pair so far.
            let mut best: Option<(usize, usize, u64)> = None;
            for ip in 0..state.addrs.len() {
                if state.owner[ip].is_some() {
                    continue;
                }
                for pnn in 0..state.nodes {
                    if !state.can_take_over(pnn, ip) {
                        continue;
                    }
                    let cost = self.cost(state, ip, pnn);
                    let addr = state.addrs[ip];
                    state
                        .log
                        .log(LogLevel::Debug, || format!(" {addr} -> {pnn} [+{cost}]"));
                    if best.is_none_or(|(_, _, least)| cost < least) {
                        best = Some((ip, pnn, cost));
                    }
                }
            }
            state.log.log(LogLevel::Debug, || SEPARATOR.to_string());

            let Some((ip, pnn, cost)) = best else {
                break;
            };
            state.set_owner(ip, Some(pnn as u32));
            self.imbalance[pnn] += cost;
            let addr = state.addrs[ip];
            state
                .log
                .log(LogLevel::Info, || format!(" {addr} -> {pnn} [+{cost}]"));
            if state.owner.iter().all(Option::is_some) {
                return;
            }
        }
        for ip in 0..state.addrs.len() {
            if state.owner[ip].is_none() {
                let addr = state.addrs[ip];
                state.log.log(LogLevel::Warning, || {
                    format!("Failed to find node to cover ip {addr}")
                });
            }
        }
    }

    /// Step 4: while some node has a worthwhile move, make the best move of the most
    /// imbalanced such node.
    fn fail_back(&mut self, state: &mut State) {
        loop {
            state.log.log(LogLevel::Debug, || "+".repeat(41));
            state.log.log(LogLevel::Debug, || {
                "Selecting most imbalanced node from:".to_string()
            });
            for (pnn, imbalance) in self.imbalance.iter().enumerate() {
                state
                    .log
                    .log(LogLevel::Debug, || format!(" {pnn} [{imbalance}]"));
            }
            // Stable: equal imbalances keep pnn order, as glibc's qsort (a merge sort)
            // does for CTDB; the cases depend on it.
            let mut order: Vec<usize> = (0..state.nodes).collect();
            order.sort_by(|&a, &b| self.imbalance[b].cmp(&self.imbalance[a]));

            let mut moved = false;
            for source in order {
                // Nodes with 0 or 1 addresses have nothing to balance, nor do the
                // ones after them.
                if self.imbalance[source] == 0 {
                    break;
                }
                if self.move_one_from(state, source) {
                    moved = true;
                    break;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// Makes the best worthwhile move of one of `source`'s addresses to a candidate
    /// node; false if there is none.
    fn move_one_from(&mut self, state: &mut State, source: usize) -> bool {
        let source_imbalance = self.imbalance[source];
        state.log.log(LogLevel::Debug, || SEPARATOR.to_string());
        state.log.log(LogLevel::Debug, || {
            format!(" CONSIDERING MOVES FROM {source} [{source_imbalance}]")
        });
        // (address, destination, new source imbalance, new destination imbalance).
        let mut best: Option<(usize, usize, u64, u64)> = None;
        for ip in 0..state.addrs.len() {
            if state.owner[ip] != Some(source as u32) {
                continue;
            }
            let saving = self.cost(state, ip, source);
            let source_after = source_imbalance - saving;
            for dest in 0..state.nodes {
                if !self.candidate[dest] || !state.can_take_over(dest, ip) {
                    continue;
                }
                let cost = self.cost(state, ip, dest);
                let dest_after = self.imbalance[dest] + cost;
                let addr = state.addrs[ip];
                state.log.log(LogLevel::Debug, || {
                    format!(
                        " {source} [{}] -> {addr} -> {dest} [+{cost}]",
                        -i128::from(saving)
                    )
                });
                if dest_after < source_imbalance
                    && cost < saving
                    && best.is_none_or(|(_, _, s, d)| source_after + dest_after < s + d)
                {
                    best = Some((ip, dest, source_after, dest_after));
                }
            }
        }
        state.log.log(LogLevel::Debug, || SEPARATOR.to_string());

        let Some((ip, dest, source_after, dest_after)) = best else {
            return false;
        };
        let addr = state.addrs[ip];
        let dest_before = self.imbalance[dest];
        state.log.log(LogLevel::Info, || {
            format!(
                "{source} [{}] -> {addr} -> {dest} [+{}]",
                i128::from(source_after) - i128::from(source_imbalance),
                dest_after - dest_before
            )
        });
        self.imbalance[source] = source_after;
        self.imbalance[dest] = dest_after;
        state.set_owner(ip, Some(dest as u32));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> [u32; 4] {
        key_words(text.parse().unwrap())
    }

    #[test]
    fn closeness_of_ipv4_addresses() {
        // Same /24, differing in bit 6 of the last octet: 96 + 24 + 6 bits in common.
        assert_eq!(
            closeness_squared(&words("192.168.20.253"), &words("192.168.20.254")),
            126 * 126
        );
        // 192.168.20.x and 192.168.21.x share 23 bits.
        assert_eq!(
            closeness_squared(&words("192.168.20.253"), &words("192.168.21.253")),
            119 * 119
        );
        assert_eq!(
            closeness_squared(&words("10.0.0.1"), &words("10.0.0.1")),
            128 * 128
        );
        assert_eq!(
            closeness_squared(&words("128.0.0.1"), &words("1.0.0.1")),
            96 * 96
        );
    }

    #[test]
    fn closeness_of_ipv6_counts_words_after_the_first_difference() {
        // Only word 0 differs, in its lowest bit: 31 + 3 * 32 bits in common.
        assert_eq!(closeness_squared(&words("0:1::"), &words("::")), 127 * 127);
        // Words 0 and 2 differ (15 common bits each); words 1 and 3 still count.
        assert_eq!(
            closeness_squared(&words("1::1:0:0:0"), &words("::")),
            (15 + 32 + 15 + 32) * (15 + 32 + 15 + 32)
        );
    }

    #[test]
    fn imbalance_sums_pairs() {
        let keys = vec![
            words("192.168.20.253"),
            words("192.168.20.254"),
            words("192.168.21.253"),
        ];
        assert_eq!(node_imbalance(&keys, &[0]), 0);
        assert_eq!(node_imbalance(&keys, &[0, 1]), 15876);
        assert_eq!(
            node_imbalance(&keys, &[0, 1, 2]),
            15876 + 14161 + closeness_squared(&keys[1], &keys[2])
        );
    }
}

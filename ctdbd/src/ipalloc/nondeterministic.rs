//! The non-deterministic algorithm (`IPAllocAlgorithm = 1`): keep addresses where
//! they are, place unassigned ones on the least-loaded node, then even out the
//! per-node counts. See the parent module for the whole picture.

use super::{LogLevel, Settings, State};

/// Repairs, places, and (unless `NoIPFailback`) evens out the counts.
pub(super) fn allocate(state: &mut State, settings: &Settings) {
    state.unassign_unsuitable();
    state.allocate_unassigned_by_count();
    if settings.no_ip_failback {
        return;
    }
    even_out(state);
}

/// Moves addresses off the busiest node until, for every assigned address, the nodes
/// that could take it differ by at most one address in load, or the move budget
/// (address count + 5) runs out. After each move the scan starts again from the top
/// of the list, which is what makes the result depend on list order.
fn even_out(state: &mut State) {
    let budget = state.addrs.len() + 5;
    let mut moves = 0;
    'scan: loop {
        for ip in 0..state.addrs.len() {
            if state.owner[ip].is_none() {
                continue;
            }
            // Busiest and idlest node that could take this address; the lowest pnn
            // wins among equals.
            let mut busiest: Option<(usize, usize)> = None;
            let mut idlest: Option<(usize, usize)> = None;
            for pnn in 0..state.nodes {
                if !state.can_take_over(pnn, ip) {
                    continue;
                }
                let load = state.held[pnn].len();
                if busiest.is_none_or(|(_, most)| load > most) {
                    busiest = Some((pnn, load));
                }
                if idlest.is_none_or(|(_, least)| load < least) {
                    idlest = Some((pnn, load));
                }
            }
            let (Some((busiest, most)), Some((_, least))) = (busiest, idlest) else {
                let addr = state.addrs[ip];
                state.log.log(LogLevel::Warning, || {
                    format!("No node can take over public address {addr}; left where it is")
                });
                continue;
            };
            if most > least + 1 && moves < budget {
                // The busiest node holds `most` > 1 addresses, so it has a first one.
                let first = (0..state.addrs.len())
                    .find(|&i| state.owner[i] == Some(busiest as u32))
                    .expect("the busiest node holds addresses");
                state.give_to_least_loaded(first);
                moves += 1;
                continue 'scan;
            }
        }
        break;
    }
}

//! The deterministic algorithm (`IPAllocAlgorithm = 0`): addresses are dealt round
//! robin over all nodes in list order, then the ones dealt to a node that cannot host
//! them are placed by count. See the parent module for the whole picture.

use super::{LogLevel, Settings, State};

/// Deals the addresses out, then repairs what was dealt to nodes that cannot host.
pub(super) fn allocate(state: &mut State, settings: &Settings) {
    state.log.log(LogLevel::Notice, || {
        "Deterministic IPs enabled. Resetting all ip allocations".to_string()
    });
    if state.nodes == 0 {
        // No node, so no view and no address either.
        return;
    }
    for ip in 0..state.addrs.len() {
        // `ip % nodes` is below the node count, which came from a Vec length.
        state.set_owner(ip, Some((ip % state.nodes) as u32));
    }
    if settings.no_ip_failback {
        // Dealing by position already moves every address back to its home node.
        state.log.log(LogLevel::Warning, || {
            "NoIPFailback is ignored by the deterministic algorithm".to_string()
        });
    }
    state.unassign_unsuitable();
    state.allocate_unassigned_by_count();
}

//! Event scripts as the core sees them: which event runs when, and what its result
//! means for the node. The scripts themselves run at the edge (`crate::events`).
//!
//! # Schedule (CTDB 4.17's, minus its waits)
//! - `init` and `setup` run in the daemon before the core exists (a failure stops the
//!   daemon, as in CTDB); the core starts in FIRST_RECOVERY.
//! - After the first recovery: STARTUP, the `startup` event; when it succeeds,
//!   RUNNING. A failed `startup` is retried every [`STARTUP_RETRY_MS`]. CTDB waits
//!   `RerecoveryTimeout` + 3 s first; we do not, which is most of our faster start.
//! - RUNNING: `monitor` at once, then `MonitorInterval` seconds after each one ends.
//!   The node's own UNHEALTHY flag is set from the start and cleared by the first
//!   monitor that succeeds; a failed monitor sets it again, and so do
//!   `MonitorTimeoutCount` timed-out monitors in a row. The flag goes to every peer,
//!   and the leader's next takeover run moves the node's addresses away.
//! - Every recovery (a new vnn map): `startrecovery`, then `recovered`.
//! - Public addresses: after an address is added, `takeip IFACE IP BITS`; only when
//!   it ends is the address announced, its clients tickled and the TAKEOVER_IP
//!   answered. After an address is removed, `releaseip IFACE IP BITS`, then the
//!   RELEASE_IP is answered. The address is removed *before* `releaseip` runs (CTDB
//!   runs the script first): a release must never wait on a script, because another
//!   node may take the address as soon as the lease allows.
//! - `ipreallocated` on every node after each takeover run.
//!
//! One event at a time, in order of request, except `monitor`: a monitor in
//! progress is cancelled by the edge when another event is requested, and reported
//! as [`EventOutcome::Cancelled`] (no change of health). A cancelled monitor runs
//! again as soon as no other event is running or waiting, not `MonitorInterval`
//! later: a node's first monitor is often cancelled by the recovery that another
//! node's arrival starts, and the node would otherwise stay UNHEALTHY (holding no
//! address) for a whole interval. Identical argument-less events already waiting
//! are not queued twice.
//!
//! What a failure means: `monitor` → UNHEALTHY; `startup` → retried; the others are
//! logged. A failed `takeip` keeps the address (taking it away again would only start
//! another run with the same answer); the failure is in the log and in
//! `ctdb event status legacy takeip`.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::Serialize;
use tracing::{error, info, warn};

use super::{Node, Output};
use crate::events::{Event, EventKind};
use crate::protocol::control::{node_flags, Runstate};
use crate::tunables::keys;

/// Pause before a failed `startup` runs again.
pub const STARTUP_RETRY_MS: u64 = 5000;

/// How an event ended, as far as the core cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EventOutcome {
    /// Every script succeeded.
    Ok,
    /// A script failed or could not run.
    Failed,
    /// The event ran out of time (`EventScriptTimeout`); its scripts were killed.
    TimedOut,
    /// A monitor stopped because another event was requested.
    Cancelled,
}

/// What to do when an event ends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum AfterEvent {
    /// Nothing beyond logging a failure.
    Nothing,
    /// The startup event: RUNNING, or try again.
    Startup,
    /// `takeip` of an address just added: announce it, tickle its clients, answer.
    Taken {
        iface: String,
        addr: IpAddr,
        waiters: Vec<u32>,
    },
    /// `releaseip` of an address just removed: answer.
    Released { addr: IpAddr, waiters: Vec<u32> },
}

/// The node's event-script state.
#[derive(Debug, Default)]
pub(super) struct EventSchedule {
    next_id: u64,
    /// The event in progress other than a monitor.
    running: Option<(u64, EventKind, AfterEvent)>,
    /// The monitor in progress.
    monitor: Option<u64>,
    queue: VecDeque<(Event, AfterEvent)>,
    next_monitor_ms: u64,
    /// Monitors in a row that timed out.
    monitor_timeouts: u32,
    /// STARTUP: when to run the `startup` event (again); `None` while it runs.
    startup_at_ms: Option<u64>,
}

impl EventSchedule {
    /// The events in progress, monitor first (tests answer them).
    #[cfg(test)]
    pub(super) fn in_progress(&self) -> Vec<(u64, EventKind)> {
        self.monitor
            .map(|id| (id, EventKind::Monitor))
            .into_iter()
            .chain(self.running.as_ref().map(|(id, kind, _)| (*id, *kind)))
            .collect()
    }

    /// When the schedule next needs a tick, given the runstate.
    pub(super) fn timeout(&self, runstate: Runstate) -> Option<u64> {
        match runstate {
            Runstate::Startup => self.startup_at_ms,
            Runstate::Running if self.running.is_none() && self.monitor.is_none() => {
                Some(self.next_monitor_ms)
            }
            _ => None,
        }
    }
}

impl Node {
    /// Asks for `event`; `after` says what its end means.
    pub(super) fn queue_event(&mut self, event: Event, after: AfterEvent) {
        let duplicate = after == AfterEvent::Nothing
            && self
                .events
                .queue
                .iter()
                .any(|(e, a)| *a == AfterEvent::Nothing && *e == event);
        if !duplicate {
            self.events.queue.push_back((event, after));
        }
    }

    /// The first recovery is done: the node starts up.
    pub(super) fn begin_startup(&mut self) {
        info!("first recovery done: running the startup event");
        self.runstate = Runstate::Startup;
        self.events.startup_at_ms = Some(self.now.mono_ms);
    }

    /// Starts whatever event is due. Called after every input.
    pub(super) fn drive_events(&mut self, out: &mut Vec<Output>) {
        let now = self.now.mono_ms;
        if self.runstate == Runstate::Startup && self.events.startup_at_ms.is_some_and(|t| now >= t)
        {
            self.events.startup_at_ms = None;
            self.queue_event(Event::Startup, AfterEvent::Startup);
        }
        if self.events.running.is_none() {
            if let Some((event, after)) = self.events.queue.pop_front() {
                let kind = event.kind();
                let id = self.start_event(event, out);
                self.events.running = Some((id, kind, after));
            }
        }
        if self.runstate == Runstate::Running
            && self.events.running.is_none()
            && self.events.monitor.is_none()
            && now >= self.events.next_monitor_ms
        {
            let id = self.start_event(Event::Monitor, out);
            self.events.monitor = Some(id);
        }
    }

    fn start_event(&mut self, event: Event, out: &mut Vec<Output>) -> u64 {
        self.events.next_id += 1;
        let id = self.events.next_id;
        out.push(Output::RunEvent {
            id,
            event,
            timeout_ms: self.tunables.event_script_timeout_ms(),
        });
        id
    }

    /// The edge reports the end of event `id`.
    pub(super) fn event_done(&mut self, id: u64, outcome: EventOutcome, out: &mut Vec<Output>) {
        if self.events.monitor == Some(id) {
            self.events.monitor = None;
            self.monitor_done(outcome, out);
            return;
        }
        match self.events.running.take() {
            Some((running, _, after)) if running == id => self.after_event(after, outcome, out),
            other => {
                // Not ours (a restart of the events task, say): ignore it.
                self.events.running = other;
                warn!(id, ?outcome, "result of an event that is not running");
            }
        }
    }

    /// `MonitorInterval` was set: a monitor already scheduled with a longer interval
    /// comes no later than one new interval from now (`ctdb setvar MonitorInterval 1`
    /// takes effect at once rather than after the old interval).
    pub(super) fn monitor_interval_changed(&mut self) {
        let interval_ms = self.tunables.secs_as_ms(keys::MONITOR_INTERVAL).max(1000);
        let next = &mut self.events.next_monitor_ms;
        *next = (*next).min(self.now.mono_ms + interval_ms);
    }

    fn monitor_done(&mut self, outcome: EventOutcome, out: &mut Vec<Output>) {
        if outcome == EventOutcome::Cancelled {
            // Due at once: `drive_events` starts it when the events queued before
            // it (those that cancelled it) have ended. Health is unchanged.
            self.events.next_monitor_ms = self.now.mono_ms;
            return;
        }
        let interval_s = self.tunables.value(keys::MONITOR_INTERVAL).max(1);
        self.events.next_monitor_ms = self.now.mono_ms + u64::from(interval_s) * 1000;
        let unhealthy = self.own_flags() & node_flags::UNHEALTHY != 0;
        let healthy = match outcome {
            EventOutcome::Cancelled => unreachable!("handled above"),
            EventOutcome::Ok => {
                self.events.monitor_timeouts = 0;
                true
            }
            EventOutcome::Failed => false,
            EventOutcome::TimedOut => {
                self.events.monitor_timeouts += 1;
                let limit = self.tunables.value(keys::MONITOR_TIMEOUT_COUNT);
                warn!(
                    timeouts = self.events.monitor_timeouts,
                    limit, "monitor event timed out"
                );
                if self.events.monitor_timeouts < limit {
                    return;
                }
                false
            }
        };
        match (healthy, unhealthy) {
            (true, true) => {
                info!("monitor event OK: node healthy");
                let flags = self.own_flags() & !node_flags::UNHEALTHY;
                self.set_own_flags(flags, out);
            }
            (false, false) => {
                error!(?outcome, "monitor event failed: node UNHEALTHY");
                let flags = self.own_flags() | node_flags::UNHEALTHY;
                self.set_own_flags(flags, out);
            }
            _ => {}
        }
    }

    fn after_event(&mut self, after: AfterEvent, outcome: EventOutcome, out: &mut Vec<Output>) {
        match after {
            AfterEvent::Startup => {
                if outcome == EventOutcome::Ok {
                    info!("startup event OK: node RUNNING");
                    self.runstate = Runstate::Running;
                    self.events.next_monitor_ms = self.now.mono_ms;
                } else {
                    error!(
                        ?outcome,
                        retry_ms = STARTUP_RETRY_MS,
                        "startup event failed; retrying"
                    );
                    self.events.startup_at_ms = Some(self.now.mono_ms + STARTUP_RETRY_MS);
                }
            }
            AfterEvent::Nothing => {}
            AfterEvent::Taken {
                iface,
                addr,
                waiters,
            } => {
                if outcome != EventOutcome::Ok {
                    error!(%addr, ?outcome, "takeip event failed; keeping the address");
                }
                // A release may have come while the script ran: never announce an
                // address this node no longer holds.
                let still_here = self.public_ips.iter().any(|ip| {
                    ip.addr == addr
                        && ip
                            .active_iface
                            .and_then(|i| ip.ifaces.get(i))
                            .is_some_and(|name| *name == iface)
                });
                if still_here {
                    out.push(Output::Announce { iface, addr });
                    self.tickle_clients(addr, out);
                    self.tell_clients_address(addr, true, out);
                }
                self.answer_address_waiters(waiters, Ok(()), out);
            }
            AfterEvent::Released { addr, waiters } => {
                if outcome != EventOutcome::Ok {
                    error!(%addr, ?outcome, "releaseip event failed; the address is gone anyway");
                }
                self.answer_address_waiters(waiters, Ok(()), out);
            }
        }
    }
}

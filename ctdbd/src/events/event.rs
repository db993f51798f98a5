//! CTDB's events: their names as the scripts see them in `$1`, and the arguments that
//! follow for the address events.
//!
//! Pure: no I/O. The runner turns an [`Event`] into a script's argument vector with
//! [`Event::argv`]; the status store keys results by [`EventKind`], since
//! `ctdb event status legacy EVENT` asks by name only.
//!
//! Source: `ctdb(1)` (`event run`), `ctdb-tunables(7)` (`EventScriptTimeout`), and the
//! `case "$1"` arms of the installed `/usr/share/ctdb/events/legacy/*.script`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

/// The name of an event, without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// `init`: once, before the daemon does anything else.
    Init,
    /// `setup`: once, after `init` succeeded.
    Setup,
    /// `startup`: once, when the node is ready to become healthy.
    Startup,
    /// `monitor`: the periodic health check (`MonitorInterval`).
    Monitor,
    /// `takeip IFACE IP MASKBITS`: a public address was added to this node.
    TakeIp,
    /// `releaseip IFACE IP MASKBITS`: a public address is leaving this node.
    ReleaseIp,
    /// `updateip OLDIFACE NEWIFACE IP MASKBITS`: a public address moved interface.
    UpdateIp,
    /// `ipreallocated`: a takeover run finished, on every node.
    IpReallocated,
    /// `startrecovery`: a database recovery begins.
    StartRecovery,
    /// `recovered`: a database recovery finished.
    Recovered,
    /// `shutdown`: the daemon is stopping.
    Shutdown,
}

impl EventKind {
    /// Every event, in the order of CTDB's event numbering (the obsolete `stopped`,
    /// `status` and `reload` left out).
    pub const ALL: [EventKind; 11] = [
        EventKind::Init,
        EventKind::Setup,
        EventKind::Startup,
        EventKind::StartRecovery,
        EventKind::Recovered,
        EventKind::TakeIp,
        EventKind::ReleaseIp,
        EventKind::Monitor,
        EventKind::Shutdown,
        EventKind::UpdateIp,
        EventKind::IpReallocated,
    ];

    /// The name as CTDB spells it, which is what scripts receive as `$1`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Init => "init",
            EventKind::Setup => "setup",
            EventKind::Startup => "startup",
            EventKind::Monitor => "monitor",
            EventKind::TakeIp => "takeip",
            EventKind::ReleaseIp => "releaseip",
            EventKind::UpdateIp => "updateip",
            EventKind::IpReallocated => "ipreallocated",
            EventKind::StartRecovery => "startrecovery",
            EventKind::Recovered => "recovered",
            EventKind::Shutdown => "shutdown",
        }
    }

    /// Whether the daemon treats a timeout of this event as success: CTDB does so
    /// for `takeip`, `releaseip`, `startrecovery` and `recovered`, whose callers
    /// have their own timeouts (`ctdb-tunables(7)`, `EventScriptTimeout`). The
    /// runner still records `TIMEDOUT`; this is for the caller's decision.
    pub fn timeout_counts_as_success(self) -> bool {
        matches!(
            self,
            EventKind::TakeIp
                | EventKind::ReleaseIp
                | EventKind::StartRecovery
                | EventKind::Recovered
        )
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no CTDB event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event {name:?}")]
pub struct UnknownEvent {
    /// What was given.
    pub name: String,
}

impl FromStr for EventKind {
    type Err = UnknownEvent;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownEvent {
                name: name.to_owned(),
            })
    }
}

/// One event to run, with the arguments its scripts receive after the name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// `init`.
    Init,
    /// `setup`.
    Setup,
    /// `startup`.
    Startup,
    /// `monitor`.
    Monitor,
    /// `takeip IFACE IP MASKBITS`.
    TakeIp {
        /// Interface the address was added to.
        iface: String,
        /// The public address.
        ip: IpAddr,
        /// Its prefix length.
        maskbits: u8,
    },
    /// `releaseip IFACE IP MASKBITS`.
    ReleaseIp {
        /// Interface the address is removed from.
        iface: String,
        /// The public address.
        ip: IpAddr,
        /// Its prefix length.
        maskbits: u8,
    },
    /// `updateip OLDIFACE NEWIFACE IP MASKBITS`.
    UpdateIp {
        /// Interface the address was on.
        old_iface: String,
        /// Interface the address is on now.
        new_iface: String,
        /// The public address.
        ip: IpAddr,
        /// Its prefix length.
        maskbits: u8,
    },
    /// `ipreallocated`.
    IpReallocated,
    /// `startrecovery`.
    StartRecovery,
    /// `recovered`.
    Recovered,
    /// `shutdown`.
    Shutdown,
}

impl Event {
    /// The event's name without its arguments.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Init => EventKind::Init,
            Event::Setup => EventKind::Setup,
            Event::Startup => EventKind::Startup,
            Event::Monitor => EventKind::Monitor,
            Event::TakeIp { .. } => EventKind::TakeIp,
            Event::ReleaseIp { .. } => EventKind::ReleaseIp,
            Event::UpdateIp { .. } => EventKind::UpdateIp,
            Event::IpReallocated => EventKind::IpReallocated,
            Event::StartRecovery => EventKind::StartRecovery,
            Event::Recovered => EventKind::Recovered,
            Event::Shutdown => EventKind::Shutdown,
        }
    }

    /// What a script receives as `$1 $2 ...`: the event name, then its arguments.
    /// CTDB's event daemon splits the argument string on spaces; we pass them as
    /// separate words from the start, so an odd interface name cannot shift them.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.kind().name().to_owned()];
        match self {
            Event::TakeIp {
                iface,
                ip,
                maskbits,
            }
            | Event::ReleaseIp {
                iface,
                ip,
                maskbits,
            } => {
                argv.extend([iface.clone(), ip.to_string(), maskbits.to_string()]);
            }
            Event::UpdateIp {
                old_iface,
                new_iface,
                ip,
                maskbits,
            } => argv.extend([
                old_iface.clone(),
                new_iface.clone(),
                ip.to_string(),
                maskbits.to_string(),
            ]),
            _ => {}
        }
        argv
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.name().parse::<EventKind>(), Ok(kind));
        }
        assert_eq!(
            "Monitor".parse::<EventKind>(),
            Err(UnknownEvent {
                name: "Monitor".into()
            })
        );
    }

    #[test]
    fn address_event_arguments() {
        let ip: IpAddr = "10.0.0.31".parse().unwrap();
        let take = Event::TakeIp {
            iface: "eth1".into(),
            ip,
            maskbits: 24,
        };
        assert_eq!(take.argv(), ["takeip", "eth1", "10.0.0.31", "24"]);
        let release = Event::ReleaseIp {
            iface: "eth1".into(),
            ip,
            maskbits: 24,
        };
        assert_eq!(release.to_string(), "releaseip eth1 10.0.0.31 24");
        let update = Event::UpdateIp {
            old_iface: "eth1".into(),
            new_iface: "eth2".into(),
            ip: "fd00::5".parse().unwrap(),
            maskbits: 64,
        };
        assert_eq!(update.argv(), ["updateip", "eth1", "eth2", "fd00::5", "64"]);
        assert_eq!(update.kind(), EventKind::UpdateIp);
        assert_eq!(Event::IpReallocated.argv(), ["ipreallocated"]);
    }

    #[test]
    fn timeouts_ignored_only_for_events_with_their_own_timeout() {
        let ignored: Vec<_> = EventKind::ALL
            .into_iter()
            .filter(|kind| kind.timeout_counts_as_success())
            .map(EventKind::name)
            .collect();
        assert_eq!(
            ignored,
            ["startrecovery", "recovered", "takeip", "releaseip"]
        );
    }
}

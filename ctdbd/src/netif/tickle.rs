//! The tickle table: which clients to tickle when, and which of their answers to
//! meet with a reset of our own. The one tickle task ([`super::tickler`]) owns it,
//! reads the clock and the sockets, and carries out what it decides.
//!
//! Pure: time comes in as [`Instant`]s the caller read, received segments as
//! [`Segment`]s, and decisions go out as values (timers are data: the caller sleeps
//! until [`TickleTable::poll_timeout`] and then calls
//! [`TickleTable::handle_timeout`]). No clock, no socket.
//!
//! # Why a second answer means this node's reset did not arrive
//! A tickle draws an ACK from a client that still has its connection
//! ([`super::tcp`]); this node's kernel, which has no such connection, answers that
//! ACK with a RST. Once that RST arrives the client's connection is gone, and the
//! client answers a later tickle with a RST of its own, not an ACK (RFC 9293
//! §3.10.7.1: a segment for no connection is answered with a reset). So a client
//! that answers with an ACK again never got the kernel's RST: a firewall dropped
//! the kernel's outgoing resets, or the RST was lost. The table then has the task
//! send the RST itself, with sequence number = the acknowledgment number of the
//! client's latest ACK, the one value the client accepts (RFC 5961 §3.2).
//!
//! Linux answers at most one out-of-window segment per connection every 500 ms
//! (`net.ipv4.tcp_invalid_ratelimit`, kernel `ip-sysctl` documentation), so the
//! first three tickles, 100 ms apart to survive a lost one, draw one answer. With
//! the fallback on, tickling goes on every [`RETICKLE_INTERVAL`] (over 500 ms, so
//! each draws an answer from a client that still hangs) until the watch window
//! closes:
//!
//! ```text
//!  t = 0     100    200 ms        800          1400         2000 ms
//!   tickle  tickle  tickle        tickle        tickle        window closes:
//!    └ client ACK: noted;          └ client ACK again:        entry dropped
//!      the kernel resets it          reset sent (fallback)
//!  a client RST at any time: its connection is gone, entry dropped
//! ```
//!
//! Without the fallback: the first three tickles only, and nothing is watched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::tcp::{Segment, FLAG_ACK, FLAG_RST, FLAG_SYN};

/// Tickles sent first, [`BURST_INTERVAL`] apart: a few, so one lost segment does
/// not leave the client hanging on its dead connection.
pub const BURST: usize = 3;

/// Time between the first tickles.
pub const BURST_INTERVAL: Duration = Duration::from_millis(100);

/// Time between later tickles while watching: longer than Linux's 500 ms limit on
/// answers to out-of-window segments, so each one draws an answer.
pub const RETICKLE_INTERVAL: Duration = Duration::from_millis(600);

/// How long after the request a pair is watched (and tickled) with the fallback on.
pub const WATCH_WINDOW: Duration = Duration::from_secs(2);

/// Least time between two fallback resets to one client: a burst of its segments
/// (a flight of retransmitted data) needs one reset, not one each.
pub const RESET_INTERVAL: Duration = Duration::from_millis(100);

/// A watched connection: the public address and port (ours), and the client.
pub type Pair = (SocketAddr, SocketAddr);

/// What a client's segment to a watched pair meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its first ACK since the tickles began: this node's kernel answers it with a
    /// RST, so nothing is sent.
    First {
        /// Our end.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
    },
    /// An ACK again: the kernel's RST did not reach the client. Send a reset from
    /// `server` to `client` with these numbers ([`super::tcp::reset`]).
    Reset {
        /// Our end.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
        /// The client's acknowledgment number: the sequence number it expects.
        seq: u32,
        /// The client's sequence number.
        ack: u32,
    },
    /// A RST from the client: its connection is gone; the pair is no longer watched
    /// nor tickled.
    Gone {
        /// Our end.
        server: SocketAddr,
        /// The client.
        client: SocketAddr,
    },
}

/// Every pair being tickled or watched, with its timer.
#[derive(Debug)]
pub struct TickleTable {
    fallback: bool,
    entries: HashMap<Pair, Entry>,
    /// Each entry's one pending timer, earliest first. An entry's timer is the
    /// earlier of its next tickle and the end of its window, and it is re-armed
    /// (removed and inserted) whenever that changes, so the two stay in step.
    timers: BTreeSet<(Instant, Pair)>,
    /// Entries whose client is IPv4 / IPv6: which receive sockets are needed.
    ipv4: usize,
    ipv6: usize,
    /// Entries per public address: what the receive sockets' filters let in.
    servers: BTreeMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry {
    /// Tickles sent so far.
    sent: usize,
    next_tickle: Option<Instant>,
    /// End of the watch window (with the fallback on).
    until: Instant,
    /// Whether the client has answered with an ACK since the request.
    answered: bool,
    last_reset: Option<Instant>,
    /// The key of this entry in `timers`.
    timer: Instant,
}

impl TickleTable {
    /// An empty table; `fallback` turns on the watch and the resets
    /// (`TickleResetFallback`).
    pub fn new(fallback: bool) -> Self {
        Self {
            fallback,
            entries: HashMap::new(),
            timers: BTreeSet::new(),
            ipv4: 0,
            ipv6: 0,
            servers: BTreeMap::new(),
        }
    }

    /// Whether the fallback is on.
    pub fn fallback(&self) -> bool {
        self.fallback
    }

    /// Turns the fallback on or off (`ctdb setvar TickleResetFallback`). Pairs
    /// already in the table follow the new setting from their next timer: without
    /// the fallback they end after their three tickles, and none is watched.
    pub fn set_fallback(&mut self, fallback: bool) {
        self.fallback = fallback;
    }

    /// Pairs being tickled or watched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no pair is being tickled or watched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether segments from IPv4 clients must be received now.
    pub fn watching_ipv4(&self) -> bool {
        self.fallback && self.ipv4 > 0
    }

    /// Whether segments from IPv6 clients must be received now.
    pub fn watching_ipv6(&self) -> bool {
        self.fallback && self.ipv6 > 0
    }

    /// The public addresses of the pairs in the table, in order: the only
    /// destinations whose segments the watch needs.
    pub fn servers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.servers.keys().copied()
    }

    /// Starts tickling `client` from `server` (the core's `Tickle` output): the
    /// first tickle is due at once. A pair already in the table starts over, as
    /// its address was taken again.
    pub fn tickle(&mut self, server: SocketAddr, client: SocketAddr, now: Instant) {
        let pair = (canonical(server), canonical(client));
        self.remove(pair);
        let entry = Entry {
            sent: 0,
            next_tickle: Some(now),
            until: now + WATCH_WINDOW,
            answered: false,
            last_reset: None,
            timer: now,
        };
        self.timers.insert((now, pair));
        self.entries.insert(pair, entry);
        if pair.1.is_ipv4() {
            self.ipv4 += 1;
        } else {
            self.ipv6 += 1;
        }
        *self.servers.entry(pair.0.ip()).or_default() += 1;
    }

    /// When [`TickleTable::handle_timeout`] must next be called; `None` when the
    /// table is empty.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Every pair due a tickle at `now`, to send in this order; drops the pairs
    /// whose tickles and window are over.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Pair> {
        let mut due = Vec::new();
        while let Some(&(at, pair)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(entry) = self.entries.get_mut(&pair) else {
                // Timers and entries change together; nothing to do for a timer
                // without an entry.
                continue;
            };
            if entry.next_tickle.is_some_and(|t| t <= now) {
                due.push(pair);
                entry.sent += 1;
                // The next one is timed from when this one went out, not from when
                // it was due: a late task still spaces them out, and never sends
                // two within the client's rate limit.
                entry.next_tickle = if entry.sent < BURST {
                    Some(now + BURST_INTERVAL)
                } else if self.fallback {
                    Some(now + RETICKLE_INTERVAL).filter(|t| *t < entry.until)
                } else {
                    None
                };
            }
            let next = match entry.next_tickle {
                Some(t) if self.fallback => Some(t.min(entry.until)),
                Some(t) => Some(t),
                None if self.fallback && now < entry.until => Some(entry.until),
                None => None,
            };
            match next {
                Some(t) => {
                    entry.timer = t;
                    self.timers.insert((t, pair));
                }
                None => self.remove(pair),
            }
        }
        due
    }

    /// A segment received at `now`; `Some` when it came from a watched client to
    /// its server (see [`Answer`]). Everything else is none of the table's business.
    pub fn handle_segment(&mut self, segment: &Segment, now: Instant) -> Option<Answer> {
        if !self.fallback {
            return None;
        }
        let pair = (segment.dst, segment.src);
        let (server, client) = pair;
        let entry = self.entries.get_mut(&pair)?;
        if now >= entry.until {
            // Its timer drops it.
            return None;
        }
        if segment.has(FLAG_RST) {
            self.remove(pair);
            return Some(Answer::Gone { server, client });
        }
        if segment.has(FLAG_SYN) || !segment.has(FLAG_ACK) {
            return None;
        }
        if !entry.answered {
            entry.answered = true;
            return Some(Answer::First { server, client });
        }
        if entry.last_reset.is_some_and(|t| now < t + RESET_INTERVAL) {
            return None;
        }
        entry.last_reset = Some(now);
        Some(Answer::Reset {
            server,
            client,
            seq: segment.ack,
            ack: segment.seq,
        })
    }

    /// Stops tickling and watching `pair` (nothing if it is not in the table).
    pub fn remove(&mut self, pair: Pair) {
        if let Some(entry) = self.entries.remove(&pair) {
            self.timers.remove(&(entry.timer, pair));
            if pair.1.is_ipv4() {
                self.ipv4 -= 1;
            } else {
                self.ipv6 -= 1;
            }
            if let Some(n) = self.servers.get_mut(&pair.0.ip()) {
                *n -= 1;
                if *n == 0 {
                    self.servers.remove(&pair.0.ip());
                }
            }
        }
    }
}

/// `addr` as received segments spell it: no IPv6 flow label or scope, an
/// IPv4-mapped IPv6 address as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netif::tcp::FLAG_FIN;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn pair() -> Pair {
        (
            "192.0.2.10:445".parse().unwrap(),
            "198.51.100.7:50123".parse().unwrap(),
        )
    }

    /// A segment from the client of `pair()` to its server.
    fn from_client(flags: u8, seq: u32, ack: u32) -> Segment {
        let (server, client) = pair();
        Segment {
            src: client,
            dst: server,
            seq,
            ack,
            flags,
        }
    }

    /// Runs the table's timers from `t0` to `t0 + end` as a task would (sleeping
    /// until each timeout), and returns when each tickle went out.
    fn tickle_times(table: &mut TickleTable, t0: Instant, end: Duration) -> Vec<Duration> {
        let mut sent = Vec::new();
        while let Some(at) = table.poll_timeout() {
            if at > t0 + end {
                break;
            }
            for p in table.handle_timeout(at) {
                assert_eq!(p, pair());
                sent.push(at - t0);
            }
        }
        sent
    }

    #[test]
    fn without_the_fallback_three_tickles_and_no_watch() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(false);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        assert!(!table.watching_ipv4());
        assert_eq!(
            tickle_times(&mut table, t0, ms(10_000)),
            [ms(0), ms(100), ms(200)]
        );
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
        assert_eq!(table.handle_segment(&from_client(FLAG_ACK, 1, 2), t0), None);
    }

    #[test]
    fn turning_the_fallback_off_ends_the_watch_after_the_first_tickles() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        assert!(table.watching_ipv4());
        table.set_fallback(false);
        assert!(!table.watching_ipv4(), "nothing is watched any more");
        assert_eq!(
            tickle_times(&mut table, t0, ms(10_000)),
            [ms(0), ms(100), ms(200)]
        );
        assert!(table.is_empty());
    }

    #[test]
    fn with_the_fallback_tickles_go_on_until_the_window_closes() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        assert!(table.watching_ipv4() && !table.watching_ipv6());
        assert_eq!(
            tickle_times(&mut table, t0, ms(10_000)),
            [ms(0), ms(100), ms(200), ms(800), ms(1400)]
        );
        assert!(table.is_empty(), "dropped when the window closed");
        assert!(!table.watching_ipv4());
    }

    #[test]
    fn a_late_task_keeps_the_retickle_spacing() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        // Woken 450 ms late: one tickle goes out, the next ones are spaced from it.
        assert_eq!(table.handle_timeout(t0 + ms(450)), [pair()]);
        assert_eq!(table.poll_timeout(), Some(t0 + ms(550)));
        let rest: Vec<Duration> = tickle_times(&mut table, t0, ms(10_000));
        assert_eq!(rest, [ms(550), ms(650), ms(1250), ms(1850)]);
    }

    #[test]
    fn a_second_answer_is_reset_with_the_clients_ack_number() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        table.handle_timeout(t0);
        assert_eq!(
            table.handle_segment(&from_client(FLAG_ACK, 1000, 5000), t0 + ms(1)),
            Some(Answer::First { server, client })
        );
        let again = from_client(FLAG_ACK, 1000, 5000);
        let reset = Some(Answer::Reset {
            server,
            client,
            seq: 5000,
            ack: 1000,
        });
        assert_eq!(table.handle_segment(&again, t0 + ms(801)), reset);
        assert_eq!(
            table.handle_segment(&again, t0 + ms(850)),
            None,
            "within the reset interval"
        );
        assert_eq!(table.handle_segment(&again, t0 + ms(1401)), reset);
        assert_eq!(
            table.handle_segment(&again, t0 + ms(2000)),
            None,
            "window closed"
        );
    }

    #[test]
    fn a_client_reset_ends_the_watch_and_the_tickles() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        table.handle_timeout(t0);
        assert_eq!(
            table.handle_segment(&from_client(FLAG_RST, 0, 0), t0 + ms(101)),
            Some(Answer::Gone { server, client })
        );
        assert!(table.is_empty() && !table.watching_ipv4());
        assert_eq!(table.poll_timeout(), None);
        assert_eq!(table.servers().count(), 0);
    }

    #[test]
    fn servers_are_listed_once_while_any_of_their_pairs_remains() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        let mut other_client = client;
        other_client.set_port(50124);
        let other_server: SocketAddr = "192.0.2.11:445".parse().unwrap();
        table.tickle(server, client, t0);
        table.tickle(server, other_client, t0);
        table.tickle(other_server, client, t0);
        let listed: Vec<IpAddr> = table.servers().collect();
        assert_eq!(listed, [server.ip(), other_server.ip()]);
        table.remove((server, client));
        table.remove((other_server, client));
        assert_eq!(table.servers().collect::<Vec<_>>(), [server.ip()]);
        table.remove((server, other_client));
        assert_eq!(table.servers().count(), 0);
    }

    #[test]
    fn other_segments_are_ignored() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        let mut reversed = from_client(FLAG_ACK, 1, 2);
        std::mem::swap(&mut reversed.src, &mut reversed.dst);
        let mut other_port = from_client(FLAG_ACK, 1, 2);
        other_port.src.set_port(50124);
        for segment in [
            reversed,
            other_port,
            from_client(FLAG_SYN, 1, 0),
            from_client(FLAG_SYN | FLAG_ACK, 1, 2),
            from_client(FLAG_FIN, 1, 2),
        ] {
            assert_eq!(table.handle_segment(&segment, t0), None, "{segment:?}");
        }
        assert_eq!(table.len(), 1);
        // A FIN with ACK is an answer like any ACK.
        assert!(matches!(
            table.handle_segment(&from_client(FLAG_FIN | FLAG_ACK, 1, 2), t0),
            Some(Answer::First { .. })
        ));
    }

    #[test]
    fn a_new_request_starts_the_pair_over() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let (server, client) = pair();
        table.tickle(server, client, t0);
        table.handle_timeout(t0);
        table.handle_segment(&from_client(FLAG_ACK, 1, 2), t0 + ms(1));
        table.tickle(server, client, t0 + ms(50));
        assert_eq!((table.len(), table.poll_timeout()), (1, Some(t0 + ms(50))));
        assert_eq!(
            table.handle_segment(&from_client(FLAG_ACK, 1, 2), t0 + ms(60)),
            Some(Answer::First { server, client }),
            "answers are counted afresh"
        );
    }

    #[test]
    fn ipv6_pairs_match_received_segments_and_need_the_ipv6_socket() {
        let t0 = Instant::now();
        let mut table = TickleTable::new(true);
        let mut server: std::net::SocketAddrV6 = "[2001:db8::10]:2049".parse().unwrap();
        server.set_scope_id(3);
        let client: SocketAddr = "[2001:db8::77]:901".parse().unwrap();
        table.tickle(server.into(), client, t0);
        assert!(table.watching_ipv6() && !table.watching_ipv4());
        let segment = Segment {
            src: client,
            dst: "[2001:db8::10]:2049".parse().unwrap(),
            seq: 1,
            ack: 2,
            flags: FLAG_RST,
        };
        assert!(matches!(
            table.handle_segment(&segment, t0),
            Some(Answer::Gone { .. })
        ));
        assert!(!table.watching_ipv6());
    }
}

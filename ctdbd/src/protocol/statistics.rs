//! `struct ctdb_statistics`, the 488-byte STATISTICS reply (reference §6.11).
//!
//! ```text
//!   0 num_clients .. 96 timeouts.traverse (u32 each) | 100 pad
//! 104 reclock.ctdbd latency | 136 reclock.recd latency
//! 168 locks.{num_calls,num_current,num_pending,num_failed} | 184 locks.latency
//! 216 locks.buckets[16] | 280 total_calls .. 304 max_hop_count | 308 hop_count_bucket[16]
//! 372 pad | 376 call_latency | 408 childwrite_latency | 440 num_recoveries | 444 pad
//! 448 statistics_start_time | 464 statistics_current_time
//! 480 total_ro_delegations | 484 total_ro_revokes
//! ```
//! A latency counter is `i32 num, pad, f64 min, f64 max, f64 total` (32 bytes).

use super::control::Timeval;
use super::wire::{DecodeError, Reader, Writer};

/// Size of the structure on the wire.
pub const STATISTICS_SIZE: usize = 488;

/// A latency counter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Samples.
    pub num: i32,
    /// Smallest, seconds.
    pub min: f64,
    /// Largest, seconds.
    pub max: f64,
    /// Sum, seconds.
    pub total: f64,
}

impl Latency {
    pub(super) fn write(&self, w: &mut Writer) {
        w.i32(self.num)
            .pad(4)
            .f64(self.min)
            .f64(self.max)
            .f64(self.total);
    }

    pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let num = r.i32("latency.num")?;
        r.skip(4, "latency.pad")?;
        Ok(Self {
            num,
            min: r.f64("latency.min")?,
            max: r.f64("latency.max")?,
            total: r.f64("latency.total")?,
        })
    }

    /// Records one sample.
    pub fn record(&mut self, secs: f64) {
        if self.num == 0 || secs < self.min {
            self.min = secs;
        }
        if secs > self.max {
            self.max = secs;
        }
        self.num = self.num.saturating_add(1);
        self.total += secs;
    }
}

/// Per-operation packet counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeCounters {
    #[allow(missing_docs)]
    pub req_call: u32,
    #[allow(missing_docs)]
    pub reply_call: u32,
    #[allow(missing_docs)]
    pub req_dmaster: u32,
    #[allow(missing_docs)]
    pub reply_dmaster: u32,
    #[allow(missing_docs)]
    pub reply_error: u32,
    #[allow(missing_docs)]
    pub req_message: u32,
    #[allow(missing_docs)]
    pub req_control: u32,
    #[allow(missing_docs)]
    pub reply_control: u32,
    #[allow(missing_docs)]
    pub req_tunnel: u32,
}

/// Per-operation counters of client packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCounters {
    #[allow(missing_docs)]
    pub req_call: u32,
    #[allow(missing_docs)]
    pub req_message: u32,
    #[allow(missing_docs)]
    pub req_control: u32,
    #[allow(missing_docs)]
    pub req_tunnel: u32,
}

/// Daemon statistics, field names as CTDB's (see `ctdb-statistics(7)`).
#[derive(Debug, Clone, PartialEq, Default)]
#[allow(missing_docs)]
pub struct Statistics {
    pub num_clients: u32,
    pub frozen: u32,
    pub recovering: u32,
    pub client_packets_sent: u32,
    pub client_packets_recv: u32,
    pub node_packets_sent: u32,
    pub node_packets_recv: u32,
    pub keepalive_packets_sent: u32,
    pub keepalive_packets_recv: u32,
    pub node: NodeCounters,
    pub client: ClientCounters,
    pub timeouts_call: u32,
    pub timeouts_control: u32,
    pub timeouts_traverse: u32,
    pub reclock_ctdbd: Latency,
    pub reclock_recd: Latency,
    pub locks_num_calls: u32,
    pub locks_num_current: u32,
    pub locks_num_pending: u32,
    pub locks_num_failed: u32,
    pub locks_latency: Latency,
    pub locks_buckets: [u32; 16],
    pub total_calls: u32,
    pub pending_calls: u32,
    pub childwrite_calls: u32,
    pub pending_childwrite_calls: u32,
    pub memory_used: u32,
    pub last_counter: u32,
    pub max_hop_count: u32,
    pub hop_count_bucket: [u32; 16],
    pub call_latency: Latency,
    pub childwrite_latency: Latency,
    pub num_recoveries: u32,
    pub statistics_start_time: Timeval,
    pub statistics_current_time: Timeval,
    pub total_ro_delegations: u32,
    pub total_ro_revokes: u32,
}

/// `ctdb_statistics_list` (GET_STAT_HISTORY): an i32 count, 4 bytes of padding,
/// then that many 488-byte [`Statistics`].
pub fn encode_statistics_list(list: &[Statistics]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + list.len() * STATISTICS_SIZE);
    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for s in list {
        out.extend_from_slice(&s.encode());
    }
    out
}

/// Parses [`encode_statistics_list`]'s form.
pub fn decode_statistics_list(data: &[u8]) -> Result<Vec<Statistics>, DecodeError> {
    let mut r = Reader::new(data);
    let num = r.u32("statistics_list.num")? as usize;
    r.bytes(4, "statistics_list.padding")?;
    let mut list = Vec::with_capacity(num.min(1024));
    for _ in 0..num {
        list.push(Statistics::decode(
            r.bytes(STATISTICS_SIZE, "statistics_list.stats")?,
        )?);
    }
    r.finish("statistics_list")?;
    Ok(list)
}

impl Statistics {
    /// The counters of `self` minus those of `base` (an earlier reading of the same
    /// cumulative counters): what happened in between. Gauges (`num_clients`,
    /// `frozen`, `recovering`, `memory_used`) and times keep `self`'s values.
    pub fn since(&self, base: &Statistics) -> Statistics {
        let d = |a: u32, b: u32| a.wrapping_sub(b);
        let mut s = self.clone();
        s.client_packets_sent = d(self.client_packets_sent, base.client_packets_sent);
        s.client_packets_recv = d(self.client_packets_recv, base.client_packets_recv);
        s.node_packets_sent = d(self.node_packets_sent, base.node_packets_sent);
        s.node_packets_recv = d(self.node_packets_recv, base.node_packets_recv);
        s.keepalive_packets_sent = d(self.keepalive_packets_sent, base.keepalive_packets_sent);
        s.keepalive_packets_recv = d(self.keepalive_packets_recv, base.keepalive_packets_recv);
        s.node.req_call = d(self.node.req_call, base.node.req_call);
        s.node.reply_call = d(self.node.reply_call, base.node.reply_call);
        s.node.req_dmaster = d(self.node.req_dmaster, base.node.req_dmaster);
        s.node.reply_dmaster = d(self.node.reply_dmaster, base.node.reply_dmaster);
        s.node.reply_error = d(self.node.reply_error, base.node.reply_error);
        s.node.req_message = d(self.node.req_message, base.node.req_message);
        s.node.req_control = d(self.node.req_control, base.node.req_control);
        s.node.reply_control = d(self.node.reply_control, base.node.reply_control);
        s.node.req_tunnel = d(self.node.req_tunnel, base.node.req_tunnel);
        s.client.req_call = d(self.client.req_call, base.client.req_call);
        s.client.req_message = d(self.client.req_message, base.client.req_message);
        s.client.req_control = d(self.client.req_control, base.client.req_control);
        s.client.req_tunnel = d(self.client.req_tunnel, base.client.req_tunnel);
        s.timeouts_call = d(self.timeouts_call, base.timeouts_call);
        s.timeouts_control = d(self.timeouts_control, base.timeouts_control);
        s.timeouts_traverse = d(self.timeouts_traverse, base.timeouts_traverse);
        s.num_recoveries = d(self.num_recoveries, base.num_recoveries);
        s.total_calls = d(self.total_calls, base.total_calls);
        s
    }

    /// Wire form, exactly 488 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.num_clients)
            .u32(self.frozen)
            .u32(self.recovering)
            .u32(self.client_packets_sent)
            .u32(self.client_packets_recv)
            .u32(self.node_packets_sent)
            .u32(self.node_packets_recv)
            .u32(self.keepalive_packets_sent)
            .u32(self.keepalive_packets_recv);
        let n = &self.node;
        for v in [
            n.req_call,
            n.reply_call,
            n.req_dmaster,
            n.reply_dmaster,
            n.reply_error,
            n.req_message,
            n.req_control,
            n.reply_control,
            n.req_tunnel,
        ] {
            w.u32(v);
        }
        let c = &self.client;
        for v in [c.req_call, c.req_message, c.req_control, c.req_tunnel] {
            w.u32(v);
        }
        w.u32(self.timeouts_call)
            .u32(self.timeouts_control)
            .u32(self.timeouts_traverse)
            .pad(4);
        self.reclock_ctdbd.write(&mut w);
        self.reclock_recd.write(&mut w);
        w.u32(self.locks_num_calls)
            .u32(self.locks_num_current)
            .u32(self.locks_num_pending)
            .u32(self.locks_num_failed);
        self.locks_latency.write(&mut w);
        for v in self.locks_buckets {
            w.u32(v);
        }
        w.u32(self.total_calls)
            .u32(self.pending_calls)
            .u32(self.childwrite_calls)
            .u32(self.pending_childwrite_calls)
            .u32(self.memory_used)
            .u32(self.last_counter)
            .u32(self.max_hop_count);
        for v in self.hop_count_bucket {
            w.u32(v);
        }
        w.pad(4);
        self.call_latency.write(&mut w);
        self.childwrite_latency.write(&mut w);
        w.u32(self.num_recoveries).pad(4);
        w.i64(self.statistics_start_time.sec)
            .i64(self.statistics_start_time.usec)
            .i64(self.statistics_current_time.sec)
            .i64(self.statistics_current_time.usec)
            .u32(self.total_ro_delegations)
            .u32(self.total_ro_revokes);
        let bytes = w.into_bytes();
        debug_assert_eq!(bytes.len(), STATISTICS_SIZE);
        bytes
    }

    /// Parses exactly 488 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        if data.len() != STATISTICS_SIZE {
            return Err(DecodeError::Truncated {
                field: "statistics",
                needed: STATISTICS_SIZE,
                available: data.len(),
            });
        }
        let mut u = |f| r.u32(f);
        let mut s = Statistics {
            num_clients: u("num_clients")?,
            frozen: u("frozen")?,
            recovering: u("recovering")?,
            client_packets_sent: u("client_packets_sent")?,
            client_packets_recv: u("client_packets_recv")?,
            node_packets_sent: u("node_packets_sent")?,
            node_packets_recv: u("node_packets_recv")?,
            keepalive_packets_sent: u("keepalive_packets_sent")?,
            keepalive_packets_recv: u("keepalive_packets_recv")?,
            node: NodeCounters {
                req_call: u("node.req_call")?,
                reply_call: u("node.reply_call")?,
                req_dmaster: u("node.req_dmaster")?,
                reply_dmaster: u("node.reply_dmaster")?,
                reply_error: u("node.reply_error")?,
                req_message: u("node.req_message")?,
                req_control: u("node.req_control")?,
                reply_control: u("node.reply_control")?,
                req_tunnel: u("node.req_tunnel")?,
            },
            client: ClientCounters {
                req_call: u("client.req_call")?,
                req_message: u("client.req_message")?,
                req_control: u("client.req_control")?,
                req_tunnel: u("client.req_tunnel")?,
            },
            timeouts_call: u("timeouts.call")?,
            timeouts_control: u("timeouts.control")?,
            timeouts_traverse: u("timeouts.traverse")?,
            ..Default::default()
        };
        r.skip(4, "pad")?;
        s.reclock_ctdbd = Latency::read(&mut r)?;
        s.reclock_recd = Latency::read(&mut r)?;
        s.locks_num_calls = r.u32("locks.num_calls")?;
        s.locks_num_current = r.u32("locks.num_current")?;
        s.locks_num_pending = r.u32("locks.num_pending")?;
        s.locks_num_failed = r.u32("locks.num_failed")?;
        s.locks_latency = Latency::read(&mut r)?;
        for b in &mut s.locks_buckets {
            *b = r.u32("locks.buckets")?;
        }
        s.total_calls = r.u32("total_calls")?;
        s.pending_calls = r.u32("pending_calls")?;
        s.childwrite_calls = r.u32("childwrite_calls")?;
        s.pending_childwrite_calls = r.u32("pending_childwrite_calls")?;
        s.memory_used = r.u32("memory_used")?;
        s.last_counter = r.u32("__last_counter")?;
        s.max_hop_count = r.u32("max_hop_count")?;
        for b in &mut s.hop_count_bucket {
            *b = r.u32("hop_count_bucket")?;
        }
        r.skip(4, "pad")?;
        s.call_latency = Latency::read(&mut r)?;
        s.childwrite_latency = Latency::read(&mut r)?;
        s.num_recoveries = r.u32("num_recoveries")?;
        r.skip(4, "pad")?;
        s.statistics_start_time = Timeval {
            sec: r.i64("statistics_start_time")?,
            usec: r.i64("statistics_start_time")?,
        };
        s.statistics_current_time = Timeval {
            sec: r.i64("statistics_current_time")?,
            usec: r.i64("statistics_current_time")?,
        };
        s.total_ro_delegations = r.u32("total_ro_delegations")?;
        s.total_ro_revokes = r.u32("total_ro_revokes")?;
        r.finish("statistics")?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_reference_table() {
        let s = Statistics {
            num_clients: 0x11,
            timeouts_traverse: 0x22,
            locks_num_calls: 0x33,
            total_calls: 0x44,
            num_recoveries: 0x55,
            statistics_start_time: Timeval { sec: 0x66, usec: 0 },
            total_ro_revokes: 0x77,
            reclock_ctdbd: Latency {
                num: 0x88,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = s.encode();
        assert_eq!(b.len(), STATISTICS_SIZE);
        assert_eq!(b[0], 0x11);
        assert_eq!(b[96], 0x22);
        assert_eq!(b[104], 0x88);
        assert_eq!(b[168], 0x33);
        assert_eq!(b[280], 0x44);
        assert_eq!(b[440], 0x55);
        assert_eq!(b[448], 0x66);
        assert_eq!(b[484], 0x77);
        assert_eq!(Statistics::decode(&b).unwrap(), s);
    }

    #[test]
    fn short_reply_is_rejected() {
        assert!(Statistics::decode(&[0; 487]).is_err());
    }
}

//! `ctdb_db_statistics`, the GET_DB_STATISTICS reply (`ctdb dbstatistics`).
//!
//! ```text
//!   0 locks.{num_calls,num_current,num_pending,num_failed} u32 | 16 locks.latency
//!  48 locks.buckets[16] u32 | 112 vacuum.latency | 144 db_ro_delegations u32
//! 148 db_ro_revokes u32 | 152 hop_count_bucket[16] u32 | 216 num_hot_keys u32
//! 220 pad | 224 hot key slots: 10 × (count u32 | pad 4 | pointer 8 | keylen u64)
//! 464 the keys' bytes, back to back, in slot order
//! ```
//!
//! The slots mirror a C array of `TDB_DATA`: the pointer field is meaningless on
//! the wire (sent as zero, ignored on receipt) and only the length counts. All ten
//! slots are always present; CTDB 4.17 also always sends 10 as `num_hot_keys`,
//! whatever is filled, and its tool prints that many slots, so we do the same.
//! A latency counter is [`Latency`] (32 bytes).

use super::statistics::Latency;
use super::wire::{DecodeError, Reader, Writer};

/// Buckets in each histogram.
pub const COUNT_BUCKETS: usize = 16;
/// Hot-key slots.
pub const HOT_KEYS: usize = 10;
/// Size without the keys' bytes.
pub const DB_STATISTICS_FIXED_SIZE: usize = 464;

/// One hot-key slot: how often the record was fetched, and its key (empty when
/// the slot is unused).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HotKey {
    /// Fetch count.
    pub count: u32,
    /// The key.
    pub key: Vec<u8>,
}

/// Per-database counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbStatistics {
    /// Lock requests made.
    pub locks_num_calls: u32,
    /// Lock requests being served.
    pub locks_num_current: u32,
    /// Lock requests waiting.
    pub locks_num_pending: u32,
    /// Lock requests that failed.
    pub locks_num_failed: u32,
    /// How long locks took.
    pub locks_latency: Latency,
    /// Lock waits by power-of-two duration.
    pub locks_buckets: [u32; COUNT_BUCKETS],
    /// How long vacuum runs took.
    pub vacuum_latency: Latency,
    /// Read-only delegations granted.
    pub db_ro_delegations: u32,
    /// Read-only delegations revoked.
    pub db_ro_revokes: u32,
    /// Calls by power-of-two hop count.
    pub hop_count_bucket: [u32; COUNT_BUCKETS],
    /// The `num_hot_keys` field (CTDB always sends [`HOT_KEYS`]).
    pub num_hot_keys: u32,
    /// The ten slots.
    pub hot_keys: [HotKey; HOT_KEYS],
}

impl DbStatistics {
    /// Counters all zero, with `num_hot_keys` as CTDB sends it.
    pub fn empty() -> Self {
        Self {
            num_hot_keys: HOT_KEYS as u32,
            ..Self::default()
        }
    }

    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.locks_num_calls)
            .u32(self.locks_num_current)
            .u32(self.locks_num_pending)
            .u32(self.locks_num_failed);
        self.locks_latency.write(&mut w);
        for b in self.locks_buckets {
            w.u32(b);
        }
        self.vacuum_latency.write(&mut w);
        w.u32(self.db_ro_delegations).u32(self.db_ro_revokes);
        for b in self.hop_count_bucket {
            w.u32(b);
        }
        w.u32(self.num_hot_keys).pad(4);
        for slot in &self.hot_keys {
            w.u32(slot.count).pad(4).u64(0).u64(slot.key.len() as u64);
        }
        for slot in &self.hot_keys {
            w.bytes(&slot.key);
        }
        w.into_bytes()
    }

    /// Parses the wire form; the keys' bytes must be exactly what the slots'
    /// lengths announce.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let mut s = Self {
            locks_num_calls: r.u32("db_statistics.locks.num_calls")?,
            locks_num_current: r.u32("db_statistics.locks.num_current")?,
            locks_num_pending: r.u32("db_statistics.locks.num_pending")?,
            locks_num_failed: r.u32("db_statistics.locks.num_failed")?,
            locks_latency: Latency::read(&mut r)?,
            ..Self::default()
        };
        for b in &mut s.locks_buckets {
            *b = r.u32("db_statistics.locks.buckets")?;
        }
        s.vacuum_latency = Latency::read(&mut r)?;
        s.db_ro_delegations = r.u32("db_statistics.db_ro_delegations")?;
        s.db_ro_revokes = r.u32("db_statistics.db_ro_revokes")?;
        for b in &mut s.hop_count_bucket {
            *b = r.u32("db_statistics.hop_count_bucket")?;
        }
        s.num_hot_keys = r.u32("db_statistics.num_hot_keys")?;
        r.skip(4, "db_statistics.pad")?;
        let mut lengths = [0usize; HOT_KEYS];
        for (slot, len) in s.hot_keys.iter_mut().zip(&mut lengths) {
            slot.count = r.u32("db_statistics.hot_keys.count")?;
            r.skip(4, "db_statistics.hot_keys.pad")?;
            r.skip(8, "db_statistics.hot_keys.dptr")?;
            let announced = r.u64("db_statistics.hot_keys.dsize")?;
            *len = usize::try_from(announced)
                .ok()
                .filter(|&n| n <= r.remaining())
                .ok_or(DecodeError::Invalid {
                    field: "db_statistics.hot_keys.dsize",
                    value: announced,
                })?;
        }
        for (slot, len) in s.hot_keys.iter_mut().zip(lengths) {
            slot.key = r.bytes(len, "db_statistics.hot_keys.key")?.to_vec();
        }
        r.finish("db_statistics")?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_at_their_offsets() {
        let mut s = DbStatistics::empty();
        s.locks_num_calls = 0x11;
        s.locks_latency.num = 0x22;
        s.locks_buckets[0] = 0x33;
        s.vacuum_latency.num = 0x44;
        s.db_ro_delegations = 0x55;
        s.db_ro_revokes = 0x66;
        s.hop_count_bucket[0] = 0x77;
        s.hot_keys[0] = HotKey {
            count: 0x88,
            key: b"ab".to_vec(),
        };
        s.hot_keys[9] = HotKey {
            count: 0x99,
            key: b"xyz".to_vec(),
        };
        let b = s.encode();
        assert_eq!(b.len(), DB_STATISTICS_FIXED_SIZE + 5);
        assert_eq!(b[0], 0x11);
        assert_eq!(b[16], 0x22);
        assert_eq!(b[48], 0x33);
        assert_eq!(b[112], 0x44);
        assert_eq!(b[144], 0x55);
        assert_eq!(b[148], 0x66);
        assert_eq!(b[152], 0x77);
        assert_eq!(b[216], 10);
        assert_eq!(b[224], 0x88);
        assert_eq!(b[240], 2, "slot 0's key length");
        assert_eq!(b[224 + 9 * 24], 0x99);
        assert_eq!(b[224 + 9 * 24 + 16], 3, "slot 9's key length");
        assert_eq!(&b[464..], b"abxyz");
        assert_eq!(DbStatistics::decode(&b).unwrap(), s);
    }

    #[test]
    fn empty_is_fixed_size_and_round_trips() {
        let b = DbStatistics::empty().encode();
        assert_eq!(b.len(), DB_STATISTICS_FIXED_SIZE);
        assert_eq!(DbStatistics::decode(&b).unwrap(), DbStatistics::empty());
    }

    #[test]
    fn keys_must_match_their_lengths() {
        let mut s = DbStatistics::empty();
        s.hot_keys[3].key = b"key".to_vec();
        let b = s.encode();
        // One byte short, one byte extra, a length past the end.
        assert!(DbStatistics::decode(&b[..b.len() - 1]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(DbStatistics::decode(&extra).is_err());
        let mut huge = b.clone();
        huge[224 + 16] = 0xff;
        huge[224 + 23] = 0xff;
        assert!(DbStatistics::decode(&huge).is_err());
        assert!(DbStatistics::decode(&b[..DB_STATISTICS_FIXED_SIZE - 1]).is_err());
    }
}

//! The ltdb header: the 24 bytes in front of every value stored in a clustered TDB
//! file (volatile, replicated and persistent alike), and the record flags it
//! carries (reference/ctdb-protocol-samba.md §3).
//!
//! Pure: values in, values out. smbd reads this header itself to decide whether it
//! may use its local copy (§3.1), so the layout and the flag bits must be exactly
//! CTDB's.
//!
//! ```text
//!  0               8       12      16      20      24
//! +---------------+-------+-------+-------+-------+----------------
//! | rsn (u64)     |dmaster|reservd| flags |padding| value bytes ...
//! +---------------+-------+-------+-------+-------+----------------
//! ```
//! All fields are host byte order in CTDB (a C struct written as is); every node
//! we run on is little-endian x86-64 or arm64, and so are the files smbd writes, so
//! we read and write little-endian.

use thiserror::Error;

/// Length of the header in bytes, padding included: a stored value of exactly this
/// length is an empty record.
pub const HEADER_LEN: usize = 24;

/// Record flag bits of [`LtdbHeader::flags`] (§3).
pub mod flags {
    /// The record has been migrated at least once while it had data, so even an
    /// empty copy must be kept (vacuuming takes the long way).
    pub const MIGRATED_WITH_DATA: u32 = 0x0001_0000;
    /// Transient: set only while a vacuum migration is being stored; never on disk.
    pub const VACUUM_MIGRATED: u32 = 0x0002_0000;
    /// Transient: a header made up for a missing record; never on disk.
    pub const AUTOMATIC: u32 = 0x0004_0000;
    /// On the dmaster: read-only copies of this record exist on other nodes.
    pub const RO_HAVE_DELEGATIONS: u32 = 0x0100_0000;
    /// On a non-dmaster: this local copy is a valid read-only delegation.
    pub const RO_HAVE_READONLY: u32 = 0x0200_0000;
    /// On the dmaster: delegations are being revoked; calls for the record wait.
    pub const RO_REVOKING_READONLY: u32 = 0x0400_0000;
    /// On the dmaster: revocation finished; the next call clears all RO flags.
    pub const RO_REVOKE_COMPLETE: u32 = 0x0800_0000;
    /// Every read-only delegation bit.
    pub const RO_FLAGS: u32 =
        RO_HAVE_DELEGATIONS | RO_HAVE_READONLY | RO_REVOKING_READONLY | RO_REVOKE_COMPLETE;
    /// The bits that must never be written to a file.
    pub const TRANSIENT: u32 = VACUUM_MIGRATED | AUTOMATIC;
}

/// The header in front of a clustered record's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LtdbHeader {
    /// Record sequence number: grows each time the record changes hands (§4.5).
    pub rsn: u64,
    /// The pnn of the node holding the authoritative copy.
    pub dmaster: u32,
    /// Unused by CTDB; carried through unchanged.
    pub reserved1: u32,
    /// Record flags ([`flags`]).
    pub flags: u32,
    /// The C structure's trailing padding, kept as read so that a record passes
    /// through us byte for byte; zero in headers we make.
    pub padding: [u8; 4],
}

/// A stored value too short to hold a header.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("record of {len} bytes is shorter than the {HEADER_LEN}-byte ltdb header")]
pub struct ShortRecord {
    /// The stored value's length.
    pub len: usize,
}

impl LtdbHeader {
    /// A fresh header: the given rsn and dmaster, no flags, zero padding.
    pub fn new(rsn: u64, dmaster: u32) -> Self {
        LtdbHeader {
            rsn,
            dmaster,
            ..LtdbHeader::default()
        }
    }

    /// The header's 24 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0u8; HEADER_LEN];
        bytes[0..8].copy_from_slice(&self.rsn.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.dmaster.to_le_bytes());
        bytes[12..16].copy_from_slice(&self.reserved1.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.flags.to_le_bytes());
        bytes[20..24].copy_from_slice(&self.padding);
        bytes
    }

    /// Reads the header from the first 24 bytes of `bytes` (the rest is ignored).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ShortRecord> {
        let Some(head) = bytes.get(..HEADER_LEN) else {
            return Err(ShortRecord { len: bytes.len() });
        };
        let u32_at =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let mut rsn = [0u8; 8];
        rsn.copy_from_slice(&head[0..8]);
        Ok(LtdbHeader {
            rsn: u64::from_le_bytes(rsn),
            dmaster: u32_at(8),
            reserved1: u32_at(12),
            flags: u32_at(16),
            padding: [head[20], head[21], head[22], head[23]],
        })
    }

    /// Whether every bit of `flag` is set.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }
}

/// Splits a stored value into its header and the application's bytes.
pub fn decode(stored: &[u8]) -> Result<(LtdbHeader, &[u8]), ShortRecord> {
    let header = LtdbHeader::from_bytes(stored)?;
    Ok((header, &stored[HEADER_LEN..]))
}

/// The stored form of `value` behind `header`.
pub fn encode(header: &LtdbHeader, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(HEADER_LEN + value.len());
    stored.extend_from_slice(&header.to_bytes());
    stored.extend_from_slice(value);
    stored
}

/// Whether a stored value is an empty record: a header and nothing else (created
/// empty, or deleted and not yet vacuumed; §3 treats both alike).
pub fn is_empty_record(stored: &[u8]) -> bool {
    stored.len() == HEADER_LEN
}

/// The stored form of an empty record with `header`.
pub fn empty_record(header: &LtdbHeader) -> Vec<u8> {
    header.to_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A header laid out by hand, byte by byte, as §3 places the fields.
    #[test]
    fn layout_matches_the_reference() {
        let header = LtdbHeader {
            rsn: 0x0102_0304_0506_0708,
            dmaster: 2,
            reserved1: 0xaabb_ccdd,
            flags: flags::MIGRATED_WITH_DATA | flags::RO_HAVE_READONLY,
            padding: [0xde, 0xad, 0xbe, 0xef],
        };
        let expected: [u8; 24] = [
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // rsn
            0x02, 0x00, 0x00, 0x00, // dmaster
            0xdd, 0xcc, 0xbb, 0xaa, // reserved1
            0x00, 0x00, 0x01, 0x02, // flags 0x02010000
            0xde, 0xad, 0xbe, 0xef, // padding, as read
        ];
        assert_eq!(header.to_bytes(), expected);
        assert_eq!(LtdbHeader::from_bytes(&expected), Ok(header));
    }

    #[test]
    fn decode_splits_header_and_value() {
        let header = LtdbHeader::new(7, 1);
        let stored = encode(&header, b"share mode");
        assert_eq!(stored.len(), HEADER_LEN + 10);
        let (read, value) = decode(&stored).unwrap();
        assert_eq!(read, header);
        assert_eq!(value, b"share mode");
        assert!(!is_empty_record(&stored));
    }

    #[test]
    fn empty_record_is_just_a_header() {
        let header = LtdbHeader::new(3, 0);
        let stored = empty_record(&header);
        assert!(is_empty_record(&stored));
        let (read, value) = decode(&stored).unwrap();
        assert_eq!(read, header);
        assert!(value.is_empty());
        assert_eq!(read.padding, [0; 4], "headers we make carry zero padding");
    }

    #[test]
    fn short_records_are_refused() {
        for len in 0..HEADER_LEN {
            let stored = vec![0u8; len];
            assert_eq!(decode(&stored), Err(ShortRecord { len }));
            assert!(!is_empty_record(&stored));
        }
        assert_eq!(
            ShortRecord { len: 5 }.to_string(),
            "record of 5 bytes is shorter than the 24-byte ltdb header"
        );
    }

    #[test]
    fn flag_values_are_ctdbs() {
        assert_eq!(flags::RO_FLAGS, 0x0f00_0000);
        assert_eq!(flags::TRANSIENT, 0x0006_0000);
        let header = LtdbHeader {
            flags: flags::RO_HAVE_DELEGATIONS | flags::MIGRATED_WITH_DATA,
            ..LtdbHeader::default()
        };
        assert!(header.has(flags::RO_HAVE_DELEGATIONS));
        assert!(header.has(flags::MIGRATED_WITH_DATA));
        assert!(!header.has(flags::RO_HAVE_READONLY));
        assert!(!header.has(flags::RO_FLAGS));
    }

    proptest! {
        /// Any stored value of at least 24 bytes comes back byte for byte, padding
        /// included.
        #[test]
        fn stored_bytes_round_trip(stored in proptest::collection::vec(any::<u8>(), HEADER_LEN..200)) {
            let (header, value) = decode(&stored).unwrap();
            prop_assert_eq!(encode(&header, value), stored);
        }
    }
}

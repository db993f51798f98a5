//! How big a record's key and value may be, and the checks every way in applies
//! (client and node calls, record hand-overs, UPDATE_RECORD, TRANS3_COMMIT,
//! recovery pushes).
//!
//! CTDB sets no limit of its own beyond the packet size; libtdb stores key and
//! value lengths as u32. Ours follow from the frame limit
//! ([`crate::protocol::Framer::DEFAULT_MAX_LEN`], 64 MiB): a record we accept must
//! always fit, with its key and the packet headers, into the one packet that
//! hands it to another node (REQ_DMASTER / REPLY_DMASTER), or a record could be
//! stuck where it is or, worse, be given up by one node and refused by the next.
//! Half the frame for a value leaves room for that and for a few of them in a
//! marshall buffer. Keys stay far smaller: Samba's are a file id or a name (tens
//! of bytes); 64 KiB is generous and keeps a bad key from filling memory in the
//! per-key queues.
//!
//! Pure: no I/O.

use thiserror::Error;

use super::ltdb::HEADER_LEN;
use crate::protocol::marshall::RecData;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// The longest value accepted (without the ltdb header), in bytes. Call data is
/// held to the same limit.
pub const MAX_VALUE_LEN: usize = 32 * 1024 * 1024;

/// A field over its limit; its text names the field.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
#[error("{field} of {len} bytes is over the limit of {limit} bytes")]
pub struct OverLimit {
    /// The field: `key`, `value`, `calldata` or `record` (a stored record: ltdb
    /// header and value).
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The limit it is over.
    pub limit: usize,
}

fn at_most(field: &'static str, len: usize, limit: usize) -> Result<(), OverLimit> {
    if len > limit {
        Err(OverLimit { field, len, limit })
    } else {
        Ok(())
    }
}

/// A key.
pub fn check_key(key: &[u8]) -> Result<(), OverLimit> {
    at_most("key", key.len(), MAX_KEY_LEN)
}

/// A call's key and call data.
pub fn check_call(key: &[u8], calldata: &[u8]) -> Result<(), OverLimit> {
    check_key(key)?;
    at_most("calldata", calldata.len(), MAX_VALUE_LEN)
}

/// A key and a value without its ltdb header (a record being handed over).
pub fn check_record(key: &[u8], value: &[u8]) -> Result<(), OverLimit> {
    check_key(key)?;
    at_most("value", value.len(), MAX_VALUE_LEN)
}

/// Every record of a marshall buffer (whose data carry the ltdb header); the
/// first one over a limit, with its index.
pub fn check_records(records: &[RecData]) -> Result<(), (usize, OverLimit)> {
    for (index, record) in records.iter().enumerate() {
        check_key(&record.key)
            .and_then(|()| at_most("record", record.data.len(), MAX_VALUE_LEN + HEADER_LEN))
            .map_err(|e| (index, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::Framer;

    #[test]
    fn limits_fit_a_record_into_one_packet() {
        // REQ_DMASTER: 60 bytes of header and fields, key, value, 4 bytes of flags.
        let biggest_hand_over = 60 + MAX_KEY_LEN + MAX_VALUE_LEN + 4;
        assert!(biggest_hand_over <= Framer::DEFAULT_MAX_LEN as usize);
        // And fits libtdb's u32 lengths with its own record header.
        assert!(MAX_KEY_LEN + HEADER_LEN + MAX_VALUE_LEN < u32::MAX as usize);
    }

    #[test]
    fn at_the_limit_passes_one_byte_over_fails_naming_the_field() {
        let key = vec![0u8; MAX_KEY_LEN];
        let value = vec![0u8; MAX_VALUE_LEN];
        assert_eq!(check_key(&key), Ok(()));
        assert_eq!(check_record(&key, &value), Ok(()));
        assert_eq!(check_call(&key, &value), Ok(()));

        let long_key = vec![0u8; MAX_KEY_LEN + 1];
        let error = check_record(&long_key, b"v").unwrap_err();
        assert_eq!(
            error,
            OverLimit {
                field: "key",
                len: MAX_KEY_LEN + 1,
                limit: MAX_KEY_LEN
            }
        );
        assert_eq!(
            error.to_string(),
            "key of 65537 bytes is over the limit of 65536 bytes"
        );
        let long_value = vec![0u8; MAX_VALUE_LEN + 1];
        assert_eq!(check_record(b"k", &long_value).unwrap_err().field, "value");
        assert_eq!(check_call(b"k", &long_value).unwrap_err().field, "calldata");
    }

    #[test]
    fn marshall_records_are_checked_with_their_header() {
        let ok = RecData {
            reqid: 0,
            key: b"k".to_vec(),
            data: vec![0u8; MAX_VALUE_LEN + HEADER_LEN],
        };
        let too_big = RecData {
            reqid: 0,
            key: b"k2".to_vec(),
            data: vec![0u8; MAX_VALUE_LEN + HEADER_LEN + 1],
        };
        let long_key = RecData {
            reqid: 0,
            key: vec![1u8; MAX_KEY_LEN + 1],
            data: vec![0u8; HEADER_LEN],
        };
        assert_eq!(check_records(std::slice::from_ref(&ok)), Ok(()));
        assert_eq!(check_records(&[]), Ok(()));
        let (index, error) = check_records(&[ok.clone(), too_big]).unwrap_err();
        assert_eq!((index, error.field), (1, "record"));
        let (index, error) = check_records(&[long_key, ok]).unwrap_err();
        assert_eq!((index, error.field), (0, "key"));
    }
}

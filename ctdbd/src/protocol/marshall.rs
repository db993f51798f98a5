//! Records on the wire: `ctdb_rec_data` and the marshall buffer that carries many of
//! them (reference/ctdb-protocol-samba.md §6.4, §6.6, §7.3, §7.4).
//!
//! One [`RecData`] is the payload of TRAVERSE_DATA and of each traverse message to a
//! client; a [`MarshallBuffer`] is the payload of TRANS3_COMMIT, UPDATE_RECORD,
//! VACUUM_FETCH, TRY_DELETE_RECORDS and of the record messages of DB_PULL / DB_PUSH.
//! The record's `data` is opaque here: in every one of those uses it is the 24-byte
//! ltdb header followed by the value (only the header, for vacuuming), which the
//! database layer interprets.
//!
//! Decoding trusts no length: a record whose `length` is not exactly
//! `16 + keylen + datalen`, a count that the input cannot hold, or bytes after the
//! last record are errors naming the field.

use super::wire::{len_u32, DecodeError, Reader, Writer};

/// Size of the ltdb header at the front of a record's `data` (samba §3).
pub const LTDB_HEADER_SIZE: usize = 24;

/// Size of a `ctdb_rec_data` without its key and data: length, reqid, keylen, datalen.
pub const REC_DATA_FIXED_SIZE: usize = 16;

/// `ctdb_rec_data`: one record, with the request it belongs to.
///
/// ```text
///  0 length u32 (= 16 + keylen + datalen) | 4 reqid u32 | 8 keylen u32
/// 12 datalen u32 | 16 key | data (ltdb header + value)
/// ```
///
/// No padding follows: records in a buffer are back to back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecData {
    /// The request (traverse, pull) this record answers; 0 from smbd.
    pub reqid: u32,
    /// The record's key.
    pub key: Vec<u8>,
    /// The stored bytes: ltdb header and value.
    pub data: Vec<u8>,
}

impl RecData {
    /// The record that ends a traverse stream: empty key and empty data (samba §6.6).
    pub fn end_marker(reqid: u32) -> Self {
        Self {
            reqid,
            key: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Whether this is a traverse end marker.
    pub fn is_end_marker(&self) -> bool {
        self.key.is_empty() && self.data.is_empty()
    }

    /// The ltdb header at the front of `data`, if `data` is long enough to hold one.
    pub fn ltdb_header(&self) -> Option<&[u8; LTDB_HEADER_SIZE]> {
        self.data.first_chunk()
    }

    /// The value after the ltdb header (empty if `data` holds no more than a header).
    pub fn value(&self) -> &[u8] {
        self.data.get(LTDB_HEADER_SIZE..).unwrap_or_default()
    }

    /// Bytes this record takes on the wire: its `length` field.
    pub fn encoded_len(&self) -> usize {
        REC_DATA_FIXED_SIZE + self.key.len() + self.data.len()
    }

    fn write(&self, w: &mut Writer) {
        let length = u32::try_from(self.encoded_len()).expect("record shorter than 4 GiB");
        w.u32(length)
            .u32(self.reqid)
            .u32(len_u32(&self.key))
            .u32(len_u32(&self.data))
            .bytes(&self.key)
            .bytes(&self.data);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (reqid, key, data) = Self::read_borrowed(r)?;
        Ok(Self {
            reqid,
            key: key.to_vec(),
            data: data.to_vec(),
        })
    }

    /// One record, borrowed from the buffer it is read from.
    fn read_borrowed<'a>(r: &mut Reader<'a>) -> Result<RecRef<'a>, DecodeError> {
        let length = r.u32("rec_data.length")? as usize;
        if length < REC_DATA_FIXED_SIZE {
            return Err(DecodeError::Invalid {
                field: "rec_data.length",
                value: length as u64,
            });
        }
        // Everything of the record after its length field, so that keylen and
        // datalen are checked against the record and not the rest of the buffer.
        let mut rec = Reader::new(r.bytes(length - 4, "rec_data.length")?);
        let reqid = rec.u32("rec_data.reqid")?;
        let keylen = rec.u32("rec_data.keylen")? as usize;
        let datalen = rec.u32("rec_data.datalen")? as usize;
        let key = rec.bytes(keylen, "rec_data.key")?;
        let data = rec.bytes(datalen, "rec_data.data")?;
        rec.finish("rec_data")?;
        Ok((reqid, key, data))
    }

    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly one record: its `length` must cover `data` exactly, as smbd
    /// requires of a traverse message (samba §6.6).
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let rec = Self::read(&mut r)?;
        r.finish("rec_data")?;
        Ok(rec)
    }
}

/// A marshall buffer written a record at a time ([`MarshallBuffer::writer`]).
#[derive(Debug)]
pub struct MarshallWriter {
    bytes: Vec<u8>,
    count: u32,
}

impl MarshallWriter {
    /// Appends one record.
    pub fn push(&mut self, reqid: u32, key: &[u8], data: &[u8]) {
        let length = u32::try_from(REC_DATA_FIXED_SIZE + key.len() + data.len())
            .expect("record shorter than 4 GiB");
        for field in [length, reqid, len_u32(key), len_u32(data)] {
            self.bytes.extend_from_slice(&field.to_le_bytes());
        }
        self.bytes.extend_from_slice(key);
        self.bytes.extend_from_slice(data);
        self.count += 1;
    }

    /// Records so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the buffer so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no record yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The wire form.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.bytes
    }
}

/// A record read in place from a marshall buffer: reqid, key, data.
pub type RecRef<'a> = (u32, &'a [u8], &'a [u8]);

/// `ctdb_marshall_buffer`: a database's records, back to back.
///
/// ```text
///  0 db_id u32 | 4 count u32 | 8 records (ctdb_rec_data × count, no padding)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MarshallBuffer {
    /// The database the records belong to.
    pub db_id: u32,
    /// The records, in order.
    pub records: Vec<RecData>,
}

impl MarshallBuffer {
    /// An empty buffer for `db_id`.
    pub fn new(db_id: u32) -> Self {
        Self {
            db_id,
            records: Vec::new(),
        }
    }

    /// Bytes the buffer takes on the wire; the recovery pull cuts its buffers at
    /// `RecBufferSizeLimit` by this size (samba §7.3).
    pub fn encoded_len(&self) -> usize {
        8 + self.records.iter().map(RecData::encoded_len).sum::<usize>()
    }

    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        Self::encode_records(
            self.db_id,
            self.records
                .iter()
                .map(|r| (r.reqid, r.key.as_slice(), r.data.as_slice())),
        )
    }

    /// The wire form of a buffer of `records` (reqid, key, data) for `db_id`,
    /// written straight from borrowed records: a recovery's hundreds of
    /// thousands of records are neither copied into [`RecData`]s first nor
    /// moved while the buffer grows.
    pub fn encode_records<'a, I>(db_id: u32, records: I) -> Vec<u8>
    where
        I: Iterator<Item = (u32, &'a [u8], &'a [u8])> + Clone,
    {
        let (count, len) = records
            .clone()
            .fold((0usize, 8usize), |(n, len), (_, k, d)| {
                (n + 1, len + REC_DATA_FIXED_SIZE + k.len() + d.len())
            });
        let mut w = Writer::with_capacity(len);
        let count = u32::try_from(count).expect("fewer than 4 G records");
        w.u32(db_id).u32(count);
        for (reqid, key, data) in records {
            let length = u32::try_from(REC_DATA_FIXED_SIZE + key.len() + data.len())
                .expect("record shorter than 4 GiB");
            w.u32(length)
                .u32(reqid)
                .u32(len_u32(key))
                .u32(len_u32(data))
                .bytes(key)
                .bytes(data);
        }
        w.into_bytes()
    }

    /// An encoder that appends records one at a time (a recovery's pull cuts
    /// its batches as it walks the database).
    pub fn writer(db_id: u32) -> MarshallWriter {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&db_id.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        MarshallWriter { bytes, count: 0 }
    }

    /// Parses the wire form as [`Self::decode`] does, without copying a
    /// record: the db_id and the records, borrowed from `data` (a recovery's
    /// batches of thousands of records are merged or stored from where they
    /// arrived).
    pub fn decode_borrowed(data: &[u8]) -> Result<(u32, Vec<RecRef<'_>>), DecodeError> {
        let mut r = Reader::new(data);
        let db_id = r.u32("marshall_buffer.db_id")?;
        let count = r.count(REC_DATA_FIXED_SIZE, "marshall_buffer.count")?;
        let records = (0..count)
            .map(|_| RecData::read_borrowed(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("marshall_buffer")?;
        Ok((db_id, records))
    }

    /// Parses the wire form: exactly `count` records and nothing after them.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let db_id = r.u32("marshall_buffer.db_id")?;
        let count = r.count(REC_DATA_FIXED_SIZE, "marshall_buffer.count")?;
        let records = (0..count)
            .map(|_| RecData::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("marshall_buffer")?;
        Ok(Self { db_id, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A record as smbd stores it: rsn 1, dmaster 0, flags MIGRATED_WITH_DATA.
    fn header_and(value: &[u8]) -> Vec<u8> {
        let mut data = hex("01000000 00000000 00000000 00000000 00000100 00000000");
        data.extend(value);
        data
    }

    #[test]
    fn rec_data_layout_follows_the_reference() {
        let rec = RecData {
            reqid: 4,
            key: b"k1".to_vec(),
            data: header_and(b"v1"),
        };
        let bytes = rec.encode();
        // 16 + 2 + 24 + 2 = 44: no padding after the record.
        assert_eq!(bytes.len(), 44);
        assert_eq!(
            &bytes[..18],
            &hex("2c000000 04000000 02000000 1a000000 6b31")
        );
        assert_eq!(RecData::decode(&bytes), Ok(rec.clone()));
        assert_eq!(rec.value(), b"v1");
        assert_eq!(rec.ltdb_header().map(|h| h[16]), Some(0));
        assert_eq!(rec.ltdb_header().map(|h| h[18]), Some(1));
    }

    #[test]
    fn traverse_end_marker_is_sixteen_bytes() {
        // samba §6.6 and Appendix C: keylen 0, datalen 0, the traverse's reqid.
        let end = RecData::end_marker(4);
        let bytes = end.encode();
        assert_eq!(bytes, hex("10000000 04000000 00000000 00000000"));
        let back = RecData::decode(&bytes).unwrap();
        assert!(back.is_end_marker());
        assert_eq!(back.ltdb_header(), None);
        assert_eq!(back.value(), b"");
    }

    #[test]
    fn marshall_buffer_records_are_back_to_back() {
        let buf = MarshallBuffer {
            db_id: 0x6cf2_837d,
            records: vec![
                RecData {
                    reqid: 0,
                    key: b"a".to_vec(),
                    data: header_and(b"xyz"),
                },
                RecData {
                    reqid: 0,
                    key: b"__db_sequence_number__\0".to_vec(),
                    data: header_and(&7u64.to_le_bytes()),
                },
            ],
        };
        let bytes = buf.encode();
        assert_eq!(&bytes[..8], &hex("7d83f26c 02000000"));
        // First record: 16 + 1 + 27 = 44 bytes; the second starts right after it.
        assert_eq!(&bytes[8..12], &hex("2c000000"));
        assert_eq!(&bytes[52..56], &(16u32 + 23 + 32).to_le_bytes());
        assert_eq!(bytes.len(), buf.encoded_len());
        assert_eq!(MarshallBuffer::decode(&bytes), Ok(buf));
        let empty = MarshallBuffer::new(9);
        assert_eq!(empty.encode(), hex("09000000 00000000"));
        assert_eq!(MarshallBuffer::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn bad_lengths_name_the_field() {
        let rec = RecData {
            reqid: 1,
            key: b"key".to_vec(),
            data: header_and(b"value"),
        }
        .encode();
        // Truncated: the length field promises more than is there.
        assert!(matches!(
            RecData::decode(&rec[..rec.len() - 1]),
            Err(DecodeError::Truncated {
                field: "rec_data.length",
                ..
            })
        ));
        // Over-long: bytes after the record.
        let mut long = rec.clone();
        long.push(0);
        assert!(matches!(
            RecData::decode(&long),
            Err(DecodeError::TrailingBytes {
                what: "rec_data",
                extra: 1
            })
        ));
        // A length larger than key and data, with the extra bytes inside it.
        let mut padded = rec.clone();
        padded.extend([0; 4]);
        padded[0] += 4;
        assert!(matches!(
            RecData::decode(&padded),
            Err(DecodeError::TrailingBytes {
                what: "rec_data",
                extra: 4
            })
        ));
        // A datalen that runs past the record's own length.
        let mut overrun = rec.clone();
        overrun[12] += 1;
        assert!(matches!(
            RecData::decode(&overrun),
            Err(DecodeError::Truncated {
                field: "rec_data.data",
                ..
            })
        ));
        // A length below the fixed part.
        assert!(matches!(
            RecData::decode(&hex("0c000000 00000000 00000000")),
            Err(DecodeError::Invalid {
                field: "rec_data.length",
                value: 12
            })
        ));
        // A count the buffer cannot hold is refused before anything is allocated.
        assert!(matches!(
            MarshallBuffer::decode(&hex("01000000 ffffffff 10000000")),
            Err(DecodeError::Truncated {
                field: "marshall_buffer.count",
                ..
            })
        ));
        // Fewer records than the count says.
        let mut one = hex("01000000 02000000");
        one.extend(&rec);
        one.extend([0; 16]);
        assert!(matches!(
            MarshallBuffer::decode(&one),
            Err(DecodeError::Invalid {
                field: "rec_data.length",
                value: 0
            })
        ));
        // A record after the last one counted.
        let mut extra = hex("01000000 01000000");
        extra.extend(&rec);
        extra.extend(&rec);
        assert!(matches!(
            MarshallBuffer::decode(&extra),
            Err(DecodeError::TrailingBytes {
                what: "marshall_buffer",
                ..
            })
        ));
    }
}

//! Database calls and record migration: the bodies of REQ_CALL, REPLY_CALL,
//! REQ_DMASTER, REPLY_DMASTER and REPLY_ERROR (reference/ctdb-protocol-samba.md §4.2,
//! §4.4; ctdb-protocol-core.md §4.4, §4.6).
//!
//! Offsets below count from the start of the packet; the 32-byte header is
//! [`super::packet::Header`]'s. Each body is read by [`super::packet::Packet::decode`]
//! after the header and written by [`super::packet::Packet::encode`] before the
//! padding. Whatever follows a body's last field is padding: a 4.17 daemon pads to 8
//! and never sends a packet shorter than the C structure, smbd sends exact lengths
//! (§1.2), and both are accepted. What the calls *do* (lmaster, dmaster, rsn) belongs
//! to the database layer, not here.

use super::wire::{len_u32, DecodeError, Reader, Writer};

/// Built-in call functions, the REQ_CALL `callid` (§4.2). Custom functions do not
/// exist in 4.17.
pub mod call_id {
    /// Does nothing but store the record back: used to migrate a record (fetch-lock).
    pub const NULL_FUNC: u32 = 0xFF00_0001;
    /// Returns the record's value without its ltdb header (a read).
    pub const FETCH_FUNC: u32 = 0xFF00_0002;
    /// Returns the 24-byte ltdb header and the value; ctdbd-internal (read-only
    /// delegations).
    pub const FETCH_WITH_HEADER_FUNC: u32 = 0xFF00_0003;
}

/// REQ_CALL `flags` bits (§4.2).
pub mod call_flags {
    /// smbd's fetch-lock: "migrate the record to me". The 4.17 daemon does not
    /// consult it (a call reaching the dmaster from another node always migrates).
    pub const IMMEDIATE_MIGRATION: u32 = 0x1;
    /// Vacuuming hands an empty record to its lmaster; ctdbd-internal.
    pub const VACUUM_MIGRATION: u32 = 0x2;
    /// A read that a read-only delegation would satisfy.
    pub const WANT_READONLY: u32 = 0x4;
}

/// REQ_CALL body (`ctdb_req_call_old`): a client asking its daemon to run a call on
/// a record, or a daemon forwarding that call towards the record's dmaster.
///
/// ```text
/// 32 flags u32 | 36 db_id u32 | 40 callid u32 | 44 hopcount u32
/// 48 keylen u32 | 52 calldatalen u32 | 56 key | calldata | pad to 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqCall {
    /// [`call_flags`] bits.
    pub flags: u32,
    /// The database.
    pub db_id: u32,
    /// One of [`call_id`].
    pub callid: u32,
    /// Redirections so far (statistics, and the sticky-record trigger).
    pub hopcount: u32,
    /// The record's key.
    pub key: Vec<u8>,
    /// Arguments of the call function (empty for the built-in ones).
    pub calldata: Vec<u8>,
}

impl ReqCall {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.flags)
            .u32(self.db_id)
            .u32(self.callid)
            .u32(self.hopcount)
            .u32(len_u32(&self.key))
            .u32(len_u32(&self.calldata))
            .bytes(&self.key)
            .bytes(&self.calldata);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = r.u32("req_call.flags")?;
        let db_id = r.u32("req_call.db_id")?;
        let callid = r.u32("req_call.callid")?;
        let hopcount = r.u32("req_call.hopcount")?;
        let keylen = r.u32("req_call.keylen")? as usize;
        let calldatalen = r.u32("req_call.calldatalen")? as usize;
        let key = r.bytes(keylen, "req_call.key")?.to_vec();
        let calldata = r.bytes(calldatalen, "req_call.calldata")?.to_vec();
        Ok(Self {
            flags,
            db_id,
            callid,
            hopcount,
            key,
            calldata,
        })
    }
}

/// REPLY_CALL body (`ctdb_reply_call_old`): the call's result, with the request's
/// reqid in the header.
///
/// ```text
/// 32 status i32 | 36 datalen u32 | 40 data | pad to 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCall {
    /// The call function's result (smbd ignores it).
    pub status: i32,
    /// NULL_FUNC: empty; FETCH_FUNC: the value without header (empty = not found);
    /// FETCH_WITH_HEADER_FUNC: the 24-byte ltdb header and the value.
    pub data: Vec<u8>,
}

impl ReplyCall {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.i32(self.status)
            .u32(len_u32(&self.data))
            .bytes(&self.data);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let status = r.i32("reply_call.status")?;
        let datalen = r.u32("reply_call.datalen")? as usize;
        let data = r.bytes(datalen, "reply_call.data")?.to_vec();
        Ok(Self { status, data })
    }
}

/// Reads the record-flags word that 4.17 appends after a DMASTER packet's data
/// (§4.4). A receiver takes it when the packet is long enough and 0 otherwise, so
/// a sender that leaves it out (or the zero padding in its place) means flags 0.
fn read_record_flags(r: &mut Reader<'_>, field: &'static str) -> Result<u32, DecodeError> {
    if r.remaining() >= 4 {
        r.u32(field)
    } else {
        Ok(0)
    }
}

/// REQ_DMASTER body (`ctdb_req_dmaster_old`): the old dmaster hands a record to its
/// lmaster, naming the node that becomes the new dmaster.
///
/// ```text
/// 32 db_id u32 | 36 pad u32 | 40 rsn u64 | 48 dmaster u32 | 52 keylen u32
/// 56 datalen u32 | 60 key | data (value, no ltdb header) | record_flags u32 | pad to 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReqDmaster {
    /// The database.
    pub db_id: u32,
    /// The record's rsn at the old dmaster.
    pub rsn: u64,
    /// The new dmaster: the node whose call asked for the record.
    pub dmaster: u32,
    /// The record's key.
    pub key: Vec<u8>,
    /// The record's value, without the ltdb header.
    pub data: Vec<u8>,
    /// The ltdb header's flags (0 when the sender did not append them).
    pub record_flags: u32,
}

impl ReqDmaster {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.db_id)
            .pad(4)
            .u64(self.rsn)
            .u32(self.dmaster)
            .u32(len_u32(&self.key))
            .u32(len_u32(&self.data))
            .bytes(&self.key)
            .bytes(&self.data)
            .u32(self.record_flags);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let db_id = r.u32("req_dmaster.db_id")?;
        r.skip(4, "req_dmaster.pad")?;
        let rsn = r.u64("req_dmaster.rsn")?;
        let dmaster = r.u32("req_dmaster.dmaster")?;
        let keylen = r.u32("req_dmaster.keylen")? as usize;
        let datalen = r.u32("req_dmaster.datalen")? as usize;
        let key = r.bytes(keylen, "req_dmaster.key")?.to_vec();
        let data = r.bytes(datalen, "req_dmaster.data")?.to_vec();
        let record_flags = read_record_flags(r, "req_dmaster.record_flags")?;
        Ok(Self {
            db_id,
            rsn,
            dmaster,
            key,
            data,
            record_flags,
        })
    }
}

/// REPLY_DMASTER body (`ctdb_reply_dmaster_old`): the lmaster gives the record to
/// the new dmaster (the header's destnode), under the originating call's reqid.
///
/// ```text
/// 32 db_id u32 | 36 pad u32 | 40 rsn u64 | 48 keylen u32 | 52 datalen u32
/// 56 key | data (value, no ltdb header) | record_flags u32 | pad to 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyDmaster {
    /// The database.
    pub db_id: u32,
    /// The record's rsn, adopted by the new dmaster.
    pub rsn: u64,
    /// The record's key.
    pub key: Vec<u8>,
    /// The record's value, without the ltdb header.
    pub data: Vec<u8>,
    /// The ltdb header's flags (0 when the sender did not append them).
    pub record_flags: u32,
}

impl ReplyDmaster {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u32(self.db_id)
            .pad(4)
            .u64(self.rsn)
            .u32(len_u32(&self.key))
            .u32(len_u32(&self.data))
            .bytes(&self.key)
            .bytes(&self.data)
            .u32(self.record_flags);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let db_id = r.u32("reply_dmaster.db_id")?;
        r.skip(4, "reply_dmaster.pad")?;
        let rsn = r.u64("reply_dmaster.rsn")?;
        let keylen = r.u32("reply_dmaster.keylen")? as usize;
        let datalen = r.u32("reply_dmaster.datalen")? as usize;
        let key = r.bytes(keylen, "reply_dmaster.key")?.to_vec();
        let data = r.bytes(datalen, "reply_dmaster.data")?.to_vec();
        let record_flags = read_record_flags(r, "reply_dmaster.record_flags")?;
        Ok(Self {
            db_id,
            rsn,
            key,
            data,
            record_flags,
        })
    }
}

/// REPLY_ERROR body (`ctdb_reply_error_old`): a node could not serve a call (e.g.
/// unknown database); the originating node fails the pending call.
///
/// ```text
/// 32 status i32 | 36 msglen u32 | 40 msg | pad to 8
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// Error status.
    pub status: i32,
    /// Error text as sent; the C daemon includes the terminating NUL in `msglen`.
    pub msg: Vec<u8>,
}

impl ReplyError {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.i32(self.status).u32(len_u32(&self.msg)).bytes(&self.msg);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let status = r.i32("reply_error.status")?;
        let msglen = r.u32("reply_error.msglen")? as usize;
        let msg = r.bytes(msglen, "reply_error.msg")?.to_vec();
        Ok(Self { status, msg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packet::{Body, Header, Packet, CURRENT_NODE};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn packet(reqid: u32, body: Body) -> Packet {
        Packet {
            header: Header {
                generation: 0x35a7_fe20,
                destnode: 1,
                srcnode: 0,
                reqid,
            },
            body,
        }
    }

    #[test]
    fn req_call_matches_the_reference_example() {
        // samba §4.2: smbd migrates key 01 02 03 of locking.tdb, reqid 7, unpadded.
        let bytes = hex(
            "3b000000 42445443 01000000 00000000 00000000 00000000 00000000 07000000
                         01000000 4dd8197a 010000ff 00000000 03000000 00000000 010203",
        );
        assert_eq!(bytes.len(), 59);
        let packet = Packet::decode(&bytes).unwrap();
        let expected = Packet {
            header: Header {
                generation: 0,
                destnode: 0,
                srcnode: 0,
                reqid: 7,
            },
            body: Body::ReqCall(ReqCall {
                flags: call_flags::IMMEDIATE_MIGRATION,
                db_id: 0x7a19_d84d,
                callid: call_id::NULL_FUNC,
                hopcount: 0,
                key: vec![1, 2, 3],
                calldata: vec![],
            }),
        };
        assert_eq!(packet, expected);
        // We pad as a 4.17 daemon does: 64 bytes, the padded size in `length`.
        let mut padded = bytes.clone();
        padded.resize(64, 0);
        padded[0] = 64;
        assert_eq!(expected.encode(), padded);
        assert_eq!(Packet::decode(&padded).unwrap(), expected);
    }

    #[test]
    fn get_pnn_from_smbd_matches_the_reference_example() {
        // samba §1.2: smbd's first packet, 60 bytes, unpadded.
        let bytes = hex(
            "3c000000 42445443 01000000 00000000 07000000 010000f0 00000000 01000000
                         23000000 00000000 00000000 00000000 00000000 00000000 00000000",
        );
        let packet = Packet::decode(&bytes).unwrap();
        assert_eq!(packet.header.destnode, CURRENT_NODE);
        let Body::ReqControl(c) = &packet.body else {
            panic!("not a control: {packet:?}")
        };
        assert_eq!((c.opcode, c.flags, c.data.len()), (35, 0, 0));
        let mut padded = bytes.clone();
        padded.resize(64, 0);
        padded[0] = 64;
        assert_eq!(packet.encode(), padded);
    }

    #[test]
    fn reply_call_layout() {
        let p = packet(
            7,
            Body::ReplyCall(ReplyCall {
                status: 0,
                data: b"v1".to_vec(),
            }),
        );
        let bytes = p.encode();
        // 32 header + status + datalen + 2 bytes, padded to 48.
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[16..20], &[1, 0, 0, 0]);
        assert_eq!(&bytes[32..42], &hex("00000000 02000000 7631"));
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn req_dmaster_layout_with_trailing_record_flags() {
        let p = packet(
            9,
            Body::ReqDmaster(ReqDmaster {
                db_id: 0x7a19_d84d,
                rsn: 5,
                dmaster: 2,
                key: b"k1".to_vec(),
                data: b"v2".to_vec(),
                record_flags: 0x0001_0000,
            }),
        );
        let bytes = p.encode();
        assert_eq!(
            &bytes[32..68],
            &hex(
                "4dd8197a 00000000 05000000 00000000 02000000 02000000 02000000
                  6b31 7632 00000100"
            )
        );
        assert_eq!(bytes.len(), 72);
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn dmaster_flags_default_to_zero_when_the_packet_ends_before_them() {
        // REPLY_DMASTER with key "abcd" and value "wxyz": 56 + 8 = 64, a multiple of
        // 8, so a sender without the flags word sends no padding either.
        let mut bytes = hex(
            "40000000 42445443 01000000 20fea735 03000000 01000000 00000000 09000000
                             4dd8197a 00000000 03000000 00000000 04000000 04000000",
        );
        bytes.extend(b"abcdwxyz");
        assert_eq!(bytes.len(), 64);
        let Body::ReplyDmaster(d) = Packet::decode(&bytes).unwrap().body else {
            panic!("not a REPLY_DMASTER")
        };
        assert_eq!((d.rsn, d.record_flags), (3, 0));
        assert_eq!(
            (d.key.as_slice(), d.data.as_slice()),
            (&b"abcd"[..], &b"wxyz"[..])
        );
        // Two or three stray bytes are padding, not a short flags word.
        bytes.extend([0, 0, 0]);
        bytes[0] = 67;
        let Body::ReplyDmaster(d) = Packet::decode(&bytes).unwrap().body else {
            panic!("not a REPLY_DMASTER")
        };
        assert_eq!(d.record_flags, 0);
    }

    #[test]
    fn reply_error_carries_the_nul_as_the_c_daemon_sends_it() {
        let p = packet(
            11,
            Body::ReplyError(ReplyError {
                status: -1,
                msg: b"Unknown database in request. db_id==0x12345678\0".to_vec(),
            }),
        );
        let bytes = p.encode();
        // 46 characters and the NUL; 40 + 47 padded to 88.
        assert_eq!(&bytes[32..40], &hex("ffffffff 2f000000"));
        assert_eq!(bytes.len(), 88);
        assert_eq!(Packet::decode(&bytes).unwrap(), p);
    }

    #[test]
    fn empty_bodies_are_as_long_as_the_c_structures() {
        // A 4.17 daemon sends no packet shorter than its C structure (samba §1.2):
        // an empty REPLY_CALL is 48 bytes (observed), not 40.
        let empty_reply = packet(
            1,
            Body::ReplyCall(ReplyCall {
                status: 0,
                data: vec![],
            }),
        );
        assert_eq!(empty_reply.encode().len(), 48);
        let empty_error = packet(
            1,
            Body::ReplyError(ReplyError {
                status: -1,
                msg: vec![],
            }),
        );
        assert_eq!(empty_error.encode().len(), 48);
        let empty_call = packet(
            1,
            Body::ReqCall(ReqCall {
                flags: 0,
                db_id: 1,
                callid: call_id::NULL_FUNC,
                hopcount: 0,
                key: vec![],
                calldata: vec![],
            }),
        );
        assert_eq!(empty_call.encode().len(), 64);
        for p in [empty_reply, empty_error, empty_call] {
            assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn truncated_bodies_name_the_field() {
        let call = packet(
            1,
            Body::ReqCall(ReqCall {
                flags: 0,
                db_id: 1,
                callid: call_id::FETCH_FUNC,
                hopcount: 0,
                key: vec![7; 20],
                calldata: vec![],
            }),
        );
        let mut bytes = call.encode();
        bytes.truncate(60);
        bytes[0] = 60;
        assert!(matches!(
            Packet::decode(&bytes),
            Err(DecodeError::Truncated {
                field: "req_call.key",
                needed: 20,
                available: 4,
            })
        ));
        let mut dmaster = packet(
            1,
            Body::ReqDmaster(ReqDmaster {
                db_id: 1,
                rsn: 1,
                dmaster: 1,
                key: vec![1],
                data: vec![],
                record_flags: 0,
            }),
        )
        .encode();
        // A datalen that runs past the end of the packet.
        dmaster[56] = 0xff;
        assert!(matches!(
            Packet::decode(&dmaster),
            Err(DecodeError::Truncated {
                field: "req_dmaster.data",
                ..
            })
        ));
        let short = hex(
            "24000000 42445443 01000000 00000000 01000000 00000000 00000000 00000000
                         00000000",
        );
        assert!(matches!(
            Packet::decode(&short),
            Err(DecodeError::Truncated {
                field: "reply_call.datalen",
                ..
            })
        ));
    }
}

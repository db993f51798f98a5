//! Properties of the wire codec (STYLE §2, §11).
//!
//! * Arbitrary bytes never make `Packet::decode`, `Framer::frame_len` or any typed
//!   decoder panic (including the body of the cargo-fuzz target, `fuzz/src/lib.rs`,
//!   run here on stable).
//! * Generated values survive `decode(encode(x)) == x`: packets of each body kind
//!   and the typed structures.
//!
//! Failing cases are kept in `proptest-regressions/` (commit them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use ctdbd::protocol::call::{ReplyCall, ReplyDmaster, ReplyError, ReqCall, ReqDmaster};
use ctdbd::protocol::control::{
    decode_i32, decode_tunable_name, decode_u32, decode_u64, decode_var_list, encode_tunable_name,
    encode_u32, encode_var_list, AddrInfo, BanState, DaemonGone, DisableMessage, GrantReceipt,
    Iface, IfaceList, LeaseGrant, LeaseRequest, NodeAndFlags, NodeFlagChange, NodeMap, PidSrvid,
    PublicIp, PublicIpInfo, PublicIpList, SrvidMessage, Timeval, Tunable, Uptime, VnnMap,
};
use ctdbd::protocol::dbctl::{
    decode_nul_string, encode_nul_string, DbMap, DbMapEntry, GetDbSeqnum, PullDb,
    ScheduleForDeletion, TransDb, TraverseAll, TraverseAllExt, TraverseStart, TraverseStartExt,
};
use ctdbd::protocol::marshall::{MarshallBuffer, RecData};
use ctdbd::protocol::packet::{CTDB_MAGIC, CTDB_PROTOCOL, HEADER_SIZE};
use ctdbd::protocol::statistics::{Statistics, STATISTICS_SIZE};
use ctdbd::protocol::{Body, Framer, Header, Packet, ReplyControl, ReqControl, ReqMessage};

mod fuzz_body {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/src/lib.rs"));
}

// ---- strategies ------------------------------------------------------------------

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn header() -> impl Strategy<Value = Header> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(generation, destnode, srcnode, reqid)| Header {
            generation,
            destnode,
            srcnode,
            reqid,
        },
    )
}

/// Bytes that pass the header checks (length, magic, version, a real operation), so
/// that the body decoders see mostly-plausible input rather than failing at byte 4.
fn plausible_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![0u32, 1, 2, 3, 4, 5, 7, 8, 9, 10]),
        any::<[u32; 4]>(),
        bytes(600),
        prop::sample::select(vec![0u32, 1, 3, 5, 23, 35, 48, 49, 50, 90, 91, 123, 151]),
        any::<bool>(),
    )
        .prop_map(|(op, hdr, mut body, opcode, fix_datalen)| {
            let mut b = Vec::new();
            b.extend(0u32.to_le_bytes());
            b.extend(CTDB_MAGIC.to_le_bytes());
            b.extend(CTDB_PROTOCOL.to_le_bytes());
            for v in hdr {
                b.extend(v.to_le_bytes());
            }
            b[16..20].copy_from_slice(&op.to_le_bytes());
            if op == 7 && body.len() >= 28 {
                body[0..4].copy_from_slice(&opcode.to_le_bytes());
                if fix_datalen {
                    let datalen = (body.len() - 28) as u32;
                    body[24..28].copy_from_slice(&datalen.to_le_bytes());
                }
            }
            b.extend(body);
            let len = b.len() as u32;
            b[0..4].copy_from_slice(&len.to_le_bytes());
            b
        })
}

fn ipv4() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        ipv4(),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

/// Socket addresses as CTDB carries them (IPv6 flowinfo and scope id are 0).
fn sock_addr() -> impl Strategy<Value = SocketAddr> {
    (ip(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

/// A C string: no NUL inside.
fn c_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(1u8..=0x7f, 0..max).prop_map(|v| String::from_utf8(v).expect("ASCII"))
}

fn iface() -> impl Strategy<Value = Iface> {
    ("[a-z][a-z0-9.]{0,14}", any::<bool>(), any::<u32>()).prop_map(|(name, link_up, references)| {
        Iface {
            name,
            link_up,
            references,
        }
    })
}

fn public_ip() -> impl Strategy<Value = PublicIp> {
    (any::<u32>(), ip()).prop_map(|(pnn, addr)| PublicIp { pnn, addr })
}

fn timeval() -> impl Strategy<Value = Timeval> {
    (any::<i64>(), any::<i64>()).prop_map(|(sec, usec)| Timeval { sec, usec })
}

/// Statistics from 488 random bytes with zeroed padding and NaN-free latencies, so
/// that `==` is meaningful.
fn statistics() -> impl Strategy<Value = Statistics> {
    prop::collection::vec(any::<u8>(), STATISTICS_SIZE).prop_map(|mut raw| {
        for pad in [100, 372, 444] {
            raw[pad..pad + 4].fill(0);
        }
        let mut s = Statistics::decode(&raw).expect("488 bytes decode");
        for l in [
            &mut s.reclock_ctdbd,
            &mut s.reclock_recd,
            &mut s.locks_latency,
            &mut s.call_latency,
            &mut s.childwrite_latency,
        ] {
            for f in [&mut l.min, &mut l.max, &mut l.total] {
                if f.is_nan() {
                    *f = 0.0;
                }
            }
        }
        s
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    let body = prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            bytes(300)
        )
            .prop_map(|(opcode, srvid, client_id, flags, data)| Body::ReqControl(
                ReqControl {
                    opcode,
                    srvid,
                    client_id,
                    flags,
                    data,
                }
            )),
        (bytes(300), bytes(60)).prop_map(|(data, error)| Body::ReplyControl(ReplyControl {
            status: 0,
            data,
            error,
        })),
        // A failed reply carries no data (the stock client would not find it).
        (any::<i32>().prop_filter("non-zero", |s| *s != 0), bytes(60)).prop_map(
            |(status, error)| Body::ReplyControl(ReplyControl {
                status,
                data: Vec::new(),
                error,
            })
        ),
        (any::<u64>(), bytes(300))
            .prop_map(|(srvid, data)| Body::ReqMessage(ReqMessage { srvid, data })),
        (any::<u32>(), any::<u32>()).prop_map(|(v, u)| Body::ReqKeepalive {
            version: Some(v),
            uptime: Some(u),
        }),
        Just(Body::ReqKeepalive {
            version: None,
            uptime: None,
        }),
        (any::<i32>(), bytes(100))
            .prop_map(|(status, msg)| Body::ReplyError(ReplyError { status, msg })),
        (any::<[u32; 4]>(), bytes(100), bytes(40)).prop_map(|(w, key, calldata)| {
            Body::ReqCall(ReqCall {
                flags: w[0],
                db_id: w[1],
                callid: w[2],
                hopcount: w[3],
                key,
                calldata,
            })
        }),
        (any::<i32>(), bytes(300))
            .prop_map(|(status, data)| Body::ReplyCall(ReplyCall { status, data })),
        (any::<[u32; 3]>(), any::<u64>(), bytes(100), bytes(300)).prop_map(
            |(w, rsn, key, data)| Body::ReqDmaster(ReqDmaster {
                db_id: w[0],
                rsn,
                dmaster: w[1],
                key,
                data,
                record_flags: w[2],
            })
        ),
        (any::<[u32; 2]>(), any::<u64>(), bytes(100), bytes(300)).prop_map(
            |(w, rsn, key, data)| Body::ReplyDmaster(ReplyDmaster {
                db_id: w[0],
                rsn,
                key,
                data,
                record_flags: w[1],
            })
        ),
        (
            any::<u64>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(tunnel_id, flags, data)| Body::ReqTunnel(
                ctdbd::protocol::packet::ReqTunnel {
                    tunnel_id,
                    flags,
                    data,
                }
            )),
    ];
    (header(), body).prop_map(|(header, body)| Packet { header, body })
}

// ---- never panic ----------------------------------------------------------------

/// Every typed decoder, as the daemon would call them on untrusted data.
fn decode_everything(data: &[u8]) {
    let _ = NodeMap::decode(data);
    let _ = VnnMap::decode(data);
    let _ = PublicIp::decode(data);
    let _ = PublicIpList::decode(data);
    let _ = PublicIpInfo::decode(data);
    let _ = Iface::decode(data);
    let _ = IfaceList::decode(data);
    let _ = Uptime::decode(data);
    let _ = Statistics::decode(data);
    let _ = Tunable::decode(data);
    let _ = decode_tunable_name(data);
    let _ = decode_var_list(data);
    let _ = PidSrvid::decode(data);
    let _ = SrvidMessage::decode(data);
    let _ = DisableMessage::decode(data);
    let _ = DaemonGone::decode(data);
    let _ = LeaseRequest::decode(data);
    let _ = LeaseGrant::decode(data);
    let _ = BanState::decode(data);
    let _ = NodeFlagChange::decode(data);
    let _ = AddrInfo::decode(data);
    let _ = decode_u32(data, "u32");
    let _ = decode_i32(data, "i32");
    let _ = decode_u64(data, "u64");
    let _ = RecData::decode(data);
    let _ = MarshallBuffer::decode(data);
    let _ = DbMap::decode(data);
    let _ = decode_nul_string(data, "name");
    let _ = GetDbSeqnum::decode(data);
    let _ = TransDb::decode(data);
    let _ = PullDb::decode(data);
    let _ = TraverseStart::decode(data);
    let _ = TraverseStartExt::decode(data);
    let _ = TraverseAll::decode(data);
    let _ = TraverseAllExt::decode(data);
    let _ = ScheduleForDeletion::decode(data);
}

fn rec_data() -> impl Strategy<Value = RecData> {
    (any::<u32>(), bytes(40), bytes(120)).prop_map(|(reqid, key, data)| RecData {
        reqid,
        key,
        data,
    })
}

/// Marshall buffers as bytes: mostly well-formed ones, then cut short, extended, or
/// with one byte of a length field changed, so that the decoder sees near misses.
fn damaged_marshall_buffer() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u32>(),
        prop::collection::vec(rec_data(), 0..6),
        0usize..4,
        any::<usize>(),
        any::<u8>(),
    )
        .prop_map(|(db_id, records, damage, at, byte)| {
            let mut b = MarshallBuffer { db_id, records }.encode();
            let at = at % b.len();
            match damage {
                0 => b.truncate(at),
                1 => b.push(byte),
                2 => b[at] = byte,
                _ => {}
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in bytes(700)) {
        let _ = Packet::decode(&data);
        let _ = Framer::for_clients().frame_len(&data);
        let _ = Framer::for_peers().frame_len(&data);
        decode_everything(&data);
    }

    #[test]
    fn fuzz_body_never_panics(data in prop_oneof![bytes(700), plausible_packet()]) {
        fuzz_body::packet_decode(&data);
    }

    #[test]
    fn plausible_packets_never_panic(data in plausible_packet()) {
        if let Ok(p) = Packet::decode(&data) {
            let body = match &p.body {
                Body::ReqControl(c) => c.data.clone(),
                Body::ReplyControl(r) => r.data.clone(),
                Body::ReqMessage(m) => m.data.clone(),
                _ => Vec::new(),
            };
            decode_everything(&body);
        }
    }

    #[test]
    fn framer_agrees_with_decode(p in packet(), extra in bytes(40)) {
        let bytes = p.encode();
        let mut stream = bytes.clone();
        stream.extend(&extra);
        prop_assert_eq!(Framer::for_clients().frame_len(&stream), Ok(Some(bytes.len())));
        prop_assert_eq!(Framer::for_peers().frame_len(&stream), Ok(Some(bytes.len())));
        // One byte short is "need more", never an error.
        prop_assert_eq!(Framer::for_clients().frame_len(&bytes[..bytes.len() - 1]), Ok(None));
    }

    // ---- round trips ------------------------------------------------------------

    #[test]
    fn lease_messages_round_trip(
        seq in any::<u64>(),
        echo_ms in any::<u64>(),
        leased_for_ms in any::<u32>(),
        holds_granted_for_ms in any::<u32>(),
        receipts in prop::collection::vec(
            (any::<u32>(), any::<u32>(), prop::option::of(0..u32::MAX)),
            0..8,
        ),
        lease_ms in any::<u32>(),
        backed in any::<bool>(),
    ) {
        let request = LeaseRequest {
            seq,
            echo_ms,
            leased_for_ms,
            holds_granted_for_ms,
            receipts: receipts
                .into_iter()
                .map(|(pnn, any_age_ms, backed_age_ms)| GrantReceipt { pnn, any_age_ms, backed_age_ms })
                .collect(),
        };
        prop_assert_eq!(LeaseRequest::decode(&request.encode()), Ok(request));
        let grant = LeaseGrant { seq, lease_ms, stamp_ms: echo_ms, backed };
        prop_assert_eq!(LeaseGrant::decode(&grant.encode()), Ok(grant));
    }

    #[test]
    fn packet_round_trips(p in packet()) {
        let bytes = p.encode();
        prop_assert_eq!(bytes.len() % 8, 0);
        prop_assert!(bytes.len() >= HEADER_SIZE);
        prop_assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len());
        prop_assert_eq!(Packet::decode(&bytes), Ok(p));
    }

    #[test]
    fn node_map_round_trips(nodes in prop::collection::vec((any::<u32>(), any::<u32>(), sock_addr()), 0..20)) {
        let map = NodeMap {
            nodes: nodes.into_iter().map(|(pnn, flags, addr)| NodeAndFlags { pnn, flags, addr }).collect(),
        };
        prop_assert_eq!(NodeMap::decode(&map.encode()), Ok(map));
    }

    #[test]
    fn vnn_map_round_trips(generation in any::<u32>(), map in prop::collection::vec(any::<u32>(), 0..50)) {
        let v = VnnMap { generation, map };
        prop_assert_eq!(VnnMap::decode(&v.encode()), Ok(v));
    }

    #[test]
    fn public_ips_round_trip(ips in prop::collection::vec(public_ip(), 0..20)) {
        for ip in &ips {
            prop_assert_eq!(PublicIp::decode(&ip.encode()), Ok(ip.clone()));
        }
        let list = PublicIpList { ips };
        prop_assert_eq!(PublicIpList::decode(&list.encode()), Ok(list));
    }

    #[test]
    fn ifaces_round_trip(ifaces in prop::collection::vec(iface(), 0..10)) {
        for i in &ifaces {
            prop_assert_eq!(Iface::decode(&i.encode()), Ok(i.clone()));
        }
        let list = IfaceList { ifaces };
        prop_assert_eq!(IfaceList::decode(&list.encode()), Ok(list));
    }

    #[test]
    fn public_ip_info_round_trips(
        ip in public_ip(),
        active in prop::option::of(0..u32::MAX),
        ifaces in prop::collection::vec(iface(), 0..5),
    ) {
        let info = PublicIpInfo { ip, active_idx: active, ifaces };
        prop_assert_eq!(PublicIpInfo::decode(&info.encode()), Ok(info));
    }

    #[test]
    fn uptime_round_trips(t in [timeval(), timeval(), timeval(), timeval()]) {
        let u = Uptime {
            current_time: t[0],
            ctdbd_start_time: t[1],
            last_recovery_started: t[2],
            last_recovery_finished: t[3],
        };
        prop_assert_eq!(Uptime::decode(&u.encode()), Ok(u));
    }

    #[test]
    fn statistics_round_trip(s in statistics()) {
        let bytes = s.encode();
        prop_assert_eq!(bytes.len(), STATISTICS_SIZE);
        prop_assert_eq!(Statistics::decode(&bytes), Ok(s));
    }

    #[test]
    fn tunables_round_trip(name in c_text(40), value in any::<u32>()) {
        let t = Tunable { name: name.clone(), value };
        prop_assert_eq!(Tunable::decode(&t.encode()), Ok(t));
        prop_assert_eq!(decode_tunable_name(&encode_tunable_name(&name)), Ok(name));
    }

    #[test]
    fn var_list_round_trips(names in prop::collection::vec("[A-Za-z0-9]{1,24}", 0..60)) {
        let bytes = encode_var_list(names.iter().map(String::as_str));
        prop_assert_eq!(decode_var_list(&bytes), Ok(names));
    }

    #[test]
    fn small_records_round_trip(
        pid in any::<i32>(),
        srvid in any::<u64>(),
        pnn in any::<u32>(),
        a in any::<u32>(),
        b in any::<u32>(),
    ) {
        let ps = PidSrvid { pid, srvid };
        prop_assert_eq!(ps.encode().len(), 12);
        prop_assert_eq!(PidSrvid::decode(&ps.encode()), Ok(ps));
        let sm = SrvidMessage { pnn, srvid };
        prop_assert_eq!(SrvidMessage::decode(&sm.encode()), Ok(sm));
        let dm = DisableMessage { pnn, srvid, timeout: a };
        prop_assert_eq!(DisableMessage::decode(&dm.encode()), Ok(dm));
        let dg = DaemonGone { pnn, incarnation: srvid };
        prop_assert_eq!(dg.encode().len(), 16);
        prop_assert_eq!(DaemonGone::decode(&dg.encode()), Ok(dg));
        prop_assert_eq!(decode_u64(&srvid.to_le_bytes(), "u64"), Ok(srvid));
        let bs = BanState { pnn, time: a };
        prop_assert_eq!(BanState::decode(&bs.encode()), Ok(bs));
        let fc = NodeFlagChange { pnn, new_flags: a, old_flags: b };
        prop_assert_eq!(NodeFlagChange::decode(&fc.encode()), Ok(fc));
        prop_assert_eq!(decode_u32(&encode_u32(a), "u32"), Ok(a));
        prop_assert_eq!(decode_i32(&pid.to_le_bytes(), "i32"), Ok(pid));
    }

    #[test]
    fn marshall_decode_never_panics(data in prop_oneof![bytes(400), damaged_marshall_buffer()]) {
        if let Ok(buf) = MarshallBuffer::decode(&data) {
            // Whatever decodes is exactly what it encodes to.
            prop_assert_eq!(buf.encode(), data.clone());
        }
        if let Ok(rec) = RecData::decode(&data) {
            prop_assert_eq!(rec.encode(), data);
        }
    }

    #[test]
    fn marshall_round_trips(db_id in any::<u32>(), records in prop::collection::vec(rec_data(), 0..10)) {
        for rec in &records {
            prop_assert_eq!(rec.encode().len(), rec.encoded_len());
            prop_assert_eq!(RecData::decode(&rec.encode()), Ok(rec.clone()));
        }
        let buf = MarshallBuffer { db_id, records };
        let bytes = buf.encode();
        prop_assert_eq!(bytes.len(), buf.encoded_len());
        prop_assert_eq!(MarshallBuffer::decode(&bytes), Ok(buf));
    }

    #[test]
    fn db_controls_round_trip(
        w in any::<[u32; 4]>(),
        srvid in any::<u64>(),
        with_empty_records in any::<bool>(),
        dbs in prop::collection::vec((any::<u32>(), any::<u8>()), 0..20),
        name in c_text(60),
        header in any::<[u8; 24]>(),
        key in bytes(60),
    ) {
        let map = DbMap { dbs: dbs.into_iter().map(|(db_id, flags)| DbMapEntry { db_id, flags }).collect() };
        prop_assert_eq!(DbMap::decode(&map.encode()), Ok(map));
        prop_assert_eq!(decode_nul_string(&encode_nul_string(&name), "name"), Ok(name));
        let seq = GetDbSeqnum { db_id: w[0] };
        prop_assert_eq!(GetDbSeqnum::decode(&seq.encode()), Ok(seq));
        let trans = TransDb { db_id: w[0], tid: w[1] };
        prop_assert_eq!(TransDb::decode(&trans.encode()), Ok(trans));
        let pull = PullDb { db_id: w[0], lmaster: w[1], srvid };
        prop_assert_eq!(PullDb::decode(&pull.encode()), Ok(pull));
        let start = TraverseStart { db_id: w[0], reqid: w[1], srvid };
        prop_assert_eq!(TraverseStart::decode(&start.encode()), Ok(start));
        let start_ext = TraverseStartExt { db_id: w[0], reqid: w[1], srvid, with_empty_records };
        prop_assert_eq!(TraverseStartExt::decode(&start_ext.encode()), Ok(start_ext));
        let all = TraverseAll { db_id: w[0], reqid: w[1], pnn: w[2], client_reqid: w[3], srvid };
        prop_assert_eq!(TraverseAll::decode(&all.encode()), Ok(all));
        let all_ext = TraverseAllExt {
            db_id: w[0], reqid: w[1], pnn: w[2], client_reqid: w[3], srvid, with_empty_records,
        };
        prop_assert_eq!(TraverseAllExt::decode(&all_ext.encode()), Ok(all_ext));
        let del = ScheduleForDeletion { db_id: w[0], header, key };
        prop_assert_eq!(ScheduleForDeletion::decode(&del.encode()), Ok(del));
    }

    #[test]
    fn addr_info_round_trips(addr in ip(), mask in any::<u32>(), iface in prop::option::of(c_text(30))) {
        let info = AddrInfo { addr, mask, iface };
        prop_assert_eq!(AddrInfo::decode(&info.encode()), Ok(info));
    }
}

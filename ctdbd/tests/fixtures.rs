//! The codec against bytes captured from the stock CTDB 4.17.12 binaries.
//!
//! Given: `tests/fixtures/requests/*.hex` (what the stock `ctdb` tool sent to a stub
//! daemon), `tests/fixtures/replies/*.hex` (requests from a raw client and what a
//! real stock `ctdbd` answered) and `tests/fixtures/databases/*.hex` (the same for
//! database attach, calls, a persistent commit and a traverse), written by
//! `tests/fixtures-capture/capture.sh`.
//! Each packet is a `# <OPERATION> <detail>` line followed by one line of hex.
//!
//! Then, for every packet:
//! * `Packet::decode` accepts it and `encode` gives back the very same bytes;
//! * the comment names the operation (and the control) that was decoded;
//! * the control data (request or reply, paired by reqid) and message data decode
//!   with the typed decoder for that opcode/srvid and re-encode to the same bytes;
//!   in the database files, messages are traverse records (`ctdb_rec_data`).
//!
//! Failures show the first differing offset with a hex window of both sides.

mod hex;

use hex::{assert_same_bytes, parse_hex};
use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ctdbd::protocol::call::{call_flags, call_id};
use ctdbd::protocol::control::{
    decode_i32, decode_tunable_name, decode_u32, decode_var_list, encode_tunable_name, encode_u32,
    encode_var_list, IfaceList, NodeMap, PidSrvid, PublicIpInfo, PublicIpList, Tunable, Uptime,
    VnnMap,
};
use ctdbd::protocol::control::{decode_u64, encode_i32, encode_u64};
use ctdbd::protocol::dbctl::{
    decode_nul_string, encode_nul_string, DbMap, GetDbSeqnum, TraverseStart, DB_SEQUENCE_NUMBER_KEY,
};
use ctdbd::protocol::marshall::{MarshallBuffer, RecData};
use ctdbd::protocol::packet::Operation;
use ctdbd::protocol::statistics::Statistics;
use ctdbd::protocol::wire::{Reader, Writer};
use ctdbd::protocol::{Body, Opcode, Packet};

/// One packet of a fixture file.
struct Fixture {
    /// `file.hex#index`, for messages.
    origin: String,
    /// The comment line, without `# `.
    comment: String,
    bytes: Vec<u8>,
}

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(kind)
}

/// Every `.hex` file of a fixture directory, sorted, as (file name, packets).
fn load(kind: &str) -> Vec<(String, Vec<Fixture>)> {
    let dir = fixture_dir(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path).unwrap();
            let mut packets = Vec::new();
            let mut comment: Option<String> = None;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                if let Some(c) = line.strip_prefix('#') {
                    comment = Some(c.trim().to_owned());
                    continue;
                }
                let origin = format!("{kind}/{name}#{}", packets.len());
                let comment = comment
                    .take()
                    .unwrap_or_else(|| panic!("{origin}: hex line without a comment line"));
                packets.push(Fixture {
                    bytes: parse_hex(line, &origin),
                    origin,
                    comment,
                });
            }
            assert!(!packets.is_empty(), "{name}: no packets");
            (name, packets)
        })
        .collect()
}

fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::ReqCall => "REQ_CALL",
        Operation::ReplyCall => "REPLY_CALL",
        Operation::ReqDmaster => "REQ_DMASTER",
        Operation::ReplyDmaster => "REPLY_DMASTER",
        Operation::ReplyError => "REPLY_ERROR",
        Operation::ReqMessage => "REQ_MESSAGE",
        Operation::ReqControl => "REQ_CONTROL",
        Operation::ReplyControl => "REPLY_CONTROL",
        Operation::ReqKeepalive => "REQ_KEEPALIVE",
        Operation::ReqTunnel => "REQ_TUNNEL",
    }
}

/// The comment's first word is the operation; for controls the second word is the
/// opcode's name whenever our table knows it.
fn check_comment(f: &Fixture, packet: &Packet, opcode: Option<u32>) {
    let mut words = f.comment.split_whitespace();
    assert_eq!(
        words.next(),
        Some(operation_name(packet.operation())),
        "{}: comment {:?} names another operation",
        f.origin,
        f.comment
    );
    if let Some(opcode) = opcode {
        let name = Opcode(opcode).name();
        if name != "UNKNOWN" {
            assert_eq!(
                words.next(),
                Some(name),
                "{}: comment {:?} names another control",
                f.origin,
                f.comment
            );
        }
    }
}

/// Decodes and re-encodes a typed payload; both directions must hold.
fn round_trip<T>(
    origin: &str,
    what: &str,
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, ctdbd::protocol::DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> T {
    let value = decode(data).unwrap_or_else(|e| panic!("{origin}: {what} does not decode: {e}"));
    assert_same_bytes(origin, what, data, &encode(&value));
    value
}

fn sock_addr_decode(data: &[u8]) -> Result<SocketAddr, ctdbd::protocol::DecodeError> {
    let mut r = Reader::new(data);
    let addr = r.sock_addr("sock_addr")?;
    r.finish("sock_addr")?;
    Ok(addr)
}

fn sock_addr_encode(addr: &SocketAddr) -> Vec<u8> {
    let mut w = Writer::new();
    w.sock_addr(addr);
    w.into_bytes()
}

fn u32_decoder(what: &'static str) -> impl Fn(&[u8]) -> Result<u32, ctdbd::protocol::DecodeError> {
    move |d| decode_u32(d, what)
}

/// Request data of a control, by opcode. Returns a short description of what was
/// checked, so that a test can see the typed path was taken.
fn check_request_data(origin: &str, opcode: u32, data: &[u8]) -> &'static str {
    match Opcode(opcode) {
        Opcode::PROCESS_EXISTS => {
            round_trip(
                origin,
                "pid",
                data,
                |d| decode_i32(d, "pid"),
                |v| v.to_le_bytes().to_vec(),
            );
            "pid"
        }
        Opcode::CHECK_PID_SRVID => {
            round_trip(
                origin,
                "pid_srvid",
                data,
                PidSrvid::decode,
                PidSrvid::encode,
            );
            "pid_srvid"
        }
        Opcode::GET_TUNABLE => {
            round_trip(origin, "tunable name", data, decode_tunable_name, |n| {
                encode_tunable_name(n)
            });
            "tunable name"
        }
        Opcode::SET_TUNABLE => {
            round_trip(origin, "tunable", data, Tunable::decode, Tunable::encode);
            "tunable"
        }
        Opcode::SET_DEBUG => {
            round_trip(origin, "debug level", data, u32_decoder("level"), |v| {
                encode_u32(*v)
            });
            "u32"
        }
        Opcode::DB_ATTACH | Opcode::DB_ATTACH_PERSISTENT => {
            round_trip(
                origin,
                "database name",
                data,
                |d| decode_nul_string(d, "db_attach.name"),
                |n| encode_nul_string(n),
            );
            "database name"
        }
        Opcode::GET_DBNAME | Opcode::GETDBPATH | Opcode::DB_OPEN_FLAGS => {
            round_trip(origin, "db_id", data, u32_decoder("db_id"), |v| {
                encode_u32(*v)
            });
            "db_id"
        }
        Opcode::GET_DB_SEQNUM => {
            round_trip(
                origin,
                "get_db_seqnum",
                data,
                GetDbSeqnum::decode,
                GetDbSeqnum::encode,
            );
            "get_db_seqnum"
        }
        Opcode::TRANS3_COMMIT => {
            round_trip(
                origin,
                "marshall_buffer",
                data,
                MarshallBuffer::decode,
                MarshallBuffer::encode,
            );
            "marshall_buffer"
        }
        Opcode::TRAVERSE_START => {
            round_trip(
                origin,
                "traverse_start",
                data,
                TraverseStart::decode,
                TraverseStart::encode,
            );
            "traverse_start"
        }
        Opcode::GET_PUBLIC_IP_INFO => {
            round_trip(
                origin,
                "sock_addr",
                data,
                sock_addr_decode,
                sock_addr_encode,
            );
            "sock_addr"
        }
        _ => {
            assert!(
                data.is_empty(),
                "{origin}: control {} carries {} unexpected data bytes",
                Opcode(opcode).name(),
                data.len()
            );
            "no data"
        }
    }
}

/// Reply data of a successful control, by the opcode of its request.
fn check_reply_data(origin: &str, opcode: u32, data: &[u8]) -> &'static str {
    match Opcode(opcode) {
        Opcode::GET_NODEMAP => {
            round_trip(origin, "node_map", data, NodeMap::decode, NodeMap::encode);
            "node_map"
        }
        Opcode::GETVNNMAP => {
            round_trip(origin, "vnn_map", data, VnnMap::decode, VnnMap::encode);
            "vnn_map"
        }
        Opcode::GET_PUBLIC_IPS => {
            round_trip(
                origin,
                "public_ip_list",
                data,
                PublicIpList::decode,
                PublicIpList::encode,
            );
            "public_ip_list"
        }
        Opcode::GET_PUBLIC_IP_INFO => {
            round_trip(
                origin,
                "public_ip_info",
                data,
                PublicIpInfo::decode,
                PublicIpInfo::encode,
            );
            "public_ip_info"
        }
        Opcode::GET_IFACES => {
            round_trip(
                origin,
                "iface_list",
                data,
                IfaceList::decode,
                IfaceList::encode,
            );
            "iface_list"
        }
        Opcode::UPTIME => {
            round_trip(origin, "uptime", data, Uptime::decode, Uptime::encode);
            "uptime"
        }
        Opcode::STATISTICS => {
            round_trip(
                origin,
                "statistics",
                data,
                Statistics::decode,
                Statistics::encode,
            );
            "statistics"
        }
        Opcode::LIST_TUNABLES => {
            round_trip(origin, "var_list", data, decode_var_list, |names| {
                encode_var_list(names.iter().map(String::as_str))
            });
            "var_list"
        }
        Opcode::GET_DBMAP => {
            round_trip(origin, "dbid_map", data, DbMap::decode, DbMap::encode);
            "dbid_map"
        }
        Opcode::GET_DBNAME | Opcode::GETDBPATH => {
            round_trip(
                origin,
                "string",
                data,
                |d| decode_nul_string(d, "string"),
                |s| encode_nul_string(s),
            );
            "string"
        }
        Opcode::GET_DB_SEQNUM => {
            round_trip(
                origin,
                "u64",
                data,
                |d| decode_u64(d, "seqnum"),
                |v| encode_u64(*v),
            );
            "u64"
        }
        Opcode::DB_OPEN_FLAGS => {
            round_trip(
                origin,
                "i32",
                data,
                |d| decode_i32(d, "tdb_flags"),
                |v| encode_i32(*v),
            );
            "i32"
        }
        Opcode::GET_TUNABLE
        | Opcode::GET_CAPABILITIES
        | Opcode::GET_DEBUG
        | Opcode::GET_RUNSTATE
        | Opcode::DB_ATTACH
        | Opcode::DB_ATTACH_PERSISTENT => {
            round_trip(origin, "u32", data, u32_decoder("value"), |v| {
                encode_u32(*v)
            });
            "u32"
        }
        _ => {
            assert!(
                data.is_empty(),
                "{origin}: reply to {} carries {} unexpected data bytes",
                Opcode(opcode).name(),
                data.len()
            );
            "no data"
        }
    }
}

/// Checks one fixture file; returns the typed checks done, for coverage asserts.
fn check_file(kind: &str, name: &str, packets: &[Fixture]) -> Vec<&'static str> {
    let mut typed = Vec::new();
    let mut pending: HashMap<u32, u32> = HashMap::new(); // reqid -> opcode
    for f in packets {
        let packet = Packet::decode(&f.bytes)
            .unwrap_or_else(|e| panic!("{}: does not decode: {e}", f.origin));
        assert_same_bytes(&f.origin, "re-encoded packet", &f.bytes, &packet.encode());
        match &packet.body {
            Body::ReqControl(c) => {
                check_comment(f, &packet, Some(c.opcode));
                pending.insert(packet.header.reqid, c.opcode);
                typed.push(check_request_data(&f.origin, c.opcode, &c.data));
            }
            Body::ReplyControl(r) => {
                let Some(opcode) = pending.remove(&packet.header.reqid) else {
                    panic!("{}: reply without a request in {kind}/{name}", f.origin)
                };
                check_comment(f, &packet, Some(opcode));
                if r.status == 0 {
                    typed.push(check_reply_data(&f.origin, opcode, &r.data));
                } else {
                    assert!(r.data.is_empty(), "{}: failed reply with data", f.origin);
                }
            }
            Body::ReqMessage(m) => {
                check_comment(f, &packet, None);
                if m.srvid == ctdbd::protocol::control::srvid::LEADER {
                    round_trip(&f.origin, "leader pnn", &m.data, u32_decoder("pnn"), |v| {
                        encode_u32(*v)
                    });
                    typed.push("leader pnn");
                } else if kind == "databases" {
                    let rec = round_trip(
                        &f.origin,
                        "rec_data",
                        &m.data,
                        RecData::decode,
                        RecData::encode,
                    );
                    typed.push(if rec.is_end_marker() {
                        "end marker"
                    } else {
                        "rec_data"
                    });
                }
            }
            Body::ReqCall(_) => {
                check_comment(f, &packet, None);
                typed.push("req_call");
            }
            Body::ReplyCall(_) => {
                check_comment(f, &packet, None);
                typed.push("reply_call");
            }
            other => panic!("{}: unexpected body {other:?}", f.origin),
        }
    }
    typed
}

#[test]
fn stock_tool_requests_decode_and_reencode_exactly() {
    let files = load("requests");
    let mut typed = Vec::new();
    for (name, packets) in &files {
        typed.extend(check_file("requests", name, packets));
        // Every command starts with the client library's handshake (§2.2).
        let first = Packet::decode(&packets[0].bytes).unwrap();
        let Body::ReqControl(c) = &first.body else {
            panic!("{name}: first packet is not a control")
        };
        assert_eq!(Opcode(c.opcode), Opcode::GET_PNN, "{name}");
        assert_eq!(first.header.srcnode, ctdbd::protocol::packet::UNKNOWN_PNN);
        assert_eq!(first.header.destnode, ctdbd::protocol::packet::CURRENT_NODE);
    }
    for needed in [
        "pid",
        "pid_srvid",
        "tunable name",
        "tunable",
        "u32",
        "sock_addr",
    ] {
        assert!(
            typed.contains(&needed),
            "no request fixture exercised {needed}"
        );
    }
}

#[test]
fn stock_daemon_replies_decode_and_reencode_exactly() {
    let files = load("replies");
    let mut typed = Vec::new();
    for (name, packets) in &files {
        typed.extend(check_file("replies", name, packets));
    }
    for needed in [
        "node_map",
        "vnn_map",
        "public_ip_list",
        "public_ip_info",
        "iface_list",
        "uptime",
        "statistics",
        "var_list",
        "u32",
        "leader pnn",
    ] {
        assert!(
            typed.contains(&needed),
            "no reply fixture exercised {needed}"
        );
    }
}

/// Facts the daemon must reproduce, read from the captured replies (FINDINGS.md).
#[test]
fn stock_daemon_reply_shapes() {
    let files: HashMap<String, Vec<Fixture>> = load("replies").into_iter().collect();
    let reply = |name: &str| -> Packet {
        let packets = &files[&format!("{name}.hex")];
        Packet::decode(&packets[1].bytes).unwrap()
    };
    let body = |p: Packet| match p.body {
        Body::ReplyControl(r) => r,
        other => panic!("not a reply: {other:?}"),
    };

    // Unknown and obsolete opcodes: −1, no text, minimum 48-byte reply.
    for name in ["unknown_opcode", "obsolete_opcode"] {
        let p = reply(name);
        assert_eq!(p.encode().len(), 48, "{name}");
        let r = body(p);
        assert_eq!((r.status, r.error.len()), (-1, 0), "{name}");
    }
    // A control to the disconnected node: −1 with a 33-byte text.
    let r = body(reply("disconnected_node"));
    assert_eq!(r.status, -1);
    assert_eq!(r.error, b"ctdb_control to disconnected node");
    // GET_TUNABLE of an unknown name: −EINVAL.
    assert_eq!(body(reply("get_tunable_unknown")).status, -22);
    // The node map lists both nodes in pnn order with port 4379.
    let map = NodeMap::decode(&body(reply("get_nodemap")).data).unwrap();
    assert_eq!(map.nodes.len(), 2);
    for (i, n) in map.nodes.iter().enumerate() {
        assert_eq!(n.pnn as usize, i);
        assert_eq!(n.addr.port(), 4379);
    }
    assert_eq!(map.nodes[1].flags, 0x3, "peer: DISCONNECTED|UNHEALTHY");
    // Daemon → client packets carry the generation, srcnode = pnn, destnode 0.
    let vnn = VnnMap::decode(&body(reply("getvnnmap")).data).unwrap();
    let p = reply("get_pnn");
    assert_eq!(p.header.generation, vnn.generation);
    assert_eq!((p.header.srcnode, p.header.destnode), (0, 0));
    // The leader message arrives with reqid 0, srcnode = the leader.
    let leader = &files["leader_message.hex"];
    let m = Packet::decode(&leader[2].bytes).unwrap();
    assert_eq!(m.header.reqid, 0);
    let Body::ReqMessage(msg) = m.body else {
        panic!("not a message")
    };
    assert_eq!(decode_u32(&msg.data, "pnn").unwrap(), 0);
}

#[test]
fn stock_daemon_database_traffic_decodes_and_reencodes_exactly() {
    let files = load("databases");
    let mut typed = Vec::new();
    for (name, packets) in &files {
        typed.extend(check_file("databases", name, packets));
    }
    for needed in [
        "database name",
        "db_id",
        "get_db_seqnum",
        "marshall_buffer",
        "traverse_start",
        "dbid_map",
        "string",
        "u64",
        "i32",
        "u32",
        "req_call",
        "reply_call",
        "rec_data",
        "end marker",
    ] {
        assert!(
            typed.contains(&needed),
            "no database fixture exercised {needed}"
        );
    }
}

/// What the stock daemon's database traffic shows (samba §2, §4.2, §6.3, §6.6).
#[test]
fn stock_daemon_database_shapes() {
    let files: HashMap<String, Vec<Fixture>> = load("databases").into_iter().collect();
    let packet = |name: &str, i: usize| -> Packet {
        Packet::decode(&files[&format!("{name}.hex")][i].bytes).unwrap()
    };
    let reply = |name: &str| match packet(name, 1).body {
        Body::ReplyControl(r) => r,
        other => panic!("{name}: not a reply: {other:?}"),
    };
    let request = |name: &str| match packet(name, 0).body {
        Body::ReqControl(c) => c,
        other => panic!("{name}: not a control: {other:?}"),
    };

    // The attach replies are the ids the database map lists, with flags 0
    // (volatile) and PERSISTENT.
    let volatile = decode_u32(&reply("db_attach").data, "db_id").unwrap();
    let persistent = decode_u32(&reply("db_attach_persistent").data, "db_id").unwrap();
    let map = DbMap::decode(&reply("get_dbmap").data).unwrap();
    let listed: Vec<(u32, u8)> = map.dbs.iter().map(|d| (d.db_id, d.flags)).collect();
    assert!(listed.contains(&(volatile, 0)), "{listed:x?}");
    assert!(listed.contains(&(persistent, 1)), "{listed:x?}");
    assert_eq!(
        decode_nul_string(&reply("get_dbname").data, "name").unwrap(),
        "fixture.tdb"
    );
    let path = decode_nul_string(&reply("getdbpath").data, "path").unwrap();
    assert!(
        path.ends_with("/persistent/fixture_persistent.tdb.0"),
        "{path}"
    );
    // Volatile: CLEAR_IF_FIRST | NOSYNC | DISALLOW_NESTING | INCOMPATIBLE_HASH, and
    // MUTEX_LOCKING when libtdb supports robust mutexes (samba §2.5).
    let flags = decode_i32(&reply("db_open_flags").data, "flags").unwrap();
    assert_eq!(flags & !0x1000, 0x0c41, "{flags:#x}");

    // The commit: control srvid = db_id; the sequence number goes from 0 to 1.
    let commit = request("trans3_commit");
    assert_eq!(commit.srvid, u64::from(persistent));
    let buf = MarshallBuffer::decode(&commit.data).unwrap();
    assert_eq!(buf.db_id, persistent);
    assert_eq!(reply("trans3_commit").status, 0);
    assert_eq!(decode_u64(&reply("get_db_seqnum").data, "seqnum"), Ok(0));
    assert_eq!(
        decode_u64(&reply("get_db_seqnum_after_commit").data, "seqnum"),
        Ok(1)
    );

    // Calls: NULL_FUNC with IMMEDIATE_MIGRATION and FETCH_FUNC, answered by a
    // REPLY_CALL with the request's reqid and no data (the record is empty).
    for (name, callid, flags) in [
        (
            "req_call_null_func",
            call_id::NULL_FUNC,
            call_flags::IMMEDIATE_MIGRATION,
        ),
        ("req_call_fetch_func", call_id::FETCH_FUNC, 0),
    ] {
        let req = packet(name, 0);
        let Body::ReqCall(call) = &req.body else {
            panic!("{name}: not a call")
        };
        assert_eq!(
            (call.db_id, call.callid, call.flags, call.key.as_slice()),
            (volatile, callid, flags, &b"k1"[..])
        );
        let rep = packet(name, 1);
        assert_eq!(rep.header.reqid, req.header.reqid);
        let Body::ReplyCall(r) = rep.body else {
            panic!("{name}: not a REPLY_CALL")
        };
        assert_eq!((r.status, r.data.len()), (0, 0), "{name}");
    }

    // The traverse: reply, then one message per record carrying the data reqid,
    // ltdb header + value, the sequence-number record included, then a 16-byte end
    // marker.
    let traverse = &files["traverse_persistent.hex"];
    let start = TraverseStart::decode(&request_at(traverse, 2).data).unwrap();
    let records: Vec<RecData> = traverse[4..]
        .iter()
        .map(|f| match Packet::decode(&f.bytes).unwrap().body {
            Body::ReqMessage(m) => {
                assert_eq!(m.srvid, start.srvid);
                RecData::decode(&m.data).unwrap()
            }
            other => panic!("{}: not a message: {other:?}", f.origin),
        })
        .collect();
    let (end, data) = records.split_last().unwrap();
    assert!(end.is_end_marker());
    assert_eq!(end.encode().len(), 16);
    assert!(records.iter().all(|r| r.reqid == start.reqid));
    let mut keys: Vec<&[u8]> = data.iter().map(|r| r.key.as_slice()).collect();
    keys.sort();
    assert_eq!(keys, [DB_SEQUENCE_NUMBER_KEY, b"key1"]);
    let key1 = data.iter().find(|r| r.key == b"key1").unwrap();
    assert_eq!(key1.value(), b"value1");
}

fn request_at(packets: &[Fixture], i: usize) -> ctdbd::protocol::ReqControl {
    match Packet::decode(&packets[i].bytes).unwrap().body {
        Body::ReqControl(c) => c,
        other => panic!("{}: not a control: {other:?}", packets[i].origin),
    }
}

//! Bad input on the client socket and from a peer: a malformed client is dropped,
//! the daemon logs why and keeps serving everyone else; unknown and obsolete
//! controls get an error reply, never silence; only root may connect; bad
//! database packets from a peer get an error answer and change nothing.
//!
//! Packets are built with the `ctdbd` crate's own codec, then broken on purpose.
//! These expectations are ours: the stock 4.17 daemon keeps a connection after a
//! bad packet (reference §2.1), so only the control and permission scenarios hold
//! for it as well (`CTDB_RS_DAEMON=stock`).
//!
//! ```text
//!   node 0 sandbox: ctdbd  <-- /run/ctdb/ctdbd.socket --  bad client (test process,
//!                                                         via /proc/<holder>/root)
//!                                                     --  `ctdb ping` (stock tool)
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use ctdbd::protocol::packet::{FrameError, CURRENT_NODE};
use ctdbd::protocol::{Body, Framer, Header, Opcode, Packet, ReqControl};
use vm::process::{indent, run};
use vm::public::read_packet;
use vm::{wait_until, Cluster, Daemon, Node, Tool};

/// The daemon must answer a client socket at once; this is generous.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the daemon may take to drop a bad client, log, or reply.
const REACT_TIMEOUT: Duration = Duration::from_secs(5);
const SOCKET: &str = "/run/ctdb/ctdbd.socket";

/// A one-node sandbox whose daemon answers `ctdb ping`.
fn serving_node() -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::builder().nodes(1).build()?;
    let node = cluster.node_mut(0);
    node.start_daemon(Daemon::from_env()?)?;
    wait_until(START_TIMEOUT, || {
        let out = node
            .ctdb(Tool::Stock, &["ping"])
            .map_err(|e| e.to_string())?;
        if out.success() {
            Ok(())
        } else {
            Err(out.to_string())
        }
    })
    .map_err(|t| anyhow::anyhow!("the daemon never answered `ctdb ping`: {t}"))?;
    Ok(cluster)
}

fn control(opcode: u32, reqid: u32) -> Packet {
    Packet {
        header: Header {
            generation: 0,
            destnode: CURRENT_NODE,
            srcnode: 0,
            reqid,
        },
        body: Body::ReqControl(ReqControl {
            opcode,
            srvid: 0,
            client_id: 0,
            flags: 0,
            data: Vec::new(),
        }),
    }
}

fn connect(node: &Node) -> anyhow::Result<UnixStream> {
    let stream = UnixStream::connect(node.path(SOCKET))?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(stream)
}

/// Reads until the daemon closes the connection; `Err` says what was seen instead.
fn wait_closed(stream: &mut UnixStream, timeout: Duration) -> Result<(), String> {
    let mut received = 0usize;
    let mut buf = [0u8; 4096];
    wait_until(timeout, || match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(n) => {
            received += n;
            Err(format!("connection still open ({received} bytes received)"))
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(format!("connection still open ({received} bytes received)"))
        }
        Err(e) => Err(format!("read failed: {e}")),
    })
    .map_err(|t| t.to_string())
}

/// A fixed pseudo-random byte string (xorshift64 from `seed`), so a failure can be
/// replayed.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One malformed client.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    /// Whether the client half-closes after sending (the truncated case: the
    /// daemon cannot know the packet is bad until the stream ends).
    half_close: bool,
    /// The log must mention one of these (case-insensitive) afterwards.
    log_mentions: Vec<String>,
}

fn cases() -> Vec<Case> {
    let ping = control(Opcode::PING.0, 1).encode();

    let mut zero = ping.clone();
    zero[0..4].copy_from_slice(&0u32.to_le_bytes());

    let huge_len = 0xFFFF_FFF0u32;
    let mut huge = ping.clone();
    huge[0..4].copy_from_slice(&huge_len.to_le_bytes());

    let mut bad_magic = ping.clone();
    bad_magic[4..8].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());

    // A REQ_CONTROL carrying 4 bytes of data is 64 bytes long; its length field
    // says 61: not a multiple of 8, and 3 bytes short of the data it declares.
    let mut with_data = control(Opcode::PING.0, 2);
    if let Body::ReqControl(c) = &mut with_data.body {
        c.data = vec![1, 2, 3, 4];
    }
    let mut mis_padded = with_data.encode();
    mis_padded[0..4].copy_from_slice(&61u32.to_le_bytes());

    let seed = 0x5eed_c7db;
    vec![
        Case {
            name: "truncated packet, then end of stream",
            bytes: ping[..20].to_vec(),
            half_close: true,
            log_mentions: [
                "middle of a packet",
                "truncat",
                "partial",
                "incomplete",
                "eof",
            ]
            .map(String::from)
            .to_vec(),
        },
        Case {
            name: "length 0",
            bytes: zero,
            half_close: false,
            log_mentions: vec![FrameError::TooShort(0).to_string(), "length 0".into()],
        },
        Case {
            name: "length 0xFFFFFFF0",
            bytes: huge,
            half_close: false,
            log_mentions: vec![
                FrameError::TooLong {
                    length: huge_len,
                    limit: Framer::DEFAULT_MAX_LEN,
                }
                .to_string(),
                huge_len.to_string(),
                format!("{huge_len:#x}"),
            ],
        },
        Case {
            name: "bad magic",
            bytes: bad_magic,
            half_close: false,
            log_mentions: vec!["magic".into()],
        },
        Case {
            name: "mis-padded length (61, body needs 64)",
            bytes: mis_padded,
            half_close: false,
            log_mentions: ["req_control.data", "truncated", "length"]
                .map(String::from)
                .to_vec(),
        },
        Case {
            name: "random garbage (xorshift seed 0x5eedc7db)",
            bytes: garbage(seed, 256),
            half_close: false,
            log_mentions: ["length", "magic", "invalid", "error"]
                .map(String::from)
                .to_vec(),
        },
    ]
}

/// Scenario: malformed clients are dropped while the daemon keeps serving.
///
/// Given a daemon answering `ctdb ping`,
/// When a client sends each malformed byte string of [`cases`],
/// Then `ctdb ping` from another client works while the bad client is connected,
///   the daemon closes the bad client's connection, `ctdb ping` works again
///   afterwards, the daemon is still running, and its log says what was wrong.
#[test]
fn malformed_clients_are_dropped_and_the_daemon_keeps_serving() -> anyhow::Result<()> {
    let mut cluster = serving_node()?;
    let node = cluster.node_mut(0);
    let mut failures = Vec::new();
    for case in cases() {
        let log_before = node.daemon()?.process.log().len();
        let mut bad = connect(node)?;
        // The daemon may already have closed the connection: a failed write is fine.
        let _ = bad.write_all(&case.bytes);

        let during = node.ctdb(Tool::Stock, &["ping"])?;
        if !during.success() {
            failures.push(format!(
                "{}: `ctdb ping` failed while the bad client was connected:\n{during}",
                case.name
            ));
        }
        if case.half_close {
            let _ = bad.shutdown(Shutdown::Write);
        }
        if let Err(seen) = wait_closed(&mut bad, REACT_TIMEOUT) {
            failures.push(format!(
                "{}: the daemon did not drop the client: {seen}",
                case.name
            ));
        }
        let after = node.ctdb(Tool::Stock, &["ping"])?;
        if !after.success() {
            failures.push(format!(
                "{}: `ctdb ping` failed afterwards:\n{after}",
                case.name
            ));
        }
        let daemon = node.daemon()?;
        if let Some(status) = daemon.process.try_wait()? {
            failures.push(format!("{}: the daemon exited with {status}", case.name));
            break;
        }
        let mentioned = wait_until(REACT_TIMEOUT, || {
            let log = daemon.process.log();
            let new = log.get(log_before..).unwrap_or("").to_lowercase();
            if case
                .log_mentions
                .iter()
                .any(|k| new.contains(&k.to_lowercase()))
            {
                Ok(())
            } else {
                Err(new)
            }
        });
        if let Err(t) = mentioned {
            failures.push(format!(
                "{}: the log does not mention any of {:?}; it gained:\n{}",
                case.name,
                case.log_mentions,
                indent(&t.last_seen)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures against the {:?} daemon:\n\n{}",
        failures.len(),
        node.daemon()?.kind,
        failures.join("\n\n")
    );
    Ok(())
}

/// Scenario: controls the daemon does not implement are answered with an error.
///
/// Given a daemon answering `ctdb ping`,
/// When a client sends REQ_CONTROL opcode 200 (unknown) and opcode 10 (obsolete in
///   4.17),
/// Then each gets a REPLY_CONTROL with its reqid and status −1, and the connection
///   stays usable (a PING on it is answered with status 0).
#[test]
fn unknown_and_obsolete_controls_get_an_error_reply() -> anyhow::Result<()> {
    let cluster = serving_node()?;
    let node = cluster.node(0);
    let mut client = connect(node)?;
    for (opcode, reqid, what) in [(200, 0x200, "unknown"), (10, 0x10, "obsolete")] {
        client.write_all(&control(opcode, reqid).encode())?;
        let reply = read_packet(&mut client, REACT_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{what} control {opcode}: {e:#}"))?;
        match &reply.body {
            Body::ReplyControl(r) if reply.header.reqid == reqid && r.status == -1 => {}
            _ => panic!("{what} control {opcode}: expected REPLY_CONTROL reqid {reqid:#x} status -1, got {reply:?}"),
        }
    }
    client.write_all(&control(Opcode::PING.0, 0x3).encode())?;
    let reply = read_packet(&mut client, REACT_TIMEOUT)?;
    assert!(
        matches!(&reply.body, Body::ReplyControl(r) if r.status >= 0) && reply.header.reqid == 3,
        "PING after the error replies: expected REPLY_CONTROL reqid 3 with status >= 0, got {reply:?}"
    );
    Ok(())
}

/// Scenario: only root may use the client socket.
///
/// Given a daemon answering `ctdb ping`,
/// When a process running as `nobody` (uid and gid 65534, no supplementary
///   groups) connects to `/run/ctdb/ctdbd.socket`,
/// Then the connection is refused with "permission denied", while the same
///   helper run as root connects.
#[test]
fn a_non_root_client_cannot_connect() -> anyhow::Result<()> {
    let cluster = serving_node()?;
    let node = cluster.node(0);
    // Copy the helper into the node's /run (a tmpfs, mode 0755) so that `nobody`
    // can execute it whatever the permissions of the build directory.
    let helper = "/run/ctdbrs-connect";
    std::fs::copy(env!("CARGO_BIN_EXE_ctdbrs-connect"), node.path(helper))?;

    let as_root = node.run(helper, &[SOCKET])?;
    assert!(
        as_root.success() && as_root.stdout == "connected\n",
        "control: root could not connect:\n{as_root}"
    );

    let mut cmd = node.command("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        helper,
        SOCKET,
    ]);
    let as_nobody = run(cmd, REACT_TIMEOUT)?;
    assert!(
        as_nobody.code == Some(libc::EACCES) && as_nobody.stderr.contains("Permission denied"),
        "a client running as nobody should get EACCES ({}):\n{as_nobody}",
        libc::EACCES
    );
    Ok(())
}

/// A control with data, to the local node.
fn control_with(opcode: Opcode, reqid: u32, flags: u32, data: Vec<u8>) -> Packet {
    let mut packet = control(opcode.0, reqid);
    if let Body::ReqControl(c) = &mut packet.body {
        c.flags = flags;
        c.data = data;
    }
    packet
}

fn call_packet(reqid: u32, db_id: u32, key: &[u8]) -> Packet {
    Packet {
        header: Header {
            generation: 0,
            destnode: CURRENT_NODE,
            srcnode: 0,
            reqid,
        },
        body: Body::ReqCall(ctdbd::protocol::call::ReqCall {
            flags: ctdbd::protocol::call::call_flags::IMMEDIATE_MIGRATION,
            db_id,
            callid: ctdbd::protocol::call::call_id::NULL_FUNC,
            hopcount: 0,
            key: key.to_vec(),
            calldata: Vec::new(),
        }),
    }
}

/// Scenario: bad database requests get an error, and records keep moving.
///
/// Given a serving node,
/// When a client attaches a name that is not a plain file name (`../escape.tdb`)
///   or lacks its NUL, asks for the path and flags of a database that does not
///   exist or with a wrongly sized request, commits a transaction whose marshall
///   buffer is garbage, schedules garbage for deletion, and calls a function on a
///   database that is not attached,
/// Then each control is answered with status −1 (the deletion, sent without
///   wanting a reply, gets none), no file is created outside the database
///   directory, the call gets no answer (as in CTDB), and on the same connection a
///   real attach and a call on it are then answered in order.
#[test]
fn bad_database_requests_get_an_error_and_records_still_move() -> anyhow::Result<()> {
    let cluster = serving_node()?;
    let node = cluster.node(0);
    let mut client = connect(node)?;
    let nul = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        b
    };
    let cases: Vec<(&str, Packet)> = vec![
        (
            "attach of ../escape.tdb",
            control_with(Opcode::DB_ATTACH, 0x101, 0, nul("../escape.tdb")),
        ),
        (
            "attach without a NUL",
            control_with(Opcode::DB_ATTACH, 0x102, 0, b"plain.tdb".to_vec()),
        ),
        (
            "path of an unknown database",
            control_with(
                Opcode::GETDBPATH,
                0x103,
                0,
                0xdead_beefu32.to_le_bytes().to_vec(),
            ),
        ),
        (
            "open flags with a 2-byte request",
            control_with(Opcode::DB_OPEN_FLAGS, 0x104, 0, vec![1, 2]),
        ),
        (
            "commit of a garbage marshall buffer",
            control_with(Opcode::TRANS3_COMMIT, 0x105, 0, garbage(5, 40)),
        ),
    ];
    for (what, packet) in cases {
        let reqid = packet.header.reqid;
        client.write_all(&packet.encode())?;
        let reply = read_packet(&mut client, REACT_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("{what}: {e:#}"))?;
        match &reply.body {
            Body::ReplyControl(r) if reply.header.reqid == reqid && r.status == -1 => {}
            _ => panic!("{what}: expected REPLY_CONTROL reqid {reqid:#x} status -1, got {reply:?}"),
        }
    }
    client.write_all(
        &control_with(
            Opcode::SCHEDULE_FOR_DELETION,
            0x106,
            ctdbd::protocol::packet::CTRL_FLAG_NOREPLY,
            garbage(6, 13),
        )
        .encode(),
    )?;
    client.write_all(&call_packet(0x107, 0xdead_beef, b"nobody").encode())?;
    assert!(
        !node.path("/var/lib/ctdb/escape.tdb.0").exists(),
        "an attach escaped the database directory"
    );

    // The same connection still works, and answers in order.
    client.write_all(&control_with(Opcode::DB_ATTACH, 0x108, 0, nul("good.tdb")).encode())?;
    let reply = read_packet(&mut client, REACT_TIMEOUT)?;
    let db_id = match &reply.body {
        Body::ReplyControl(r) if reply.header.reqid == 0x108 && r.status == 0 => {
            u32::from_le_bytes(r.data[..4].try_into()?)
        }
        _ => {
            panic!("attach of good.tdb: expected REPLY_CONTROL reqid 0x108 status 0, got {reply:?}")
        }
    };
    client.write_all(&call_packet(0x109, db_id, b"k").encode())?;
    let reply = read_packet(&mut client, REACT_TIMEOUT)?;
    assert!(
        matches!(&reply.body, Body::ReplyCall(r) if r.status == 0) && reply.header.reqid == 0x109,
        "call on good.tdb: expected REPLY_CALL reqid 0x109 status 0 (and nothing for the call on the unknown database), got {reply:?}"
    );
    let log = node.daemon_log();
    for wanted in ["attach refused", "not attached"] {
        assert!(
            log.to_lowercase().contains(wanted),
            "the daemon's log should mention {wanted:?}:\n{}",
            indent(&log)
        );
    }
    Ok(())
}

/// A stand-in for node 1's daemon, run inside node 1's namespaces: listens on
/// node 1's port, takes node 0's connection, connects to node 0 from node 1's
/// address (the daemon knows peers by source address alone), sends the packets
/// in the file given (hex, one per line), then prints every frame node 0 sends back, one hex line each,
/// until it has seen an answer to each of the reqids given or its deadline.
const FAKE_PEER: &str = r#"
import socket, struct, sys, time
own, peer, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
awaited = set(int(r) for r in sys.argv[4].split(","))
packets = [bytes.fromhex(h) for h in open(sys.argv[5]).read().split()]
lis = socket.socket()
lis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lis.bind((own, port))
lis.listen(1)
lis.settimeout(30)
incoming, _ = lis.accept()
out = socket.create_connection((peer, port), timeout=10, source_address=(own, 0))
for p in packets:
    out.sendall(p)
incoming.settimeout(0.2)
deadline = time.monotonic() + 20
buf = b""
while awaited and time.monotonic() < deadline:
    try:
        data = incoming.recv(1 << 16)
    except socket.timeout:
        continue
    if not data:
        break
    buf += data
    while len(buf) >= 4:
        n = struct.unpack("<I", buf[:4])[0]
        if n < 4 or len(buf) < n:
            break
        frame, buf = buf[:n], buf[n:]
        print(frame.hex(), flush=True)
        if len(frame) >= 32:
            awaited.discard(struct.unpack("<I", frame[28:32])[0])
print("missing " + ",".join(str(r) for r in sorted(awaited)), flush=True)
"#;

/// A packet from node 1 to node 0.
fn from_node_1(reqid: u32, body: Body) -> Packet {
    Packet {
        header: Header {
            generation: 0,
            destnode: 0,
            srcnode: 1,
            reqid,
        },
        body,
    }
}

/// Scenario: bad database packets from a peer get an error and change nothing.
///
/// Given node 0's daemon running, and node 1's address taken by a stand-in
///   (its daemon not started) that speaks to node 0 as a peer,
/// When the stand-in sends a call for a database node 0 does not have, a call
///   whose key is over the limit, a record hand-over for an unknown database,
///   and UPDATE_RECORD and a recovery push whose marshall buffers are garbage,
/// Then each call and the hand-over are answered with REPLY_ERROR and each
///   control with status −1,
///   the daemon logs what was wrong, and it keeps serving: a local client then
///   attaches a database and a call on it is answered.
#[test]
fn bad_database_packets_from_a_peer_get_an_error_and_change_nothing() -> anyhow::Result<()> {
    use ctdbd::protocol::call::{call_flags, call_id, ReqCall, ReqDmaster};
    let mut cluster = Cluster::builder().nodes(2).build()?;
    cluster.node_mut(0).start_daemon(Daemon::Ours)?;
    cluster
        .node_mut(0)
        .wait_runstate("RUNNING", START_TIMEOUT)?;
    let node = cluster.node(0);
    let mut client = connect(node)?;
    let attach = |client: &mut UnixStream, name: &str, reqid: u32| -> anyhow::Result<u32> {
        let mut nul = name.as_bytes().to_vec();
        nul.push(0);
        client.write_all(&control_with(Opcode::DB_ATTACH, reqid, 0, nul).encode())?;
        let reply = read_packet(client, REACT_TIMEOUT)?;
        match &reply.body {
            Body::ReplyControl(r) if reply.header.reqid == reqid && r.status == 0 => {
                Ok(u32::from_le_bytes(r.data[..4].try_into()?))
            }
            _ => anyhow::bail!("attach of {name}: got {reply:?}"),
        }
    };
    let attached = attach(&mut client, "before.tdb", 0x300)?;
    let call = |reqid, db_id, key: Vec<u8>| {
        from_node_1(
            reqid,
            Body::ReqCall(ReqCall {
                flags: call_flags::IMMEDIATE_MIGRATION,
                db_id,
                callid: call_id::NULL_FUNC,
                hopcount: 0,
                key,
                calldata: Vec::new(),
            }),
        )
    };
    let peer_control = |reqid, opcode: u32, data: Vec<u8>| {
        let mut packet = control(opcode, reqid);
        packet.header.destnode = 0;
        packet.header.srcnode = 1;
        if let Body::ReqControl(c) = &mut packet.body {
            c.data = data;
        }
        packet
    };
    let unknown_db = 0xdead_beef;
    // (what, packet, whether an answer is expected)
    let cases: Vec<(&str, Packet, bool)> = vec![
        (
            "call for an unknown database",
            call(0x201, unknown_db, b"k".to_vec()),
            true,
        ),
        (
            "call with a key over the limit",
            call(0x202, attached, vec![7; ctdbd::db::limits::MAX_KEY_LEN + 1]),
            true,
        ),
        (
            "hand-over for an unknown database",
            from_node_1(
                0x203,
                Body::ReqDmaster(ReqDmaster {
                    db_id: unknown_db,
                    rsn: 9,
                    dmaster: 1,
                    key: b"k".to_vec(),
                    data: b"v".to_vec(),
                    record_flags: 0,
                }),
            ),
            true,
        ),
        (
            "UPDATE_RECORD with a garbage buffer",
            peer_control(0x204, Opcode::UPDATE_RECORD.0, garbage(7, 33)),
            true,
        ),
        (
            "recovery push with a garbage buffer",
            peer_control(0x205, 14, garbage(8, 21)),
            true,
        ),
    ];
    let awaited: Vec<String> = cases
        .iter()
        .filter(|(_, _, answered)| *answered)
        .map(|(_, p, _)| p.header.reqid.to_string())
        .collect();
    let node_1 = cluster.node(1);
    let packets_file = "/run/bad-input-peer-packets.hex";
    let lines: Vec<String> = cases.iter().map(|(_, p, _)| hex(&p.encode())).collect();
    std::fs::write(node_1.path(packets_file), lines.join("\n"))?;
    let mut fake = node_1.command("python3");
    fake.args([
        "-c",
        FAKE_PEER,
        &vm::cluster::private_addr(1).to_string(),
        &vm::cluster::private_addr(0).to_string(),
        "4379",
        &awaited.join(","),
        packets_file,
    ]);
    let out = run(fake, Duration::from_secs(60))?;
    assert!(out.success(), "the stand-in peer failed: {out}");
    let frames: Vec<Packet> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("missing"))
        .filter_map(|l| Packet::decode(&unhex(l)).ok())
        .collect();
    assert!(
        out.stdout.lines().any(|l| l == "missing "),
        "node 0 did not answer every bad packet: {out}"
    );
    for (what, packet, answered) in &cases {
        if !answered {
            continue;
        }
        let reqid = packet.header.reqid;
        let reply = frames
            .iter()
            .find(|f| f.header.reqid == reqid)
            .unwrap_or_else(|| panic!("{what}: no answer"));
        match &reply.body {
            Body::ReplyError(_) if !matches!(packet.body, Body::ReqControl(_)) => {}
            Body::ReplyControl(r) if r.status == -1 => {}
            other => panic!("{what}: expected an error answer, got {other:?}"),
        }
    }

    // Still serving: a local client's attach and call are answered.
    let db_id = attach(&mut client, "after.tdb", 0x301)?;
    client.write_all(&call_packet(0x302, db_id, b"k").encode())?;
    let reply = read_packet(&mut client, REACT_TIMEOUT)?;
    assert!(
        matches!(&reply.body, Body::ReplyCall(r) if r.status == 0) && reply.header.reqid == 0x302,
        "call after the bad packets: got {reply:?}"
    );
    let log = node.daemon_log().to_lowercase();
    for wanted in ["malformed update_record", "over the limit"] {
        assert!(
            log.contains(wanted),
            "the daemon's log should mention {wanted:?}:\n{}",
            indent(&log)
        );
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#!/usr/bin/env python3
"""A raw CTDB client for capturing a real ctdbd's replies and probing its behaviour.

Part of ctdb-rs's fixture capture; capture.sh runs it against a stock ctdbd 4.17
and is how ctdbd/tests/fixtures/replies/ and the facts in FINDINGS.md are
regenerated.

Usage:
  raw_client.py replies SOCKET OUTDIR   write OUTDIR/<name>.hex (request + reply)
  raw_client.py databases SOCKET OUTDIR the database controls and calls, likewise
  raw_client.py timeline SOCKET SECS    print the daemon's state each time it changes
  raw_client.py probe SOCKET            experiments: PROCESS_EXISTS, garbage
                                        packets, leader message latency

Fixture files: for each packet a `# <OPERATION> <detail>` line, then one line of
lowercase hex.
"""

import os
import select
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stub_daemon import (  # noqa: E402
    CURRENT_NODE,
    OPCODES,
    SRVID_LEADER,
    UNKNOWN_PNN,
    describe,
    finish,
    parse_header,
    parse_message,
    parse_reply,
    recv_exact,
    req_control,
    sock_addr,
)


class Client:
    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(timeout)
        self.reqid = 1000
        self.pnn = UNKNOWN_PNN
        self.messages = []  # (monotonic time, packet)

    def close(self):
        self.sock.close()

    def next_reqid(self):
        self.reqid += 1
        return self.reqid

    def read_packet(self):
        """One packet, None at EOF; socket.timeout propagates."""
        head = recv_exact(self.sock, 4)
        if head is None:
            return None
        (length,) = struct.unpack("<I", head)
        rest = recv_exact(self.sock, length - 4)
        return None if rest is None else head + rest

    def control(self, opcode, data=b"", *, destnode=None, srvid=0, flags=0):
        """Sends a control; returns (request bytes, reply bytes)."""
        if destnode is None:
            destnode = self.pnn if self.pnn != UNKNOWN_PNN else CURRENT_NODE
        reqid = self.next_reqid()
        req = req_control(opcode, data, reqid=reqid, destnode=destnode,
                          srcnode=self.pnn, srvid=srvid, flags=flags)
        self.sock.sendall(req)
        while True:
            pkt = self.read_packet()
            if pkt is None:
                raise ConnectionError("daemon closed the connection")
            h = parse_header(pkt)
            if h["operation"] == 8 and h["reqid"] == reqid:
                return req, pkt
            self.messages.append((time.monotonic(), pkt))

    def hello(self):
        """GET_PNN, as every client does first."""
        _, rep = self.control(OPCODES["GET_PNN"], destnode=CURRENT_NODE)
        self.pnn = parse_reply(rep)["status"]
        return self.pnn

    def wait_message(self, timeout):
        """Next REQ_MESSAGE (time, packet) within timeout seconds, or None."""
        if self.messages:
            return self.messages.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            pkt = self.read_packet()
            if pkt is None:
                return None
            if parse_header(pkt)["operation"] == 5:
                return time.monotonic(), pkt


def write_fixture(path, packets):
    """packets: list of (bytes, opcode of the request a reply answers, or None)."""
    with open(path, "w") as f:
        for pkt, reply_to in packets:
            f.write("# %s\n%s\n" % (describe(pkt, reply_to), pkt.hex()))


def u32(v):
    return struct.pack("<I", v)


def stringn(text):
    raw = text.encode() + b"\0"
    return u32(len(raw)) + raw


def capture_replies(path, outdir):
    os.makedirs(outdir, exist_ok=True)
    c = Client(path)
    c.hello()
    cases = [
        ("get_pnn", OPCODES["GET_PNN"], b"", CURRENT_NODE),
        ("get_nodemap", OPCODES["GET_NODEMAP"], b"", None),
        ("getvnnmap", OPCODES["GETVNNMAP"], b"", None),
        ("get_recmode", OPCODES["GET_RECMODE"], b"", None),
        ("get_runstate", OPCODES["GET_RUNSTATE"], b"", None),
        ("get_public_ips", OPCODES["GET_PUBLIC_IPS"], b"", None),
        ("get_public_ip_info", OPCODES["GET_PUBLIC_IP_INFO"], sock_addr("10.0.0.31"), None),
        ("get_public_ip_info_unknown", OPCODES["GET_PUBLIC_IP_INFO"],
         sock_addr("10.9.9.9"), None),
        ("get_ifaces", OPCODES["GET_IFACES"], b"", None),
        ("uptime", OPCODES["UPTIME"], b"", None),
        ("statistics", OPCODES["STATISTICS"], b"", None),
        ("list_tunables", OPCODES["LIST_TUNABLES"], b"", None),
        ("get_tunable", OPCODES["GET_TUNABLE"], stringn("EnableBans"), None),
        ("get_tunable_unknown", OPCODES["GET_TUNABLE"], stringn("NoSuchTunable"), None),
        ("get_capabilities", OPCODES["GET_CAPABILITIES"], b"", None),
        ("get_debug", OPCODES["GET_DEBUG"], b"", None),
        ("ping", OPCODES["PING"], b"", None),
        ("get_pid", OPCODES["GET_PID"], b"", None),
        ("unknown_opcode", 200, b"", None),
        ("obsolete_opcode", OPCODES["GET_NODEMAPv4"], b"", None),
        ("disconnected_node", OPCODES["GET_RUNSTATE"], b"", 1),
    ]
    for name, opcode, data, dest in cases:
        req, rep = c.control(opcode, data, destnode=dest)
        write_fixture(os.path.join(outdir, name + ".hex"), [(req, None), (rep, opcode)])
        print("%-28s status=%d len=%d" % (name, parse_reply(rep)["status"], len(rep)))
    c.close()

    # A registered client's view of the leader broadcast.
    c = Client(path)
    c.hello()
    req, rep = c.control(OPCODES["REGISTER_SRVID"], srvid=SRVID_LEADER)
    got = c.wait_message(5.0)
    packets = [(req, None), (rep, OPCODES["REGISTER_SRVID"])]
    if got is not None:
        packets.append((got[1], None))
    write_fixture(os.path.join(outdir, "leader_message.hex"), packets)
    print("leader_message               %s" % ("captured" if got else "NOT RECEIVED"))
    c.close()


NULL_FUNC = 0xFF000001
FETCH_FUNC = 0xFF000002
IMMEDIATE_MIGRATION = 0x1
SEQNUM_KEY = b"__db_sequence_number__\0"


def ltdb_header(rsn, dmaster, flags=0):
    """The 24-byte ltdb header: rsn u64, dmaster u32, reserved u32, flags u32, pad."""
    return struct.pack("<QIIII", rsn, dmaster, 0, flags, 0)


def rec_data(reqid, key, data):
    return struct.pack("<IIII", 16 + len(key) + len(data), reqid, len(key), len(data)) + key + data


def marshall_buffer(db_id, records):
    return struct.pack("<II", db_id, len(records)) + b"".join(records)


def req_call(c, db_id, callid, flags, key):
    """Sends a REQ_CALL as the client library does (padded); returns (request, reply)."""
    reqid = c.next_reqid()
    body = struct.pack("<IIIIII", flags, db_id, callid, 0, len(key), 0) + key
    req = finish((0, 0, 0, 0, reqid), body)
    c.sock.sendall(req)
    while True:
        pkt = c.read_packet()
        if pkt is None:
            raise ConnectionError("daemon closed the connection")
        h = parse_header(pkt)
        if h["operation"] in (1, 4) and h["reqid"] == reqid:
            return req, pkt
        c.messages.append((time.monotonic(), pkt))


def capture_databases(path, outdir):
    """Attach, database map, calls, a persistent commit and a traverse, as smbd and
    the recovery leader use them, written to OUTDIR/<name>.hex (request + reply)."""
    os.makedirs(outdir, exist_ok=True)
    c = Client(path)
    pnn = c.hello()

    def control(name, opcode, data=b"", srvid=0):
        req, rep = c.control(opcode, data, srvid=srvid)
        write_fixture(os.path.join(outdir, name + ".hex"), [(req, None), (rep, opcode)])
        r = parse_reply(rep)
        print("%-28s status=%d len=%d" % (name, r["status"], len(rep)))
        return r

    volatile = struct.unpack("<I", control(
        "db_attach", OPCODES["DB_ATTACH"], b"fixture.tdb\0")["data"])[0]
    persistent = struct.unpack("<I", control(
        "db_attach_persistent", OPCODES["DB_ATTACH_PERSISTENT"],
        b"fixture_persistent.tdb\0")["data"])[0]
    control("get_dbmap", OPCODES["GET_DBMAP"])
    control("get_dbname", OPCODES["GET_DBNAME"], u32(volatile))
    control("getdbpath", OPCODES["GETDBPATH"], u32(persistent))
    control("db_open_flags", OPCODES["DB_OPEN_FLAGS"], u32(volatile))
    control("get_db_seqnum", OPCODES["GET_DB_SEQNUM"], u32(persistent) + u32(0))

    # A persistent transaction as smbd commits it (samba §6.3): one record and the
    # database sequence number, each with rsn + 1 and dmaster = this node.
    commit = marshall_buffer(persistent, [
        rec_data(0, b"key1", ltdb_header(1, pnn) + b"value1"),
        rec_data(0, SEQNUM_KEY, ltdb_header(1, pnn) + struct.pack("<Q", 1)),
    ])
    control("trans3_commit", OPCODES["TRANS3_COMMIT"], commit, srvid=persistent)
    control("get_db_seqnum_after_commit", OPCODES["GET_DB_SEQNUM"],
            u32(persistent) + u32(0))

    for name, callid, flags in [("req_call_null_func", NULL_FUNC, IMMEDIATE_MIGRATION),
                                ("req_call_fetch_func", FETCH_FUNC, 0)]:
        req, rep = req_call(c, volatile, callid, flags, b"k1")
        write_fixture(os.path.join(outdir, name + ".hex"), [(req, None), (rep, None)])
        print("%-28s reply operation=%d len=%d" % (name, parse_header(rep)["operation"],
                                                   len(rep)))
    c.close()

    # A traverse on a fresh connection, as smbstatus does (samba §6.6): reply first,
    # then one message per record, then the end marker.
    c = Client(path)
    c.hello()
    srvid = 0x5EED0000C0FFEE01
    packets = []
    req, rep = c.control(OPCODES["REGISTER_SRVID"], srvid=srvid)
    packets += [(req, None), (rep, OPCODES["REGISTER_SRVID"])]
    data_reqid = c.next_reqid()
    start = struct.pack("<IIQ", persistent, data_reqid, srvid)
    req, rep = c.control(OPCODES["TRAVERSE_START"], start, srvid=srvid)
    packets += [(req, None), (rep, OPCODES["TRAVERSE_START"])]
    records = 0
    while True:
        got = c.wait_message(5.0)
        if got is None:
            print("traverse: no end marker within 5 s")
            break
        packets.append((got[1], None))
        keylen, datalen = struct.unpack_from("<II", parse_message(got[1])["data"], 8)
        if keylen == 0 and datalen == 0:
            break
        records += 1
    write_fixture(os.path.join(outdir, "traverse_persistent.hex"), packets)
    print("traverse_persistent          %d records" % records)
    c.close()


def state_snapshot(c):
    def reply(opcode, data=b""):
        return parse_reply(c.control(opcode, data)[1])

    runstate = reply(OPCODES["GET_RUNSTATE"])
    recmode = reply(OPCODES["GET_RECMODE"])
    vnn = reply(OPCODES["GETVNNMAP"])
    nodemap = reply(OPCODES["GET_NODEMAP"])
    ips = reply(OPCODES["GET_PUBLIC_IPS"])
    ifaces = reply(OPCODES["GET_IFACES"])
    out = {}
    out["runstate"] = struct.unpack("<I", runstate["data"])[0] if runstate["data"] else (
        "status %d" % runstate["status"])
    out["recmode"] = recmode["status"]
    if vnn["data"]:
        gen, size = struct.unpack_from("<II", vnn["data"])
        out["vnnmap"] = (gen, size, list(struct.unpack_from("<%dI" % size, vnn["data"], 8)))
    else:
        out["vnnmap"] = "status %d" % vnn["status"]
    if nodemap["data"]:
        (num,) = struct.unpack_from("<I", nodemap["data"])
        out["nodeflags"] = [
            "pnn%d=0x%x" % struct.unpack_from("<II", nodemap["data"], 4 + 36 * i)
            for i in range(num)
        ]
    if ips["data"]:
        (num,) = struct.unpack_from("<I", ips["data"])
        lst = []
        for i in range(num):
            off = 4 + 32 * i
            (pnn,) = struct.unpack_from("<I", ips["data"], off)
            ip = socket.inet_ntoa(ips["data"][off + 8:off + 12])
            lst.append("%s->%s" % (ip, "unassigned" if pnn == UNKNOWN_PNN else pnn))
        out["public_ips"] = lst
    else:
        out["public_ips"] = "status %d" % ips["status"]
    if ifaces["data"]:
        (num,) = struct.unpack_from("<I", ifaces["data"])
        lst = []
        for i in range(num):
            raw = ifaces["data"][4 + 24 * i:4 + 24 * (i + 1)]
            name = raw[:18].split(b"\0")[0].decode()
            link, refs = struct.unpack_from("<HI", raw, 18)
            lst.append("%s link=%d refs=%d" % (name, link, refs))
        out["ifaces"] = lst
    else:
        out["ifaces"] = "status %d" % ifaces["status"]
    return out


def timeline(path, seconds):
    """Polls from the moment the socket accepts; prints each change with its time."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        try:
            c = Client(path, timeout=3.0)
            break
        except OSError:
            if time.monotonic() > deadline:
                print("socket never accepted")
                return
            time.sleep(0.02)
    t0 = time.monotonic()
    print("t=%.2fs connected (after waiting %.2fs for the socket)" % (0.0, t0 - start))
    c.hello()
    c.control(OPCODES["REGISTER_SRVID"], srvid=SRVID_LEADER)
    last = {}
    leader_msgs = []
    while time.monotonic() < deadline:
        try:
            snap = state_snapshot(c)
        except socket.timeout:
            print("t=%.2fs control timed out" % (time.monotonic() - t0))
            continue
        now = time.monotonic() - t0
        for key, value in snap.items():
            if last.get(key) != value:
                print("t=%.2fs %s: %s" % (now, key, value))
                last[key] = value
        while c.messages:
            when, pkt = c.messages.pop(0)
            m = parse_message(pkt)
            if m["srvid"] == SRVID_LEADER:
                leader_msgs.append((when - t0, struct.unpack("<i", m["data"][:4])[0]))
        got = c.wait_message(0.25)
        if got is not None:
            c.messages.insert(0, got)
    print("leader messages (t, pnn): %s" % ", ".join(
        "(%.2f, %d)" % lm for lm in leader_msgs))
    c.close()


def status_of(path, opcode, data=b""):
    c = Client(path)
    c.hello()
    st = parse_reply(c.control(opcode, data)[1])["status"]
    c.close()
    return st


def alive(path):
    try:
        c = Client(path, timeout=3.0)
        c.hello()
        c.close()
        return "daemon still answers on a new connection"
    except (OSError, ConnectionError) as e:
        return "daemon does not answer: %r" % e


def after_garbage(path, garbage, label):
    """Sends garbage then a valid GET_PNN on the same connection; reports the outcome."""
    c = Client(path, timeout=3.0)
    c.hello()
    c.sock.sendall(garbage)
    time.sleep(0.3)
    follow = req_control(OPCODES["GET_PNN"], reqid=c.next_reqid(), destnode=CURRENT_NODE,
                         srcnode=c.pnn)
    try:
        c.sock.sendall(follow)
        pkt = c.read_packet()
        if pkt is None:
            outcome = "connection closed by the daemon (EOF)"
        else:
            outcome = "connection kept; next valid request answered (%s)" % describe(
                pkt, OPCODES["GET_PNN"])
    except socket.timeout:
        outcome = "connection kept open, but no reply within 3 s"
    except OSError as e:
        outcome = "connection error %r" % e
    c.close()
    print("%-34s -> %s; %s" % (label, outcome, alive(path)))


def probe(path):
    print("== (i) PROCESS_EXISTS / CHECK_PID_SRVID")
    me = Client(path)
    me.hello()
    me.control(OPCODES["REGISTER_SRVID"], srvid=0xAE00000000001234)
    sleeper = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    daemon_pid = status_of(path, OPCODES["GET_PID"])
    for label, pid in [
        ("pid 1 (init, not a client)", 1),
        ("a live non-client process", sleeper.pid),
        ("the daemon's own pid", daemon_pid),
        ("this connected client's pid", os.getpid()),
        ("an exited process", dead.pid),
    ]:
        st = parse_reply(me.control(OPCODES["PROCESS_EXISTS"], struct.pack("<i", pid))[1])
        print("PROCESS_EXISTS %-32s -> status %d" % (label, st["status"]))
    for label, pid, srvid in [
        ("own pid, registered srvid", os.getpid(), 0xAE00000000001234),
        ("own pid, unregistered srvid", os.getpid(), 0xAE00000000009999),
        ("live non-client pid, any srvid", sleeper.pid, 0xAE00000000001234),
    ]:
        st = parse_reply(me.control(OPCODES["CHECK_PID_SRVID"],
                                    struct.pack("<iQ", pid, srvid))[1])
        print("CHECK_PID_SRVID %-31s -> status %d" % (label, st["status"]))
    sleeper.kill()
    sleeper.wait()
    me.close()

    print("== (v) garbage from a client")
    good = req_control(OPCODES["GET_PNN"], reqid=1, destnode=CURRENT_NODE, srcnode=0)
    bad_magic = good[:4] + b"XXXX" + good[8:]
    bad_version = good[:8] + u32(2) + good[12:]
    after_garbage(path, bad_magic, "bad magic (64-byte packet)")
    after_garbage(path, bad_version, "bad version")
    after_garbage(path, u32(16) + good[4:16], "length 16 (< header)")
    after_garbage(path, u32(0) + good[4:], "length 0")
    after_garbage(path, u32(1 << 20) + good[4:], "length 1 MiB (body never sent)")
    after_garbage(path, u32(0x0FFFFFF0) + good[4:], "length 0x0ffffff0 (< 256 MiB)")
    after_garbage(path, u32(0x10000010) + good[4:], "length 0x10000010 (> 256 MiB)")
    after_garbage(path, u32(0x7FFFFFF0) + good[4:], "huge length 0x7ffffff0")
    unpadded = u32(60) + good[4:60]
    after_garbage(path, unpadded, "unpadded 60-byte GET_PNN")
    reply_from_client = good[:16] + u32(8) + good[20:]
    after_garbage(path, reply_from_client, "operation REPLY_CONTROL from client")
    op6 = good[:16] + u32(6) + good[20:]
    after_garbage(path, op6, "operation 6 (removed)")

    print("== (vi) time from REGISTER_SRVID(LEADER) to the first LEADER message")
    for _ in range(5):
        c = Client(path)
        c.hello()
        t = time.monotonic()
        c.control(OPCODES["REGISTER_SRVID"], srvid=SRVID_LEADER)
        got = c.wait_message(5.0)
        if got is None:
            print("no LEADER message within 5 s")
        else:
            m = parse_message(got[1])
            print("%.3f s, pnn %d" % (got[0] - t, struct.unpack("<i", m["data"][:4])[0]))
        c.close()


def main(argv):
    if len(argv) == 4 and argv[1] == "replies":
        capture_replies(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "databases":
        capture_databases(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "timeline":
        timeline(argv[2], float(argv[3]))
    elif len(argv) == 3 and argv[1] == "probe":
        probe(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

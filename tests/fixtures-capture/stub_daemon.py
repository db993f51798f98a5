#!/usr/bin/env python3
"""A stand-in CTDB daemon that records what the stock `ctdb` tool sends.

Part of ctdb-rs's fixture capture (see capture.sh, which is how the files in
ctdbd/tests/fixtures/requests/ are regenerated). It listens on a Unix socket,
answers the handful of controls the tool commands in capture.sh need, and writes
every packet it receives to a fixture file: one `# <OPERATION> <detail>` comment
line, then the packet as one line of lowercase hex.

The answers are invented but well formed (a healthy 3-node cluster, node 0 being
the one the tool talks to); the packets the tool sends do not depend on them
beyond which controls follow which.

This module also holds the small packet helpers that raw_client.py imports.

Usage: stub_daemon.py SOCKET_PATH FIXTURE_FILE [--keep N]
  --keep N   record only the first N packets (listvars sends ~100)
The stub serves one client connection after another until it gets SIGTERM, or
until a client sends SHUTDOWN.
"""

import os
import signal
import socket
import struct
import sys
import time

MAGIC = 0x43544442
PROTOCOL = 1
CURRENT_NODE = 0xF0000001
UNKNOWN_PNN = 0xFFFFFFFF
FLAG_NOREPLY = 1
SRVID_LEADER = 0xF101000000000000

OPERATIONS = {
    0: "REQ_CALL",
    1: "REPLY_CALL",
    2: "REQ_DMASTER",
    3: "REPLY_DMASTER",
    4: "REPLY_ERROR",
    5: "REQ_MESSAGE",
    7: "REQ_CONTROL",
    8: "REPLY_CONTROL",
    9: "REQ_KEEPALIVE",
    10: "REQ_TUNNEL",
}

# Control numbers the capture uses, by CTDB's names (reference §5.1).
OPCODES = {
    "PROCESS_EXISTS": 0,
    "STATISTICS": 1,
    "PING": 3,
    "GETVNNMAP": 5,
    "GET_DEBUG": 7,
    "SET_DEBUG": 8,
    "GETDBPATH": 4,
    "GET_DBMAP": 9,
    "GET_NODEMAPv4": 10,
    "GET_RECMODE": 15,
    "DB_ATTACH": 18,
    "TRAVERSE_START": 20,
    "REGISTER_SRVID": 23,
    "DEREGISTER_SRVID": 24,
    "GET_DBNAME": 25,
    "GET_PID": 30,
    "GET_PNN": 35,
    "SHUTDOWN": 36,
    "SET_TUNABLE": 48,
    "GET_TUNABLE": 49,
    "LIST_TUNABLES": 50,
    "UPTIME": 69,
    "DB_ATTACH_PERSISTENT": 61,
    "GET_CAPABILITIES": 80,
    "GET_PUBLIC_IPS": 90,
    "GET_NODEMAP": 91,
    "GET_PUBLIC_IP_INFO": 123,
    "GET_IFACES": 124,
    "TRANS3_COMMIT": 119,
    "GET_DB_SEQNUM": 120,
    "GET_RUNSTATE": 138,
    "DB_OPEN_FLAGS": 149,
    "CHECK_PID_SRVID": 151,
}
OPCODE_NAMES = {v: k for k, v in OPCODES.items()}

SRVID_NAMES = {
    SRVID_LEADER: "LEADER",
    0xFB00000000000000: "TAKEOVER_RUN",
}


def opcode_name(opcode):
    return OPCODE_NAMES.get(opcode, "OPCODE_%d" % opcode)


def pad8(data):
    return data + b"\0" * (-len(data) % 8)


def header(length, generation, operation, destnode, srcnode, reqid):
    return struct.pack(
        "<8I", length, MAGIC, PROTOCOL, generation, operation, destnode, srcnode, reqid
    )


def finish(hdr_fields, body):
    """Header plus body, zero-padded to 8 with the padded size in `length`."""
    generation, operation, destnode, srcnode, reqid = hdr_fields
    raw = header(0, generation, operation, destnode, srcnode, reqid) + body
    raw = pad8(raw)
    return struct.pack("<I", len(raw)) + raw[4:]


def req_control(opcode, data=b"", *, reqid, destnode=CURRENT_NODE, srcnode=0,
                srvid=0, flags=0, generation=0):
    body = struct.pack("<IIQIII", opcode, 0, srvid, 0, flags, len(data)) + data
    return finish((generation, 7, destnode, srcnode, reqid), body)


def reply_control(status, data=b"", error=b"", *, reqid, generation, srcnode=0,
                  destnode=0):
    body = struct.pack("<iII", status, len(data), len(error)) + data + error
    return finish((generation, 8, destnode, srcnode, reqid), body)


def req_message(srvid, data, *, generation, destnode=0, srcnode=0, reqid=0):
    body = struct.pack("<QI", srvid, len(data)) + data
    return finish((generation, 5, destnode, srcnode, reqid), body)


def parse_header(pkt):
    (length, magic, version, generation, operation, destnode, srcnode,
     reqid) = struct.unpack_from("<8I", pkt)
    return dict(length=length, magic=magic, version=version, generation=generation,
                operation=operation, destnode=destnode, srcnode=srcnode, reqid=reqid)


def parse_control(pkt):
    opcode, _pad, srvid, client_id, flags, datalen = struct.unpack_from("<IIQIII", pkt, 32)
    return dict(opcode=opcode, srvid=srvid, client_id=client_id, flags=flags,
                data=pkt[60:60 + datalen])


def parse_reply(pkt):
    status, datalen, errorlen = struct.unpack_from("<iII", pkt, 32)
    if status != 0:
        return dict(status=status, data=b"", error=pkt[44:44 + errorlen])
    return dict(status=status, data=pkt[44:44 + datalen],
                error=pkt[44 + datalen:44 + datalen + errorlen])


def parse_message(pkt):
    srvid, datalen = struct.unpack_from("<QI", pkt, 32)
    return dict(srvid=srvid, data=pkt[44:44 + datalen])


def describe(pkt, reply_to=None):
    """The fixture comment for a packet: operation, then what it is about."""
    h = parse_header(pkt)
    op = OPERATIONS.get(h["operation"], "OPERATION_%d" % h["operation"])
    if h["operation"] == 7:
        c = parse_control(pkt)
        text = "%s %s" % (op, opcode_name(c["opcode"]))
        if c["srvid"]:
            text += " srvid=0x%x" % c["srvid"]
        if c["flags"]:
            text += " flags=0x%x" % c["flags"]
        return text
    if h["operation"] == 8:
        r = parse_reply(pkt)
        name = opcode_name(reply_to) if reply_to is not None else "?"
        return "%s %s status=%d" % (op, name, r["status"])
    if h["operation"] == 5:
        m = parse_message(pkt)
        return "%s srvid=0x%x %s" % (op, m["srvid"], SRVID_NAMES.get(m["srvid"], ""))
    return op


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_packet(sock):
    """One whole packet, or None at EOF."""
    head = recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head)
    rest = recv_exact(sock, length - 4)
    if rest is None:
        return None
    return head + rest


def sock_addr(ip, port=0):
    """A 28-byte ctdb_sock_addr for an IPv4 address."""
    return struct.pack("<H", 2) + struct.pack(">H", port) + socket.inet_aton(ip) + b"\0" * 20


def iface(name, link_up, references):
    return name.encode().ljust(18, b"\0") + struct.pack("<HI", int(link_up), references)


# ---- the stub's invented cluster ------------------------------------------------

GENERATION = 0x12345678
NODES = ["192.168.20.41", "192.168.20.42", "192.168.20.43"]
PUBLIC_IPS = [("10.0.0.31", 0), ("10.0.0.32", 1), ("10.0.0.33", 2)]
IFACES = [("eth2", True, 2), ("eth1", True, 4)]
TUNABLES = [
    ("SeqnumInterval", 1000), ("ControlTimeout", 60), ("TraverseTimeout", 20),
    ("KeepaliveInterval", 5), ("KeepaliveLimit", 5), ("RecoverTimeout", 30),
    ("RecoverInterval", 1), ("ElectionTimeout", 3), ("TakeoverTimeout", 9),
    ("MonitorInterval", 15), ("TickleUpdateInterval", 20), ("EventScriptTimeout", 30),
    ("MonitorTimeoutCount", 20), ("RecoveryGracePeriod", 120),
    ("RecoveryBanPeriod", 300), ("DatabaseHashSize", 100001), ("DatabaseMaxDead", 5),
    ("RerecoveryTimeout", 10), ("EnableBans", 1), ("NoIPFailback", 0),
    ("AllowMixedVersions", 0),
]


def stub_answer(ctrl, stub_pid):
    """(status, data) for a control, or None to send nothing."""
    op = ctrl["opcode"]
    data = ctrl["data"]
    if op == OPCODES["GET_PNN"]:
        return 0, b""
    if op == OPCODES["GET_NODEMAP"]:
        out = struct.pack("<I", len(NODES))
        for pnn, ip in enumerate(NODES):
            out += struct.pack("<II", pnn, 0) + sock_addr(ip, 4379)
        return 0, out
    if op in (OPCODES["REGISTER_SRVID"], OPCODES["DEREGISTER_SRVID"],
              OPCODES["SET_DEBUG"], OPCODES["SET_TUNABLE"],
              OPCODES["PROCESS_EXISTS"], OPCODES["CHECK_PID_SRVID"]):
        return 0, b""
    if op == OPCODES["GET_RUNSTATE"]:
        return 0, struct.pack("<I", 5)
    if op == OPCODES["GETVNNMAP"]:
        return 0, struct.pack("<5I", GENERATION, 3, 0, 1, 2)
    if op == OPCODES["GET_RECMODE"]:
        return 0, b""
    if op == OPCODES["GET_IFACES"]:
        out = struct.pack("<I", len(IFACES))
        for i in IFACES:
            out += iface(*i)
        return 0, out
    if op == OPCODES["GET_PUBLIC_IPS"]:
        out = struct.pack("<I", len(PUBLIC_IPS))
        for ip, pnn in PUBLIC_IPS:
            out += struct.pack("<I", pnn) + sock_addr(ip)
        return 0, out
    if op == OPCODES["GET_PUBLIC_IP_INFO"]:
        for ip, pnn in PUBLIC_IPS:
            if data[:28] == sock_addr(ip):
                out = struct.pack("<I", pnn) + sock_addr(ip)
                out += struct.pack("<II", 0, len(IFACES))
                for i in IFACES:
                    out += iface(*i)
                return 0, out
        return -1, b""
    if op == OPCODES["LIST_TUNABLES"]:
        text = "".join(":" + name for name, _ in TUNABLES).encode() + b"\0"
        return 0, struct.pack("<I", len(text)) + text
    if op == OPCODES["GET_TUNABLE"]:
        (n,) = struct.unpack_from("<I", data)
        want = data[4:4 + n].rstrip(b"\0").decode().lower()
        for name, value in TUNABLES:
            if name.lower() == want:
                return 0, struct.pack("<I", value)
        return -22, b""
    if op == OPCODES["UPTIME"]:
        now = int(time.time())
        return 0, struct.pack("<8q", now, 0, now - 3600, 0, now - 60, 0, now - 60, 500)
    if op == OPCODES["STATISTICS"]:
        now = int(time.time())
        stats = bytearray(488)
        struct.pack_into("<I", stats, 0, 1)
        struct.pack_into("<qqqq", stats, 448, now - 3600, 0, now, 0)
        return 0, bytes(stats)
    if op == OPCODES["PING"]:
        return 1, b""
    if op == OPCODES["GET_PID"]:
        return stub_pid, b""
    if op == OPCODES["GET_CAPABILITIES"]:
        return 0, struct.pack("<I", 0x00030003)
    if op == OPCODES["GET_DEBUG"]:
        return 0, struct.pack("<I", 3)
    return -1, b""


class Recorder:
    def __init__(self, path, keep):
        self.path = path
        self.keep = keep
        self.count = 0
        with open(path, "w"):
            pass

    def record(self, pkt):
        self.count += 1
        if self.keep is not None and self.count > self.keep:
            return
        with open(self.path, "a") as f:
            f.write("# %s\n%s\n" % (describe(pkt), pkt.hex()))


def serve_client(conn, recorder):
    """Returns True when the client asked the daemon to shut down."""
    while True:
        pkt = recv_packet(conn)
        if pkt is None:
            return False
        recorder.record(pkt)
        h = parse_header(pkt)
        if h["operation"] != 7:
            continue  # messages need no answer here
        ctrl = parse_control(pkt)
        if ctrl["opcode"] == OPCODES["SHUTDOWN"]:
            return True
        if ctrl["flags"] & FLAG_NOREPLY:
            continue
        status, data = stub_answer(ctrl, os.getpid())
        conn.sendall(reply_control(status, data, reqid=h["reqid"], generation=GENERATION))
        if ctrl["opcode"] == OPCODES["REGISTER_SRVID"] and ctrl["srvid"] == SRVID_LEADER:
            # Tell the new listener at once that node 0 leads.
            conn.sendall(req_message(SRVID_LEADER, struct.pack("<I", 0),
                                     generation=GENERATION))


def main(argv):
    if len(argv) not in (3, 5) or (len(argv) == 5 and argv[3] != "--keep"):
        sys.stderr.write(__doc__)
        return 2
    path, fixture = argv[1], argv[2]
    keep = int(argv[4]) if len(argv) == 5 else None
    recorder = Recorder(fixture, keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(8)
    try:
        while True:
            conn, _ = srv.accept()
            with conn:
                try:
                    if serve_client(conn, recorder):
                        break
                except OSError:
                    pass  # the tool exits without waiting for what it does not need
    finally:
        srv.close()
        os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

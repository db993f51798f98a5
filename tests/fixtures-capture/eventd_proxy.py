#!/usr/bin/env python3
"""Records the CTDB event protocol between the stock `ctdb-event` tool and a stock
`ctdb-eventd` 4.17, and probes the daemon with hand-made packets.

Part of ctdb-rs's fixture capture; eventd_capture.sh runs it and is how
ctdbd/tests/fixtures/eventd/ is regenerated.

Usage:
  eventd_proxy.py proxy LISTEN UPSTREAM OUT.hex [CONNS]
      Listen on the Unix socket LISTEN, serve CONNS clients (default 1) by
      relaying every frame to UPSTREAM and back, and write each frame to OUT.hex
      (requests and replies in the order they passed; with CONNS > 1 each comment
      ends in `[conn N]`). Exits when the clients hang up. Writes nothing (and
      removes OUT.hex) if no frame passed; gives up waiting for a client after
      $EVENTD_PROXY_ACCEPT_TIMEOUT seconds (default 30).
  eventd_proxy.py raw UPSTREAM OUTDIR
      Send hand-made requests straight to the daemon: the SCRIPT command (which
      the 4.17 tool never sends), a NULL string, a nonzero header version,
      pipelined requests, and malformed packets. Writes OUTDIR/raw_<case>.hex and
      prints what the daemon did with each malformed packet.

Fixture files: for each frame a `# REQUEST ...` or `# REPLY ...` comment line,
then the frame as one line of lowercase hex.

Wire summary (details in ctdbd/src/events/PROTOCOL.md): little-endian; a frame is
u32 length (whole frame), u32 version, u32 reqid, then the body. Request body:
u32 command (1 run, 2 status, 3 script) and its fields; reply body: u32 command,
i32 result and, for a successful status, the script list.
"""

import os
import socket
import struct
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean

COMMANDS = {1: "RUN", 2: "STATUS", 3: "SCRIPT"}


def recv_exact(sock, n):
    """n bytes, or fewer at EOF."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_frame(sock):
    """One whole frame, None at EOF."""
    head = recv_exact(sock, 4)
    if len(head) < 4:
        return None
    (length,) = struct.unpack("<I", head)
    rest = recv_exact(sock, max(length - 4, 0))
    if len(rest) < length - 4:
        return None
    return head + rest


class Cursor:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def u32(self):
        (v,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return v

    def i32(self):
        (v,) = struct.unpack_from("<i", self.data, self.pos)
        self.pos += 4
        return v

    def i64(self):
        (v,) = struct.unpack_from("<q", self.data, self.pos)
        self.pos += 8
        return v

    def stringn(self):
        n = self.u32()
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        if n == 0:
            return None
        return raw.split(b"\0")[0].decode(errors="replace")


def show(s):
    return "NULL" if s is None else repr(s)


def describe_request(frame):
    try:
        c = Cursor(frame)
        _length, version, reqid = c.u32(), c.u32(), c.u32()
        cmd = c.u32()
        name = COMMANDS.get(cmd, f"cmd={cmd}")
        head = f"REQUEST {name} version={version} reqid={reqid:#x}"
        if cmd == 1:
            comp, event, args = c.stringn(), c.stringn(), c.stringn()
            timeout, flags = c.u32(), c.u32()
            return (
                f"{head} component={show(comp)} event={show(event)} "
                f"args={show(args)} timeout={timeout} flags={flags}"
            )
        if cmd == 2:
            comp, event = c.stringn(), c.stringn()
            return f"{head} component={show(comp)} event={show(event)}"
        if cmd == 3:
            comp, script = c.stringn(), c.stringn()
            action = c.u32()
            return f"{head} component={show(comp)} script={show(script)} action={action}"
        return head
    except struct.error:
        return f"REQUEST malformed ({len(frame)} bytes)"


def describe_reply(frame):
    try:
        c = Cursor(frame)
        _length, version, reqid = c.u32(), c.u32(), c.u32()
        cmd, result = c.u32(), c.i32()
        name = COMMANDS.get(cmd, f"cmd={cmd}")
        text = f"REPLY {name} version={version} reqid={reqid:#x} result={result}"
        if cmd == 2 and result == 0:
            summary, num = c.i32(), c.i32()
            scripts = []
            for _ in range(num):
                sname = c.stringn()
                c.i64(), c.i64(), c.i64(), c.i64()
                sresult = c.i32()
                c.stringn()
                scripts.append(f"{sname}={sresult}")
            text += f" summary={summary} scripts=[{' '.join(scripts)}]"
        return text
    except struct.error:
        return f"REPLY malformed ({len(frame)} bytes)"


class Recorder:
    def __init__(self, path):
        self.path = path
        self.lines = []
        self.lock = threading.Lock()

    def add(self, comment, frame):
        with self.lock:
            self.lines.append(f"# {comment}\n{frame.hex()}\n")

    def write(self):
        if self.lines:
            with open(self.path, "w") as f:
                f.writelines(self.lines)
        elif os.path.exists(self.path):
            os.remove(self.path)


def proxy(listen, upstream, out, conns=1):
    """Serves `conns` clients (concurrently, as they arrive), all into one file."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(listen):
        os.remove(listen)
    server.bind(listen)
    server.listen(conns)
    server.settimeout(float(os.environ.get("EVENTD_PROXY_ACCEPT_TIMEOUT", "30")))
    rec = Recorder(out)
    threads = []

    def serve(client, n):
        daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        daemon.connect(upstream)
        tag = f" [conn {n}]" if conns > 1 else ""

        def pump(src, dst, describe):
            while True:
                frame = read_frame(src)
                if frame is None:
                    break
                rec.add(describe(frame) + tag, frame)
                dst.sendall(frame)
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        back = threading.Thread(target=pump, args=(daemon, client, describe_reply))
        back.start()
        pump(client, daemon, describe_request)
        back.join(timeout=60)
        client.close()
        daemon.close()

    try:
        for n in range(1, conns + 1):
            try:
                client, _ = server.accept()
            except socket.timeout:
                # No client: script list/enable/disable work without the daemon.
                break
            t = threading.Thread(target=serve, args=(client, n))
            t.start()
            threads.append(t)
    finally:
        server.close()
        os.remove(listen)
    for t in threads:
        t.join()
    rec.write()


# ---- raw client -------------------------------------------------------------------


def stringn(s):
    if s is None:
        return struct.pack("<I", 0)
    b = s.encode() + b"\0"
    return struct.pack("<I", len(b)) + b


def frame(reqid, body, version=0, length=None):
    total = 12 + len(body)
    return struct.pack("<III", total if length is None else length, version, reqid) + body


def run_body(component, event, args, timeout, flags=0):
    return (
        struct.pack("<I", 1)
        + stringn(component)
        + stringn(event)
        + stringn(args)
        + struct.pack("<II", timeout, flags)
    )


def status_body(component, event):
    return struct.pack("<I", 2) + stringn(component) + stringn(event)


def script_body(component, script, action):
    return struct.pack("<I", 3) + stringn(component) + stringn(script) + struct.pack("<I", action)


class Raw:
    def __init__(self, path):
        self.path = path
        self.sock = None

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)

    def exchange(self, rec, packet, replies=1):
        """Sends packet, records it and `replies` replies; None if the daemon closed."""
        if self.sock is None:
            self.connect()
        rec.add(describe_request(packet), packet)
        self.sock.sendall(packet)
        got = []
        for _ in range(replies):
            try:
                reply = read_frame(self.sock)
            except socket.timeout:
                reply = None
            if reply is None:
                self.sock.close()
                self.sock = None
                return None
            rec.add(describe_reply(reply), reply)
            got.append(reply)
        return got

    def probe(self, label, packet):
        """Sends a malformed packet; reports a reply, a closed connection or silence."""
        self.connect()
        self.sock.sendall(packet)
        self.sock.settimeout(2)
        try:
            reply = read_frame(self.sock)
            outcome = "connection closed, no reply" if reply is None else describe_reply(reply)
        except socket.timeout:
            outcome = "no reply within 2 s, connection still open"
        except ConnectionResetError:
            outcome = "connection reset, no reply"
        print(f"probe {label}: {outcome}")
        self.sock.close()
        self.sock = None


def raw(upstream, outdir):
    r = Raw(upstream)

    def case(name, steps):
        rec = Recorder(os.path.join(outdir, name + ".hex"))
        for packet, replies in steps:
            if r.exchange(rec, packet, replies) is None:
                print(f"{name}: connection closed")
        rec.write()
        print(f"{name}: {len(rec.lines)} frames")

    # SCRIPT: the protocol command the 4.17 tool never sends.
    case("raw_script_disable_local", [(frame(101, script_body("legacy", "03.local", 0)), 1)])
    case("raw_script_enable_local", [(frame(102, script_body("legacy", "03.local.script", 1)), 1)])
    case("raw_script_enable_missing", [(frame(103, script_body("legacy", "99.missing", 1)), 1)])
    case("raw_script_enable_symlink", [(frame(104, script_body("legacy", "01.ok", 1)), 1)])
    case("raw_script_unknown_component", [(frame(105, script_body("nosuch", "01.ok", 1)), 1)])
    case("raw_script_invalid_name", [(frame(106, script_body("legacy", "README", 1)), 1)])
    # A NULL event name in STATUS; a nonzero header version.
    case("raw_status_null_event", [(frame(107, status_body("legacy", None)), 1)])
    case("raw_status_version_7", [(frame(108, status_body("legacy", "monitor"), version=7), 1)])
    # Two requests in one write: the daemon answers both, each with its reqid.
    r.connect()
    both = frame(109, status_body("legacy", "monitor")) + frame(110, status_body("legacy", "startup"))
    rec = Recorder(os.path.join(outdir, "raw_pipelined.hex"))
    rec.add(describe_request(both[: len(both) // 2]), both[: len(both) // 2])
    rec.add(describe_request(both[len(both) // 2 :]), both[len(both) // 2 :])
    r.sock.sendall(both)
    for _ in range(2):
        reply = read_frame(r.sock)
        rec.add(describe_reply(reply), reply)
    rec.write()
    r.sock.close()
    r.sock = None
    print("raw_pipelined: 4 frames")

    # Malformed packets: what happens to the connection.
    r.probe("unknown command 4", frame(201, struct.pack("<I", 4)))
    r.probe("command 0", frame(202, struct.pack("<I", 0)))
    r.probe("script action 2", frame(203, script_body("legacy", "03.local", 2)))
    r.probe("body cut short", frame(204, status_body("legacy", "monitor")[:-3]))
    r.probe("string length past end", frame(205, struct.pack("<II", 2, 1000) + b"legacy\0"))
    r.probe("trailing bytes", frame(206, status_body("legacy", "monitor") + b"\0" * 5))
    r.probe("string without NUL", frame(207, struct.pack("<I", 2) + struct.pack("<I", 6) + b"legacy" + stringn("monitor")))
    r.probe("length 8 (< header)", struct.pack("<II", 8, 0))
    r.probe("length field larger than sent", frame(208, status_body("legacy", "monitor"), length=4096))
    r.probe("length 0", struct.pack("<III", 0, 0, 209))


def main():
    if len(sys.argv) in (5, 6) and sys.argv[1] == "proxy":
        conns = int(sys.argv[5]) if len(sys.argv) == 6 else 1
        proxy(sys.argv[2], sys.argv[3], sys.argv[4], conns)
    elif len(sys.argv) == 4 and sys.argv[1] == "raw":
        raw(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

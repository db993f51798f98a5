"""An SMB2 client driven line by line, for the clustered-Samba tests.

The Rust harness (tests/vm/src/smb_client.rs) runs this in the client namespace
with the `smbprotocol` package of tests/install-deps.sh's virtual environment,
writes one command per line on standard input and reads exactly one reply line
per command on standard output. Replies are `ok [key=value...]`,
`status <NT status name>` (the server refused), `timeout` or
`error <what went wrong>` (a fault of the client or of the command).

Commands (CONN and HANDLE are names the test chooses):
  connect CONN ADDRESS SHARE USER PASSWORD
  open HANDLE CONN FILE access=r|w|rw share=-|r|w|d... oplock=none|ii|excl|batch [async]
      async: send the create and reply `ok` at once; `await` gives its outcome
  await HANDLE SECONDS        the outcome of an async open
  waitbreak CONN SECONDS      the next oplock break the server sent on CONN:
                              `ok handle=HANDLE level=none|ii`
  ack HANDLE LEVEL            acknowledge a break to none|ii
  lock HANDLE OFFSET LENGTH   exclusive byte-range lock, failing at once
  unlock HANDLE OFFSET LENGTH
  write HANDLE OFFSET TEXT
  read HANDLE OFFSET LENGTH   `ok data=TEXT` (the bytes read, as UTF-8)
  close HANDLE
  quit

smbprotocol 1.17 has no handler for the server's oplock break notifications
(unsolicited messages with message id 0xFFFFFFFFFFFFFFFF): its receive thread
looks every reply up in the table of outstanding requests. `BreakSink` stands
in that table for the unsolicited id, so a break is recorded instead of killing
the connection.
"""

import queue
import struct
import sys
import threading
import uuid

from smbprotocol.connection import Connection, Commands
from smbprotocol.exceptions import SMBResponseException
from smbprotocol.header import NtStatus
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    LockFlags,
    Open,
    RequestedOplockLevel,
    ShareAccess,
    SMB2LockElement,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

UNSOLICITED = 0xFFFFFFFFFFFFFFFF
STATUS_NAMES = {
    value: name for name, value in vars(NtStatus).items() if name.startswith("STATUS_")
}
# Statuses of byte-range locking that smbprotocol 1.17's table lacks (MS-ERREF).
STATUS_NAMES.setdefault(0xC0000054, "STATUS_FILE_LOCK_CONFLICT")
STATUS_NAMES.setdefault(0xC0000055, "STATUS_LOCK_NOT_GRANTED")
STATUS_NAMES.setdefault(0xC000007E, "STATUS_RANGE_NOT_LOCKED")
OPLOCK_LEVELS = {
    "none": RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE,
    "ii": RequestedOplockLevel.SMB2_OPLOCK_LEVEL_II,
    "excl": RequestedOplockLevel.SMB2_OPLOCK_LEVEL_EXCLUSIVE,
    "batch": RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH,
}
LEVEL_NAMES = {value: name for name, value in OPLOCK_LEVELS.items()}
LEVEL_NAMES[RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE] = "lease"


class CommandError(Exception):
    """A command the client cannot carry out (a mistake of the test)."""


class _Field:
    def __init__(self, value):
        self.value = value

    def get_value(self):
        return self.value


class BreakSink:
    """Takes the place of a request for the server's unsolicited messages: each
    oplock break notification (SMB2 OPLOCK_BREAK, 24 bytes: level at offset 2,
    file id at 8..24) goes to `breaks` as (file id, level)."""

    def __init__(self, breaks):
        self.breaks = breaks
        self.session_id = None
        self.async_id = None
        self.response_event_lock = threading.Lock()
        self.response_event = threading.Event()
        self.message = {"reserved": _Field(0)}

    @property
    def response(self):
        return None

    @response.setter
    def response(self, header):
        if header["command"].get_value() != Commands.SMB2_OPLOCK_BREAK:
            return
        data = header["data"].get_value()
        if len(data) >= 24 and struct.unpack("<H", data[:2])[0] == 24:
            self.breaks.put((bytes(data[8:24]), data[2]))
        else:
            # A lease break (44 bytes): this client asks for no leases.
            self.breaks.put((None, None))


class Requests(dict):
    """The connection's table of outstanding requests, with `BreakSink` for the
    unsolicited message id."""

    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def __missing__(self, key):
        if key == UNSOLICITED:
            return self.sink
        raise KeyError(key)


class OplockBreakAck:
    """SMB2 OPLOCK_BREAK acknowledgment (MS-SMB2 2.2.24.1)."""

    COMMAND = Commands.SMB2_OPLOCK_BREAK

    def __init__(self, level, file_id):
        self.data = struct.pack("<HBBI", 24, level, 0, 0) + file_id

    def pack(self):
        return self.data

    def __len__(self):
        return len(self.data)


class Conn:
    def __init__(self, address, share, user, password):
        self.connection = Connection(uuid.uuid4(), address, 445)
        self.breaks = queue.Queue()
        self.connection.outstanding_requests = Requests(BreakSink(self.breaks))
        self.connection.connect(timeout=10)
        self.session = Session(
            self.connection, user, password, require_encryption=False
        )
        self.session.connect()
        self.tree = TreeConnect(self.session, rf"\\{address}\{share}")
        self.tree.connect()


class Handle:
    def __init__(self, conn, name):
        self.conn = conn
        self.open = Open(conn.tree, name)
        self.pending = None  # (thread, result box) of an async open


ACCESS = {
    "r": FilePipePrinterAccessMask.FILE_READ_DATA
    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
    "w": FilePipePrinterAccessMask.FILE_WRITE_DATA
    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
    "rw": FilePipePrinterAccessMask.FILE_READ_DATA
    | FilePipePrinterAccessMask.FILE_WRITE_DATA
    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES,
}


def share_mask(text):
    mask = 0
    for c in text.replace("-", ""):
        bit = {
            "r": ShareAccess.FILE_SHARE_READ,
            "w": ShareAccess.FILE_SHARE_WRITE,
            "d": ShareAccess.FILE_SHARE_DELETE,
        }.get(c)
        if bit is None:
            raise CommandError(f"share= takes letters of r, w, d or -, not {text!r}")
        mask |= bit
    return mask


def status_reply(exc):
    code = exc.status
    return "status " + STATUS_NAMES.get(code, f"0x{code:08x}")


class Client:
    def __init__(self):
        self.conns = {}
        self.handles = {}

    def conn(self, name):
        try:
            return self.conns[name]
        except KeyError:
            raise CommandError(f"no connection {name!r}") from None

    def handle(self, name):
        try:
            return self.handles[name]
        except KeyError:
            raise CommandError(f"no handle {name!r}") from None

    def run(self, words):
        verb, args = words[0], words[1:]
        method = getattr(self, "cmd_" + verb, None)
        if method is None:
            raise CommandError(f"unknown command {verb!r}")
        return method(*args)

    def cmd_connect(self, name, address, share, user, password):
        self.conns[name] = Conn(address, share, user, password)
        return "ok"

    def cmd_open(self, handle, conn, path, *options):
        opts = dict(o.split("=", 1) for o in options if "=" in o)
        is_async = "async" in options
        if opts.get("access", "rw") not in ACCESS:
            raise CommandError(f"access= takes r, w or rw, not {opts['access']!r}")
        if opts.get("oplock", "none") not in OPLOCK_LEVELS:
            raise CommandError(f"oplock= takes one of {sorted(OPLOCK_LEVELS)}")
        h = Handle(self.conn(conn), path)
        self.handles[handle] = h

        def create():
            h.open.create(
                ImpersonationLevel.Impersonation,
                ACCESS[opts.get("access", "rw")],
                FileAttributes.FILE_ATTRIBUTE_NORMAL,
                share_mask(opts.get("share", "rwd")),
                CreateDisposition.FILE_OPEN_IF,
                CreateOptions.FILE_NON_DIRECTORY_FILE,
                oplock_level=OPLOCK_LEVELS[opts.get("oplock", "none")],
            )
            return "ok oplock=" + LEVEL_NAMES.get(h.open.oplock_level, str(h.open.oplock_level))

        if not is_async:
            return outcome(create)
        box = queue.Queue()
        thread = threading.Thread(target=lambda: box.put(outcome(create)), daemon=True)
        thread.start()
        h.pending = box
        return "ok"

    def cmd_await(self, handle, seconds):
        h = self.handle(handle)
        if h.pending is None:
            raise CommandError(f"{handle} was not opened with async")
        try:
            reply = h.pending.get(timeout=float(seconds))
        except queue.Empty:
            return "timeout"
        h.pending = None
        return reply

    def cmd_waitbreak(self, conn, seconds):
        c = self.conn(conn)
        try:
            file_id, level = c.breaks.get(timeout=float(seconds))
        except queue.Empty:
            return "timeout"
        if file_id is None:
            return "error a lease break arrived; this client asks for no leases"
        for name, h in self.handles.items():
            if h.conn is c and h.open.file_id == file_id:
                return f"ok handle={name} level={LEVEL_NAMES.get(level, level)}"
        return f"ok handle=? level={LEVEL_NAMES.get(level, level)}"

    def cmd_ack(self, handle, level):
        h = self.handle(handle)
        if level not in ("none", "ii"):
            raise CommandError("ack takes none or ii")
        c = h.conn

        def ack():
            request = c.connection.send(
                OplockBreakAck(OPLOCK_LEVELS[level], h.open.file_id),
                c.session.session_id,
                c.tree.tree_connect_id,
            )
            c.connection.receive(request)
            return "ok"

        return outcome(ack)

    def lock_elements(self, offset, length, flags):
        element = SMB2LockElement()
        element["offset"] = int(offset)
        element["length"] = int(length)
        element["flags"] = flags
        return [element]

    def cmd_lock(self, handle, offset, length):
        h = self.handle(handle)
        flags = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        return outcome(lambda: then_ok(h.open.lock(self.lock_elements(offset, length, flags))))

    def cmd_unlock(self, handle, offset, length):
        h = self.handle(handle)
        flags = LockFlags.SMB2_LOCKFLAG_UNLOCK
        return outcome(lambda: then_ok(h.open.lock(self.lock_elements(offset, length, flags))))

    def cmd_write(self, handle, offset, text):
        h = self.handle(handle)
        return outcome(lambda: f"ok written={h.open.write(text.encode(), int(offset))}")

    def cmd_read(self, handle, offset, length):
        h = self.handle(handle)

        def read():
            data = h.open.read(int(offset), int(length))
            return "ok data=" + bytes(data).decode("utf-8", errors="replace")

        return outcome(read)

    def cmd_close(self, handle):
        h = self.handle(handle)
        reply = outcome(lambda: then_ok(h.open.close()))
        del self.handles[handle]
        return reply


def then_ok(_response):
    return "ok"


def outcome(action):
    """Runs `action`; a refusal of the server becomes a `status` reply."""
    try:
        return action()
    except SMBResponseException as exc:
        return status_reply(exc)


def main():
    client = Client()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words == ["quit"]:
            break
        try:
            reply = client.run(words)
        except CommandError as exc:
            reply = f"error {exc}"
        except TypeError as exc:
            reply = f"error bad arguments for {words[0]}: {exc}"
        except Exception as exc:  # the connection broke, the server vanished...
            reply = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
        print(reply, flush=True)


if __name__ == "__main__":
    main()

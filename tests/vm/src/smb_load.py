"""SMB2 load for the benchmarks (tests/vm/src/bin/bench_smb.rs).

Worker processes, each with its own SMB2 connection through a public address,
repeat one operation on a file as fast as the server answers and note when each
one completed. The harness runs this in the client namespace with the Python of
tests/install-deps.sh's virtual environment (smbprotocol).

Usage: smb_load.py USER PASSWORD SHARE OP SECONDS WORKER...
  OP          lock-unlock: open, exclusive byte-range lock, unlock, close
              lock-write:  open, exclusive byte-range lock, write, close (the
                           close drops the lock)
  SECONDS     run that long; 0: until a line `stop` (or the end of input)
  WORKER      ADDRESS:FILE:OFFSET, the address to connect through, the file and
              the offset of the worker's 10-byte lock (workers sharing a file
              lock different ranges, so that they contend on the file's records,
              not on the lock itself)

Output lines:
  ready T                     every worker is connected; the run starts at T
  progress T N0 N1 ...        every 0.25 s: each worker's completed operations
  worker I ops=N errors=E first=T last=T gap=S gap_at=T cpu=S
      gap is the longest time without a completed operation (counting from the
      start, and until the stop for a worker that is still waiting), gap_at when
      it began; cpu the worker process's user + system seconds
  done T cpu=S                the stop time and the client's CPU seconds in all
Times are CLOCK_MONOTONIC seconds, the harness's clock. An operation the server
refuses counts as an error and the worker goes on; a broken connection is counted,
reported on standard error and connected again. A request the server leaves
unanswered for STUCK seconds (or a connection attempt that long) is given up as a
real client gives up: the worker says so on standard error, drops the connection
and connects again (smbprotocol itself would wait for ever).
"""

import multiprocessing as mp
import os
import sys
import threading
import time
import uuid

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBResponseException
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

# Per worker, in a shared array: completed operations, errors, first and last
# completion, longest gap and its start.
OPS, ERRORS, FIRST, LAST, GAP, GAP_AT, FIELDS = range(7)
LOCK_LENGTH = 10
ACCESS = (
    FilePipePrinterAccessMask.FILE_READ_DATA
    | FilePipePrinterAccessMask.FILE_WRITE_DATA
    | FilePipePrinterAccessMask.FILE_READ_ATTRIBUTES
)
SHARE = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE
TICKS = os.sysconf("SC_CLK_TCK")
STUCK = 20.0


class Progress:
    """What a worker is doing, for its watchdog: the step and since when, and
    the connection to drop if the step takes more than STUCK seconds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.step = None
        self.since = 0.0
        self.connection = None

    def begin(self, step, connection=None):
        with self.lock:
            self.step, self.since = step, time.monotonic()
            if connection is not None:
                self.connection = connection

    def end(self):
        with self.lock:
            self.step = None


def watchdog(index, progress, stop):
    while not stop.wait(0.5):
        with progress.lock:
            step, since, connection = progress.step, progress.since, progress.connection
            if step is None or time.monotonic() - since < STUCK:
                continue
            progress.step = None
        print(
            f"worker {index}: no answer to {step} for {STUCK:.0f} s; dropping the connection",
            file=sys.stderr,
            flush=True,
        )
        if connection is not None:
            drop(connection)


def drop(connection):
    try:
        connection.disconnect(close=False)
    except Exception:
        pass


def connect(address, share, user, password, progress):
    connection = Connection(uuid.uuid4(), address, 445)
    progress.begin("connect", connection)
    connection.connect(timeout=10)
    session = Session(connection, user, password, require_encryption=False)
    session.connect()
    tree = TreeConnect(session, rf"\\{address}\{share}")
    tree.connect()
    progress.end()
    return connection, tree


def lock_element(offset, flags):
    element = SMB2LockElement()
    element["offset"] = offset
    element["length"] = LOCK_LENGTH
    element["flags"] = flags
    return [element]


def one_operation(tree, name, offset, op, progress):
    handle = Open(tree, name)
    progress.begin("create")
    handle.create(
        ImpersonationLevel.Impersonation,
        ACCESS,
        FileAttributes.FILE_ATTRIBUTE_NORMAL,
        SHARE,
        CreateDisposition.FILE_OPEN_IF,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
        oplock_level=RequestedOplockLevel.SMB2_OPLOCK_LEVEL_NONE,
    )
    try:
        exclusive = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        progress.begin("lock")
        handle.lock(lock_element(offset, exclusive))
        if op == "lock-write":
            progress.begin("write")
            handle.write(b"x" * LOCK_LENGTH, offset)
        else:
            progress.begin("unlock")
            handle.lock(lock_element(offset, LockFlags.SMB2_LOCKFLAG_UNLOCK))
    finally:
        progress.begin("close")
        handle.close()
        progress.end()


def worker(index, spec, args, stats, connected, start, stop):
    user, password, share, op = args
    address, name, offset = spec.split(":")
    offset = int(offset)
    base = index * FIELDS
    progress = Progress()
    threading.Thread(target=watchdog, args=(index, progress, stop), daemon=True).start()
    try:
        connection, tree = connect(address, share, user, password, progress)
    except Exception as exc:  # reported to the parent, which gives up
        connected.put((index, f"{type(exc).__name__}: {exc}"))
        return
    connected.put((index, None))
    start.wait()
    previous = stats[base + FIRST] = time.monotonic()
    stats[base + LAST] = previous
    while not stop.is_set():
        try:
            one_operation(tree, name, offset, op, progress)
        except SMBResponseException as exc:
            progress.end()
            stats[base + ERRORS] += 1
            print(f"worker {index}: {exc}", file=sys.stderr, flush=True)
            continue
        except Exception as exc:  # the connection broke: connect again
            stats[base + ERRORS] += 1
            progress.end()
            print(
                f"worker {index} at {time.monotonic():.3f}: {type(exc).__name__}: {exc}; reconnecting",
                file=sys.stderr,
                flush=True,
            )
            drop(connection)
            attempts = 0
            while not stop.is_set():
                attempts += 1
                try:
                    connection, tree = connect(address, share, user, password, progress)
                    print(
                        f"worker {index} at {time.monotonic():.3f}: connected again after {attempts} attempts",
                        file=sys.stderr,
                        flush=True,
                    )
                    break
                except Exception as exc:
                    progress.end()
                    if attempts == 1:
                        print(f"worker {index}: connecting again: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                    time.sleep(0.05)
            continue
        now = time.monotonic()
        if now - previous > stats[base + GAP]:
            stats[base + GAP] = now - previous
            stats[base + GAP_AT] = previous
        previous = now
        stats[base + LAST] = now
        stats[base + OPS] += 1
    drop(connection)


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    user, password, share, op, seconds = sys.argv[1:6]
    if op not in ("lock-unlock", "lock-write"):
        sys.exit(f"OP must be lock-unlock or lock-write, not {op!r}")
    seconds = float(seconds)
    specs = sys.argv[6:]
    ctx = mp.get_context("fork")
    stats = ctx.Array("d", len(specs) * FIELDS, lock=False)
    connected, start, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    procs = [
        ctx.Process(
            target=worker,
            args=(i, spec, (user, password, share, op), stats, connected, start, stop),
            daemon=True,
        )
        for i, spec in enumerate(specs)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        index, error = connected.get(timeout=60)
        if error is not None:
            print(f"error worker {index} ({specs[index]}) could not connect: {error}", flush=True)
            stop.set()
            start.set()
            sys.exit(1)
    begun = time.monotonic()
    start.set()
    print(f"ready {begun:.6f}", flush=True)

    def progress():
        while not stop.is_set():
            counts = " ".join(str(int(stats[i * FIELDS + OPS])) for i in range(len(specs)))
            print(f"progress {time.monotonic():.6f} {counts}", flush=True)
            time.sleep(0.25)

    reporter = threading.Thread(target=progress, daemon=True)
    reporter.start()
    if seconds > 0:
        time.sleep(seconds)
    else:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    stop.set()
    ended = time.monotonic()
    cpus = [cpu_seconds(p.pid) for p in procs]
    reporter.join()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()
    for i in range(len(specs)):
        s = stats[i * FIELDS : (i + 1) * FIELDS]
        gap, gap_at = s[GAP], s[GAP_AT]
        if ended - s[LAST] > gap:  # still waiting for an answer at the stop
            gap, gap_at = ended - s[LAST], s[LAST]
        print(
            f"worker {i} ops={int(s[OPS])} errors={int(s[ERRORS])} first={s[FIRST]:.6f} "
            f"last={s[LAST]:.6f} gap={gap:.6f} gap_at={gap_at:.6f} cpu={cpus[i]:.3f}",
            flush=True,
        )
    print(f"done {ended:.6f} cpu={sum(cpus) + cpu_seconds(os.getpid()):.3f}", flush=True)


if __name__ == "__main__":
    main()

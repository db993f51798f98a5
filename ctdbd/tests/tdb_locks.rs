//! Locks between processes on real libtdb files: the lock helper
//! (`ctdb-rs-lock-helper`, built by cargo for this test) against our own handle, as
//! reference/ctdb-protocol-samba.md §2.8 expects ctdbd and smbd to share a file.
//!
//! Every case runs on the three kinds of file ctdbd makes (§2.5): volatile with
//! fcntl chain locks, volatile with robust-mutex chain locks, persistent.
//!
//! Files with robust mutexes are tested only here, in a process without tokio:
//! libtdb's robust-mutex check installs a SIGCHLD handler for good (see
//! `tdb::runtime_check_for_robust_mutexes`).

use std::ops::ControlFlow;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ctdbd::db::hash::lookup3;
use ctdbd::db::lock_helper::{LockHelper, LockHelperError, LockTarget};
use ctdbd::db::ltdb::{self, LtdbHeader};
use ctdbd::db::tdb::{self, flags, StoreMode, Tdb, TryLock};

const HELPER: &str = env!("CARGO_BIN_EXE_ctdb-rs-lock-helper");

/// How long anything that should happen may take before the test fails. Only a
/// bound for a broken case; passing cases do not wait for it.
const DEADLINE: Duration = Duration::from_secs(20);

/// How long a helper that must *not* get its lock is watched. The negative check
/// cannot prove "never", only "not within this window"; a helper that got the lock
/// wrongly would report it within milliseconds.
const NOT_YET: Duration = Duration::from_millis(300);

/// Hash size of the test files: small, and the same for the chain check below.
const HASH_SIZE: u32 = 1009;

const KEY_A: &[u8] = b"record a";
const KEY_B: &[u8] = b"record b";

/// A kind of database file, as ctdbd opens it.
#[derive(Debug, Clone, Copy)]
struct Kind {
    name: &'static str,
    tdb_flags: u32,
}

fn kinds() -> Vec<Kind> {
    assert!(
        tdb::runtime_check_for_robust_mutexes(),
        "robust mutexes must work here: ctdbd's default volatile databases use them"
    );
    vec![
        Kind {
            name: "volatile-fcntl",
            tdb_flags: flags::VOLATILE_DB,
        },
        Kind {
            name: "volatile-mutex",
            tdb_flags: flags::VOLATILE_DB | flags::MUTEX_LOCKING,
        },
        Kind {
            name: "persistent",
            tdb_flags: flags::PERSISTENT_DB,
        },
    ]
}

/// Creates `<dir>/<kind>.tdb` as the daemon would and keeps it open.
fn create(dir: &tempfile::TempDir, kind: Kind) -> (Tdb, PathBuf) {
    let path = dir.path().join(format!("{}.tdb", kind.name));
    let tdb = Tdb::open(
        &path,
        HASH_SIZE,
        kind.tdb_flags,
        libc::O_CREAT | libc::O_RDWR,
        0o600,
    )
    .unwrap_or_else(|error| panic!("{}: {error}", kind.name));
    (tdb, path)
}

fn spawn(path: &Path, kind: Kind, target: LockTarget) -> LockHelper {
    LockHelper::spawn(Path::new(HELPER), path, kind.tdb_flags, target)
        .unwrap_or_else(|error| panic!("{}: {error}", kind.name))
}

/// A helper that holds `target`, once it says so.
fn held(path: &Path, kind: Kind, target: LockTarget) -> LockHelper {
    let mut helper = spawn(path, kind, target);
    helper
        .wait_held(Some(DEADLINE))
        .unwrap_or_else(|error| panic!("{}: {error}", kind.name));
    helper
}

fn assert_not_held_yet(helper: &mut LockHelper, kind: Kind) {
    match helper.wait_held(Some(NOT_YET)) {
        Err(LockHelperError::TimedOut { .. }) => {}
        other => panic!("{}: the helper should still wait, got {other:?}", kind.name),
    }
}

/// Runs `work` on a thread of its own, with the handle, and fails the test if it
/// has not finished by the deadline (a write that waits for a lock the helper
/// holds would hang the test otherwise).
fn within_deadline<F>(tdb: Tdb, work: F) -> Tdb
where
    F: FnOnce(&Tdb) + Send + 'static,
{
    let (done_tx, done_rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        work(&tdb);
        let _ = done_tx.send(());
        tdb
    });
    match done_rx.recv_timeout(DEADLINE) {
        Ok(()) => worker.join().unwrap(),
        // The worker panicked: join shows why.
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(_) => unreachable!("the worker sends before it returns"),
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("a write under a marked lock still waits after {DEADLINE:?}")
        }
    }
}

/// Polls `condition` until it holds or the deadline passes.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "{what}: not after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The flags of a volatile file with mutexes, as `DB_OPEN_FLAGS` reports them
/// (§2.5: 0x1C41, and 0x1CC1 after `ENABLE_SEQNUM`).
#[test]
fn mutex_volatile_flags_report_as_in_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let kind = kinds()[1];
    assert_eq!(kind.name, "volatile-mutex");
    let (tdb, _path) = create(&dir, kind);
    assert_eq!(tdb.get_flags(), 0x1C41);
    tdb.add_flags(flags::SEQNUM);
    assert_eq!(tdb.get_flags(), 0x1CC1);
    // A chain lock taken, written under and released on one thread.
    assert_eq!(tdb.chainlock_nonblock(KEY_A).unwrap(), TryLock::Held);
    tdb.store(KEY_A, b"v", StoreMode::Insert).unwrap();
    tdb.chainunlock(KEY_A).unwrap();
    assert_eq!(tdb.fetch(KEY_A).unwrap().as_deref(), Some(&b"v"[..]));
}

/// §2.8: a file made with mutexes cannot be opened for locking without them.
#[test]
fn a_mutex_file_needs_mutexes_to_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let kind = kinds()[1];
    let (tdb, path) = create(&dir, kind);
    drop(tdb);
    let error = Tdb::open(
        &path,
        0,
        flags::VOLATILE_DB & !flags::CLEAR_IF_FIRST,
        libc::O_RDWR,
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&error, tdb::TdbError::Open { source, .. } if source.raw_os_error() == Some(libc::EINVAL)),
        "{error:?}"
    );
    // With them (and without CLEAR_IF_FIRST, as the lock helper opens) it opens.
    Tdb::open(
        &path,
        0,
        kind.tdb_flags & !flags::CLEAR_IF_FIRST,
        libc::O_RDWR,
        0,
    )
    .unwrap();
}

/// The two test keys sit on different chains of a Jenkins-hashed file, so that
/// locking one says nothing about the other.
#[test]
fn test_keys_are_on_different_chains() {
    assert_ne!(lookup3(KEY_A) % HASH_SIZE, lookup3(KEY_B) % HASH_SIZE);
}

#[test]
fn a_chain_held_by_a_helper_is_busy_for_us() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        let helper = held(&path, kind, LockTarget::Chain(KEY_A.to_vec()));

        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        assert_eq!(
            tdb.lockall_nonblock().unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        if kind.tdb_flags & flags::INCOMPATIBLE_HASH != 0 {
            // Another chain is free.
            assert_eq!(
                tdb.chainlock_nonblock(KEY_B).unwrap(),
                TryLock::Held,
                "{}",
                kind.name
            );
            tdb.chainunlock(KEY_B).unwrap();
        }

        let status = helper.release().unwrap();
        assert!(status.success(), "{}: {status}", kind.name);
        // Released means reaped: the lock is free now, not eventually.
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Held,
            "{}",
            kind.name
        );
        tdb.chainunlock(KEY_A).unwrap();
    }
}

#[test]
fn a_waiting_helper_holds_only_after_the_holder_lets_go() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        let first = held(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        let mut second = spawn(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        assert_not_held_yet(&mut second, kind);
        assert!(!second.is_held());

        first.release().unwrap();
        second
            .wait_held(Some(DEADLINE))
            .unwrap_or_else(|error| panic!("{}: {error}", kind.name));
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        second.release().unwrap();
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Held,
            "{}",
            kind.name
        );
        tdb.chainunlock(KEY_A).unwrap();
    }
}

/// §2.8: the helper holds the chain, the daemon marks it and writes; the record is
/// there for the next opener.
#[test]
fn a_marked_chain_is_written_while_the_helper_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        let helper = held(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );

        let stored = ltdb::encode(&LtdbHeader::new(5, 1), b"migrated in");
        let expected = stored.clone();
        let tdb = within_deadline(tdb, move |tdb| {
            tdb.chainlock_mark(KEY_A).unwrap();
            tdb.store(KEY_A, &stored, StoreMode::Replace).unwrap();
            tdb.chainlock_unmark(KEY_A).unwrap();
        });
        helper.release().unwrap();

        // A third opener, another process: Debian's tdbdump.
        let dump = std::process::Command::new("tdbdump")
            .arg(&path)
            .output()
            .expect("tdbdump (Debian's tdb-tools) must be installed");
        assert!(dump.status.success(), "{}: {dump:?}", kind.name);
        let text = String::from_utf8_lossy(&dump.stdout);
        assert!(
            text.contains("key(8) = \"record a\""),
            "{}: {text}",
            kind.name
        );
        // 24 header bytes (rsn 5, dmaster 1) and the value.
        assert!(
            text.contains("data(35) = \"\\05\\00\\00\\00\\00\\00\\00\\00\\01\\00\\00\\00"),
            "{}: {text}",
            kind.name
        );
        assert!(text.contains("migrated in\""), "{}: {text}", kind.name);

        let fetched = tdb.fetch(KEY_A).unwrap().unwrap();
        assert_eq!(fetched, expected);
        let (header, value) = ltdb::decode(&fetched).unwrap();
        assert_eq!(
            (header.rsn, header.dmaster, value),
            (5, 1, &b"migrated in"[..])
        );
    }
}

/// The freeze: a helper holding the all-record lock stops every chain lock, the
/// daemon (marked) writes during it, and a waiting locker gets its chain at thaw.
#[test]
fn a_helper_holding_lockall_freezes_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        tdb.store(KEY_B, b"before", StoreMode::Insert).unwrap();
        let freeze = held(&path, kind, LockTarget::All);

        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        assert_eq!(
            tdb.chainlock_nonblock(KEY_B).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        assert_eq!(
            tdb.lockall_nonblock().unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );
        // smbd's view: a chain lock waits for the thaw.
        let mut locker = spawn(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        assert_not_held_yet(&mut locker, kind);

        // Recovery writes while frozen, under the helper's lock.
        let tdb = within_deadline(tdb, |tdb| {
            tdb.lockall_mark().unwrap();
            tdb.store(KEY_A, b"recovered", StoreMode::Replace).unwrap();
            tdb.delete(KEY_B).unwrap();
            tdb.lockall_unmark().unwrap();
        });

        freeze.release().unwrap();
        locker
            .wait_held(Some(DEADLINE))
            .unwrap_or_else(|error| panic!("{}: {error}", kind.name));
        locker.release().unwrap();

        let mut records = Vec::new();
        tdb.traverse_read(|key, value| {
            records.push((key.to_vec(), value.to_vec()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            records,
            vec![(KEY_A.to_vec(), b"recovered".to_vec())],
            "{}",
            kind.name
        );
    }
}

/// Closing the pipe ends the helper and frees its lock, whether it holds the lock
/// or still waits for it.
#[test]
fn closing_the_pipe_ends_the_helper_holding_or_waiting() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        let holder = held(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        let mut waiter = spawn(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
        assert_not_held_yet(&mut waiter, kind);

        // The waiter goes without ever holding; the holder keeps the lock.
        let status = waiter.release().unwrap();
        assert_eq!(status.code(), Some(0), "{}: {status}", kind.name);
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Busy,
            "{}",
            kind.name
        );

        // Dropping the handle is a release too.
        drop(holder);
        assert_eq!(
            tdb.chainlock_nonblock(KEY_A).unwrap(),
            TryLock::Held,
            "{}",
            kind.name
        );
        tdb.chainunlock(KEY_A).unwrap();
    }
}

/// PR_SET_PDEATHSIG: when the thread that started the helper ends, the helper is
/// killed and the lock is free, although its stdin pipe is still open.
#[test]
fn the_helper_dies_with_the_thread_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let (tdb, path) = create(&dir, kind);
        let (helper, tdb) = std::thread::spawn(move || {
            let helper = held(&path, kind, LockTarget::All);
            assert_eq!(
                tdb.chainlock_nonblock(KEY_A).unwrap(),
                TryLock::Busy,
                "{}",
                kind.name
            );
            (helper, tdb)
        })
        .join()
        .unwrap();
        // The thread is gone; the helper's pipes are still ours.
        wait_until(kind.name, || {
            tdb.chainlock_nonblock(KEY_A).unwrap() == TryLock::Held
        });
        tdb.chainunlock(KEY_A).unwrap();
        let status = helper.release().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{}: {status}",
            kind.name
        );
    }
}

#[test]
fn a_helper_that_cannot_open_the_file_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.tdb.0");
    let mut helper = LockHelper::spawn(
        Path::new(HELPER),
        &missing,
        flags::VOLATILE_DB,
        LockTarget::Chain(KEY_A.to_vec()),
    )
    .unwrap();
    match helper.wait_held(Some(DEADLINE)) {
        Err(LockHelperError::Died {
            status, message, ..
        }) => {
            assert_eq!(status.code(), Some(1));
            assert!(message.contains("absent.tdb.0"), "{message}");
            assert!(message.contains("No such file"), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
        other => panic!("expected Died, got {other:?}"),
    }
}

#[test]
fn a_bad_command_line_is_one_line_and_status_2() {
    let output = std::process::Command::new(HELPER)
        .args(["/nonexistent", "0x1c41", "chain", "xyz"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("xyz"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_missing_helper_program_is_a_spawn_error() {
    let error = LockHelper::spawn(
        Path::new("/nonexistent/ctdb-rs-lock-helper"),
        Path::new("/tmp/x.tdb"),
        0,
        LockTarget::All,
    )
    .unwrap_err();
    assert!(matches!(error, LockHelperError::Spawn { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("/nonexistent/ctdb-rs-lock-helper"),
        "{error}"
    );
}

/// A recovery's push rewrites a frozen database in one transaction: libtdb
/// refuses a transaction on a handle that holds locks, so the handle's locking
/// is switched off while the all-record lock stays held — by a helper (the
/// usual freeze) or by our own handle. The transaction commits, smbd stays
/// locked out until the thaw, and a cancelled one leaves the old records whole.
#[test]
fn a_frozen_database_is_rewritten_in_one_transaction() {
    for kind in kinds() {
        for by_helper in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (tdb, path) = create(&dir, kind);
            tdb.store(KEY_A, b"old a", StoreMode::Replace).unwrap();
            tdb.store(KEY_B, b"old b", StoreMode::Replace).unwrap();
            let case = format!(
                "{} frozen by {}",
                kind.name,
                if by_helper { "a helper" } else { "us" }
            );
            let freeze = if by_helper {
                let helper = held(&path, kind, LockTarget::All);
                tdb.lockall_mark().unwrap();
                Some(helper)
            } else {
                assert_eq!(tdb.lockall_nonblock().unwrap(), TryLock::Held, "{case}");
                None
            };
            let mut locker = spawn(&path, kind, LockTarget::Chain(KEY_A.to_vec()));

            // A rewrite that fails half-way is cancelled whole.
            tdb.with_locking_off(|tdb| {
                tdb.transaction_start().unwrap();
                tdb.wipe_all().unwrap();
                tdb.store(KEY_A, b"half", StoreMode::Replace).unwrap();
                tdb.transaction_cancel().unwrap();
            })
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(
                tdb.fetch(KEY_B).unwrap().as_deref(),
                Some(&b"old b"[..]),
                "{case}"
            );

            tdb.with_locking_off(|tdb| {
                tdb.transaction_start().unwrap();
                tdb.wipe_all().unwrap();
                tdb.store(KEY_A, b"new a", StoreMode::Replace).unwrap();
                tdb.transaction_commit().unwrap();
            })
            .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_not_held_yet(&mut locker, kind);

            match freeze {
                Some(helper) => {
                    tdb.lockall_unmark().unwrap();
                    helper.release().unwrap();
                }
                None => tdb.unlockall().unwrap(),
            }
            locker
                .wait_held(Some(DEADLINE))
                .unwrap_or_else(|error| panic!("{case}: {error}"));
            locker.release().unwrap();
            assert_eq!(
                tdb.fetch(KEY_A).unwrap().as_deref(),
                Some(&b"new a"[..]),
                "{case}"
            );
            assert_eq!(tdb.fetch(KEY_B).unwrap(), None, "{case}");
        }
    }
}

/// What `/proc/locks` says process `pid` is waiting for: the start offsets of the
/// byte-range locks it is blocked on.
fn blocked_on(pid: u32) -> Vec<u64> {
    let locks = std::fs::read_to_string("/proc/locks").expect("/proc/locks");
    locks
        .lines()
        .filter_map(|line| {
            // "N: -> POSIX  ADVISORY  WRITE PID MAJ:MIN:INODE START END": a waiter.
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"->") && fields.get(5) == Some(&pid.to_string().as_str()))
                .then(|| fields.get(7).and_then(|start| start.parse().ok()))
                .flatten()
        })
        .collect()
}

/// A process that opens the file while a frozen database is rewritten with locking
/// off waits at libtdb's open lock (byte 0) until the rewrite is over: its open
/// would otherwise roll back a commit in progress, whose recovery area is still
/// marked valid (found as a flake of the test above: a helper spawned just
/// before the rewrite read the old records after it).
#[test]
fn an_open_during_a_rewrite_with_locking_off_waits_for_it() {
    for kind in kinds() {
        let dir = tempfile::tempdir().unwrap();
        let (tdb, path) = create(&dir, kind);
        tdb.store(KEY_A, b"old a", StoreMode::Replace).unwrap();
        assert_eq!(
            tdb.lockall_nonblock().unwrap(),
            TryLock::Held,
            "{}",
            kind.name
        );

        let locker = tdb
            .with_locking_off(|tdb| {
                let locker = spawn(&path, kind, LockTarget::Chain(KEY_A.to_vec()));
                // Without the open lock it would get past its open and wait for
                // the chain (or the all-record lock) instead.
                wait_until(
                    &format!("{}: the opening helper waits at the open lock", kind.name),
                    || blocked_on(locker.id()) == [0],
                );
                tdb.transaction_start().unwrap();
                tdb.store(KEY_A, b"new a", StoreMode::Replace).unwrap();
                tdb.transaction_commit().unwrap();
                locker
            })
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name));
        let mut locker = locker;
        tdb.unlockall().unwrap();
        locker
            .wait_held(Some(DEADLINE))
            .unwrap_or_else(|error| panic!("{}: {error}", kind.name));
        locker.release().unwrap();
        assert_eq!(
            tdb.fetch(KEY_A).unwrap().as_deref(),
            Some(&b"new a"[..]),
            "{}",
            kind.name
        );
    }
}

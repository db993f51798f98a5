//! Runs the built `ctdb-rs-reclock-helper` as the daemon would and checks each answer
//! of CTDB's cluster mutex helper protocol: `0` taken, `1` contention, `3` error, and
//! that a holder exits (so its lock goes) when the lock file is removed or replaced,
//! when it is asked to with SIGTERM, and when its parent dies.
//!
//! Every wait has a deadline and waits for a condition (a byte, EOF, a vanished pid),
//! never for a fixed time.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const HELPER: &str = env!("CARGO_BIN_EXE_ctdb-rs-reclock-helper");

/// CTDB's own fcntl helper, from Debian's `ctdb` package.
const CTDB_FCNTL_HELPER: &str = "/usr/libexec/ctdb/ctdb_mutex_fcntl_helper";

/// How long a helper may take to answer or to exit before a test fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// A directory of its own per test, removed when the test ends (pass or fail).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "lockvol-helper-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running helper with its stdout bytes arriving on a channel (so reads can have a
/// deadline) and its stderr kept for messages. Killed when dropped.
struct Helper {
    child: Child,
    stdout: mpsc::Receiver<Option<u8>>,
    stderr: Option<ChildStderr>,
}

impl Helper {
    fn spawn(program: &str, args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut byte = [0u8];
            loop {
                match stdout.read(&mut byte) {
                    Ok(1) => {
                        if tx.send(Some(byte[0])).is_err() {
                            return;
                        }
                    }
                    _ => {
                        let _ = tx.send(None); // EOF (or a broken pipe): the helper is gone
                        return;
                    }
                }
            }
        });
        let stderr = child.stderr.take();
        Self {
            child,
            stdout: rx,
            stderr,
        }
    }

    fn ours(file: &Path, recheck_ms: Option<u32>) -> Self {
        let recheck = recheck_ms.map(|ms| ms.to_string());
        let mut args = vec![file.as_os_str()];
        if let Some(ms) = &recheck {
            args.push(ms.as_ref());
        }
        Self::spawn(HELPER, &args)
    }

    /// The first status character.
    fn status(&self) -> char {
        match self.stdout.recv_timeout(DEADLINE) {
            Ok(Some(byte)) => byte as char,
            Ok(None) => panic!("helper closed stdout without a status"),
            Err(_) => panic!("no status from the helper within {DEADLINE:?}"),
        }
    }

    /// Waits for stdout EOF (what tells the daemon the lock is gone) and returns how
    /// long it took.
    fn wait_for_eof(&self, deadline: Duration) -> Duration {
        let start = Instant::now();
        match self.stdout.recv_timeout(deadline) {
            Ok(None) => start.elapsed(),
            Ok(Some(byte)) => panic!("unexpected output {:?} from the helper", byte as char),
            Err(_) => panic!("helper still holds its stdout after {deadline:?}"),
        }
    }

    /// Everything the helper wrote to stderr; call only after it exited.
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        self.stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is gone: no such process, or a zombie (exited, not yet reaped by
/// whoever inherited it).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// Polls `condition` until it holds or `deadline` passes.
fn wait_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "{what}: not within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn second_helper_on_the_same_file_is_contended() {
    let dir = TempDir::new("contended");
    let file = dir.path("reclock");
    let holder = Helper::ours(&file, None);
    assert_eq!(holder.status(), '0');
    let second = Helper::ours(&file, None);
    assert_eq!(second.status(), '1');
    second.wait_for_eof(DEADLINE);
}

#[test]
fn after_sigterm_of_the_holder_a_new_helper_takes_the_lock() {
    let dir = TempDir::new("sigterm");
    let file = dir.path("reclock");
    let mut holder = Helper::ours(&file, None);
    assert_eq!(holder.status(), '0');
    kill(holder.pid(), Signal::SIGTERM).unwrap();
    holder.wait_for_eof(DEADLINE);
    let exit = holder.child.wait().unwrap();
    assert!(
        exit.success(),
        "SIGTERM is a release, not a failure: {exit}"
    );
    let next = Helper::ours(&file, None);
    assert_eq!(next.status(), '0');
}

#[test]
fn removing_the_lock_file_makes_the_holder_exit() {
    let dir = TempDir::new("removed");
    let file = dir.path("reclock");
    let mut holder = Helper::ours(&file, Some(100));
    assert_eq!(holder.status(), '0');
    std::fs::remove_file(&file).unwrap();
    let took = holder.wait_for_eof(Duration::from_millis(400));
    let stderr = holder.stderr();
    assert!(
        stderr.contains("is gone"),
        "took {took:?}, stderr: {stderr}"
    );
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn replacing_the_lock_file_makes_the_holder_exit() {
    let dir = TempDir::new("replaced");
    let file = dir.path("reclock");
    let mut holder = Helper::ours(&file, Some(100));
    assert_eq!(holder.status(), '0');
    let other = dir.path("reclock.new");
    std::fs::write(&other, b"").unwrap();
    std::fs::rename(&other, &file).unwrap();
    let took = holder.wait_for_eof(Duration::from_millis(400));
    let stderr = holder.stderr();
    assert!(
        stderr.contains("was replaced"),
        "took {took:?}, stderr: {stderr}"
    );
    // The new file is free: nobody holds a lock on it.
    let next = Helper::ours(&file, None);
    assert_eq!(next.status(), '0');
}

#[test]
fn a_path_under_a_missing_directory_is_an_error_naming_the_path() {
    let dir = TempDir::new("missing");
    let file = dir.path("no-such-dir/reclock");
    let mut helper = Helper::ours(&file, None);
    assert_eq!(helper.status(), '3');
    helper.wait_for_eof(DEADLINE);
    let stderr = helper.stderr();
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
}

#[test]
fn a_bad_recheck_interval_is_an_error() {
    let dir = TempDir::new("badarg");
    let file = dir.path("reclock");
    let mut helper = Helper::spawn(HELPER, &[file.as_os_str(), "soon".as_ref()]);
    assert_eq!(helper.status(), '3');
    helper.wait_for_eof(DEADLINE);
    assert!(helper.stderr().contains("RECHECK_MS"));
}

#[test]
fn no_fence_may_come_before_or_after_the_file_and_nothing_else_is_accepted() {
    let dir = TempDir::new("nofence");
    let file = dir.path("reclock");
    let before = Helper::spawn(HELPER, &["--no-fence".as_ref(), file.as_os_str()]);
    assert_eq!(before.status(), '0');
    drop(before);
    let after = Helper::spawn(
        HELPER,
        &[file.as_os_str(), "100".as_ref(), "--no-fence".as_ref()],
    );
    assert_eq!(after.status(), '0');
    let mut unknown = Helper::spawn(
        HELPER,
        &[file.as_os_str(), "100".as_ref(), "--fence".as_ref()],
    );
    assert_eq!(unknown.status(), '3');
    unknown.wait_for_eof(DEADLINE);
    assert!(unknown.stderr().contains("usage"), "{}", unknown.stderr());
}

#[test]
fn a_lock_file_not_on_the_expected_mount_is_not_tried() {
    let dir = TempDir::new("mount");
    let file = dir.path("reclock");
    // The temporary directory is not a mount point of its own: as for a volume
    // that is not mounted, the file lies on whatever holds the directory.
    let not_a_mount = dir.path("");
    let mut helper = Helper::spawn(
        HELPER,
        &[
            file.as_os_str(),
            "--mount".as_ref(),
            not_a_mount.as_os_str(),
        ],
    );
    assert_eq!(helper.status(), '3');
    helper.wait_for_eof(DEADLINE);
    let stderr = helper.stderr();
    assert!(stderr.contains("is the volume mounted?"), "{stderr}");
    assert!(!file.exists(), "the lock file must not be created");
    // The mount that does hold it is accepted.
    let root = Helper::spawn(
        HELPER,
        &[file.as_os_str(), "--mount".as_ref(), "/".as_ref()],
    );
    let holder_mount = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let expected = lockvol::mounts::mount_of(&holder_mount, &file).unwrap();
    if expected.mount_point == std::path::Path::new("/") {
        assert_eq!(root.status(), '0');
    } else {
        assert_eq!(
            root.status(),
            '3',
            "{file:?} is on {:?}",
            expected.mount_point
        );
        let on_its_mount = Helper::spawn(
            HELPER,
            &[
                file.as_os_str(),
                "--mount".as_ref(),
                expected.mount_point.as_os_str(),
            ],
        );
        assert_eq!(on_its_mount.status(), '0');
    }
}

#[test]
fn the_helper_exits_when_its_parent_dies() {
    let dir = TempDir::new("orphan");
    let file = dir.path("reclock");
    let out = dir.path("helper.out");
    // A short-lived shell starts the helper in the background, prints its pid and exits;
    // the helper's status goes to a file so it cannot mix with the pid on the pipe.
    let mut shell = Command::new("sh")
        .args(["-c", r#""$0" "$1" > "$2" 2>&1 & echo $!; sleep 1"#, HELPER])
        .arg(&file)
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(shell.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line.trim().parse().unwrap();
    wait_until(DEADLINE, "helper took the lock", || {
        std::fs::read(&out).is_ok_and(|bytes| bytes.starts_with(b"0"))
    });
    shell.wait().unwrap();
    wait_until(DEADLINE, "orphaned helper exited", || is_gone(pid));
    let next = Helper::ours(&file, None);
    assert_eq!(next.status(), '0');
}

#[test]
fn ctdb_fcntl_helper_sees_our_lock() {
    assert!(
        Path::new(CTDB_FCNTL_HELPER).exists(),
        "{CTDB_FCNTL_HELPER} is missing: install Debian's ctdb package"
    );
    let dir = TempDir::new("ctdb");
    let file = dir.path("reclock");
    let ours = Helper::ours(&file, None);
    assert_eq!(ours.status(), '0');
    let theirs = Helper::spawn(CTDB_FCNTL_HELPER, &[file.as_os_str()]);
    assert_eq!(theirs.status(), '1');
    drop(ours);
    drop(theirs);
    let theirs = Helper::spawn(CTDB_FCNTL_HELPER, &[file.as_os_str()]);
    assert_eq!(theirs.status(), '0');
    let ours = Helper::ours(&file, None);
    assert_eq!(ours.status(), '1');
}

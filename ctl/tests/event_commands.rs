//! `ctdb event ...` and `ctdb scriptstatus`: our `ctdb` and Debian's stock 4.17
//! `/usr/bin/ctdb` run the same command lines against the same stock `ctdb-eventd`
//! and the same script directories, and must print the same bytes on stdout and
//! stderr and exit with the same status.
//!
//! Setup (as `tests/fixtures-capture/eventd_capture.sh` does it): a scratch
//! `CTDB_BASE` in test mode (`CTDB_TEST_MODE=1`, so the socket is
//! `$CTDB_BASE/run/eventd.socket`, scripts are enabled in `$CTDB_BASE/events/C` and
//! provided in `$CTDB_BASE/share/events/C`); the stock daemon runs inside
//! `unshare -m` with a private `/run`, so `/run/ctdb` and `/etc/ctdb` are never
//! touched. Components: `legacy` (linked, local, disabled scripts), `failing`,
//! `slow`, `signal`, `empty`, `queue`.
//!
//! Compared: every subcommand with its results and errors (never ran, unknown
//! component, failed, timed out, killed, cancelled, bad timeout, run-all, script
//! not found or not a script, ...), `-n`, helper options after `--`, no daemon,
//! test mode without `CTDB_BASE`, and odd replies from a scripted socket (exit
//! statuses past 255, wrong command, undecodable). For `script enable|disable` the
//! tree is rebuilt before each tool and the resulting directory is compared too.
//! Usage texts are our own words, so for wrong command lines only stderr and the
//! exit status are compared (stdout must be non-empty for both).
//!
//! Needs root (the mount namespace) and the stock binaries; it fails, not skips,
//! without them.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const STOCK_CTDB: &str = "/usr/bin/ctdb";
const STOCK_HELPER: &str = "/usr/libexec/ctdb/ctdb-event";
const STOCK_EVENTD: &str = "/usr/libexec/ctdb/ctdb-eventd";
const UNSHARE: &str = "/usr/bin/unshare";
const OURS: &str = env!("CARGO_BIN_EXE_ctdb");

/// What one tool run printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    stdout: String,
    stderr: String,
    code: i32,
}

/// How to compare the two tools' runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// Everything, byte for byte.
    Exact,
    /// A wrong command line: our usage text is our own, so stderr and the exit
    /// status must match and both must print something on stdout.
    Usage,
}

/// The two tools, with the environment every run gets.
struct Tools {
    failures: Vec<String>,
    cases: usize,
}

impl Tools {
    fn new() -> Self {
        Self {
            failures: Vec::new(),
            cases: 0,
        }
    }

    /// Runs `program ARGS` with a clean environment: `PATH`, `TZ=UTC`, and `env`.
    fn run(program: &str, args: &[&str], env: &[(&str, &str)], merged: bool) -> Run {
        let mut cmd = if merged {
            // One pipe for both streams, so the order across them is kept.
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg("exec \"$0\" \"$@\" 2>&1").arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("TZ", "UTC")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        Run {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code().unwrap_or(-1),
        }
    }

    /// Runs the stock tool and then ours with the same arguments and environment,
    /// after `before` each time, and records any difference (also in what
    /// `after` reports about the file system).
    fn compare_with(
        &mut self,
        args: &[&str],
        env: &[(&str, &str)],
        how: Compare,
        merged: bool,
        before: &dyn Fn(),
        after: &dyn Fn() -> String,
    ) -> Run {
        self.cases += 1;
        before();
        let stock = Self::run(STOCK_CTDB, args, env, merged);
        let stock_fs = after();
        before();
        let ours = Self::run(OURS, args, env, merged);
        let ours_fs = after();
        let same = match how {
            Compare::Exact => stock == ours,
            Compare::Usage => {
                stock.stderr == ours.stderr
                    && stock.code == ours.code
                    && !stock.stdout.is_empty()
                    && !ours.stdout.is_empty()
            }
        };
        let env_text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !same {
            self.failures.push(format!(
                "ctdb {} [{}]{}\n  stock: {stock:?}\n  ours:  {ours:?}",
                args.join(" "),
                env_text.join(" "),
                if merged { " (2>&1)" } else { "" },
            ));
        }
        if stock_fs != ours_fs {
            self.failures.push(format!(
                "ctdb {}: the file system differs afterwards\n  stock:\n{stock_fs}  ours:\n{ours_fs}",
                args.join(" ")
            ));
        }
        stock
    }

    fn compare(&mut self, args: &[&str], env: &[(&str, &str)], how: Compare) -> Run {
        self.compare_with(args, env, how, false, &|| {}, &String::new)
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ctdb-rs-event-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The stock event daemon in its own mount namespace; killed on drop.
struct Eventd {
    child: Child,
    log: PathBuf,
}

impl Eventd {
    fn start(base: &Path, log: PathBuf) -> Self {
        let log_file = fs::File::create(&log).unwrap();
        let child = Command::new(UNSHARE)
            .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
            .arg("mount -t tmpfs -o mode=755 ctdb-rs-evtest /run && exec \"$0\"")
            .arg(STOCK_EVENTD)
            .env("CTDB_BASE", base)
            .env("CTDB_TEST_MODE", "1")
            .env("CTDB_INTERACTIVE", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {STOCK_EVENTD}: {e}"));
        let mut daemon = Self { child, log };
        let socket = base.join("run/eventd.socket");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline || daemon.child.try_wait().unwrap().is_some() {
                panic!(
                    "the stock ctdb-eventd did not come up:\n{}",
                    fs::read_to_string(&daemon.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

impl Drop for Eventd {
    fn drop(&mut self) {
        // unshare and sh exec'd into the daemon: this is its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An executable `#!/bin/sh` script.
fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The `legacy` component: provided 01.ok, 05.quiet (linked), 11.natgw; local
/// 02.disabled (mode 644) and 03.local; a README.
fn legacy_tree(base: &Path) {
    let share = base.join("share/events/legacy");
    let etc = base.join("events/legacy");
    let _ = fs::remove_dir_all(&etc);
    fs::create_dir_all(&share).unwrap();
    fs::create_dir_all(&etc).unwrap();
    script(&share.join("01.ok.script"), "echo \"hello $*\"");
    script(&share.join("05.quiet.script"), "exit 0");
    script(&share.join("11.natgw.script"), "exit 0");
    for name in ["01.ok", "05.quiet"] {
        symlink(
            share.join(format!("{name}.script")),
            etc.join(format!("{name}.script")),
        )
        .unwrap();
    }
    fs::write(etc.join("02.disabled.script"), "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(
        etc.join("02.disabled.script"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    script(&etc.join("03.local.script"), "echo \"local $1\"");
    fs::write(etc.join("README"), "not a script\n").unwrap();
}

/// `legacy_tree` plus oddities for `script ...`: a badly named file, a directory,
/// a fifo, a dangling link, a provided script that is a link, a component with only
/// provided scripts and one with only local scripts.
fn odd_tree(base: &Path) {
    legacy_tree(base);
    let etc = base.join("events/legacy");
    let share = base.join("share/events/legacy");
    fs::write(etc.join("ab.x.script"), "x").unwrap();
    fs::create_dir(etc.join("07.dir.script")).unwrap();
    let status = Command::new("mkfifo")
        .arg(etc.join("08.fifo.script"))
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo");
    symlink("/nonexistent", etc.join("09.dangling.script")).unwrap();
    let _ = fs::remove_file(share.join("04.link.script"));
    symlink(share.join("11.natgw.script"), share.join("04.link.script")).unwrap();
    let other = base.join("share/events/other");
    fs::create_dir_all(&other).unwrap();
    script(&other.join("01.a.script"), "exit 0");
    let _ = fs::remove_dir_all(base.join("events/other"));
    fs::create_dir_all(base.join("events/local")).unwrap();
    script(&base.join("events/local/01.l.script"), "exit 0");
}

/// Every entry of `dir`: name, type, permission bits, link target.
fn snapshot(dir: &Path) -> String {
    let mut lines: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| {
                let e = e.unwrap();
                let meta = fs::symlink_metadata(e.path()).unwrap();
                let kind = match meta.file_type() {
                    t if t.is_symlink() => {
                        format!("-> {}", fs::read_link(e.path()).unwrap().display())
                    }
                    t if t.is_dir() => "dir".to_owned(),
                    t if t.is_fifo() => "fifo".to_owned(),
                    _ => "file".to_owned(),
                };
                format!(
                    "    {} {:o} {kind}\n",
                    e.file_name().to_string_lossy(),
                    meta.permissions().mode() & 0o7777
                )
            })
            .collect(),
        Err(e) => vec![format!("    ({e})\n")],
    };
    lines.sort();
    lines.concat()
}

fn check_prerequisites() {
    assert!(
        running_as_root(),
        "tests/event_commands.rs must run as root (a mount namespace for the stock daemon)"
    );
    for path in [STOCK_CTDB, STOCK_HELPER, STOCK_EVENTD, UNSHARE, "/bin/sh"] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install Debian's ctdb 4.17 package (and util-linux)"
        );
    }
    let version = Tools::run(STOCK_CTDB, &["version"], &[], false);
    assert!(
        version.stdout.starts_with("4.17."),
        "{STOCK_CTDB} is not CTDB 4.17: {version:?}"
    );
}

fn running_as_root() -> bool {
    // The effective uid from /proc (no unsafe call needed).
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn event_commands_match_the_stock_tool() {
    check_prerequisites();
    let scratch = Scratch::new("main");
    let base = scratch.0.join("base");
    let base_text = base.to_string_lossy().into_owned();
    fs::create_dir_all(base.join("run")).unwrap();
    legacy_tree(&base);
    for component in ["failing", "slow", "signal", "empty", "queue"] {
        fs::create_dir_all(base.join("events").join(component)).unwrap();
    }
    let ev = |c: &str, f: &str| base.join("events").join(c).join(f);
    script(&ev("failing", "01.ok.script"), "exit 0");
    script(
        &ev("failing", "02.fail.script"),
        "printf \"bad thing\\nsecond line\\n\"; exit 3",
    );
    script(&ev("failing", "03.after.script"), "echo after");
    script(&ev("slow", "01.ok.script"), "exit 0");
    script(&ev("slow", "02.slow.script"), "echo partial; sleep 30");
    script(
        &ev("signal", "01.sig.script"),
        "printf \"no newline\"; kill -TERM $$",
    );
    // Marks that it started, so a test can wait for it to be running.
    let started = |event: &str| base.join(format!("queue-{event}.started"));
    script(
        &ev("queue", "01.sleep.script"),
        &format!(
            "touch \"{}/queue-$1.started\"; sleep 2; echo \"slept $1\"",
            base_text
        ),
    );
    let daemon = Eventd::start(&base, scratch.0.join("eventd.log"));

    let env: &[(&str, &str)] = &[("CTDB_BASE", &base_text), ("CTDB_TEST_MODE", "1")];
    let mut t = Tools::new();
    use Compare::{Exact, Usage};
    let exact = |t: &mut Tools, line: &str| {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare(&args, env, Exact)
    };

    // Runs and statuses, in an order that leaves the same state for both tools.
    for line in [
        "event status legacy monitor",
        "scriptstatus",
        "event run 10 legacy monitor",
        "event status legacy monitor",
        "scriptstatus",
        "scriptstatus monitor",
        "scriptstatus startup",
        "scriptstatus bogus",
        "event run 10 legacy takeip eth1 10.0.0.31 24",
        "event status legacy takeip",
        "event run 10 failing monitor",
        "event status failing monitor",
        "event run 1 slow monitor",
        "event status slow monitor",
        "event run 10 signal startup",
        "event status signal startup",
        "event run 10 empty monitor",
        "event status empty monitor",
        "event run 10 nosuch monitor",
        "event status nosuch monitor",
        "event run 10 legacy bogus",
        "event status legacy bogus",
        "event run 0 legacy monitor",
        "event status legacy monitor",
        "scriptstatus",
        "event run x legacy monitor",
        "event run 10x legacy monitor",
        "event run 3000000000 legacy monitor",
        "event run 4294967306 empty monitor",
        "event run +5 legacy startup",
        "event status legacy startup",
        "event status legacy startup",
        "event run -5 legacy monitor",
        "-n 1 event status legacy monitor",
        "-n 0 scriptstatus",
        "event status legacy monitor -n 2",
        "-n -1 scriptstatus",
        "-n -1 event status legacy monitor",
        "-t 0 -d DEBUG -X event status legacy monitor",
        "-- event -d ERROR status legacy monitor",
        "-- event --debug=ERROR status legacy monitor",
        "-- event status - monitor",
    ] {
        exact(&mut t, line);
    }
    let run_all = [env, &[("CTDB_EVENT_RUN_ALL", "1")]].concat();
    t.compare(
        &["event", "run", "10", "failing", "monitor"],
        &run_all,
        Exact,
    );
    exact(&mut t, "event status failing monitor");
    // Both streams in one pipe: the tool's own line comes after the helper's output.
    for line in ["event run 1 slow monitor", "event status slow monitor"] {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare_with(&args, env, Exact, true, &|| {}, &String::new);
    }

    // Wrong command lines.
    for line in [
        "event",
        "event bogus",
        "event run",
        "event run 10",
        "event run 10 legacy",
        "event status",
        "event status legacy",
        "event status legacy monitor extra",
        "event script",
        "event script bogus legacy",
        "event script list",
        "event script list legacy extra",
        "event script enable legacy",
        "event script disable legacy a b",
        "scriptstatus monitor extra",
        "-- event run -5 legacy monitor",
        "-- event --bogus status legacy monitor",
        "-- event status legacy monitor -d",
        "-- event -h",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare(&args, env, Usage);
    }

    // A monitor cancelled by another event, seen by the tool that asked for it.
    for first_stock in [true, false] {
        t.cases += 1;
        let _ = fs::remove_file(started("monitor"));
        let program = if first_stock { STOCK_CTDB } else { OURS };
        let handle = {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Tools::run(
                    program,
                    &["event", "run", "10", "queue", "monitor"],
                    &env,
                    true,
                )
            })
        };
        // The monitor must be running before the startup that cancels it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !started("monitor").exists() {
            assert!(
                Instant::now() < deadline,
                "the queued monitor never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let startup = Tools::run(
            STOCK_CTDB,
            &["event", "run", "10", "queue", "startup"],
            env,
            false,
        );
        let cancelled = handle.join().unwrap();
        let expected = Run {
            stdout: "Event monitor in queue got cancelled\n\
                     event daemon helper failed with error 61\n"
                .into(),
            stderr: String::new(),
            code: 61,
        };
        if cancelled != expected || startup.code != 0 {
            t.failures.push(format!(
                "cancelled monitor ({}): {cancelled:?}, startup: {startup:?}",
                if first_stock { "stock" } else { "ours" }
            ));
        }
    }
    exact(&mut t, "event status queue monitor");
    exact(&mut t, "event status queue startup");

    // Scripts: each tool starts from the same tree; the trees must end the same.
    let etc_legacy = base.join("events/legacy");
    let reset = || odd_tree(&base);
    let after = || {
        format!(
            "  legacy:\n{}  other:\n{}",
            snapshot(&etc_legacy),
            snapshot(&base.join("events/other"))
        )
    };
    for line in [
        "event script list legacy",
        "event script list nosuch",
        "event script list other",
        "event script list local",
        "event script enable legacy 11.natgw",
        "event script enable legacy 01.ok",
        "event script enable legacy 02.disabled",
        "event script enable legacy 02.disabled.script",
        "event script enable legacy 99.missing",
        "event script enable legacy README",
        "event script enable legacy README/x",
        "event script enable legacy ab.x",
        "event script enable legacy 07.dir",
        "event script enable legacy 08.fifo",
        "event script enable legacy 09.dangling",
        "event script enable legacy 04.link",
        "event script enable other 01.a",
        "event script enable nosuch 01.ok",
        "event script disable legacy 05.quiet",
        "event script disable legacy 03.local",
        "event script disable legacy 11.natgw",
        "event script disable legacy 99.none",
        "event script disable legacy README/x",
        "event script disable legacy 07.dir",
        "event script disable legacy 09.dangling",
        "event script disable nosuch 01.ok",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare_with(&args, env, Exact, false, &reset, &after);
    }
    // A sequence on one tree: enable, disable, then list.
    reset();
    for line in [
        "event script enable legacy 11.natgw",
        "event script enable legacy 02.disabled",
        "event script disable legacy 05.quiet",
        "event script enable legacy 04.link",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        let stock = Tools::run(STOCK_CTDB, &args, env, false);
        assert_eq!(stock.code, 0, "{line}: {stock:?}");
    }
    let changed = snapshot(&etc_legacy);
    exact(&mut t, "event script list legacy");
    assert_eq!(snapshot(&etc_legacy), changed, "listing changed the tree");

    // No daemon behind the socket path.
    let idle = scratch.0.join("idle");
    fs::create_dir_all(idle.join("run")).unwrap();
    fs::create_dir_all(idle.join("events/legacy")).unwrap();
    let idle_text = idle.to_string_lossy().into_owned();
    let idle_env: &[(&str, &str)] = &[("CTDB_BASE", &idle_text), ("CTDB_TEST_MODE", "1")];
    for line in [
        "event status legacy monitor",
        "event run 5 legacy monitor",
        "scriptstatus",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare(&args, idle_env, Exact);
    }
    // Test mode without CTDB_BASE: 4.17's helper aborts.
    for line in [
        "event status legacy monitor",
        "event run 5 legacy monitor",
        "event script list legacy",
        "event script enable legacy 01.ok",
        "scriptstatus",
    ] {
        let args: Vec<&str> = line.split_whitespace().collect();
        t.compare(&args, &[("CTDB_TEST_MODE", "1")], Exact);
    }
    t.compare(
        &["event", "status", "legacy"],
        &[("CTDB_TEST_MODE", "1")],
        Usage,
    );

    // Odd replies from a scripted socket.
    scripted_replies(&mut t, &scratch.0);

    drop(daemon);
    assert!(
        t.failures.is_empty(),
        "{} of {} cases differ from the stock tool:\n{}",
        t.failures.len(),
        t.cases,
        t.failures.join("\n")
    );
}

/// How the scripted socket answers the next connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The request's command with this result (and no data).
    Result(i32),
    /// A status with data: summary and one script with this result.
    Status { summary: i32, result: i32 },
    /// A reply for another command, result 0.
    OtherCommand,
    /// An unknown command number.
    BadCommand,
    /// The command only, no result.
    Truncated,
    /// Hang up without a reply.
    HangUp,
}

fn reply_frame(reqid: u32, command: u32, answer: Answer) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut put = |b: &[u8]| body.extend_from_slice(b);
    match answer {
        Answer::Result(r) => {
            put(&command.to_le_bytes());
            put(&r.to_le_bytes());
        }
        Answer::Status { summary, result } => {
            put(&command.to_le_bytes());
            put(&0i32.to_le_bytes());
            put(&summary.to_le_bytes());
            put(&1i32.to_le_bytes());
            put(&5u32.to_le_bytes());
            put(b"01.x\0");
            for v in [1_795_248_541i64, 250_000, 1_795_248_542, 1] {
                put(&v.to_le_bytes());
            }
            put(&result.to_le_bytes());
            put(&4u32.to_le_bytes());
            put(b"out\0");
        }
        Answer::OtherCommand => {
            put(&(if command == 3 { 1u32 } else { 3u32 }).to_le_bytes());
            put(&0i32.to_le_bytes());
        }
        Answer::BadCommand => {
            put(&9u32.to_le_bytes());
            put(&0i32.to_le_bytes());
        }
        Answer::Truncated => put(&command.to_le_bytes()),
        Answer::HangUp => return None,
    }
    let mut frame = Vec::new();
    frame.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&0u32.to_le_bytes());
    frame.extend_from_slice(&reqid.to_le_bytes());
    frame.extend_from_slice(&body);
    Some(frame)
}

/// Both tools against a socket that answers as told: exit statuses past the
/// helper's range, errors the stock daemon never sends, broken replies.
fn scripted_replies(t: &mut Tools, scratch: &Path) {
    let base = scratch.join("scripted");
    fs::create_dir_all(base.join("run")).unwrap();
    let socket = base.join("run/eventd.socket");
    let listener = UnixListener::bind(&socket).unwrap();
    let answer = Arc::new(Mutex::new(Answer::HangUp));
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let answer = Arc::clone(&answer);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while request.len() < 4
                    || request.len() < u32::from_le_bytes(request[..4].try_into().unwrap()) as usize
                {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                if request.len() < 16 {
                    continue;
                }
                let reqid = u32::from_le_bytes(request[8..12].try_into().unwrap());
                let command = u32::from_le_bytes(request[12..16].try_into().unwrap());
                let answer = *answer.lock().unwrap();
                if let Some(frame) = reply_frame(reqid, command, answer) {
                    let _ = conn.write_all(&frame);
                }
            }
        })
    };
    let text = base.to_string_lossy().into_owned();
    let env: &[(&str, &str)] = &[("CTDB_BASE", &text), ("CTDB_TEST_MODE", "1")];
    let mut cases = Vec::new();
    for r in [255, 256, 64, 63, 318, -3, -256, 99, 110, 125, 8, 2, 22, 71] {
        cases.push(Answer::Result(r));
    }
    cases.extend([
        Answer::Status {
            summary: -7,
            result: -7,
        },
        Answer::Status {
            summary: 300,
            result: 300,
        },
        Answer::Status {
            summary: 0,
            result: -1000,
        },
        Answer::OtherCommand,
        Answer::BadCommand,
        Answer::Truncated,
        Answer::HangUp,
    ]);
    for case in cases {
        *answer.lock().unwrap() = case;
        let lines: &[&str] = match case {
            Answer::Status { .. } => &["event status legacy monitor", "scriptstatus"],
            _ => &[
                "event status legacy monitor",
                "event run 5 legacy monitor",
                "scriptstatus",
            ],
        };
        for line in lines {
            let args: Vec<&str> = line.split_whitespace().collect();
            let before = t.failures.len();
            t.compare(&args, env, Compare::Exact);
            if t.failures.len() > before {
                let last = t.failures.pop().unwrap();
                t.failures
                    .push(format!("{last}\n  (socket answered {case:?})"));
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = std::os::unix::net::UnixStream::connect(&socket);
    server.join().unwrap();
}

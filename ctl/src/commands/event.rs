//! `ctdb event run|status|script ...` and `ctdb scriptstatus [EVENT]`: event scripts
//! without the daemon's control socket (`ctdbd/src/events/PROTOCOL.md` §1).
//!
//! The 4.17 tool hands these to a helper process (`ctdb-event`), which talks to the
//! event socket for `run` and `status` and edits the script directories itself for
//! `script list|enable|disable`; the tool then turns the helper's exit status into
//! its own. We do the helper's work in-process and keep everything observable the
//! same: the helper's stdout and stderr, then the tool's own line about the exit
//! status, and the exit status.
//!
//! ```text
//!   ctdb event run|status ──frame──> <rundir>/eventd.socket ──reply──> text, status
//!   ctdb event script ...  ── <etc>/events/C (scripts, links) + <data>/events/C
//!   helper status h:  64 ≤ h ≤ 254  ->  "event daemon helper failed with error h-64", exit h-64
//!                     otherwise     ->  exit h            (scriptstatus: always 0)
//! ```
//!
//! Paths come from [`Paths`]: the event socket is `<rundir>/eventd.socket`, scripts
//! are enabled in `<etc>/events/COMPONENT` and provided in `<data>/events/COMPONENT`.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, DirEntryExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use ctdbd::events::protocol::{
    DecodeError, Framer, Header, Reply, ReplyBody, Request, RequestBody, RunRequest, StatusReply,
    StatusRequest, LEGACY, RUN_ALL,
};
use ctdbd::events::{render_status_reply, status_label, strerror};
use ctdbd::paths::Paths;
use serde::Serialize;

use super::node::Moment;
use super::{json_text, CommandError, Outcome};

/// The request id of the stock helper's first (and only) request.
const REQID: u32 = 0x7fff_ff38;
/// The script file suffix.
const SCRIPT_SUFFIX: &str = ".script";

/// The event subcommands: words, arguments and a summary in our words.
const SUBCOMMANDS: &[(&str, &str, &str)] = &[
    (
        "run",
        "<timeout> <component> <event> [<args>...]",
        "run an event's scripts and wait for the outcome",
    ),
    (
        "status",
        "<component> <event>",
        "print how each script did in the event's last run",
    ),
    (
        "script list",
        "<component>",
        "list the scripts, with * before the enabled ones",
    ),
    ("script enable", "<component> <script>", "enable a script"),
    ("script disable", "<component> <script>", "disable a script"),
];

/// The text for a wrong `ctdb event` command line (stdout, exit 1): every
/// subcommand, or only `which`.
pub fn event_usage(which: Option<&str>) -> String {
    let mut text = String::from(
        "Usage: ctdb event [-d LEVEL] <command> [<args>]\n\
         \n\
         Event commands (no daemon connection needed):\n",
    );
    for (name, args, summary) in SUBCOMMANDS {
        if which.is_none_or(|w| w == *name) {
            text.push_str(&format!("  {:<36}  {summary}\n", format!("{name} {args}")));
        }
    }
    text
}

/// What the event commands take from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnv {
    /// `CTDB_TEST_MODE` is set, to anything.
    pub test_mode: bool,
    /// `CTDB_BASE` is set (4.17 refuses to run in test mode without it).
    pub base_set: bool,
    /// `CTDB_EVENT_RUN_ALL` is set: with test mode, `run` asks for every script to
    /// run even after one fails.
    pub run_all: bool,
    /// Socket and directories.
    pub paths: Paths,
}

impl EventEnv {
    /// From an environment lookup.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            test_mode: var("CTDB_TEST_MODE").is_some(),
            base_set: var("CTDB_BASE").is_some(),
            run_all: var("CTDB_EVENT_RUN_ALL").is_some(),
            paths: Paths::from_env(&var),
        }
    }

    /// From the process environment.
    pub fn from_process() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// `<etc>/events/<component>`, joined as text (a component is not a path to us).
    fn etc_component(&self, component: &str) -> PathBuf {
        join_text(&self.paths.etc_dir, format!("events/{component}"))
    }

    /// `<data>/events/<component>`.
    fn data_component(&self, component: &str) -> PathBuf {
        join_text(&self.paths.data_dir, format!("events/{component}"))
    }
}

/// `dir/rest` by string concatenation, as C builds it: `rest` may hold `/` or `..`
/// and is never taken as an absolute path.
fn join_text(dir: &Path, rest: impl AsRef<std::ffi::OsStr>) -> PathBuf {
    let mut path = OsString::from(dir.as_os_str());
    path.push("/");
    path.push(rest);
    PathBuf::from(path)
}

/// How the helper ended, as the tool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HelperEnd {
    /// It exited with this status (only the low 8 bits count, as for a process).
    Exit(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// What the helper printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Helper {
    stdout: String,
    stderr: String,
    end: HelperEnd,
}

impl Helper {
    fn exit(code: i32) -> Self {
        Self {
            stdout: String::new(),
            stderr: String::new(),
            end: HelperEnd::Exit(code),
        }
    }

    fn stdout(text: String, code: i32) -> Self {
        Self {
            stdout: text,
            ..Self::exit(code)
        }
    }

    fn stderr(text: String, code: i32) -> Self {
        Self {
            stderr: text,
            ..Self::exit(code)
        }
    }

    /// The usage text and exit status 1 of a wrong command line.
    fn usage(which: Option<&str>) -> Self {
        Self::stdout(event_usage(which), 1)
    }

    /// 4.17's helper in test mode without `CTDB_BASE`: a message, then SIGABRT.
    fn broken_setup() -> Self {
        Self {
            stdout: String::new(),
            stderr: "Broken CTDB setup, CTDB_BASE not set in test mode\n".to_owned(),
            end: HelperEnd::Signal(libc::SIGABRT),
        }
    }

    /// The tool's outcome for this helper run: the helper's output, then the tool's
    /// report of the exit status. `scriptstatus` exits 0 whatever happened.
    fn finish(self, scriptstatus: bool) -> Outcome {
        let (after, code) = match self.end {
            HelperEnd::Exit(status) => {
                let status = status & 0xff;
                if (64..=254).contains(&status) {
                    (
                        format!("event daemon helper failed with error {}\n", status - 64),
                        status - 64,
                    )
                } else {
                    (String::new(), status)
                }
            }
            HelperEnd::Signal(signal) => (
                format!("event daemon helper terminated with signal {signal}\n"),
                libc::EINTR,
            ),
        };
        Outcome {
            stdout: self.stdout,
            stderr: self.stderr,
            stderr_after: after,
            code: if scriptstatus { 0 } else { code },
        }
    }
}

/// C's `abs()` as the helper uses it for exit statuses (`INT_MIN` stays itself).
fn c_abs(value: i32) -> i32 {
    if value < 0 {
        value.wrapping_neg()
    } else {
        value
    }
}

/// C's `atoi`: leading white space, an optional sign, decimal digits up to the first
/// other character (none: 0); the value saturates at the 64-bit `long` range and is
/// then cut to `int`, as glibc's `(int) strtol(s, NULL, 10)`.
pub fn atoi(text: &str) -> i32 {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    let negative = match bytes.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut value: i64 = 0;
    let mut saturated = false;
    while let Some(digit) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
        let d = i64::from(digit - b'0');
        match value.checked_mul(10).and_then(|v| v.checked_add(d)) {
            Some(v) => value = v,
            None => saturated = true,
        }
        i += 1;
    }
    let long = match (negative, saturated) {
        (false, false) => value,
        (true, false) => -value,
        (false, true) => i64::MAX,
        (true, true) => i64::MIN,
    };
    long as i32
}

/// How one request/reply exchange with the event socket went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Exchange {
    /// The reply to our request.
    Reply(ReplyBody),
    /// The daemon hung up (or the stream broke) before answering.
    Closed,
    /// The reply could not be decoded: the errno the stock client reports.
    Undecodable(i32),
}

/// The errno the stock client reports for a reply it cannot decode: `EINVAL` for a
/// bad command or script count, `EMSGSIZE` for anything cut short.
fn decode_errno(err: &DecodeError) -> i32 {
    match err {
        DecodeError::Invalid {
            field: "reply.command" | "status.num_scripts",
            ..
        } => libc::EINVAL,
        _ => libc::EMSGSIZE,
    }
}

/// Connects to the event socket: the helper's two lines and EIO when it cannot.
fn connect(env: &EventEnv) -> Result<UnixStream, Helper> {
    let path = env.paths.eventd_socket();
    UnixStream::connect(&path).map_err(|_| {
        Helper::stderr(
            format!(
                "socket connect failed - {}\nFailed to initialize event client, ret={}\n",
                path.display(),
                libc::EIO
            ),
            libc::EIO,
        )
    })
}

/// Sends `body` and waits (without a time limit, as the stock helper does) for the
/// reply with our request id; replies to other ids are dropped.
fn exchange(stream: &mut UnixStream, body: RequestBody) -> Exchange {
    let request = Request {
        header: Header {
            version: 0,
            reqid: REQID,
        },
        body,
    };
    if stream.write_all(&request.encode()).is_err() {
        return Exchange::Closed;
    }
    let framer = Framer::for_replies();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match framer.frame_len(&buf) {
            Err(_) => return Exchange::Closed,
            Ok(Some(len)) => {
                let frame: Vec<u8> = buf.drain(..len).collect();
                let reqid = u32::from_le_bytes(frame[8..12].try_into().expect("4 bytes"));
                if reqid != REQID {
                    continue;
                }
                return match Reply::decode(&frame) {
                    Ok(reply) => Exchange::Reply(reply.body),
                    Err(e) => Exchange::Undecodable(decode_errno(&e)),
                };
            }
            Ok(None) => match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return Exchange::Closed,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
        }
    }
}

/// The RUN request for `run TIMEOUT COMPONENT EVENT [ARGS...]`: the timeout read
/// with `atoi` and negative values made 0, the arguments joined by single spaces
/// (NULL when there are none), "run all" only in test mode with
/// `CTDB_EVENT_RUN_ALL`.
fn run_request(
    env: &EventEnv,
    timeout: &str,
    component: &str,
    event: &str,
    args: &[&str],
) -> RunRequest {
    RunRequest {
        component: component.to_owned(),
        event: event.to_owned(),
        args: (!args.is_empty()).then(|| args.join(" ")),
        timeout: atoi(timeout).max(0) as u32,
        flags: if env.test_mode && env.run_all {
            RUN_ALL
        } else {
            0
        },
    }
}

/// `run TIMEOUT COMPONENT EVENT [ARGS...]` once the socket answered.
fn run_result_helper(component: &str, event: &str, exchange: Exchange) -> Helper {
    let result = match exchange {
        Exchange::Closed => return Helper::exit(1),
        Exchange::Undecodable(errno) => {
            return Helper::stderr(
                format!("Failed to run event {event} in {component}, ret={errno}\n"),
                1,
            )
        }
        Exchange::Reply(ReplyBody::Run(result)) => result,
        Exchange::Reply(_) => libc::EPROTO,
    };
    let text = match result {
        0 => String::new(),
        libc::ENOENT => format!("Event dir for {component} does not exist\n"),
        libc::ETIMEDOUT => format!("Event {event} in {component} timed out\n"),
        libc::ECANCELED => format!("Event {event} in {component} got cancelled\n"),
        libc::ENOEXEC => format!("Event {event} in {component} failed\n"),
        other => format!("Failed to run event {event} in {component}, result={other}\n"),
    };
    Helper::stdout(text, c_abs(result))
}

/// `status COMPONENT EVENT` once the socket answered. `ctime` formats a start time.
fn status_helper(
    component: &str,
    event: &str,
    exchange: Exchange,
    json: bool,
    ctime: &dyn Fn(i64) -> String,
) -> Helper {
    let result = match exchange {
        Exchange::Closed => return Helper::exit(1),
        Exchange::Undecodable(errno) => {
            return Helper::stderr(
                format!("Failed to get status for event {event} in {component}, ret={errno}\n"),
                1,
            )
        }
        Exchange::Reply(ReplyBody::Status(Ok(reply))) => {
            let text = if json {
                json_text(&StatusJson::new(component, event, &reply))
            } else {
                render_status_reply(&reply, ctime)
            };
            return Helper::stdout(text, c_abs(reply.summary));
        }
        Exchange::Reply(ReplyBody::Status(Err(errno))) => errno.get(),
        Exchange::Reply(_) => libc::EPROTO,
    };
    let text = match result {
        libc::ENOENT => format!("Event dir for {component} does not exist\n"),
        libc::EINVAL => format!("Event {event} has never run in {component}\n"),
        other => format!("Unknown error ({other}) for event {event} in {component}\n"),
    };
    Helper::stdout(text, result)
}

/// `ctdb event status` and `ctdb scriptstatus` in `--json`: the last run as the
/// daemon reported it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusJson {
    /// The component asked about.
    pub component: String,
    /// The event asked about.
    pub event: String,
    /// 0, the failed script's exit status, or a negated errno.
    pub summary: i32,
    /// The scripts of the run, in order.
    pub scripts: Vec<ScriptStatusJson>,
}

/// One script of a [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScriptStatusJson {
    /// `NN.name`.
    pub name: String,
    /// `OK`, `ERROR`, `TIMEDOUT`, `DISABLED` or `CANNOT RUN`, as the text shows it.
    pub status: &'static str,
    /// The daemon's result: 0, the exit status, or a negated errno.
    pub result: i32,
    /// For `CANNOT RUN`, the C library's text for the errno.
    pub error: Option<String>,
    /// When it started.
    pub begin: Moment,
    /// When it ended.
    pub end: Moment,
    /// Its run time in seconds, `end - begin` (to the microsecond).
    pub duration: f64,
    /// What it wrote (stdout and stderr together); `null` for nothing.
    pub output: Option<String>,
}

impl StatusJson {
    fn new(component: &str, event: &str, reply: &StatusReply) -> Self {
        let moment = |t: ctdbd::protocol::control::Timeval| Moment {
            sec: t.sec,
            usec: t.usec,
        };
        Self {
            component: component.to_owned(),
            event: event.to_owned(),
            summary: reply.summary,
            scripts: reply
                .scripts
                .iter()
                .map(|s| {
                    let status = status_label(s.result);
                    ScriptStatusJson {
                        name: s.name.clone(),
                        status,
                        result: s.result,
                        error: (status == "CANNOT RUN").then(|| strerror(s.result.wrapping_neg())),
                        begin: moment(s.begin),
                        end: moment(s.end),
                        duration: micros_between(s.begin, s.end) as f64 / 1e6,
                        output: s.output.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// Microseconds from `begin` to `end`.
fn micros_between(
    begin: ctdbd::protocol::control::Timeval,
    end: ctdbd::protocol::control::Timeval,
) -> i64 {
    (end.sec.wrapping_sub(begin.sec))
        .wrapping_mul(1_000_000)
        .wrapping_add(end.usec.wrapping_sub(begin.usec))
}

/// `ctdb event script list` in `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptListJson {
    /// The component listed.
    pub component: String,
    /// Provided scripts first, then local ones, as the text lists them.
    pub scripts: Vec<ScriptListEntry>,
}

/// One script of a [`ScriptListJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptListEntry {
    /// `NN.name`.
    pub name: String,
    /// `provided` (in the data directory) or `local` (only in the configuration
    /// directory, or linked elsewhere).
    pub source: &'static str,
    /// Provided: linked from the configuration directory. Local: executable.
    pub enabled: bool,
}

/// Whether a directory entry's name is an event script's: `[0-9][0-9].*.script`.
fn is_script_name(name: &[u8]) -> bool {
    name.len() >= 3 + SCRIPT_SUFFIX.len()
        && name[0].is_ascii_digit()
        && name[1].is_ascii_digit()
        && name[2] == b'.'
        && name.ends_with(SCRIPT_SUFFIX.as_bytes())
}

/// A script found in a directory: its name without `.script`, and its path.
struct Found {
    name: Vec<u8>,
    path: PathBuf,
}

/// The scripts of `dir`, sorted by name (bytes, as the C locale sorts).
fn scripts_in(dir: &Path) -> io::Result<Vec<Found>> {
    let mut found: Vec<Found> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| is_script_name(e.file_name().as_bytes()))
        .map(|e| {
            let file = e.file_name();
            let bytes = file.as_bytes();
            Found {
                name: bytes[..bytes.len() - SCRIPT_SUFFIX.len()].to_vec(),
                path: join_text(dir, &file),
            }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn errno_of(err: &io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

/// `script list COMPONENT`: provided scripts (the data directory, resolved), each
/// enabled when the configuration directory holds a link of the same name whose
/// text is exactly the provided script's path; then a blank line if anything else
/// is left, and the rest of the configuration directory, enabled when executable.
fn script_list(env: &EventEnv, component: &str, json: bool) -> Helper {
    let failed = |err: io::Error| {
        let errno = errno_of(&err);
        Helper::stderr(
            format!("Command script list finished with result={errno}\n"),
            errno,
        )
    };
    let data_dir = match fs::canonicalize(env.data_component(component)) {
        Ok(dir) => dir,
        Err(e) => return failed(e),
    };
    let provided = match scripts_in(&data_dir) {
        Ok(list) => list,
        Err(e) => return failed(e),
    };
    let installed = match scripts_in(&env.etc_component(component)) {
        Ok(list) => list,
        Err(e) => return failed(e),
    };
    let mut matched = vec![false; installed.len()];
    let mut entries = Vec::new();
    for script in &provided {
        let enabled = installed
            .iter()
            .position(|e| e.name == script.name)
            .is_some_and(|i| {
                let linked = fs::read_link(&installed[i].path)
                    .is_ok_and(|to| to.as_os_str() == script.path.as_os_str());
                matched[i] = linked;
                linked
            });
        entries.push(ScriptListEntry {
            name: String::from_utf8_lossy(&script.name).into_owned(),
            source: "provided",
            enabled,
        });
    }
    let locals: Vec<ScriptListEntry> = installed
        .iter()
        .zip(&matched)
        .filter(|(_, &m)| !m)
        .map(|(script, _)| ScriptListEntry {
            name: String::from_utf8_lossy(&script.name).into_owned(),
            source: "local",
            enabled: fs::metadata(&script.path).is_ok_and(|m| m.mode() & 0o100 != 0),
        })
        .collect();
    let text = if json {
        let mut scripts = entries;
        scripts.extend(locals);
        json_text(&ScriptListJson {
            component: component.to_owned(),
            scripts,
        })
    } else {
        let line =
            |e: &ScriptListEntry| format!("{} {}\n", if e.enabled { '*' } else { ' ' }, e.name);
        let mut text: String = entries.iter().map(line).collect();
        if !provided.is_empty() && !locals.is_empty() {
            text.push('\n');
        }
        text.extend(locals.iter().map(line));
        text
    };
    Helper::stdout(text, 0)
}

/// The file a script name means: the name itself if it already ends in `.script`,
/// else the name with `.script` added.
fn script_file_name(script: &str) -> String {
    if script.len() > SCRIPT_SUFFIX.len() && script.ends_with(SCRIPT_SUFFIX) {
        script.to_owned()
    } else {
        format!("{script}{SCRIPT_SUFFIX}")
    }
}

/// Sets or clears the three execute bits of a regular script file in the
/// configuration directory of `component`: 0 or an errno (`ENOENT` not there,
/// `EINVAL` not a script's name or not the file the directory lists).
fn chmod_script(env: &EventEnv, component: &str, script: &str, enable: bool) -> i32 {
    let dir = env.etc_component(component);
    let file = script_file_name(script);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => return errno_of(&e),
    };
    let Some(inode) = entries
        .filter_map(Result::ok)
        .find(|e| e.file_name().as_bytes() == file.as_bytes())
        .map(|e| e.ino())
    else {
        return libc::ENOENT;
    };
    if !is_script_name(file.as_bytes()) {
        return libc::EINVAL;
    }
    let path = join_text(&dir, &file);
    let handle = match fs::OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) => return errno_of(&e),
    };
    let meta = match handle.metadata() {
        Ok(m) => m,
        Err(e) => return errno_of(&e),
    };
    if meta.ino() != inode {
        return libc::EINVAL;
    }
    let mode = if enable {
        meta.mode() | 0o111
    } else {
        meta.mode() & !0o111
    };
    match handle.set_permissions(fs::Permissions::from_mode(mode & 0o7777)) {
        Ok(()) => 0,
        Err(e) => errno_of(&e),
    }
}

/// The chmod path of `script enable|disable` for a regular file, with its messages.
fn chmod_helper(env: &EventEnv, component: &str, script: &str, enable: bool) -> Helper {
    let result = chmod_script(env, component, script, enable);
    let text = match result {
        libc::EINVAL => format!("Script {script} is invalid in {component}\n"),
        libc::ENOENT => format!("Script {script} does not exist in {component}\n"),
        _ => String::new(),
    };
    Helper::stdout(text, result)
}

/// `script enable COMPONENT SCRIPT`: an existing link is left alone, a regular file
/// gets its execute bits, and otherwise a link to the provided script (resolved) is
/// made.
fn script_enable(env: &EventEnv, component: &str, script: &str) -> Helper {
    let relative = format!("events/{component}/{script}{SCRIPT_SUFFIX}");
    let etc_script = join_text(&env.paths.etc_dir, &relative);
    match fs::symlink_metadata(&etc_script) {
        Ok(meta) if meta.file_type().is_symlink() => Helper::exit(0),
        Ok(meta) if meta.file_type().is_file() => chmod_helper(env, component, script, true),
        Ok(_) => Helper::stdout(
            format!("Script {} is not a file or a link\n", etc_script.display()),
            libc::EINVAL,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let data_script = join_text(&env.paths.data_dir, &relative);
            let Ok(target) = fs::canonicalize(&data_script) else {
                return Helper::stdout(
                    format!("Script {script} does not exist in {component}\n"),
                    libc::ENOENT,
                );
            };
            match symlink(&target, &etc_script) {
                Ok(()) => Helper::exit(0),
                Err(_) => Helper::stdout(
                    format!("Failed to create symlink {}\n", etc_script.display()),
                    libc::EIO,
                ),
            }
        }
        Err(_) => Helper::stdout(
            format!("Script {} does not exist\n", etc_script.display()),
            libc::EINVAL,
        ),
    }
}

/// `script disable COMPONENT SCRIPT`: a link is removed, a regular file loses its
/// execute bits, nothing there is fine.
fn script_disable(env: &EventEnv, component: &str, script: &str) -> Helper {
    let etc_script = join_text(
        &env.paths.etc_dir,
        format!("events/{component}/{script}{SCRIPT_SUFFIX}"),
    );
    match fs::symlink_metadata(&etc_script) {
        Ok(meta) if meta.file_type().is_symlink() => match fs::remove_file(&etc_script) {
            Ok(()) => Helper::exit(0),
            Err(_) => Helper::stdout(
                format!("Failed to remove symlink {}\n", etc_script.display()),
                libc::EIO,
            ),
        },
        Ok(meta) if meta.file_type().is_file() => chmod_helper(env, component, script, false),
        Ok(_) => Helper::stdout(
            format!("Script {} is not a file or a link\n", etc_script.display()),
            libc::EINVAL,
        ),
        Err(_) => Helper::exit(0),
    }
}

/// The helper's own options among the event words (`-d LEVEL` is accepted and, as
/// we keep no debug log, ignored; `-h` asks for the usage; `--` ends them): the
/// remaining words, or the helper's answer to a bad or help option.
fn strip_helper_options(args: &[String]) -> Result<Vec<&str>, Helper> {
    let mut words = Vec::new();
    let mut iter = args.iter();
    let missing = |option: &str| Helper {
        stderr: format!("Invalid option {option}: missing argument\n"),
        ..Helper::usage(None)
    };
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--" => {
                words.extend(iter.by_ref().map(String::as_str));
                break;
            }
            "-d" | "--debug" => {
                if iter.next().is_none() {
                    return Err(missing(arg));
                }
            }
            a if a.starts_with("--debug=") => {}
            "-h" | "--help" => return Err(Helper::usage(None)),
            a if a.starts_with("-h") && !a.starts_with("--") => return Err(Helper::usage(None)),
            a if a.starts_with("-d") && !a.starts_with("--") => {}
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(Helper {
                    stderr: format!("Invalid option {a}: unknown option\n"),
                    ..Helper::usage(None)
                })
            }
            a => words.push(a),
        }
    }
    Ok(words)
}

/// The work of `ctdb event ARGS...`, as the helper would do it.
fn event_helper(env: &EventEnv, args: &[String], json: bool) -> Helper {
    let words = match strip_helper_options(args) {
        Ok(words) => words,
        Err(helper) => return helper,
    };
    let broken = env.test_mode && !env.base_set;
    match words.as_slice() {
        ["run", rest @ ..] => {
            let [timeout, component, event, extra @ ..] = rest else {
                return Helper::usage(Some("run"));
            };
            if broken {
                return Helper::broken_setup();
            }
            let mut stream = match connect(env) {
                Ok(s) => s,
                Err(helper) => return helper,
            };
            let request = run_request(env, timeout, component, event, extra);
            let answer = exchange(&mut stream, RequestBody::Run(request));
            let mut helper = run_result_helper(component, event, answer);
            if json && helper.end == HelperEnd::Exit(0) {
                helper.stdout = "{}\n".to_owned();
            }
            helper
        }
        ["status", rest @ ..] => {
            let [component, event] = rest else {
                return Helper::usage(Some("status"));
            };
            if broken {
                return Helper::broken_setup();
            }
            status(env, component, event, json)
        }
        ["script", "list", rest @ ..] => {
            let [component] = rest else {
                return Helper::usage(Some("script list"));
            };
            if broken {
                return Helper::broken_setup();
            }
            script_list(env, component, json)
        }
        ["script", action @ ("enable" | "disable"), rest @ ..] => {
            let [component, script] = rest else {
                return Helper::usage(Some(&format!("script {action}")));
            };
            if broken {
                return Helper::broken_setup();
            }
            let mut helper = if *action == "enable" {
                script_enable(env, component, script)
            } else {
                script_disable(env, component, script)
            };
            if json && helper.end == HelperEnd::Exit(0) && helper.stdout.is_empty() {
                helper.stdout = "{}\n".to_owned();
            }
            helper
        }
        _ => Helper::usage(None),
    }
}

/// STATUS for `component`/`event` over the socket.
fn status(env: &EventEnv, component: &str, event: &str, json: bool) -> Helper {
    let mut stream = match connect(env) {
        Ok(s) => s,
        Err(helper) => return helper,
    };
    let request = StatusRequest {
        component: component.to_owned(),
        event: event.to_owned(),
    };
    let answer = exchange(&mut stream, RequestBody::Status(request));
    status_helper(component, event, answer, json, &crate::timefmt::ctime)
}

/// `ctdb event ARGS...`.
pub fn event(env: &EventEnv, args: &[String], json: bool) -> Outcome {
    event_helper(env, args, json).finish(false)
}

/// `ctdb scriptstatus [EVENT]`: `event status legacy EVENT`, EVENT `monitor` by
/// default, exiting 0 whatever the status; the tool's own usage for more words.
pub fn scriptstatus(env: &EventEnv, args: &[String], json: bool) -> Result<Outcome, CommandError> {
    if args.len() > 1 {
        return Err(CommandError::Usage("scriptstatus"));
    }
    let event = args.first().map_or("monitor", String::as_str);
    let helper = if env.test_mode && !env.base_set {
        Helper::broken_setup()
    } else {
        status(env, LEGACY, event, json)
    };
    Ok(helper.finish(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctdbd::events::ctime_utc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "ctl-event-{tag}-{}-{}",
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

    /// Test mode with `CTDB_BASE=base`.
    fn test_env(base: &Path) -> EventEnv {
        let base = base.to_string_lossy().into_owned();
        EventEnv::from_vars(|k| match k {
            "CTDB_BASE" => Some(base.clone()),
            "CTDB_TEST_MODE" => Some("1".into()),
            _ => None,
        })
    }

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn outcome(stdout: &str, stderr: &str, after: &str, code: i32) -> Outcome {
        Outcome {
            stdout: stdout.into(),
            stderr: stderr.into(),
            stderr_after: after.into(),
            code,
        }
    }

    #[test]
    fn timeouts_are_read_as_atoi_reads_them() {
        for (text, value) in [
            ("10", 10),
            ("10x", 10),
            ("x", 0),
            ("", 0),
            (" 7", 7),
            ("+7", 7),
            ("-3", -3),
            ("0x10", 0),
            // Captured: the stock helper sent these values.
            ("99999999999", 1_215_752_191),
            ("4294967306", 10),
            ("3000000000", -1_294_967_296),
            ("99999999999999999999999", -1),
        ] {
            assert_eq!(atoi(text), value, "{text:?}");
        }
        let env = test_env(Path::new("/nonexistent"));
        let request = run_request(&env, "-3", "legacy", "takeip", &["eth1", "10.0.0.1", "24"]);
        assert_eq!(request.timeout, 0);
        assert_eq!(request.args.as_deref(), Some("eth1 10.0.0.1 24"));
        assert_eq!(request.flags, 0);
        assert_eq!(run_request(&env, "5", "legacy", "monitor", &[]).args, None);
        let mut all = env.clone();
        all.run_all = true;
        assert_eq!(run_request(&all, "5", "c", "e", &[]).flags, RUN_ALL);
        all.test_mode = false;
        assert_eq!(run_request(&all, "5", "c", "e", &[]).flags, 0);
    }

    #[test]
    fn helper_status_becomes_the_tool_status() {
        let failed = |n: i32| format!("event daemon helper failed with error {n}\n");
        for (status, after, code) in [
            (0, String::new(), 0),
            (8, String::new(), 8),
            (63, String::new(), 63),
            (64, failed(0), 0),
            (110, failed(46), 46),
            (125, failed(61), 61),
            (-3, failed(189), 189),
            (254, failed(190), 190),
            (255, String::new(), 255),
            (256, String::new(), 0),
            (318, String::new(), 62),
        ] {
            let got = Helper::exit(status).finish(false);
            assert_eq!(got, outcome("", "", &after, code), "helper status {status}");
            assert_eq!(Helper::exit(status).finish(true).code, 0);
        }
        assert_eq!(
            Helper::broken_setup().finish(false),
            outcome(
                "",
                "Broken CTDB setup, CTDB_BASE not set in test mode\n",
                "event daemon helper terminated with signal 6\n",
                4
            )
        );
    }

    #[test]
    fn wrong_command_lines_print_the_usage() {
        let tmp = Scratch::new("usage");
        let env = test_env(&tmp.0);
        let full = event_usage(None);
        for line in [
            "",
            "bogus",
            "script",
            "script bogus legacy",
            "-h status legacy monitor",
            "status legacy -hd",
        ] {
            assert_eq!(
                event(&env, &words(line), false),
                outcome(&full, "", "", 1),
                "{line:?}"
            );
        }
        for (line, which) in [
            ("run", "run"),
            ("run 10 legacy", "run"),
            ("status legacy", "status"),
            ("status legacy monitor extra", "status"),
            ("script list", "script list"),
            ("script list legacy extra", "script list"),
            ("script enable legacy", "script enable"),
            ("script disable legacy a b", "script disable"),
        ] {
            let got = event(&env, &words(line), false);
            assert_eq!(got.code, 1, "{line:?}");
            assert_eq!(got.stdout, event_usage(Some(which)), "{line:?}");
            assert_eq!(got.stdout.lines().count(), 4, "{line:?}");
        }
        // The helper's own options (reachable after `ctdb ... --`).
        let got = event(&env, &words("run -5 legacy monitor"), false);
        assert_eq!(
            got,
            outcome(&full, "Invalid option -5: unknown option\n", "", 1)
        );
        let got = event(&env, &words("status legacy monitor -d"), false);
        assert_eq!(
            got,
            outcome(&full, "Invalid option -d: missing argument\n", "", 1)
        );
        let got = event(&env, &words("--deb=ERROR status legacy monitor"), false);
        assert_eq!(got.stderr, "Invalid option --deb=ERROR: unknown option\n");
        // `-d LEVEL` in any spelling is accepted; `--` ends the options, `-` is a word.
        for line in [
            "-d ERROR status - monitor",
            "-dERROR status - monitor",
            "--debug=ERROR status - monitor",
            "--debug ERROR -- status - monitor",
        ] {
            let got = event(&env, &words(line), false);
            assert!(
                got.stderr.starts_with("socket connect failed - "),
                "{line:?}: {got:?}"
            );
        }
        assert_eq!(
            scriptstatus(&env, &words("monitor extra"), false)
                .unwrap_err()
                .output()
                .2,
            1
        );
    }

    #[test]
    fn no_daemon_and_broken_test_mode() {
        let tmp = Scratch::new("nodaemon");
        let env = test_env(&tmp.0);
        let socket = tmp.0.join("run/eventd.socket");
        let expected = outcome(
            "",
            &format!(
                "socket connect failed - {}\nFailed to initialize event client, ret=5\n",
                socket.display()
            ),
            "",
            5,
        );
        assert_eq!(
            event(&env, &words("status legacy monitor"), false),
            expected
        );
        assert_eq!(event(&env, &words("run 1 legacy monitor"), false), expected);
        let got = scriptstatus(&env, &[], false).unwrap();
        assert_eq!(
            got,
            Outcome {
                code: 0,
                ..expected
            }
        );

        let broken = EventEnv::from_vars(|k| (k == "CTDB_TEST_MODE").then(|| "1".into()));
        for line in [
            "status legacy monitor",
            "run 1 legacy monitor",
            "script list legacy",
            "script enable legacy 01.x",
        ] {
            assert_eq!(
                event(&broken, &words(line), false),
                Helper::broken_setup().finish(false),
                "{line:?}"
            );
        }
        // Usage is checked first.
        assert_eq!(event(&broken, &words("status legacy"), false).code, 1);
        assert_eq!(scriptstatus(&broken, &[], false).unwrap().code, 0);
    }

    /// One frame of a capture in `ctdbd/tests/fixtures/eventd`.
    struct Frame {
        comment: String,
        bytes: Vec<u8>,
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../ctdbd/tests/fixtures/eventd")
    }

    fn frames(case: &str) -> Vec<Frame> {
        let text = fs::read_to_string(fixtures().join(format!("{case}.hex"))).unwrap();
        let mut out = Vec::new();
        let mut comment = String::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(c) = line.strip_prefix('#') {
                comment = c.trim().to_owned();
                continue;
            }
            let bytes = (0..line.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
                .collect();
            out.push(Frame {
                comment: comment.clone(),
                bytes,
            });
        }
        out
    }

    fn stock(case: &str) -> Outcome {
        let read = |ext: &str| {
            fs::read_to_string(fixtures().join(format!("stock-output/{case}.{ext}")))
                .unwrap_or_default()
        };
        Outcome {
            stdout: read("txt"),
            stderr: read("stderr"),
            stderr_after: String::new(),
            code: read("rc").trim().parse().unwrap(),
        }
    }

    /// Our outcome with both stderr parts together, as the capture recorded them.
    fn joined(mut got: Outcome) -> Outcome {
        got.stderr.push_str(&std::mem::take(&mut got.stderr_after));
        got
    }

    #[test]
    fn captured_runs_and_statuses_print_what_the_stock_tool_printed() {
        // Each captured case: the command line, and whether it was `scriptstatus`.
        let cases = [
            ("status_never_run", "status legacy monitor"),
            ("run_monitor", "run 10 legacy monitor"),
            ("status_monitor", "status legacy monitor"),
            ("scriptstatus", "scriptstatus"),
            ("scriptstatus_startup", "scriptstatus startup"),
            ("run_takeip", "run 10 legacy takeip eth1 10.0.0.31 24"),
            ("status_takeip", "status legacy takeip"),
            ("run_failing", "run 10 failing monitor"),
            ("status_failing", "status failing monitor"),
            ("run_timeout", "run 1 slow monitor"),
            ("status_timeout", "status slow monitor"),
            ("run_signal", "run 10 signal startup"),
            ("status_signal", "status signal startup"),
            ("run_empty", "run 10 empty monitor"),
            ("status_empty", "status empty monitor"),
            ("run_unknown_component", "run 10 nosuch monitor"),
            ("status_unknown_component", "status nosuch monitor"),
            ("run_unknown_event", "run 10 legacy bogus"),
            ("status_unknown_event", "status legacy bogus"),
            ("run_timeout_zero", "run 0 legacy monitor"),
            ("run_all_flag", "run 10 failing monitor"),
            ("status_all_flag", "status failing monitor"),
            ("status_queue_monitor", "status queue monitor"),
        ];
        let mut env = test_env(Path::new("/nonexistent"));
        for (case, line) in cases {
            env.run_all = case == "run_all_flag";
            let frames = frames(case);
            assert_eq!(frames.len(), 2, "{case}");
            assert!(frames[0].comment.starts_with("REQUEST"), "{case}");
            assert!(frames[1].comment.starts_with("REPLY"), "{case}");
            let reply = Reply::decode(&frames[1].bytes).unwrap();
            assert_eq!(reply.header.reqid, REQID, "{case}");
            let w = words(line);
            let (request, helper, scriptstatus) = match w[0].as_str() {
                "run" => {
                    let extra: Vec<&str> = w[4..].iter().map(String::as_str).collect();
                    let request = RequestBody::Run(run_request(&env, &w[1], &w[2], &w[3], &extra));
                    let helper = run_result_helper(&w[2], &w[3], Exchange::Reply(reply.body));
                    (request, helper, false)
                }
                _ => {
                    let (component, event, scriptstatus) = if w[0] == "scriptstatus" {
                        (LEGACY, w.get(1).map_or("monitor", String::as_str), true)
                    } else {
                        (w[1].as_str(), w[2].as_str(), false)
                    };
                    let request = RequestBody::Status(StatusRequest {
                        component: component.into(),
                        event: event.into(),
                    });
                    let helper = status_helper(
                        component,
                        event,
                        Exchange::Reply(reply.body),
                        false,
                        &ctime_utc,
                    );
                    (request, helper, scriptstatus)
                }
            };
            // The request we would send is the stock helper's, byte for byte.
            let ours = Request {
                header: Header {
                    version: 0,
                    reqid: REQID,
                },
                body: request,
            }
            .encode();
            assert_eq!(ours, frames[0].bytes, "{case}: request");
            assert_eq!(joined(helper.finish(scriptstatus)), stock(case), "{case}");
        }
    }

    #[test]
    fn odd_replies_are_reported_as_the_stock_helper_reports_them() {
        use std::num::NonZeroI32;
        let status = |exchange| {
            status_helper("legacy", "monitor", exchange, false, &ctime_utc).finish(false)
        };
        let run = |exchange| run_result_helper("legacy", "monitor", exchange).finish(false);
        // Captured from the stock tool against a scripted socket.
        assert_eq!(
            status(Exchange::Reply(ReplyBody::Run(0))),
            outcome(
                "Unknown error (71) for event monitor in legacy\n",
                "",
                "event daemon helper failed with error 7\n",
                7
            )
        );
        assert_eq!(
            run(Exchange::Reply(ReplyBody::Script(0))),
            outcome(
                "Failed to run event monitor in legacy, result=71\n",
                "",
                "event daemon helper failed with error 7\n",
                7
            )
        );
        assert_eq!(
            status(Exchange::Reply(ReplyBody::Status(Err(
                NonZeroI32::new(-3).unwrap()
            )))),
            outcome(
                "Unknown error (-3) for event monitor in legacy\n",
                "",
                "event daemon helper failed with error 189\n",
                189
            )
        );
        assert_eq!(
            run(Exchange::Reply(ReplyBody::Run(-3))),
            outcome(
                "Failed to run event monitor in legacy, result=-3\n",
                "",
                "",
                3
            )
        );
        assert_eq!(
            run(Exchange::Reply(ReplyBody::Run(libc::EINVAL))),
            outcome(
                "Failed to run event monitor in legacy, result=22\n",
                "",
                "",
                22
            )
        );
        assert_eq!(
            status(Exchange::Undecodable(libc::EMSGSIZE)),
            outcome(
                "",
                "Failed to get status for event monitor in legacy, ret=90\n",
                "",
                1
            )
        );
        assert_eq!(
            run(Exchange::Undecodable(libc::EINVAL)),
            outcome("", "Failed to run event monitor in legacy, ret=22\n", "", 1)
        );
        assert_eq!(status(Exchange::Closed), outcome("", "", "", 1));
        assert_eq!(run(Exchange::Closed), outcome("", "", "", 1));
        // Which decoding failures are which errno.
        let mut frame = Reply {
            header: Header {
                version: 0,
                reqid: REQID,
            },
            body: ReplyBody::Run(0),
        }
        .encode();
        frame[12] = 9;
        assert_eq!(
            decode_errno(&Reply::decode(&frame).unwrap_err()),
            libc::EINVAL
        );
        let short = [16u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            decode_errno(&Reply::decode(&short).unwrap_err()),
            libc::EMSGSIZE
        );
    }

    #[test]
    fn status_json_carries_the_reply() {
        let frames = frames("status_failing");
        let Reply {
            body: ReplyBody::Status(Ok(reply)),
            ..
        } = Reply::decode(&frames[1].bytes).unwrap()
        else {
            panic!("not a status with data");
        };
        let helper = status_helper(
            "failing",
            "monitor",
            Exchange::Reply(ReplyBody::Status(Ok(reply.clone()))),
            true,
            &ctime_utc,
        );
        assert_eq!(helper.end, HelperEnd::Exit(3));
        let doc: serde_json::Value = serde_json::from_str(&helper.stdout).unwrap();
        assert_eq!(doc["component"], "failing");
        assert_eq!(doc["event"], "monitor");
        assert_eq!(doc["summary"], 3);
        assert_eq!(doc["scripts"][0]["name"], "01.ok");
        assert_eq!(doc["scripts"][0]["status"], "OK");
        assert_eq!(doc["scripts"][0]["output"], serde_json::Value::Null);
        assert_eq!(doc["scripts"][1]["status"], "ERROR");
        assert_eq!(doc["scripts"][1]["result"], 3);
        assert_eq!(doc["scripts"][1]["output"], "bad thing\nsecond line\n");
        assert_eq!(
            doc["scripts"][1]["begin"]["sec"],
            reply.scripts[1].begin.sec
        );
        let (begin, end) = (reply.scripts[1].begin, reply.scripts[1].end);
        let micros = (end.sec - begin.sec) * 1_000_000 + end.usec - begin.usec;
        assert_eq!(
            doc["scripts"][1]["duration"].as_f64(),
            Some(micros as f64 / 1e6)
        );
        let signal = frames_status("status_signal");
        let helper = status_helper(
            "signal",
            "startup",
            Exchange::Reply(ReplyBody::Status(Ok(signal))),
            true,
            &ctime_utc,
        );
        let doc: serde_json::Value = serde_json::from_str(&helper.stdout).unwrap();
        assert_eq!(doc["scripts"][0]["status"], "CANNOT RUN");
        assert_eq!(doc["scripts"][0]["error"], "Interrupted system call");
        // Failures stay the stock text.
        let never = status_helper(
            "legacy",
            "monitor",
            Exchange::Reply(ReplyBody::Status(Err(std::num::NonZeroI32::new(
                libc::EINVAL,
            )
            .unwrap()))),
            true,
            &ctime_utc,
        );
        assert_eq!(never.stdout, "Event monitor has never run in legacy\n");
    }

    fn frames_status(case: &str) -> StatusReply {
        match Reply::decode(&frames(case)[1].bytes).unwrap().body {
            ReplyBody::Status(Ok(reply)) => reply,
            other => panic!("{case}: {other:?}"),
        }
    }

    fn write_script(path: &Path, mode: u32) {
        fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The layout of the capture's `legacy` component: provided 01.ok, 05.quiet
    /// (both linked) and 11.natgw; local 02.disabled (not executable), 03.local.
    fn legacy_tree(base: &Path) -> (PathBuf, PathBuf) {
        let share = base.join("share/events/legacy");
        let etc = base.join("events/legacy");
        fs::create_dir_all(&share).unwrap();
        fs::create_dir_all(&etc).unwrap();
        for name in ["01.ok", "05.quiet", "11.natgw"] {
            write_script(&share.join(format!("{name}.script")), 0o755);
        }
        for name in ["01.ok", "05.quiet"] {
            symlink(
                share.join(format!("{name}.script")),
                etc.join(format!("{name}.script")),
            )
            .unwrap();
        }
        write_script(&etc.join("02.disabled.script"), 0o644);
        write_script(&etc.join("03.local.script"), 0o755);
        fs::write(etc.join("README"), "not a script\n").unwrap();
        (share, etc)
    }

    #[test]
    fn script_list_enable_disable_as_captured() {
        let tmp = Scratch::new("scripts");
        let env = test_env(&tmp.0);
        let (share, etc) = legacy_tree(&tmp.0);
        let run = |line: &str| event(&env, &words(line), false);
        assert_eq!(run("script list legacy"), stock("script_list"));
        assert_eq!(
            run("script enable legacy 11.natgw"),
            stock("script_enable_provided")
        );
        assert_eq!(
            fs::read_link(etc.join("11.natgw.script")).unwrap(),
            share.join("11.natgw.script")
        );
        assert_eq!(
            run("script enable legacy 02.disabled"),
            stock("script_enable_local")
        );
        assert_eq!(
            fs::metadata(etc.join("02.disabled.script")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(
            run("script disable legacy 05.quiet"),
            stock("script_disable_provided")
        );
        assert!(fs::symlink_metadata(etc.join("05.quiet.script")).is_err());
        assert_eq!(
            run("script enable legacy 99.missing"),
            stock("script_enable_missing")
        );
        assert_eq!(run("script list legacy"), stock("script_list_after"));

        // JSON: the same list.
        let json = event(&env, &words("script list legacy"), true);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(doc["component"], "legacy");
        assert_eq!(
            doc["scripts"][2],
            serde_json::json!({ "name": "11.natgw", "source": "provided", "enabled": true })
        );
        assert_eq!(
            doc["scripts"][3],
            serde_json::json!({ "name": "02.disabled", "source": "local", "enabled": true })
        );
        assert_eq!(
            event(&env, &words("script disable legacy 02.disabled"), true),
            outcome("{}\n", "", "", 0)
        );
    }

    #[test]
    fn script_edge_cases_as_the_stock_tool_handles_them() {
        let tmp = Scratch::new("edges");
        let env = test_env(&tmp.0);
        let (share, etc) = legacy_tree(&tmp.0);
        let run = |line: &str| event(&env, &words(line), false);
        let said = |text: String, code| outcome(&text, "", "", code);
        // A regular file whose name is not a script's: invalid.
        fs::write(etc.join("ab.x.script"), "x").unwrap();
        assert_eq!(
            run("script enable legacy ab.x"),
            said("Script ab.x is invalid in legacy\n".into(), 22)
        );
        // Neither a file nor a link.
        fs::create_dir(etc.join("07.dir.script")).unwrap();
        let dir = format!("{}/events/legacy/07.dir.script", tmp.0.display());
        for action in ["enable", "disable"] {
            assert_eq!(
                run(&format!("script {action} legacy 07.dir")),
                said(format!("Script {dir} is not a file or a link\n"), 22)
            );
        }
        // The name is taken as given: `.script` is added to it.
        assert_eq!(
            run("script enable legacy 01.ok.script"),
            said("Script 01.ok.script does not exist in legacy\n".into(), 2)
        );
        // A path under a file: the lookup fails otherwise than "not there".
        let under = format!("{}/events/legacy/README/x.script", tmp.0.display());
        assert_eq!(
            run("script enable legacy README/x"),
            said(format!("Script {under} does not exist\n"), 22)
        );
        assert_eq!(
            run("script disable legacy README/x"),
            said(String::new(), 0)
        );
        // Disabling what is not there is fine, even in a missing component.
        assert_eq!(run("script disable legacy 99.none"), said(String::new(), 0));
        assert_eq!(run("script disable nosuch 01.ok"), said(String::new(), 0));
        // A dangling link counts as enabled already.
        symlink("/nonexistent", etc.join("09.dangling.script")).unwrap();
        assert_eq!(
            run("script enable legacy 09.dangling"),
            said(String::new(), 0)
        );
        // A provided script whose component has no configuration directory.
        let other = tmp.0.join("share/events/other");
        fs::create_dir_all(&other).unwrap();
        write_script(&other.join("01.a.script"), 0o755);
        let link = format!("{}/events/other/01.a.script", tmp.0.display());
        assert_eq!(
            run("script enable other 01.a"),
            said(format!("Failed to create symlink {link}\n"), 5)
        );
        assert_eq!(
            run("script list other"),
            outcome("", "Command script list finished with result=2\n", "", 2)
        );
        // No provided directory: the list fails too (4.17 does not skip it).
        fs::create_dir_all(tmp.0.join("events/local")).unwrap();
        assert_eq!(
            run("script list local"),
            outcome("", "Command script list finished with result=2\n", "", 2)
        );
        // A provided script that is itself a link is linked to where it leads.
        symlink(share.join("11.natgw.script"), share.join("04.link.script")).unwrap();
        assert_eq!(run("script enable legacy 04.link"), said(String::new(), 0));
        assert_eq!(
            fs::read_link(etc.join("04.link.script")).unwrap(),
            fs::canonicalize(share.join("11.natgw.script")).unwrap()
        );
        // ...so it lists as a local script; a directory with x bits is "enabled".
        assert_eq!(
            run("script list legacy").stdout,
            "* 01.ok\n  04.link\n* 05.quiet\n  11.natgw\n\n\
             \x20 02.disabled\n* 03.local\n* 04.link\n* 07.dir\n  09.dangling\n"
        );
    }

    #[test]
    fn replies_for_other_requests_are_skipped() {
        use std::os::unix::net::UnixListener;
        let tmp = Scratch::new("socket");
        fs::create_dir_all(tmp.0.join("run")).unwrap();
        let env = test_env(&tmp.0);
        let listener = UnixListener::bind(env.paths.eventd_socket()).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).unwrap();
            let request = Request::decode(&buf[..n]).unwrap();
            let reply = |reqid, result| {
                Reply {
                    header: Header { version: 0, reqid },
                    body: ReplyBody::Run(result),
                }
                .encode()
            };
            // Someone else's reply first, then ours split across writes.
            conn.write_all(&reply(7, libc::ENOENT)).unwrap();
            let ours = reply(request.header.reqid, libc::ETIMEDOUT);
            conn.write_all(&ours[..5]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
            conn.write_all(&ours[5..]).unwrap();
            request
        });
        let got = event(&env, &words("run 3 legacy monitor"), false);
        let request = server.join().unwrap();
        assert_eq!(request.header.reqid, REQID);
        assert_eq!(
            got,
            outcome(
                "Event monitor in legacy timed out\n",
                "",
                "event daemon helper failed with error 46\n",
                46
            )
        );
    }
}

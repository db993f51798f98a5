//! The event protocol: what the stock `ctdb-event` helper (run by `ctdb event ...` and
//! `ctdb scriptstatus`) and CTDB 4.17's event daemon say to each other over
//! `<rundir>/eventd.socket`. Facts, capture method and the stock daemon's answers are
//! in `PROTOCOL.md` beside this file; the section numbers cited below are its own.
//!
//! Pure: no tokio, no sockets, no clock. The daemon's event-socket task cuts its byte
//! stream with [`Framer`], decodes each frame with [`Request::decode`], asks the
//! events task to do the work, and writes [`Reply::encode`]. This module also holds
//! the conversions that work needs: an event request into our [`Event`]
//! ([`RunRequest::event`]), our [`EventResult`] into the status reply the stock tool
//! formats ([`StatusReply::from_result`]) and into a run reply's result
//! ([`run_result`]), and a [`ScriptError`] into a script reply's result
//! ([`script_error_result`]).
//!
//! ```text
//!  every frame, both ways (§2), little-endian, no padding:
//!  0        4        8        12
//!  +--------+--------+--------+------------------
//!  | length | version| reqid  | body ...
//!  +--------+--------+--------+------------------
//!  length counts the whole frame, itself included. version: the stock tool and
//!  daemon send 0 and nobody checks it. reqid: chosen by the client, echoed.
//! ```
//!
//! Strings are `stringn` (§3): u32 count, then that many bytes, the text and its NUL;
//! count 0 is C's NULL. Decoding is stricter than the stock daemon in three ways, none
//! of which the stock tool can trigger: a NULL where the tool always sends text, bytes
//! after the body, and a string whose NUL is missing or early are errors (the stock
//! daemon answers the first with an error result, ignores the second and misreads
//! the third).

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroI32;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::event::{Event, EventKind, UnknownEvent};
use super::runner::{EventResult, Overall, ScriptStatus};
use super::scripts::ScriptError;
use crate::protocol::control::Timeval;
use crate::protocol::wire::{self, Reader, Writer};

pub use crate::protocol::wire::DecodeError;

/// Size of the frame header: length, version, reqid.
pub const HEADER_SIZE: usize = 12;
/// The only component CTDB 4.17 ships scripts for (`$CTDB_BASE/events/legacy`).
pub const LEGACY: &str = "legacy";
/// Run flag: keep running the remaining scripts after one fails (§4.1). The stock
/// tool sets it only when both `CTDB_TEST_MODE` and `CTDB_EVENT_RUN_ALL` are set.
pub const RUN_ALL: u32 = 1;

/// Smallest possible script entry in a status reply: a one-byte name (count 1, NUL),
/// two timevals, the result, a NULL output.
const MIN_SCRIPT_SIZE: usize = 4 + 1 + 16 + 16 + 4 + 4;

/// The three commands (§4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Run an event.
    Run = 1,
    /// The last result of an event.
    Status = 2,
    /// Enable or disable a script by its execute bits.
    Script = 3,
}

impl Command {
    fn from_u32(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Run),
            2 => Some(Self::Status),
            3 => Some(Self::Script),
            _ => None,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Run => "run",
            Command::Status => "status",
            Command::Script => "script",
        })
    }
}

/// `version` and `reqid` of a frame; `length` belongs to the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// 0 from the stock tool and daemon (the protocol's version constant, 1, is
    /// never sent); ignored on receipt.
    pub version: u32,
    /// Request id, echoed in the reply. The stock tool's first (and only) request
    /// uses 0x7fffff38.
    pub reqid: u32,
}

impl Header {
    /// The header of the reply to a request with this header: same reqid, version
    /// 0 as the stock daemon sends whatever the request said.
    pub fn reply(self) -> Self {
        Self {
            version: 0,
            reqid: self.reqid,
        }
    }
}

/// A request from the event tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Version and reqid.
    pub header: Header,
    /// The command and its fields.
    pub body: RequestBody,
}

/// A request's command and fields.
///
/// ```text
/// 12 command u32 | fields of the command
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// `ctdb event run`.
    Run(RunRequest),
    /// `ctdb event status`, `ctdb scriptstatus`.
    Status(StatusRequest),
    /// Never sent by the 4.17 tool (its `script enable|disable` edit the file system
    /// themselves, §5); the stock daemon still serves it.
    Script(ScriptRequest),
}

/// RUN request fields.
///
/// ```text
/// stringn component | stringn event | stringn args (NULL: none)
/// | u32 timeout (seconds) | u32 flags (RUN_ALL)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The component: a directory under `$CTDB_BASE/events`; `legacy` in practice.
    pub component: String,
    /// The event name as typed; the stock daemon runs any name.
    pub event: String,
    /// The event's arguments joined by single spaces, or `None` when there are none.
    pub args: Option<String>,
    /// Seconds allowed for the whole event; 0 times out at once (§4.1).
    pub timeout: u32,
    /// [`RUN_ALL`] or 0.
    pub flags: u32,
}

/// STATUS request fields: `stringn component | stringn event`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRequest {
    /// The component.
    pub component: String,
    /// The event name as typed.
    pub event: String,
}

/// SCRIPT request fields: `stringn component | stringn script | u32 action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRequest {
    /// The component.
    pub component: String,
    /// `NN.name`, with or without `.script`.
    pub script: String,
    /// Enable or disable.
    pub action: ScriptAction,
}

/// What a SCRIPT request does to the script's execute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptAction {
    /// Clear them (wire value 0).
    Disable = 0,
    /// Set them (wire value 1).
    Enable = 1,
}

/// A reply from the event daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Version (0) and the request's reqid.
    pub header: Header,
    /// The command answered and its result.
    pub body: ReplyBody,
}

/// A reply's command, result and data.
///
/// ```text
/// 12 command u32 | 16 result i32 | STATUS with result 0 only: StatusReply
/// ```
///
/// `result` is 0 or a positive errno (§4.4); the stock tool prints its text from it
/// and exits with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyBody {
    /// Result of a RUN: 0, `ENOEXEC` (a script failed), `ETIMEDOUT`, `ECANCELED`,
    /// `ENOENT` (no such component), ...
    Run(i32),
    /// A STATUS: the last result, or the errno why there is none (`EINVAL`: never
    /// ran; `ENOENT`: no such component).
    Status(Result<StatusReply, NonZeroI32>),
    /// Result of a SCRIPT: 0, `ENOENT`, `EINVAL`, ...
    Script(i32),
}

/// The last result of an event.
///
/// ```text
/// i32 summary | i32 count | count × EventScript
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReply {
    /// 0, the failed script's exit status, or a negated errno (`-ETIMEDOUT`,
    /// `-EINTR`, ...). The status tool exits with its absolute value.
    pub summary: i32,
    /// The scripts, in the order they ran, up to the one that stopped the event.
    pub scripts: Vec<EventScript>,
}

/// One script in a status reply.
///
/// ```text
/// stringn name | i64 begin.sec | i64 begin.usec | i64 end.sec | i64 end.usec
/// | i32 result | stringn output (NULL: none)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventScript {
    /// `NN.name`.
    pub name: String,
    /// When it started.
    pub begin: Timeval,
    /// When it ended.
    pub end: Timeval,
    /// 0, its exit status, or a negated errno: `-ENOEXEC` shows as `DISABLED`,
    /// `-ETIMEDOUT` as `TIMEDOUT`, others as `CANNOT RUN (strerror)`.
    pub result: i32,
    /// Its output, `None` when it wrote nothing.
    pub output: Option<String>,
}

impl EventScript {
    /// The run time the stock tool prints (`%.3lf`), computed as it computes it:
    /// whole-second difference plus microsecond difference times 1.0e-6. Dividing
    /// total microseconds by 1e6 instead rounds differently at exact half
    /// milliseconds (3500 µs prints 0.003 here, 0.004 there).
    pub fn elapsed_secs(&self) -> f64 {
        (self.end.sec - self.begin.sec) as f64 + (self.end.usec - self.begin.usec) as f64 * 1.0e-6
    }
}

impl Request {
    /// The command of this request.
    pub fn command(&self) -> Command {
        match self.body {
            RequestBody::Run(_) => Command::Run,
            RequestBody::Status(_) => Command::Status,
            RequestBody::Script(_) => Command::Script,
        }
    }

    /// The frame, length included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = frame_writer(self.header, self.command());
        match &self.body {
            RequestBody::Run(run) => {
                put_string(&mut w, Some(&run.component));
                put_string(&mut w, Some(&run.event));
                put_string(&mut w, run.args.as_deref());
                w.u32(run.timeout).u32(run.flags);
            }
            RequestBody::Status(status) => {
                put_string(&mut w, Some(&status.component));
                put_string(&mut w, Some(&status.event));
            }
            RequestBody::Script(script) => {
                put_string(&mut w, Some(&script.component));
                put_string(&mut w, Some(&script.script));
                w.u32(script.action as u32);
            }
        }
        finish_frame(w)
    }

    /// Decodes one whole frame (as cut by [`Framer`]). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (header, mut r) = read_header(bytes)?;
        let command = read_command(&mut r, "request.command")?;
        let body = match command {
            Command::Run => RequestBody::Run(RunRequest {
                component: required(&mut r, "run.component")?,
                event: required(&mut r, "run.event")?,
                args: get_string(&mut r, "run.args")?,
                timeout: r.u32("run.timeout")?,
                flags: r.u32("run.flags")?,
            }),
            Command::Status => RequestBody::Status(StatusRequest {
                component: required(&mut r, "status.component")?,
                event: required(&mut r, "status.event")?,
            }),
            Command::Script => {
                let component = required(&mut r, "script.component")?;
                let script = required(&mut r, "script.script")?;
                let action = match r.u32("script.action")? {
                    0 => ScriptAction::Disable,
                    1 => ScriptAction::Enable,
                    other => {
                        return Err(DecodeError::Invalid {
                            field: "script.action",
                            value: u64::from(other),
                        })
                    }
                };
                RequestBody::Script(ScriptRequest {
                    component,
                    script,
                    action,
                })
            }
        };
        r.finish("request")?;
        Ok(Self { header, body })
    }
}

impl RunRequest {
    /// The time allowed for the whole event. The stock daemon sets its deadline to
    /// now + `timeout`, so 0 means the first script times out at once (captured,
    /// §4.1), not "no limit".
    pub fn time_limit(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout))
    }

    /// Our [`Event`] for this request: the name must be one of CTDB's events, and
    /// the arguments (split on spaces, as the stock daemon splits them) must be what
    /// that event takes: `IFACE IP MASKBITS` for `takeip`/`releaseip`,
    /// `OLDIFACE NEWIFACE IP MASKBITS` for `updateip`, nothing for the others.
    pub fn event(&self) -> Result<Event, BadEvent> {
        let kind = EventKind::from_str(&self.event).map_err(BadEvent::Unknown)?;
        let args: Vec<&str> = self
            .args
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|word| !word.is_empty())
            .collect();
        let bad = || BadEvent::Arguments {
            event: kind,
            args: self.args.clone().unwrap_or_default(),
        };
        let address = |ip: &str, bits: &str| -> Option<(IpAddr, u8)> {
            let ip = wire::parse_ip(ip)?;
            let maskbits: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (maskbits <= max).then_some((ip, maskbits))
        };
        let event = match (kind, args.as_slice()) {
            (EventKind::TakeIp, [iface, ip, bits]) => {
                let (ip, maskbits) = address(ip, bits).ok_or_else(bad)?;
                Event::TakeIp {
                    iface: (*iface).to_owned(),
                    ip,
                    maskbits,
                }
            }
            (EventKind::ReleaseIp, [iface, ip, bits]) => {
                let (ip, maskbits) = address(ip, bits).ok_or_else(bad)?;
                Event::ReleaseIp {
                    iface: (*iface).to_owned(),
                    ip,
                    maskbits,
                }
            }
            (EventKind::UpdateIp, [old_iface, new_iface, ip, bits]) => {
                let (ip, maskbits) = address(ip, bits).ok_or_else(bad)?;
                Event::UpdateIp {
                    old_iface: (*old_iface).to_owned(),
                    new_iface: (*new_iface).to_owned(),
                    ip,
                    maskbits,
                }
            }
            (EventKind::TakeIp | EventKind::ReleaseIp | EventKind::UpdateIp, _) => {
                return Err(bad())
            }
            (_, [_, ..]) => return Err(bad()),
            (EventKind::Init, []) => Event::Init,
            (EventKind::Setup, []) => Event::Setup,
            (EventKind::Startup, []) => Event::Startup,
            (EventKind::Monitor, []) => Event::Monitor,
            (EventKind::IpReallocated, []) => Event::IpReallocated,
            (EventKind::StartRecovery, []) => Event::StartRecovery,
            (EventKind::Recovered, []) => Event::Recovered,
            (EventKind::Shutdown, []) => Event::Shutdown,
        };
        Ok(event)
    }
}

impl From<&Event> for RunRequest {
    /// The request the stock tool sends for `ctdb event run 0 legacy EVENT ARGS`
    /// (set `timeout` afterwards).
    fn from(event: &Event) -> Self {
        let argv = event.argv();
        Self {
            component: LEGACY.to_owned(),
            event: argv[0].clone(),
            args: (argv.len() > 1).then(|| argv[1..].join(" ")),
            timeout: 0,
            flags: 0,
        }
    }
}

/// A RUN request our runner cannot carry out. The server answers `EINVAL`
/// ([`BadEvent::result`]); the stock daemon would have run the scripts anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    /// Not one of CTDB's event names.
    #[error(transparent)]
    Unknown(UnknownEvent),
    /// A known event with arguments it does not take.
    #[error("bad arguments {args:?} for event {event}")]
    Arguments {
        /// The event.
        event: EventKind,
        /// The arguments as received.
        args: String,
    },
}

impl BadEvent {
    /// The RUN reply's result for this request: `EINVAL`.
    pub fn result(&self) -> i32 {
        libc::EINVAL
    }
}

impl StatusRequest {
    /// The event asked about. An unknown name has never run: the caller answers
    /// `EINVAL`, as the stock daemon does for any event it has no result for.
    pub fn event_kind(&self) -> Result<EventKind, UnknownEvent> {
        EventKind::from_str(&self.event)
    }
}

impl Reply {
    /// The command this reply answers.
    pub fn command(&self) -> Command {
        match self.body {
            ReplyBody::Run(_) => Command::Run,
            ReplyBody::Status(_) => Command::Status,
            ReplyBody::Script(_) => Command::Script,
        }
    }

    /// The frame, length included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = frame_writer(self.header, self.command());
        match &self.body {
            ReplyBody::Run(result) | ReplyBody::Script(result) => {
                w.i32(*result);
            }
            ReplyBody::Status(Err(errno)) => {
                w.i32(errno.get());
            }
            ReplyBody::Status(Ok(status)) => {
                w.i32(0).i32(status.summary);
                let count = i32::try_from(status.scripts.len()).expect("fewer than 2^31 scripts");
                w.i32(count);
                for script in &status.scripts {
                    put_string(&mut w, Some(&script.name));
                    w.i64(script.begin.sec)
                        .i64(script.begin.usec)
                        .i64(script.end.sec)
                        .i64(script.end.usec)
                        .i32(script.result);
                    put_string(&mut w, script.output.as_deref());
                }
            }
        }
        finish_frame(w)
    }

    /// Decodes one whole frame (as cut by [`Framer`]). Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (header, mut r) = read_header(bytes)?;
        let command = read_command(&mut r, "reply.command")?;
        let result = r.i32("reply.result")?;
        let body = match (command, NonZeroI32::new(result)) {
            (Command::Run, _) => ReplyBody::Run(result),
            (Command::Script, _) => ReplyBody::Script(result),
            (Command::Status, Some(errno)) => ReplyBody::Status(Err(errno)),
            (Command::Status, None) => {
                let summary = r.i32("status.summary")?;
                let count = r.i32("status.num_scripts")?;
                let count = usize::try_from(count).map_err(|_| DecodeError::Invalid {
                    field: "status.num_scripts",
                    value: count as u32 as u64,
                })?;
                // Checked before allocating: every entry needs MIN_SCRIPT_SIZE bytes.
                let needed = count.saturating_mul(MIN_SCRIPT_SIZE);
                if needed > r.remaining() {
                    return Err(DecodeError::Truncated {
                        field: "status.num_scripts",
                        needed,
                        available: r.remaining(),
                    });
                }
                let mut scripts = Vec::with_capacity(count);
                for _ in 0..count {
                    scripts.push(EventScript {
                        name: required(&mut r, "script.name")?,
                        begin: Timeval {
                            sec: r.i64("script.begin")?,
                            usec: r.i64("script.begin")?,
                        },
                        end: Timeval {
                            sec: r.i64("script.end")?,
                            usec: r.i64("script.end")?,
                        },
                        result: r.i32("script.result")?,
                        output: get_string(&mut r, "script.output")?,
                    });
                }
                ReplyBody::Status(Ok(StatusReply { summary, scripts }))
            }
        };
        r.finish("reply")?;
        Ok(Self { header, body })
    }
}

impl ReplyBody {
    /// The STATUS answer for the last result of an event: the result, or `EINVAL`
    /// ("Event X has never run in legacy") when there is none.
    pub fn status_of(last: Option<&EventResult>) -> Self {
        match last {
            Some(result) => Self::Status(Ok(StatusReply::from_result(result))),
            None => Self::Status(Err(errno(libc::EINVAL))),
        }
    }
}

impl StatusReply {
    /// What the stock daemon would report for `result`, so that the stock tool prints
    /// what `ctdb event status` printed against it (§4.2):
    ///
    /// | our script status | result | printed |
    /// |---|---|---|
    /// | `Ok` | 0 | `OK` and the time |
    /// | `Failed(code)` | code | `ERROR`, the time, the output |
    /// | `TimedOut` | `-ETIMEDOUT` | `TIMEDOUT`, the start, the output |
    /// | `Disabled`, `NotExecutable` | `-ENOEXEC` | `DISABLED` |
    /// | `Error(text)` | `-errno` | `CANNOT RUN (strerror)`, the output |
    ///
    /// The errno of an `Error` is the event's (`Overall::Error`) when this script
    /// stopped it, else the errno whose text `text` is, else `EIO`; the tool prints
    /// the C library's text for the number, so a message of our own (a bad options
    /// file) shows as `Invalid argument`. Output stops at its first NUL, as a C
    /// string does; empty output is sent as NULL, as the stock daemon sends it.
    pub fn from_result(result: &EventResult) -> Self {
        let scripts = result
            .scripts
            .iter()
            .map(|script| {
                let begin = timeval(script.started);
                let end = add_micros(begin, script.duration);
                let code = match &script.status {
                    ScriptStatus::Ok => 0,
                    ScriptStatus::Failed(code) => *code,
                    ScriptStatus::TimedOut => -libc::ETIMEDOUT,
                    ScriptStatus::Disabled | ScriptStatus::NotExecutable => -libc::ENOEXEC,
                    ScriptStatus::Error(message) => {
                        let errno = match &result.overall {
                            Overall::Error {
                                script: Some(name),
                                errno,
                                ..
                            } if *name == script.name && *errno > 0 => *errno,
                            _ => errno_of_text(message).unwrap_or(libc::EIO),
                        };
                        -errno
                    }
                };
                let output = script.output.split('\0').next().unwrap_or_default();
                EventScript {
                    name: script.name.clone(),
                    begin,
                    end,
                    result: code,
                    output: (!output.is_empty()).then(|| output.to_owned()),
                }
            })
            .collect();
        let summary = match &result.overall {
            Overall::Ok => 0,
            Overall::Failed { code, .. } => *code,
            Overall::TimedOut { .. } => -libc::ETIMEDOUT,
            Overall::Error { errno, .. } => -errno.abs(),
        };
        Self { summary, scripts }
    }
}

/// A RUN reply's result for a finished event, as the stock daemon sums it up
/// (§4.1): 0 when every script succeeded (disabled ones included), `ETIMEDOUT` when
/// one timed out, `ENOEXEC` when one failed or could not run, and the errno when the
/// script directory could not be read (`ENOENT`: the tool prints "Event dir for
/// legacy does not exist"). An event cancelled before it finished is answered
/// `ECANCELED` by the caller; there is no [`EventResult`] for it.
pub fn run_result(result: &EventResult) -> i32 {
    match &result.overall {
        Overall::Ok => 0,
        Overall::TimedOut { .. } => libc::ETIMEDOUT,
        Overall::Failed { .. } => libc::ENOEXEC,
        Overall::Error {
            script: Some(_), ..
        } => libc::ENOEXEC,
        Overall::Error {
            script: None,
            errno,
            ..
        } => errno.abs().max(1),
    }
}

/// A SCRIPT reply's result for a failed enable or disable, as the stock daemon
/// reports its own failures (§4.3): `ENOENT` for a script that does not exist and
/// for a name that is not `NN.name` (the stock daemon looks for `NAME.script` and
/// finds nothing: captured for `README`), `EINVAL` for a path that is not a regular
/// file, the errno of a failed system call (`EIO` without one).
pub fn script_error_result(error: &ScriptError) -> i32 {
    match error {
        ScriptError::NotAScript { .. } => libc::EINVAL,
        ScriptError::InvalidName { .. } | ScriptError::NotFound { .. } => libc::ENOENT,
        ScriptError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// Why a byte stream cannot be cut into frames any more. The connection must be
/// closed (the stock daemon closes it too, §2.2): the next frame boundary is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is below the 12-byte header.
    #[error("event frame length {0} is shorter than the 12-byte header")]
    TooShort(u32),
    /// The length field exceeds what this reader accepts.
    #[error("event frame length {length} exceeds the limit of {limit} bytes")]
    TooLong {
        /// Declared length.
        length: u32,
        /// Our limit.
        limit: u32,
    },
}

/// Cuts a byte stream into frames by their leading length. "Need more bytes" is
/// `Ok(None)`, never an error; the length is checked before anything is allocated.
#[derive(Debug, Clone)]
pub struct Framer {
    max_len: u32,
}

impl Framer {
    /// Largest request we accept. The stock daemon sets no limit; a real request is
    /// three short strings and two numbers (under 200 bytes from the stock tool).
    pub const MAX_REQUEST_LEN: u32 = 64 * 1024;
    /// Largest reply we accept: a status reply carries every script's output, which
    /// the stock daemon does not bound either.
    pub const MAX_REPLY_LEN: u32 = 64 << 20;

    /// A framer for a server reading requests.
    pub fn for_requests() -> Self {
        Self {
            max_len: Self::MAX_REQUEST_LEN,
        }
    }

    /// A framer for a client reading replies.
    pub fn for_replies() -> Self {
        Self {
            max_len: Self::MAX_REPLY_LEN,
        }
    }

    /// If `buf` starts with a whole frame, its length.
    pub fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(len_bytes) = buf.get(0..4) else {
            return Ok(None);
        };
        let length = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes"));
        if (length as usize) < HEADER_SIZE {
            return Err(FrameError::TooShort(length));
        }
        if length > self.max_len {
            return Err(FrameError::TooLong {
                length,
                limit: self.max_len,
            });
        }
        if buf.len() < length as usize {
            Ok(None)
        } else {
            Ok(Some(length as usize))
        }
    }
}

fn frame_writer(header: Header, command: Command) -> Writer {
    let mut w = Writer::new();
    w.u32(0) // length, patched by finish_frame
        .u32(header.version)
        .u32(header.reqid)
        .u32(command as u32);
    w
}

fn finish_frame(w: Writer) -> Vec<u8> {
    let mut bytes = w.into_bytes();
    let len = u32::try_from(bytes.len()).expect("event frame shorter than 4 GiB");
    bytes[0..4].copy_from_slice(&len.to_le_bytes());
    bytes
}

fn read_header(bytes: &[u8]) -> Result<(Header, Reader<'_>), DecodeError> {
    let mut r = Reader::new(bytes);
    let length = r.u32("header.length")?;
    if length as usize != bytes.len() {
        return Err(DecodeError::Invalid {
            field: "header.length",
            value: u64::from(length),
        });
    }
    let header = Header {
        version: r.u32("header.version")?,
        reqid: r.u32("header.reqid")?,
    };
    Ok((header, r))
}

fn read_command(r: &mut Reader<'_>, field: &'static str) -> Result<Command, DecodeError> {
    let value = r.u32(field)?;
    Command::from_u32(value).ok_or(DecodeError::Invalid {
        field,
        value: u64::from(value),
    })
}

/// Appends a `stringn`, cut at its first NUL as the C string it becomes.
fn put_string(w: &mut Writer, text: Option<&str>) {
    w.stringn(text.map(|t| t.split('\0').next().unwrap_or_default()));
}

/// Reads a `stringn` whose count covers exactly the text and one NUL; count 0 is
/// NULL (`None`). Invalid UTF-8 is replaced, as elsewhere in the codec.
fn get_string(r: &mut Reader<'_>, field: &'static str) -> Result<Option<String>, DecodeError> {
    let count = r.u32(field)? as usize;
    if count == 0 {
        return Ok(None);
    }
    let bytes = r.bytes(count, field)?;
    let (last, text) = bytes.split_last().expect("count > 0");
    if *last != 0 || text.contains(&0) {
        return Err(DecodeError::Invalid {
            field,
            value: count as u64,
        });
    }
    Ok(Some(String::from_utf8_lossy(text).into_owned()))
}

/// A `stringn` that must not be NULL.
fn required(r: &mut Reader<'_>, field: &'static str) -> Result<String, DecodeError> {
    get_string(r, field)?.ok_or(DecodeError::Invalid { field, value: 0 })
}

fn errno(value: i32) -> NonZeroI32 {
    NonZeroI32::new(value).expect("errno constants are not 0")
}

/// The errno whose C library text is `text` (the runner records a script that
/// could not run by that text).
fn errno_of_text(text: &str) -> Option<i32> {
    (1..=133).find(|&e| nix::errno::Errno::from_raw(e).desc() == text)
}

/// `time` as a timeval, microseconds truncated; before the epoch the seconds are
/// negative and the microseconds count forward from them, as in C.
fn timeval(time: SystemTime) -> Timeval {
    let micros: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_micros() as i128,
        Err(before) => -(before.duration().as_micros() as i128),
    };
    Timeval {
        sec: micros.div_euclid(1_000_000) as i64,
        usec: micros.rem_euclid(1_000_000) as i64,
    }
}

fn add_micros(begin: Timeval, duration: Duration) -> Timeval {
    let micros = i128::from(begin.usec) + duration.as_micros() as i128;
    Timeval {
        sec: begin
            .sec
            .saturating_add(micros.div_euclid(1_000_000) as i64),
        usec: micros.rem_euclid(1_000_000) as i64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::runner::ScriptResult;

    /// Sat Nov 21 08:09:01 2026 UTC.
    const T0: u64 = 1_795_248_541;

    fn script(name: &str, status: ScriptStatus, output: &str, micros: u64) -> ScriptResult {
        ScriptResult {
            name: name.into(),
            status,
            output: output.into(),
            output_dropped: 0,
            started: UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_nanos(250_999),
            duration: Duration::from_micros(micros),
        }
    }

    fn run(event: &str, args: Option<&str>) -> RunRequest {
        RunRequest {
            component: LEGACY.into(),
            event: event.into(),
            args: args.map(Into::into),
            timeout: 30,
            flags: 0,
        }
    }

    #[test]
    fn run_request_layout() {
        let request = Request {
            header: Header {
                version: 0,
                reqid: 0x7fff_ff38,
            },
            body: RequestBody::Run(run("monitor", None)),
        };
        let bytes = request.encode();
        // 12 header + 4 command + (4+7) + (4+8) + 4 (NULL args) + 4 + 4.
        assert_eq!(bytes.len(), 51);
        assert_eq!(&bytes[0..4], &51u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &[0x38, 0xff, 0xff, 0x7f, 1, 0, 0, 0]);
        assert_eq!(&bytes[16..27], b"\x07\0\0\0legacy\0");
        assert_eq!(Request::decode(&bytes), Ok(request));
    }

    #[test]
    fn failed_status_reply_has_no_data() {
        let reply = Reply {
            header: Header {
                version: 0,
                reqid: 9,
            },
            body: ReplyBody::status_of(None),
        };
        let bytes = reply.encode();
        assert_eq!(
            bytes,
            [20, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 22, 0, 0, 0]
        );
        assert_eq!(Reply::decode(&bytes), Ok(reply));
    }

    #[test]
    fn decode_errors_name_the_field() {
        let mut bytes = Request {
            header: Header::default(),
            body: RequestBody::Script(ScriptRequest {
                component: LEGACY.into(),
                script: "01.ok".into(),
                action: ScriptAction::Enable,
            }),
        }
        .encode();
        let last = bytes.len() - 4;
        bytes[last] = 2;
        assert_eq!(
            Request::decode(&bytes),
            Err(DecodeError::Invalid {
                field: "script.action",
                value: 2
            })
        );
        bytes[12] = 4;
        assert!(matches!(
            Request::decode(&bytes),
            Err(DecodeError::Invalid {
                field: "request.command",
                value: 4
            })
        ));
        // A reply claiming a billion scripts in 8 bytes is refused before allocating.
        let mut reply = vec![0u8; 28];
        reply[0] = 28;
        reply[12] = 2;
        reply[24..28].copy_from_slice(&1_000_000_000i32.to_le_bytes());
        assert!(matches!(
            Reply::decode(&reply),
            Err(DecodeError::Truncated {
                field: "status.num_scripts",
                ..
            })
        ));
        reply[24..28].copy_from_slice(&(-1i32).to_le_bytes());
        assert!(matches!(
            Reply::decode(&reply),
            Err(DecodeError::Invalid {
                field: "status.num_scripts",
                ..
            })
        ));
    }

    #[test]
    fn strings_must_end_in_their_only_nul() {
        let status = |component: &[u8]| {
            let mut w = Writer::new();
            w.u32(0).u32(0).u32(1).u32(2);
            w.u32(component.len() as u32).bytes(component);
            w.stringn(Some("monitor"));
            finish_frame(w)
        };
        assert!(Request::decode(&status(b"legacy\0")).is_ok());
        for bad in [&b"legacy"[..], b"leg\0cy\0"] {
            assert_eq!(
                Request::decode(&status(bad)),
                Err(DecodeError::Invalid {
                    field: "status.component",
                    value: bad.len() as u64
                })
            );
        }
        assert_eq!(
            Request::decode(&status(b"")),
            Err(DecodeError::Invalid {
                field: "status.component",
                value: 0
            })
        );
    }

    #[test]
    fn framer_waits_and_refuses_bad_lengths() {
        let f = Framer::for_requests();
        assert_eq!(f.frame_len(&[]), Ok(None));
        assert_eq!(f.frame_len(&[20, 0, 0]), Ok(None));
        assert_eq!(f.frame_len(&[20, 0, 0, 0, 1, 2]), Ok(None));
        let mut twelve = vec![0u8; 12];
        twelve[0] = 12;
        assert_eq!(f.frame_len(&twelve), Ok(Some(12)));
        assert_eq!(f.frame_len(&[8, 0, 0, 0]), Err(FrameError::TooShort(8)));
        assert_eq!(f.frame_len(&[0, 0, 0, 0]), Err(FrameError::TooShort(0)));
        assert_eq!(
            f.frame_len(&[1, 0, 1, 0]),
            Err(FrameError::TooLong {
                length: 65_537,
                limit: Framer::MAX_REQUEST_LEN
            })
        );
        assert_eq!(Framer::for_replies().frame_len(&[1, 0, 1, 0]), Ok(None));
    }

    #[test]
    fn run_request_to_event() {
        assert_eq!(run("monitor", None).event(), Ok(Event::Monitor));
        assert_eq!(
            run("takeip", Some("eth1  10.0.0.31 24")).event(),
            Ok(Event::TakeIp {
                iface: "eth1".into(),
                ip: "10.0.0.31".parse().unwrap(),
                maskbits: 24
            })
        );
        assert_eq!(
            run("updateip", Some("eth1 eth2 fd00::5 64")).event(),
            Ok(Event::UpdateIp {
                old_iface: "eth1".into(),
                new_iface: "eth2".into(),
                ip: "fd00::5".parse().unwrap(),
                maskbits: 64
            })
        );
        assert!(matches!(
            run("bogus", None).event(),
            Err(BadEvent::Unknown(_))
        ));
        for (event, args) in [
            ("monitor", "extra"),
            ("takeip", "eth1 10.0.0.31"),
            ("releaseip", "eth1 10.0.0.31 33"),
            ("takeip", "eth1 10.0.0.300 24"),
        ] {
            let err = run(event, Some(args)).event().unwrap_err();
            assert!(matches!(err, BadEvent::Arguments { .. }), "{event} {args}");
            assert_eq!(err.result(), libc::EINVAL);
        }
        let release = Event::ReleaseIp {
            iface: "eth1".into(),
            ip: "10.0.0.31".parse().unwrap(),
            maskbits: 24,
        };
        let request = RunRequest::from(&release);
        assert_eq!(request.args.as_deref(), Some("eth1 10.0.0.31 24"));
        assert_eq!(request.event(), Ok(release));
        assert_eq!(RunRequest::from(&Event::Monitor).args, None);
        assert_eq!(run("monitor", None).time_limit(), Duration::from_secs(30));
    }

    #[test]
    fn status_reply_from_result() {
        let result = EventResult {
            event: Event::Monitor,
            scripts: vec![
                script("00.off", ScriptStatus::NotExecutable, "", 0),
                script("01.ok", ScriptStatus::Ok, "", 2_400),
                script("02.fail", ScriptStatus::Failed(3), "bad\0hidden", 999_900),
            ],
            overall: Overall::Failed {
                script: "02.fail".into(),
                code: 3,
            },
            debug: None,
        };
        let reply = StatusReply::from_result(&result);
        assert_eq!(reply.summary, 3);
        let begin = Timeval {
            sec: T0 as i64,
            usec: 250,
        };
        assert_eq!(
            reply.scripts,
            [
                EventScript {
                    name: "00.off".into(),
                    begin,
                    end: begin,
                    result: -libc::ENOEXEC,
                    output: None
                },
                EventScript {
                    name: "01.ok".into(),
                    begin,
                    end: Timeval {
                        sec: T0 as i64,
                        usec: 2_650
                    },
                    result: 0,
                    output: None
                },
                EventScript {
                    name: "02.fail".into(),
                    begin,
                    end: Timeval {
                        sec: T0 as i64 + 1,
                        usec: 150
                    },
                    result: 3,
                    output: Some("bad".into())
                },
            ]
        );
        assert!((reply.scripts[2].elapsed_secs() - 0.9999).abs() < 1e-9);
        assert_eq!(run_result(&result), libc::ENOEXEC);
    }

    #[test]
    fn errors_and_timeouts_carry_errnos() {
        let timed_out = EventResult {
            event: Event::Monitor,
            scripts: vec![script("05.slow", ScriptStatus::TimedOut, "partial\n", 10)],
            overall: Overall::TimedOut {
                script: "05.slow".into(),
            },
            debug: None,
        };
        let reply = StatusReply::from_result(&timed_out);
        assert_eq!(reply.summary, -110);
        assert_eq!(reply.scripts[0].result, -110);
        assert_eq!(run_result(&timed_out), 110);

        let signalled = EventResult {
            event: Event::Startup,
            scripts: vec![script(
                "01.sig",
                ScriptStatus::Error("Interrupted system call".into()),
                "",
                10,
            )],
            overall: Overall::Error {
                script: Some("01.sig".into()),
                message: "Interrupted system call".into(),
                errno: libc::EINTR,
            },
            debug: None,
        };
        let reply = StatusReply::from_result(&signalled);
        assert_eq!((reply.summary, reply.scripts[0].result), (-4, -4));
        assert_eq!(run_result(&signalled), libc::ENOEXEC);

        // An options file that does not parse: our text, the event's errno.
        let mut bad_options = signalled.clone();
        bad_options.scripts[0].status = ScriptStatus::Error("script.options:3: junk".into());
        if let Overall::Error { errno, .. } = &mut bad_options.overall {
            *errno = libc::EINVAL;
        }
        assert_eq!(
            StatusReply::from_result(&bad_options).scripts[0].result,
            -22
        );
        // Not the stopping script and unknown text: EIO.
        bad_options.overall = Overall::Ok;
        assert_eq!(StatusReply::from_result(&bad_options).scripts[0].result, -5);

        let no_dir = EventResult {
            event: Event::Monitor,
            scripts: vec![],
            overall: Overall::Error {
                script: None,
                message: "no such directory".into(),
                errno: libc::ENOENT,
            },
            debug: None,
        };
        assert_eq!(run_result(&no_dir), libc::ENOENT);
        assert_eq!(
            StatusReply::from_result(&no_dir),
            StatusReply {
                summary: -2,
                scripts: vec![]
            }
        );
    }

    #[test]
    fn timevals_before_the_epoch_count_forward() {
        let t = UNIX_EPOCH - Duration::from_micros(1_500_000);
        assert_eq!(
            timeval(t),
            Timeval {
                sec: -2,
                usec: 500_000
            }
        );
        assert_eq!(
            add_micros(timeval(t), Duration::from_micros(700_000)),
            Timeval {
                sec: -1,
                usec: 200 * 1000
            }
        );
    }

    #[test]
    fn script_errors_map_to_errnos() {
        let missing = crate::events::scripts::ScriptName::parse("99.gone").unwrap();
        assert_eq!(
            script_error_result(&ScriptError::NotFound { name: missing }),
            libc::ENOENT
        );
        assert_eq!(
            script_error_result(&ScriptError::InvalidName {
                name: "README".into()
            }),
            libc::ENOENT
        );
        assert_eq!(
            script_error_result(&ScriptError::NotAScript {
                path: "/etc/ctdb/events/legacy/01.ok.script".into()
            }),
            libc::EINVAL
        );
        assert_eq!(
            script_error_result(&ScriptError::Io {
                path: "/x".into(),
                source: std::io::Error::from_raw_os_error(libc::EACCES)
            }),
            libc::EACCES
        );
    }
}

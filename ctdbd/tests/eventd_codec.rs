//! The event-protocol codec against bytes captured from the stock CTDB 4.17.12
//! `ctdb`/`ctdb-event` tools and `ctdb-eventd` (`src/events/PROTOCOL.md`).
//!
//! Given: `tests/fixtures/eventd/*.hex`, written by
//! `tests/fixtures-capture/eventd_capture.sh`: each frame a `# REQUEST <CMD> ...` or
//! `# REPLY <CMD> ... result=N ...` line, then one line of hex; and
//! `tests/fixtures/eventd/stock-output/<case>.{txt,rc}`, what the stock `ctdb` tool
//! printed for the same case (with `TZ=UTC`).
//!
//! Then:
//! * every frame decodes, names the command its comment names, and encodes back to
//!   the very same bytes (the one NULL-string request is refused, naming the field);
//! * the status replies, turned into our `EventResult` and back through
//!   `StatusReply::from_result`, give the same bytes, and `render_event_status` of
//!   that result prints what the stock tool printed, with its exit status;
//! * the stock tool's run requests become our `Event`s, and our requests for those
//!   events are the stock tool's bytes;
//! * generated requests and replies survive `decode(encode(x)) == x`, and arbitrary
//!   bytes never make the decoders or the framer panic.
//!
//! Failures show the first differing offset with a hex window of both sides.

mod hex;

use hex::{assert_same_bytes, parse_hex};
use std::fs;
use std::num::NonZeroI32;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use ctdbd::events::protocol::{
    run_result, BadEvent, Command, DecodeError, EventScript, FrameError, Framer, Header, Reply,
    ReplyBody, Request, RequestBody, RunRequest, ScriptAction, ScriptRequest, StatusReply,
    StatusRequest, HEADER_SIZE, LEGACY, RUN_ALL,
};
use ctdbd::events::{
    ctime_utc, render_event_status, Event, EventResult, Overall, ScriptResult, ScriptStatus,
};
use ctdbd::protocol::control::Timeval;

/// One frame of a fixture file.
struct Frame {
    /// `file.hex#index`.
    origin: String,
    /// The comment line, without `# `.
    comment: String,
    bytes: Vec<u8>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eventd")
}

/// The frames of one fixture file.
fn load(name: &str) -> Vec<Frame> {
    let path = fixture_dir().join(format!("{name}.hex"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    let mut comment: Option<String> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix('#') {
            comment = Some(c.trim().to_owned());
            continue;
        }
        let origin = format!("{name}.hex#{}", frames.len());
        let comment = comment
            .take()
            .unwrap_or_else(|| panic!("{origin}: hex line without a comment line"));
        frames.push(Frame {
            bytes: parse_hex(line, &origin),
            origin,
            comment,
        });
    }
    assert!(!frames.is_empty(), "{name}: no frames");
    frames
}

/// Every fixture file's name (without `.hex`), sorted.
fn all_cases() -> Vec<String> {
    let dir = fixture_dir();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "too few fixtures in {}", dir.display());
    names
}

fn command_name(command: Command) -> &'static str {
    match command {
        Command::Run => "RUN",
        Command::Status => "STATUS",
        Command::Script => "SCRIPT",
    }
}

/// The `key=value` word of a comment.
fn comment_field<'a>(comment: &'a str, key: &str) -> Option<&'a str> {
    comment
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

fn request_of(frames: &[Frame]) -> Request {
    let f = frames
        .iter()
        .find(|f| f.comment.starts_with("REQUEST"))
        .expect("a request");
    Request::decode(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.origin))
}

fn reply_of(frames: &[Frame]) -> Reply {
    let f = frames
        .iter()
        .find(|f| f.comment.starts_with("REPLY"))
        .expect("a reply");
    Reply::decode(&f.bytes).unwrap_or_else(|e| panic!("{}: {e}", f.origin))
}

fn stock_output(case: &str) -> (String, i32) {
    let dir = fixture_dir().join("stock-output");
    let text = fs::read_to_string(dir.join(format!("{case}.txt"))).unwrap();
    let rc = fs::read_to_string(dir.join(format!("{case}.rc")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (text, rc)
}

/// The exit status of `ctdb event ...` for the helper's `code`: the stock tool reads
/// 64..=254 as "helper failed with error code-64" (so ETIMEDOUT, 110, becomes 46).
fn through_ctdb_tool(code: i32) -> i32 {
    if (64..255).contains(&code) {
        code - 64
    } else {
        code
    }
}

/// Our record of an event that the stock daemon reported as `status`: what our
/// runner would have recorded for the same run.
fn result_from_status(status: &StatusReply) -> EventResult {
    let scripts: Vec<ScriptResult> = status
        .scripts
        .iter()
        .map(|s| {
            let status = match s.result {
                0 => ScriptStatus::Ok,
                code if code > 0 => ScriptStatus::Failed(code),
                -110 => ScriptStatus::TimedOut,
                -8 => ScriptStatus::Disabled,
                errno => ScriptStatus::Error(nix::errno::Errno::from_raw(-errno).desc().into()),
            };
            let micros = |t: Timeval| t.sec * 1_000_000 + t.usec;
            ScriptResult {
                name: s.name.clone(),
                status,
                output: s.output.clone().unwrap_or_default(),
                output_dropped: 0,
                started: UNIX_EPOCH + Duration::from_micros(micros(s.begin) as u64),
                duration: Duration::from_micros((micros(s.end) - micros(s.begin)) as u64),
            }
        })
        .collect();
    let last = scripts
        .iter()
        .rev()
        .find(|s| s.status.stops_event())
        .map(|s| s.name.clone());
    let overall = match status.summary {
        0 => Overall::Ok,
        code if code > 0 => Overall::Failed {
            script: last.unwrap(),
            code,
        },
        -110 => Overall::TimedOut {
            script: last.unwrap(),
        },
        errno => Overall::Error {
            script: last,
            message: nix::errno::Errno::from_raw(-errno).desc().into(),
            errno: -errno,
        },
    };
    EventResult {
        // Neither the reply nor the rendering looks at the event itself.
        event: Event::Monitor,
        scripts,
        overall,
        debug: None,
    }
}

#[test]
fn every_frame_round_trips() {
    let mut requests = 0;
    let mut replies = 0;
    for case in all_cases() {
        for f in load(&case) {
            let mut words = f.comment.split_whitespace();
            let direction = words.next().unwrap();
            let command = words.next().unwrap();
            match direction {
                "REQUEST" if case == "raw_status_null_event" => {
                    // Stock answers EINVAL; we refuse the frame (PROTOCOL.md §6).
                    assert_eq!(
                        Request::decode(&f.bytes),
                        Err(DecodeError::Invalid {
                            field: "status.event",
                            value: 0
                        }),
                        "{}",
                        f.origin
                    );
                }
                "REQUEST" => {
                    let request = Request::decode(&f.bytes)
                        .unwrap_or_else(|e| panic!("{}: does not decode: {e}", f.origin));
                    assert_eq!(command_name(request.command()), command, "{}", f.origin);
                    assert_same_bytes(&f.origin, "request", &f.bytes, &request.encode());
                    requests += 1;
                }
                "REPLY" => {
                    let reply = Reply::decode(&f.bytes)
                        .unwrap_or_else(|e| panic!("{}: does not decode: {e}", f.origin));
                    assert_eq!(command_name(reply.command()), command, "{}", f.origin);
                    assert_eq!(reply.header.version, 0, "{}", f.origin);
                    let result = match &reply.body {
                        ReplyBody::Run(r) | ReplyBody::Script(r) => *r,
                        ReplyBody::Status(Ok(_)) => 0,
                        ReplyBody::Status(Err(e)) => e.get(),
                    };
                    assert_eq!(
                        comment_field(&f.comment, "result"),
                        Some(result.to_string().as_str()),
                        "{}",
                        f.origin
                    );
                    assert_same_bytes(&f.origin, "reply", &f.bytes, &reply.encode());
                    replies += 1;
                }
                other => panic!("{}: unknown direction {other}", f.origin),
            }
        }
    }
    assert!(requests >= 30 && replies >= 30, "{requests} {replies}");
}

#[test]
fn replies_echo_the_reqid_and_the_tool_starts_at_0x7fffff38() {
    let reqid = |f: &Frame| u32::from_le_bytes(f.bytes[8..12].try_into().unwrap());
    let stock_output = fixture_dir().join("stock-output");
    for case in all_cases() {
        let frames = load(&case);
        let requests: Vec<u32> = frames
            .iter()
            .filter(|f| f.comment.starts_with("REQUEST"))
            .map(reqid)
            .collect();
        // Cases run through the stock tool (the others are raw requests).
        let by_tool = stock_output.join(format!("{case}.rc")).exists()
            || stock_output.join(format!("{case}.1.rc")).exists();
        if by_tool {
            assert!(requests.iter().all(|&r| r == 0x7fff_ff38), "{case}");
        }
        for f in frames.iter().filter(|f| f.comment.starts_with("REPLY")) {
            assert!(
                requests.contains(&reqid(f)),
                "{}: {:#x}",
                f.origin,
                reqid(f)
            );
        }
    }
    // A request's version is not echoed: the reply says 0.
    let frames = load("raw_status_version_7");
    assert_eq!(request_of(&frames).header.version, 7);
    assert_eq!(reply_of(&frames).header, request_of(&frames).header.reply());
}

#[test]
fn framer_cuts_a_pipelined_write() {
    let frames = load("raw_pipelined");
    let stream: Vec<u8> = frames
        .iter()
        .filter(|f| f.comment.starts_with("REQUEST"))
        .flat_map(|f| f.bytes.clone())
        .collect();
    let framer = Framer::for_requests();
    // Fed one byte at a time, the first frame appears exactly when complete.
    let first_len = frames[0].bytes.len();
    for end in 0..first_len {
        assert_eq!(framer.frame_len(&stream[..end]), Ok(None), "at {end}");
    }
    let mut rest = &stream[..];
    let mut events = Vec::new();
    while let Some(len) = framer.frame_len(rest).unwrap() {
        let request = Request::decode(&rest[..len]).unwrap();
        let RequestBody::Status(status) = request.body else {
            panic!("not a status request")
        };
        events.push(status.event);
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
    assert_eq!(events, ["monitor", "startup"]);
    // The stock daemon closed the connection on lengths 0 and 8.
    assert_eq!(
        framer.frame_len(&[8, 0, 0, 0]),
        Err(FrameError::TooShort(8))
    );
}

#[test]
fn status_replies_print_as_the_stock_tool_printed() {
    let cases = [
        "status_monitor",
        "scriptstatus",
        "status_takeip",
        "status_failing",
        "status_timeout",
        "status_signal",
        "status_empty",
        "status_all_flag",
        "status_never_run",
        "scriptstatus_startup",
        "status_queue_monitor",
    ];
    for case in cases {
        let frames = load(case);
        let RequestBody::Status(request) = request_of(&frames).body else {
            panic!("{case}: not a status request")
        };
        let ReplyBody::Status(answer) = reply_of(&frames).body else {
            panic!("{case}: not a status reply")
        };
        let kind = request.event_kind().unwrap();
        let result = answer.as_ref().ok().map(result_from_status);
        if let Ok(status) = &answer {
            let ours = StatusReply::from_result(result.as_ref().unwrap());
            assert_eq!(&ours, status, "{case}: status reply from our result");
            for script in &status.scripts {
                if script.result >= 0 {
                    // The tool's own arithmetic, which status.rs must match.
                    let shown = format!("{:.3}", script.elapsed_secs());
                    let (text, _) = stock_output(case);
                    assert!(
                        text.contains(&format!("{shown} ")),
                        "{case}: {shown} not in {text:?}"
                    );
                }
            }
        } else {
            assert_eq!(answer, Err(NonZeroI32::new(22).unwrap()), "{case}");
            assert_eq!(ReplyBody::status_of(None), ReplyBody::Status(answer));
        }
        let rendered = render_event_status(&request.component, kind, result.as_ref(), ctime_utc);
        let (text, rc) = stock_output(case);
        assert_eq!(rendered.text, text, "{case}: text");
        // `ctdb scriptstatus` always exits 0.
        let expected_rc = if case.starts_with("scriptstatus") {
            0
        } else {
            through_ctdb_tool(rendered.exit_code)
        };
        assert_eq!(expected_rc, rc, "{case}: exit status");
    }
}

#[test]
fn run_results_match_the_stock_daemon() {
    // (case, what our runner would report for the same scripts)
    let ok = EventResult {
        event: Event::Monitor,
        scripts: vec![],
        overall: Overall::Ok,
        debug: None,
    };
    let failed = EventResult {
        overall: Overall::Failed {
            script: "02.fail".into(),
            code: 3,
        },
        ..ok.clone()
    };
    let timed_out = EventResult {
        overall: Overall::TimedOut {
            script: "02.slow".into(),
        },
        ..ok.clone()
    };
    let signalled = EventResult {
        overall: Overall::Error {
            script: Some("01.sig".into()),
            message: "Interrupted system call".into(),
            errno: 4,
        },
        ..ok.clone()
    };
    for (case, result) in [
        ("run_monitor", &ok),
        ("run_empty", &ok),
        ("run_failing", &failed),
        ("run_all_flag", &failed),
        ("run_timeout", &timed_out),
        ("run_timeout_zero", &timed_out),
        ("run_signal", &signalled),
    ] {
        let ReplyBody::Run(stock) = reply_of(&load(case)).body else {
            panic!("{case}: not a run reply")
        };
        assert_eq!(run_result(result), stock, "{case}");
    }
    // Cancelled runs (the caller answers ECANCELED) and an unknown component.
    let cancelled = load("cancel_monitor");
    assert!(cancelled
        .iter()
        .any(|f| f.comment.starts_with("REPLY RUN") && f.comment.contains("result=125")));
    let ReplyBody::Run(stock) = reply_of(&load("run_unknown_component")).body else {
        panic!()
    };
    assert_eq!(stock, libc::ENOENT);
}

#[test]
fn stock_run_requests_are_our_events() {
    let expect = [
        ("run_monitor", Event::Monitor, 10),
        (
            "run_takeip",
            Event::TakeIp {
                iface: "eth1".into(),
                ip: "10.0.0.31".parse().unwrap(),
                maskbits: 24,
            },
            10,
        ),
        ("run_timeout_zero", Event::Monitor, 0),
    ];
    for (case, event, timeout) in expect {
        let frames = load(case);
        let request = request_of(&frames);
        let RequestBody::Run(run) = &request.body else {
            panic!("{case}: not a run request")
        };
        assert_eq!(run.component, LEGACY);
        assert_eq!(run.event().as_ref(), Ok(&event), "{case}");
        assert_eq!(run.time_limit(), Duration::from_secs(timeout));
        // And the other way: our request for that event is the stock tool's bytes.
        let ours = Request {
            header: request.header,
            body: RequestBody::Run(RunRequest {
                timeout: timeout as u32,
                ..RunRequest::from(&event)
            }),
        };
        assert_same_bytes(case, "our run request", &frames[0].bytes, &ours.encode());
    }
    let RequestBody::Run(bogus) = request_of(&load("run_unknown_event")).body else {
        panic!()
    };
    assert!(matches!(bogus.event(), Err(BadEvent::Unknown(_))));
    let RequestBody::Run(all) = request_of(&load("run_all_flag")).body else {
        panic!()
    };
    assert_eq!((all.component.as_str(), all.flags), ("failing", RUN_ALL));
}

#[test]
fn script_replies_match_our_error_mapping() {
    use ctdbd::events::protocol::script_error_result;
    use ctdbd::events::{ScriptError, ScriptName};
    let missing = ScriptError::NotFound {
        name: ScriptName::parse("99.missing").unwrap(),
    };
    let invalid = ScriptError::InvalidName {
        name: "README".into(),
    };
    for (case, ours) in [
        ("raw_script_disable_local", 0),
        ("raw_script_enable_local", 0),
        ("raw_script_enable_missing", script_error_result(&missing)),
        ("raw_script_invalid_name", script_error_result(&invalid)),
        ("raw_script_unknown_component", libc::ENOENT),
        // The stock SCRIPT command only changes execute bits; a symlink is refused.
        ("raw_script_enable_symlink", libc::EINVAL),
    ] {
        let ReplyBody::Script(stock) = reply_of(&load(case)).body else {
            panic!("{case}: not a script reply")
        };
        assert_eq!(ours, stock, "{case}");
    }
}

// ---- properties --------------------------------------------------------------------

/// Text as C strings carry it: no NUL.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

fn header() -> impl Strategy<Value = Header> {
    (any::<u32>(), any::<u32>()).prop_map(|(version, reqid)| Header { version, reqid })
}

fn request_body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        (
            text(),
            text(),
            prop::option::of(text()),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(component, event, args, timeout, flags)| {
                RequestBody::Run(RunRequest {
                    component,
                    event,
                    args,
                    timeout,
                    flags,
                })
            }),
        (text(), text())
            .prop_map(|(component, event)| RequestBody::Status(StatusRequest { component, event })),
        (text(), text(), any::<bool>()).prop_map(|(component, script, enable)| {
            RequestBody::Script(ScriptRequest {
                component,
                script,
                action: if enable {
                    ScriptAction::Enable
                } else {
                    ScriptAction::Disable
                },
            })
        }),
    ]
}

fn timeval() -> impl Strategy<Value = Timeval> {
    (any::<i64>(), any::<i64>()).prop_map(|(sec, usec)| Timeval { sec, usec })
}

fn event_script() -> impl Strategy<Value = EventScript> {
    (
        text(),
        timeval(),
        timeval(),
        any::<i32>(),
        prop::option::of(text()),
    )
        .prop_map(|(name, begin, end, result, output)| EventScript {
            name,
            begin,
            end,
            result,
            output,
        })
}

fn reply_body() -> impl Strategy<Value = ReplyBody> {
    prop_oneof![
        any::<i32>().prop_map(ReplyBody::Run),
        any::<i32>().prop_map(ReplyBody::Script),
        any::<NonZeroI32>().prop_map(|e| ReplyBody::Status(Err(e))),
        (any::<i32>(), prop::collection::vec(event_script(), 0..6))
            .prop_map(|(summary, scripts)| ReplyBody::Status(Ok(StatusReply { summary, scripts }))),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(header in header(), body in request_body()) {
        let request = Request { header, body };
        let bytes = request.encode();
        prop_assert_eq!(Framer::for_requests().frame_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(Request::decode(&bytes), Ok(request));
    }

    #[test]
    fn replies_round_trip(header in header(), body in reply_body()) {
        let reply = Reply { header, body };
        let bytes = reply.encode();
        prop_assert_eq!(Framer::for_replies().frame_len(&bytes), Ok(Some(bytes.len())));
        prop_assert_eq!(Reply::decode(&bytes), Ok(reply));
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..300),
                                   command in 0u32..5, fix_length in any::<bool>()) {
        if bytes.len() >= HEADER_SIZE + 4 {
            bytes[12..16].copy_from_slice(&command.to_le_bytes());
        }
        if fix_length && bytes.len() >= 4 {
            let len = bytes.len() as u32;
            bytes[0..4].copy_from_slice(&len.to_le_bytes());
        }
        let _ = Request::decode(&bytes);
        let _ = Reply::decode(&bytes);
        let _ = Framer::for_requests().frame_len(&bytes);
        let _ = Framer::for_replies().frame_len(&bytes);
    }

    #[test]
    fn truncated_frames_are_errors(header in header(), body in reply_body(), cut in 1usize..64) {
        let bytes = Reply { header, body }.encode();
        let mut short = bytes[..bytes.len().saturating_sub(cut)].to_vec();
        if short.len() >= 4 {
            // A consistent length, so that the body decoder meets the shortfall.
            let len = short.len() as u32;
            short[0..4].copy_from_slice(&len.to_le_bytes());
        }
        prop_assert!(Reply::decode(&short).is_err());
    }
}

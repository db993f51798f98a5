//! The last result of each event, and the text `ctdb event status legacy EVENT`,
//! `ctdb scriptstatus` and `ctdb event script list legacy` print for it.
//!
//! Pure: the store is a map, and rendering takes the `ctime()` formatter as a
//! parameter, because local time needs the C library's time-zone rules (the `ctdb`
//! tool passes its own `timefmt::ctime`; tests pass [`ctime_utc`]).
//!
//! Formats, checked byte for byte against the stock 4.17 `ctdb-event` tool run on a
//! scratch `ctdb-eventd` (and matching the examples in `ctdb(1)`):
//!
//! ```text
//! 01.ok                OK         0.002 Sat Nov 21 08:09:01 2026
//! 02.fail              ERROR      0.004 Sat Nov 21 08:09:01 2026
//!   OUTPUT: bad thing
//! second line
//!
//! 00.noexec            DISABLED  
//! 05.slow              TIMEDOUT   Sat Nov 21 08:09:11 2026
//!   OUTPUT: partial
//!
//! 04.env               CANNOT RUN (Interrupted system call)
//!   OUTPUT: no newline
//! Event monitor has never run in legacy
//! ```
//!
//! Name padded to 20 and status to 10 (C's `%-20s %-10s`), duration in seconds with
//! three decimals, then `ctime()` of the start (which brings the newline). Failed,
//! timed-out and cannot-run scripts are followed by `  OUTPUT: ` and their output
//! exactly as captured, then a newline: multi-line output is not indented, and output
//! that ends in a newline leaves an empty line. `DISABLED` (our `Disabled` and
//! `NotExecutable`) has no time and keeps the padding spaces. The exit status is 0, the
//! failed script's exit code, 110 (`ETIMEDOUT`), the errno, or 22 (`EINVAL`) for an
//! event that never ran.
//!
//! `ctdb scriptstatus [EVENT]` in 4.17 runs the event tool's `status legacy EVENT`
//! (EVENT defaults to `monitor`; inferred from `ctdb(1)`'s identical examples and
//! the strings in the stock binary), so it prints the same text.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::event::EventKind;
use super::protocol::StatusReply;
use super::runner::{EventResult, ScriptStatus};
use super::scripts::{ScriptEntry, ScriptSource};
use crate::histogram::Histogram;

/// `EINVAL`: what `ctdb event status` exits with for an event that never ran.
const EINVAL: i32 = 22;

/// Bounds of [`ScriptCounters::duration`], ms: most scripts take milliseconds; the
/// whole event is allowed `EventScriptTimeout` (30 s by default).
pub const SCRIPT_DURATION_BOUNDS_MS: &[u64] =
    &[10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

/// The last result of every event that has run, and counts of every script's runs.
#[derive(Debug, Clone, Default)]
pub struct EventStatusStore {
    last: BTreeMap<EventKind, EventResult>,
    scripts: BTreeMap<(EventKind, String), ScriptCounters>,
}

/// How often one script ran for one event, how each run ended, and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCounters {
    /// Runs by outcome: `ok`, `error` (non-zero exit), `timedout`, `cannot_run`.
    pub results: BTreeMap<&'static str, u64>,
    /// Durations of the runs.
    pub duration: Histogram,
}

impl EventStatusStore {
    /// An empty store: no event has run.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `result` as the last one of its event, replacing the previous one, and
    /// counts the run of every script that ran (not the disabled ones).
    pub fn record(&mut self, result: EventResult) {
        let kind = result.event.kind();
        for script in &result.scripts {
            let outcome = match script.status {
                ScriptStatus::Ok => "ok",
                ScriptStatus::Failed(_) => "error",
                ScriptStatus::TimedOut => "timedout",
                ScriptStatus::Error(_) => "cannot_run",
                ScriptStatus::Disabled | ScriptStatus::NotExecutable => continue,
            };
            let counters = self
                .scripts
                .entry((kind, script.name.clone()))
                .or_insert_with(|| ScriptCounters {
                    results: BTreeMap::new(),
                    duration: Histogram::new(SCRIPT_DURATION_BOUNDS_MS),
                });
            *counters.results.entry(outcome).or_default() += 1;
            counters
                .duration
                .observe(u64::try_from(script.duration.as_millis()).unwrap_or(u64::MAX));
        }
        self.last.insert(kind, result);
    }

    /// Every (event, script) that has run, with its counts.
    pub fn script_counters(&self) -> impl Iterator<Item = (EventKind, &str, &ScriptCounters)> {
        self.scripts
            .iter()
            .map(|((kind, name), counters)| (*kind, name.as_str(), counters))
    }

    /// The last result of every event that has run.
    pub fn last_results(&self) -> impl Iterator<Item = &EventResult> {
        self.last.values()
    }

    /// The last result of `kind`, if it ever ran.
    pub fn last(&self, kind: EventKind) -> Option<&EventResult> {
        self.last.get(&kind)
    }
}

/// Text and exit status of one status command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusOutput {
    /// What goes to stdout.
    pub text: String,
    /// The command's exit status.
    pub exit_code: i32,
}

/// `ctdb event status COMPONENT EVENT` for `last`, the last result of `event` (or
/// `None` if it never ran). `ctime` formats seconds since the epoch as C's `ctime()`
/// does, newline included.
pub fn render_event_status(
    component: &str,
    event: EventKind,
    last: Option<&EventResult>,
    ctime: impl Fn(i64) -> String,
) -> StatusOutput {
    let Some(result) = last else {
        return StatusOutput {
            text: format!("Event {event} has never run in {component}\n"),
            exit_code: EINVAL,
        };
    };
    let mut text = String::new();
    for script in &result.scripts {
        let started = unix_seconds(script.started);
        let line = match &script.status {
            ScriptStatus::Ok => timed_line(&script.name, "OK", script.duration, &ctime(started)),
            ScriptStatus::Failed(_) => {
                timed_line(&script.name, "ERROR", script.duration, &ctime(started))
            }
            ScriptStatus::TimedOut => {
                format!(
                    "{} {} {}",
                    pad(&script.name, 20),
                    pad("TIMEDOUT", 10),
                    ctime(started)
                )
            }
            ScriptStatus::Disabled | ScriptStatus::NotExecutable => {
                format!("{} {}\n", pad(&script.name, 20), pad("DISABLED", 10))
            }
            ScriptStatus::Error(message) => {
                format!(
                    "{} {} ({message})\n",
                    pad(&script.name, 20),
                    pad("CANNOT RUN", 10)
                )
            }
        };
        text.push_str(&line);
        if script.status.stops_event() {
            // C prints the output with %s, which stops at a NUL byte.
            let output = script.output.split('\0').next().unwrap_or_default();
            text.push_str(&format!("  OUTPUT: {output}\n"));
        }
    }
    StatusOutput {
        text,
        exit_code: result.overall.exit_code(),
    }
}

/// The text of a successful STATUS reply as the stock 4.17 tool prints it (`ctdb
/// event status C E`, `ctdb scriptstatus`), straight from the wire data, so that
/// any reply (ours or the stock daemon's) prints the same: one line per script,
/// classified by [`status_label`], the run time from [`EventScript::elapsed_secs`]
/// (the stock arithmetic), `ctime` of the start in whatever zone `ctime` uses, and
/// `  OUTPUT: ` with the output (nothing for NULL) for every result but 0 and
/// `-ENOEXEC`.
///
/// [`EventScript::elapsed_secs`]: super::protocol::EventScript::elapsed_secs
pub fn render_status_reply(reply: &StatusReply, ctime: impl Fn(i64) -> String) -> String {
    let mut text = String::new();
    for script in &reply.scripts {
        let label = status_label(script.result);
        let name = pad(&script.name, 20);
        let line = match script.result {
            r if r >= 0 => format!(
                "{name} {} {:.3} {}",
                pad(label, 10),
                script.elapsed_secs(),
                ctime(script.begin.sec)
            ),
            r if r == -libc::ETIMEDOUT => {
                format!("{name} {} {}", pad(label, 10), ctime(script.begin.sec))
            }
            r if r == -libc::ENOEXEC => format!("{name} {}\n", pad(label, 10)),
            r => format!("{name} {label} ({})\n", strerror(r.wrapping_neg())),
        };
        text.push_str(&line);
        if script.result != 0 && script.result != -libc::ENOEXEC {
            text.push_str("  OUTPUT: ");
            text.push_str(script.output.as_deref().unwrap_or_default());
            text.push('\n');
        }
    }
    text
}

/// The word the stock tool shows for a script's result in a status reply: `OK` (0),
/// `ERROR` (an exit status), `TIMEDOUT` (`-ETIMEDOUT`), `DISABLED` (`-ENOEXEC`),
/// `CANNOT RUN` (any other negated errno).
pub fn status_label(result: i32) -> &'static str {
    match result {
        0 => "OK",
        r if r > 0 => "ERROR",
        r if r == -libc::ETIMEDOUT => "TIMEDOUT",
        r if r == -libc::ENOEXEC => "DISABLED",
        _ => "CANNOT RUN",
    }
}

/// The C library's text for `errno` (`strerror`), `Unknown error N` for numbers it
/// does not know.
pub fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// `ctdb scriptstatus [EVENT]`: the same as `ctdb event status legacy EVENT`, with
/// EVENT `monitor` when not given.
pub fn render_scriptstatus(
    event: Option<EventKind>,
    store: &EventStatusStore,
    ctime: impl Fn(i64) -> String,
) -> StatusOutput {
    let event = event.unwrap_or(EventKind::Monitor);
    render_event_status("legacy", event, store.last(event), ctime)
}

/// `ctdb event script list legacy`: `* NAME` when enabled, `  NAME` when not;
/// provided scripts first, then a blank line and the local ones (the blank line only
/// when both kinds are present).
pub fn render_script_list(entries: &[ScriptEntry]) -> String {
    let mut text = String::new();
    let provided = entries
        .iter()
        .filter(|e| e.source == ScriptSource::Provided);
    let local = entries.iter().filter(|e| e.source == ScriptSource::Local);
    let line = |e: &ScriptEntry| format!("{} {}\n", if e.enabled { '*' } else { ' ' }, e.name);
    for entry in provided.clone() {
        text.push_str(&line(entry));
    }
    if provided.count() > 0 && local.clone().count() > 0 {
        text.push('\n');
    }
    for entry in local {
        text.push_str(&line(entry));
    }
    text
}

/// C's `ctime()` of `secs` in UTC: `Www Mmm dd hh:mm:ss yyyy\n`, day of month
/// space-padded.
pub fn ctime_utc(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}\n",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        year
    )
}

fn timed_line(name: &str, status: &str, duration: Duration, ctime: &str) -> String {
    // CTDB keeps times as timevals: microseconds, then "%.3lf".
    let seconds = duration.as_micros() as f64 / 1e6;
    format!("{} {} {seconds:.3} {ctime}", pad(name, 20), pad(status, 10))
}

/// Left-justifies `text` in `width` bytes, as C's `%-Ns` does (never truncates).
fn pad(text: &str, width: usize) -> String {
    let mut padded = text.to_owned();
    while padded.len() < width {
        padded.push(' ');
    }
    padded
}

fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let secs = before.duration().as_secs_f64().ceil();
            -(secs as i64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::event::Event;
    use crate::events::runner::{Overall, ScriptResult};
    use crate::events::scripts::ScriptName;

    /// Sat Nov 21 08:09:01 2026 UTC.
    const T0: i64 = 1_795_248_541;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    }

    fn script(
        name: &str,
        status: ScriptStatus,
        output: &str,
        start: i64,
        micros: u64,
    ) -> ScriptResult {
        ScriptResult {
            name: name.into(),
            status,
            output: output.into(),
            output_dropped: 0,
            started: at(start),
            duration: Duration::from_micros(micros),
        }
    }

    #[test]
    fn store_counts_every_script_that_ran() {
        let mut store = EventStatusStore::new();
        for (status, micros) in [(ScriptStatus::Ok, 2_400), (ScriptStatus::Failed(3), 60_000)] {
            store.record(EventResult {
                event: Event::Monitor,
                scripts: vec![
                    script("00.noexec", ScriptStatus::Disabled, "", T0, 0),
                    script("01.check", status, "", T0, micros),
                ],
                overall: Overall::Ok,
                debug: None,
            });
        }
        let counted: Vec<_> = store.script_counters().collect();
        assert_eq!(counted.len(), 1, "disabled scripts did not run");
        let (kind, name, counters) = counted[0];
        assert_eq!((kind, name), (EventKind::Monitor, "01.check"));
        assert_eq!(
            counters
                .results
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect::<Vec<_>>(),
            [("error", 1), ("ok", 1)]
        );
        assert_eq!(
            (counters.duration.count(), counters.duration.sum_ms()),
            (2, 62)
        );
    }

    #[test]
    fn ctime_matches_c() {
        assert_eq!(ctime_utc(0), "Thu Jan  1 00:00:00 1970\n");
        assert_eq!(ctime_utc(T0), "Sat Nov 21 08:09:01 2026\n");
        // The example in ctdb(1): Sat Dec 17 19:39:11 2016 (UTC here).
        assert_eq!(ctime_utc(1_482_003_551), "Sat Dec 17 19:39:11 2016\n");
        assert_eq!(ctime_utc(951_782_400), "Tue Feb 29 00:00:00 2000\n");
        assert_eq!(ctime_utc(-1), "Wed Dec 31 23:59:59 1969\n");
    }

    #[test]
    fn failed_event_as_the_stock_tool_prints_it() {
        // Captured from the stock ctdb-event / ctdb-eventd 4.17 (see module doc).
        let result = EventResult {
            event: Event::Monitor,
            scripts: vec![
                script("00.noexec", ScriptStatus::Disabled, "", T0, 0),
                script("01.ok", ScriptStatus::Ok, "hello\n", T0, 2_400),
                script(
                    "02.fail",
                    ScriptStatus::Failed(3),
                    "bad thing\nsecond line\n",
                    T0,
                    4_000,
                ),
            ],
            overall: Overall::Failed {
                script: "02.fail".into(),
                code: 3,
            },
            debug: None,
        };
        let out = render_event_status("legacy", EventKind::Monitor, Some(&result), ctime_utc);
        assert_eq!(
            out.text,
            "00.noexec            DISABLED  \n\
             01.ok                OK         0.002 Sat Nov 21 08:09:01 2026\n\
             02.fail              ERROR      0.004 Sat Nov 21 08:09:01 2026\n\
             \x20 OUTPUT: bad thing\n\
             second line\n\
             \n"
        );
        assert_eq!(out.exit_code, 3);
    }

    #[test]
    fn timed_out_and_cannot_run() {
        let timed_out = EventResult {
            event: Event::Monitor,
            scripts: vec![
                script("04.env", ScriptStatus::Ok, "", T0 + 8, 2_012_000),
                script(
                    "05.slow",
                    ScriptStatus::TimedOut,
                    "partial\n",
                    T0 + 10,
                    988_000,
                ),
            ],
            overall: Overall::TimedOut {
                script: "05.slow".into(),
            },
            debug: None,
        };
        let out = render_event_status("legacy", EventKind::Monitor, Some(&timed_out), ctime_utc);
        assert_eq!(
            out.text,
            "04.env               OK         2.012 Sat Nov 21 08:09:09 2026\n\
             05.slow              TIMEDOUT   Sat Nov 21 08:09:11 2026\n\
             \x20 OUTPUT: partial\n\
             \n"
        );
        assert_eq!(out.exit_code, 110);

        let signalled = EventResult {
            event: Event::Startup,
            scripts: vec![
                script("02.linked", ScriptStatus::NotExecutable, "", T0, 0),
                script(
                    "04.env",
                    ScriptStatus::Error("Interrupted system call".into()),
                    "no newline",
                    T0,
                    3_000,
                ),
            ],
            overall: Overall::Error {
                script: Some("04.env".into()),
                message: "Interrupted system call".into(),
                errno: 4,
            },
            debug: None,
        };
        let out = render_event_status("legacy", EventKind::Startup, Some(&signalled), ctime_utc);
        assert_eq!(
            out.text,
            "02.linked            DISABLED  \n\
             04.env               CANNOT RUN (Interrupted system call)\n\
             \x20 OUTPUT: no newline\n"
        );
        assert_eq!(out.exit_code, 4);
    }

    #[test]
    fn never_run_and_scriptstatus_default() {
        let mut store = EventStatusStore::new();
        let out = render_scriptstatus(None, &store, ctime_utc);
        assert_eq!(
            out,
            StatusOutput {
                text: "Event monitor has never run in legacy\n".into(),
                exit_code: 22
            }
        );
        let long_name = "13.per_ip_routing_extended";
        store.record(EventResult {
            event: Event::Monitor,
            scripts: vec![script(long_name, ScriptStatus::Ok, "", T0, 7_499)],
            overall: Overall::Ok,
            debug: None,
        });
        let out = render_scriptstatus(None, &store, ctime_utc);
        assert_eq!(
            out.text,
            "13.per_ip_routing_extended OK         0.007 Sat Nov 21 08:09:01 2026\n"
        );
        assert_eq!(out.exit_code, 0);
        assert_eq!(
            render_scriptstatus(Some(EventKind::Monitor), &store, ctime_utc),
            render_event_status(
                "legacy",
                EventKind::Monitor,
                store.last(EventKind::Monitor),
                ctime_utc
            )
        );
        assert!(store.last(EventKind::TakeIp).is_none());
    }

    #[test]
    fn status_reply_as_the_stock_tool_prints_it() {
        use crate::events::protocol::EventScript;
        use crate::protocol::control::Timeval;
        let at = |sec, usec| Timeval { sec, usec };
        let script = |name: &str, begin, end, result, output: Option<&str>| EventScript {
            name: name.into(),
            begin,
            end,
            result,
            output: output.map(Into::into),
        };
        let reply = StatusReply {
            summary: -libc::ETIMEDOUT,
            scripts: vec![
                // 3500 µs: the stock arithmetic prints 0.003 (µs / 1e6 would give 0.004).
                script("01.ok", at(T0, 1_000), at(T0, 4_500), 0, None),
                script("02.off", at(T0, 5_000), at(T0, 5_001), -libc::ENOEXEC, None),
                script(
                    "03.fail",
                    at(T0, 900_000),
                    at(T0 + 1, 100_000),
                    3,
                    Some("bad\nthing\n"),
                ),
                script(
                    "04.gone",
                    at(T0 + 1, 0),
                    at(T0 + 1, 10),
                    -libc::ENOENT,
                    None,
                ),
                script("05.odd", at(T0 + 1, 0), at(T0 + 1, 10), -1000, Some("x")),
                script(
                    "06.slow",
                    at(T0 + 2, 0),
                    at(T0 + 9, 0),
                    -libc::ETIMEDOUT,
                    Some("partial"),
                ),
            ],
        };
        assert_eq!(
            render_status_reply(&reply, ctime_utc),
            "01.ok                OK         0.003 Sat Nov 21 08:09:01 2026\n\
             02.off               DISABLED  \n\
             03.fail              ERROR      0.200 Sat Nov 21 08:09:01 2026\n\
             \x20 OUTPUT: bad\n\
             thing\n\
             \n\
             04.gone              CANNOT RUN (No such file or directory)\n\
             \x20 OUTPUT: \n\
             05.odd               CANNOT RUN (Unknown error 1000)\n\
             \x20 OUTPUT: x\n\
             06.slow              TIMEDOUT   Sat Nov 21 08:09:03 2026\n\
             \x20 OUTPUT: partial\n"
        );
        assert_eq!(strerror(libc::EINTR), "Interrupted system call");
        assert_eq!(status_label(-libc::EINTR), "CANNOT RUN");
    }

    #[test]
    fn script_list_as_the_stock_tool_prints_it() {
        let entry = |name: &str, source, enabled| ScriptEntry {
            name: ScriptName::parse(name).unwrap(),
            source,
            enabled,
        };
        let entries = [
            entry("00.ctdb", ScriptSource::Provided, true),
            entry("11.natgw", ScriptSource::Provided, false),
            entry("02.local", ScriptSource::Local, true),
        ];
        assert_eq!(
            render_script_list(&entries),
            "* 00.ctdb\n  11.natgw\n\n* 02.local\n"
        );
        assert_eq!(render_script_list(&entries[..2]), "* 00.ctdb\n  11.natgw\n");
        // Only local scripts (a cut-down install): no blank line.
        assert_eq!(render_script_list(&entries[2..]), "* 02.local\n");
    }
}

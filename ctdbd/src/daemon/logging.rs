//! Logging per `[logging]` of ctdb.conf: a file, syslog, or stderr with
//! `--interactive`; the level changes at run time with `ctdb setdebug`.
//!
//! CTDB's five levels map onto tracing's: ERROR→error, WARNING→warn, NOTICE→info,
//! INFO→debug, DEBUG→trace, so that our `info!` state transitions show at CTDB's
//! default level NOTICE.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error (`--interactive`).
    Stderr,
    /// Appended to a file.
    File(std::path::PathBuf),
    /// The local syslog socket `/dev/log`.
    Syslog,
}

/// Changes the active level after start-up.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<LevelFilter, tracing_subscriber::Registry>,
}

impl LogControl {
    /// Applies CTDB numeric debug level `level` (0 ERROR … 10 DEBUG).
    pub fn set_debug_level(&self, level: u32) {
        let _ = self.handle.modify(|f| *f = level_filter(level));
    }
}

/// tracing's filter for a CTDB numeric level (0 ERROR, 1–2 WARNING, 3–4 NOTICE,
/// 5–9 INFO, 10+ DEBUG; §6.13).
pub fn level_filter(level: u32) -> LevelFilter {
    match level {
        0 => LevelFilter::ERROR,
        1..=2 => LevelFilter::WARN,
        3..=4 => LevelFilter::INFO,
        5..=9 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Installs the global subscriber. Fails only if the log file cannot be opened.
pub fn init(target: &LogTarget, debug_level: u32) -> io::Result<LogControl> {
    let (filter, handle) = reload::Layer::new(level_filter(debug_level));
    let registry = tracing_subscriber::registry().with(filter);
    match target {
        LogTarget::Stderr => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(io::stderr().is_terminal())
                    .with_writer(io::stderr),
            )
            .init(),
        LogTarget::File(path) => {
            let file = open_log_file(path)?;
            registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_ansi(false)
                        .with_writer(Mutex::new(file)),
                )
                .init()
        }
        LogTarget::Syslog => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .without_time()
                    .with_level(false)
                    .with_writer(SyslogMakeWriter::new()),
            )
            .init(),
    }
    Ok(LogControl { handle })
}

fn open_log_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Sends each formatted event as one RFC 3164 datagram to `/dev/log`.
struct SyslogMakeWriter {
    socket: Option<Arc<UnixDatagram>>,
    tag: String,
}

impl SyslogMakeWriter {
    fn new() -> Self {
        let socket = UnixDatagram::unbound()
            .and_then(|s| s.connect("/dev/log").map(|()| s))
            .ok()
            .map(Arc::new);
        Self {
            socket,
            tag: format!("ctdbd[{}]", std::process::id()),
        }
    }
}

/// Buffers one event; sends it when the formatter drops the writer.
struct SyslogLine {
    socket: Option<Arc<UnixDatagram>>,
    priority: u8,
    tag: String,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            let text = String::from_utf8_lossy(&self.buf);
            // facility daemon (3) << 3 | severity
            let msg = format!("<{}>{}: {}", 24 + self.priority, self.tag, text.trim_end());
            // Logging must never take the daemon down: a full syslog socket loses
            // the line.
            let _ = socket.send(msg.as_bytes());
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogMakeWriter {
    type Writer = SyslogLine;

    fn make_writer(&'a self) -> SyslogLine {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let severity = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 5,
            Level::DEBUG => 6,
            Level::TRACE => 7,
        };
        self.line(severity)
    }
}

impl SyslogMakeWriter {
    fn line(&self, priority: u8) -> SyslogLine {
        SyslogLine {
            socket: self.socket.clone(),
            priority,
            tag: self.tag.clone(),
            buf: Vec::new(),
        }
    }
}

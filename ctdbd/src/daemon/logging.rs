//! Logging per `[logging]` of ctdb.conf: a file, syslog, or stderr with
//! `--interactive`; the level changes at run time with `ctdb setdebug`.
//!
//! CTDB's five levels map onto tracing's: ERROR→error, WARNING→warn, NOTICE→info,
//! INFO→debug, DEBUG→trace, so that our `info!` state transitions show at CTDB's
//! default level NOTICE.
//!
//! Logging never waits for its destination. A task that logs only formats the line
//! and offers it to a bounded queue; one writer thread per process takes lines off
//! the queue and writes them. A stalled journald (a full `/dev/log`), a slow disk or
//! a stopped reader of stderr then stalls only the writer thread. A line that finds
//! the queue full is dropped and counted ([`LogControl::lost_lines`]); once the
//! destination takes lines again the writer says how many were lost.
//!
//! ```text
//!   core / tasks ──format──> try_send ──> [ queue, QUEUE_LINES ] ──> writer thread ──> file | /dev/log | stderr
//!                              │ full
//!                              └──> lost += 1  (reported by the writer when it catches up)
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
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
    File(PathBuf),
    /// The local syslog socket (`/dev/log`, see [`crate::paths::Paths::syslog_socket`]).
    Syslog(PathBuf),
}

/// Lines the queue holds before new ones are dropped: enough for a burst of debug
/// output during a recovery, small enough (a few hundred KiB) not to matter.
pub const QUEUE_LINES: usize = 2048;

/// How long [`LogGuard`] waits at exit for queued lines to be written: a stalled
/// destination must not keep the daemon from exiting.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Changes the active level after start-up, and tells how many lines were lost.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<LevelFilter, tracing_subscriber::Registry>,
    lost: Arc<AtomicU64>,
}

impl LogControl {
    /// Applies CTDB numeric debug level `level` (0 ERROR … 10 DEBUG).
    pub fn set_debug_level(&self, level: u32) {
        let _ = self.handle.modify(|f| *f = level_filter(level));
    }

    /// Lines dropped since start-up because the queue was full or the destination
    /// refused them.
    pub fn lost_lines(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
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

/// Installs the global subscriber. Fails only if the log file cannot be opened or
/// the writer thread cannot be started. Keep the [`LogGuard`] until the end of
/// `main`: dropping it writes out what is still queued.
pub fn init(target: &LogTarget, debug_level: u32) -> io::Result<(LogControl, LogGuard)> {
    let (filter, handle) = reload::Layer::new(level_filter(debug_level));
    let registry = tracing_subscriber::registry().with(filter);
    let (writer, guard) = QueueWriter::start(target, QUEUE_LINES)?;
    let lost = writer.lost.clone();
    match target {
        LogTarget::Stderr => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(io::stderr().is_terminal())
                    .with_writer(writer),
            )
            .init(),
        LogTarget::File(_) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer),
            )
            .init(),
        LogTarget::Syslog(_) => registry.with(syslog_layer(writer)).init(),
    }
    Ok((LogControl { handle, lost }, guard))
}

/// The format syslog wants: no time stamp and no level in the text (syslog adds
/// the time; the level is the datagram's priority).
fn syslog_layer<S>(writer: QueueWriter) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_writer(writer)
}

fn open_log_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// What the queue carries.
enum Message {
    /// One formatted event and its syslog severity.
    Line { severity: u8, text: Vec<u8> },
    /// Answer once everything queued before has been written.
    Flush(mpsc::Sender<()>),
}

/// The `MakeWriter` of every target: each event becomes one [`Message::Line`],
/// offered to the queue without waiting.
#[derive(Clone)]
struct QueueWriter {
    queue: SyncSender<Message>,
    lost: Arc<AtomicU64>,
}

impl QueueWriter {
    /// Opens the destination and starts the writer thread.
    fn start(target: &LogTarget, capacity: usize) -> io::Result<(Self, LogGuard)> {
        let sink = match target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(path) => Sink::File(open_log_file(path)?),
            LogTarget::Syslog(path) => Sink::Syslog(Syslog::new(path.clone())),
        };
        let (queue, lines) = mpsc::sync_channel(capacity);
        let lost = Arc::new(AtomicU64::new(0));
        let thread_lost = lost.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_lines(sink, &lines, &thread_lost))?;
        let guard = LogGuard {
            queue: queue.clone(),
        };
        Ok((Self { queue, lost }, guard))
    }

    fn line(&self, severity: u8) -> QueuedLine {
        QueuedLine {
            queue: self.queue.clone(),
            lost: self.lost.clone(),
            severity,
            text: Vec::new(),
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueuedLine;

    fn make_writer(&'a self) -> QueuedLine {
        self.line(6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> QueuedLine {
        self.line(severity(meta.level()))
    }
}

/// syslog severity of a tracing level (CTDB's mapping, see the module docs).
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 5,
        Level::DEBUG => 6,
        Level::TRACE => 7,
    }
}

/// Collects one event; queues it when the formatter drops the writer.
struct QueuedLine {
    queue: SyncSender<Message>,
    lost: Arc<AtomicU64>,
    severity: u8,
    text: Vec<u8>,
}

impl Write for QueuedLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let line = Message::Line {
            severity: self.severity,
            text: std::mem::take(&mut self.text),
        };
        match self.queue.try_send(line) {
            Ok(()) => {}
            // Full: the destination is behind. Disconnected: the writer thread is
            // gone (it never exits while a sender lives, but losing a line is the
            // right answer either way).
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Writes out what is queued when dropped, waiting at most `FLUSH_WAIT` (2 s).
pub struct LogGuard {
    queue: SyncSender<Message>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let (done, written) = mpsc::channel();
        let mut flush = Message::Flush(done);
        loop {
            match self.queue.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                    flush = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The writer thread: writes each queued line, and after a line that got through,
/// reports the lines lost since the last report.
fn write_lines(mut sink: Sink, lines: &Receiver<Message>, lost: &AtomicU64) {
    let mut reported = 0;
    for message in lines {
        match message {
            Message::Line { severity, text } => {
                if sink.write_line(severity, &text).is_err() {
                    lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let now = lost.load(Ordering::Relaxed);
                if now > reported {
                    let report = format!(
                        "{} log lines lost ({now} since start-up): the log destination was too slow or refused them",
                        now - reported
                    );
                    if sink.write_report(&report).is_ok() {
                        reported = now;
                    }
                }
            }
            Message::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// A log destination, used only by the writer thread (so it may block).
enum Sink {
    Stderr,
    File(File),
    Syslog(Syslog),
}

impl Sink {
    fn write_line(&mut self, severity: u8, text: &[u8]) -> io::Result<()> {
        match self {
            Self::Stderr => io::stderr().lock().write_all(text),
            Self::File(file) => file.write_all(text),
            Self::Syslog(syslog) => syslog.send(severity, text),
        }
    }

    /// Writes the writer's own line about lost lines, in the destination's format.
    fn write_report(&mut self, report: &str) -> io::Result<()> {
        match self {
            Self::Syslog(syslog) => syslog.send(severity(&Level::WARN), report.as_bytes()),
            Self::Stderr | Self::File(_) => {
                let mut time = String::new();
                let _ = SystemTime.format_time(&mut Writer::new(&mut time));
                let line = format!("{time}  WARN {}: {report}\n", module_path!());
                self.write_line(severity(&Level::WARN), line.as_bytes())
            }
        }
    }
}

/// Sends each line as one RFC 3164 datagram to the syslog socket.
struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    tag: String,
}

impl Syslog {
    fn new(path: PathBuf) -> Self {
        let mut syslog = Self {
            path,
            socket: None,
            tag: format!("ctdbd[{}]", std::process::id()),
        };
        // A syslog daemon that is not up yet is connected to at the first line.
        let _ = syslog.connect();
        syslog
    }

    fn connect(&mut self) -> io::Result<&UnixDatagram> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(&self.path)?;
        Ok(self.socket.insert(socket))
    }

    fn send(&mut self, severity: u8, text: &[u8]) -> io::Result<()> {
        let text = String::from_utf8_lossy(text);
        // facility daemon (3) << 3 | severity
        let datagram = format!("<{}>{}: {}", 24 + severity, self.tag, text.trim_end());
        let sent = match &self.socket {
            Some(socket) => socket.send(datagram.as_bytes()),
            None => Err(io::ErrorKind::NotConnected.into()),
        };
        match sent {
            Ok(_) => Ok(()),
            // The syslog daemon restarted (or was not up at start): connect again,
            // once per line.
            Err(_) => {
                self.socket = None;
                self.connect()?.send(datagram.as_bytes()).map(drop)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// A syslog socket whose reader never reads: the producer still logs every
    /// line without waiting, the lines that do not fit are counted as lost, and
    /// once the reader drains the socket the writer reports the loss.
    #[test]
    fn a_syslog_socket_that_never_reads_does_not_stall_the_logger() {
        let dir = std::env::temp_dir().join(format!("ctdbrs-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let reader = UnixDatagram::bind(&path).unwrap();

        let capacity = 64;
        let (writer, guard) =
            QueueWriter::start(&LogTarget::Syslog(path.clone()), capacity).unwrap();
        let lost = writer.lost.clone();
        let subscriber = tracing_subscriber::registry().with(syslog_layer(writer));
        // Many more lines than the socket's queue and ours hold together: with a
        // blocking send this loop would never finish.
        let lines = 20 * capacity;
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..lines {
                tracing::warn!(i, "line");
            }
        });
        let lost_after_producing = lost.load(Ordering::Relaxed);
        assert!(
            lost_after_producing > 0,
            "all {lines} lines fitted although nothing was read"
        );
        assert!(lost_after_producing < lines as u64, "no line was queued");

        // Now read: the first lines arrive intact, then the report of the loss.
        reader
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = reader.recv(&mut buf).expect("the first line never came");
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(first.starts_with("<28>ctdbd["), "{first}");
        assert!(first.contains("line i=0"), "{first}");
        // (An earlier report may have been written while the producer still ran.)
        let total = format!("({lost_after_producing} since start-up)");
        loop {
            let n = reader.recv(&mut buf).expect("the loss was never reported");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains("log lines lost") && text.contains(&total) {
                assert!(text.starts_with("<28>ctdbd["), "{text}");
                break;
            }
        }
        // The reader goes first, so that the guard's wait for the queue ends at once.
        drop(reader);
        drop(guard);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file target gets every line in order, and the guard writes out the queue.
    #[test]
    fn file_lines_are_written_by_the_time_the_guard_is_dropped() {
        let dir = std::env::temp_dir().join(format!("ctdbrs-logf-{}", std::process::id()));
        let path = dir.join("log.ctdb");
        let (writer, guard) = QueueWriter::start(&LogTarget::File(path.clone()), 16).unwrap();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            tracing::info!("second");
        });
        drop(guard);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("first"), "{text}");
        assert!(lines[1].ends_with("second"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The daemon's wiring: configuration → pnn → logging → pid file → tasks → shutdown.
//!
//! ```text
//!  signal task ─┐                         ┌─> connection task per client (transport::unix)
//!               ├─ CancellationToken ─────┤
//!  accept task ─┘                         └─> core task: owns core::Node; 1 s tick;
//!                                              carries out every Output in order
//! ```
//!
//! Shutdown is a protocol: SIGTERM, SIGINT or the SHUTDOWN control cancel the token;
//! every task reaches a safe point and returns; `run` waits for all of them, removes
//! the socket and the pid file, and returns.

pub mod logging;
pub mod settings;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::core::{ClientId, Input, Node, NodeConfig, Output, CTDB_PORT};
use crate::protocol::control::Timeval;
use crate::transport::unix::{self, CoreEvent};
use settings::Settings;

/// Command-line options of `ctdbd`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stay in the foreground and log to stderr.
    pub interactive: bool,
}

/// Runs the daemon until it is told to stop. Errors are start-up failures.
pub fn run(options: Options) -> anyhow::Result<()> {
    let settings = Settings::load(
        &crate::paths::Paths::from_process_env(),
        settings::legacy_file_from_env().as_deref(),
    )?;
    let (pnn, node_listener) = find_own_pnn(&settings.nodes, settings.node_address)?;

    if !options.interactive {
        // Fork into the background before any thread exists (tokio, logging).
        nix::unistd::daemon(false, false).context("daemonizing")?;
    }
    let target = if options.interactive {
        logging::LogTarget::Stderr
    } else {
        settings.log_target.clone()
    };
    let log = logging::init(&target, settings.debug_level)
        .with_context(|| format!("opening log target {target:?}"))?;
    let span = info_span!("ctdbd", pnn);
    let _entered = span.enter();
    for notice in &settings.notices {
        warn!("{notice}");
    }
    for problem in &settings.public_address_errors {
        error!("{problem}");
    }
    if settings.cluster_lock.is_none() {
        warn!("no [cluster] cluster lock configured: split brain is possible");
    }

    let pid_file = PidFile::create(&settings.paths.pid_file())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(serve(settings, pnn, log).instrument(span.clone()));
    drop(node_listener);
    drop(pid_file);
    info!("ctdbd stopped");
    result
}

/// Finds this node's pnn the way CTDB does (§2.3): the configured node address, or
/// else the first `nodes` address that can be bound on port 4379. The listener is kept
/// so that no second daemon can claim the same pnn.
fn find_own_pnn(
    nodes: &[Option<IpAddr>],
    node_address: Option<IpAddr>,
) -> anyhow::Result<(u32, TcpListener)> {
    if let Some(addr) = node_address {
        let pnn = nodes
            .iter()
            .position(|n| *n == Some(addr))
            .with_context(|| format!("[cluster] node address {addr} is not in the nodes file"))?;
        let listener = TcpListener::bind(SocketAddr::new(addr, CTDB_PORT))
            .with_context(|| format!("binding {addr} port {CTDB_PORT}"))?;
        return Ok((pnn as u32, listener));
    }
    for (pnn, addr) in nodes.iter().enumerate() {
        let Some(addr) = addr else { continue };
        if let Ok(listener) = TcpListener::bind(SocketAddr::new(*addr, CTDB_PORT)) {
            return Ok((pnn as u32, listener));
        }
    }
    bail!(
        "no address of the nodes file can be bound on port {CTDB_PORT}: this host is not \
         one of the nodes, or another ctdbd already runs here"
    )
}

fn now() -> Timeval {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timeval {
        sec: d.as_secs() as i64,
        usec: i64::from(d.subsec_micros()),
    }
}

async fn serve(settings: Settings, pnn: u32, log: logging::LogControl) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some(dir) = settings.paths.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = unix::bind(&settings.paths.socket)?;
    let socket = SocketFile(settings.paths.socket.clone());

    let node = Node::new(NodeConfig {
        pnn,
        nodes: settings.nodes.clone(),
        public_addresses: settings.public_addresses.clone(),
        tunables: settings.tunables.clone(),
        debug_level: settings.debug_level,
        leader_capability: settings.leader_capability,
        lmaster_capability: settings.lmaster_capability,
        cluster_lock: settings.cluster_lock.clone(),
        daemon_pid: std::process::id() as i32,
        generation: random_generation(),
        start_time: now(),
    });
    // Bounded: connection tasks wait when the core is busy, which slows clients down
    // instead of growing memory.
    let (core_tx, core_rx) = mpsc::channel(1024);
    tracker.spawn(run_core(node, core_rx, cancel.clone(), log).in_current_span());
    tracker
        .spawn(unix::serve(listener, core_tx, cancel.clone(), tracker.clone()).in_current_span());
    tracker.spawn(wait_for_signal(cancel.clone()).in_current_span());
    info!(socket = %settings.paths.socket.display(), "ctdbd ready");
    cancel.cancelled().await;
    tracker.close();
    tracker.wait().await;
    drop(socket);
    Ok(())
}

/// A generation is any u32 but INVALID_GENERATION (1); CTDB picks it at random so a
/// restarted cluster does not reuse an old one.
fn random_generation() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom_fill(&mut bytes);
    match u32::from_le_bytes(bytes) {
        0 | 1 => 2,
        g => g,
    }
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

async fn wait_for_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = term.recv() => { info!("SIGTERM received, shutting down"); cancel.cancel(); }
        _ = int.recv() => { info!("SIGINT received, shutting down"); cancel.cancel(); }
    }
}

/// The one task that owns the node's state: every input goes through `Node::handle`
/// and every output is carried out before the next input.
async fn run_core(
    mut node: Node,
    mut events: mpsc::Receiver<CoreEvent>,
    cancel: CancellationToken,
    log: logging::LogControl,
) {
    let mut outboxes: HashMap<ClientId, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let input = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => Input::Tick,
            event = events.recv() => match event {
                None => break,
                Some(CoreEvent::ClientConnected { client, pid, outbox }) => {
                    outboxes.insert(client, outbox);
                    Input::ClientConnected { client, pid }
                }
                Some(CoreEvent::Packet { client, packet }) => Input::ClientPacket { client, packet },
                Some(CoreEvent::ClientGone { client }) => {
                    outboxes.remove(&client);
                    Input::ClientGone { client }
                }
            },
        };
        tracing::trace!(?input, "core input");
        for output in node.handle(now(), input) {
            match output {
                Output::SendToClient { client, packet } => {
                    let Some(outbox) = outboxes.get(&client) else {
                        continue;
                    };
                    if outbox.try_send(packet.encode()).is_err() {
                        // Full: the client stopped reading. Dropping its outbox ends
                        // its connection task, which reports ClientGone.
                        warn!(client = client.0, "dropping client: its queue is full");
                        outboxes.remove(&client);
                    }
                }
                Output::SetDebugLevel(level) => {
                    log.set_debug_level(level);
                    info!(level, "debug level changed");
                }
                Output::Shutdown => {
                    info!("shutdown requested by a client");
                    cancel.cancel();
                }
            }
        }
    }
    debug!("core task stopped");
}

/// Removes the socket file when the daemon stops.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `<rundir>/ctdbd.pid`, holding our pid while we run; removed on exit.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", path.display()))?;
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

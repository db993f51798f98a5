//! The daemon's wiring: configuration → pnn → logging → pid file → tasks → shutdown.
//!
//! ```text
//!  signal task ──┐                       ┌─> connection task per client (transport::unix)
//!                ├─ CancellationToken ───┼─> peer link tasks (transport::peer)
//!  accept task ──┘                       ├─> reclock holder child (reclock)
//!                                        ├─> address worker ── ctdb-rs-guardian (child,
//!                                        │     (rtnetlink)      outlives us on a crash,
//!                                        │                      then tells the peers)
//!                                        ├─> tickle task (netif::tickler): tickle ACKs,
//!                                        │     resets where the kernel's do not arrive
//!                                        ├─> link watcher (netlink) → core
//!                                        ├─> events task: event scripts, one at a
//!                                        │     time (init and setup ran before)
//!                                        ├─> event socket (stock `ctdb event`) → events
//!                                        ├─> core task: owns core::Node; sleeps until
//!                                        │    Node::poll_timeout; carries out every
//!                                        │    Output in order; publishes a snapshot
//!                                        │    after each input (snapshot) ──┐
//!                                        ├─> metrics endpoint ([metrics]) <─┤
//!                                        └─> DNS responder ([dns]) <────────┘
//!                                              both read snapshots, never the core
//! ```
//!
//! Shutdown is a protocol: SIGTERM, SIGINT or the SHUTDOWN control cancel the token;
//! every task reaches a safe point and returns; `run` waits for all of them, removes
//! the socket and the pid file, and returns.

pub mod addresses;
pub mod databases;
pub mod dns;
pub mod eventd;
pub mod events;
pub mod guardian;
pub mod logging;
pub mod metrics;
pub mod settings;
pub mod snapshot;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::config::conf::ClusterLock;
use crate::core::{ClientId, Input, Node, Now, Output, CTDB_PORT};
use crate::protocol::control::Timeval;
use crate::reclock::{Reclock, ReclockSpec};
use crate::transport::peer::PeerLinks;
use crate::transport::unix;
use crate::transport::CoreEvent;
use settings::Settings;

/// Command-line options of `ctdbd`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Stay in the foreground and log to stderr.
    pub interactive: bool,
}

/// Runs the daemon until it is told to stop. Errors are start-up failures.
pub fn run(options: Options) -> anyhow::Result<()> {
    let mut settings = Settings::load(
        &crate::paths::Paths::from_process_env(),
        settings::legacy_file_from_env().as_deref(),
    )?;
    let (pnn, node_listener) = find_own_pnn(&settings.nodes, settings.node_address)?;

    if !options.interactive {
        // Fork into the background before any thread exists (tokio, logging).
        nix::unistd::daemon(false, false).context("daemonizing")?;
    }
    // libtdb's robust-mutex check forks and installs a SIGCHLD handler: before any
    // runtime or child exists (db::tdb says why). Volatile databases use mutexes
    // only where they work, as CTDB decides.
    settings.database.tdb_mutexes =
        settings.database.tdb_mutexes && crate::db::tdb::runtime_check_for_robust_mutexes();
    let target = if options.interactive {
        logging::LogTarget::Stderr
    } else {
        settings.log_target.clone()
    };
    // Dropped last, after "ctdbd stopped": writes out what is still queued.
    let (log, _log_guard) = logging::init(&target, settings.debug_level)
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
    let result =
        runtime.block_on(serve(settings, pnn, node_listener, log, target).instrument(span.clone()));
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

async fn serve(
    mut settings: Settings,
    pnn: u32,
    node_listener: TcpListener,
    log: logging::LogControl,
    log_target: logging::LogTarget,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    // Event scripts first: a node whose init or setup fails does not start.
    let (runner, event_status) = prepare_events(&settings)?;
    // `init` and `setup` run before the client socket exists, so no `setvar` can
    // come before them: the configured `EventScriptTimeout` is the current one.
    let event_timeout = settings
        .tunables
        .event_script_timeout_ms()
        .map(Duration::from_millis);
    events::run_before_core(&runner, &event_status, event_timeout).await?;

    if let Some(dir) = settings.paths.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = unix::bind(&settings.paths.socket)?;
    let socket = SocketFile(settings.paths.socket.clone());

    // Before the core sees the addresses: one whose interfaces are all missing is
    // not served at all.
    let netlink = crate::netif::netlink::Netlink::start().context("opening rtnetlink")?;
    check_public_interfaces(&netlink, &mut settings).await;
    // Before any address can be added: without the guardian, a crash could leave an
    // address configured on a dead node while a peer takes it over.
    let mut guardian = guardian::Guardian::start(&guardian::Guardian::default_path(), &log_target)
        .await
        .context("starting the address guardian")?;
    // Tells this run of the daemon apart from every other on this node, for the
    // guardian's notice to the peers (core::takeover, "Guardian notices"). A second
    // draw from the seed's source: any value will do, as long as the next run draws
    // another.
    let incarnation = random_seed();
    info!(incarnation = %format_args!("{incarnation:016x}"), "daemon incarnation");
    for message in [
        guardian::GuardianMessage::Identity { pnn, incarnation },
        guardian::GuardianMessage::Nodes {
            port: CTDB_PORT,
            nodes: settings.nodes.clone(),
        },
    ] {
        guardian
            .send(&message)
            .await
            .context("telling the address guardian who this daemon is")?;
    }

    let clock = Clock::new();
    let node = Node::new(settings.node_config(
        pnn,
        std::process::id() as i32,
        incarnation,
        random_seed(),
        clock.now(),
    ));
    let snapshots = snapshot::Publisher::new(&node, clock.0);
    if let Some(addr) = settings.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding [metrics] listen = {addr}"))?;
        info!(%addr, "metrics endpoint listening");
        tracker.spawn(
            metrics::serve(
                listener,
                snapshots.subscribe(),
                event_status.clone(),
                cancel.clone(),
                tracker.clone(),
            )
            .in_current_span(),
        );
    }
    if let (Some(addr), Some(name)) = (settings.dns.listen, &settings.dns.name) {
        let socket = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("binding [dns] listen = {addr}"))?;
        let responder = dns::Responder::new(name, settings.dns.ttl)
            .with_context(|| format!("[dns] name = {name}"))?;
        info!(%addr, %name, "DNS responder listening");
        tracker.spawn(
            dns::serve(socket, responder, snapshots.subscribe(), cancel.clone()).in_current_span(),
        );
    }
    // Bounded: edges wait when the core is busy, which slows them down instead of
    // growing memory.
    let (core_tx, core_rx) = mpsc::channel(1024);
    // The data path: smbd's calls and the nodes' record traffic go to the
    // database thread, past the core (DESIGN.md, "Databases").
    let (data_tx, data_rx) = databases::queue();
    let data_path = crate::transport::DataPath {
        pnn,
        events: data_tx.clients,
        peer_events: data_tx.peers,
    };
    let peers = Arc::new(PeerLinks::start(
        pnn,
        settings.nodes.clone(),
        CTDB_PORT,
        node_listener,
        crate::transport::peer::Inbound {
            core: core_tx.clone(),
            data: Some(data_path.clone()),
        },
        cancel.clone(),
        &tracker,
    ));
    let mutexes = settings.database.tdb_mutexes;
    let database_thread = databases::start(
        databases::Config {
            pnn,
            dirs: crate::db::registry::DbDirs {
                volatile: settings.database.volatile_dir.clone(),
                persistent: settings.database.persistent_dir.clone(),
                mutexes,
            },
            peers: Arc::clone(&peers),
            snapshots: snapshots.subscribe(),
            core: core_tx.clone(),
        },
        data_rx,
        cancel.clone(),
    )?;
    addresses::sweep_leftovers(&netlink, &settings.public_addresses).await;
    let (address_ops, address_rx) = mpsc::channel(1024);
    tracker.spawn(
        addresses::worker(
            netlink.clone(),
            guardian,
            address_rx,
            core_tx.clone(),
            cancel.clone(),
        )
        .in_current_span(),
    );
    let (link_tx, link_rx) = mpsc::channel(64);
    let link_watcher =
        crate::netif::netlink::watch_links(link_tx).context("watching interface links")?;
    tracker.spawn(forward_link_changes(link_rx, core_tx.clone(), cancel.clone()).in_current_span());
    let reclock = settings.cluster_lock_spec.clone().map(|spec| {
        let spec = match spec {
            ClusterLock::File(path) => ReclockSpec::File(path),
            ClusterLock::Helper { command } => ReclockSpec::Helper { command },
        };
        Reclock::new(spec, Reclock::default_helper_path(), core_tx.clone())
    });
    // The current tunables, for the edges that use some: the core owns them and
    // reports every `setvar` (Output::TunablesChanged).
    let (tunables_tx, tunables_rx) = tokio::sync::watch::channel(settings.tunables.clone());
    let (event_tx, event_rx) = mpsc::channel(64);
    let eventd_listener = eventd::bind(&settings.paths.eventd_socket())?;
    let eventd_file = SocketFile(settings.paths.eventd_socket());
    tracker.spawn(
        eventd::serve(
            eventd_listener,
            eventd::EventSocket {
                events: event_tx.clone(),
                status: event_status.clone(),
                dirs: crate::events::ScriptDirs::new(
                    settings.paths.provided_scripts(),
                    settings.paths.enabled_scripts(),
                ),
            },
            cancel.clone(),
            tracker.clone(),
        )
        .in_current_span(),
    );
    tracker.spawn(
        events::task(
            Arc::new(runner),
            event_status,
            event_rx,
            core_tx.clone(),
            cancel.clone(),
            tunables_rx.clone(),
        )
        .in_current_span(),
    );
    let edges = Edges {
        events: event_tx,
        data: data_path.events.clone(),
        outboxes: HashMap::new(),
        address_ops,
        announcer: crate::netif::send::Announcer::new(netlink.clone()),
        tickler: crate::netif::Tickler::start(
            crate::netif::send::Announcer::new(netlink.clone()),
            tunables_rx,
            cancel.clone(),
            &tracker,
        ),
        tunables: tunables_tx,
        netlink,
        _link_watcher: link_watcher,
        peers,
        reclock,
        nodes_file: settings.paths.nodes(),
        public_addresses_file: settings.public_addresses_file.clone(),
        default_public_iface: settings.default_public_iface.clone(),
        log,
        cancel: cancel.clone(),
        core_tx: core_tx.clone(),
    };
    tracker.spawn(run_core(node, clock, core_rx, edges, snapshots).in_current_span());
    tracker.spawn(
        unix::serve(
            listener,
            core_tx,
            Some(data_path),
            cancel.clone(),
            tracker.clone(),
        )
        .in_current_span(),
    );
    tracker.spawn(wait_for_signal(cancel.clone()).in_current_span());
    info!(socket = %settings.paths.socket.display(), "ctdbd ready");
    cancel.cancelled().await;
    tracker.close();
    tracker.wait().await;
    // Its queue's senders are gone with the tasks; it ends on the cancel.
    let _ = tokio::task::spawn_blocking(move || database_thread.join()).await;
    drop(socket);
    drop(eventd_file);
    Ok(())
}

/// The event runner for this node's configuration, and an empty status store. Also
/// enables the scripts the legacy `CTDB_MANAGES_*` variables ask for.
fn prepare_events(
    settings: &Settings,
) -> anyhow::Result<(crate::events::EventRunner, events::SharedStatus)> {
    use crate::events::{RunnerConfig, ScriptDirs};
    let paths = &settings.paths;
    let vardir = paths.script_vardir();
    std::fs::create_dir_all(&vardir).with_context(|| format!("creating {}", vardir.display()))?;
    let dirs = ScriptDirs::new(paths.provided_scripts(), paths.enabled_scripts());
    let enabled: Vec<String> = dirs
        .list()
        .map(|entries| {
            entries
                .into_iter()
                .filter(|e| e.enabled)
                .map(|e| e.name.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default();
    for name in &settings.enable_scripts {
        if enabled.contains(name) {
            continue;
        }
        match dirs.enable(name) {
            Ok(()) => info!(script = %name, "enabled for a legacy CTDB_MANAGES_* setting"),
            Err(e) => error!(script = %name, error = %e, "cannot enable event script"),
        }
    }
    let mut config = RunnerConfig::new(&paths.etc_dir, vardir);
    config.scripts_dir = paths.enabled_scripts();
    config.socket = Some(paths.socket.clone());
    config.env = settings.legacy_script_env.clone();
    config.debug_script = settings.event_debug_script.clone();
    Ok((
        crate::events::EventRunner::new(config),
        Arc::new(std::sync::Mutex::new(crate::events::EventStatusStore::new())),
    ))
}

/// The core's clocks: monotonic milliseconds since start, and the wall clock.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }

    fn now(&self) -> Now {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Now {
            mono_ms: self.0.elapsed().as_millis() as u64,
            wall: Timeval {
                sec: d.as_secs() as i64,
                usec: i64::from(d.subsec_micros()),
            },
        }
    }

    fn instant(&self, mono_ms: u64) -> Instant {
        self.0 + Duration::from_millis(mono_ms)
    }
}

/// Seed for the core's generation numbers; any value works, a fresh one per start
/// keeps a restarted cluster from reusing generations.
fn random_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
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

/// What the core task drives: every edge that carries out outputs.
struct Edges {
    events: mpsc::Sender<events::EventRequest>,
    /// The database thread's queue.
    data: mpsc::Sender<crate::transport::DataEvent>,
    outboxes: HashMap<ClientId, mpsc::Sender<Vec<u8>>>,
    address_ops: mpsc::Sender<addresses::AddressOp>,
    announcer: crate::netif::send::Announcer,
    /// The tickle task: tickles, and resets where this node's kernel's do not arrive.
    tickler: crate::netif::Tickler,
    /// The current tunables, read by the tickle and events tasks.
    tunables: tokio::sync::watch::Sender<crate::tunables::Tunables>,
    netlink: crate::netif::netlink::Netlink,
    /// Kept for its lifetime: dropping it stops the watch.
    _link_watcher: crate::netif::netlink::LinkWatcher,
    peers: Arc<PeerLinks>,
    reclock: Option<Reclock>,
    nodes_file: PathBuf,
    public_addresses_file: PathBuf,
    default_public_iface: Option<String>,
    log: logging::LogControl,
    cancel: CancellationToken,
    core_tx: mpsc::Sender<CoreEvent>,
}

impl Edges {
    /// Queues an address change; a full queue is reported to the core as a failure
    /// (the leader retries), never dropped silently.
    fn address_op(&mut self, op: addresses::AddressOp, addr: std::net::IpAddr, add: bool) {
        if self.address_ops.try_send(op).is_err() {
            error!(%addr, "address request queue full");
            let tx = self.core_tx.clone();
            let result = Err("address request queue full".to_string());
            tokio::spawn(async move {
                let event = if add {
                    CoreEvent::Input(Input::AddressAdded { addr, result })
                } else {
                    CoreEvent::Input(Input::AddressRemoved { addr, result })
                };
                let _ = tx.send(event).await;
            });
        }
    }

    fn carry_out(&mut self, output: Output) {
        match output {
            Output::SendToClient { client, packet } => {
                let Some(outbox) = self.outboxes.get(&client) else {
                    return;
                };
                match outbox.try_send(packet.encode()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        // The client stopped reading long ago. Dropping its outbox
                        // ends its connection task, which reports ClientGone.
                        warn!(
                            client = client.0,
                            limit = unix::CLIENT_QUEUE_LEN,
                            "dropping client: its queue is full"
                        );
                        self.outboxes.remove(&client);
                    }
                    // Its connection is closing; ClientGone is on its way.
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.outboxes.remove(&client);
                    }
                }
            }
            Output::SendToPeer { pnn, packet } => self.peers.send(pnn, packet.encode()),
            Output::AddAddress {
                iface,
                addr,
                prefix_len,
            } => self.address_op(
                addresses::AddressOp::Add {
                    iface,
                    addr,
                    prefix_len,
                },
                addr,
                true,
            ),
            Output::RemoveAddress {
                iface,
                addr,
                prefix_len,
            } => self.address_op(
                addresses::AddressOp::Remove {
                    iface,
                    addr,
                    prefix_len,
                },
                addr,
                false,
            ),
            // The tickle task sends a few tickles a little apart and, with
            // TickleResetFallback on, watches the client's answers
            // (netif::tickle).
            Output::Tickle { server, client } => self.tickler.tickle(server, client),
            Output::ReadPublicAddresses { request } => {
                let path = self.public_addresses_file.clone();
                let default_iface = self.default_public_iface.clone();
                let netlink = self.netlink.clone();
                let tx = self.core_tx.clone();
                tokio::spawn(
                    async move {
                        let result =
                            reread_public_addresses(&path, default_iface.as_deref(), &netlink)
                                .await;
                        let _ = tx
                            .send(CoreEvent::Input(Input::PublicAddresses { request, result }))
                            .await;
                    }
                    .in_current_span(),
                );
            }
            Output::Announce { iface, addr } => {
                let announcer = self.announcer.clone();
                tokio::spawn(
                    async move {
                        if let Err(e) = announcer.announce_burst(&iface, addr).await {
                            warn!(%addr, %iface, error = %e, "announcing a public address failed");
                        }
                    }
                    .in_current_span(),
                );
            }
            Output::DropPeer { pnn } => self.peers.drop_peer(pnn),
            Output::SetPeers(nodes) => {
                // The guardian tells these peers should we die.
                let op = addresses::AddressOp::Nodes {
                    port: CTDB_PORT,
                    nodes: nodes.clone(),
                };
                if self.address_ops.try_send(op).is_err() {
                    error!("address request queue full: the guardian keeps the old nodes list");
                }
                self.peers.set_nodes(nodes);
            }
            Output::TakeReclock => match &mut self.reclock {
                Some(r) => r.take(),
                None => error!("core asked for the recovery lock but none is configured"),
            },
            Output::ReleaseReclock => {
                if let Some(r) = &mut self.reclock {
                    r.release();
                }
            }
            Output::ReadNodesFile { request } => {
                // Small file, read inline: the answer goes back through the channel so
                // the core sees it as an ordinary input.
                let result = std::fs::read_to_string(&self.nodes_file)
                    .map_err(|e| format!("{}: {e}", self.nodes_file.display()))
                    .and_then(|text| {
                        crate::config::nodes::parse_nodes(&text, &self.nodes_file)
                            .map(|entries| entries.into_iter().map(|n| n.addr).collect())
                            .map_err(|e| e.to_string())
                    });
                let tx = self.core_tx.clone();
                tokio::spawn(async move {
                    let _ = tx
                        .send(CoreEvent::Input(Input::NodesFile { request, result }))
                        .await;
                });
            }
            Output::RunEvent {
                id,
                event,
                timeout_ms,
            } => {
                let request = events::EventRequest::Core {
                    id,
                    event,
                    timeout: timeout_ms.map(Duration::from_millis),
                };
                if let Err(e) = self.events.try_send(request) {
                    // Never expected (the core has at most two events out), but the
                    // core must hear back or it waits for ever.
                    error!(error = %e, "event queue full");
                    let tx = self.core_tx.clone();
                    tokio::spawn(async move {
                        let outcome = crate::core::EventOutcome::Failed;
                        let _ = tx
                            .send(CoreEvent::Input(Input::EventDone { id, outcome }))
                            .await;
                    });
                }
            }
            Output::SetDebugLevel(level) => {
                self.log.set_debug_level(level);
                info!(level, "debug level changed");
            }
            Output::TunablesChanged(tunables) => {
                self.tunables.send_replace(tunables);
            }
            Output::Shutdown => {
                info!("shutdown requested by a client");
                self.cancel.cancel();
            }
            Output::RecoverDatabases { generation, nodes } => {
                let event = crate::transport::DataEvent::Recover { generation, nodes };
                if let Err(mpsc::error::TrySendError::Full(event)) = self.data.try_send(event) {
                    // The database thread is busy: wait for room off the core task.
                    let data = self.data.clone();
                    tokio::spawn(async move {
                        let _ = data.send(event).await;
                    });
                }
            }
        }
    }
}

/// `ctdb reloadips`: reads `public_addresses` again with the checks of start-up (the
/// same functions) — a bad line or one whose interfaces are all missing is logged
/// with file and line and skipped; missing interfaces of a line are dropped with a
/// warning.
async fn reread_public_addresses(
    path: &Path,
    default_iface: Option<&str>,
    netlink: &crate::netif::netlink::Netlink,
) -> Result<Vec<(std::net::IpAddr, u8, Vec<String>)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (good, bad) =
        crate::config::public_addresses::parse_public_addresses(&text, path, default_iface);
    for e in bad {
        error!("{e}");
    }
    let entries = good
        .into_iter()
        .map(|a| ((a.addr, a.prefix_len, a.ifaces), a.line))
        .collect::<Vec<_>>();
    let names = entries.iter().flat_map(|((_, _, ifaces), _)| ifaces);
    let missing = missing_interfaces(netlink, names).await;
    let (kept, problems) =
        settings::keep_existing_interfaces(path, entries, |iface| !missing.contains(iface));
    log_interface_problems(problems);
    let kept = kept.into_iter().map(|(entry, _)| entry).collect();
    Ok(kept)
}

/// Passes interface link changes from the netlink watcher to the core.
async fn forward_link_changes(
    mut changes: mpsc::Receiver<crate::netif::netlink::LinkChange>,
    core: mpsc::Sender<CoreEvent>,
    cancel: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            c = changes.recv() => match c { Some(c) => c, None => return },
        };
        let event = CoreEvent::Input(Input::LinkChanged {
            iface: change.iface,
            up: change.up,
        });
        if core.send(event).await.is_err() {
            return;
        }
    }
}

/// The one task that owns the node's state: every input goes through `Node::handle`
/// and every output is carried out before the next input. Timers are the core's:
/// it says when it next needs a tick.
async fn run_core(
    mut node: Node,
    clock: Clock,
    mut events: mpsc::Receiver<CoreEvent>,
    mut edges: Edges,
    snapshots: snapshot::Publisher,
) {
    let cancel = edges.cancel.clone();
    loop {
        let deadline = tokio::time::Instant::from_std(clock.instant(node.poll_timeout()));
        let input = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(deadline) => Input::Tick,
            event = events.recv() => match event {
                None => break,
                Some(CoreEvent::ClientConnected { client, pid, outbox }) => {
                    edges.outboxes.insert(client, outbox);
                    Input::ClientConnected { client, pid }
                }
                Some(CoreEvent::ClientGone { client }) => {
                    edges.outboxes.remove(&client);
                    Input::ClientGone { client }
                }
                Some(CoreEvent::Input(input)) => input,
            },
        };
        tracing::trace!(?input, "core input");
        for output in node.handle(clock.now(), input) {
            edges.carry_out(output);
        }
        snapshots.publish(&node);
    }
    if let Some(r) = &mut edges.reclock {
        r.release();
    }
    debug!("core task stopped");
}

/// Checks that the interfaces named in `public_addresses` exist on this node, and
/// drops the ones that do not (see [`settings::keep_existing_interfaces`]), logging
/// each affected line with file and line.
async fn check_public_interfaces(
    netlink: &crate::netif::netlink::Netlink,
    settings: &mut Settings,
) {
    let names: Vec<String> = settings
        .public_addresses
        .iter()
        .flat_map(|(_, _, ifaces)| ifaces.iter().cloned())
        .collect();
    let missing = missing_interfaces(netlink, &names).await;
    log_interface_problems(settings.keep_existing_interfaces(|iface| !missing.contains(iface)));
}

/// The interfaces among `names` that do not exist on this node, by the one rule of
/// [`settings::interface_missing`] (start-up and `reloadips` alike).
async fn missing_interfaces<'a>(
    netlink: &crate::netif::netlink::Netlink,
    names: impl IntoIterator<Item = &'a String>,
) -> std::collections::BTreeSet<String> {
    let mut missing = std::collections::BTreeSet::new();
    let names: std::collections::BTreeSet<&String> = names.into_iter().collect();
    for iface in names {
        let lookup = netlink.link_index(iface).await;
        if settings::interface_missing(&lookup) {
            missing.insert(iface.clone());
        } else if let Err(e) = lookup {
            warn!(%iface, error = %e, "cannot check a public interface; keeping it");
        }
    }
    missing
}

fn log_interface_problems(problems: Vec<settings::InterfaceProblem>) {
    for problem in problems {
        if problem.is_error() {
            error!("{problem}");
        } else {
            warn!("{problem}");
        }
    }
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

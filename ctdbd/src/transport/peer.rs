//! Node-to-node TCP links (reference/ctdb-protocol-core.md §2.3), as CTDB 4.17 runs
//! them: two one-way connections per pair of nodes. The connection a peer opens to
//! our listener is only read; the one we open to the peer's address (bound to our own
//! node address, port 0) is only written, and anything read on it means the peer is
//! gone. A peer counts as connected only while both are up. Peers are identified by
//! the source IP of the accepted connection alone; there is no handshake.
//!
//! This module owns sockets, per-peer send queues and reconnection; it holds no
//! cluster state. The core task drives it through [`PeerLinks`] and hears back through
//! [`Input::PeerConnected`], [`Input::PeerPacket`] and
//! [`Input::PeerDisconnected`]. Keepalives (§2.4) are the core's business: it
//! sends them like any packet and calls [`PeerLinks::drop_peer`] when they stop.
//!
//! One exception to "packets only while connected": a dead node's guardian opens a
//! connection from the node's address just to say `DAEMON_GONE` (srvid in
//! `protocol::control::srvid`), and no outgoing connection to that node will come up.
//! Such a message goes to the core at once as [`Input::GuardianNotice`], whatever the
//! link's state; the core decides whether to believe it. The guardian's connection is
//! an incoming one like any other: if the link was still up, it replaces the old
//! connections (and `PeerDisconnected` comes first).
//!
//! ```text
//!                    PeerLinks (handle, called by the core task)
//!                      │ send: try_send         │ drop_peer / set_nodes
//!                      v                        v
//!  peer ──TCP──> accept task ──stream──> link task, one per peer ──CoreEvent──> core
//!                (one listener;           │ reads and frames the incoming
//!                 source IP → pnn;        │ connection; connects the outgoing
//!                 unknown IP: closed)     │ one with backoff; decides connected
//!                                         │ and disconnected
//!                                         └─spawns─> writer task, one per outgoing
//!                                                    connection: owns the send queue
//!                                                    while up ──TCP──> peer
//! ```
//!
//! The writer is its own task so that a peer which stops reading cannot stall our
//! reading of its packets: two nodes blocked writing to each other while neither
//! reads would otherwise deadlock until the keepalive timeout.
//!
//! Every task runs on the daemon's [`TaskTracker`] and stops on its cancellation
//! token. Dropping [`PeerLinks`] stops all of them; removing a node with
//! [`PeerLinks::set_nodes`] stops that node's link task and writer.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, info_span, trace, warn, Instrument};

use super::{CoreEvent, DataEvent, DataPath};
use crate::core::Input;
use crate::protocol::control::srvid;
use crate::protocol::{Framer, Packet};

/// Packets queued to one peer before it counts as stuck and is dropped. Bounded so a
/// peer that stops reading cannot grow our memory; CTDB's counterpart is the
/// `MaxQueueDropMsg` tunable.
pub const PEER_QUEUE_LEN: usize = 10_000;

/// How long one outgoing connect attempt may take (CTDB: 1 s, §2.3).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// First delay before retrying a failed connect. CTDB always waits 1 s; we start
/// lower and double, so a restarted peer rejoins within a fraction of a second.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Longest delay between connect attempts, CTDB's fixed retry interval.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// Packets read from a peer before it counts as connected, held back so the core
/// sees them after [`Input::PeerConnected`]. When full we stop reading and TCP
/// flow control holds the rest in the kernel.
const MAX_EARLY_PACKETS: usize = 1_000;

/// Accepted connections waiting for their link task. More than a few means the peer
/// reconnects in a loop; the surplus is closed.
const INCOMING_BACKLOG: usize = 4;

/// Where the links deliver what peers send.
pub struct Inbound {
    /// Everything but the data path.
    pub core: mpsc::Sender<CoreEvent>,
    /// Record migration and database controls (`None`: to the core too).
    pub data: Option<DataPath>,
}

/// Handle on the node-to-node links. Cheap to call from the core task: every method
/// takes a short lock on the peer table and never waits for I/O.
///
/// Dropping it stops every task it started.
pub struct PeerLinks {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

/// What the handle and the accept task share.
struct Shared {
    own_pnn: u32,
    /// Our node address; outgoing connections are bound to it so that the peer can
    /// recognise us by source address (§2.3).
    own_ip: IpAddr,
    port: u16,
    events: mpsc::Sender<CoreEvent>,
    /// Where data-path packets go (None: everything to the core).
    data: Option<DataPath>,
    /// Cancelled on daemon shutdown or when the handle is dropped.
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Links by pnn. A `std` mutex: held only for lookups and inserts, never across
    /// an `.await`.
    peers: Mutex<BTreeMap<u32, PeerEntry>>,
}

/// The handle's side of one link task.
struct PeerEntry {
    ip: IpAddr,
    /// Encoded packets for the writer.
    queue: mpsc::Sender<Vec<u8>>,
    /// Connections the accept task attributed to this peer.
    incoming: mpsc::Sender<TcpStream>,
    /// Asks the link task to close both connections. A `Notify` rather than a
    /// channel so that requesting never blocks and repeated requests coalesce.
    drop_request: Arc<Notify>,
    /// Whether the outgoing connection is up, so `send` can drop packets at once
    /// instead of queueing them for a connection that may never come.
    outgoing_up: Arc<AtomicBool>,
    /// Kept so that a replacement link for the same pnn can wait for this one to
    /// finish, keeping its events in order.
    task: Option<JoinHandle<()>>,
    /// Stops the link task when the entry is removed.
    _stop: DropGuard,
}

impl PeerLinks {
    /// Starts the links: an accept task on `listener` (already bound by the daemon to
    /// our node address and `port`) and a link task for every other non-deleted node.
    /// `nodes` is the nodes file (index = pnn, `None` = deleted line); our address is
    /// `nodes[own_pnn]`. Must be called inside a tokio runtime.
    pub fn start(
        own_pnn: u32,
        nodes: Vec<Option<IpAddr>>,
        port: u16,
        listener: std::net::TcpListener,
        inbound: Inbound,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let Inbound { core: events, data } = inbound;
        let own_ip = match nodes.get(own_pnn as usize).copied().flatten() {
            Some(ip) => ip,
            None => {
                // The daemon derives own_pnn from the nodes file, so this is a bug in
                // the caller; fall back to the listener's address and keep going.
                let fallback = listener
                    .local_addr()
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                error!(pnn = own_pnn, %fallback, "own pnn has no address in the nodes list");
                fallback
            }
        };
        let cancel = cancel.child_token();
        let shared = Arc::new(Shared {
            own_pnn,
            own_ip,
            port,
            events,
            data,
            cancel: cancel.clone(),
            tracker: tracker.clone(),
            peers: Mutex::new(BTreeMap::new()),
        });
        let links = PeerLinks {
            shared: Arc::clone(&shared),
            _stop: cancel.drop_guard(),
        };
        links.set_nodes(nodes);
        match listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
        {
            Ok(listener) => {
                tracker.spawn(
                    accept_peers(listener, shared).instrument(info_span!("peer_listener", port)),
                );
            }
            // Without the listener no peer can ever count as connected; say so loudly
            // but leave the decision to stop to the daemon's health checks.
            Err(e) => error!(error = %e, port, "cannot listen for peer connections"),
        }
        links
    }

    /// Queues an encoded packet to node `pnn`. Never blocks. The packet is dropped
    /// (debug log) if there is no outgoing connection to `pnn`; if its queue is full
    /// the peer is dropped (both connections closed, `PeerDisconnected` if it was
    /// connected) and reconnected.
    pub fn send(&self, pnn: u32, packet: Vec<u8>) {
        let peers = self.shared.lock_peers();
        let Some(peer) = peers.get(&pnn) else {
            debug!(peer = pnn, "no link to this node; packet dropped");
            return;
        };
        if !peer.outgoing_up.load(Ordering::Acquire) {
            debug!(peer = pnn, "outgoing connection down; packet dropped");
            return;
        }
        match peer.queue.try_send(packet) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                // Clearing the flag here makes the rest of a burst take the quiet
                // "link down" path above instead of warning once per packet; the link
                // task sets it again when it has reconnected.
                peer.outgoing_up.store(false, Ordering::Release);
                warn!(
                    peer = pnn,
                    limit = PEER_QUEUE_LEN,
                    "send queue to peer full; dropping the peer"
                );
                peer.drop_request.notify_one();
            }
            Err(TrySendError::Closed(_)) => debug!(peer = pnn, "link stopping; packet dropped"),
        }
    }

    /// Closes both connections with `pnn` now (the core decided it is dead, e.g. on
    /// keepalive timeout); reconnection starts at once. `PeerDisconnected` follows if
    /// the peer was connected.
    pub fn drop_peer(&self, pnn: u32) {
        match self.shared.lock_peers().get(&pnn) {
            Some(peer) => peer.drop_request.notify_one(),
            None => debug!(peer = pnn, "drop requested for a node without a link"),
        }
    }

    /// Applies a reloaded nodes file (index = pnn, `None` = deleted; our own pnn is
    /// unchanged): starts links to new nodes and stops links to deleted ones (or to a
    /// pnn whose address changed). A stopped link that was connected reports
    /// `PeerDisconnected` first, so every `PeerConnected` is matched by a
    /// `PeerDisconnected` until shutdown.
    pub fn set_nodes(&self, nodes: Vec<Option<IpAddr>>) {
        let shared = &self.shared;
        let mut peers = shared.lock_peers();
        let mut finishing = BTreeMap::new();
        peers.retain(|&pnn, peer| {
            let keep = nodes.get(pnn as usize).copied().flatten() == Some(peer.ip);
            if !keep {
                info!(peer = pnn, ip = %peer.ip, "node left the nodes list; closing its link");
                if let Some(task) = peer.task.take() {
                    finishing.insert(pnn, task);
                }
            }
            keep
        });
        for (index, ip) in nodes.iter().enumerate() {
            let (Ok(pnn), Some(ip)) = (u32::try_from(index), *ip) else {
                continue;
            };
            if pnn == shared.own_pnn || peers.contains_key(&pnn) {
                continue;
            }
            let entry = shared.spawn_link(pnn, ip, finishing.remove(&pnn));
            peers.insert(pnn, entry);
        }
    }
}

impl Shared {
    fn lock_peers(&self) -> MutexGuard<'_, BTreeMap<u32, PeerEntry>> {
        // Nothing panics while holding the lock, so a poisoned lock still holds a
        // consistent table.
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the link task for `pnn` at `ip`. `previous` is the task of a link for the
    /// same pnn being stopped: the new one waits for it so the core cannot see the new
    /// `PeerConnected` before the old `PeerDisconnected`.
    fn spawn_link(&self, pnn: u32, ip: IpAddr, previous: Option<JoinHandle<()>>) -> PeerEntry {
        let (queue_tx, queue_rx) = mpsc::channel(PEER_QUEUE_LEN);
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_BACKLOG);
        let drop_request = Arc::new(Notify::new());
        let outgoing_up = Arc::new(AtomicBool::new(false));
        let cancel = self.cancel.child_token();
        let link = Link {
            pnn,
            own_ip: self.own_ip,
            peer_addr: SocketAddr::new(ip, self.port),
            events: self.events.clone(),
            data: self.data.clone(),
            shutdown: self.cancel.clone(),
            cancel: cancel.clone(),
            tracker: self.tracker.clone(),
            incoming_rx,
            drop_request: Arc::clone(&drop_request),
            outgoing_up: Arc::clone(&outgoing_up),
            framer: Framer::for_peers(),
            incoming: None,
            outgoing: Outgoing::retry_after(Duration::ZERO),
            queue: Some(queue_rx),
            backoff: FIRST_RETRY,
            connected: false,
        };
        let task = self.tracker.spawn(
            async move {
                if let Some(previous) = previous {
                    // Its outcome does not matter, only that it is over.
                    let _ = previous.await;
                }
                link.run().await;
            }
            .instrument(info_span!("peer_link", peer = pnn, %ip)),
        );
        PeerEntry {
            ip,
            queue: queue_tx,
            incoming: incoming_tx,
            drop_request,
            outgoing_up,
            task: Some(task),
            _stop: cancel.drop_guard(),
        }
    }
}

/// Accepts peer connections until shutdown and hands each to its node's link task.
async fn accept_peers(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, from) = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: our problem, not the peer's. Pause so we do
                    // not spin, and keep accepting.
                    error!(error = %e, "accept on peer listener failed");
                    tokio::select! {
                        _ = shared.cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        // Identification is by source IP only, port ignored, deleted nodes skipped
        // (§2.3). A dual-stack listener reports IPv4 peers as mapped IPv6 addresses.
        let source = from.ip().to_canonical();
        let target = shared
            .lock_peers()
            .iter()
            .find(|(_, peer)| peer.ip == source)
            .map(|(&pnn, peer)| (pnn, peer.incoming.clone()));
        let Some((pnn, incoming)) = target else {
            warn!(%from, "refused connection from unknown node");
            continue;
        };
        // CTDB sets SO_KEEPALIVE on both connections (§2.3).
        if let Err(e) =
            nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::KeepAlive, &true)
        {
            debug!(peer = pnn, error = %e, "cannot enable keepalive on incoming connection");
        }
        match incoming.try_send(stream) {
            Ok(()) => debug!(peer = pnn, %from, "accepted connection from peer"),
            Err(TrySendError::Full(_)) => {
                warn!(peer = pnn, %from, "peer reconnects faster than its link keeps up; connection closed");
            }
            Err(TrySendError::Closed(_)) => debug!(peer = pnn, "link stopping; connection closed"),
        }
    }
}

/// The link task's state for one peer. It owns both connections (the outgoing one
/// through its writer task) and is the only place that emits events for this pnn,
/// which is what keeps them in order.
struct Link {
    pnn: u32,
    own_ip: IpAddr,
    peer_addr: SocketAddr,
    events: mpsc::Sender<CoreEvent>,
    /// Where data-path packets go.
    data: Option<DataPath>,
    /// Daemon shutdown (or the handle dropped): no more events.
    shutdown: CancellationToken,
    /// This link alone (node removed), or shutdown.
    cancel: CancellationToken,
    tracker: TaskTracker,
    incoming_rx: mpsc::Receiver<TcpStream>,
    drop_request: Arc<Notify>,
    outgoing_up: Arc<AtomicBool>,
    framer: Framer,
    incoming: Option<Incoming>,
    outgoing: Outgoing,
    /// The send queue, here whenever no writer task holds it. The writer returns it
    /// when it ends, so the queue outlives connections.
    queue: Option<mpsc::Receiver<Vec<u8>>>,
    /// Delay before the next connect attempt after a failure.
    backoff: Duration,
    /// Both connections up and `PeerConnected` emitted.
    connected: bool,
}

/// The connection the peer opened to us; we only read it.
struct Incoming {
    stream: TcpStream,
    /// Bytes read but not yet framed.
    buf: Vec<u8>,
    /// Packets decoded before the peer counted as connected, held for the core.
    early: VecDeque<Packet>,
}

/// Our connection to the peer; we only write it.
enum Outgoing {
    /// Backing off before the next attempt.
    Waiting(Pin<Box<tokio::time::Sleep>>),
    /// A connect attempt in flight (with its own 1 s timeout).
    Connecting(Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>),
    /// Connected; the writer task owns the socket and the send queue.
    Up {
        writer: JoinHandle<(mpsc::Receiver<Vec<u8>>, OutgoingEnd)>,
        /// Stops the writer (and so closes the socket).
        stop: CancellationToken,
    },
}

/// Why a writer task ended.
#[derive(Debug, thiserror::Error)]
enum OutgoingEnd {
    /// The link task stopped it, or the link is going away.
    #[error("stopped")]
    Stopped,
    /// The peer closed the connection.
    #[error("closed by the peer")]
    Closed,
    /// The peer wrote to a connection it must only read (§2.3): it is confused or
    /// not a CTDB node; either way the link is not usable.
    #[error("peer sent {0} bytes on our send-only connection")]
    UnexpectedData(usize),
    /// A read or write failed.
    #[error("{0}")]
    Failed(io::Error),
}

/// What woke the link task.
enum Step {
    Stop,
    DropRequested,
    NewIncoming(TcpStream),
    RetryConnect,
    ConnectDone(io::Result<TcpStream>),
    OutgoingEnded(Result<(mpsc::Receiver<Vec<u8>>, OutgoingEnd), JoinError>),
    Read(io::Result<usize>),
}

impl Outgoing {
    fn retry_after(delay: Duration) -> Self {
        Outgoing::Waiting(Box::pin(tokio::time::sleep(delay)))
    }

    /// Waits for the current state to move on. Cancel-safe: the futures live in
    /// `self`, so a `select!` that picks another branch loses nothing.
    async fn progress(&mut self) -> Step {
        match self {
            Outgoing::Waiting(sleep) => {
                sleep.as_mut().await;
                Step::RetryConnect
            }
            Outgoing::Connecting(attempt) => Step::ConnectDone(attempt.as_mut().await),
            Outgoing::Up { writer, .. } => Step::OutgoingEnded(writer.await),
        }
    }
}

impl Link {
    async fn run(mut self) {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let step = tokio::select! {
                _ = self.cancel.cancelled() => Step::Stop,
                _ = self.drop_request.notified() => Step::DropRequested,
                Some(stream) = self.incoming_rx.recv() => Step::NewIncoming(stream),
                step = self.outgoing.progress() => step,
                read = async {
                    match &mut self.incoming {
                        Some(incoming) if incoming.early.len() < MAX_EARLY_PACKETS => {
                            incoming.stream.read(&mut chunk).await
                        }
                        _ => std::future::pending().await,
                    }
                } => Step::Read(read),
            };
            let keep_going = match step {
                Step::Stop => false,
                Step::DropRequested => {
                    if self.connected {
                        info!("dropping peer on request");
                    }
                    self.close_both().await
                }
                Step::NewIncoming(stream) => self.new_incoming(stream).await,
                Step::RetryConnect => {
                    self.outgoing =
                        Outgoing::Connecting(Box::pin(connect(self.own_ip, self.peer_addr)));
                    true
                }
                Step::ConnectDone(Ok(stream)) => self.outgoing_connected(stream).await,
                Step::ConnectDone(Err(e)) => {
                    debug!(error = %e, retry_in = ?self.backoff, "connect to peer failed");
                    self.retry_later();
                    true
                }
                Step::OutgoingEnded(ended) => self.outgoing_ended(ended).await,
                Step::Read(read) => self.incoming_read(read, &chunk).await,
            };
            if !keep_going {
                break;
            }
        }
        self.outgoing_up.store(false, Ordering::Release);
        // Stopped alone means the node left the nodes list: close the books with the
        // core. On shutdown nobody listens any more.
        if self.connected && !self.shutdown.is_cancelled() {
            info!("peer disconnected: node removed");
            self.emit(CoreEvent::Input(Input::PeerDisconnected { pnn: self.pnn }))
                .await;
        }
        // The writer stops on its own: its token is a child of `cancel`, or the queue
        // sender went away with the entry.
    }

    /// The peer opened a connection to us.
    async fn new_incoming(&mut self, stream: TcpStream) -> bool {
        if self.connected {
            // CTDB keeps the old connection and rejects the new one. We replace it on
            // purpose: a second connection means the peer restarted (or lost the old
            // one without a FIN), and making it wait until our side times out would
            // delay its rejoin by the keepalive timeout. Its old incarnation is gone,
            // so our outgoing connection is torn down and made afresh too.
            info!("peer opened a new connection; replacing the old ones");
            if !self.close_both().await {
                return false;
            }
        } else if self.incoming.is_some() {
            debug!("peer opened a new connection; replacing the old one");
        }
        self.incoming = Some(Incoming {
            stream,
            buf: Vec::with_capacity(1024),
            early: VecDeque::new(),
        });
        // The peer evidently listens again: no need to sit out the backoff.
        if matches!(self.outgoing, Outgoing::Waiting(_)) {
            self.outgoing = Outgoing::retry_after(Duration::ZERO);
        }
        self.check_connected().await
    }

    /// A connect attempt succeeded: hand the socket and the queue to a writer.
    async fn outgoing_connected(&mut self, stream: TcpStream) -> bool {
        let Some(queue) = self.queue.take() else {
            // The queue is with us whenever no writer runs, and none runs while we
            // are connecting; reaching this is a bug in this file.
            error!("send queue missing while connecting; link stops");
            return false;
        };
        debug!("outgoing connection up");
        let stop = self.cancel.child_token();
        let writer = self
            .tracker
            .spawn(write_outgoing(stream, queue, stop.clone()).in_current_span());
        self.outgoing = Outgoing::Up { writer, stop };
        self.outgoing_up.store(true, Ordering::Release);
        self.check_connected().await
    }

    /// The writer ended by itself: the peer closed, wrote, or failed.
    async fn outgoing_ended(
        &mut self,
        ended: Result<(mpsc::Receiver<Vec<u8>>, OutgoingEnd), JoinError>,
    ) -> bool {
        // Replace the finished handle first: polling it again would panic.
        self.outgoing = Outgoing::retry_after(Duration::ZERO);
        self.outgoing_up.store(false, Ordering::Release);
        let Some(end) = self.reclaim_queue(ended) else {
            return false;
        };
        if self.connected {
            info!(reason = %end, "outgoing connection to peer lost");
            self.close_both().await
        } else {
            // Not connected: keep a lone incoming connection; only our side retries.
            // Backing off matters here, e.g. when the peer does not know us and
            // closes every connection we make.
            debug!(reason = %end, retry_in = ?self.backoff, "outgoing connection to peer lost");
            self.retry_later();
            true
        }
    }

    /// Something was read (or not) on the incoming connection.
    async fn incoming_read(&mut self, read: io::Result<usize>, chunk: &[u8]) -> bool {
        let n = match read {
            Ok(0) => {
                debug!("incoming connection closed by peer");
                return self.incoming_lost().await;
            }
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "read from peer failed");
                return self.incoming_lost().await;
            }
        };
        let Some(incoming) = self.incoming.as_mut() else {
            return true; // unreachable: reads are only polled while it exists
        };
        incoming.buf.extend_from_slice(&chunk[..n]);
        // Decode everything buffered first, then deliver: good packets that precede
        // garbage still reach the core, as they would in CTDB.
        let mut junk = None;
        let mut notices = Vec::new();
        loop {
            let len = match self.framer.frame_len(&incoming.buf) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    junk = Some(e.to_string());
                    break;
                }
            };
            match Packet::decode(&incoming.buf[..len]) {
                Ok(packet) => {
                    trace!(header = ?packet.header, len, "packet from peer");
                    if is_guardian_notice(&packet) {
                        notices.push(packet);
                    } else {
                        incoming.early.push_back(packet);
                    }
                    incoming.buf.drain(..len);
                }
                Err(e) => {
                    junk = Some(e.to_string());
                    break;
                }
            }
        }
        // Ahead of the packets held back: they wait for the link, a notice does not.
        // (On a connected link nothing is held back, and the core ignores a notice
        // about a connected node anyway.)
        for packet in notices {
            info!("guardian notice from the peer's address");
            let pnn = self.pnn;
            if !self
                .emit(CoreEvent::Input(Input::GuardianNotice { pnn, packet }))
                .await
            {
                return false;
            }
        }
        if !self.deliver_early().await {
            return false;
        }
        match junk {
            None => true,
            Some(error) => {
                // §2.1: a bad length, alignment, magic or version kills the node's
                // connections. The peer is at fault, hence warn, and we carry on.
                warn!(%error, "dropping peer: malformed input");
                self.close_both().await
            }
        }
    }

    /// The incoming connection closed or failed.
    async fn incoming_lost(&mut self) -> bool {
        if self.connected {
            info!("incoming connection from peer lost");
            self.close_both().await
        } else {
            self.incoming = None;
            true
        }
    }

    /// Emits `PeerConnected` if both connections are now up.
    async fn check_connected(&mut self) -> bool {
        if self.connected
            || self.incoming.is_none()
            || !matches!(self.outgoing, Outgoing::Up { .. })
        {
            return true;
        }
        self.connected = true;
        self.backoff = FIRST_RETRY;
        info!("peer connected");
        self.emit(CoreEvent::Input(Input::PeerConnected { pnn: self.pnn }))
            .await
            && self.deliver_early().await
    }

    /// Passes held-back packets to the core, if the peer is connected.
    async fn deliver_early(&mut self) -> bool {
        while self.connected {
            let Some(packet) = self.incoming.as_mut().and_then(|i| i.early.pop_front()) else {
                break;
            };
            let pnn = self.pnn;
            let delivered = match &self.data {
                Some(data) if data.takes_from_peer(&packet) => data
                    .peer_events
                    .send(DataEvent::Peer { pnn, packet })
                    .is_ok(),
                _ => {
                    self.emit(CoreEvent::Input(Input::PeerPacket { pnn, packet }))
                        .await
                }
            };
            if !delivered {
                return false;
            }
        }
        true
    }

    /// Closes both connections and reconnects after [`FIRST_RETRY`] (CTDB restarts
    /// at once on node death, §2.3); tells the core if the peer was connected.
    ///
    /// Not at once: a peer whose connections just closed is most likely dying, and
    /// its listening socket may still complete a handshake until the process's last
    /// descriptor is gone. Such a connection, with the dead daemon's guardian
    /// connecting from the peer's address a few milliseconds later, made the link
    /// look up again, and the guardian's notice was taken for a stale one (found by
    /// `tests/vm` public_ips under load). A restarted daemon takes longer than this
    /// to listen anyway.
    async fn close_both(&mut self) -> bool {
        self.incoming = None;
        self.outgoing_up.store(false, Ordering::Release);
        let previous = std::mem::replace(&mut self.outgoing, Outgoing::retry_after(FIRST_RETRY));
        if let Outgoing::Up { writer, stop } = previous {
            stop.cancel();
            // The writer checks `stop` even mid-write, so this returns promptly.
            if self.reclaim_queue(writer.await).is_none() {
                return false;
            }
        }
        if std::mem::take(&mut self.connected) {
            info!("peer disconnected");
            return self
                .emit(CoreEvent::Input(Input::PeerDisconnected { pnn: self.pnn }))
                .await;
        }
        true
    }

    /// Takes the send queue back from a finished writer and empties it: those packets
    /// were meant for a connection (and a peer incarnation) that is gone, and CTDB
    /// discards them too. `None` if the writer panicked and took the queue with it.
    fn reclaim_queue(
        &mut self,
        ended: Result<(mpsc::Receiver<Vec<u8>>, OutgoingEnd), JoinError>,
    ) -> Option<OutgoingEnd> {
        match ended {
            Ok((mut queue, end)) => {
                let mut discarded = 0usize;
                while queue.try_recv().is_ok() {
                    discarded += 1;
                }
                if discarded > 0 {
                    debug!(
                        discarded,
                        "discarded packets queued for a closed connection"
                    );
                }
                self.queue = Some(queue);
                Some(end)
            }
            Err(e) => {
                error!(error = %e, "peer writer task failed; link stops");
                None
            }
        }
    }

    /// Schedules the next connect attempt after the current backoff and doubles it.
    fn retry_later(&mut self) {
        self.outgoing = Outgoing::retry_after(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }

    /// Sends an event to the core; `false` if the core is gone or we are shutting
    /// down, which ends the link task. Takes `&mut self` only so the future is `Send`
    /// (`Link` holds a boxed future that is not `Sync`).
    async fn emit(&mut self, event: CoreEvent) -> bool {
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            sent = self.events.send(event) => sent.is_ok(),
        }
    }
}

/// A peer's guardian speaking: a DAEMON_GONE message (see the module docs).
fn is_guardian_notice(packet: &Packet) -> bool {
    matches!(&packet.body, crate::protocol::Body::ReqMessage(m) if m.srvid == srvid::DAEMON_GONE)
}

/// One outgoing connect attempt, set up as CTDB does (§2.3): bound to our node
/// address so the peer recognises us, keepalive on, `TCP_NODELAY`, 1 s timeout.
async fn connect(own_ip: IpAddr, peer: SocketAddr) -> io::Result<TcpStream> {
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_keepalive(true)?;
    socket.bind(SocketAddr::new(own_ip, 0))?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(peer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes queued packets to the peer until stopped or the connection fails. Also
/// watches the read side: the peer never writes on this connection, so any data, EOF
/// or error there means the link is dead. Returns the queue to the link task.
async fn write_outgoing(
    mut stream: TcpStream,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stop: CancellationToken,
) -> (mpsc::Receiver<Vec<u8>>, OutgoingEnd) {
    let (mut reader, mut writer) = stream.split();
    let mut probe = [0u8; 64];
    let end = loop {
        tokio::select! {
            _ = stop.cancelled() => break OutgoingEnd::Stopped,
            read = reader.read(&mut probe) => break match read {
                Ok(0) => OutgoingEnd::Closed,
                Ok(n) => OutgoingEnd::UnexpectedData(n),
                Err(e) => OutgoingEnd::Failed(e),
            },
            packet = queue.recv() => {
                // `None`: the handle's entry is gone, the link is being removed.
                let Some(packet) = packet else { break OutgoingEnd::Stopped };
                trace!(len = packet.len(), "packet to peer");
                // A peer that stops reading blocks this write; `stop` must still
                // get through (drop_peer after a keepalive timeout relies on it).
                tokio::select! {
                    _ = stop.cancelled() => break OutgoingEnd::Stopped,
                    written = writer.write_all(&packet) => {
                        if let Err(e) = written {
                            break OutgoingEnd::Failed(e);
                        }
                    }
                }
            }
        }
    };
    (queue, end)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use tokio::sync::mpsc::error::TryRecvError;
    use tokio::time::timeout;

    use super::*;
    use crate::protocol::{Body, Header, ReqMessage};

    /// Upper bound for anything to happen on loopback; reached only on failure.
    const WAIT: Duration = Duration::from_secs(10);

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Finds a port free on 127.0.0.1..=127.0.0.`count` and binds a listener for each
    /// node there (node `i` at 127.0.0.`i+1`). Retries when another test or process
    /// holds the port on one of the addresses.
    fn bind_cluster(count: u8) -> (u16, Vec<std::net::TcpListener>) {
        for _ in 0..50 {
            let port = std::net::TcpListener::bind((ip(1), 0))
                .and_then(|l| l.local_addr())
                .expect("bind a probe socket on loopback")
                .port();
            let bound: io::Result<Vec<_>> = (1..=count)
                .map(|last| std::net::TcpListener::bind((ip(last), port)))
                .collect();
            if let Ok(listeners) = bound {
                return (port, listeners);
            }
        }
        panic!("no port free on all of 127.0.0.1..={count}");
    }

    /// Binds a node's listener again after a restart. The port was ours a moment ago,
    /// but an outgoing socket may briefly hold it on this address.
    async fn rebind(last: u8, port: u16) -> std::net::TcpListener {
        for _ in 0..100 {
            if let Ok(listener) = std::net::TcpListener::bind((ip(last), port)) {
                return listener;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("cannot bind 127.0.0.{last}:{port} again");
    }

    /// A raw connection from `source` to a node, as a peer (or an impostor) makes it.
    async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind source");
        socket.connect(to).await.expect("connect")
    }

    /// Asserts that the other side closes `stream` (EOF or reset) in time.
    async fn expect_closed(stream: &mut TcpStream, what: &str) {
        let mut byte = [0u8; 1];
        match timeout(WAIT, stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("{what}: unexpected data instead of close"),
            Err(_) => panic!("{what}: not closed within {WAIT:?}"),
        }
    }

    fn message(from: u32, to: u32, srvid: u64) -> Packet {
        Packet {
            header: Header {
                generation: 1,
                destnode: to,
                srcnode: from,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid,
                data: vec![1, 2, 3, 4, 5],
            }),
        }
    }

    /// One PeerLinks instance with its event channel and its own shutdown.
    struct Node {
        pnn: u32,
        links: PeerLinks,
        events: mpsc::Receiver<CoreEvent>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    }

    impl Node {
        fn start(
            pnn: u32,
            nodes: &[Option<IpAddr>],
            port: u16,
            listener: std::net::TcpListener,
        ) -> Self {
            let _ = tracing_subscriber::fmt()
                .with_test_writer()
                .with_max_level(tracing::Level::DEBUG)
                .try_init();
            let (tx, events) = mpsc::channel(64);
            let cancel = CancellationToken::new();
            let tracker = TaskTracker::new();
            let links = PeerLinks::start(
                pnn,
                nodes.to_vec(),
                port,
                listener,
                Inbound {
                    core: tx,
                    data: None,
                },
                cancel.clone(),
                &tracker,
            );
            Node {
                pnn,
                links,
                events,
                cancel,
                tracker,
            }
        }

        /// Cancels the node and waits until all its tasks (and so its sockets) are
        /// gone, like a daemon that exited.
        async fn stop(self) {
            self.cancel.cancel();
            self.tracker.close();
            timeout(WAIT, self.tracker.wait())
                .await
                .expect("tasks did not stop after cancel");
        }

        async fn next_event(&mut self) -> CoreEvent {
            timeout(WAIT, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("node {}: no event within {WAIT:?}", self.pnn))
                .expect("event channel closed")
        }

        /// Waits for PeerConnected from each of `peers`, in any order, and nothing else.
        async fn expect_connected(&mut self, peers: &[u32]) {
            let mut missing: BTreeSet<u32> = peers.iter().copied().collect();
            while !missing.is_empty() {
                match self.next_event().await {
                    CoreEvent::Input(Input::PeerConnected { pnn }) if missing.remove(&pnn) => {}
                    other => panic!(
                        "node {}: expected PeerConnected from {missing:?}, got {other:?}",
                        self.pnn
                    ),
                }
            }
        }

        async fn expect_disconnected(&mut self, peer: u32) {
            match self.next_event().await {
                CoreEvent::Input(Input::PeerDisconnected { pnn }) if pnn == peer => {}
                other => panic!(
                    "node {}: expected PeerDisconnected from {peer}, got {other:?}",
                    self.pnn
                ),
            }
        }

        async fn expect_packet(&mut self, from: u32, want: &Packet) {
            match self.next_event().await {
                CoreEvent::Input(Input::PeerPacket { pnn, packet })
                    if pnn == from && packet == *want => {}
                other => panic!(
                    "node {}: expected {want:?} from {from}, got {other:?}",
                    self.pnn
                ),
            }
        }
    }

    /// Sends a packet each way between every pair and checks it arrives, attributed
    /// to the right sender.
    async fn exchange(nodes: &mut [&mut Node]) {
        for i in 0..nodes.len() {
            for j in 0..nodes.len() {
                if i == j {
                    continue;
                }
                let (from, to) = (nodes[i].pnn, nodes[j].pnn);
                let packet = message(from, to, u64::from(from) << 8 | u64::from(to));
                nodes[i].links.send(to, packet.encode());
                nodes[j].expect_packet(from, &packet).await;
            }
        }
    }

    // Given two nodes on 127.0.0.1 and .2, when both start, then each sees the
    // other connected and packets flow both ways.
    #[tokio::test]
    async fn two_nodes_connect_and_exchange_packets() {
        let (port, mut listeners) = bind_cluster(2);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));
        let mut b = Node::start(1, &nodes, port, listeners.remove(0));
        a.expect_connected(&[1]).await;
        b.expect_connected(&[0]).await;
        exchange(&mut [&mut a, &mut b]).await;
    }

    // Given three nodes, when all start, then all pairs connect and exchange packets.
    #[tokio::test]
    async fn three_nodes_connect_and_exchange_packets() {
        let (port, mut listeners) = bind_cluster(3);
        let nodes = [Some(ip(1)), Some(ip(2)), Some(ip(3))];
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));
        let mut b = Node::start(1, &nodes, port, listeners.remove(0));
        let mut c = Node::start(2, &nodes, port, listeners.remove(0));
        a.expect_connected(&[1, 2]).await;
        b.expect_connected(&[0, 2]).await;
        c.expect_connected(&[0, 1]).await;
        exchange(&mut [&mut a, &mut b, &mut c]).await;
    }

    // Given three connected nodes, when node 0 stops (tasks gone, sockets closed),
    // then the others see it disconnected; when it starts again on the same
    // address, all three reconnect and traffic flows.
    #[tokio::test]
    async fn stopped_peer_is_disconnected_and_rejoins_after_restart() {
        let (port, mut listeners) = bind_cluster(3);
        let nodes = [Some(ip(1)), Some(ip(2)), Some(ip(3))];
        let a = Node::start(0, &nodes, port, listeners.remove(0));
        let mut b = Node::start(1, &nodes, port, listeners.remove(0));
        let mut c = Node::start(2, &nodes, port, listeners.remove(0));
        b.expect_connected(&[0, 2]).await;
        c.expect_connected(&[0, 1]).await;

        a.stop().await;
        b.expect_disconnected(0).await;
        c.expect_disconnected(0).await;

        let mut a = Node::start(0, &nodes, port, rebind(1, port).await);
        a.expect_connected(&[1, 2]).await;
        b.expect_connected(&[0]).await;
        c.expect_connected(&[0]).await;
        exchange(&mut [&mut a, &mut b, &mut c]).await;
    }

    // Given a node whose nodes list holds .1 and .2, when 127.0.0.9 connects, then
    // the listener closes the connection and the core hears nothing.
    #[tokio::test]
    async fn connection_from_unknown_address_is_refused() {
        let (port, mut listeners) = bind_cluster(1);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));
        let mut stranger = connect_from(ip(9), SocketAddr::new(ip(1), port)).await;
        expect_closed(&mut stranger, "connection from 127.0.0.9").await;
        assert!(matches!(a.events.try_recv(), Err(TryRecvError::Empty)));
    }

    // Given node 0 connected to an impostor on node 1's address (raw sockets), when
    // the impostor sends a bad magic, then an unaligned length, then each time node
    // 0 reports node 1 disconnected and closes both connections; afterwards the
    // real node 1 connects and traffic flows.
    #[tokio::test]
    async fn malformed_input_drops_peer_and_real_peer_rejoins() {
        let (port, mut listeners) = bind_cluster(2);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let impostor_listener = listeners.pop().expect("two listeners");
        impostor_listener
            .set_nonblocking(true)
            .expect("nonblocking");
        let impostor_listener = TcpListener::from_std(impostor_listener).expect("listener");
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));

        let mut bad_magic = vec![0u8; 32];
        bad_magic[0..4].copy_from_slice(&32u32.to_le_bytes());
        bad_magic[4..8].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
        let mut unaligned = message(1, 0, 1).encode();
        unaligned[0..4].copy_from_slice(&36u32.to_le_bytes());

        for (what, junk) in [("bad magic", bad_magic), ("unaligned length", unaligned)] {
            let (mut from_a, _) = timeout(WAIT, impostor_listener.accept())
                .await
                .expect("node 0 connects to node 1's address")
                .expect("accept");
            let mut to_a = connect_from(ip(2), SocketAddr::new(ip(1), port)).await;
            a.expect_connected(&[1]).await;
            to_a.write_all(&junk).await.expect("write junk");
            a.expect_disconnected(1).await;
            expect_closed(&mut to_a, what).await;
            expect_closed(&mut from_a, what).await;
        }

        // Node 0 is already reconnecting into this listener's backlog; the real node
        // takes the listener over, so that connection is accepted, not reset.
        let listener = impostor_listener.into_std().expect("into_std");
        let mut b = Node::start(1, &nodes, port, listener);
        a.expect_connected(&[1]).await;
        b.expect_connected(&[0]).await;
        exchange(&mut [&mut a, &mut b]).await;
    }

    // Given node 0 whose peer node 1 is down (nothing listens on .2), when node 1's
    // guardian connects from .2 and sends an ordinary message and then DAEMON_GONE,
    // then the core gets the notice at once as a GuardianNotice, though the link
    // never comes up; the ordinary message stays held back.
    #[tokio::test]
    async fn guardian_notice_reaches_the_core_without_a_link() {
        let (port, mut listeners) = bind_cluster(1);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));
        let notice = Packet {
            header: Header {
                generation: crate::protocol::control::INVALID_GENERATION,
                destnode: 0,
                srcnode: 1,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid: srvid::DAEMON_GONE,
                data: crate::protocol::control::DaemonGone {
                    pnn: 1,
                    incarnation: 9,
                }
                .encode(),
            }),
        };
        let mut guardian = connect_from(ip(2), SocketAddr::new(ip(1), port)).await;
        let mut bytes = message(1, 0, 7).encode();
        bytes.extend(notice.encode());
        guardian.write_all(&bytes).await.expect("write");
        match a.next_event().await {
            CoreEvent::Input(Input::GuardianNotice { pnn: 1, packet }) if packet == notice => {}
            other => panic!("expected the guardian notice, got {other:?}"),
        }
        assert!(matches!(a.events.try_recv(), Err(TryRecvError::Empty)));
    }

    // Given two connected nodes, when node 0's core drops node 1, then both see a
    // disconnect, then both reconnect by themselves.
    #[tokio::test]
    async fn drop_peer_tears_down_and_reconnects() {
        let (port, mut listeners) = bind_cluster(2);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let mut a = Node::start(0, &nodes, port, listeners.remove(0));
        let mut b = Node::start(1, &nodes, port, listeners.remove(0));
        a.expect_connected(&[1]).await;
        b.expect_connected(&[0]).await;

        a.links.drop_peer(1);
        a.expect_disconnected(1).await;
        b.expect_disconnected(0).await;
        a.expect_connected(&[1]).await;
        b.expect_connected(&[0]).await;
        exchange(&mut [&mut a, &mut b]).await;
    }

    // Given node 0 that does not list node 1 (which lists both), when node 0's nodes
    // file gains node 1, then they connect; when node 1 is deleted again, both see
    // the disconnect.
    #[tokio::test]
    async fn set_nodes_adds_and_removes_peers() {
        let (port, mut listeners) = bind_cluster(2);
        let nodes = [Some(ip(1)), Some(ip(2))];
        let mut a = Node::start(0, &nodes[..1], port, listeners.remove(0));
        let mut b = Node::start(1, &nodes, port, listeners.remove(0));

        a.links.set_nodes(nodes.to_vec());
        a.expect_connected(&[1]).await;
        b.expect_connected(&[0]).await;
        exchange(&mut [&mut a, &mut b]).await;

        a.links.set_nodes(vec![Some(ip(1)), None]);
        a.expect_disconnected(1).await;
        b.expect_disconnected(0).await;
    }
}

//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` over HTTP/1.1 in
//! the Prometheus text format (0.0.4), rendered at each scrape from the latest
//! [`Snapshot`] and the event store.
//!
//! ```text
//!   scraper ──HTTP──> accept task ──> connection task (hyper, ≤ MAX_CONNECTIONS)
//!                                        │ latest snapshot (Arc clone)
//!                                        │ event counters (the store's lock, briefly)
//!                                        └─> render() ──> text
//! ```
//!
//! The core never waits for a scrape: it only publishes snapshots (see
//! `snapshot`). README's "Metrics" section lists every metric.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::events::SharedStatus;
use super::snapshot::{latest, Snapshot, Snapshots};
use crate::events::{EventKind, ScriptCounters};
use crate::histogram::Histogram;
use crate::protocol::control::{node_flags, Opcode, Runstate};
use crate::protocol::packet::UNKNOWN_PNN;

/// Scrapes served at once; more connections are closed at once (a scraper needs one).
const MAX_CONNECTIONS: usize = 16;
/// A request's headers must arrive within this, or the connection is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What one scrape renders: the snapshot, and what the event store counted.
#[derive(Debug)]
pub struct Scrape {
    /// The node's state.
    pub snapshot: Arc<Snapshot>,
    /// Per (event, script): outcomes and durations.
    pub scripts: Vec<(EventKind, String, ScriptCounters)>,
    /// Per event that has run: the exit status of its last run (0 = success).
    pub last_events: Vec<(EventKind, i32)>,
}

impl Scrape {
    /// Takes the latest snapshot and copies the event counters out of the store.
    pub fn take(snapshots: &Snapshots, events: &SharedStatus) -> Self {
        let snapshot = latest(snapshots);
        // The events task records under this lock; hold it for a copy only.
        let store = events.lock().expect("event status lock");
        Self {
            snapshot,
            scripts: store
                .script_counters()
                .map(|(kind, name, counters)| (kind, name.to_owned(), counters.clone()))
                .collect(),
            last_events: store
                .last_results()
                .map(|r| (r.event.kind(), r.overall.exit_code()))
                .collect(),
        }
    }

    /// The exposition text.
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// One label set of a family, built from `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;

/// Starts a metric: its `# HELP` and `# TYPE` lines.
fn family<'a>(
    encoder: &'a mut DescriptorEncoder,
    name: &'a str,
    help: &str,
    kind: MetricType,
) -> Result<MetricEncoder<'a>, std::fmt::Error> {
    encoder.encode_descriptor(name, help, None, kind)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Gauge)?.encode_gauge(&value)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    family(encoder, name, help, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// Writes a histogram of milliseconds as one in seconds.
fn histogram(metric: &mut MetricEncoder, h: &Histogram) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = h
        .buckets()
        .map(|(bound_ms, n)| (bound_ms as f64 / 1000.0, n))
        .collect();
    metric.encode_histogram::<NoLabelSet>(h.sum_ms() as f64 / 1000.0, h.count(), &buckets, None)
}

/// The node flags shown as `ctdb_node_flag{flag=...}`, as `ctdb status` names them.
const FLAGS: [(&str, u32); 6] = [
    ("disconnected", node_flags::DISCONNECTED),
    ("unhealthy", node_flags::UNHEALTHY),
    ("disabled", node_flags::PERMANENTLY_DISABLED),
    ("banned", node_flags::BANNED),
    ("stopped", node_flags::STOPPED),
    ("deleted", node_flags::DELETED),
];

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.snapshot;
        let e = &mut encoder;
        gauge(e, "ctdb_pnn", "This node's pnn.", i64::from(s.pnn))?;
        gauge(
            e,
            "ctdb_leader",
            "The leader's pnn as this node knows it, -1 if none.",
            s.leader.map_or(-1, i64::from),
        )?;
        gauge(
            e,
            "ctdb_generation",
            "The vnn map's generation (1 = invalid: no recovery yet).",
            i64::from(s.generation),
        )?;
        gauge(
            e,
            "ctdb_recovery_mode",
            "0 normal, 1 recovery.",
            i64::from(s.recovery_mode),
        )?;
        {
            let mut m = family(
                e,
                "ctdb_runstate",
                "1 for this node's run state, 0 for the others.",
                MetricType::Gauge,
            )?;
            for state in Runstate::ALL {
                let labels: Labels = vec![("state", state.name().to_owned())];
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(state == s.runstate))?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_node_flags",
                "Node flag bits as this node sees them (0 = OK in ctdb status).",
                MetricType::Gauge,
            )?;
            for n in &s.nodes {
                let labels: Labels = vec![("pnn", n.pnn.to_string())];
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(n.flags))?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_node_ok",
                "1 if the node has no flag (healthy, connected, enabled, not banned \
                 or stopped) as this node sees it.",
                MetricType::Gauge,
            )?;
            for n in &s.nodes {
                let labels: Labels = vec![("pnn", n.pnn.to_string())];
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(n.flags == 0))?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_node_flag",
                "1 if the node has the flag, as this node sees it.",
                MetricType::Gauge,
            )?;
            for n in &s.nodes {
                for (flag, bit) in FLAGS {
                    let labels: Labels = vec![("pnn", n.pnn.to_string()), ("flag", flag.into())];
                    m.encode_family(&labels)?
                        .encode_gauge(&i64::from(n.flags & bit != 0))?;
                }
            }
        }
        counter(
            e,
            "ctdb_recoveries",
            "Recoveries this node went through (new generations installed).",
            s.counters.recoveries,
        )?;
        {
            let mut m = family(
                e,
                "ctdb_takeover_runs",
                "Takeover runs this node led, by result (failed includes runs dropped \
                 when it stopped leading).",
                MetricType::Counter,
            )?;
            for (result, n) in [
                ("ok", s.counters.takeover_runs_ok),
                ("failed", s.counters.takeover_runs_failed),
            ] {
                let labels: Labels = vec![("result", result.into())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_takeover_run_duration_seconds",
                "How long the takeover runs this node led took.",
                MetricType::Histogram,
            )?;
            histogram(&mut m, &s.counters.takeover_duration)?;
        }
        gauge(
            e,
            "ctdb_public_addresses",
            "Public addresses configured on this node.",
            s.public_addresses.len() as i64,
        )?;
        gauge(
            e,
            "ctdb_public_addresses_held",
            "Public addresses configured on this node's interfaces now.",
            s.held_here().count() as i64,
        )?;
        {
            let mut m = family(
                e,
                "ctdb_public_address_held",
                "1 for each public address on this node's interfaces.",
                MetricType::Gauge,
            )?;
            for ip in s.held_here() {
                let iface = ip
                    .active_iface
                    .and_then(|i| ip.ifaces.get(i))
                    .cloned()
                    .unwrap_or_default();
                let labels: Labels = vec![("address", ip.addr.to_string()), ("interface", iface)];
                m.encode_family(&labels)?.encode_gauge(&1i64)?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_public_address_node",
                "The node hosting each public address as this node knows it (ctdb ip), \
                 -1 if none.",
                MetricType::Gauge,
            )?;
            for ip in &s.public_addresses {
                let labels: Labels = vec![("address", ip.addr.to_string())];
                let node = if ip.pnn == UNKNOWN_PNN {
                    -1
                } else {
                    i64::from(ip.pnn)
                };
                m.encode_family(&labels)?.encode_gauge(&node)?;
            }
        }
        gauge(
            e,
            "ctdb_client_connections",
            "Clients connected to the daemon's Unix socket (smbd, ctdb).",
            s.clients as i64,
        )?;
        {
            let mut m = family(
                e,
                "ctdb_controls",
                "Controls this node answered, from clients and peers, by opcode.",
                MetricType::Counter,
            )?;
            for (&opcode, &n) in &s.counters.controls {
                let labels: Labels = vec![("opcode", Opcode(opcode).name().to_owned())];
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        for (name, help, up) in [
            (
                "ctdb_peer_link_up",
                "Times the link with the peer came up.",
                true,
            ),
            (
                "ctdb_peer_link_down",
                "Times the link with the peer went down (closed, or keepalives missed).",
                false,
            ),
        ] {
            let mut m = family(e, name, help, MetricType::Counter)?;
            for (pnn, peer) in &s.counters.peers {
                let labels: Labels = vec![("pnn", pnn.to_string())];
                let n = if up { peer.link_up } else { peer.link_down };
                m.encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_peer_keepalive_gap_seconds",
                "Silence between consecutive packets from the peer while its link is up \
                 (a peer is declared dead after KeepaliveLimit x KeepaliveIntervalMs).",
                MetricType::Histogram,
            )?;
            for (pnn, peer) in &s.counters.peers {
                let labels: Labels = vec![("pnn", pnn.to_string())];
                histogram(&mut m.encode_family(&labels)?, &peer.gaps)?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_peer_keepalive_gap_max_seconds",
                "The longest silence from the peer while its link was up.",
                MetricType::Gauge,
            )?;
            for (pnn, peer) in &s.counters.peers {
                let labels: Labels = vec![("pnn", pnn.to_string())];
                m.encode_family(&labels)?
                    .encode_gauge(&(peer.gaps.max_ms() as f64 / 1000.0))?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_event_script_runs",
                "Runs of each event script, by event and result (ok, error, timedout, \
                 cannot_run).",
                MetricType::Counter,
            )?;
            for (kind, script, counters) in &self.scripts {
                for (result, n) in &counters.results {
                    let labels: Labels = vec![
                        ("event", kind.name().to_owned()),
                        ("script", script.clone()),
                        ("result", (*result).to_owned()),
                    ];
                    m.encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(n, None)?;
                }
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_event_script_duration_seconds",
                "How long each event script ran, by event.",
                MetricType::Histogram,
            )?;
            for (kind, script, counters) in &self.scripts {
                let labels: Labels = vec![
                    ("event", kind.name().to_owned()),
                    ("script", script.clone()),
                ];
                histogram(&mut m.encode_family(&labels)?, &counters.duration)?;
            }
        }
        {
            let mut m = family(
                e,
                "ctdb_event_last_status",
                "Exit status of each event's last run, as ctdb event status shows it \
                 (0 = success).",
                MetricType::Gauge,
            )?;
            for (kind, status) in &self.last_events {
                let labels: Labels = vec![("event", kind.name().to_owned())];
                m.encode_family(&labels)?
                    .encode_gauge(&i64::from(*status))?;
            }
        }
        Ok(())
    }
}

/// Serves scrapes on `listener` until cancelled.
pub async fn serve(
    listener: TcpListener,
    snapshots: Snapshots,
    events: SharedStatus,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "metrics endpoint: too many connections, closing");
            continue;
        };
        let snapshots = snapshots.clone();
        let events = events.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &snapshots, &events);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = connection => if let Err(e) = result {
                    debug!(%peer, error = %e, "metrics endpoint: connection ended");
                },
            }
            drop(slot);
        });
    }
}

fn respond(
    request: &Request<Incoming>,
    snapshots: &Snapshots,
    events: &SharedStatus,
) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return response;
    }
    let text = Scrape::take(snapshots, events).render();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Input, Node, NodeConfig, Now};
    use crate::events::{Event, EventResult, Overall, ScriptResult, ScriptStatus};
    use crate::protocol::control::Timeval;
    use crate::tunables::Tunables;

    fn node() -> Node {
        let now = Now {
            mono_ms: 1000,
            wall: Timeval { sec: 1, usec: 0 },
        };
        let mut node = Node::new(NodeConfig {
            pnn: 1,
            nodes: vec![
                Some("192.168.20.41".parse().unwrap()),
                Some("192.168.20.42".parse().unwrap()),
            ],
            public_addresses: vec![("10.0.20.101".parse().unwrap(), 24, vec!["pub0".into()])],
            tunables: Tunables::default(),
            debug_level: 3,
            leader_capability: true,
            lmaster_capability: true,
            cluster_lock: None,
            leader_timeout_s: 5,
            start_disabled: false,
            start_stopped: false,
            daemon_pid: 4242,
            incarnation: 1,
            seed: 7,
            start: now,
        });
        node.handle(now, Input::PeerConnected { pnn: 0 });
        node
    }

    #[test]
    fn scrape_renders_the_snapshot_and_event_counters() {
        let node = node();
        let mut store = crate::events::EventStatusStore::new();
        store.record(EventResult {
            event: Event::Monitor,
            scripts: vec![ScriptResult {
                name: "00.ctdb".into(),
                status: ScriptStatus::Failed(1),
                output: String::new(),
                output_dropped: 0,
                started: std::time::UNIX_EPOCH,
                duration: Duration::from_millis(30),
            }],
            overall: Overall::Failed {
                script: "00.ctdb".into(),
                code: 1,
            },
            debug: None,
        });
        let events: SharedStatus = Arc::new(std::sync::Mutex::new(store));
        let publisher = super::super::snapshot::Publisher::new(&node, std::time::Instant::now());
        let text = Scrape::take(&publisher.subscribe(), &events).render();
        for line in [
            "# TYPE ctdb_pnn gauge",
            "ctdb_pnn 1",
            "ctdb_leader -1",
            // Connected, but unhealthy until it says otherwise.
            "ctdb_node_flags{pnn=\"0\"} 2",
            "ctdb_node_flag{pnn=\"0\",flag=\"disconnected\"} 0",
            "ctdb_node_flags{pnn=\"1\"} 2",
            "ctdb_node_ok{pnn=\"1\"} 0",
            "ctdb_node_flag{pnn=\"1\",flag=\"unhealthy\"} 1",
            "ctdb_runstate{state=\"FIRST_RECOVERY\"} 1",
            "# TYPE ctdb_recoveries_total counter",
            "ctdb_recoveries_total 0",
            "ctdb_takeover_runs_total{result=\"ok\"} 0",
            "ctdb_takeover_run_duration_seconds_bucket{le=\"+Inf\"} 0",
            "ctdb_public_addresses 1",
            "ctdb_public_addresses_held 0",
            "ctdb_public_address_node{address=\"10.0.20.101\"} -1",
            "ctdb_peer_link_up_total{pnn=\"0\"} 1",
            "ctdb_peer_link_down_total{pnn=\"0\"} 0",
            "ctdb_event_script_runs_total{event=\"monitor\",script=\"00.ctdb\",result=\"error\"} 1",
            "ctdb_event_script_duration_seconds_bucket{event=\"monitor\",script=\"00.ctdb\",le=\"0.05\"} 1",
            "ctdb_event_script_duration_seconds_sum{event=\"monitor\",script=\"00.ctdb\"} 0.03",
            "ctdb_event_last_status{event=\"monitor\"} 1",
            "ctdb_client_connections 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}

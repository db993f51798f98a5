//! The events task: runs the event scripts the core asks for, one at a time, and
//! keeps the last result of every event for `ctdb event status` / `scriptstatus`.
//!
//! ```text
//!   core ──RunEvent{id}──> events task ──EventRunner::run──> scripts (process groups)
//!     ^                        │  a monitor in progress is dropped (its process
//!     └──EventDone{id}─────────┘  group killed) when another event arrives
//!   eventd socket ──Admin{event, reply}──> same queue (ctdb event run ...)
//! ```
//!
//! `init` and `setup` run before the core exists ([`run_before_core`]), `shutdown`
//! when the daemon stops (the task's last act). The results go to a shared
//! [`EventStatusStore`].

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::{EventOutcome, Input};
use crate::events::{Event, EventKind, EventResult, EventRunner, EventStatusStore, Overall};
use crate::transport::CoreEvent;
use crate::tunables::Tunables;

/// The last result of every event, shared with whoever answers status requests.
pub type SharedStatus = Arc<Mutex<EventStatusStore>>;

/// A request to the events task.
#[derive(Debug)]
pub enum EventRequest {
    /// From the core; the answer goes back as [`Input::EventDone`].
    Core {
        /// The core's id.
        id: u64,
        /// What to run.
        event: Event,
        /// Time allowed; `None` = no limit.
        timeout: Option<Duration>,
    },
    /// From an administrator (`ctdb event run`); the result is not the core's business.
    Admin {
        /// What to run.
        event: Event,
        /// Time allowed; `None` = no limit.
        timeout: Option<Duration>,
        /// Where the result goes.
        reply: oneshot::Sender<EventResult>,
    },
}

impl EventRequest {
    fn event(&self) -> &Event {
        match self {
            EventRequest::Core { event, .. } | EventRequest::Admin { event, .. } => event,
        }
    }

    fn timeout(&self) -> Option<Duration> {
        match self {
            EventRequest::Core { timeout, .. } | EventRequest::Admin { timeout, .. } => *timeout,
        }
    }
}

/// How the core should read a result.
pub fn outcome(result: &EventResult) -> EventOutcome {
    match result.overall {
        Overall::Ok => EventOutcome::Ok,
        Overall::TimedOut { .. } => EventOutcome::TimedOut,
        Overall::Failed { .. } | Overall::Error { .. } => EventOutcome::Failed,
    }
}

/// Logs a result: failures at warning level with the failing script's output, the
/// way an administrator wants to see them in the daemon's log.
fn log_result(result: &EventResult, elapsed: Duration) {
    match &result.overall {
        Overall::Ok => {
            tracing::debug!(event = %result.event, ms = elapsed.as_millis() as u64, "event ok")
        }
        overall => {
            let output = result
                .scripts
                .last()
                .map(|s| s.output.trim_end().to_owned())
                .unwrap_or_default();
            warn!(event = %result.event, ?overall, %output, "event failed");
        }
    }
}

/// Runs `init` then `setup`: the daemon does not start if either fails (CTDB's
/// rule: a node that cannot set itself up must not join).
pub async fn run_before_core(
    runner: &EventRunner,
    status: &SharedStatus,
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    for event in [Event::Init, Event::Setup] {
        let started = tokio::time::Instant::now();
        let result = runner.run(&event, timeout).await;
        log_result(&result, started.elapsed());
        let failed = result.overall != Overall::Ok;
        let summary = format!("{:?}", result.overall);
        status.lock().expect("status lock").record(result);
        if failed {
            bail!("the {event} event failed ({summary}); see `ctdb event status legacy {event}`");
        }
        info!(%event, "event done");
    }
    Ok(())
}

type Running = Pin<Box<dyn Future<Output = EventResult> + Send>>;

/// The task: serves requests until cancelled, then runs `shutdown` (bounded by the
/// current `EventScriptTimeout` of `tunables`) and returns.
pub async fn task(
    runner: Arc<EventRunner>,
    status: SharedStatus,
    mut requests: mpsc::Receiver<EventRequest>,
    core: mpsc::Sender<CoreEvent>,
    cancel: CancellationToken,
    tunables: watch::Receiver<Tunables>,
) {
    let mut waiting: VecDeque<EventRequest> = VecDeque::new();
    let mut current: Option<(EventRequest, tokio::time::Instant, Running)> = None;
    loop {
        if current.is_none() {
            if let Some(request) = waiting.pop_front() {
                let runner = runner.clone();
                let event = request.event().clone();
                let timeout = request.timeout();
                let run: Running = Box::pin(async move { runner.run(&event, timeout).await });
                current = Some((request, tokio::time::Instant::now(), run));
            }
        }
        let finished = tokio::select! {
            _ = cancel.cancelled() => break,
            request = requests.recv() => {
                let Some(request) = request else { break };
                // A monitor gives way to any other event: dropping its future kills
                // its process group.
                let preempts = request.event().kind() != EventKind::Monitor
                    && current.as_ref().is_some_and(|(r, _, _)| {
                        matches!(r, EventRequest::Core { .. })
                            && r.event().kind() == EventKind::Monitor
                    });
                if preempts {
                    if let Some((cancelled, _, _)) = current.take() {
                        info!("monitor cancelled for another event");
                        finish_cancelled(cancelled, &core).await;
                    }
                }
                waiting.push_back(request);
                None
            }
            result = async { current.as_mut().expect("guarded").2.as_mut().await },
                if current.is_some() => Some(result),
        };
        if let Some(result) = finished {
            let (request, started, _) = current.take().expect("an event was running");
            log_result(&result, started.elapsed());
            status.lock().expect("status lock").record(result.clone());
            match request {
                EventRequest::Core { id, .. } => {
                    let input = Input::EventDone {
                        id,
                        outcome: outcome(&result),
                    };
                    if core.send(CoreEvent::Input(input)).await.is_err() {
                        break;
                    }
                }
                EventRequest::Admin { reply, .. } => {
                    let _ = reply.send(result);
                }
            }
        }
    }
    // Whatever runs is stopped (its process group killed) before `shutdown` runs.
    drop(current);
    let shutdown_timeout = tunables
        .borrow()
        .event_script_timeout_ms()
        .map(Duration::from_millis);
    let result = runner.run(&Event::Shutdown, shutdown_timeout).await;
    log_result(&result, Duration::ZERO);
    status.lock().expect("status lock").record(result);
}

async fn finish_cancelled(request: EventRequest, core: &mpsc::Sender<CoreEvent>) {
    if let EventRequest::Core { id, .. } = request {
        let input = Input::EventDone {
            id,
            outcome: EventOutcome::Cancelled,
        };
        let _ = core.send(CoreEvent::Input(input)).await;
    }
}

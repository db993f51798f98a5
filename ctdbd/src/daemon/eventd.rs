//! The event socket (`<rundir>/eventd.socket`): what CTDB's separate event daemon
//! serves, served by ctdbd itself, so that the stock `ctdb event run|status` and
//! `ctdb scriptstatus` (which exec `ctdb-event`, which connects here) work
//! unmodified. The protocol is `crate::events::protocol` (see its PROTOCOL.md).
//!
//! ```text
//!   ctdb-event ──unix──> accept task ──> connection task ──RUN──> events task (queue)
//!                                              └─STATUS──> shared status store
//! ```
//!
//! Only the `legacy` component exists. RUN goes through the events task's queue, so
//! an administrator's event never runs beside the daemon's own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

use super::events::{EventRequest, SharedStatus};
use crate::events::protocol::{
    run_result, script_error_result, Framer, Reply, ReplyBody, Request, RequestBody, ScriptAction,
    LEGACY,
};
use crate::events::ScriptDirs;

/// What every connection needs.
#[derive(Clone)]
pub struct EventSocket {
    /// The events task.
    pub events: mpsc::Sender<EventRequest>,
    /// Last results.
    pub status: SharedStatus,
    /// Provided and enabled scripts, for SCRIPT requests.
    pub dirs: ScriptDirs,
}

/// Binds the socket (replacing a stale file), root only.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(listener)
}

/// Accepts connections until cancelled.
pub async fn serve(
    listener: UnixListener,
    socket: EventSocket,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "event socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let socket = socket.clone();
        let cancel = cancel.clone();
        tracker.spawn(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    result = connection(stream, &socket) => {
                        if let Err(e) = result {
                            warn!(error = %e, "event socket client dropped");
                        }
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// Serves one client: frames in, one reply per request, in the order they finish
/// (the tool matches them by reqid). Garbage closes the connection, as in CTDB.
async fn connection(mut stream: UnixStream, socket: &EventSocket) -> anyhow::Result<()> {
    let framer = Framer::for_requests();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(len) = framer.frame_len(&buf)? {
            let frame: Vec<u8> = buf.drain(..len).collect();
            let request = Request::decode(&frame).context("undecodable event request")?;
            debug!(?request, "event socket request");
            let reply = Reply {
                header: request.header.reply(),
                body: answer(request.body, socket).await,
            };
            stream.write_all(&reply.encode()).await?;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn answer(body: RequestBody, socket: &EventSocket) -> ReplyBody {
    match body {
        RequestBody::Run(run) => {
            if run.component != LEGACY {
                return ReplyBody::Run(libc::ENOENT);
            }
            let event = match run.event() {
                Ok(event) => event,
                Err(bad) => return ReplyBody::Run(bad.result()),
            };
            let (reply, result) = oneshot::channel();
            let request = EventRequest::Admin {
                event,
                // As CTDB: the limit is what the tool says, 0 times out at once.
                timeout: Some(run.time_limit()),
                reply,
            };
            if socket.events.send(request).await.is_err() {
                return ReplyBody::Run(libc::ECANCELED);
            }
            match result.await {
                Ok(result) => ReplyBody::Run(run_result(&result)),
                Err(_) => ReplyBody::Run(libc::ECANCELED),
            }
        }
        RequestBody::Status(status) => {
            if status.component != LEGACY {
                return ReplyBody::Status(Err(nonzero(libc::ENOENT)));
            }
            let Ok(kind) = status.event_kind() else {
                return ReplyBody::Status(Err(nonzero(libc::EINVAL)));
            };
            let store = socket.status.lock().expect("status lock");
            ReplyBody::status_of(store.last(kind))
        }
        RequestBody::Script(script) => {
            if script.component != LEGACY {
                return ReplyBody::Script(libc::ENOENT);
            }
            let name = script.script.trim_end_matches(".script");
            let done = match script.action {
                ScriptAction::Enable => socket.dirs.enable(name),
                ScriptAction::Disable => socket.dirs.disable(name),
            };
            ReplyBody::Script(done.map_or_else(|e| script_error_result(&e), |()| 0))
        }
    }
}

fn nonzero(errno: i32) -> std::num::NonZeroI32 {
    std::num::NonZeroI32::new(errno).expect("errno values are not zero")
}

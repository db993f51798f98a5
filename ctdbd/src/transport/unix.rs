//! The Unix-domain client socket that the `ctdb` tool and smbd connect to
//! (reference/ctdb-protocol-core.md §2.2).
//!
//! Binding follows CTDB: refuse to start if a daemon already answers on the path,
//! remove a stale socket file, bind, chmod 0700 so only root can connect, listen.
//! Each accepted connection gets a [`ClientId`] and its peer pid from `SO_PEERCRED`.
//! Bad input from a client (a length below the header, above our limit, a packet
//! that does not decode) is logged at `warn!` and that client alone is dropped.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, warn, Instrument};

use super::{CoreEvent, DataEvent, DataPath};
use crate::core::ClientId;
use crate::core::Input;
use crate::protocol::{Framer, Packet};

/// Packets queued to one client before it counts as stuck and is dropped: CTDB's
/// `MaxQueueDropMsg` default. smbd gets messages it did not ask for (notifyd's
/// broadcasts, other nodes' wake-ups) and may be busy for a while; it must not be
/// cut off for that, so the limit is CTDB's, not lower. tokio's queue takes memory
/// only for what is queued.
pub const CLIENT_QUEUE_LEN: usize = 1_000_000;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on the socket path: nothing was changed.
    #[error("another ctdbd is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// A system call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step that failed.
        what: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Binds the client socket as CTDB does. Must run inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io_err = |what| {
        move |source| BindError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(BindError::AlreadyRunning(path.to_owned()));
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("removing stale socket")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("setting mode of"))?;
    Ok(listener)
}

/// Accepts clients until `cancel` fires; each connection runs in its own task on
/// `tracker`.
pub async fn serve(
    listener: UnixListener,
    core: mpsc::Sender<CoreEvent>,
    data: Option<DataPath>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    // Client ids count up from 1 and skip 0, which CTDB reserves.
    let mut next_id: u32 = 1;
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: log and keep accepting; the core is fine.
                    tracing::error!(error = %e, "accept on client socket failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let client = ClientId(next_id);
        next_id = next_id.checked_add(1).unwrap_or(1);
        let cred = stream.peer_cred().ok();
        let pid = cred.as_ref().and_then(|c| c.pid()).unwrap_or(-1);
        let uid = cred.as_ref().map(|c| c.uid());
        // The socket's 0700 mode already keeps others out; this guards against a
        // socket path whose mode was changed by hand.
        if uid != Some(nix::unistd::geteuid().as_raw()) {
            warn!(
                client = client.0,
                pid,
                ?uid,
                "refusing client of another user"
            );
            continue;
        }
        let span = info_span!("client", id = client.0, pid);
        tracker.spawn(
            connection(
                stream,
                client,
                pid,
                core.clone(),
                data.clone(),
                cancel.clone(),
            )
            .instrument(span),
        );
    }
}

async fn connection(
    mut stream: UnixStream,
    client: ClientId,
    pid: i32,
    core: mpsc::Sender<CoreEvent>,
    data: Option<DataPath>,
    cancel: CancellationToken,
) {
    let (outbox, mut queued) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE_LEN);
    // Replies from the database thread come on their own queue (see DataEvent).
    let (replies, mut data_replies) = mpsc::unbounded_channel::<Vec<u8>>();
    if core
        .send(CoreEvent::ClientConnected {
            client,
            pid,
            outbox,
        })
        .await
        .is_err()
    {
        return;
    }
    debug!("client connected");
    let framer = Framer::for_clients();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'conn: loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            packet = queued.recv() => match packet {
                Some(bytes) => {
                    if let Err(e) = stream.write_all(&bytes).await {
                        debug!(error = %e, "write to client failed");
                        break;
                    }
                }
                // The core dropped us (queue overflow or shutdown).
                None => break,
            },
            Some(bytes) = data_replies.recv() => {
                if let Err(e) = stream.write_all(&bytes).await {
                    debug!(error = %e, "write to client failed");
                    break;
                }
            },
            read = stream.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => {
                        if !buf.is_empty() {
                            warn!(pending = buf.len(), "client closed the connection in the middle of a packet");
                        }
                        break;
                    }
                    Ok(n) => n,
                    Err(e) => {
                        debug!(error = %e, "read from client failed");
                        break;
                    }
                };
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let len = match framer.frame_len(&buf) {
                        Ok(Some(len)) => len,
                        Ok(None) => break,
                        Err(e) => {
                            warn!(error = %e, "dropping client: unframeable input");
                            break 'conn;
                        }
                    };
                    let packet = match Packet::decode(&buf[..len]) {
                        Ok(p) => p,
                        Err(e) => {
                            warn!(error = %e, "dropping client: malformed packet");
                            break 'conn;
                        }
                    };
                    buf.drain(..len);
                    let sent = match &data {
                        Some(data) if data.takes_from_client(&packet) => data
                            .events
                            .send(DataEvent::Client { client, replies: replies.clone(), packet })
                            .await
                            .is_ok(),
                        _ => core
                            .send(CoreEvent::Input(Input::ClientPacket { client, packet }))
                            .await
                            .is_ok(),
                    };
                    if !sent {
                        break 'conn;
                    }
                }
            }
        }
    }
    if let Some(data) = &data {
        let _ = data.events.send(DataEvent::ClientGone { client }).await;
    }
    let _ = core.send(CoreEvent::ClientGone { client }).await;
    debug!("client gone");
}

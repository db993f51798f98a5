//! Carries out the core's public-address requests on this node's interfaces.
//!
//! One task applies adds and removes strictly in the order the core asked, so an
//! address is never re-added before an earlier remove of it has finished, and reports
//! each result back to the core. It remembers what it holds: on shutdown everything
//! still held is removed. Announcements (gratuitous ARP / unsolicited NA) run in tasks
//! of their own because a burst lasts seconds.
//!
//! The address guardian (`super::guardian`) is told of every address before the
//! kernel gets it and after the kernel lets it go, so that at every instant the
//! guardian's list covers what is configured: whenever the daemon dies, the guardian
//! removes at least everything the daemon held. (Telling it after the add would leave
//! a window in which a crash leaves an address that nothing removes.) Without a
//! guardian no address is added: a crash would leave it configured on a dead node.
//! The guardian also hears here of a reloaded nodes file: those are the peers it
//! tells when the daemon dies.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::guardian::{Guardian, GuardianMessage};
use crate::core::Input;
use crate::netif::netlink::Netlink;
use crate::transport::CoreEvent;

/// One request from the core.
#[derive(Debug)]
pub enum AddressOp {
    /// Add `addr/prefix_len` on `iface`.
    Add {
        /// Interface.
        iface: String,
        /// Address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
    /// Remove it.
    Remove {
        /// Interface.
        iface: String,
        /// Address.
        addr: IpAddr,
        /// Prefix length.
        prefix_len: u8,
    },
    /// The nodes file changed (reloadnodes): pass it on to the guardian. Nothing goes
    /// back to the core.
    Nodes {
        /// The port the peers listen on.
        port: u16,
        /// Index = pnn, `None` = deleted line.
        nodes: Vec<Option<IpAddr>>,
    },
}

/// Runs until `cancel`, then removes every address it still holds and tells the
/// guardian to exit.
pub async fn worker(
    netlink: Netlink,
    mut guardian: Guardian,
    mut ops: mpsc::Receiver<AddressOp>,
    core: mpsc::Sender<CoreEvent>,
    cancel: CancellationToken,
) {
    let mut held: BTreeMap<IpAddr, (String, u8)> = BTreeMap::new();
    let mut guardian_running = true;
    // Interfaces already switched to promote secondary addresses (see
    // `promote_secondaries`).
    let mut promoted: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    loop {
        let op = tokio::select! {
            _ = cancel.cancelled() => break,
            // Said at once rather than at the next add, which will fail (no address
            // is added without a guardian).
            status = guardian.exited(), if guardian_running => {
                guardian_running = false;
                match status {
                    Ok(status) => error!(
                        %status,
                        "the address guardian exited; no public address can be added"
                    ),
                    Err(e) => error!(error = %e, "lost track of the address guardian"),
                }
                continue;
            }
            op = ops.recv() => match op {
                Some(op) => op,
                None => break,
            },
        };
        let event = match op {
            AddressOp::Add {
                iface,
                addr,
                prefix_len,
            } => {
                if addr.is_ipv4() && promoted.insert(iface.clone()) {
                    promote_secondaries(&iface);
                }
                let told = GuardianMessage::Add {
                    iface: iface.clone(),
                    addr,
                    prefix_len,
                };
                let result = match guardian.send(&told).await {
                    Err(e) => Err(e.to_string()),
                    Ok(()) => netlink
                        .add_address(&iface, addr, prefix_len)
                        .await
                        .map_err(|e| e.to_string()),
                };
                match &result {
                    Ok(()) => {
                        held.insert(addr, (iface, prefix_len));
                    }
                    Err(_) => {
                        // Not configured, so the guardian must not keep it listed:
                        // it would remove the address should it come to this
                        // interface some other way.
                        let _ = guardian
                            .send(&GuardianMessage::Del {
                                iface,
                                addr,
                                prefix_len,
                            })
                            .await;
                    }
                }
                CoreEvent::Input(Input::AddressAdded { addr, result })
            }
            AddressOp::Remove {
                iface,
                addr,
                prefix_len,
            } => {
                let result = netlink
                    .remove_address(&iface, addr, prefix_len)
                    .await
                    .map_err(|e| e.to_string());
                if result.is_ok() {
                    held.remove(&addr);
                    tell_removed(&mut guardian, iface, addr, prefix_len).await;
                }
                CoreEvent::Input(Input::AddressRemoved { addr, result })
            }
            AddressOp::Nodes { port, nodes } => {
                // A failure means the guardian is gone; the next add reports that.
                if let Err(e) = guardian.send(&GuardianMessage::Nodes { port, nodes }).await {
                    error!(error = %e, "cannot tell the address guardian the new nodes list");
                }
                continue;
            }
        };
        if core.send(event).await.is_err() {
            break;
        }
    }
    for (addr, (iface, prefix_len)) in held {
        match netlink.remove_address(&iface, addr, prefix_len).await {
            Ok(()) => {
                info!(%addr, %iface, "released public address at shutdown");
                tell_removed(&mut guardian, iface, addr, prefix_len).await;
            }
            Err(e) => {
                error!(%addr, %iface, error = %e, "cannot release public address at shutdown")
            }
        }
    }
    // Whatever could not be released is still listed: the guardian tries once more.
    guardian.exit().await;
}

/// Tells the guardian an address is gone. A failure is logged, not returned: the
/// address is gone either way, and the next add reports the missing guardian to the
/// core.
async fn tell_removed(guardian: &mut Guardian, iface: String, addr: IpAddr, prefix_len: u8) {
    if let Err(e) = guardian
        .send(&GuardianMessage::Del {
            iface,
            addr,
            prefix_len,
        })
        .await
    {
        error!(%addr, error = %e, "cannot tell the address guardian");
    }
}

/// Makes the kernel keep the other addresses of a subnet when the first one is
/// removed. Without `promote_secondaries`, Linux deletes every secondary address of a
/// subnet together with its primary: releasing one public address would silently
/// drop the others on the same interface (found by the public-IP scenarios). The
/// setting lives in this network namespace's /proc/sys; failure is logged, not fatal.
fn promote_secondaries(iface: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/promote_secondaries");
    match std::fs::write(&path, "1") {
        Ok(()) => info!(%iface, "promote_secondaries enabled"),
        Err(e) => {
            error!(%iface, error = %e, "cannot enable promote_secondaries: releasing one public address may drop the others on this interface")
        }
    }
}

/// Removes public addresses left on our interfaces by an earlier run (a daemon that
/// died without its guardian): this node holds nothing until a takeover run says so.
pub async fn sweep_leftovers(netlink: &Netlink, public: &[(IpAddr, u8, Vec<String>)]) {
    for (addr, prefix_len, ifaces) in public {
        for iface in ifaces {
            let present = match netlink.addresses(iface).await {
                Ok(list) => list.iter().any(|(a, _)| a == addr),
                Err(e) => {
                    warn!(%iface, error = %e, "cannot list addresses of a public interface");
                    false
                }
            };
            if present {
                warn!(%addr, %iface, "removing a public address left over from an earlier run");
                if let Err(e) = netlink.remove_address(iface, *addr, *prefix_len).await {
                    error!(%addr, %iface, error = %e, "cannot remove leftover public address");
                }
            }
        }
    }
}

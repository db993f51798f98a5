//! Addresses and links through rtnetlink: the one task that adds and removes public
//! addresses, and the watcher that reports links going up and down.
//!
//! [`Netlink`] is a cheap, cloneable client; every request goes over a bounded
//! channel to a single task that owns the rtnetlink [`Handle`], so requests are
//! carried out one at a time, in the order they were sent. That order is what makes
//! "remove before add" on a takeover hold within this node. The core never calls
//! this itself: the daemon's loop turns the core's `AddAddress` / `RemoveAddress`
//! outputs into calls here and feeds the result back, because "the address really
//! moved" is cluster state.
//!
//! [`watch_links`] opens a second netlink socket, subscribed to the link group, and
//! reports [`LinkChange`]s on an mpsc channel.
//!
//! ```text
//!   daemon loop --Request--> [netlink task: Handle + Connection] --rtnetlink--> kernel
//!        ^                                                                       |
//!        +---LinkChange--- [watcher task: multicast Connection] <--RTNLGRP_LINK--+
//! ```

use std::collections::HashMap;
use std::net::IpAddr;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{AddressMessageBuilder, Handle, MulticastGroup};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use super::MacAddr;

/// Requests queued to the netlink task before senders wait. Requests are rare (a
/// takeover run moves a handful of addresses); the bound only stops a runaway caller.
pub const REQUEST_QUEUE_LEN: usize = 64;

/// `EEXIST`: the kernel already has the address we asked it to add.
const EEXIST: i32 = libc::EEXIST;
/// `EADDRNOTAVAIL`: the kernel has no such address to remove.
const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
/// `ENODEV`: no interface of that name.
const ENODEV: i32 = libc::ENODEV;

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened: nothing was started.
    #[error("opening a netlink socket: {0}")]
    Open(#[source] std::io::Error),
    /// No interface has this name: nothing was changed.
    #[error("no interface named {iface}")]
    NoSuchInterface {
        /// The interface asked for.
        iface: String,
    },
    /// The kernel refused to add the address: it is not configured on `iface`.
    #[error("adding {addr}/{prefix_len} to {iface}: {source}")]
    AddAddress {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// The kernel refused to remove the address: it may still be configured, and
    /// must not be given to another node until it is gone.
    #[error("removing {addr}/{prefix_len} from {iface}: {source}")]
    RemoveAddress {
        /// The interface.
        iface: String,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// Reading the interface's state or addresses failed: nothing was changed.
    #[error("reading {what} of {iface}: {source}")]
    Query {
        /// The interface.
        iface: String,
        /// What was being read ("link", "addresses").
        what: &'static str,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// The interface has no 6-byte hardware address (loopback, a tunnel): it
    /// cannot carry gratuitous ARP or neighbour advertisements.
    #[error("interface {iface} has no Ethernet hardware address")]
    NoMac {
        /// The interface.
        iface: String,
    },
    /// The netlink task is gone (its socket failed, or the runtime is shutting
    /// down): the request was not carried out.
    #[error("the netlink task has stopped")]
    Stopped,
}

/// A link's state changed, as the kernel reported it.
///
/// The watcher reports the state, not an edge: it drops repeats of the state it
/// last reported for an interface, but the first report for an interface may equal
/// what the caller already knew. A link that is deleted reports `up: false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    /// Interface name.
    pub iface: String,
    /// Administratively up and with carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub up: bool,
}

/// The client of the netlink task. Clones share the task; the task ends when the
/// last clone is dropped.
#[derive(Debug, Clone)]
pub struct Netlink {
    requests: mpsc::Sender<Request>,
}

type Reply<T> = oneshot::Sender<Result<T, NetlinkError>>;

#[derive(Debug)]
enum Request {
    AddAddress {
        iface: String,
        addr: IpAddr,
        prefix_len: u8,
        reply: Reply<()>,
    },
    RemoveAddress {
        iface: String,
        addr: IpAddr,
        prefix_len: u8,
        reply: Reply<()>,
    },
    Addresses {
        iface: String,
        reply: Reply<Vec<(IpAddr, u8)>>,
    },
    Link {
        iface: String,
        reply: Reply<LinkMessage>,
    },
}

impl Netlink {
    /// Opens the netlink socket and spawns the task that owns it on the current
    /// tokio runtime (panics outside one, like `tokio::spawn`).
    pub fn start() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE_LEN);
        tokio::spawn(async move {
            // The connection future drives the socket; it must be polled while a
            // request waits for its answer, hence both under one select.
            tokio::select! {
                () = connection => error!("netlink connection ended"),
                () = serve(handle, queue) => debug!("netlink task done"),
            }
        });
        Ok(Self { requests })
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, NetlinkError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(make(reply))
            .await
            .map_err(|_| NetlinkError::Stopped)?;
        answer.await.map_err(|_| NetlinkError::Stopped)?
    }

    /// Adds `addr/prefix_len` to `iface`. Succeeds if the address is already there,
    /// so a retried or repeated takeover is harmless.
    pub async fn add_address(
        &self,
        iface: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let iface = iface.to_owned();
        self.ask(|reply| Request::AddAddress {
            iface,
            addr,
            prefix_len,
            reply,
        })
        .await
    }

    /// Removes `addr/prefix_len` from `iface`. Succeeds if the address is not there,
    /// so releasing an address twice is harmless; fails if it is there under
    /// another prefix length, which is a configuration mismatch to report, not a
    /// release.
    pub async fn remove_address(
        &self,
        iface: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let iface = iface.to_owned();
        self.ask(|reply| Request::RemoveAddress {
            iface,
            addr,
            prefix_len,
            reply,
        })
        .await
    }

    /// The addresses configured on `iface`, with their prefix lengths, in the
    /// kernel's order (IPv6 link-local addresses included).
    pub async fn addresses(&self, iface: &str) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
        let iface = iface.to_owned();
        self.ask(|reply| Request::Addresses { iface, reply }).await
    }

    /// The kernel's index of `iface`.
    pub async fn link_index(&self, iface: &str) -> Result<u32, NetlinkError> {
        Ok(self.link(iface).await?.header.index)
    }

    /// The hardware address of `iface`, which must be an Ethernet-type link (a
    /// physical NIC, bond, VLAN, bridge or veth).
    pub async fn mac(&self, iface: &str) -> Result<MacAddr, NetlinkError> {
        let link = self.link(iface).await?;
        // Our announcements are Ethernet frames: loopback (whose address is six
        // zero bytes) and tunnels cannot carry them.
        if link.header.link_layer_type != LinkLayerType::Ether {
            return Err(NetlinkError::NoMac {
                iface: iface.to_owned(),
            });
        }
        link.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(bytes) => MacAddr::try_from(bytes.as_slice()).ok(),
                _ => None,
            })
            .ok_or_else(|| NetlinkError::NoMac {
                iface: iface.to_owned(),
            })
    }

    /// Whether `iface` is up: administratively up and with carrier, the state
    /// [`LinkChange::up`] reports.
    pub async fn link_up(&self, iface: &str) -> Result<bool, NetlinkError> {
        Ok(is_up(&self.link(iface).await?))
    }

    async fn link(&self, iface: &str) -> Result<LinkMessage, NetlinkError> {
        let iface = iface.to_owned();
        self.ask(|reply| Request::Link { iface, reply }).await
    }
}

/// Carries out requests in arrival order until every [`Netlink`] is dropped.
async fn serve(handle: Handle, mut queue: mpsc::Receiver<Request>) {
    while let Some(request) = queue.recv().await {
        // A caller that gave up (dropped its future) no longer wants the answer;
        // the change itself has been made, which is why requests are not cancelled.
        match request {
            Request::AddAddress {
                iface,
                addr,
                prefix_len,
                reply,
            } => {
                let _ = reply.send(add_address(&handle, iface, addr, prefix_len).await);
            }
            Request::RemoveAddress {
                iface,
                addr,
                prefix_len,
                reply,
            } => {
                let _ = reply.send(remove_address(&handle, iface, addr, prefix_len).await);
            }
            Request::Addresses { iface, reply } => {
                let _ = reply.send(addresses(&handle, iface).await);
            }
            Request::Link { iface, reply } => {
                let _ = reply.send(link(&handle, iface).await);
            }
        }
    }
}

/// The kernel's errno in a netlink error answer, positive (`EEXIST`, not `-EEXIST`).
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) if m.code.is_some() => Some(m.raw_code().abs()),
        _ => None,
    }
}

async fn link(handle: &Handle, iface: String) -> Result<LinkMessage, NetlinkError> {
    let found = handle
        .link()
        .get()
        .match_name(iface.clone())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(Some(link)) => Ok(link),
        Ok(None) => Err(NetlinkError::NoSuchInterface { iface }),
        Err(e) if errno(&e) == Some(ENODEV) => Err(NetlinkError::NoSuchInterface { iface }),
        Err(source) => Err(NetlinkError::Query {
            iface,
            what: "link",
            source,
        }),
    }
}

async fn add_address(
    handle: &Handle,
    iface: String,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    let index = link(handle, iface.clone()).await?.header.index;
    match handle
        .address()
        .add(index, addr, prefix_len)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(source) => Err(NetlinkError::AddAddress {
            iface,
            addr,
            prefix_len,
            source,
        }),
    }
}

async fn remove_address(
    handle: &Handle,
    iface: String,
    addr: IpAddr,
    prefix_len: u8,
) -> Result<(), NetlinkError> {
    let index = link(handle, iface.clone()).await?.header.index;
    let message = match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(a, prefix_len)
            .build(),
    };
    match handle.address().del(message).execute().await {
        Ok(()) => Ok(()),
        Err(source) if errno(&source) == Some(EADDRNOTAVAIL) => {
            // The kernel says the same when the address is there under another
            // prefix length. Calling that "removed" would let another node take an
            // address this one still answers for, so look before agreeing.
            let still_there = addresses(handle, iface.clone())
                .await?
                .iter()
                .any(|(ip, _)| *ip == addr);
            if still_there {
                Err(NetlinkError::RemoveAddress {
                    iface,
                    addr,
                    prefix_len,
                    source,
                })
            } else {
                Ok(())
            }
        }
        Err(source) => Err(NetlinkError::RemoveAddress {
            iface,
            addr,
            prefix_len,
            source,
        }),
    }
}

async fn addresses(handle: &Handle, iface: String) -> Result<Vec<(IpAddr, u8)>, NetlinkError> {
    let index = link(handle, iface.clone()).await?.header.index;
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|source| NetlinkError::Query {
            iface,
            what: "addresses",
            source,
        })?;
    Ok(messages
        .iter()
        .filter_map(|m| {
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
            // a point-to-point link and only equals ours elsewhere. IPv6 often
            // sends IFA_ADDRESS alone.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            local.or(address).map(|ip| (ip, m.header.prefix_len))
        })
        .collect())
}

fn is_up(link: &LinkMessage) -> bool {
    link.header
        .flags
        .contains(LinkFlags::Up | LinkFlags::LowerUp)
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// The link watcher's task; dropping this stops it.
#[derive(Debug)]
pub struct LinkWatcher {
    task: JoinHandle<()>,
}

impl Drop for LinkWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes a second netlink socket to link notifications and sends a
/// [`LinkChange`] to `events` whenever an interface's up state differs from what was
/// last reported for it. Spawns on the current tokio runtime. The watcher stops when
/// the returned [`LinkWatcher`] or the receiver of `events` is dropped.
///
/// It reports changes only; read the starting state with [`Netlink::link_up`] after
/// this returns, so that no change falls between the two.
pub fn watch_links(events: mpsc::Sender<LinkChange>) -> Result<LinkWatcher, NetlinkError> {
    let (connection, _handle, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link]).map_err(NetlinkError::Open)?;
    let task = tokio::spawn(async move {
        // The connection hands notifications to `messages` over an unbounded
        // channel. Its growth is bounded by the rate of link changes (the kernel
        // notifies only when an interface changes), and we drain it continuously,
        // waiting only while the bounded `events` channel is full.
        let forward = async {
            let mut reported: HashMap<String, bool> = HashMap::new();
            while let Some((message, _)) = messages.next().await {
                let (link, up) = match message.payload {
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        let up = is_up(&link);
                        (link, up)
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                        (link, false)
                    }
                    _ => continue,
                };
                let Some(iface) = link_name(&link) else {
                    continue;
                };
                if reported.get(iface) == Some(&up) {
                    continue;
                }
                reported.insert(iface.to_owned(), up);
                let change = LinkChange {
                    iface: iface.to_owned(),
                    up,
                };
                debug!(iface = %change.iface, up, "link changed");
                if events.send(change).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = connection => error!("link watch netlink connection ended"),
            () = forward => debug!("link watcher done"),
        }
    });
    Ok(LinkWatcher { task })
}

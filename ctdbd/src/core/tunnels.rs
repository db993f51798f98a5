//! CTDB's tunnels (reference core §4.7): a client registers a tunnel id on its
//! node (TUNNEL_REGISTER, the id in the control's srvid field), and REQ_TUNNEL
//! packets for that id reach it from clients on any node. 4.17's client library
//! offers them and its test programs use them; Samba does not.
//!
//! As in CTDB: one client per tunnel id on a node (a second registration is
//! refused); a client sends only on a tunnel id registered on its own node, to
//! one node named by pnn (its own included); a node delivers to the client that
//! registered the id, or logs and drops; a client's registrations end with its
//! connection. The daemons look at neither the flags nor the data.

use tracing::{debug, warn};

use super::{ClientId, Node, Output};
use crate::protocol::packet::{Body, Packet, ReqTunnel};

impl Node {
    /// TUNNEL_REGISTER from `client`: 0, or −1 if the id is taken on this node.
    pub(super) fn tunnel_register(&mut self, client: ClientId, tunnel_id: u64) -> i32 {
        if self.tunnels.contains_key(&tunnel_id) {
            warn!(
                client = client.0,
                tunnel = format_args!("{tunnel_id:#x}"),
                "tunnel id already registered"
            );
            return -1;
        }
        self.tunnels.insert(tunnel_id, client);
        debug!(
            client = client.0,
            tunnel = format_args!("{tunnel_id:#x}"),
            "tunnel registered"
        );
        0
    }

    /// TUNNEL_DEREGISTER from `client`: 0, or −1 if it had not registered the id.
    pub(super) fn tunnel_deregister(&mut self, client: ClientId, tunnel_id: u64) -> i32 {
        if self.tunnels.get(&tunnel_id) == Some(&client) {
            self.tunnels.remove(&tunnel_id);
            0
        } else {
            -1
        }
    }

    /// A client's connection is gone: so are its tunnels.
    pub(super) fn tunnels_of_gone_client(&mut self, client: ClientId) {
        self.tunnels.retain(|_, owner| *owner != client);
    }

    /// REQ_TUNNEL from a local client, for node `destnode`.
    pub(super) fn client_tunnel(
        &mut self,
        client: ClientId,
        destnode: u32,
        tunnel: ReqTunnel,
        out: &mut Vec<Output>,
    ) {
        self.stats.client.req_tunnel = self.stats.client.req_tunnel.wrapping_add(1);
        if !self.nodes.iter().any(|n| n.pnn == destnode) {
            warn!(
                client = client.0,
                destnode, "tunnel packet for a node that does not exist: dropped"
            );
            return;
        }
        if !self.tunnels.contains_key(&tunnel.tunnel_id) {
            warn!(
                client = client.0,
                tunnel = format_args!("{:#x}", tunnel.tunnel_id),
                "tunnel id not registered on this node: packet dropped"
            );
            return;
        }
        if destnode == self.pnn {
            self.deliver_tunnel(tunnel, out);
        } else {
            out.push(Output::SendToPeer {
                pnn: destnode,
                packet: Packet {
                    header: self.header(destnode, 0),
                    body: Body::ReqTunnel(tunnel),
                },
            });
        }
    }

    /// REQ_TUNNEL from another node.
    pub(super) fn peer_tunnel(&mut self, from: u32, tunnel: ReqTunnel, out: &mut Vec<Output>) {
        self.stats.node.req_tunnel = self.stats.node.req_tunnel.wrapping_add(1);
        debug!(
            peer = from,
            tunnel = format_args!("{:#x}", tunnel.tunnel_id),
            "tunnel packet"
        );
        self.deliver_tunnel(tunnel, out);
    }

    fn deliver_tunnel(&mut self, tunnel: ReqTunnel, out: &mut Vec<Output>) {
        let Some(client) = self.tunnels.get(&tunnel.tunnel_id).copied() else {
            warn!(
                tunnel = format_args!("{:#x}", tunnel.tunnel_id),
                "tunnel id not registered here: packet dropped"
            );
            return;
        };
        out.push(Output::SendToClient {
            client,
            packet: Packet {
                header: self.header(0, 0),
                body: Body::ReqTunnel(tunnel),
            },
        });
    }
}

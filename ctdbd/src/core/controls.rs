//! Answers to controls addressed to this node (reference §5.1, §6, §10).
//!
//! Each arm checks the exact request size the C daemon enforces, then answers. Results
//! that CTDB carries in the status field (PING, GET_PID, GET_PNN, ...) are returned
//! there. Unknown and obsolete opcodes get status −1 with no text, as 4.17 answers.

use super::{events, Node, Output, Requester};
use crate::protocol::control::{
    decode_tunable_name, encode_u32, encode_var_list, node_flags, AddrInfo, BanState, Iface,
    IfaceList, NodeFlagChange, Opcode, PidSrvid, PublicIp, PublicIpInfo, Tunable, Uptime, VnnMap,
};
use crate::protocol::packet::ReqControl;
use crate::protocol::statistics::{encode_statistics_list, Statistics};
use crate::protocol::wire::Reader;
use crate::tunables::{keys, SetOutcome, Tunables};

/// A failed control: `status` with optional text; data is always empty (§4.2).
pub(super) fn error(status: i32, text: &str) -> crate::protocol::ReplyControl {
    crate::protocol::ReplyControl {
        status,
        data: Vec::new(),
        error: text.as_bytes().to_vec(),
    }
}

fn status(value: i32) -> crate::protocol::ReplyControl {
    crate::protocol::ReplyControl {
        status: value,
        data: Vec::new(),
        error: Vec::new(),
    }
}

/// Request sizes the C daemon insists on; anything else is answered −1 (§5.1).
fn expected_len(opcode: Opcode) -> Option<usize> {
    Some(match opcode {
        Opcode::PROCESS_EXISTS
        | Opcode::SET_DEBUG
        | Opcode::SET_RECMODE
        | Opcode::SET_LMASTERROLE
        | Opcode::SET_RECMASTERROLE => 4,
        Opcode::CHECK_PID_SRVID | Opcode::MODIFY_FLAGS => 12,
        Opcode::SET_BAN_STATE => 8,
        Opcode::TAKEOVER_IP | Opcode::RELEASE_IP => 32,
        Opcode::GET_PUBLIC_IP_INFO => 28,
        Opcode::SET_IFACE_LINK_STATE => 24,
        Opcode::STATISTICS
        | Opcode::GET_DEBUG
        | Opcode::GETVNNMAP
        | Opcode::GET_DBMAP
        | Opcode::GET_NODEMAP
        | Opcode::PING
        | Opcode::GET_RUNSTATE
        | Opcode::GET_PUBLIC_IPS
        | Opcode::GET_IFACES
        | Opcode::STOP_NODE
        | Opcode::CONTINUE_NODE
        | Opcode::DISABLE_NODE
        | Opcode::ENABLE_NODE
        | Opcode::GET_BAN_STATE
        | Opcode::GET_RECLOCK_FILE
        | Opcode::IPREALLOCATED
        | Opcode::STARTUP
        | Opcode::STATISTICS_RESET
        | Opcode::GET_STAT_HISTORY
        | Opcode::DUMP_MEMORY => 0,
        _ => return None,
    })
}

/// Entries kept for GET_STAT_HISTORY (`ctdb stats`), newest first, as in 4.17.
pub(super) const MAX_STAT_HISTORY: usize = 100;

impl Node {
    /// `ctdb recover` set our recovery mode to active: the leader recovers the
    /// cluster at once (a new generation ends the tool's wait); a follower passes
    /// the request on to its leader, which does the same.
    pub(super) fn recovery_requested(&mut self, out: &mut Vec<Output>) {
        if self.is_leader() {
            self.recover(out);
        } else if let Some(leader) = self.leader {
            self.forward_control(
                leader,
                None,
                &ReqControl {
                    opcode: Opcode::SET_RECMODE.0,
                    srvid: 0,
                    client_id: 0,
                    flags: crate::protocol::packet::CTRL_FLAG_NOREPLY,
                    data: encode_u32(1),
                },
                out,
            );
        }
        // Without a leader the election under way ends in a recovery anyway.
    }

    /// `ctdb setlmasterrole` / `setleaderrole`. A leader that loses the leader role
    /// steps down (another capable node takes over, or none leads); the LMASTER role
    /// decides whether this node is in the vnn map, so a leader recovers at once.
    fn set_role(&mut self, opcode: Opcode, on: bool, out: &mut Vec<Output>) {
        let bit = if opcode == Opcode::SET_LMASTERROLE {
            crate::protocol::control::capabilities::LMASTER
        } else {
            crate::protocol::control::capabilities::RECMASTER
        };
        let before = self.capabilities;
        if on {
            self.capabilities |= bit;
        } else {
            self.capabilities &= !bit;
        }
        if before == self.capabilities {
            return;
        }
        if bit == crate::protocol::control::capabilities::RECMASTER {
            self.leader_capability = on;
            if !on && self.is_leader() {
                self.step_down("the leader role was switched off", out);
            }
        } else if self.is_leader() {
            self.recover(out);
        }
    }

    /// Adds an entry to the statistics history when one is due: what the counters did
    /// since the previous entry, as 4.17 keeps every `StatHistoryInterval` seconds.
    pub(super) fn stat_history_timer(&mut self) {
        if self.now.mono_ms < self.next_stat_history_ms {
            return;
        }
        let mut entry = self.stats.since(&self.stat_base);
        entry.num_clients = self.clients.len() as u32;
        entry.recovering = self.recovery_mode;
        entry.statistics_start_time = self.stat_interval_start;
        entry.statistics_current_time = self.now.wall;
        self.stat_history.push_front(entry);
        self.stat_history.truncate(MAX_STAT_HISTORY);
        self.stat_base = self.stats.clone();
        self.stat_interval_start = self.now.wall;
        let interval_ms = self
            .tunables
            .secs_as_ms(keys::STAT_HISTORY_INTERVAL)
            .max(1000);
        self.next_stat_history_ms = self.now.mono_ms + interval_ms;
    }

    /// `ctdb dumpmemory` and `rddumpmemory`: what the node holds, by kind. (4.17
    /// prints its talloc tree here; ours has no such allocator, so it lists the
    /// sizes of its own tables.)
    pub(super) fn memory_report(&self) -> String {
        let connections: usize = self.tickles.values().map(|c| c.len()).sum();
        format!(
            "ctdb-rs daemon state of node {}\n\
             \tclients: {}\n\
             \tnodes: {}\n\
             \tpublic addresses: {}\n\
             \tinterfaces: {}\n\
             \ttracked client connections: {}\n\
             \treplies deferred: {}\n",
            self.pnn,
            self.clients.len(),
            self.nodes.len(),
            self.public_ips.len(),
            self.ifaces.len(),
            connections,
            self.deferred.len(),
        )
    }

    /// After SET_TUNABLE: the core reads its tunables where it uses them, so only
    /// what was scheduled with the old value is redone here; the edges get the new
    /// values ([`Output::TunablesChanged`]).
    fn tunable_set(&mut self, name: &str, out: &mut Vec<Output>) {
        if Tunables::definition(name).map(|d| d.name) == Some(keys::MONITOR_INTERVAL.name()) {
            self.monitor_interval_changed();
        }
        out.push(Output::TunablesChanged(self.tunables.clone()));
    }

    /// Answers a control addressed to this node. `None` means the answer comes later
    /// (it needs the nodes file read); `reqid` is kept for that.
    pub(super) fn control(
        &mut self,
        from: Requester,
        reqid: u32,
        req: &ReqControl,
        out: &mut Vec<Output>,
    ) -> Option<crate::protocol::ReplyControl> {
        if from != Requester::Local {
            *self.counters.controls.entry(req.opcode).or_default() += 1;
        }
        let wants_reply = req.flags & crate::protocol::packet::CTRL_FLAG_NOREPLY == 0;
        let reqid = if wants_reply { reqid } else { 0 };
        if let Some(len) = expected_len(Opcode(req.opcode)) {
            if req.data.len() != len {
                return Some(error(-1, "control has the wrong request size"));
            }
        }
        match Opcode(req.opcode) {
            Opcode::RELEASE_IP | Opcode::TAKEOVER_IP if !self.may_move_addresses(from, req) => {
                Some(error(
                    -1,
                    "only the leader (or an administrator) moves public addresses",
                ))
            }
            Opcode::RELEASE_IP => self.release_ip(from, reqid, &req.data, out),
            Opcode::RELOAD_PUBLIC_IPS => {
                self.request_public_addresses(from, reqid, out);
                None
            }
            Opcode::TAKEOVER_IP => self.takeover_ip(from, reqid, &req.data, out),
            Opcode::GET_NODES_FILE | Opcode::RELOAD_NODES_FILE if !req.data.is_empty() => {
                Some(error(-1, "control has the wrong request size"))
            }
            Opcode::GET_NODES_FILE => {
                self.request_nodes_file(from, reqid, false, out);
                None
            }
            Opcode::RELOAD_NODES_FILE => {
                self.request_nodes_file(from, reqid, true, out);
                None
            }
            _ => Some(self.immediate_control(from, req, out)),
        }
    }

    fn immediate_control(
        &mut self,
        from: Requester,
        req: &ReqControl,
        out: &mut Vec<Output>,
    ) -> crate::protocol::ReplyControl {
        let now = self.now.wall;
        let opcode = Opcode(req.opcode);
        if let Some(len) = expected_len(opcode) {
            if req.data.len() != len {
                return error(-1, "control has the wrong request size");
            }
        }
        match opcode {
            Opcode::GET_PNN => status(self.pnn as i32),
            Opcode::GET_PID => status(self.daemon_pid),
            Opcode::PING => status(self.clients.len() as i32),
            Opcode::GET_RECMODE => status(self.recovery_mode as i32),
            Opcode::PROCESS_EXISTS => {
                let pid = i32::from_le_bytes(req.data[..4].try_into().expect("length checked"));
                let known = self.clients.values().any(|c| c.pid == pid);
                status(if known { 0 } else { -1 })
            }
            Opcode::CHECK_PID_SRVID => match PidSrvid::decode(&req.data) {
                Ok(ps) => {
                    let registered = self
                        .clients
                        .values()
                        .any(|c| c.pid == ps.pid && c.srvids.contains(&ps.srvid));
                    status(if registered { 0 } else { -1 })
                }
                Err(_) => error(-1, ""),
            },
            Opcode::REGISTER_SRVID => {
                let Requester::Client(client) = from else {
                    return error(-1, "srvids are registered by local clients");
                };
                if let Some(info) = self.clients.get_mut(&client) {
                    info.srvids.insert(req.srvid);
                }
                if req.srvid == crate::protocol::control::srvid::LEADER {
                    // Tell a new listener the leader at once instead of making it wait
                    // for the next broadcast: `ctdb status` answers in milliseconds
                    // where 4.17 takes up to a second.
                    if let Some(leader) = self.leader {
                        out.push(Output::SendToClient {
                            client,
                            packet: self.message_packet(
                                0,
                                crate::protocol::control::srvid::LEADER,
                                leader.to_le_bytes().to_vec(),
                            ),
                        });
                    }
                }
                status(0)
            }
            Opcode::TUNNEL_REGISTER | Opcode::TUNNEL_DEREGISTER => {
                let Requester::Client(client) = from else {
                    return error(-1, "tunnels are registered by local clients");
                };
                status(if opcode == Opcode::TUNNEL_REGISTER {
                    self.tunnel_register(client, req.srvid)
                } else {
                    self.tunnel_deregister(client, req.srvid)
                })
            }
            Opcode::DEREGISTER_SRVID => {
                if let Requester::Client(client) = from {
                    if let Some(info) = self.clients.get_mut(&client) {
                        info.srvids.remove(&req.srvid);
                    }
                }
                status(0)
            }
            Opcode::SETVNNMAP => match VnnMap::decode(&req.data) {
                Ok(map) => {
                    // Only the leader recovers the cluster; a stale leader's map after a
                    // new election would undo the new generation.
                    match from {
                        Requester::Peer(p) if self.leader.is_none() || self.leader == Some(p) => {
                            self.apply_vnn_map(&map);
                            status(0)
                        }
                        _ => error(-1, "vnn map accepted only from the leader"),
                    }
                }
                Err(_) => error(-1, ""),
            },
            Opcode::MODIFY_FLAGS => match NodeFlagChange::decode(&req.data) {
                Ok(change) => {
                    self.peer_flags(change, out);
                    status(0)
                }
                Err(_) => error(-1, ""),
            },
            Opcode::SET_RECMODE => match crate::protocol::control::decode_u32(&req.data, "recmode")
            {
                Ok(mode) if mode <= 1 => {
                    self.recovery_mode = mode;
                    if mode == 1 {
                        self.recovery_requested(out);
                    }
                    status(0)
                }
                _ => error(-1, ""),
            },
            Opcode::SET_LMASTERROLE | Opcode::SET_RECMASTERROLE => {
                let on = u32::from_le_bytes(req.data[..4].try_into().expect("length checked")) != 0;
                self.set_role(Opcode(req.opcode), on, out);
                status(0)
            }
            Opcode::SEND_GRATUITOUS_ARP => match AddrInfo::decode(&req.data) {
                Ok(AddrInfo {
                    addr,
                    iface: Some(iface),
                    ..
                }) => {
                    // As in 4.17, any address and interface are accepted: the
                    // announcement is sent in the background, and a missing interface
                    // is only logged.
                    out.push(Output::Announce {
                        iface,
                        addr: crate::protocol::wire::canonical_ip(addr),
                    });
                    status(0)
                }
                _ => error(-1, ""),
            },
            Opcode::STATISTICS_RESET => {
                self.stats = Statistics {
                    statistics_start_time: now,
                    ..Default::default()
                };
                self.stat_base = Statistics::default();
                status(0)
            }
            Opcode::GET_STAT_HISTORY => {
                let list: Vec<Statistics> = self.stat_history.iter().cloned().collect();
                Self::reply_ok(encode_statistics_list(&list))
            }
            Opcode::DUMP_MEMORY => {
                let mut text = self.memory_report().into_bytes();
                text.push(0);
                Self::reply_ok(text)
            }
            Opcode::DISABLE_NODE => self.admin_flag(node_flags::PERMANENTLY_DISABLED, true, out),
            Opcode::ENABLE_NODE => self.admin_flag(node_flags::PERMANENTLY_DISABLED, false, out),
            Opcode::STOP_NODE => self.admin_flag(node_flags::STOPPED, true, out),
            Opcode::CONTINUE_NODE => self.admin_flag(node_flags::STOPPED, false, out),
            Opcode::SET_BAN_STATE => match BanState::decode(&req.data) {
                // A node bans only itself (§6.9).
                Ok(ban) if ban.pnn == self.pnn => {
                    if ban.time > 0 && !self.tunables.enabled(keys::ENABLE_BANS) {
                        tracing::info!("ban requested while EnableBans = 0: ignored");
                    } else {
                        self.ban_self(ban.time, out);
                    }
                    status(0)
                }
                _ => error(-1, ""),
            },
            Opcode::GET_NODEMAP => Self::reply_ok(self.node_map().encode()),
            Opcode::GETVNNMAP => Self::reply_ok(
                VnnMap {
                    generation: self.generation,
                    map: self.vnn_map.clone(),
                }
                .encode(),
            ),
            Opcode::GET_RUNSTATE => Self::reply_ok(encode_u32(self.runstate as u32)),
            Opcode::GET_CAPABILITIES => Self::reply_ok(encode_u32(self.capabilities)),
            Opcode::GET_DEBUG => Self::reply_ok(encode_u32(self.debug_level)),
            Opcode::SET_DEBUG => {
                let level = u32::from_le_bytes(req.data[..4].try_into().expect("length checked"));
                self.debug_level = level;
                out.push(Output::SetDebugLevel(level));
                status(0)
            }
            Opcode::LIST_TUNABLES => Self::reply_ok(encode_var_list(Tunables::listed_names())),
            Opcode::GET_TUNABLE => match decode_tunable_name(&req.data) {
                Ok(name) => match self.tunables.get(&name) {
                    Ok(v) => Self::reply_ok(encode_u32(v)),
                    // 4.17 answers −EINVAL for an unknown name (§4.2).
                    Err(_) => error(-22, ""),
                },
                Err(_) => error(-1, ""),
            },
            Opcode::SET_TUNABLE => match Tunable::decode(&req.data) {
                Ok(t) => match self.tunables.set(&t.name, t.value) {
                    Ok(outcome) => {
                        self.tunable_set(&t.name, out);
                        status(match outcome {
                            SetOutcome::Set => 0,
                            SetOutcome::Obsolete => 1,
                        })
                    }
                    Err(_) => error(-1, ""),
                },
                Err(_) => error(-1, ""),
            },
            Opcode::UPTIME => Self::reply_ok(
                Uptime {
                    current_time: now,
                    ctdbd_start_time: self.start_time,
                    last_recovery_started: self.last_recovery_started,
                    last_recovery_finished: self.last_recovery_finished,
                }
                .encode(),
            ),
            Opcode::STATISTICS => {
                let mut s = self.stats.clone();
                s.num_clients = self.clients.len() as u32;
                s.recovering = self.recovery_mode;
                s.statistics_current_time = now;
                Self::reply_ok(s.encode())
            }
            Opcode::GET_DBMAP => Self::reply_ok(encode_u32(0)),
            Opcode::GET_RECLOCK_FILE => Self::reply_ok(match &self.cluster_lock {
                Some(lock) => {
                    let mut b = lock.as_bytes().to_vec();
                    b.push(0);
                    b
                }
                None => Vec::new(),
            }),
            Opcode::GET_PUBLIC_IPS => Self::reply_ok(
                self.public_ip_list(
                    req.flags & super::takeover::PUBLIC_IP_FLAGS_ONLY_AVAILABLE != 0,
                )
                .encode(),
            ),
            Opcode::GET_PUBLIC_IP_INFO => {
                let addr = match Reader::new(&req.data).sock_addr("public_ip_info.addr") {
                    Ok(a) => crate::protocol::wire::canonical_ip(a.ip()),
                    Err(_) => return error(-1, ""),
                };
                match self.public_ips.iter().find(|ip| ip.addr == addr) {
                    Some(ip) => Self::reply_ok(
                        PublicIpInfo {
                            ip: PublicIp {
                                pnn: if ip.active_iface.is_some() {
                                    self.pnn
                                } else {
                                    ip.pnn
                                },
                                addr: ip.addr,
                            },
                            active_idx: ip.active_iface.map(|i| i as u32),
                            ifaces: ip
                                .ifaces
                                .iter()
                                .map(|name| self.iface_record(name))
                                .collect(),
                        }
                        .encode(),
                    ),
                    None => error(-1, ""),
                }
            }
            Opcode::GET_IFACES => Self::reply_ok(
                IfaceList {
                    ifaces: self
                        .ifaces
                        .iter()
                        .map(|i| self.iface_record(&i.name))
                        .collect(),
                }
                .encode(),
            ),
            Opcode::SET_IFACE_LINK_STATE => match Iface::decode(&req.data) {
                Ok(wanted) if wanted.references == 0 => {
                    if self.ifaces.iter().any(|i| i.name == wanted.name) {
                        self.link_changed(&wanted.name, wanted.link_up, out);
                        status(0)
                    } else {
                        error(-1, "interface not found")
                    }
                }
                _ => error(-1, ""),
            },
            Opcode::GET_BAN_STATE => Self::reply_ok(
                BanState {
                    pnn: self.pnn,
                    time: self
                        .banned_until_ms
                        .map(|t| t.saturating_sub(self.now.mono_ms).div_ceil(1000) as u32)
                        .unwrap_or(0),
                }
                .encode(),
            ),
            Opcode::SHUTDOWN => {
                out.push(Output::Shutdown);
                status(0)
            }
            Opcode::STARTUP => status(0),
            Opcode::IPREALLOCATED => {
                // The run that moved addresses is over: every new owner holds its.
                for ip in &mut self.public_ips {
                    ip.unsettled = false;
                }
                self.queue_event(
                    crate::events::Event::IpReallocated,
                    events::AfterEvent::Nothing,
                );
                status(0)
            }
            // 4.17 still implements these two obsolete controls as per-client counters.
            Opcode::START_PERSISTENT_UPDATE | Opcode::CANCEL_PERSISTENT_UPDATE => status(0),
            op if op.is_obsolete() => status(-1),
            Opcode::TCP_CLIENT if !matches!(from, Requester::Client(_)) => {
                error(-1, "TCP_CLIENT comes from local clients")
            }
            // smbd's TCP_CLIENT registrations end with its connection; `ctdb addtickle`
            // (the delayed-update form) outlives the tool, as in CTDB. We replicate at
            // once either way.
            Opcode::TCP_CLIENT => self.tcp_add(from, true, &req.data, out),
            Opcode::TCP_ADD | Opcode::TCP_ADD_DELAYED_UPDATE => {
                self.tcp_add(from, false, &req.data, out)
            }
            Opcode::TCP_REMOVE => self.tcp_remove(from, &req.data, out),
            Opcode::GET_TCP_TICKLE_LIST => self.tickle_list(&req.data),
            Opcode::SET_TCP_TICKLE_LIST => self.set_tickle_list(&req.data),
            Opcode::ADD_PUBLIC_IP => self.add_public_ip(&req.data, out),
            Opcode::DEL_PUBLIC_IP => self.del_public_ip(&req.data, out),
            Opcode::DB_ATTACH | Opcode::DB_GET_HEALTH | Opcode::GET_DBNAME | Opcode::GETDBPATH => {
                error(-1, "control not implemented yet by ctdb-rs")
            }
            // Unknown numbers: −1 without text, as 4.17 (observed).
            _ => status(-1),
        }
    }

    /// Sets or clears one of this node's administrative flags.
    fn admin_flag(
        &mut self,
        flag: u32,
        set: bool,
        out: &mut Vec<Output>,
    ) -> crate::protocol::ReplyControl {
        let flags = if set {
            self.own_flags() | flag
        } else {
            self.own_flags() & !flag
        };
        self.set_own_flags(flags, out);
        status(0)
    }

    /// The wire record of interface `name`: its link state and how many public
    /// addresses this node has on it.
    fn iface_record(&self, name: &str) -> Iface {
        let link_up = self
            .ifaces
            .iter()
            .find(|i| i.name == name)
            .is_some_and(|i| i.link_up);
        let references = self
            .public_ips
            .iter()
            .filter(|ip| {
                ip.pnn == self.pnn
                    && ip
                        .active_iface
                        .and_then(|i| ip.ifaces.get(i))
                        .is_some_and(|n| n == name)
            })
            .count() as u32;
        Iface {
            name: name.to_owned(),
            link_up,
            references,
        }
    }
}

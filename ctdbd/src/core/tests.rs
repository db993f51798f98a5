//! Unit tests of the core: packets in, packets out, no sockets.

use super::*;
use crate::events::{Event, EventKind};
use crate::protocol::control::{
    encode_tunable_name, Iface, IfaceList, Opcode, PublicIpInfo, Tunable,
};
use crate::protocol::control::{SrvidMessage, VnnMap};
use crate::protocol::packet::{ReqControl, CTRL_FLAG_NOREPLY};
use crate::protocol::packet::{BROADCAST_ALL, BROADCAST_CONNECTED, CURRENT_NODE};

const NOW: Now = Now {
    mono_ms: 0,
    wall: Timeval {
        sec: 1_700_000_000,
        usec: 0,
    },
};
const TOOL: ClientId = ClientId(1);
const OTHER: ClientId = ClientId(2);

/// Node 0 of three (node 2 deleted), two public addresses on eth1/eth2.
/// Feeding a node as the daemon does, with a database thread that has no
/// databases: a recovery's database step is answered at once, and its outputs
/// take the place of the request.
trait Feed {
    fn feed(&mut self, now: Now, input: Input) -> Vec<Output>;
}

impl Feed for Node {
    fn feed(&mut self, now: Now, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        for output in self.handle(now, input) {
            match output {
                Output::RecoverDatabases { generation, .. } => out.extend(self.feed(
                    now,
                    Input::DatabasesRecovered {
                        generation,
                        ok: true,
                        culprit: None,
                    },
                )),
                other => out.push(other),
            }
        }
        out
    }
}

fn node() -> Node {
    node_with_lock(None)
}

/// `node()`, with the recovery lock `cluster_lock` (`None`: no lock, node 0 leads).
fn node_with_lock(cluster_lock: Option<&str>) -> Node {
    build_node(cluster_lock, None)
}

/// `node_with_lock`, with node 2 at `third` instead of deleted.
fn build_node(cluster_lock: Option<&str>, third: Option<&str>) -> Node {
    let mut node = Node::new(NodeConfig {
        pnn: 0,
        nodes: vec![
            Some("192.168.20.41".parse().unwrap()),
            Some("192.168.20.42".parse().unwrap()),
            third.map(|a| a.parse().unwrap()),
        ],
        public_addresses: vec![
            (
                "10.0.0.31".parse().unwrap(),
                24,
                vec!["eth2".into(), "eth1".into()],
            ),
            ("10.0.0.32".parse().unwrap(), 24, vec!["eth2".into()]),
        ],
        tunables: Tunables::default(),
        debug_level: 3,
        leader_capability: true,
        lmaster_capability: true,
        cluster_lock: cluster_lock.map(str::to_owned),
        leader_timeout_s: 5,
        start_disabled: false,
        start_stopped: false,
        daemon_pid: 4242,
        incarnation: 0x0000_0000_0000_4242,
        seed: 7,
        start: NOW,
    });
    node.feed(
        NOW,
        Input::ClientConnected {
            client: TOOL,
            pid: 100,
        },
    );
    node.feed(
        NOW,
        Input::ClientConnected {
            client: OTHER,
            pid: 200,
        },
    );
    node
}

/// Answers every event the node runs with success until none is left (a monitor
/// comes back only after `MonitorInterval`), and returns what that produced.
fn finish_events(n: &mut Node, now: Now) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some((id, _)) = n.events.in_progress().first().copied() {
        out.extend(n.feed(
            now,
            Input::EventDone {
                id,
                outcome: EventOutcome::Ok,
            },
        ));
    }
    out
}

fn control_packet(dest: u32, opcode: Opcode, srvid: u64, flags: u32, data: Vec<u8>) -> Packet {
    Packet {
        header: Header {
            generation: 0,
            destnode: dest,
            srcnode: UNKNOWN_PNN,
            reqid: 77,
        },
        body: Body::ReqControl(ReqControl {
            opcode: opcode.0,
            srvid,
            client_id: 0,
            flags,
            data,
        }),
    }
}

/// Sends a control from TOOL and returns the single reply plus any other outputs.
fn call(node: &mut Node, opcode: Opcode, data: Vec<u8>) -> (ReplyControl, Vec<Output>) {
    call_to(node, CURRENT_NODE, opcode, 0, data)
}

fn call_to(
    node: &mut Node,
    dest: u32,
    opcode: Opcode,
    srvid: u64,
    data: Vec<u8>,
) -> (ReplyControl, Vec<Output>) {
    let out = node.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(dest, opcode, srvid, 0, data),
        },
    );
    let mut reply = None;
    let mut rest = Vec::new();
    for o in out {
        match o {
            Output::SendToClient {
                client: TOOL,
                packet:
                    Packet {
                        header,
                        body: Body::ReplyControl(r),
                    },
            } => {
                assert_eq!(header.reqid, 77, "reply must echo the reqid");
                assert!(reply.replace(r).is_none(), "two replies");
            }
            other => rest.push(other),
        }
    }
    (reply.expect("no reply to the control"), rest)
}

#[test]
fn get_pnn_and_get_pid_answer_in_the_status() {
    let mut n = node();
    assert_eq!(call(&mut n, Opcode::GET_PNN, vec![]).0.status, 0);
    assert_eq!(call(&mut n, Opcode::GET_PID, vec![]).0.status, 4242);
    assert_eq!(
        call(&mut n, Opcode::PING, vec![]).0.status,
        2,
        "two clients"
    );
}

#[test]
fn node_map_lists_every_node_in_pnn_order_with_flags() {
    let mut n = node();
    let (reply, _) = call(&mut n, Opcode::GET_NODEMAP, vec![]);
    let map = NodeMap::decode(&reply.data).unwrap();
    let flags: Vec<u32> = map.nodes.iter().map(|n| n.flags).collect();
    // Itself UNHEALTHY until its first monitor event, the absent node
    // DISCONNECTED|UNHEALTHY, the deleted one DELETED|DISCONNECTED.
    assert_eq!(flags, vec![0x02, 0x03, 0x11]);
    assert_eq!(map.nodes[1].addr, "192.168.20.42:4379".parse().unwrap());
}

#[test]
fn control_to_an_absent_node_fails_with_ctdbs_text() {
    let mut n = node();
    let (reply, _) = call_to(&mut n, 1, Opcode::PING, 0, vec![]);
    assert_eq!(reply.status, -1);
    assert_eq!(reply.error, b"ctdb_control to disconnected node");
    assert!(reply.data.is_empty());
}

#[test]
fn broadcast_control_wanting_a_reply_is_dropped_silently() {
    let mut n = node();
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(BROADCAST_ALL, Opcode::PING, 0, 0, vec![]),
        },
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn unknown_obsolete_and_wrongly_sized_controls_get_minus_one() {
    let mut n = node();
    for (opcode, data) in [
        (Opcode(200), vec![]),
        (Opcode(10), vec![]),
        (Opcode::PROCESS_EXISTS, vec![1, 0]),
        (Opcode::GET_NODEMAP, vec![0; 4]),
    ] {
        let (reply, _) = call(&mut n, opcode, data);
        assert_eq!(reply.status, -1, "opcode {}", opcode.0);
        assert!(reply.data.is_empty());
    }
}

#[test]
fn registering_for_the_leader_delivers_it_at_once_and_every_tick() {
    let mut n = node();
    let (reply, out) = call(&mut n, Opcode::REGISTER_SRVID, vec![]);
    assert_eq!(reply.status, 0);
    assert!(out.is_empty(), "srvid 0 is not the leader srvid");
    let (_, out) = call_to(
        &mut n,
        CURRENT_NODE,
        Opcode::REGISTER_SRVID,
        srvid::LEADER,
        vec![],
    );
    let expected = Output::SendToClient {
        client: TOOL,
        packet: Packet {
            header: Header {
                generation: n.generation(),
                destnode: 0,
                srcnode: 0,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage {
                srvid: srvid::LEADER,
                data: vec![0, 0, 0, 0],
            }),
        },
    };
    assert_eq!(out, vec![expected.clone()]);
    // The periodic broadcast repeats it once a second.
    let later = Now {
        mono_ms: 1000,
        ..NOW
    };
    assert_eq!(n.feed(later, Input::Tick), vec![expected]);
}

/// TAKEOVER_RUN from the tool is answered with the leader's pnn after the run that
/// follows it (§8.1), not before.
#[test]
fn takeover_run_request_is_answered_with_the_leader_pnn() {
    let mut n = node();
    let reply_srvid = 0xce01_0000_36a6_0001;
    call_to(
        &mut n,
        CURRENT_NODE,
        Opcode::REGISTER_SRVID,
        reply_srvid,
        vec![],
    );
    let msg = Packet {
        header: Header {
            generation: 0,
            destnode: BROADCAST_CONNECTED,
            srcnode: 0,
            reqid: 78,
        },
        body: Body::ReqMessage(ReqMessage {
            srvid: srvid::TAKEOVER_RUN,
            data: SrvidMessage {
                pnn: 0,
                srvid: reply_srvid,
            }
            .encode(),
        }),
    };
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: OTHER,
            packet: msg,
        },
    );
    assert!(out.is_empty(), "answered before any run: {out:?}");
    // The run starts once earlier leases have surely run out (1 s + 0.2 s after the
    // election); it places both public addresses here and completes when the kernel
    // has added them.
    let later = Now {
        mono_ms: 1_300,
        ..NOW
    };
    // Start-up: the first recovery's events, `startup`, the first monitor.
    let mut out = finish_events(&mut n, later);
    out.extend(n.feed(later, Input::Tick));
    let adds: Vec<std::net::IpAddr> = out
        .iter()
        .filter_map(|o| match o {
            Output::AddAddress { addr, .. } => Some(*addr),
            _ => None,
        })
        .collect();
    assert_eq!(adds.len(), 2, "{out:?}");
    for addr in adds {
        out.extend(n.feed(
            later,
            Input::AddressAdded {
                addr,
                result: Ok(()),
            },
        ));
    }
    // Each address's takeip event, then the run completes.
    out.extend(finish_events(&mut n, later));
    let answers: Vec<&Packet> = out
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient {
                client: TOOL,
                packet,
            } => Some(packet),
            _ => None,
        })
        .filter(|p| matches!(&p.body, Body::ReqMessage(m) if m.srvid == reply_srvid))
        .collect();
    assert_eq!(answers.len(), 1, "{out:?}");
    assert_eq!(
        answers[0].body,
        Body::ReqMessage(ReqMessage {
            srvid: reply_srvid,
            data: 0i32.to_le_bytes().to_vec()
        })
    );
}

#[test]
fn messages_reach_registered_clients_only_and_registrations_end_with_the_client() {
    let mut n = node();
    let id = 0xAE00_0000_0000_0001;
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: OTHER,
            packet: control_packet(CURRENT_NODE, Opcode::REGISTER_SRVID, id, 0, vec![]),
        },
    );
    assert_eq!(out.len(), 1);
    let send = |n: &mut Node| {
        n.feed(
            NOW,
            Input::ClientPacket {
                client: TOOL,
                packet: Packet {
                    header: Header {
                        generation: 0,
                        destnode: 0,
                        srcnode: 0,
                        reqid: 1,
                    },
                    body: Body::ReqMessage(ReqMessage {
                        srvid: id,
                        data: b"hi".to_vec(),
                    }),
                },
            },
        )
    };
    let out = send(&mut n);
    assert!(
        matches!(&out[..], [Output::SendToClient { client: OTHER, .. }]),
        "{out:?}"
    );
    // CHECK_PID_SRVID sees the registration of pid 200.
    let (reply, _) = call(&mut n, Opcode::CHECK_PID_SRVID, pid_srvid(200, id));
    assert_eq!(reply.status, 0);
    n.feed(NOW, Input::ClientGone { client: OTHER });
    assert!(send(&mut n).is_empty());
    let (reply, _) = call(&mut n, Opcode::CHECK_PID_SRVID, pid_srvid(200, id));
    assert_eq!(reply.status, -1);
}

fn pid_srvid(pid: i32, id: u64) -> Vec<u8> {
    crate::protocol::control::PidSrvid { pid, srvid: id }.encode()
}

#[test]
fn tunables_get_set_obsolete_and_unknown() {
    let mut n = node();
    let (r, _) = call(
        &mut n,
        Opcode::GET_TUNABLE,
        encode_tunable_name("enablebans"),
    );
    assert_eq!((r.status, r.data), (0, vec![1, 0, 0, 0]));
    let (r, _) = call(
        &mut n,
        Opcode::GET_TUNABLE,
        encode_tunable_name("NoSuchVar"),
    );
    assert_eq!(r.status, -22);
    let set = |name: &str| {
        Tunable {
            name: name.into(),
            value: 2,
        }
        .encode()
    };
    assert_eq!(
        call(&mut n, Opcode::SET_TUNABLE, set("RecoverInterval"))
            .0
            .status,
        0
    );
    assert_eq!(
        call(&mut n, Opcode::SET_TUNABLE, set("DeterministicIPs"))
            .0
            .status,
        1
    );
    assert_eq!(call(&mut n, Opcode::SET_TUNABLE, set("Bogus")).0.status, -1);
    let (r, _) = call(
        &mut n,
        Opcode::GET_TUNABLE,
        encode_tunable_name("RecoverInterval"),
    );
    assert_eq!(r.data, vec![2, 0, 0, 0]);
}

#[test]
fn process_exists_knows_connected_clients() {
    let mut n = node();
    assert_eq!(
        call(
            &mut n,
            Opcode::PROCESS_EXISTS,
            100i32.to_le_bytes().to_vec()
        )
        .0
        .status,
        0
    );
    assert_eq!(
        call(
            &mut n,
            Opcode::PROCESS_EXISTS,
            999i32.to_le_bytes().to_vec()
        )
        .0
        .status,
        -1
    );
}

#[test]
fn interfaces_are_listed_newest_first_and_link_state_can_be_set() {
    let mut n = node();
    let (r, _) = call(&mut n, Opcode::GET_IFACES, vec![]);
    let names: Vec<String> = IfaceList::decode(&r.data)
        .unwrap()
        .ifaces
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["eth1", "eth2"]);
    let down = Iface {
        name: "eth1".into(),
        link_up: false,
        references: 0,
    }
    .encode();
    assert_eq!(call(&mut n, Opcode::SET_IFACE_LINK_STATE, down).0.status, 0);
    let unknown = Iface {
        name: "eth9".into(),
        link_up: false,
        references: 0,
    }
    .encode();
    assert_eq!(
        call(&mut n, Opcode::SET_IFACE_LINK_STATE, unknown).0.status,
        -1
    );
    let (r, _) = call(&mut n, Opcode::GET_IFACES, vec![]);
    assert!(!IfaceList::decode(&r.data).unwrap().ifaces[0].link_up);
}

#[test]
fn public_ip_info_lists_configured_interfaces_in_file_order() {
    let mut n = node();
    let mut w = crate::protocol::wire::Writer::new();
    w.sock_addr(&"10.0.0.31:0".parse().unwrap());
    let (r, _) = call(&mut n, Opcode::GET_PUBLIC_IP_INFO, w.into_bytes());
    let info = PublicIpInfo::decode(&r.data).unwrap();
    assert_eq!(info.ip.pnn, UNKNOWN_PNN);
    assert_eq!(info.active_idx, None);
    let names: Vec<&str> = info.ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, vec!["eth2", "eth1"]);
}

#[test]
fn shutdown_with_noreply_sends_nothing_and_asks_to_stop() {
    let mut n = node();
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(CURRENT_NODE, Opcode::SHUTDOWN, 0, CTRL_FLAG_NOREPLY, vec![]),
        },
    );
    assert_eq!(out, vec![Output::Shutdown]);
}

/// Regression (found by the random fault schedules, seed 0x4c9994d1871cfa28): a
/// follower that followed a stale leader when the new leader's vnn map arrived
/// rejected it and kept an old generation for good. Every header carries the
/// sender's generation; the leader now resends the map when a keepalive shows an old
/// one.
#[test]
fn leader_resends_the_vnn_map_to_a_node_with_an_old_generation() {
    let mut n = node();
    assert!(n.is_leader(), "node 0 leads alone without a lock");
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    let keepalive = |generation| Packet {
        header: Header {
            generation,
            destnode: 0,
            srcnode: 1,
            reqid: 0,
        },
        body: Body::ReqKeepalive {
            version: Some(0x0004_0011),
            uptime: Some(1),
        },
    };
    let current = n.generation();
    let out = n.feed(
        NOW,
        Input::PeerPacket {
            pnn: 1,
            packet: keepalive(current),
        },
    );
    assert!(
        out.is_empty(),
        "an up-to-date follower needs nothing: {out:?}"
    );
    let out = n.feed(
        NOW,
        Input::PeerPacket {
            pnn: 1,
            packet: keepalive(current ^ 1),
        },
    );
    let sent: Vec<(u32, &Body)> = out
        .iter()
        .map(|o| match o {
            Output::SendToPeer { pnn, packet } => (*pnn, &packet.body),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(matches!(sent[0], (1, Body::ReqMessage(m)) if m.srvid == srvid::LEADER));
    assert!(matches!(sent[1], (1, Body::ReqControl(c)) if c.opcode == Opcode::SETVNNMAP.0));
    assert_eq!(sent.len(), 2);
}

/// Regression (found by the 3-node namespace scenario): GETVNNMAP answered the
/// single-node map instead of the one the leader's recovery installed.
#[test]
fn vnn_map_lists_every_active_node_after_recovery() {
    let mut n = node();
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    let (reply, _) = call(&mut n, Opcode::GETVNNMAP, vec![]);
    let map = VnnMap::decode(&reply.data).unwrap();
    assert_eq!(map.generation, n.generation());
    // Node 1 connected but still UNHEALTHY until it reports its flags: active all
    // the same (UNHEALTHY is not INACTIVE), so it holds a slot.
    assert_eq!(map.map, vec![0, 1]);
}

// ---- event scripts ------------------------------------------------------------

/// Answers the oldest event in progress with `outcome`; returns its kind and what
/// the node did.
fn finish_one(n: &mut Node, now: Now, outcome: EventOutcome) -> (EventKind, Vec<Output>) {
    let (id, kind) = *n
        .events
        .in_progress()
        .first()
        .expect("an event in progress");
    (kind, n.feed(now, Input::EventDone { id, outcome }))
}

fn own_flags(n: &Node) -> u32 {
    n.flags_of(n.pnn()).unwrap()
}

fn at(ms: u64) -> Now {
    Now { mono_ms: ms, ..NOW }
}

/// Given a node that has just been through its first recovery, then it runs
/// `startrecovery`, `recovered` and `startup` in that order, is RUNNING only after
/// `startup` succeeded, runs `monitor` at once, and is UNHEALTHY until that monitor
/// succeeds.
#[test]
fn startup_follows_the_first_recovery_and_the_first_good_monitor_makes_the_node_healthy() {
    let mut n = node();
    assert_eq!(own_flags(&n), node_flags::UNHEALTHY);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(finish_one(&mut n, NOW, EventOutcome::Ok).0);
    }
    assert_eq!(
        order,
        [
            EventKind::StartRecovery,
            EventKind::Recovered,
            EventKind::Startup
        ]
    );
    assert_eq!(n.runstate, Runstate::Running);
    assert_eq!(n.events.in_progress(), [(4, EventKind::Monitor)]);
    assert_eq!(own_flags(&n), node_flags::UNHEALTHY);
    finish_one(&mut n, NOW, EventOutcome::Ok);
    assert_eq!(own_flags(&n), 0);
}

/// Given a node whose first monitor is running, when another node joins and the
/// recovery's events cancel that monitor, then the monitor runs again as soon as
/// those events have ended (at the same instant, not `MonitorInterval` later), and
/// its success makes the node healthy.
#[test]
fn a_cancelled_first_monitor_runs_again_as_soon_as_the_other_events_end() {
    let mut n = node();
    for _ in 0..3 {
        finish_one(&mut n, NOW, EventOutcome::Ok);
    }
    let [(first, EventKind::Monitor)] = n.events.in_progress()[..] else {
        panic!("no first monitor: {:?}", n.events.in_progress());
    };
    let out = n.feed(NOW, Input::PeerConnected { pnn: 1 });
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::RunEvent {
                event: Event::StartRecovery,
                ..
            }
        )),
        "the join started no recovery: {out:?}"
    );
    // The edge cancels the monitor for the recovery's event.
    n.feed(
        NOW,
        Input::EventDone {
            id: first,
            outcome: EventOutcome::Cancelled,
        },
    );
    assert_eq!(own_flags(&n), node_flags::UNHEALTHY);
    let mut kinds = Vec::new();
    while let Some(&(_, kind)) = n.events.in_progress().first() {
        if kind == EventKind::Monitor {
            break;
        }
        kinds.push(finish_one(&mut n, NOW, EventOutcome::Ok).0);
    }
    assert!(kinds.contains(&EventKind::Recovered), "{kinds:?}");
    let [(again, EventKind::Monitor)] = n.events.in_progress()[..] else {
        panic!(
            "no monitor once the recovery's events ended: {:?}",
            n.events.in_progress()
        );
    };
    assert_ne!(again, first);
    finish_one(&mut n, NOW, EventOutcome::Ok);
    assert_eq!(own_flags(&n), 0);
}

/// Given a failing `startup`, then the node stays in STARTUP, runs no monitor, and
/// tries `startup` again after STARTUP_RETRY_MS.
#[test]
fn a_failed_startup_is_retried_and_no_monitor_runs_before_it_succeeds() {
    let mut n = node();
    finish_one(&mut n, NOW, EventOutcome::Ok);
    finish_one(&mut n, NOW, EventOutcome::Ok);
    let (kind, _) = finish_one(&mut n, NOW, EventOutcome::Failed);
    assert_eq!(kind, EventKind::Startup);
    assert_eq!(n.runstate, Runstate::Startup);
    assert!(n.events.in_progress().is_empty());
    assert_eq!(n.poll_timeout().min(STARTUP_RETRY_MS), n.poll_timeout());
    n.feed(at(STARTUP_RETRY_MS), Input::Tick);
    // Other events may come first (the takeover run's `ipreallocated`).
    let mut kinds = Vec::new();
    while !n.events.in_progress().is_empty() && kinds.len() < 10 {
        kinds.push(finish_one(&mut n, at(STARTUP_RETRY_MS), EventOutcome::Ok).0);
    }
    assert!(kinds.contains(&EventKind::Startup), "{kinds:?}");
    assert_eq!(n.runstate, Runstate::Running);
}

/// Given a healthy node, when a monitor fails, then it is UNHEALTHY; a cancelled
/// monitor changes nothing; a good one makes it healthy again; timeouts count only
/// from `MonitorTimeoutCount` in a row.
#[test]
fn monitor_results_set_and_clear_unhealthy() {
    let mut n = node();
    n.tunables.set("MonitorTimeoutCount", 2).unwrap();
    finish_events(&mut n, NOW);
    assert_eq!(own_flags(&n), 0);
    let mut t = 0;
    let mut next_monitor = |n: &mut Node, outcome| {
        t += 15_000;
        n.feed(at(t), Input::Tick);
        let (kind, _) = finish_one(n, at(t), outcome);
        assert_eq!(kind, EventKind::Monitor);
        // Answer what the flag change started (a takeover run's events).
        finish_events_except_monitor(n, at(t));
        own_flags(n)
    };
    assert_eq!(
        next_monitor(&mut n, EventOutcome::Failed),
        node_flags::UNHEALTHY
    );
    assert_eq!(
        next_monitor(&mut n, EventOutcome::Cancelled),
        node_flags::UNHEALTHY
    );
    assert_eq!(next_monitor(&mut n, EventOutcome::Ok), 0);
    assert_eq!(next_monitor(&mut n, EventOutcome::TimedOut), 0);
    assert_eq!(
        next_monitor(&mut n, EventOutcome::TimedOut),
        node_flags::UNHEALTHY
    );
}

/// Answers every event but a monitor with success.
fn finish_events_except_monitor(n: &mut Node, now: Now) {
    while let Some((id, _)) = n
        .events
        .in_progress()
        .into_iter()
        .find(|(_, kind)| *kind != EventKind::Monitor)
    {
        n.feed(
            now,
            Input::EventDone {
                id,
                outcome: EventOutcome::Ok,
            },
        );
    }
}

/// Given a TAKEOVER_IP, when the kernel has added the address, then `takeip` runs
/// with CTDB's arguments, and only when it ends is the address announced and the
/// control answered. A RELEASE_IP removes the address first, then runs `releaseip`,
/// then answers.
#[test]
fn takeip_runs_before_the_announcement_and_releaseip_after_the_removal() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let addr: std::net::IpAddr = "10.0.0.32".parse().unwrap();
    let ip = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    let (_, out) = call_to_deferred(&mut n, Opcode::TAKEOVER_IP, ip.clone());
    assert!(
        out.iter().any(|o| matches!(o, Output::AddAddress { .. })),
        "{out:?}"
    );
    let out = n.feed(
        NOW,
        Input::AddressAdded {
            addr,
            result: Ok(()),
        },
    );
    let events: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::RunEvent { event, .. } => Some(event.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["takeip eth2 10.0.0.32 24"]);
    assert!(!out
        .iter()
        .any(|o| matches!(o, Output::Announce { .. } | Output::SendToClient { .. })));
    let (_, out) = finish_one(&mut n, NOW, EventOutcome::Ok);
    assert!(out.iter().any(|o| matches!(o, Output::Announce { .. })));
    assert!(out.iter().any(|o| is_reply_to_tool(o, 0)), "{out:?}");

    let (_, out) = call_to_deferred(&mut n, Opcode::RELEASE_IP, ip);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::RemoveAddress { .. })));
    let out = n.feed(
        NOW,
        Input::AddressRemoved {
            addr,
            result: Ok(()),
        },
    );
    assert!(!out.iter().any(|o| is_reply_to_tool(o, 0)), "{out:?}");
    let (kind, out) = finish_one(&mut n, NOW, EventOutcome::Failed);
    assert_eq!(kind, EventKind::ReleaseIp);
    assert!(out.iter().any(|o| is_reply_to_tool(o, 0)), "{out:?}");
    assert!(n.hosted_addresses().is_empty());
}

/// Node `n` takes `addr` (TAKEOVER_IP from the tool; the kernel adds it; takeip
/// runs).
fn host(n: &mut Node, addr: std::net::IpAddr) -> Vec<Output> {
    finish_events(n, NOW);
    let ip = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    call_to_deferred(n, Opcode::TAKEOVER_IP, ip);
    n.feed(
        NOW,
        Input::AddressAdded {
            addr,
            result: Ok(()),
        },
    );
    let (kind, out) = finish_one(n, NOW, EventOutcome::Ok);
    assert_eq!(kind, EventKind::TakeIp);
    out
}

/// Sends a control from the tool that may be answered later; returns the reqid and
/// the outputs.
fn call_to_deferred(n: &mut Node, opcode: Opcode, data: Vec<u8>) -> (u32, Vec<Output>) {
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(CURRENT_NODE, opcode, 0, 0, data),
        },
    );
    (77, out)
}

fn is_reply_to_tool(o: &Output, status: i32) -> bool {
    matches!(o, Output::SendToClient { client: TOOL, packet: Packet { body: Body::ReplyControl(r), .. } } if r.status == status)
}

// ---- lease guards and guardian notices (takeover's module docs) ----------------

/// Node 1's incarnation in these tests.
const PEER_RUN: u64 = 0x0123_4567_89ab_cdef;

/// A message from node 1 over its link.
fn from_peer(srvid: u64, data: Vec<u8>) -> Input {
    Input::PeerPacket {
        pnn: 1,
        packet: Packet {
            header: Header {
                generation: 0,
                destnode: 0,
                srcnode: 1,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage { srvid, data }),
        },
    }
}

/// The lease requests node 0 sent node 1 in `out`: their sequence numbers.
fn lease_requests(out: &[Output]) -> Vec<u64> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendToPeer {
                pnn: 1,
                packet:
                    Packet {
                        body: Body::ReqMessage(m),
                        ..
                    },
            } if m.srvid == srvid::LEASE_REQUEST => Some(
                crate::protocol::control::LeaseRequest::decode(&m.data)
                    .unwrap()
                    .seq,
            ),
            _ => None,
        })
        .collect()
}

/// Node 1 grants, at `now`, every lease request node 0 sent in `out`, for
/// `lease_ms`. Fails if there was none.
fn grant_leases(n: &mut Node, now: Now, out: &[Output], lease_ms: u32) -> Vec<Output> {
    let seqs = lease_requests(out);
    assert!(!seqs.is_empty(), "no lease request in {out:?}");
    let mut all = Vec::new();
    for seq in seqs {
        let grant = crate::protocol::control::LeaseGrant {
            seq,
            lease_ms,
            stamp_ms: 1,
            backed: false,
        };
        all.extend(n.feed(now, from_peer(srvid::LEASE_GRANT, grant.encode())));
    }
    all
}

/// Node 1's link comes up and node 1 announces `incarnation`.
fn connect_peer(n: &mut Node, now: Now, incarnation: u64) {
    n.feed(now, Input::PeerConnected { pnn: 1 });
    n.feed(
        now,
        from_peer(srvid::INCARNATION, incarnation.to_le_bytes().to_vec()),
    );
}

/// The DAEMON_GONE packet node 1's guardian sends: about `about`, from `srcnode`.
fn notice_packet(about: u32, srcnode: u32, incarnation: u64) -> Packet {
    Packet {
        header: Header {
            generation: INVALID_GENERATION,
            destnode: 0,
            srcnode,
            reqid: 0,
        },
        body: Body::ReqMessage(ReqMessage {
            srvid: srvid::DAEMON_GONE,
            data: crate::protocol::control::DaemonGone {
                pnn: about,
                incarnation,
            }
            .encode(),
        }),
    }
}

fn notice(incarnation: u64) -> Input {
    Input::GuardianNotice {
        pnn: 1,
        packet: notice_packet(1, 1, incarnation),
    }
}

fn guarded(n: &Node) -> Vec<u32> {
    n.lease_guards.keys().copied().collect()
}

/// Given a node whose link to a peer comes up, then the first thing it sends the
/// peer is its incarnation, and it keeps the one the peer announces.
#[test]
fn a_node_announces_its_incarnation_first_when_a_link_comes_up() {
    let mut n = node();
    let out = n.feed(NOW, Input::PeerConnected { pnn: 1 });
    match out.first() {
        Some(Output::SendToPeer {
            pnn: 1,
            packet:
                Packet {
                    body: Body::ReqMessage(m),
                    ..
                },
        }) => {
            assert_eq!(m.srvid, srvid::INCARNATION);
            assert_eq!(m.data, 0x4242u64.to_le_bytes());
        }
        other => panic!("first output {other:?}"),
    }
    n.feed(
        NOW,
        from_peer(srvid::INCARNATION, PEER_RUN.to_le_bytes().to_vec()),
    );
    assert_eq!(n.peers[&1].incarnation, Some(PEER_RUN));
}

/// Node 1, following node 0, asks for its lease (request `seq`).
fn lease_request_from_peer(seq: u64) -> Input {
    let request = crate::protocol::control::LeaseRequest {
        seq,
        echo_ms: 0,
        leased_for_ms: 0,
        holds_granted_for_ms: 0,
        receipts: Vec::new(),
    };
    from_peer(srvid::LEASE_REQUEST, request.encode())
}

/// Given a leader (no lock: node 0 leads) that granted node 1 a lease at 0.55 s and
/// loses it at 0.6 s, then node 1 is guarded until that lease surely ended (0.55 s +
/// 0.5 s + 0.2 s) and no takeover run starts; when node 1's guardian confirms that
/// the daemon it last saw is dead, then the guard goes and the run starts at once.
#[test]
fn a_confirmed_guardian_notice_lifts_the_lost_nodes_guard_at_once() {
    let mut n = node();
    assert!(n.is_leader());
    // Node 1 joins, asks for its lease and goes while the election guard (until
    // 0.7 s) still holds, so that no run is under way when it goes (a failed run
    // would wait to retry).
    connect_peer(&mut n, at(500), PEER_RUN);
    n.feed(at(550), lease_request_from_peer(1));
    n.feed(at(600), Input::PeerDisconnected { pnn: 1 });
    assert_eq!(guarded(&n), [1]);
    assert_eq!(n.lease_guards[&1], 550 + 500 + 200);
    let runs = n.takeover_ids;
    n.feed(at(1_200), Input::Tick);
    assert_eq!(n.takeover_ids, runs, "a run started under the guard");
    assert!(n.takeover_pending());

    n.feed(at(1_200), notice(PEER_RUN));
    assert!(guarded(&n).is_empty());
    assert_eq!(n.takeover_ids, runs + 1, "the run waits no longer");
}

/// Given a leader, a follower's lease is granted from when its request arrived: the
/// grant echoes the request and names the lease length; a lost node's guard counts
/// from its last request, so a node silent for longer than a lease (power loss,
/// declared dead after the keepalive timeout) is guarded for nothing and its
/// addresses move at once. A leader without the lock grants nothing.
#[test]
fn a_lost_nodes_guard_counts_from_its_last_lease_request() {
    let mut n = node();
    connect_peer(&mut n, at(500), PEER_RUN);
    let out = n.feed(at(1_000), lease_request_from_peer(9));
    let grant = out
        .iter()
        .find_map(|o| match o {
            Output::SendToPeer {
                pnn: 1,
                packet:
                    Packet {
                        body: Body::ReqMessage(m),
                        ..
                    },
            } if m.srvid == srvid::LEASE_GRANT => {
                Some(crate::protocol::control::LeaseGrant::decode(&m.data).unwrap())
            }
            _ => None,
        })
        .expect("a grant");
    assert_eq!(
        grant,
        crate::protocol::control::LeaseGrant {
            seq: 9,
            lease_ms: 500,
            stamp_ms: 1_000,
            backed: false,
        }
    );
    n.feed(at(2_400), Input::PeerDisconnected { pnn: 1 });
    assert!(guarded(&n).is_empty(), "{:?}", n.lease_guards);

    let mut n = node_with_lock(Some("/shared/.reclock"));
    connect_peer(&mut n, NOW, PEER_RUN);
    assert_eq!(n.lock, LockState::Taking);
    let out = n.feed(at(10), lease_request_from_peer(1));
    assert!(out.is_empty(), "no lock, no grant: {out:?}");
}

/// Given a follower, its lease runs from when it *sent* the request that a grant
/// answers, not from when the grant came: the leader bounds it from when the
/// request arrived, which is later. A grant from another node than the leader asked,
/// or for a request never sent, extends nothing. A follower asks its leader once it
/// hears it, and then every eighth of a lease; each request echoes the stamp of the
/// last grant and says how long the follower's promise (`holds`) runs from then.
#[test]
fn a_followers_lease_counts_from_its_request() {
    let mut n = follower_of_peer();
    // follower_of_peer heard node 1's LEADER at 10 ms: the first request left then.
    n.lease_requests.clear();
    let out = n.feed(at(50), Input::Tick);
    assert!(lease_requests(&out).is_empty(), "next one is due at 72 ms");
    let out = n.feed(at(72), Input::Tick);
    let seqs = lease_requests(&out);
    assert_eq!(seqs.len(), 1, "{out:?}");
    let grant = crate::protocol::control::LeaseGrant {
        seq: seqs[0],
        lease_ms: 500,
        stamp_ms: 4_242,
        backed: false,
    };
    n.feed(at(100), from_peer(srvid::LEASE_GRANT, grant.encode()));
    assert_eq!(n.lease_until_ms, 72 + 500);
    let stale = crate::protocol::control::LeaseGrant {
        seq: 9_999,
        lease_ms: 60_000,
        stamp_ms: 1,
        backed: false,
    };
    n.feed(at(101), from_peer(srvid::LEASE_GRANT, stale.encode()));
    assert_eq!(n.lease_until_ms, 72 + 500, "a grant for nothing we asked");
    let out = n.feed(at(134), Input::Tick);
    let sent = sent_to_peer(&out, srvid::LEASE_REQUEST);
    let request = crate::protocol::control::LeaseRequest::decode(&sent[0]).unwrap();
    assert_eq!(request.echo_ms, 4_242, "the stamp of the grant received");
    assert_eq!(
        request.leased_for_ms,
        72 + 250 - 134,
        "no hold granted before the middle of the lease (322 ms)"
    );
    assert_eq!(request.holds_granted_for_ms, 0);
}

// ---- holds (`holds`' module docs) ---------------------------------------------

/// The payloads of the messages with `id` that node 0 sent node 1 in `out`.
fn sent_to_peer(out: &[Output], id: u64) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendToPeer {
                pnn: 1,
                packet:
                    Packet {
                        body: Body::ReqMessage(m),
                        ..
                    },
            } if m.srvid == id => Some(m.data.clone()),
            _ => None,
        })
        .collect()
}

fn removes(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::RemoveAddress { .. }))
}

/// Node 0 follows node 1 with a lease until 510 ms (its request left at 10 ms) and
/// hosts 10.0.0.31 (added at 20 ms).
fn leased_follower_hosting() -> Node {
    let mut n = follower_of_peer();
    let seq = *n.lease_requests.keys().next().expect("the first request");
    let grant = crate::protocol::control::LeaseGrant {
        seq,
        lease_ms: 500,
        stamp_ms: 7,
        backed: false,
    };
    n.feed(at(12), from_peer(srvid::LEASE_GRANT, grant.encode()));
    assert_eq!(n.lease_until_ms, 510);
    let addr = "10.0.0.31".parse().unwrap();
    finish_events(&mut n, at(20));
    let ip = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    n.feed(
        at(20),
        Input::PeerPacket {
            pnn: 1,
            packet: control_packet(0, Opcode::TAKEOVER_IP, 0, 0, ip),
        },
    );
    n.feed(
        at(20),
        Input::AddressAdded {
            addr,
            result: Ok(()),
        },
    );
    finish_events(&mut n, at(20));
    assert_eq!(n.hosted().count(), 1, "hosts 10.0.0.31");
    n.lease_requests.clear();
    n
}

/// Given a follower hosting an address whose leader falls silent (no more grants),
/// when half its lease is gone (260 ms) it asks its peers for a hold, and one
/// grant makes, with itself, a majority of two nodes: it keeps the address past
/// its lease (510 ms), until a lease from the request (760 ms); asking again from
/// 510 ms, with nobody answering, it drops the address at 760 ms.
#[test]
fn a_follower_whose_leader_falls_silent_keeps_its_addresses_under_a_hold() {
    let mut n = leased_follower_hosting();
    let out = n.feed(at(250), Input::Tick);
    assert!(
        sent_to_peer(&out, srvid::HOLD_REQUEST).is_empty(),
        "{out:?}"
    );
    assert_eq!(
        n.poll_timeout().min(260),
        260,
        "due at the middle of the lease"
    );
    let out = n.feed(at(260), Input::Tick);
    let requests = sent_to_peer(&out, srvid::HOLD_REQUEST);
    assert_eq!(requests.len(), 1, "{out:?}");
    n.feed(at(270), from_peer(srvid::HOLD_GRANT, requests[0].clone()));
    assert_eq!(n.holds.until_ms, 760);
    let out = n.feed(at(600), Input::Tick);
    assert!(
        !removes(&out),
        "the lease ended at 510 ms, the hold lasts: {out:?}"
    );
    assert!(
        !sent_to_peer(&out, srvid::HOLD_REQUEST).is_empty(),
        "asks again"
    );
    let out = n.feed(at(760), Input::Tick);
    assert!(removes(&out), "no new grant: the hold ended: {out:?}");
}

/// A grant counts only for a request we sent, from a node of the cluster: a stray
/// one extends nothing.
#[test]
fn a_stray_hold_grant_extends_nothing() {
    let mut n = leased_follower_hosting();
    let out = n.feed(at(260), Input::Tick);
    assert_eq!(sent_to_peer(&out, srvid::HOLD_REQUEST).len(), 1);
    n.feed(
        at(270),
        from_peer(srvid::HOLD_GRANT, 9_999u64.to_le_bytes().to_vec()),
    );
    n.feed(at(271), from_peer(srvid::HOLD_GRANT, vec![1, 2, 3]));
    assert_eq!(n.holds.until_ms, 0);
}

/// Given a follower with a lease until 510 ms, a peer's hold request is not granted
/// before the middle of the lease (260 ms): it waits, and is granted then if no
/// grant renewed the lease meanwhile; a renewed lease keeps it waiting. A leader
/// holding the lock never grants.
#[test]
fn a_hold_is_granted_only_once_our_own_lease_is_half_gone() {
    let mut n = leased_follower_hosting();
    let request = 41u64.to_le_bytes().to_vec();
    let out = n.feed(at(100), from_peer(srvid::HOLD_REQUEST, request.clone()));
    assert!(sent_to_peer(&out, srvid::HOLD_GRANT).is_empty(), "{out:?}");
    let out = n.feed(at(259), Input::Tick);
    assert!(sent_to_peer(&out, srvid::HOLD_GRANT).is_empty());
    let out = n.feed(at(260), Input::Tick);
    assert_eq!(sent_to_peer(&out, srvid::HOLD_GRANT), vec![request.clone()]);
    assert_eq!(n.holds.granted_until_ms[&1], 760);
    assert_eq!(
        n.promise_for_request(2).1,
        760 - 260,
        "what a lease request to another leader reports"
    );
    assert_eq!(
        n.promise_for_request(1).1,
        0,
        "a hold granted to the leader asked covers only that leader"
    );

    let mut n = leased_follower_hosting();
    let out = n.feed(at(100), from_peer(srvid::HOLD_REQUEST, request.clone()));
    let seq = lease_requests(&out)[0];
    let grant = crate::protocol::control::LeaseGrant {
        seq,
        lease_ms: 500,
        stamp_ms: 8,
        backed: false,
    };
    n.feed(at(135), from_peer(srvid::LEASE_GRANT, grant.encode()));
    let out = n.feed(at(260), Input::Tick);
    assert!(
        sent_to_peer(&out, srvid::HOLD_GRANT).is_empty(),
        "renewed until 600 ms: no grant before 350 ms"
    );
}

/// Given a leader of three nodes with node 1 connected and node 2 unseen, no run
/// may start while a hold could cover node 2: node 1 and node 2 are two of three.
/// Once node 1's lease request shows it grants nothing now and every hold it
/// granted has ended, the gate opens; it closes again once that promise runs out.
#[test]
fn a_leader_moves_an_unseen_nodes_addresses_only_when_no_hold_can_cover_it() {
    let mut n = build_node(Some("/shared/.reclock"), Some("192.168.20.43"));
    connect_peer(&mut n, NOW, PEER_RUN);
    n.feed(at(5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    let hold_ms = 10_000;
    assert_eq!(n.hold_gate_until(), 5 + 500 + hold_ms + 200);
    let request = |seq: u64, echo_ms: u64, leased_for_ms: u32, holds_granted_for_ms: u32| {
        let r = crate::protocol::control::LeaseRequest {
            seq,
            echo_ms,
            leased_for_ms,
            holds_granted_for_ms,
            receipts: Vec::new(),
        };
        from_peer(srvid::LEASE_REQUEST, r.encode())
    };
    n.feed(at(20), request(1, 0, 0, 0));
    assert_ne!(n.hold_gate_until(), 0, "no echo: no bound on its promise");
    n.feed(at(90), request(2, 20, 180, 300));
    assert_ne!(n.hold_gate_until(), 0, "its holds may last until 390 ms");
    n.feed(at(400), request(3, 380, 180, 0));
    assert_eq!(n.hold_gate_until(), 0, "promised nothing before 560 ms");
    n.feed(at(560), Input::Tick);
    assert_ne!(n.hold_gate_until(), 0, "the promise ran out");
}

/// Given a leader that lost node 1 (guarded), when notices arrive that cannot be
/// believed — another incarnation, about another node, from another srcnode, not a
/// DAEMON_GONE, garbage — then the guard stays. When node 1 is connected again, a
/// notice about it is stale; and once that new link is lost, the old incarnation's
/// notice no longer counts (the new daemon never announced it).
#[test]
fn guardian_notices_that_cannot_be_believed_leave_the_guard() {
    let mut n = node();
    connect_peer(&mut n, at(1_500), PEER_RUN);
    n.feed(at(1_900), lease_request_from_peer(1));
    n.feed(at(2_000), Input::PeerDisconnected { pnn: 1 });
    let mut wrong_srvid = notice_packet(1, 1, PEER_RUN);
    if let Body::ReqMessage(m) = &mut wrong_srvid.body {
        m.srvid = srvid::LEADER;
    }
    let mut garbage = notice_packet(1, 1, PEER_RUN);
    if let Body::ReqMessage(m) = &mut garbage.body {
        m.data.pop();
    }
    for packet in [
        notice_packet(1, 1, PEER_RUN ^ 1),
        notice_packet(2, 1, PEER_RUN),
        notice_packet(1, 2, PEER_RUN),
        wrong_srvid,
        garbage,
    ] {
        n.feed(at(2_001), Input::GuardianNotice { pnn: 1, packet });
        assert_eq!(guarded(&n), [1]);
    }

    // Back, and its new daemon says who it is: a notice about the old one while it
    // is connected is stale, and so it is once that link goes (the node's last
    // incarnation is the new one).
    n.feed(at(2_002), Input::PeerConnected { pnn: 1 });
    n.feed(
        at(2_002),
        from_peer(srvid::INCARNATION, (PEER_RUN ^ 2).to_le_bytes().to_vec()),
    );
    n.feed(at(2_002), notice(PEER_RUN));
    assert!(n.peers[&1].pending_notice.is_none());
    n.feed(at(2_003), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(2_004), notice(PEER_RUN));
    assert_eq!(guarded(&n), [1]);
    assert_eq!(
        n.lease_guards[&1],
        1_900 + 500 + 200,
        "the lease granted before"
    );
}

/// Given a leader that lost node 1 (guarded), when a connection from node 1's
/// address comes up but announces nothing — a dying daemon's listening socket can
/// still complete our reconnect, and its guardian's own connection then makes the
/// link whole — and the guardian's notice arrives meanwhile, then the notice is
/// kept, and believed when that connection goes without an announcement; had it
/// announced an incarnation, the notice would have been dropped.
#[test]
fn a_notice_during_a_silent_reconnection_counts_once_it_goes() {
    let mut n = node();
    connect_peer(&mut n, at(1_500), PEER_RUN);
    n.feed(at(1_900), lease_request_from_peer(1));
    n.feed(at(2_000), Input::PeerDisconnected { pnn: 1 });
    assert_eq!(guarded(&n), [1]);
    n.feed(at(2_010), Input::PeerConnected { pnn: 1 });
    n.feed(at(2_011), notice(PEER_RUN));
    assert_eq!(guarded(&n), [1], "not while it looks connected");
    n.feed(at(2_012), Input::PeerDisconnected { pnn: 1 });
    assert!(guarded(&n).is_empty(), "{:?}", n.lease_guards);

    let mut n = node();
    connect_peer(&mut n, at(1_500), PEER_RUN);
    n.feed(at(1_900), lease_request_from_peer(1));
    n.feed(at(2_000), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(2_010), Input::PeerConnected { pnn: 1 });
    n.feed(at(2_011), notice(PEER_RUN));
    n.feed(
        at(2_012),
        from_peer(srvid::INCARNATION, (PEER_RUN ^ 2).to_le_bytes().to_vec()),
    );
    n.feed(at(2_013), Input::PeerDisconnected { pnn: 1 });
    assert_eq!(guarded(&n), [1], "a new daemon spoke: the notice was stale");
}

/// A client cannot make a node announce or relay ctdb-rs daemon messages.
#[test]
fn clients_cannot_send_daemon_messages() {
    let mut n = node();
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    for id in [srvid::INCARNATION, srvid::DAEMON_GONE] {
        let out = n.feed(
            NOW,
            Input::ClientPacket {
                client: TOOL,
                packet: Packet {
                    header: Header {
                        generation: 0,
                        destnode: 1,
                        srcnode: 0,
                        reqid: 0,
                    },
                    body: Body::ReqMessage(ReqMessage {
                        srvid: id,
                        data: PEER_RUN.to_le_bytes().to_vec(),
                    }),
                },
            },
        );
        assert!(out.is_empty(), "{out:?}");
    }
}

/// With a lock: node 0 follows node 1 (which leads), contended once at start.
fn follower_of_peer() -> Node {
    follower_of_peer_in(build_node(Some("/shared/.reclock"), None))
}

fn follower_of_peer_in(mut n: Node) -> Node {
    assert_eq!(n.lock, LockState::Taking, "no leader yet: racing");
    n.feed(NOW, Input::Reclock(ReclockStatus::Contended));
    connect_peer(&mut n, NOW, PEER_RUN);
    n.feed(
        at(10),
        from_peer(srvid::LEADER, 1u32.to_le_bytes().to_vec()),
    );
    assert_eq!(n.leader(), Some(1));
    n
}

/// Given node 0 following node 1 (with a lock), when node 1's connection closes,
/// then node 0 waits for node 1's guardian before racing for the lock; the notice
/// comes, the race starts at once, and the new leader guards nobody (node 1's
/// addresses are gone and, node 1 having led, no run of its can still be going on).
/// Without the notice, node 0 races after the wait.
#[test]
fn a_notice_while_the_followers_wait_starts_the_race_and_spares_every_guard() {
    let mut n = follower_of_peer();
    n.feed(at(1_000), Input::PeerDisconnected { pnn: 1 });
    assert_eq!(n.leader(), None);
    assert_eq!(n.lock, LockState::Idle, "waits for the guardian");
    n.feed(at(1_002), notice(PEER_RUN));
    assert_eq!(n.lock, LockState::Taking);
    let runs = n.takeover_ids;
    n.feed(at(1_005), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    assert!(guarded(&n).is_empty(), "{:?}", n.lease_guards);
    // Alone of two, started 1 s ago and never backed, it may take its own
    // addresses only the unbacked wait after its start (`succession`): the run
    // waits for that, and for nothing else.
    let unbacked_start = n.own_addresses_gate();
    assert_eq!(
        unbacked_start,
        super::succession::unbacked_wait_ms(
            n.minority_race_delay_ms(),
            super::succession::LOCK_CHECK_MS,
            200
        )
    );
    assert!(n.poll_timeout() <= unbacked_start);
    n.feed(at(unbacked_start), Input::Tick);
    assert_eq!(n.takeover_ids, runs + 1, "the run waits for nothing else");

    // Without word, node 0, alone of two, is no majority: node 1 may be alive
    // behind a partition with the lock, so node 0 gives it the time to notice and
    // let go before racing (`cluster`: the minority rule).
    let mut n = follower_of_peer();
    n.feed(at(1_000), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(1_100), Input::Tick);
    assert_eq!(n.lock, LockState::Idle);
    let race = 1_000 + n.minority_race_delay_ms();
    assert!(n.poll_timeout() <= race, "wakes up by then");
    n.feed(at(race - 1), Input::Tick);
    assert_eq!(n.lock, LockState::Idle);
    n.feed(at(race), Input::Tick);
    assert_eq!(
        n.lock,
        LockState::Taking,
        "no word: races after the minority's wait"
    );
}

/// Given the same, when the notice comes during the race (after the wait), then it
/// counts for that race too.
#[test]
fn a_notice_during_the_race_spares_the_dead_leader_the_election_guard() {
    let mut n = follower_of_peer();
    n.feed(at(1_000), Input::PeerDisconnected { pnn: 1 });
    let race = 1_000 + n.minority_race_delay_ms();
    n.feed(at(race), Input::Tick);
    assert_eq!(n.lock, LockState::Taking);
    n.feed(at(race + 3), notice(PEER_RUN));
    n.feed(at(race + 5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    assert!(guarded(&n).is_empty(), "{:?}", n.lease_guards);
}

/// Given the same, when the notice comes during an attempt that is contended, then
/// it is forgotten: the attempt that wins later guards node 1. And a notice heard
/// while following a leader (here node 1 itself, still connected as far as node 0
/// knows) is stale and not kept.
#[test]
fn a_notice_outside_the_winning_attempt_does_not_count() {
    let mut n = follower_of_peer();
    n.feed(at(1_000), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(1_100), Input::Tick);
    n.feed(at(1_103), notice(PEER_RUN));
    n.feed(at(1_105), Input::Reclock(ReclockStatus::Contended));
    assert_eq!(n.lock, LockState::Idle);
    n.feed(at(1_605), Input::Tick);
    assert_eq!(n.lock, LockState::Taking);
    n.feed(at(1_610), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    assert_eq!(guarded(&n), [1]);

    let mut n = follower_of_peer();
    n.feed(at(1_000), notice(PEER_RUN));
    assert_eq!(n.leader(), Some(1));
    assert!(n.gone_during_election.is_empty());
}

/// A control from node 1 over its link, with `client_id` (non-zero: an
/// administrator's control that node 1 forwards).
fn control_from_peer(opcode: Opcode, client_id: u32, reqid: u32, data: Vec<u8>) -> Input {
    Input::PeerPacket {
        pnn: 1,
        packet: Packet {
            header: Header {
                generation: 0,
                destnode: 0,
                srcnode: 1,
                reqid,
            },
            body: Body::ReqControl(ReqControl {
                opcode: opcode.0,
                srvid: 0,
                client_id,
                flags: 0,
                data,
            }),
        },
    }
}

fn reply_to_peer(out: &[Output], reqid: u32) -> Option<&ReplyControl> {
    out.iter().find_map(|o| match o {
        Output::SendToPeer {
            pnn: 1,
            packet:
                Packet {
                    header,
                    body: Body::ReplyControl(r),
                },
        } if header.reqid == reqid => Some(r),
        _ => None,
    })
}

/// Found by the simulation once a new leader stopped waiting for connected nodes: a
/// node takes or releases addresses for the leader it follows (or for an
/// administrator), not for a node whose run is stale.
#[test]
fn only_the_followed_leader_or_an_administrator_moves_addresses() {
    let mut n = node_with_lock(Some("/shared/.reclock"));
    n.feed(NOW, Input::Reclock(ReclockStatus::Contended));
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    finish_events(&mut n, NOW);
    let addr: std::net::IpAddr = "10.0.0.32".parse().unwrap();
    let take = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    // Node 1 is not (yet) our leader: its run's take is refused.
    let out = n.feed(
        NOW,
        control_from_peer(Opcode::TAKEOVER_IP, 0, 5, take.clone()),
    );
    assert_eq!(
        reply_to_peer(&out, 5).map(|r| r.status),
        Some(-1),
        "{out:?}"
    );
    let out = n.feed(
        NOW,
        control_from_peer(Opcode::RELEASE_IP, 0, 6, take.clone()),
    );
    assert_eq!(
        reply_to_peer(&out, 6).map(|r| r.status),
        Some(-1),
        "{out:?}"
    );
    // Once it leads and grants us a lease, its run is obeyed.
    let out = n.feed(NOW, from_peer(srvid::LEADER, 1u32.to_le_bytes().to_vec()));
    grant_leases(&mut n, NOW, &out, 1_000);
    let out = n.feed(
        NOW,
        control_from_peer(Opcode::TAKEOVER_IP, 0, 7, take.clone()),
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::AddAddress { .. })),
        "{out:?}"
    );
    // An administrator's release forwarded by any node is obeyed (ctdb moveip).
    n.feed(
        NOW,
        from_peer(srvid::LEADER, UNKNOWN_PNN.to_le_bytes().to_vec()),
    );
    assert_eq!(n.leader(), None);
    let out = n.feed(NOW, control_from_peer(Opcode::RELEASE_IP, 42, 8, take));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::RemoveAddress { .. })),
        "{out:?}"
    );
}

/// Given an address being added here (a take under way), when a RELEASE_IP comes,
/// then the address counts as ours in GET_PUBLIC_IPS meanwhile, and the release is
/// answered only once the removal queued behind the add is done — not when the add
/// is (the asker gives the address away on that answer).
#[test]
fn a_release_during_an_add_is_answered_after_the_removal() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let addr: std::net::IpAddr = "10.0.0.32".parse().unwrap();
    let ip = crate::protocol::control::PublicIp { pnn: 1, addr }.encode();
    let take = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    let mut out = n.feed(
        NOW,
        Input::ClientPacket {
            client: OTHER,
            packet: control_packet(CURRENT_NODE, Opcode::TAKEOVER_IP, 0, 0, take),
        },
    );
    assert!(out.iter().any(|o| matches!(o, Output::AddAddress { .. })));
    let held = n.public_ip_list(false);
    assert!(
        held.ips.iter().any(|i| i.addr == addr && i.pnn == 0),
        "{held:?}"
    );
    let (_, more) = call_to_deferred(&mut n, Opcode::RELEASE_IP, ip);
    assert!(more
        .iter()
        .any(|o| matches!(o, Output::RemoveAddress { .. })));
    out = n.feed(
        NOW,
        Input::AddressAdded {
            addr,
            result: Ok(()),
        },
    );
    out.extend(finish_events(&mut n, NOW));
    assert!(
        !out.iter().any(|o| is_reply_to_tool(o, 0)),
        "release answered before the removal: {out:?}"
    );
    let mut out = n.feed(
        NOW,
        Input::AddressRemoved {
            addr,
            result: Ok(()),
        },
    );
    out.extend(finish_events(&mut n, NOW));
    assert!(out.iter().any(|o| is_reply_to_tool(o, 0)), "{out:?}");
    assert!(n.hosted_addresses().is_empty());
    assert_eq!(n.deferred.len(), 0, "both controls answered");
}

/// A leader that loses the lock drops its takeover run: the next leader runs its own.
#[test]
fn a_leader_that_loses_the_lock_drops_its_run() {
    let mut n = node_with_lock(Some("/shared/.reclock"));
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    n.feed(NOW, Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    // Node 1 echoes a grant: the leader is backed (`succession`).
    let out = n.feed(
        at(780),
        from_node(1, srvid::LEASE_REQUEST, lease_request_with(1, 0, vec![])),
    );
    let stamp = grants_to(&out, 1)[0].stamp_ms;
    n.feed(
        at(790),
        from_node(
            1,
            srvid::LEASE_REQUEST,
            lease_request_with(2, stamp, vec![]),
        ),
    );
    // After the election guard (0.7 s), before node 1's silence counts (1 s).
    n.feed(at(800), Input::Tick);
    assert!(n.takeover.is_some(), "a run waits for node 1's answers");
    n.feed(at(800), Input::Reclock(ReclockStatus::Lost("gone".into())));
    assert!(!n.is_leader());
    assert!(n.takeover.is_none() && !n.takeover_pending());
}

// ---- client connections -------------------------------------------------------

/// Given a connection registered with `ctdb addtickle` (TCP_ADD_DELAYED_UPDATE) and
/// one registered by a client with TCP_CLIENT, when both clients disconnect, then
/// the tool's registration stays (it outlives the tool, as in CTDB) and the
/// client's is forgotten.
#[test]
fn addtickle_registrations_outlive_the_tool_and_tcp_client_ones_do_not() {
    use crate::protocol::control::{Connection, TickleList};
    let mut n = node();
    let dst: std::net::SocketAddr = "10.0.0.31:445".parse().unwrap();
    let by_tool = Connection {
        src: "10.0.0.200:40001".parse().unwrap(),
        dst,
    };
    let by_smbd = Connection {
        src: "10.0.0.200:40002".parse().unwrap(),
        dst,
    };
    // Hosted here: a client leaving a live address has ended its connection.
    host(&mut n, dst.ip());
    let (reply, _) = call(&mut n, Opcode::TCP_ADD_DELAYED_UPDATE, by_tool.encode());
    assert_eq!(reply.status, 0);
    n.feed(
        NOW,
        Input::ClientPacket {
            client: OTHER,
            packet: control_packet(CURRENT_NODE, Opcode::TCP_CLIENT, 0, 0, by_smbd.encode()),
        },
    );
    n.feed(NOW, Input::ClientGone { client: OTHER });
    n.feed(NOW, Input::ClientGone { client: TOOL });
    n.feed(
        NOW,
        Input::ClientConnected {
            client: TOOL,
            pid: 101,
        },
    );
    let mut asked = crate::protocol::wire::Writer::new();
    asked.sock_addr(&"10.0.0.31:0".parse().unwrap());
    let (reply, _) = call(&mut n, Opcode::GET_TCP_TICKLE_LIST, asked.into_bytes());
    let list = TickleList::decode(&reply.data).unwrap();
    assert_eq!(list.conns, vec![by_tool]);
}

/// Given smbd serving a client on an address, when the address is released and
/// smbd goes (it closes its connections on the release, but the address is gone, so
/// the client never hears), then the connection stays on the tickle list here and
/// on the peers; when a node takes the address again it tickles the client and
/// then forgets the entry everywhere.
#[test]
fn a_client_cut_off_by_a_release_is_tickled_by_the_next_holder() {
    use crate::protocol::control::{Connection, PublicIp, TickleList};
    let mut n = node();
    connect_peer(&mut n, NOW, PEER_RUN);
    let addr: std::net::IpAddr = "10.0.0.31".parse().unwrap();
    host(&mut n, addr);
    let conn = Connection {
        src: "10.0.0.200:40002".parse().unwrap(),
        dst: std::net::SocketAddr::new(addr, 445),
    };
    n.feed(
        NOW,
        Input::ClientPacket {
            client: OTHER,
            packet: control_packet(CURRENT_NODE, Opcode::TCP_CLIENT, 0, 0, conn.encode()),
        },
    );
    let release = PublicIp { pnn: 1, addr }.encode();
    call_to_deferred(&mut n, Opcode::RELEASE_IP, release);
    n.feed(
        NOW,
        Input::AddressRemoved {
            addr,
            result: Ok(()),
        },
    );
    finish_one(&mut n, NOW, EventOutcome::Ok);
    let out = n.feed(NOW, Input::ClientGone { client: OTHER });
    let removes = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::SendToPeer { packet: Packet { body: Body::ReqControl(c), .. }, .. } if c.opcode == Opcode::TCP_REMOVE.0))
            .count()
    };
    assert_eq!(removes(&out), 0, "the peers keep it: {out:?}");
    let list = |n: &mut Node| {
        let mut asked = crate::protocol::wire::Writer::new();
        asked.sock_addr(&std::net::SocketAddr::new(addr, 0));
        let (reply, _) = call(n, Opcode::GET_TCP_TICKLE_LIST, asked.into_bytes());
        TickleList::decode(&reply.data).unwrap().conns
    };
    assert_eq!(list(&mut n), vec![conn]);

    let out = host(&mut n, addr);
    assert!(
        out.iter().any(|o| matches!(o, Output::Tickle { server, client } if *server == conn.dst && *client == conn.src)),
        "{out:?}"
    );
    assert_eq!(removes(&out), 1, "{out:?}");
    assert!(list(&mut n).is_empty());
}

/// Given a follower holding an address under its lease, when the lease runs out
/// (no word from the leader), then it removes the address but keeps claiming it
/// in GET_PUBLIC_IPS, so that the next leader's allocation puts it back here
/// rather than moving the survivors' addresses between them.
#[test]
fn a_lapsed_follower_keeps_claiming_the_addresses_it_dropped() {
    use crate::protocol::control::PublicIpList;
    let mut n = follower_of_peer();
    let out = n.feed(at(135), Input::Tick);
    grant_leases(&mut n, at(140), &out, 500);
    let addr: std::net::IpAddr = "10.0.0.31".parse().unwrap();
    host(&mut n, addr);
    assert_eq!(n.hosted_addresses(), vec![addr]);

    // No grant since: the lease ends at 135 + 500 ms.
    n.lease_requests.clear();
    let out = n.feed(at(700), Input::Tick);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::RemoveAddress { addr: a, .. } if *a == addr)),
        "{out:?}"
    );
    n.feed(
        at(701),
        Input::AddressRemoved {
            addr,
            result: Ok(()),
        },
    );
    assert!(n.hosted_addresses().is_empty());
    let (reply, _) = call(&mut n, Opcode::GET_PUBLIC_IPS, Vec::new());
    let list = PublicIpList::decode(&reply.data).unwrap();
    let claimed = list.ips.iter().find(|ip| ip.addr == addr).unwrap();
    assert_eq!(claimed.pnn, 0, "still claimed: {list:?}");
}

/// Given node 0 following node 1, when node 1 steps down (alive: it says so), then
/// the election that follows guards node 1 although it is connected: a previous
/// leader not known dead may still be handing out addresses.
#[test]
fn a_new_leader_guards_connected_nodes_unless_its_predecessor_is_known_dead() {
    let mut n = follower_of_peer();
    n.feed(
        at(1_000),
        from_peer(srvid::LEADER, UNKNOWN_PNN.to_le_bytes().to_vec()),
    );
    assert_eq!(n.leader(), None);
    n.feed(at(1_000), Input::Tick);
    assert_eq!(n.lock, LockState::Taking);
    n.feed(at(1_005), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    assert!(n.is_connected(1));
    assert_eq!(guarded(&n), [1]);
}

/// Given node 0 following node 1, node 2 connected, when node 1's daemon is killed
/// and its guardian's notice comes only after node 0 has won the lock (both nodes
/// guarded then), then the notice lifts node 1's guard and, node 1 having been the
/// leader, node 2's too.
#[test]
fn a_notice_just_after_the_election_lifts_the_guards_too() {
    let mut n = follower_of_peer_in(build_node(Some("/shared/.reclock"), Some("192.168.20.43")));
    n.feed(at(10), Input::PeerConnected { pnn: 2 });
    // Before node 2's silence counts (1 s): nodes 0 and 2 are a majority.
    n.feed(at(500), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(600), Input::Tick);
    n.feed(at(605), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    assert_eq!(guarded(&n), [1, 2]);
    n.feed(at(606), notice(PEER_RUN));
    assert!(guarded(&n).is_empty(), "{:?}", n.lease_guards);
}

// ---- partitions: the minority rule ----------------------------------------------

/// Given node 0 leading a cluster of three with the lock, when it loses both peers
/// (its cables are pulled; it runs on and could keep the lock), then it gives the
/// lock up at the second loss, stops leading and ends its own lease (its addresses
/// go), and does not race again before a minority's wait; after it, it does (the
/// others may really be dead). Losing one peer of two leaves it leading.
#[test]
fn a_leader_cut_off_from_the_majority_gives_up_the_lock() {
    let mut n = build_node(Some("/shared/.reclock"), Some("192.168.20.43"));
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    n.feed(NOW, Input::PeerConnected { pnn: 2 });
    assert_eq!(n.lock, LockState::Taking);
    n.feed(at(5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());

    let out = n.feed(at(100), Input::PeerDisconnected { pnn: 1 });
    assert!(n.is_leader(), "two of three are a majority");
    assert!(!out.iter().any(|o| matches!(o, Output::ReleaseReclock)));

    let out = n.feed(at(200), Input::PeerDisconnected { pnn: 2 });
    assert!(!n.is_leader());
    assert!(
        out.iter().any(|o| matches!(o, Output::ReleaseReclock)),
        "{out:?}"
    );
    assert_eq!(n.lock, LockState::Idle);
    assert!(!n.lease_valid(), "its addresses go with the lock");
    let race = 200 + n.minority_race_delay_ms();
    n.feed(at(race - 1), Input::Tick);
    assert_eq!(n.lock, LockState::Idle, "the majority's turn");
    n.feed(at(race), Input::Tick);
    assert_eq!(n.lock, LockState::Taking);
    n.feed(at(race + 5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader(), "a lone survivor leads after the wait");
}

/// A node that has been part of a majority and is no longer races only after a
/// minority's wait, unless the nodes it misses are dead by their guardians' word;
/// a node that has not been part of one since it started (the first of a cluster
/// starting together) races at once.
#[test]
fn only_a_majority_races_at_once() {
    let mut n = build_node(Some("/shared/.reclock"), Some("192.168.20.43"));
    assert_eq!(n.lock, LockState::Taking, "just started: races");
    n.feed(at(5), Input::Reclock(ReclockStatus::Contended));
    n.feed(at(10), Input::PeerConnected { pnn: 2 });
    n.feed(at(200), Input::PeerDisconnected { pnn: 2 });
    n.feed(at(1_000), Input::Tick);
    assert_eq!(n.lock, LockState::Idle, "was two of three, now one: waits");
    let race = 200 + n.minority_race_delay_ms();
    n.feed(at(race), Input::Tick);
    assert_eq!(n.lock, LockState::Taking);

    // Two nodes: node 1's daemon dies and its guardian says so; node 0 alone is
    // then the whole of what is alive.
    let mut n = follower_of_peer();
    n.feed(at(500), Input::PeerDisconnected { pnn: 1 });
    n.feed(at(700), Input::Tick);
    assert_eq!(n.lock, LockState::Idle);
    n.feed(at(701), notice(PEER_RUN));
    assert_eq!(n.lock, LockState::Taking);
}

fn set_tunable(n: &mut Node, now: Now, name: &str, value: u32) -> Vec<Output> {
    let data = Tunable {
        name: name.into(),
        value,
    }
    .encode();
    let out = n.feed(
        now,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(CURRENT_NODE, Opcode::SET_TUNABLE, 0, 0, data),
        },
    );
    assert!(out.iter().any(|o| is_reply_to_tool(o, 0)), "{out:?}");
    out
}

/// Given a healthy node whose next monitor is due `MonitorInterval` (15 s) after
/// the last, when `ctdb setvar MonitorInterval 1` arrives, then the next monitor
/// runs one second later, not at the old time; and a later monitor is again one
/// new interval after the last.
#[test]
fn a_shorter_monitor_interval_applies_at_once() {
    let mut n = node();
    finish_events(&mut n, NOW);
    assert_eq!(own_flags(&n), 0);
    n.feed(at(5_000), Input::Tick);
    assert!(n.events.in_progress().is_empty(), "due at 15 s");
    set_tunable(&mut n, at(5_000), "monitorinterval", 1);
    n.feed(at(5_999), Input::Tick);
    assert!(
        n.events.in_progress().is_empty(),
        "not before the new interval"
    );
    n.feed(at(6_000), Input::Tick);
    assert_eq!(
        n.events
            .in_progress()
            .iter()
            .map(|e| e.1)
            .collect::<Vec<_>>(),
        [EventKind::Monitor],
        "the monitor is due one new interval after the setvar"
    );
    finish_one(&mut n, at(6_100), EventOutcome::Ok);
    n.feed(at(7_099), Input::Tick);
    assert!(n.events.in_progress().is_empty(), "not before the interval");
    n.feed(at(7_100), Input::Tick);
    assert_eq!(n.events.in_progress().len(), 1);
}

/// Given a node, when `EventScriptTimeout` is set, then the next event asked for
/// carries the new limit (0 = none), and the edges are told the new values.
#[test]
fn a_new_event_script_timeout_applies_to_the_next_event_and_reaches_the_edges() {
    let mut n = node();
    let out = set_tunable(&mut n, NOW, "EventScriptTimeout", 7);
    let told: Vec<u32> = out
        .iter()
        .filter_map(|o| match o {
            Output::TunablesChanged(t) => {
                Some(t.value(crate::tunables::keys::EVENT_SCRIPT_TIMEOUT))
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, [7], "the edges get the current values");
    let timeouts = |out: &[Output]| -> Vec<Option<u64>> {
        out.iter()
            .filter_map(|o| match o {
                Output::RunEvent { timeout_ms, .. } => Some(*timeout_ms),
                _ => None,
            })
            .collect()
    };
    // The first recovery's events were asked for at start with the default; the
    // next one (after the first finishes) gets the new value.
    let (_, out) = finish_one(&mut n, NOW, EventOutcome::Ok);
    assert_eq!(timeouts(&out), [Some(7_000)]);
    set_tunable(&mut n, NOW, "EventScriptTimeout", 0);
    let (_, out) = finish_one(&mut n, NOW, EventOutcome::Ok);
    assert_eq!(timeouts(&out), [None]);
}

/// Given a leader with bans enabled, when `ctdb setvar EnableBans 0` arrives, then
/// a ban asked for afterwards is ignored.
#[test]
fn enable_bans_set_to_zero_stops_the_next_ban() {
    let mut n = node();
    finish_events(&mut n, NOW);
    set_tunable(&mut n, NOW, "EnableBans", 0);
    let ban = crate::protocol::control::BanState { pnn: 0, time: 30 }.encode();
    assert_eq!(call(&mut n, Opcode::SET_BAN_STATE, ban).0.status, 0);
    assert_eq!(own_flags(&n) & node_flags::BANNED, 0);
}

// ---- the administrative controls of `ctdb recover`, `stats`, ... -------------

/// Given a leader (no lock: node 0 leads), when `ctdb recover` sets its recovery
/// mode to active, then it recovers at once: a new generation, mode back to normal.
#[test]
fn set_recmode_active_on_the_leader_recovers_the_cluster() {
    let mut n = node();
    finish_events(&mut n, NOW);
    assert!(n.is_leader());
    let before = n.generation();
    let (r, _) = call(&mut n, Opcode::SET_RECMODE, 1u32.to_le_bytes().to_vec());
    assert_eq!(r.status, 0);
    assert_ne!(n.generation(), before, "a new generation");
    assert_eq!(call(&mut n, Opcode::GET_RECMODE, vec![]).0.status, 0);
}

/// Given a follower, when `ctdb recover` reaches it, then it asks its leader.
#[test]
fn set_recmode_active_on_a_follower_asks_the_leader() {
    let mut n = follower_of_peer();
    let (r, out) = call(&mut n, Opcode::SET_RECMODE, 1u32.to_le_bytes().to_vec());
    assert_eq!(r.status, 0);
    let asked = out.iter().any(|o| {
        matches!(o, Output::SendToPeer { pnn: 1, packet: Packet { body: Body::ReqControl(c), .. } }
            if c.opcode == Opcode::SET_RECMODE.0 && c.data == 1u32.to_le_bytes())
    });
    assert!(asked, "{out:?}");
}

/// `ctdb setlmasterrole off` drops LMASTER from the capabilities and, on the
/// leader, takes the node out of the vnn map; `setleaderrole off` on the leader
/// makes it step down.
#[test]
fn role_controls_change_capabilities_and_leadership() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let caps = |n: &mut Node| {
        let data = call(n, Opcode::GET_CAPABILITIES, vec![]).0.data;
        u32::from_le_bytes(data.try_into().unwrap())
    };
    assert_eq!(caps(&mut n), capabilities::DEFAULT);
    let off = 0u32.to_le_bytes().to_vec();
    assert_eq!(
        call(&mut n, Opcode::SET_LMASTERROLE, off.clone()).0.status,
        0
    );
    assert_eq!(caps(&mut n), capabilities::DEFAULT & !capabilities::LMASTER);
    let map = VnnMap::decode(&call(&mut n, Opcode::GETVNNMAP, vec![]).0.data).unwrap();
    assert!(!map.map.contains(&0), "{map:?}");
    assert!(n.is_leader());
    assert_eq!(call(&mut n, Opcode::SET_RECMASTERROLE, off).0.status, 0);
    assert!(
        !n.is_leader(),
        "a leader without the leader role steps down"
    );
    assert_eq!(caps(&mut n) & capabilities::RECMASTER, 0);
    assert_eq!(call(&mut n, Opcode::SET_LMASTERROLE, vec![1]).0.status, -1);
}

/// `ctdb gratarp IP IFACE` becomes an announcement; without an interface it fails.
#[test]
fn send_gratuitous_arp_announces_the_address() {
    let mut n = node();
    let info = |iface: Option<&str>| {
        crate::protocol::control::AddrInfo {
            addr: "10.0.0.99".parse().unwrap(),
            mask: 0,
            iface: iface.map(str::to_owned),
        }
        .encode()
    };
    let (r, out) = call(&mut n, Opcode::SEND_GRATUITOUS_ARP, info(Some("eth7")));
    assert_eq!(r.status, 0);
    assert!(out.contains(&Output::Announce {
        iface: "eth7".into(),
        addr: "10.0.0.99".parse().unwrap()
    }));
    assert_eq!(
        call(&mut n, Opcode::SEND_GRATUITOUS_ARP, info(None))
            .0
            .status,
        -1
    );
}

/// The statistics history gets one entry per `StatHistoryInterval`, newest first,
/// each with the counters of its own interval; STATISTICS_RESET zeroes the totals.
#[test]
fn statistics_history_and_reset() {
    use crate::protocol::statistics::{decode_statistics_list, Statistics};
    let mut n = node();
    let history = |n: &mut Node| {
        decode_statistics_list(&call(n, Opcode::GET_STAT_HISTORY, vec![]).0.data).unwrap()
    };
    assert!(
        history(&mut n).is_empty(),
        "nothing before the first interval"
    );
    for secs in [1u64, 2, 3] {
        let now = Now {
            mono_ms: secs * 1000,
            wall: Timeval {
                sec: NOW.wall.sec + secs as i64,
                usec: 0,
            },
        };
        n.feed(now, Input::Tick);
    }
    let h = history(&mut n);
    assert_eq!(h.len(), 3);
    assert_eq!(
        h[0].statistics_current_time.sec,
        NOW.wall.sec + 3,
        "newest first"
    );
    assert_eq!(h[0].statistics_start_time.sec, NOW.wall.sec + 2);
    // The first GET_STAT_HISTORY came in the first interval, and counts there only.
    let recv: Vec<u32> = h.iter().map(|s| s.client_packets_recv).collect();
    assert_eq!(recv, [0, 0, 1]);
    let total =
        |n: &mut Node| Statistics::decode(&call(n, Opcode::STATISTICS, vec![]).0.data).unwrap();
    assert!(total(&mut n).client_packets_recv >= 3);
    assert_eq!(call(&mut n, Opcode::STATISTICS_RESET, vec![]).0.status, 0);
    assert_eq!(
        total(&mut n).client_packets_recv,
        1,
        "only the STATISTICS itself"
    );
}

/// `ctdb dumpmemory` gets a report in the reply; `rddumpmemory`'s MEM_DUMP message
/// gets the same report as a message to the asking client's srvid.
#[test]
fn memory_reports_by_control_and_by_message() {
    let mut n = node();
    let (r, _) = call(&mut n, Opcode::DUMP_MEMORY, vec![]);
    assert_eq!(r.status, 0);
    assert_eq!(r.data.last(), Some(&0), "a C string");
    let text = String::from_utf8(r.data[..r.data.len() - 1].to_vec()).unwrap();
    assert!(text.contains("clients: 2\n"), "{text}");
    let reply_srvid = 0xCE01_0000_1234_0001;
    call(&mut n, Opcode::REGISTER_SRVID, vec![]);
    call_to(
        &mut n,
        CURRENT_NODE,
        Opcode::REGISTER_SRVID,
        reply_srvid,
        vec![],
    );
    let ask = SrvidMessage {
        pnn: 0,
        srvid: reply_srvid,
    }
    .encode();
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: Packet {
                header: Header {
                    generation: 0,
                    destnode: 0,
                    srcnode: 0,
                    reqid: 9,
                },
                body: Body::ReqMessage(ReqMessage {
                    srvid: srvid::MEM_DUMP,
                    data: ask,
                }),
            },
        },
    );
    let got: Vec<&[u8]> = out
        .iter()
        .filter_map(|o| match o {
            Output::SendToClient {
                client: TOOL,
                packet:
                    Packet {
                        body: Body::ReqMessage(m),
                        ..
                    },
            } if m.srvid == reply_srvid => Some(m.data.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(got, [text.as_bytes()]);
}

/// Given a leader, when it recovers, then it asks its database thread first and
/// installs the new generation only once the databases are recovered; a failed or
/// overdue database recovery starts over with a new generation, and an answer for
/// a superseded one changes nothing.
#[test]
fn a_recovery_installs_its_generation_only_after_the_databases() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let before = n.generation();
    let asks = |out: &[Output]| -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                Output::RecoverDatabases { generation, .. } => Some(*generation),
                _ => None,
            })
            .collect()
    };
    let recmode = |n: &mut Node| {
        let req = control_packet(
            CURRENT_NODE,
            Opcode::SET_RECMODE,
            0,
            0,
            1u32.to_le_bytes().to_vec(),
        );
        n.handle(
            NOW,
            Input::ClientPacket {
                client: ClientId(1),
                packet: req,
            },
        )
    };
    n.handle(
        NOW,
        Input::ClientConnected {
            client: ClientId(1),
            pid: 1,
        },
    );
    let first = asks(&recmode(&mut n));
    assert_eq!(first.len(), 1, "one database recovery asked for");
    assert_eq!(
        n.generation(),
        before,
        "nothing installed before the databases"
    );
    assert_eq!(n.recovery_mode(), 1);

    // It fails: a new one, with another generation.
    let second = asks(&n.handle(
        NOW,
        Input::DatabasesRecovered {
            generation: first[0],
            ok: false,
            culprit: None,
        },
    ));
    assert_eq!(second.len(), 1);
    assert_ne!(second[0], first[0]);
    // A late answer for the first changes nothing.
    n.handle(
        NOW,
        Input::DatabasesRecovered {
            generation: first[0],
            ok: true,
            culprit: None,
        },
    );
    assert_eq!(n.generation(), before);

    // No answer in time: it starts over.
    let later = at(NOW.mono_ms + 121_000);
    let third = asks(&n.handle(later, Input::Tick));
    assert_eq!(third.len(), 1, "an overdue database recovery starts over");

    n.handle(
        later,
        Input::DatabasesRecovered {
            generation: third[0],
            ok: true,
            culprit: None,
        },
    );
    assert_eq!(
        n.generation(),
        third[0],
        "installed once the databases are done"
    );
    assert_eq!(n.recovery_mode(), 0);
}

/// Given a leader and a peer, when the peer refuses a step of three database
/// recoveries in a row, then the leader asks it to ban itself for
/// `RecoveryBanPeriod` (SET_BAN_STATE), as CTDB's recovery does after three
/// failed attempts; two failures, or failures broken by a success, ban no one;
/// and a leader that is itself the culprit bans itself.
#[test]
fn a_node_that_keeps_failing_database_recoveries_is_banned() {
    let mut n = node();
    finish_events(&mut n, NOW);
    connect_peer(&mut n, NOW, 0x1111);
    let bans = |out: &[Output]| -> Vec<(u32, u32)> {
        out.iter()
            .filter_map(|o| match o {
                Output::SendToPeer {
                    pnn,
                    packet:
                        Packet {
                            body: Body::ReqControl(c),
                            ..
                        },
                } if c.opcode == Opcode::SET_BAN_STATE.0 => {
                    let ban = crate::protocol::control::BanState::decode(&c.data).unwrap();
                    assert_eq!(ban.pnn, *pnn, "the ban names the node it goes to");
                    Some((*pnn, ban.time))
                }
                _ => None,
            })
            .collect()
    };
    let out = n.handle(NOW, recover_request());
    let mut generation = generation_of(&out);
    let fail = |n: &mut Node, generation: u32, culprit: Option<u32>| {
        n.handle(
            NOW,
            Input::DatabasesRecovered {
                generation,
                ok: false,
                culprit,
            },
        )
    };
    // Two failures, a success, two failures: no ban.
    for _ in 0..2 {
        let out = fail(&mut n, generation, Some(1));
        assert_eq!(bans(&out), []);
        generation = generation_of(&out);
    }
    n.handle(
        NOW,
        Input::DatabasesRecovered {
            generation,
            ok: true,
            culprit: None,
        },
    );
    let out = n.handle(NOW, recover_request());
    generation = generation_of(&out);
    // Failures that name no one (a timeout, a node gone) count for no one.
    let out = fail(&mut n, generation, None);
    generation = generation_of(&out);
    for _ in 0..2 {
        let out = fail(&mut n, generation, Some(1));
        assert_eq!(bans(&out), [], "a success in between starts the count over");
        generation = generation_of(&out);
    }
    // The third in a row: banned for RecoveryBanPeriod (300 s by default).
    let out = fail(&mut n, generation, Some(1));
    assert_eq!(bans(&out), [(1, 300)]);
    generation = generation_of(&out);

    // The leader itself three times: it bans itself.
    for _ in 0..2 {
        let out = fail(&mut n, generation, Some(0));
        generation = generation_of(&out);
    }
    assert_eq!(own_flags(&n) & node_flags::BANNED, 0);
    fail(&mut n, generation, Some(0));
    assert_ne!(own_flags(&n) & node_flags::BANNED, 0);
}

/// Given a leader with a client registered for CTDB_SRVID_RECONFIGURE, when a
/// recovery's databases are done, then the client gets the (empty) message, once,
/// and only after the new generation is installed; a failed database recovery
/// sends none.
#[test]
fn the_leader_broadcasts_reconfigure_after_a_recovery() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let (reply, _) = call_to(
        &mut n,
        CURRENT_NODE,
        Opcode::REGISTER_SRVID,
        srvid::RECONFIGURE,
        vec![],
    );
    assert_eq!(reply.status, 0);
    let reconfigures = |out: &[Output]| {
        out.iter()
            .filter(|o| {
                matches!(o, Output::SendToClient {
                    client,
                    packet: Packet { body: Body::ReqMessage(m), .. },
                } if *client == TOOL && m.srvid == srvid::RECONFIGURE && m.data.is_empty())
            })
            .count()
    };
    // `handle`, not `feed`: the test's own answer to the database recovery would
    // finish it at once.
    let out = n.handle(NOW, recover_request());
    assert_eq!(reconfigures(&out), 0, "not while recovering");
    let first = generation_of(&out);
    let out = n.handle(
        NOW,
        Input::DatabasesRecovered {
            generation: first,
            ok: false,
            culprit: None,
        },
    );
    assert_eq!(reconfigures(&out), 0, "a failed recovery ends nothing");
    let second = generation_of(&out);
    let out = n.handle(
        NOW,
        Input::DatabasesRecovered {
            generation: second,
            ok: true,
            culprit: None,
        },
    );
    assert_eq!(n.generation(), second);
    assert_eq!(reconfigures(&out), 1, "{out:#?}");
}

/// Given a leader, when its data path reports records only a recovery can set
/// right, then it recovers (asks for the databases' recovery with a new
/// generation).
#[test]
fn the_data_path_can_ask_for_a_recovery() {
    let mut n = node();
    finish_events(&mut n, NOW);
    let out = n.handle(
        NOW,
        Input::RecoveryNeeded {
            reason: "a persistent update failed".into(),
        },
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::RecoverDatabases { generation, .. } if *generation != n.generation())),
        "{out:?}"
    );
}

fn tunnel_packet(destnode: u32, tunnel_id: u64, data: &[u8]) -> Packet {
    Packet {
        header: Header {
            generation: 0,
            destnode,
            srcnode: 0,
            reqid: 0,
        },
        body: Body::ReqTunnel(crate::protocol::packet::ReqTunnel {
            tunnel_id,
            flags: crate::protocol::packet::TUNNEL_FLAG_REQUEST,
            data: data.to_vec(),
        }),
    }
}

/// Tunnels as CTDB has them: one client per id, registrations end with the
/// client, packets only on ids registered here, delivered to the registered
/// client locally and sent on to a peer named by pnn.
#[test]
fn tunnels_register_once_and_carry_packets_to_the_registered_client() {
    let mut n = follower_of_peer();
    let other = ClientId(9);
    n.feed(
        NOW,
        Input::ClientConnected {
            client: TOOL,
            pid: 100,
        },
    );
    n.feed(
        NOW,
        Input::ClientConnected {
            client: other,
            pid: 200,
        },
    );
    const ID: u64 = 0xFFFF_FFFF_0000_0000;
    assert_eq!(
        call_to(&mut n, CURRENT_NODE, Opcode::TUNNEL_REGISTER, ID, vec![])
            .0
            .status,
        0
    );
    assert_eq!(
        call_to(&mut n, CURRENT_NODE, Opcode::TUNNEL_REGISTER, ID, vec![])
            .0
            .status,
        -1,
        "a second registration of one id"
    );
    // Another client may not take it away.
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: other,
            packet: control_packet(CURRENT_NODE, Opcode::TUNNEL_DEREGISTER, ID, 0, vec![]),
        },
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::SendToClient { client, packet: Packet { body: Body::ReplyControl(r), .. } } if *client == other && r.status == -1)),
        "{out:?}"
    );

    // To this node: delivered to the registered client.
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: other,
            packet: tunnel_packet(0, ID, b"hi"),
        },
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::SendToClient { client: TOOL, packet: Packet { body: Body::ReqTunnel(t), .. } } if t.data == b"hi")),
        "{out:?}"
    );
    // To the peer: sent on.
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: other,
            packet: tunnel_packet(1, ID, b"there"),
        },
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::SendToPeer { pnn: 1, packet: Packet { body: Body::ReqTunnel(t), .. } } if t.data == b"there")),
        "{out:?}"
    );
    // From the peer: delivered.
    let out = n.feed(
        NOW,
        Input::PeerPacket {
            pnn: 1,
            packet: tunnel_packet(0, ID, b"back"),
        },
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::SendToClient { client: TOOL, packet: Packet { body: Body::ReqTunnel(t), .. } } if t.data == b"back")),
        "{out:?}"
    );
    // Unregistered ids and unknown nodes: dropped.
    for packet in [tunnel_packet(1, ID + 1, b"x"), tunnel_packet(7, ID, b"x")] {
        let out = n.feed(
            NOW,
            Input::ClientPacket {
                client: other,
                packet,
            },
        );
        assert!(
            !out.iter().any(|o| matches!(
                o,
                Output::SendToPeer {
                    packet: Packet {
                        body: Body::ReqTunnel(_),
                        ..
                    },
                    ..
                } | Output::SendToClient {
                    packet: Packet {
                        body: Body::ReqTunnel(_),
                        ..
                    },
                    ..
                }
            )),
            "{out:?}"
        );
    }
    // The owner leaves: the id is free again.
    n.feed(NOW, Input::ClientGone { client: TOOL });
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: other,
            packet: control_packet(CURRENT_NODE, Opcode::TUNNEL_REGISTER, ID, 0, vec![]),
        },
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::SendToClient { client, packet: Packet { body: Body::ReplyControl(r), .. } } if *client == other && r.status == 0)),
        "{out:?}"
    );
}

/// TOOL's GET_PID sent on to node 1: the request id it went out with.
fn forward_get_pid(n: &mut Node, now: Now) -> u32 {
    let out = n.feed(
        now,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(1, Opcode::GET_PID, 0, 0, Vec::new()),
        },
    );
    out.iter()
        .find_map(|o| match o {
            Output::SendToPeer {
                pnn: 1,
                packet:
                    Packet {
                        header,
                        body: Body::ReqControl(req),
                    },
            } if req.opcode == Opcode::GET_PID.0 => {
                assert_eq!(req.client_id, TOOL.0, "carries the client's id");
                Some(header.reqid)
            }
            _ => None,
        })
        .expect("forwarded to node 1")
}

/// Node 1's reply to our request `reqid`.
fn peer_reply(reqid: u32, status: i32) -> Input {
    Input::PeerPacket {
        pnn: 1,
        packet: Packet {
            header: Header {
                generation: 0,
                destnode: 0,
                srcnode: 1,
                reqid,
            },
            body: Body::ReplyControl(ReplyControl {
                status,
                data: Vec::new(),
                error: Vec::new(),
            }),
        },
    }
}

/// TOOL's replies in `out`: (srcnode, status, error text).
fn tool_replies(out: &[Output]) -> Vec<(u32, i32, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendToClient {
                client: TOOL,
                packet:
                    Packet {
                        header,
                        body: Body::ReplyControl(r),
                    },
            } => {
                assert_eq!(header.reqid, 77, "the client's own request id");
                Some((
                    header.srcnode,
                    r.status,
                    String::from_utf8_lossy(&r.error).into_owned(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// A client's control to another node is answered exactly once: with the node's
/// reply (naming that node), or with CTDB's error when the control times out or
/// the node goes; whatever comes from the node after that is dropped.
#[test]
fn a_forwarded_control_is_answered_once_by_reply_timeout_or_loss() {
    let mut n = node();
    set_tunable(&mut n, NOW, "ControlTimeout", 1);
    connect_peer(&mut n, NOW, 1);

    let reqid = forward_get_pid(&mut n, NOW);
    let out = n.feed(NOW, peer_reply(reqid, 0));
    assert_eq!(tool_replies(&out), [(1, 0, String::new())]);
    let again = n.feed(NOW, peer_reply(reqid, 0));
    assert!(tool_replies(&again).is_empty(), "a duplicate: {again:?}");

    let reqid = forward_get_pid(&mut n, NOW);
    assert!(n.poll_timeout() <= 1000, "the deadline is a timer");
    let out = n.feed(at(999), Input::Tick);
    assert!(tool_replies(&out).is_empty(), "not yet: {out:?}");
    let out = n.feed(at(1000), Input::Tick);
    assert_eq!(
        tool_replies(&out),
        [(0, -1, "ctdb_control timed out".to_owned())]
    );
    assert_eq!(n.stats.timeouts_control, 1);
    let late = n.feed(at(1001), peer_reply(reqid, 0));
    assert!(tool_replies(&late).is_empty(), "late: {late:?}");

    forward_get_pid(&mut n, at(1001));
    let out = n.feed(at(1002), Input::PeerDisconnected { pnn: 1 });
    assert_eq!(
        tool_replies(&out),
        [(0, -1, "node is disconnected".to_owned())]
    );
    assert_eq!(n.deferred.len(), 0, "nothing left waiting");
}

/// Sends TOOL's `opcode` to this node and returns the token of the file read it
/// asks the edge for.
fn file_read_token(n: &mut Node, opcode: Opcode) -> u64 {
    let out = n.feed(
        NOW,
        Input::ClientPacket {
            client: TOOL,
            packet: control_packet(CURRENT_NODE, opcode, 0, 0, Vec::new()),
        },
    );
    assert!(tool_replies(&out).is_empty(), "answered later: {out:?}");
    out.iter()
        .find_map(|o| match o {
            Output::ReadNodesFile { request } | Output::ReadPublicAddresses { request } => {
                Some(*request)
            }
            _ => None,
        })
        .expect("a file read")
}

/// GET_NODES_FILE and RELOAD_PUBLIC_IPS wait for the edge's file read: each is
/// answered once, when the read under its own token comes back; a token that is
/// unknown or of the other kind answers nothing and leaves the wait.
#[test]
fn file_reads_answer_their_own_control_once() {
    let mut n = node();
    let nodes_file = file_read_token(&mut n, Opcode::GET_NODES_FILE);
    let public = file_read_token(&mut n, Opcode::RELOAD_PUBLIC_IPS);
    assert_ne!(nodes_file, public);
    let entries = || Ok(vec![Some("192.168.20.41".parse().unwrap()), None]);

    let wrong_kind = n.feed(
        NOW,
        Input::NodesFile {
            request: public,
            result: entries(),
        },
    );
    let unknown = n.feed(
        NOW,
        Input::NodesFile {
            request: u64::MAX,
            result: entries(),
        },
    );
    assert!(tool_replies(&wrong_kind).is_empty() && tool_replies(&unknown).is_empty());

    let read = Input::NodesFile {
        request: nodes_file,
        result: entries(),
    };
    let out = n.feed(NOW, read.clone());
    assert_eq!(tool_replies(&out), [(0, 0, String::new())]);
    let map = out
        .iter()
        .find_map(|o| match o {
            Output::SendToClient {
                packet:
                    Packet {
                        body: Body::ReplyControl(r),
                        ..
                    },
                ..
            } => Some(NodeMap::decode(&r.data).unwrap()),
            _ => None,
        })
        .unwrap();
    assert_eq!(map.nodes.len(), 2);
    assert_eq!(map.nodes[1].flags, node_flags::DELETED);
    assert!(tool_replies(&n.feed(NOW, read)).is_empty(), "answered once");

    let reload = Input::PublicAddresses {
        request: public,
        result: Err("no such file".into()),
    };
    let out = n.feed(NOW, reload.clone());
    assert_eq!(
        tool_replies(&out),
        [(0, -1, "cannot read public_addresses".to_owned())]
    );
    assert!(
        tool_replies(&n.feed(NOW, reload)).is_empty(),
        "answered once"
    );
    assert_eq!(n.deferred.len(), 0);
}

/// The generation of the database recovery that `out` asks for.
fn generation_of(out: &[Output]) -> u32 {
    out.iter()
        .find_map(|o| match o {
            Output::RecoverDatabases { generation, .. } => Some(*generation),
            _ => None,
        })
        .expect("a database recovery is asked for")
}

/// What `ctdb recover` sends: SET_RECMODE active, from the tool.
fn recover_request() -> Input {
    Input::ClientPacket {
        client: TOOL,
        packet: control_packet(
            CURRENT_NODE,
            Opcode::SET_RECMODE,
            0,
            0,
            1u32.to_le_bytes().to_vec(),
        ),
    }
}

// ---- succession: backing and the successor's bound ------------------------------

/// A message from node `pnn` over its link.
fn from_node(pnn: u32, srvid: u64, data: Vec<u8>) -> Input {
    Input::PeerPacket {
        pnn,
        packet: Packet {
            header: Header {
                generation: 0,
                destnode: 0,
                srcnode: pnn,
                reqid: 0,
            },
            body: Body::ReqMessage(ReqMessage { srvid, data }),
        },
    }
}

fn lease_request_with(
    seq: u64,
    echo_ms: u64,
    receipts: Vec<crate::protocol::control::GrantReceipt>,
) -> Vec<u8> {
    crate::protocol::control::LeaseRequest {
        seq,
        echo_ms,
        leased_for_ms: 0,
        holds_granted_for_ms: 0,
        receipts,
    }
    .encode()
}

/// The grants node 0 sent node `to` in `out`.
fn grants_to(out: &[Output], to: u32) -> Vec<crate::protocol::control::LeaseGrant> {
    out.iter()
        .filter_map(|o| match o {
            Output::SendToPeer {
                pnn,
                packet:
                    Packet {
                        body: Body::ReqMessage(m),
                        ..
                    },
            } if *pnn == to && m.srvid == srvid::LEASE_GRANT => {
                Some(crate::protocol::control::LeaseGrant::decode(&m.data).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// Given node 0 leading three nodes with the lock, its grants go out unbacked
/// until a follower echoes one (one follower and the leader are a majority of
/// three), and it may not take its own addresses before; backed, it takes one.
/// When the echoes stop, its backing ends a lease after the last echoed stamp and
/// it drops its own address at once, though it still holds the lock; a new echo
/// backs it again and it asks for a takeover run to place its addresses anew.
#[test]
fn a_leader_whose_followers_echoes_stop_drops_its_own_addresses() {
    let mut n = build_node(Some("/shared/.reclock"), Some("192.168.20.43"));
    n.feed(NOW, Input::PeerConnected { pnn: 1 });
    n.feed(NOW, Input::PeerConnected { pnn: 2 });
    n.feed(at(5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    let out = n.feed(
        at(10),
        from_node(1, srvid::LEASE_REQUEST, lease_request_with(1, 0, vec![])),
    );
    let grant = grants_to(&out, 1)[0];
    assert!(!grant.backed, "nobody echoed yet");
    assert!(!n.own_addresses_allowed());
    let addr: std::net::IpAddr = "10.0.0.31".parse().unwrap();
    finish_events(&mut n, at(10));
    let ip = crate::protocol::control::PublicIp { pnn: 0, addr }.encode();
    let (reply, _) = call(&mut n, Opcode::TAKEOVER_IP, ip.clone());
    assert_eq!(reply.status, -1, "unbacked: not taking");

    let out = n.feed(
        at(70),
        from_node(
            1,
            srvid::LEASE_REQUEST,
            lease_request_with(2, grant.stamp_ms, vec![]),
        ),
    );
    assert!(grants_to(&out, 1)[0].backed);
    assert_eq!(n.backing_until_ms, 10 + 500);
    host(&mut n, addr);
    assert_eq!(n.hosted().count(), 1);

    let out = n.feed(at(509), Input::Tick);
    assert!(!removes(&out));
    assert!(n.poll_timeout() <= 510, "wakes up when the backing ends");
    let out = n.feed(at(510), Input::Tick);
    assert!(removes(&out), "unbacked: its own address goes");
    assert!(
        n.is_leader() && n.lease_valid(),
        "still leads with the lock"
    );
    n.feed(
        at(510),
        Input::AddressRemoved {
            addr,
            result: Ok(()),
        },
    );
    finish_events(&mut n, at(510));
    n.takeover_wanted = false;
    n.feed(
        at(600),
        from_node(1, srvid::LEASE_REQUEST, lease_request_with(3, 580, vec![])),
    );
    assert!(n.own_addresses_allowed());
    assert!(n.takeover_wanted || n.takeover_pending(), "placed anew");
}

/// Given node 0 leading alone since it started (its peers never answer), it may
/// keep its own addresses only after the unbacked wait from its start.
#[test]
fn a_lone_leader_takes_its_own_addresses_after_the_unbacked_wait() {
    let mut n = build_node(Some("/shared/.reclock"), Some("192.168.20.43"));
    n.feed(at(5), Input::Reclock(ReclockStatus::Taken));
    assert!(n.is_leader());
    let wait = super::succession::unbacked_wait_ms(
        n.minority_race_delay_ms(),
        super::succession::LOCK_CHECK_MS,
        200,
    );
    assert_eq!(n.own_addresses_gate(), wait);
    n.feed(at(wait - 1), Input::Tick);
    assert!(!n.own_addresses_allowed());
    n.feed(at(wait), Input::Tick);
    assert!(n.own_addresses_allowed());
}

/// Given node 0 following node 1, both connected, when node 2 also claims to lead
/// (one of the two lost the lock and has not noticed yet), then node 0 stays with
/// node 1 until node 1 lets go (here: its link goes), and only then follows node 2:
/// `succession` needs a follower never to go back to a predecessor's grants after
/// reporting to its successor.
#[test]
fn a_second_claim_to_lead_is_ignored_while_our_leader_is_connected() {
    let mut n = follower_of_peer_in(build_node(Some("/shared/.reclock"), Some("192.168.20.43")));
    n.feed(at(20), Input::PeerConnected { pnn: 2 });
    n.feed(
        at(30),
        from_node(2, srvid::LEADER, 2u32.to_le_bytes().to_vec()),
    );
    assert_eq!(
        n.leader(),
        Some(1),
        "ours is connected: the claim is ignored"
    );
    n.feed(at(40), Input::PeerDisconnected { pnn: 1 });
    n.feed(
        at(50),
        from_node(2, srvid::LEADER, 2u32.to_le_bytes().to_vec()),
    );
    assert_eq!(n.leader(), Some(2), "ours let go: the claimant is followed");
}

/// Given node 0 following node 1 in a cluster of three (node 2 connected), with a
/// backed grant from node 1 received at 100 ms, when node 1's connection closes
/// and node 0 wins the lock at 405 ms, then nodes 1 and 2 are guarded for a lease +
/// margin from the election; node 0's own receipt is one report of the two needed,
/// and node 2's (its last grant at 150 ms) makes two: both guards end at
/// 150 + 500 + 200 ms. A report without a receipt of node 1 allows nothing.
#[test]
fn a_successor_lowers_its_election_guards_to_the_survivors_receipts() {
    let setup = || {
        let mut n =
            follower_of_peer_in(build_node(Some("/shared/.reclock"), Some("192.168.20.43")));
        n.feed(at(10), Input::PeerConnected { pnn: 2 });
        let out = n.feed(at(100), Input::Tick);
        let seq = lease_requests(&out)[0];
        let grant = crate::protocol::control::LeaseGrant {
            seq,
            lease_ms: 500,
            stamp_ms: 90,
            backed: true,
        };
        n.feed(at(100), from_peer(srvid::LEASE_GRANT, grant.encode()));
        n.feed(at(300), Input::PeerDisconnected { pnn: 1 });
        n.feed(at(400), Input::Tick);
        n.feed(at(405), Input::Reclock(ReclockStatus::Taken));
        assert!(n.is_leader());
        assert_eq!(guarded(&n), [1, 2]);
        assert_eq!(n.lease_guards[&1], 405 + 500 + 200);
        n
    };
    let receipt = |any: u32, backed: Option<u32>| crate::protocol::control::GrantReceipt {
        pnn: 1,
        any_age_ms: any,
        backed_age_ms: backed,
    };

    let mut n = setup();
    // Node 2's request at 410 ms: its last grant from node 1 came 260 ms ago.
    n.feed(
        at(410),
        from_node(
            2,
            srvid::LEASE_REQUEST,
            lease_request_with(1, 0, vec![receipt(260, Some(260))]),
        ),
    );
    assert_eq!(n.lease_guards[&1], 150 + 500 + 200);
    assert_eq!(n.lease_guards[&2], 150 + 500 + 200);

    let mut n = setup();
    n.feed(
        at(410),
        from_node(2, srvid::LEASE_REQUEST, lease_request_with(1, 0, vec![])),
    );
    assert_eq!(
        n.lease_guards[&1],
        405 + 500 + 200,
        "node 2 never heard node 1: one report"
    );
}

/// Given a follower, each grant it accepts is a receipt of its leader, reported as
/// ages to the next leader it follows (not to the leader it is about).
#[test]
fn a_follower_reports_its_receipts_to_its_next_leader() {
    let mut n = leased_follower_hosting();
    let out = n.feed(at(100), Input::Tick);
    let sent = sent_to_peer(&out, srvid::LEASE_REQUEST);
    let request = crate::protocol::control::LeaseRequest::decode(&sent[0]).unwrap();
    assert!(
        request.receipts.is_empty(),
        "nothing to tell node 1 about itself"
    );
    assert_eq!(n.receipt_report(2).len(), 1);
    assert_eq!(
        n.receipt_report(2)[0],
        crate::protocol::control::GrantReceipt {
            pnn: 1,
            any_age_ms: 100 - 12,
            backed_age_ms: None,
        }
    );
}

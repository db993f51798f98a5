//! The DNS responder (`[dns]`): answers A and AAAA queries for one name with the
//! public addresses hosted by healthy nodes, rotated on every answer, with a short
//! TTL. Messages are decoded and encoded by `hickory-proto`; this module only
//! decides what to answer.
//!
//! ```text
//!   resolver ──UDP query──> responder task ── latest snapshot (Arc clone)
//!            <──answer────     answer(): addresses_on_healthy_nodes(), rotated
//! ```
//!
//! What a name server authoritative for exactly one name answers (RFC 1034
//! section 4.3.2, RFC 2308 for the negative answers):
//! - the name, class IN, type A / AAAA / ANY: the addresses of that family (ANY:
//!   both) on healthy nodes, authoritative. None left: SERVFAIL, so that a
//!   resolver asks another node's responder rather than caching "no address".
//! - the name, another type: no answer, NOERROR (the name exists).
//! - a name below it: NXDOMAIN; any other name, or another class: REFUSED (not
//!   ours to answer).
//! - not a standard query: NOTIMP; undecodable or not exactly one question:
//!   FORMERR (when at least the header could be read; otherwise no answer).
//!
//! An address is answered only while its node is healthy (flags OK) in this node's
//! view, it is not on its way to another node, and nothing puts it in doubt: this
//! node's lease is not about to run out (all followers of a leader drop their
//! addresses together when it goes silent) and its node has been heard lately
//! (`snapshot::Snapshot::addresses_on_healthy_nodes`). So never one that is between
//! nodes as far as this node can know: a node that dies silently is known to be
//! gone only when its keepalives are missed or its lease must have run out. Answers fit one UDP datagram (512 bytes, or the client's EDNS
//! size): when there are more addresses than fit, the rotation still shows each in
//! turn. No TCP.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::snapshot::{latest, Snapshot, Snapshots};

/// Our EDNS answer size: what fits an Ethernet frame without fragmentation.
const EDNS_PAYLOAD: u16 = 1232;

/// What the responder answers for.
#[derive(Debug)]
pub struct Responder {
    name: Name,
    ttl: u32,
    /// Rotates the answers: each one starts one address further.
    turn: AtomicUsize,
}

impl Responder {
    /// A responder for `name` (absolute, e.g. `nas.example.`) with `ttl` seconds.
    pub fn new(name: &str, ttl: u32) -> Result<Self, hickory_proto::ProtoError> {
        Ok(Self {
            name: Name::from_ascii(name)?,
            ttl,
            turn: AtomicUsize::new(0),
        })
    }

    /// The answer to one datagram, or `None` when it deserves none (not even a
    /// header, or itself an answer).
    pub fn answer(&self, datagram: &[u8], snapshot: &Snapshot, now: Instant) -> Option<Vec<u8>> {
        let request = match Message::from_vec(datagram) {
            Ok(m) => m,
            Err(_) => {
                // Answer FORMERR to whoever sent at least a query header.
                let id = u16::from_be_bytes([*datagram.first()?, *datagram.get(1)?]);
                let qr = datagram.get(2)? & 0x80 != 0;
                if qr || datagram.len() < 12 {
                    return None;
                }
                return encode(&Message::error_msg(
                    id,
                    OpCode::Query,
                    ResponseCode::FormErr,
                ));
            }
        };
        if request.message_type() != MessageType::Query {
            return None;
        }
        let mut response =
            Message::error_msg(request.id(), request.op_code(), ResponseCode::NoError);
        response.set_recursion_desired(request.recursion_desired());
        let max_size = if let Some(edns) = request.extensions() {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(ours);
            usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD))
        } else {
            512
        };
        if request.op_code() != OpCode::Query {
            response.set_response_code(ResponseCode::NotImp);
            return encode(&response);
        }
        let [query] = request.queries() else {
            response.set_response_code(ResponseCode::FormErr);
            return encode(&response);
        };
        response.add_query(query.clone());
        let asked = query.name();
        if query.query_class() != DNSClass::IN || !self.name.zone_of(asked) {
            response.set_response_code(ResponseCode::Refused);
            return encode(&response);
        }
        response.set_authoritative(true);
        // At or below ours (checked above); below it if it has more labels.
        if asked.iter().count() != self.name.iter().count() {
            response.set_response_code(ResponseCode::NXDomain);
            return encode(&response);
        }
        let wanted = |addr: &IpAddr| match query.query_type() {
            RecordType::A => addr.is_ipv4(),
            RecordType::AAAA => addr.is_ipv6(),
            RecordType::ANY => true,
            _ => false,
        };
        if !matches!(
            query.query_type(),
            RecordType::A | RecordType::AAAA | RecordType::ANY
        ) {
            return encode(&response);
        }
        let mut addrs: Vec<IpAddr> = snapshot
            .addresses_on_healthy_nodes(now)
            .into_iter()
            .filter(wanted)
            .collect();
        if addrs.is_empty() {
            response.set_response_code(ResponseCode::ServFail);
            return encode(&response);
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let len = addrs.len();
        addrs.rotate_left(turn % len);
        let mut answer = encode(&response)?;
        for addr in addrs {
            let rdata = match addr {
                IpAddr::V4(a) => RData::A(A(a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(a)),
            };
            response.add_answer(Record::from_rdata(asked.clone(), self.ttl, rdata));
            match encode(&response) {
                Some(bytes) if bytes.len() <= max_size => answer = bytes,
                // The rest does not fit: the rotation shows it in later answers.
                _ => break,
            }
        }
        Some(answer)
    }
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    match message.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            warn!(error = %e, "cannot encode a DNS answer");
            None
        }
    }
}

/// Answers queries on `socket` until cancelled.
pub async fn serve(
    socket: UdpSocket,
    responder: Responder,
    snapshots: Snapshots,
    cancel: CancellationToken,
) {
    // 512 bytes is all a plain query needs; EDNS queries are small too.
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, from): (usize, SocketAddr) = tokio::select! {
            _ = cancel.cancelled() => return,
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "DNS responder: receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let snapshot = latest(&snapshots);
        let Some(answer) = responder.answer(&buf[..len], &snapshot, Instant::now()) else {
            debug!(%from, "DNS responder: datagram ignored");
            continue;
        };
        if let Err(e) = socket.send_to(&answer, from).await {
            debug!(%from, error = %e, "DNS responder: answer not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Counters, NodeInfo, PublicAddressState};
    use crate::protocol::control::{node_flags, Runstate};
    use crate::protocol::packet::UNKNOWN_PNN;
    use hickory_proto::op::Query;

    /// Node 0 (us) holds .101, node 1 .102 (it is DISABLED), node 2 .103 and
    /// fd00::104; .105 is on its way to node 2; .106 is on no node.
    fn snapshot() -> Snapshot {
        let node = |pnn, flags| NodeInfo {
            pnn,
            addr: Some(IpAddr::from([192, 168, 20, 41 + pnn as u8])),
            flags,
        };
        let ip = |addr: &str, pnn, held: bool, unsettled| PublicAddressState {
            addr: addr.parse().unwrap(),
            prefix_len: 24,
            ifaces: vec!["pub0".into()],
            pnn,
            active_iface: held.then_some(0),
            deleting: false,
            unsettled,
        };
        Snapshot {
            pnn: 0,
            leader: Some(0),
            generation: 5,
            vnn_map: vec![0, 1, 2],
            recovery_mode: 0,
            runstate: Runstate::Running,
            nodes: vec![node(0, 0), node(1, node_flags::DISABLED), node(2, 0)],
            public_addresses: vec![
                ip("10.0.20.101", 0, true, false),
                ip("10.0.20.102", 1, false, false),
                ip("10.0.20.103", 2, false, false),
                ip("fd00::104", 2, false, false),
                ip("10.0.20.105", 2, false, true),
                ip("10.0.20.106", UNKNOWN_PNN, false, false),
            ],
            clients: 0,
            counters: Counters::default(),
            lease_until: None,
            peers_heard: [(1, at(0)), (2, at(0))].into(),
            peer_silence_limit: Duration::from_millis(800),
            vacuum: Default::default(),
            sticky: Default::default(),
            control_timeout: Duration::from_secs(60),
            allow_client_db_attach: 1,
            rec_buffer_size_limit: 1_000_000,
        }
    }

    /// A fixed instant plus `ms`: the tests' clock.
    fn at(ms: u64) -> Instant {
        use std::sync::OnceLock;
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        m.to_vec().unwrap()
    }

    fn ask(r: &Responder, s: &Snapshot, name: &str, kind: RecordType) -> Message {
        ask_at(r, s, name, kind, 100)
    }

    fn ask_at(r: &Responder, s: &Snapshot, name: &str, kind: RecordType, ms: u64) -> Message {
        let answer = r.answer(&query(name, kind), s, at(ms)).expect("an answer");
        Message::from_vec(&answer).unwrap()
    }

    fn addresses(m: &Message) -> Vec<IpAddr> {
        m.answers()
            .iter()
            .map(|r| match r.data() {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_healthy_settled_addresses_rotating() {
        let r = Responder::new("nas.example.", 1).unwrap();
        let s = snapshot();
        let first = ask(&r, &s, "NAS.example.", RecordType::A);
        assert_eq!(first.id(), 0x1234);
        assert_eq!(first.response_code(), ResponseCode::NoError);
        assert!(first.authoritative() && first.recursion_desired());
        assert!(first.answers().iter().all(|a| a.ttl() == 1));
        let ips = |v: &[&str]| {
            v.iter()
                .map(|a| a.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(addresses(&first), ips(&["10.0.20.101", "10.0.20.103"]));
        let second = ask(&r, &s, "nas.example.", RecordType::A);
        assert_eq!(addresses(&second), ips(&["10.0.20.103", "10.0.20.101"]));
        assert_eq!(
            addresses(&ask(&r, &s, "nas.example.", RecordType::AAAA)),
            ips(&["fd00::104"])
        );
        assert_eq!(
            addresses(&ask(&r, &s, "nas.example.", RecordType::ANY)).len(),
            3
        );
    }

    #[test]
    fn other_names_types_and_junk_as_a_name_server_answers_them() {
        let r = Responder::new("nas.example.", 1).unwrap();
        let s = snapshot();
        let code = |name, kind| ask(&r, &s, name, kind).response_code();
        assert_eq!(
            code("www.nas.example.", RecordType::A),
            ResponseCode::NXDomain
        );
        assert_eq!(code("example.", RecordType::A), ResponseCode::Refused);
        assert_eq!(
            code("nas.example.org.", RecordType::A),
            ResponseCode::Refused
        );
        let mx = ask(&r, &s, "nas.example.", RecordType::MX);
        assert_eq!(
            (mx.response_code(), mx.answers().len()),
            (ResponseCode::NoError, 0)
        );
        // Nobody healthy hosts anything: let the resolver ask elsewhere.
        let mut down = snapshot();
        down.nodes
            .iter_mut()
            .for_each(|n| n.flags = node_flags::BANNED);
        assert_eq!(
            ask(&r, &down, "nas.example.", RecordType::A).response_code(),
            ResponseCode::ServFail
        );
        // A header and garbage: FORMERR; less than a header, or an answer: silence.
        let mut junk = query("nas.example.", RecordType::A);
        junk.truncate(14);
        let formerr = Message::from_vec(&r.answer(&junk, &s, at(0)).unwrap()).unwrap();
        assert_eq!(formerr.response_code(), ResponseCode::FormErr);
        assert_eq!(r.answer(&junk[..5], &s, at(0)), None);
        let answer = r
            .answer(&query("nas.example.", RecordType::A), &s, at(0))
            .unwrap();
        assert_eq!(r.answer(&answer, &s, at(0)), None);
    }

    #[test]
    fn addresses_in_doubt_are_not_answered() {
        let r = Responder::new("nas.example.", 1).unwrap();
        let mut s = snapshot();
        let ips = |m: &Message| {
            addresses(m)
                .into_iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        };
        // Node 2 silent for 900 ms: it may have lost its lease unheard.
        assert_eq!(
            ips(&ask_at(&r, &s, "nas.example.", RecordType::A, 900)),
            ["10.0.20.101"]
        );
        // A follower whose lease ends in less than the margin trusts nobody's.
        s.lease_until = Some(at(250));
        assert_eq!(
            ips(&ask_at(&r, &s, "nas.example.", RecordType::A, 0)).len(),
            2
        );
        assert_eq!(
            ask_at(&r, &s, "nas.example.", RecordType::A, 60).response_code(),
            ResponseCode::ServFail
        );
    }

    #[test]
    fn answers_fit_one_datagram() {
        let r = Responder::new("nas.example.", 1).unwrap();
        let mut s = snapshot();
        s.public_addresses = (0..100u8)
            .map(|i| PublicAddressState {
                addr: IpAddr::from([10, 0, 21, i]),
                prefix_len: 24,
                ifaces: vec!["pub0".into()],
                pnn: 0,
                active_iface: Some(0),
                deleting: false,
                unsettled: false,
            })
            .collect();
        let bytes = r
            .answer(&query("nas.example.", RecordType::A), &s, at(0))
            .unwrap();
        assert!(bytes.len() <= 512, "{}", bytes.len());
        let m = Message::from_vec(&bytes).unwrap();
        assert!(!m.truncated() && m.answers().len() > 20);
    }
}

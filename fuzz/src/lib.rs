// The body of the `packet_decode` fuzz target, kept in a plain file so that
// `ctdbd/tests/codec_props.rs` can `include!` it and run the very same code under
// proptest on a stable toolchain. Hence `//` comments only (no inner docs) and
// nothing but `ctdbd` paths.
//
// Feeds arbitrary bytes through the framers, the packet decoder and, by the
// opcode or srvid the packet names, every typed decoder. Nothing may panic; a
// decoded packet must encode to a fixpoint (decoding what we encode and
// encoding again gives the same bytes).

/// Frames, decodes and re-encodes `data` as a CTDB packet and its payloads.
pub fn packet_decode(data: &[u8]) {
    use ctdbd::protocol::control as c;
    use ctdbd::protocol::dbctl as d;
    use ctdbd::protocol::marshall::{MarshallBuffer, RecData};
    use ctdbd::protocol::{Body, Framer, Packet};

    for framer in [Framer::for_clients(), Framer::for_peers()] {
        if let Ok(Some(len)) = framer.frame_len(data) {
            assert!(len <= data.len(), "frame longer than the buffer");
        }
    }
    let packet = match Packet::decode(data) {
        Ok(p) => p,
        Err(_) => {
            // Still run every payload decoder over the raw bytes.
            payload_decoders(data);
            return;
        }
    };
    let once = packet.encode();
    assert_eq!(once.len() % 8, 0, "encoded packet is not padded to 8");
    let again = Packet::decode(&once).expect("our own encoding decodes");
    assert_eq!(again.encode(), once, "encoding is not a fixpoint");

    match &packet.body {
        Body::ReqControl(ctrl) => match c::Opcode(ctrl.opcode) {
            c::Opcode::PROCESS_EXISTS => {
                let _ = c::decode_i32(&ctrl.data, "pid");
            }
            c::Opcode::CHECK_PID_SRVID => touch(c::PidSrvid::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::GET_TUNABLE => touch(c::decode_tunable_name(&ctrl.data), |n| {
                c::encode_tunable_name(n)
            }),
            c::Opcode::SET_TUNABLE => touch(c::Tunable::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::SETVNNMAP => touch(c::VnnMap::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::MODIFY_FLAGS => touch(c::NodeFlagChange::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::SET_BAN_STATE => touch(c::BanState::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::TAKEOVER_IP | c::Opcode::RELEASE_IP => {
                touch(c::PublicIp::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::ADD_PUBLIC_IP | c::Opcode::DEL_PUBLIC_IP => {
                touch(c::AddrInfo::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::SET_IFACE_LINK_STATE => touch(c::Iface::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::DB_ATTACH
            | c::Opcode::DB_ATTACH_PERSISTENT
            | c::Opcode::DB_ATTACH_REPLICATED => {
                touch(d::decode_nul_string(&ctrl.data, "name"), |n| {
                    d::encode_nul_string(n)
                })
            }
            c::Opcode::GET_DB_SEQNUM => touch(d::GetDbSeqnum::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::WIPE_DATABASE
            | c::Opcode::DB_TRANSACTION_START
            | c::Opcode::DB_TRANSACTION_COMMIT => {
                touch(d::TransDb::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::DB_PULL | c::Opcode::DB_PUSH_START => {
                touch(d::PullDb::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::TRAVERSE_START | c::Opcode::TRAVERSE_KILL => {
                touch(d::TraverseStart::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::TRAVERSE_START_EXT => {
                touch(d::TraverseStartExt::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::TRAVERSE_ALL => touch(d::TraverseAll::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::TRAVERSE_ALL_EXT => {
                touch(d::TraverseAllExt::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::TRAVERSE_DATA => touch(RecData::decode(&ctrl.data), |v| v.encode()),
            c::Opcode::SCHEDULE_FOR_DELETION => {
                touch(d::ScheduleForDeletion::decode(&ctrl.data), |v| v.encode())
            }
            c::Opcode::TRANS3_COMMIT
            | c::Opcode::UPDATE_RECORD
            | c::Opcode::VACUUM_FETCH
            | c::Opcode::TRY_DELETE_RECORDS => {
                touch(MarshallBuffer::decode(&ctrl.data), |v| v.encode())
            }
            _ => payload_decoders(&ctrl.data),
        },
        // A reply does not say which control it answers: try them all.
        Body::ReplyControl(reply) => payload_decoders(&reply.data),
        Body::ReqMessage(msg) => match msg.srvid {
            c::srvid::TAKEOVER_RUN => touch(c::SrvidMessage::decode(&msg.data), |v| v.encode()),
            c::srvid::DISABLE_TAKEOVER_RUNS | c::srvid::DISABLE_RECOVERIES => {
                touch(c::DisableMessage::decode(&msg.data), |v| v.encode())
            }
            c::srvid::PUSH_NODE_FLAGS => {
                touch(c::NodeFlagChange::decode(&msg.data), |v| v.encode())
            }
            c::srvid::LEASE_REQUEST => touch(c::LeaseRequest::decode(&msg.data), |v| v.encode()),
            c::srvid::LEASE_GRANT => touch(c::LeaseGrant::decode(&msg.data), |v| v.encode()),
            _ => payload_decoders(&msg.data),
        },
        _ => {}
    }
}

/// Every typed decoder over the same bytes; whatever decodes must also encode.
fn payload_decoders(data: &[u8]) {
    use ctdbd::protocol::control as c;
    use ctdbd::protocol::dbctl as d;
    use ctdbd::protocol::marshall::{MarshallBuffer, RecData};
    use ctdbd::protocol::statistics::Statistics;

    touch(c::NodeMap::decode(data), |v| v.encode());
    touch(c::VnnMap::decode(data), |v| v.encode());
    touch(c::PublicIp::decode(data), |v| v.encode());
    touch(c::PublicIpList::decode(data), |v| v.encode());
    touch(c::PublicIpInfo::decode(data), |v| v.encode());
    touch(c::Iface::decode(data), |v| v.encode());
    touch(c::IfaceList::decode(data), |v| v.encode());
    touch(c::Uptime::decode(data), |v| v.encode());
    touch(Statistics::decode(data), |v| v.encode());
    touch(c::Tunable::decode(data), |v| v.encode());
    touch(c::decode_tunable_name(data), |n| c::encode_tunable_name(n));
    touch(c::decode_var_list(data), |names| {
        c::encode_var_list(names.iter().map(String::as_str))
    });
    touch(c::PidSrvid::decode(data), |v| v.encode());
    touch(c::SrvidMessage::decode(data), |v| v.encode());
    touch(c::DisableMessage::decode(data), |v| v.encode());
    touch(c::BanState::decode(data), |v| v.encode());
    touch(c::NodeFlagChange::decode(data), |v| v.encode());
    touch(c::AddrInfo::decode(data), |v| v.encode());
    touch(c::decode_u32(data, "u32"), |v| c::encode_u32(*v));
    let _ = c::decode_i32(data, "i32");
    touch(MarshallBuffer::decode(data), |v| v.encode());
    touch(RecData::decode(data), |v| v.encode());
    touch(d::DbMap::decode(data), |v| v.encode());
    touch(d::decode_nul_string(data, "name"), |n| {
        d::encode_nul_string(n)
    });
}

/// Encodes a decoded value (encoding must not panic either).
fn touch<T, E>(decoded: Result<T, E>, encode: impl Fn(&T) -> Vec<u8>) {
    if let Ok(v) = decoded {
        let _ = encode(&v);
    }
}

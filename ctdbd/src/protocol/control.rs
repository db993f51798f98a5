//! Control numbers, message ids and the marshalled data types the controls carry
//! (reference/ctdb-protocol-core.md §5, §6, §8). Each type has `encode` and a
//! never-panicking `decode`; decode insists on the exact size the C daemon enforces.

use std::net::{IpAddr, SocketAddr};

use super::wire::{c_string, DecodeError, Reader, Writer};

/// A control number. Kept open (not an enum) because peers and clients may send
/// numbers we do not know, and those still need CTDB's error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opcode(pub u32);

macro_rules! opcodes {
    ($($name:ident = $num:literal,)*) => {
        impl Opcode {
            $(
                #[doc = concat!("CTDB_CONTROL_", stringify!($name), ".")]
                pub const $name: Opcode = Opcode($num);
            )*

            /// CTDB's name for the control, as the tool prints it in errors.
            pub fn name(self) -> &'static str {
                match self.0 {
                    $($num => stringify!($name),)*
                    _ => "UNKNOWN",
                }
            }
        }
    };
}

opcodes! {
    PROCESS_EXISTS = 0,
    STATISTICS = 1,
    PING = 3,
    GETDBPATH = 4,
    GETVNNMAP = 5,
    SETVNNMAP = 6,
    GET_DEBUG = 7,
    SET_DEBUG = 8,
    GET_DBMAP = 9,
    GET_RECMODE = 15,
    SET_RECMODE = 16,
    STATISTICS_RESET = 17,
    DB_ATTACH = 18,
    REGISTER_SRVID = 23,
    DEREGISTER_SRVID = 24,
    GET_DBNAME = 25,
    DUMP_MEMORY = 29,
    GET_PID = 30,
    FREEZE = 33,
    GET_PNN = 35,
    SHUTDOWN = 36,
    TCP_CLIENT = 44,
    STARTUP = 47,
    SET_TUNABLE = 48,
    GET_TUNABLE = 49,
    LIST_TUNABLES = 50,
    MODIFY_FLAGS = 52,
    GET_ALL_TUNABLES = 53,
    UPTIME = 69,
    RELOAD_NODES_FILE = 72,
    ADD_PUBLIC_IP = 77,
    DEL_PUBLIC_IP = 78,
    GET_CAPABILITIES = 80,
    START_PERSISTENT_UPDATE = 81,
    CANCEL_PERSISTENT_UPDATE = 82,
    RECD_PING = 87,
    RELEASE_IP = 88,
    TAKEOVER_IP = 89,
    GET_PUBLIC_IPS = 90,
    SEND_GRATUITOUS_ARP = 64,
    TCP_ADD = 45,
    TCP_REMOVE = 46,
    GET_TCP_TICKLE_LIST = 55,
    SET_TCP_TICKLE_LIST = 56,
    TCP_ADD_DELAYED_UPDATE = 126,
    GET_STAT_HISTORY = 127,
    GET_NODEMAP = 91,
    GET_RECLOCK_FILE = 99,
    STOP_NODE = 101,
    SET_LMASTERROLE = 104,
    SET_RECMASTERROLE = 105,
    CONTINUE_NODE = 102,
    SET_BAN_STATE = 109,
    GET_BAN_STATE = 110,
    DB_GET_HEALTH = 122,
    GET_PUBLIC_IP_INFO = 123,
    GET_IFACES = 124,
    SET_IFACE_LINK_STATE = 125,
    RELOAD_PUBLIC_IPS = 134,
    IPREALLOCATED = 137,
    GET_RUNSTATE = 138,
    GET_NODES_FILE = 140,
    CHECK_PID_SRVID = 151,
    DISABLE_NODE = 157,
    ENABLE_NODE = 158,
    // The database controls (samba §2, §6, §7; core §5.1).
    TRAVERSE_START = 20,
    TRAVERSE_ALL = 21,
    TRAVERSE_DATA = 22,
    ENABLE_SEQNUM = 26,
    UPDATE_SEQNUM = 27,
    DB_ATTACH_PERSISTENT = 61,
    UPDATE_RECORD = 63,
    WIPE_DATABASE = 67,
    START_RECOVERY = 70,
    END_RECOVERY = 71,
    TRY_DELETE_RECORDS = 74,
    TRAVERSE_KILL = 97,
    RECD_RECLOCK_LATENCY = 98,
    REGISTER_NOTIFY = 114,
    DEREGISTER_NOTIFY = 115,
    TRANS3_COMMIT = 119,
    GET_DB_SEQNUM = 120,
    DB_SET_HEALTHY = 121,
    SCHEDULE_FOR_DELETION = 128,
    SET_DB_READONLY = 129,
    TRAVERSE_START_EXT = 131,
    GET_DB_STATISTICS = 132,
    SET_DB_STICKY = 133,
    TRAVERSE_ALL_EXT = 135,
    DB_DETACH = 139,
    DB_FREEZE = 141,
    DB_THAW = 142,
    DB_TRANSACTION_START = 143,
    DB_TRANSACTION_COMMIT = 144,
    DB_TRANSACTION_CANCEL = 145,
    DB_PULL = 146,
    DB_PUSH_START = 147,
    DB_PUSH_CONFIRM = 148,
    DB_OPEN_FLAGS = 149,
    DB_ATTACH_REPLICATED = 150,
    TUNNEL_REGISTER = 152,
    TUNNEL_DEREGISTER = 153,
    VACUUM_FETCH = 154,
    DB_VACUUM = 155,
    ECHO_DATA = 156,
}

impl Opcode {
    /// Controls marked obsolete in 4.17's `protocol.h`; the daemon answers them with
    /// status −1 and no text (§5.1).
    pub fn is_obsolete(self) -> bool {
        matches!(
            self.0,
            10 | 11 | 13 | 14 | 19 | 31 | 32 | 34 | 37 | 42 | 43 | 51 | 54 | 57..=60 | 62 | 65
                | 66 | 75 | 76 | 79 | 83..=86 | 96 | 100 | 103 | 107 | 108 | 111 | 112 | 113
                | 116 | 117 | 118 | 130 | 136
        )
    }
}

/// Message ids (§8.1).
pub mod srvid {
    /// A registration for this receives every message.
    pub const ALL: u64 = 0xFFFF_FFFF_FFFF_FFFF;
    /// Election messages between recovery daemons.
    pub const ELECTION: u64 = 0xF100_0000_0000_0000;
    /// The leader's periodic broadcast: u32 leader pnn.
    pub const LEADER: u64 = 0xF101_0000_0000_0000;
    /// Sent to clients after a recovery.
    pub const RECONFIGURE: u64 = 0xF200_0000_0000_0000;
    /// A public IP was released: NUL-terminated IP text.
    pub const RELEASE_IP: u64 = 0xF300_0000_0000_0000;
    /// A public IP was taken: NUL-terminated IP text.
    pub const TAKE_IP: u64 = 0xF301_0000_0000_0000;
    /// A node's health changed.
    pub const PUSH_NODE_FLAGS: u64 = 0xF900_0000_0000_0000;
    /// Reload the nodes file.
    pub const RELOAD_NODES: u64 = 0xFA00_0000_0000_0000;
    /// Ask the leader for a takeover run; reply i32 to (pnn, srvid).
    pub const TAKEOVER_RUN: u64 = 0xFB00_0000_0000_0000;
    /// Ask for the recovery daemon's memory report (`ctdb rddumpmemory`): a
    /// srvid_message; the report goes back as text to (pnn, srvid).
    pub const MEM_DUMP: u64 = 0xF800_0000_0000_0000;
    /// Vacuuming: a marshall buffer of empty records for their lmaster.
    pub const VACUUM_FETCH: u64 = 0xF700_0000_0000_0000;
    /// A database was detached: u32 db_id.
    pub const DETACH_DATABASE: u64 = 0xF701_0000_0000_0000;
    /// Force a rebalance of the given node at the next takeover run.
    pub const REBALANCE_NODE: u64 = 0xFB01_0000_0000_0000;
    /// Disable takeover runs for a while; every node replies its pnn.
    pub const DISABLE_TAKEOVER_RUNS: u64 = 0xFB03_0000_0000_0000;
    /// Disable recoveries for a while; every node replies its pnn.
    pub const DISABLE_RECOVERIES: u64 = 0xFB04_0000_0000_0000;
    /// Disable the IP check for a while (moveip).
    pub const DISABLE_IP_CHECK: u64 = 0xFC00_0000_0000_0000;
    /// The range of the `ctdb` tool's private reply ids.
    pub const TOOL_RANGE: u64 = 0xCE00_0000_0000_0000;
    /// The id 4.17's `ctdb restoredb` pushes a backup's records on (DB_PUSH_START
    /// names it; the records come as marshall buffers). The database thread takes
    /// these messages itself.
    pub const TOOL_PUSHDB: u64 = 0xCE02_0000_0000_0000;

    /// ctdb-rs's own messages between daemons (and from a node's guardian). CTDB 4.17
    /// puts its daemon messages under top byte 0xF0–0xFC, reserves 0xFE, 0xEE, 0xDE,
    /// 0xCE, 0xBE, 0xAE (and master 0x9E) for its clients, and gives clients their pid
    /// (top byte 0x00): top byte 0x72 is used by none of them. A stock daemon that
    /// received one would only pass it to clients registered for [`ALL`].
    pub const CTDB_RS_RANGE: u64 = 0x7200_0000_0000_0000;
    /// Every message of [`CTDB_RS_RANGE`] has this top byte.
    pub const CTDB_RS_MASK: u64 = 0xFF00_0000_0000_0000;
    /// A daemon's incarnation, sent to each peer as soon as the link with it is up:
    /// u64 chosen at random when the daemon starts (see `daemon`). The peer keeps it
    /// to check a later [`DAEMON_GONE`] against.
    pub const INCARNATION: u64 = 0x7201_0000_0000_0000;
    /// From a node's guardian, on a connection of its own from the node's private
    /// address: that node's daemon (the incarnation named) is dead and every public
    /// address it held has been removed. [`super::DaemonGone`] (16 bytes).
    pub const DAEMON_GONE: u64 = 0x7202_0000_0000_0000;
    /// From a follower to its leader: "renew my public-address lease".
    /// [`super::LeaseRequest`] (24 bytes, then an optional receipt report).
    pub const LEASE_REQUEST: u64 = 0x7203_0000_0000_0000;
    /// From a leader that holds the recovery lock, answering [`LEASE_REQUEST`]:
    /// [`super::LeaseGrant`] (25 bytes; 24 in the first form, without `backed`).
    pub const LEASE_GRANT: u64 = 0x7204_0000_0000_0000;
    /// From a node that lost its lease but holds public addresses, to every peer it
    /// is connected to: "may I keep them?" (`core::holds`). u64 sequence number.
    pub const HOLD_REQUEST: u64 = 0x7205_0000_0000_0000;
    /// Answer to [`HOLD_REQUEST`] from a node that is itself without a lease: u64,
    /// the request's sequence number. Nodes with a lease do not answer.
    pub const HOLD_GRANT: u64 = 0x7206_0000_0000_0000;
    /// A recovery's pulled records, from a node to the leader (DB_PULL names
    /// it): marshall buffers. The low 32 bits are the run's generation, so
    /// that a batch of an earlier run is not taken for one of this run.
    pub const RECOVERY_PULL: u64 = 0x7207_0000_0000_0000;
    /// A recovery's pushed records, from the leader to a node (DB_PUSH_START
    /// names it): as [`RECOVERY_PULL`].
    pub const RECOVERY_PUSH: u64 = 0x7208_0000_0000_0000;
    /// The bits of [`RECOVERY_PULL`] and [`RECOVERY_PUSH`] above the generation.
    pub const RECOVERY_KIND_MASK: u64 = 0xFFFF_FFFF_0000_0000;
}

/// Node flags (§6.2).
pub mod node_flags {
    /// No connection to the node.
    pub const DISCONNECTED: u32 = 0x01;
    /// Its monitor event failed.
    pub const UNHEALTHY: u32 = 0x02;
    /// Disabled by the administrator.
    pub const PERMANENTLY_DISABLED: u32 = 0x04;
    /// Banned.
    pub const BANNED: u32 = 0x08;
    /// Deleted from the nodes file (`#` line).
    pub const DELETED: u32 = 0x10;
    /// Stopped by the administrator.
    pub const STOPPED: u32 = 0x20;
    /// Tool-only: the node's state is not known yet. Never on the wire.
    pub const UNKNOWN: u32 = 0x40;
    /// UNHEALTHY | PERMANENTLY_DISABLED.
    pub const DISABLED: u32 = UNHEALTHY | PERMANENTLY_DISABLED;
    /// Any of these makes a node inactive.
    pub const INACTIVE: u32 = DELETED | DISCONNECTED | BANNED | STOPPED;
}

/// Capability bits (§6.13).
pub mod capabilities {
    /// May become leader (recovery master).
    pub const RECMASTER: u32 = 0x1;
    /// May be a location master.
    pub const LMASTER: u32 = 0x2;
    /// Parallel recovery.
    pub const PARALLEL_RECOVERY: u32 = 0x10000;
    /// Fragmented controls.
    pub const FRAGMENTED_CONTROLS: u32 = 0x20000;
    /// What a 4.17 daemon reports by default (observed 0x00030003).
    pub const DEFAULT: u32 = RECMASTER | LMASTER | PARALLEL_RECOVERY | FRAGMENTED_CONTROLS;
}

/// The vnn-map generation that means "none yet" (printed `Generation:INVALID`).
pub const INVALID_GENERATION: u32 = 1;

/// One node of a node map (36 bytes): pnn, flags, address (port 4379 in daemon maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAndFlags {
    /// Node number.
    pub pnn: u32,
    /// `node_flags` bits.
    pub flags: u32,
    /// Private address.
    pub addr: SocketAddr,
}

/// `ctdb_node_map` (§6.1): u32 num, then num × 36-byte entries, in pnn order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeMap {
    /// Every node, deleted ones included, indexed by pnn.
    pub nodes: Vec<NodeAndFlags>,
}

impl NodeMap {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.nodes.len() as u32);
        for n in &self.nodes {
            w.u32(n.pnn).u32(n.flags).sock_addr(&n.addr);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let num = r.count(36, "node_map.num")?;
        let mut nodes = Vec::with_capacity(num);
        for _ in 0..num {
            nodes.push(NodeAndFlags {
                pnn: r.u32("node_map.pnn")?,
                flags: r.u32("node_map.flags")?,
                addr: r.sock_addr("node_map.addr")?,
            });
        }
        r.finish("node_map")?;
        Ok(Self { nodes })
    }
}

/// `ctdb_vnn_map` (§6.3): generation, size, lmaster pnns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VnnMap {
    /// Cluster generation.
    pub generation: u32,
    /// Location master pnn of each hash bucket.
    pub map: Vec<u32>,
}

impl VnnMap {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.generation).u32(self.map.len() as u32);
        for pnn in &self.map {
            w.u32(*pnn);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let generation = r.u32("vnn_map.generation")?;
        let size = r.count(4, "vnn_map.size")?;
        let map = (0..size)
            .map(|_| r.u32("vnn_map.map"))
            .collect::<Result<_, _>>()?;
        r.finish("vnn_map")?;
        Ok(Self { generation, map })
    }
}

/// `ctdb_public_ip` (32 bytes): hosting pnn (or unknown) and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIp {
    /// Hosting node, `UNKNOWN_PNN` if unassigned.
    pub pnn: u32,
    /// The address (port 0).
    pub addr: IpAddr,
}

impl PublicIp {
    fn write(&self, w: &mut Writer) {
        w.u32(self.pnn).sock_addr(&SocketAddr::new(self.addr, 0));
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            pnn: r.u32("public_ip.pnn")?,
            addr: r.sock_addr("public_ip.addr")?.ip(),
        })
    }

    /// Wire form (TAKEOVER_IP / RELEASE_IP request).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly 32 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let ip = Self::read(&mut r)?;
        r.finish("public_ip")?;
        Ok(ip)
    }
}

/// `ctdb_public_ip_list` (§6.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublicIpList {
    /// The addresses with their hosting nodes.
    pub ips: Vec<PublicIp>,
}

impl PublicIpList {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.ips.len() as u32);
        for ip in &self.ips {
            ip.write(&mut w);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let num = r.count(32, "public_ip_list.num")?;
        let ips = (0..num)
            .map(|_| PublicIp::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("public_ip_list")?;
        Ok(Self { ips })
    }
}

/// Size of an interface name field: IFNAMSIZ + 2.
pub const IFACE_NAME_SIZE: usize = 18;

/// `ctdb_iface` (24 bytes, §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Interface name (at most 15 bytes: the 17th byte must be NUL).
    pub name: String,
    /// Link up.
    pub link_up: bool,
    /// Number of public IPs currently on it.
    pub references: u32,
}

impl Iface {
    fn write(&self, w: &mut Writer) {
        let mut name = [0u8; IFACE_NAME_SIZE];
        let bytes = self.name.as_bytes();
        let n = bytes.len().min(IFACE_NAME_SIZE - 1);
        name[..n].copy_from_slice(&bytes[..n]);
        w.bytes(&name)
            .u16(u16::from(self.link_up))
            .u32(self.references);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let name = c_string(r.bytes(IFACE_NAME_SIZE, "iface.name")?);
        let link_state = r.u16("iface.link_state")?;
        let references = r.u32("iface.references")?;
        Ok(Self {
            name,
            link_up: link_state != 0,
            references,
        })
    }

    /// Wire form (SET_IFACE_LINK_STATE request).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly 24 bytes, with CTDB's SET_IFACE_LINK_STATE checks: the name is
    /// NUL-terminated within IFNAMSIZ and the link state is 0 or 1.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let raw = r.clone().bytes(IFACE_NAME_SIZE, "iface.name")?;
        if raw[16] != 0 {
            return Err(DecodeError::Invalid {
                field: "iface.name",
                value: u64::from(raw[16]),
            });
        }
        let mut check = r.clone();
        check.skip(IFACE_NAME_SIZE, "iface.name")?;
        let link_state = check.u16("iface.link_state")?;
        if link_state > 1 {
            return Err(DecodeError::Invalid {
                field: "iface.link_state",
                value: u64::from(link_state),
            });
        }
        let iface = Self::read(&mut r)?;
        r.finish("iface")?;
        Ok(iface)
    }
}

/// `ctdb_iface_list` (§6.6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IfaceList {
    /// Interfaces, in the order the daemon keeps them.
    pub ifaces: Vec<Iface>,
}

impl IfaceList {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.ifaces.len() as u32);
        for i in &self.ifaces {
            i.write(&mut w);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let num = r.count(24, "iface_list.num")?;
        let ifaces = (0..num)
            .map(|_| Iface::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("iface_list")?;
        Ok(Self { ifaces })
    }
}

/// `ctdb_public_ip_info` (§6.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicIpInfo {
    /// The address and its hosting node.
    pub ip: PublicIp,
    /// Index into `ifaces` of the interface the address is on, if any.
    pub active_idx: Option<u32>,
    /// The configured interfaces, in `public_addresses` order.
    pub ifaces: Vec<Iface>,
}

impl PublicIpInfo {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.ip.write(&mut w);
        w.u32(self.active_idx.unwrap_or(u32::MAX))
            .u32(self.ifaces.len() as u32);
        for i in &self.ifaces {
            i.write(&mut w);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let ip = PublicIp::read(&mut r)?;
        let active = r.u32("public_ip_info.active_idx")?;
        let num = r.count(24, "public_ip_info.num")?;
        let ifaces = (0..num)
            .map(|_| Iface::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("public_ip_info")?;
        Ok(Self {
            ip,
            active_idx: (active != u32::MAX).then_some(active),
            ifaces,
        })
    }
}

/// `struct timeval`: seconds and microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timeval {
    /// Seconds.
    pub sec: i64,
    /// Microseconds.
    pub usec: i64,
}

impl Timeval {
    fn write(&self, w: &mut Writer) {
        w.i64(self.sec).i64(self.usec);
    }

    fn read(r: &mut Reader<'_>, field: &'static str) -> Result<Self, DecodeError> {
        Ok(Self {
            sec: r.i64(field)?,
            usec: r.i64(field)?,
        })
    }

    /// As fractional seconds.
    pub fn as_secs_f64(&self) -> f64 {
        self.sec as f64 + self.usec as f64 / 1e6
    }
}

/// `ctdb_uptime` (64 bytes, §6.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uptime {
    /// The node's clock now.
    pub current_time: Timeval,
    /// When the daemon started.
    pub ctdbd_start_time: Timeval,
    /// When the last recovery started.
    pub last_recovery_started: Timeval,
    /// When the last recovery finished.
    pub last_recovery_finished: Timeval,
}

impl Uptime {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.current_time.write(&mut w);
        self.ctdbd_start_time.write(&mut w);
        self.last_recovery_started.write(&mut w);
        self.last_recovery_finished.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly 64 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let u = Self {
            current_time: Timeval::read(&mut r, "uptime.current_time")?,
            ctdbd_start_time: Timeval::read(&mut r, "uptime.ctdbd_start_time")?,
            last_recovery_started: Timeval::read(&mut r, "uptime.last_recovery_started")?,
            last_recovery_finished: Timeval::read(&mut r, "uptime.last_recovery_finished")?,
        };
        r.finish("uptime")?;
        Ok(u)
    }
}

/// SET_TUNABLE request: u32 value, stringn name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunable {
    /// Tunable name as typed.
    pub name: String,
    /// New value.
    pub value: u32,
}

impl Tunable {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.value).stringn(Some(&self.name));
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let value = r.u32("tunable.value")?;
        let name = r.stringn("tunable.name")?.unwrap_or_default();
        r.finish("tunable")?;
        Ok(Self { name, value })
    }
}

/// GET_TUNABLE request: a stringn name.
pub fn encode_tunable_name(name: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.stringn(Some(name));
    w.into_bytes()
}

/// Parses a GET_TUNABLE request.
pub fn decode_tunable_name(data: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(data);
    let name = r.stringn("tunable.name")?.unwrap_or_default();
    r.finish("tunable.name")?;
    Ok(name)
}

/// LIST_TUNABLES reply (`ctdb_var_list`): u32 length, then `:`-separated names with a
/// leading `:` and a terminating NUL, as the C daemon builds it.
pub fn encode_var_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut text = String::new();
    for n in names {
        text.push(':');
        text.push_str(n);
    }
    let mut w = Writer::new();
    w.u32(text.len() as u32 + 1).bytes(text.as_bytes()).u8(0);
    w.into_bytes()
}

/// Parses a LIST_TUNABLES reply into names, skipping empty tokens as the tool does.
pub fn decode_var_list(data: &[u8]) -> Result<Vec<String>, DecodeError> {
    let mut r = Reader::new(data);
    let len = r.u32("var_list.length")? as usize;
    let text = c_string(r.bytes(len, "var_list.data")?);
    r.finish("var_list")?;
    Ok(text
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Little fixed-size records that controls and messages carry.
macro_rules! u32_pair {
    ($(#[$doc:meta])* $name:ident, $what:literal, $a:ident, $b:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            #[allow(missing_docs)]
            pub $a: u32,
            #[allow(missing_docs)]
            pub $b: u32,
        }

        impl $name {
            /// Wire form (8 bytes).
            pub fn encode(&self) -> Vec<u8> {
                let mut w = Writer::new();
                w.u32(self.$a).u32(self.$b);
                w.into_bytes()
            }

            /// Parses exactly 8 bytes.
            pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
                let mut r = Reader::new(data);
                let v = Self {
                    $a: r.u32(concat!($what, ".", stringify!($a)))?,
                    $b: r.u32(concat!($what, ".", stringify!($b)))?,
                };
                r.finish($what)?;
                Ok(v)
            }
        }
    };
}

u32_pair!(
    /// `ctdb_ban_state` (§6.9): pnn, ban time in seconds (0 = unban).
    BanState, "ban_state", pnn, time
);

/// `ctdb_node_flag_change` (12 bytes): pnn, new flags, old flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFlagChange {
    /// The node.
    pub pnn: u32,
    /// Flags after the change.
    pub new_flags: u32,
    /// Flags before the change.
    pub old_flags: u32,
}

impl NodeFlagChange {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.pnn).u32(self.new_flags).u32(self.old_flags);
        w.into_bytes()
    }

    /// Parses exactly 12 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let v = Self {
            pnn: r.u32("node_flag_change.pnn")?,
            new_flags: r.u32("node_flag_change.new_flags")?,
            old_flags: r.u32("node_flag_change.old_flags")?,
        };
        r.finish("node_flag_change")?;
        Ok(v)
    }
}

/// `ctdb_pid_srvid` (12 bytes, no padding): i32 pid, u64 srvid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidSrvid {
    /// Process id.
    pub pid: i32,
    /// Message id it should have registered.
    pub srvid: u64,
}

impl PidSrvid {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.i32(self.pid).u64(self.srvid);
        w.into_bytes()
    }

    /// Parses exactly 12 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let v = Self {
            pid: r.i32("pid_srvid.pid")?,
            srvid: r.u64("pid_srvid.srvid")?,
        };
        r.finish("pid_srvid")?;
        Ok(v)
    }
}

/// `ctdb_srvid_message` (16 bytes): where to send the answer to a message request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrvidMessage {
    /// Node to answer to.
    pub pnn: u32,
    /// Message id to answer on (0: no answer wanted).
    pub srvid: u64,
}

impl SrvidMessage {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.pnn).pad(4).u64(self.srvid);
        w.into_bytes()
    }

    /// Parses exactly 16 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let pnn = r.u32("srvid_message.pnn")?;
        r.skip(4, "srvid_message.pad")?;
        let srvid = r.u64("srvid_message.srvid")?;
        r.finish("srvid_message")?;
        Ok(Self { pnn, srvid })
    }
}

/// Payload of [`srvid::DAEMON_GONE`] (ours, 16 bytes): a node's guardian says that the
/// daemon incarnation `incarnation` of node `pnn` is dead and that every public
/// address it held is gone from the node's interfaces.
///
/// ```text
///   0   u32  pnn
///   4   u32  padding (0)
///   8   u64  incarnation (what the daemon announced with srvid::INCARNATION)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DaemonGone {
    /// The node whose daemon died.
    pub pnn: u32,
    /// Which run of that daemon died.
    pub incarnation: u64,
}

impl DaemonGone {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.pnn).pad(4).u64(self.incarnation);
        w.into_bytes()
    }

    /// Parses exactly 16 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let pnn = r.u32("daemon_gone.pnn")?;
        r.skip(4, "daemon_gone.pad")?;
        let incarnation = r.u64("daemon_gone.incarnation")?;
        r.finish("daemon_gone")?;
        Ok(Self { pnn, incarnation })
    }
}

/// Payload of [`srvid::LEASE_REQUEST`] (ours, 24 bytes + an optional receipt
/// report): a follower asks its leader to renew its lease, and says what the leader
/// needs to rule out holds (`core::holds`): until when, at least, it will grant
/// none, and until when the holds it already granted may last; and, for a new
/// leader's succession rule (`core::succession`), when it last received grants from
/// each leader it heard.
///
/// ```text
///   0   u64  seq (echoed by the grant)
///   8   u64  echo: stamp_ms of the last grant received from this leader (0 = none)
///  16   u32  leased_for_ms: how long the lease lasts from when this request left
///  20   u32  holds_granted_for_ms: how long the holds it granted (to nodes other
///            than this leader) last from then
///  -- optional, absent in the first form (24 bytes) --
///  24   u32  count of receipts
///  28   count × 12 bytes, one per leader heard:
///         u32  pnn of that leader
///         u32  any_age_ms: since the last grant received from it
///         u32  backed_age_ms: since the last *backed* one (0xFFFF_FFFF = none)
/// ```
///
/// The echoed stamp is the leader's own clock at a moment before this request
/// left, so the leader can bound the follower's lease from below without trusting
/// any flight time: it lasts at least until `echo + leased_for_ms` (leader's clock).
/// Ages are measured when the request leaves, on the follower's clock; a receiver
/// subtracts them from the arrival (a receipt placed later than it was, by the
/// flight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Sequence number, echoed by the grant.
    pub seq: u64,
    /// `stamp_ms` of the last [`LeaseGrant`] received from this leader; 0 = none.
    pub echo_ms: u64,
    /// Remaining lease when the request left, in ms (0 = none).
    pub leased_for_ms: u32,
    /// Remaining time of the holds granted so far to nodes other than the leader
    /// asked, when the request left, in ms.
    pub holds_granted_for_ms: u32,
    /// Receipt report: per leader heard, the ages of its last grant and of its last
    /// backed grant. Empty in the 24-byte form.
    pub receipts: Vec<GrantReceipt>,
}

/// One entry of a [`LeaseRequest`]'s receipt report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantReceipt {
    /// The leader the grants came from.
    pub pnn: u32,
    /// Milliseconds since the last grant received from it.
    pub any_age_ms: u32,
    /// Milliseconds since the last grant it sent while backed; `None` = never.
    pub backed_age_ms: Option<u32>,
}

/// `backed_age_ms` on the wire for "no backed grant received".
const NO_BACKED_RECEIPT: u32 = u32::MAX;
/// Bytes of one [`GrantReceipt`].
const GRANT_RECEIPT_SIZE: usize = 12;

impl LeaseRequest {
    /// Wire form: 24 bytes when the report is empty, else with the report.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.seq)
            .u64(self.echo_ms)
            .u32(self.leased_for_ms)
            .u32(self.holds_granted_for_ms);
        if !self.receipts.is_empty() {
            w.u32(self.receipts.len() as u32);
            for r in &self.receipts {
                // A real age never reaches the marker: 49 days.
                let backed = r
                    .backed_age_ms
                    .map_or(NO_BACKED_RECEIPT, |a| a.min(NO_BACKED_RECEIPT - 1));
                w.u32(r.pnn).u32(r.any_age_ms).u32(backed);
            }
        }
        w.into_bytes()
    }

    /// Parses 24 bytes, or 24 + a receipt report that fills the rest exactly.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let seq = r.u64("lease_request.seq")?;
        let echo_ms = r.u64("lease_request.echo_ms")?;
        let leased_for_ms = r.u32("lease_request.leased_for_ms")?;
        let holds_granted_for_ms = r.u32("lease_request.holds_granted_for_ms")?;
        let mut receipts = Vec::new();
        if r.remaining() > 0 {
            let count = r.count(GRANT_RECEIPT_SIZE, "lease_request.receipt_count")?;
            for _ in 0..count {
                let pnn = r.u32("lease_request.receipt.pnn")?;
                let any_age_ms = r.u32("lease_request.receipt.any_age_ms")?;
                let backed = r.u32("lease_request.receipt.backed_age_ms")?;
                receipts.push(GrantReceipt {
                    pnn,
                    any_age_ms,
                    backed_age_ms: (backed != NO_BACKED_RECEIPT).then_some(backed),
                });
            }
        }
        r.finish("lease_request")?;
        Ok(Self {
            seq,
            echo_ms,
            leased_for_ms,
            holds_granted_for_ms,
            receipts,
        })
    }
}

/// Payload of [`srvid::LEASE_GRANT`] (ours, 24 or 25 bytes): the leader renews the
/// lease asked for by request `seq`, for `lease_ms` counted from when the follower
/// sent it. The leader chooses the length, so that followers with another
/// `IPLeaseTimeMs` cannot outlast what the leader waits for. `stamp_ms` is the
/// leader's monotonic clock when it granted, echoed by the follower's next request
/// ([`LeaseRequest`]); `backed` says whether the leader was backed by enough of its
/// followers' echoes when it granted (`core::succession`).
///
/// ```text
///   0   u64  seq (the request's)
///   8   u32  lease_ms
///  12   u32  padding (0)
///  16   u64  stamp_ms
///  -- optional, absent in the first form (24 bytes = not backed) --
///  24   u8   backed: 1 = yes, 0 = no
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The sequence number of the request granted.
    pub seq: u64,
    /// Lease length in milliseconds.
    pub lease_ms: u32,
    /// The leader's monotonic clock when it granted (ms).
    pub stamp_ms: u64,
    /// The leader was backed when it granted.
    pub backed: bool,
}

impl LeaseGrant {
    /// Wire form (25 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.seq)
            .u32(self.lease_ms)
            .pad(4)
            .u64(self.stamp_ms)
            .u8(u8::from(self.backed));
        w.into_bytes()
    }

    /// Parses 24 bytes (not backed) or 25.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let seq = r.u64("lease_grant.seq")?;
        let lease_ms = r.u32("lease_grant.lease_ms")?;
        r.skip(4, "lease_grant.pad")?;
        let stamp_ms = r.u64("lease_grant.stamp_ms")?;
        let backed = match r.remaining() {
            0 => false,
            _ => match r.bytes(1, "lease_grant.backed")?[0] {
                0 => false,
                1 => true,
                other => {
                    return Err(DecodeError::Invalid {
                        field: "lease_grant.backed",
                        value: u64::from(other),
                    })
                }
            },
        };
        r.finish("lease_grant")?;
        Ok(Self {
            seq,
            lease_ms,
            stamp_ms,
            backed,
        })
    }
}

/// `ctdb_disable_message` (24 bytes): answer address and a timeout (0 = re-enable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisableMessage {
    /// Node to answer to.
    pub pnn: u32,
    /// Message id to answer on.
    pub srvid: u64,
    /// Seconds to stay disabled; 0 re-enables.
    pub timeout: u32,
}

impl DisableMessage {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.pnn)
            .pad(4)
            .u64(self.srvid)
            .u32(self.timeout)
            .pad(4);
        w.into_bytes()
    }

    /// Parses exactly 24 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let pnn = r.u32("disable_message.pnn")?;
        r.skip(4, "disable_message.pad")?;
        let srvid = r.u64("disable_message.srvid")?;
        let timeout = r.u32("disable_message.timeout")?;
        r.skip(4, "disable_message.pad")?;
        r.finish("disable_message")?;
        Ok(Self {
            pnn,
            srvid,
            timeout,
        })
    }
}

/// `ctdb_addr_info`: address, prefix length, interface (ADD/DEL_PUBLIC_IP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub mask: u32,
    /// Interface list text (`eth1` or `eth1,eth2`), if any.
    pub iface: Option<String>,
}

impl AddrInfo {
    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sock_addr(&SocketAddr::new(self.addr, 0))
            .u32(self.mask)
            .stringn(self.iface.as_deref());
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let addr = r.sock_addr("addr_info.addr")?.ip();
        let mask = r.u32("addr_info.mask")?;
        let iface = r.stringn("addr_info.iface")?;
        r.finish("addr_info")?;
        Ok(Self { addr, mask, iface })
    }
}

/// `ctdb_connection` (56 bytes, §6.12): a client's TCP connection to a public
/// address — `src` the client, `dst` the public address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Connection {
    /// The client's end.
    pub src: SocketAddr,
    /// The server's end: a public address.
    pub dst: SocketAddr,
}

impl Connection {
    fn write(&self, w: &mut Writer) {
        w.sock_addr(&self.src).sock_addr(&self.dst);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            src: r.sock_addr("connection.src")?,
            dst: r.sock_addr("connection.dst")?,
        })
    }

    /// Wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.into_bytes()
    }

    /// Parses exactly 56 bytes.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let c = Self::read(&mut r)?;
        r.finish("connection")?;
        Ok(c)
    }
}

/// `ctdb_tickle_list`: a public address and the client connections to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickleList {
    /// The public address as asked about; its port filters the connections (0: all).
    pub addr: SocketAddr,
    /// Its known client connections.
    pub conns: Vec<Connection>,
}

impl TickleList {
    /// Wire form: sock_addr, u32 count, connections.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.sock_addr(&self.addr).u32(self.conns.len() as u32);
        for c in &self.conns {
            c.write(&mut w);
        }
        w.into_bytes()
    }

    /// Parses the wire form.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let addr = r.sock_addr("tickle_list.addr")?;
        let num = r.count(56, "tickle_list.num")?;
        let conns = (0..num)
            .map(|_| Connection::read(&mut r))
            .collect::<Result<_, _>>()?;
        r.finish("tickle_list")?;
        Ok(Self { addr, conns })
    }
}

/// A u32 payload (debug level, capabilities, runstate, leader pnn, ...).
pub fn encode_u32(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// A u64 payload (GET_DB_SEQNUM reply, DEREGISTER_NOTIFY request).
pub fn encode_u64(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// An i32 payload (DB_OPEN_FLAGS reply, PROCESS_EXISTS request).
pub fn encode_i32(v: i32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

/// Parses exactly 4 bytes as a u32.
pub fn decode_u32(data: &[u8], what: &'static str) -> Result<u32, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.u32(what)?;
    r.finish(what)?;
    Ok(v)
}

/// Parses exactly 8 bytes as a u64.
pub fn decode_u64(data: &[u8], what: &'static str) -> Result<u64, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.u64(what)?;
    r.finish(what)?;
    Ok(v)
}

/// Parses exactly 4 bytes as an i32.
pub fn decode_i32(data: &[u8], what: &'static str) -> Result<i32, DecodeError> {
    let mut r = Reader::new(data);
    let v = r.i32(what)?;
    r.finish(what)?;
    Ok(v)
}

/// Daemon run states (§6.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Runstate {
    /// Not known.
    Unknown = 0,
    /// Starting.
    Init = 1,
    /// `setup` event running.
    Setup = 2,
    /// Waiting for the first recovery.
    FirstRecovery = 3,
    /// `startup` event running.
    Startup = 4,
    /// Serving.
    Running = 5,
    /// Shutting down.
    Shutdown = 6,
}

impl Runstate {
    /// All states in numeric order.
    pub const ALL: [Runstate; 7] = [
        Self::Unknown,
        Self::Init,
        Self::Setup,
        Self::FirstRecovery,
        Self::Startup,
        Self::Running,
        Self::Shutdown,
    ];

    /// From the wire value; out-of-range values are `Unknown`.
    pub fn from_u32(v: u32) -> Self {
        Self::ALL.get(v as usize).copied().unwrap_or(Self::Unknown)
    }

    /// CTDB's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Init => "INIT",
            Self::Setup => "SETUP",
            Self::FirstRecovery => "FIRST_RECOVERY",
            Self::Startup => "STARTUP",
            Self::Running => "RUNNING",
            Self::Shutdown => "SHUTDOWN",
        }
    }

    /// Parses a name case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn node_map_matches_observed_bytes() {
        // reference §6.1: node 0 OK at 127.0.0.1, node 1 DISCONNECTED|UNHEALTHY.
        let mut bytes = hex("02000000 00000000 00000000 0200111b 7f000001");
        bytes.extend([0; 20]);
        bytes.extend(hex("01000000 03000000 0200111b 7f000002"));
        bytes.extend([0; 20]);
        let map = NodeMap::decode(&bytes).unwrap();
        assert_eq!(map.nodes[1].flags, 3);
        assert_eq!(map.nodes[1].addr, "127.0.0.2:4379".parse().unwrap());
        assert_eq!(map.encode(), bytes);
    }

    #[test]
    fn wire_fixtures_from_the_stock_tool() {
        // reference §5.2.2, "Parameters observed on the wire".
        assert_eq!(
            encode_tunable_name("enablebans"),
            hex("0b000000 656e61626c6562616e73 00")
        );
        let set = Tunable {
            name: "EnableBans".into(),
            value: 0,
        };
        assert_eq!(
            set.encode(),
            hex("00000000 0b000000 456e61626c6542616e73 00")
        );
        assert_eq!(Tunable::decode(&set.encode()).unwrap(), set);
        let ps = PidSrvid {
            pid: 1,
            srvid: 0x1234,
        };
        assert_eq!(ps.encode(), hex("01000000 3412000000000000"));
        assert_eq!(
            BanState { pnn: 1, time: 60 }.encode(),
            hex("01000000 3c000000")
        );
        let mut moveip = hex("01000000 02000000 0a00001f");
        moveip.extend([0; 20]);
        let ip = PublicIp::decode(&moveip).unwrap();
        assert_eq!(ip.pnn, 1);
        assert_eq!(ip.addr, "10.0.0.31".parse::<IpAddr>().unwrap());
        let mut add = hex("02000000 0a000028");
        add.extend([0; 20]);
        add.extend(hex("18000000 05000000 6574683100"));
        let info = AddrInfo::decode(&add).unwrap();
        assert_eq!((info.mask, info.iface.as_deref()), (24, Some("eth1")));
        assert_eq!(info.encode(), add);
        let takeover = hex("00000000 00000000 0100a636 000001ce");
        let m = SrvidMessage::decode(&takeover).unwrap();
        assert_eq!((m.pnn, m.srvid), (0, 0xce01_0000_36a6_0001));
        let disable = hex("00000000 00000000 0100513d 000001ce 14000000 00000000");
        let d = DisableMessage::decode(&disable).unwrap();
        assert_eq!(d.timeout, 20);
        assert_eq!(d.encode(), disable);
        let mut link = hex("65746831");
        link.extend([0; 14]);
        link.extend(hex("0000 00000000"));
        let iface = Iface::decode(&link).unwrap();
        assert_eq!((iface.name.as_str(), iface.link_up), ("eth1", false));
        assert_eq!(iface.encode(), link);
    }

    #[test]
    fn var_list_has_leading_colon_and_nul() {
        let bytes = encode_var_list(["SeqnumInterval", "ControlTimeout"]);
        assert_eq!(&bytes[4..], b":SeqnumInterval:ControlTimeout\0");
        assert_eq!(
            decode_var_list(&bytes).unwrap(),
            vec!["SeqnumInterval", "ControlTimeout"]
        );
    }

    #[test]
    fn connection_and_tickle_list_round_trip() {
        let c = Connection {
            src: "10.0.9.5:51234".parse().unwrap(),
            dst: "10.0.0.31:445".parse().unwrap(),
        };
        assert_eq!(c.encode().len(), 56);
        assert_eq!(Connection::decode(&c.encode()).unwrap(), c);
        let list = TickleList {
            addr: "10.0.0.31:0".parse().unwrap(),
            conns: vec![c, c],
        };
        let bytes = list.encode();
        assert_eq!(bytes.len(), 28 + 4 + 2 * 56);
        assert_eq!(TickleList::decode(&bytes).unwrap(), list);
    }

    #[test]
    fn iface_link_state_must_be_0_or_1() {
        let mut link = vec![b'e'; 4];
        link.extend([0; 14]);
        link.extend([2, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Iface::decode(&link),
            Err(DecodeError::Invalid {
                field: "iface.link_state",
                ..
            })
        ));
    }

    #[test]
    fn daemon_gone_layout_and_exact_size() {
        let notice = DaemonGone {
            pnn: 2,
            incarnation: 0x0123_4567_89ab_cdef,
        };
        let bytes = hex("02000000 00000000 efcdab89 67452301");
        assert_eq!(notice.encode(), bytes);
        assert_eq!(DaemonGone::decode(&bytes), Ok(notice));
        assert!(DaemonGone::decode(&bytes[..15]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(DaemonGone::decode(&long).is_err());
        assert_eq!(
            decode_u64(&bytes[8..], "incarnation"),
            Ok(notice.incarnation)
        );
    }

    #[test]
    fn lease_grant_round_trips_and_rejects_other_lengths() {
        let grant = LeaseGrant {
            seq: 0x0102_0304_0506_0708,
            lease_ms: 500,
            stamp_ms: 0x1112_1314_1516_1718,
            backed: true,
        };
        let bytes = grant.encode();
        assert_eq!(
            bytes,
            [
                8, 7, 6, 5, 4, 3, 2, 1, 0xf4, 1, 0, 0, 0, 0, 0, 0, 0x18, 0x17, 0x16, 0x15, 0x14,
                0x13, 0x12, 0x11, 1
            ],
            "little-endian seq, lease_ms, 4 bytes of padding, stamp, backed"
        );
        assert_eq!(LeaseGrant::decode(&bytes), Ok(grant));
        let unbacked = LeaseGrant {
            backed: false,
            ..grant
        };
        assert_eq!(unbacked.encode()[24], 0);
        assert_eq!(LeaseGrant::decode(&unbacked.encode()), Ok(unbacked));
        // The first form, without the flag: not backed.
        assert_eq!(LeaseGrant::decode(&bytes[..24]), Ok(unbacked));
        assert!(LeaseGrant::decode(&bytes[..23]).is_err());
        assert!(LeaseGrant::decode(&bytes[..16]).is_err(), "the oldest form");
        let mut bad = bytes.clone();
        bad[24] = 2;
        assert_eq!(
            LeaseGrant::decode(&bad),
            Err(DecodeError::Invalid {
                field: "lease_grant.backed",
                value: 2
            })
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            LeaseGrant::decode(&long),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn lease_request_round_trips_and_rejects_other_lengths() {
        let request = LeaseRequest {
            seq: 7,
            echo_ms: 0x0102_0304_0506_0708,
            leased_for_ms: 480,
            holds_granted_for_ms: 0x0a0b_0c0d,
            receipts: Vec::new(),
        };
        let bytes = request.encode();
        assert_eq!(
            bytes,
            [
                7, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0xe0, 1, 0, 0, 0x0d, 0x0c, 0x0b,
                0x0a
            ],
            "no report: the first form, 24 bytes"
        );
        assert_eq!(LeaseRequest::decode(&bytes), Ok(request.clone()));
        assert!(
            LeaseRequest::decode(&bytes[..8]).is_err(),
            "the oldest form"
        );
        let mut long = bytes.clone();
        long.push(0);
        assert!(
            LeaseRequest::decode(&long).is_err(),
            "a report needs its 4-byte count"
        );
    }

    #[test]
    fn lease_request_carries_a_receipt_report() {
        let request = LeaseRequest {
            seq: 7,
            echo_ms: 9,
            leased_for_ms: 480,
            holds_granted_for_ms: 0,
            receipts: vec![
                GrantReceipt {
                    pnn: 2,
                    any_age_ms: 0x0102,
                    backed_age_ms: Some(0x0304),
                },
                GrantReceipt {
                    pnn: 0,
                    any_age_ms: 5,
                    backed_age_ms: None,
                },
            ],
        };
        let bytes = request.encode();
        assert_eq!(bytes.len(), 24 + 4 + 2 * 12);
        assert_eq!(
            bytes[24..],
            [
                2, 0, 0, 0, // count
                2, 0, 0, 0, 2, 1, 0, 0, 4, 3, 0, 0, // pnn 2
                0, 0, 0, 0, 5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, // pnn 0, no backed receipt
            ]
        );
        assert_eq!(LeaseRequest::decode(&bytes), Ok(request.clone()));
        // A count the rest cannot hold, a partial entry, bytes after the last.
        let mut short = bytes.clone();
        short[24] = 3;
        assert!(matches!(
            LeaseRequest::decode(&short),
            Err(DecodeError::Truncated {
                field: "lease_request.receipt_count",
                ..
            })
        ));
        assert!(LeaseRequest::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            LeaseRequest::decode(&long),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
        let huge = [&bytes[..24], &[0xff, 0xff, 0xff, 0xff][..]].concat();
        assert!(LeaseRequest::decode(&huge).is_err());
    }

    #[test]
    fn ctdb_rs_srvids_are_outside_every_ctdb_range() {
        for id in [
            srvid::INCARNATION,
            srvid::DAEMON_GONE,
            srvid::LEASE_REQUEST,
            srvid::LEASE_GRANT,
            srvid::HOLD_REQUEST,
            srvid::HOLD_GRANT,
        ] {
            assert_eq!(id & srvid::CTDB_RS_MASK, srvid::CTDB_RS_RANGE);
        }
        for ctdb in [
            srvid::ELECTION,
            srvid::LEADER,
            srvid::TAKEOVER_RUN,
            srvid::MEM_DUMP,
            srvid::DISABLE_IP_CHECK,
            srvid::TOOL_RANGE,
            0xFE00_0000_0000_0000,
            0xEE00_0000_0000_0000,
            0xDE00_0000_0000_0000,
            0xBE00_0000_0000_0000,
            0xAE00_0000_0000_0000,
            0x9E00_0000_0000_0000,
            u64::from(u32::MAX),
        ] {
            assert_ne!(
                ctdb & srvid::CTDB_RS_MASK,
                srvid::CTDB_RS_RANGE,
                "{ctdb:#x}"
            );
        }
    }

    #[test]
    fn named_opcodes_are_live_and_database_ones_are_there() {
        for n in 0..200 {
            let op = Opcode(n);
            assert!(
                op.name() == "UNKNOWN" || !op.is_obsolete(),
                "{n} is named {} and obsolete",
                op.name()
            );
        }
        assert_eq!(Opcode::TRANS3_COMMIT, Opcode(119));
        assert_eq!(Opcode(146).name(), "DB_PULL");
        assert_eq!(Opcode(61).name(), "DB_ATTACH_PERSISTENT");
    }

    #[test]
    fn runstate_names_parse_case_insensitively() {
        assert_eq!(Runstate::parse("running"), Some(Runstate::Running));
        assert_eq!(Runstate::from_u32(99), Runstate::Unknown);
    }
}

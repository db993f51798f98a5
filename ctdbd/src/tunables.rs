//! CTDB's tunables: names, defaults and whether 4.17 still lists them
//! (reference/ctdb-protocol-core.md §6.10, `ctdb-tunables(7)`).
//!
//! Names match case-insensitively. Obsolete tunables are still accepted by get and
//! set (set reports them as obsolete) but are not listed, as in CTDB.

use std::time::Duration;

/// One tunable's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunableDef {
    /// Canonical name.
    pub name: &'static str,
    /// Default value.
    pub default: u32,
    /// Obsolete: accepted, stored, not listed.
    pub obsolete: bool,
}

const fn def(name: &'static str, default: u32) -> TunableDef {
    TunableDef {
        name,
        default,
        obsolete: false,
    }
}

const fn obsolete(name: &'static str, default: u32) -> TunableDef {
    TunableDef {
        name,
        default,
        obsolete: true,
    }
}

/// Every tunable, in CTDB's definition order (= `listvars` order once obsolete ones are
/// skipped), then ours.
pub const DEFINITIONS: &[TunableDef] = &[
    obsolete("MaxRedirectCount", 3),
    def("SeqnumInterval", 1000),
    def("ControlTimeout", 60),
    def("TraverseTimeout", 20),
    def("KeepaliveInterval", 5),
    def("KeepaliveLimit", 5),
    def("RecoverTimeout", 30),
    def("RecoverInterval", 1),
    def("ElectionTimeout", 3),
    def("TakeoverTimeout", 9),
    def("MonitorInterval", 15),
    def("TickleUpdateInterval", 20),
    def("EventScriptTimeout", 30),
    def("MonitorTimeoutCount", 20),
    obsolete("EventScriptUnhealthyOnTimeout", 0),
    def("RecoveryGracePeriod", 120),
    def("RecoveryBanPeriod", 300),
    def("DatabaseHashSize", 100001),
    def("DatabaseMaxDead", 5),
    def("RerecoveryTimeout", 10),
    def("EnableBans", 1),
    obsolete("DeterministicIPs", 0),
    obsolete("LCP2PublicIPs", 1),
    obsolete("ReclockPingPeriod", 60),
    def("NoIPFailback", 0),
    obsolete("DisableIPFailover", 0),
    def("VerboseMemoryNames", 0),
    def("RecdPingTimeout", 60),
    def("RecdFailCount", 10),
    def("LogLatencyMs", 0),
    def("RecLockLatencyMs", 1000),
    def("RecoveryDropAllIPs", 120),
    obsolete("VerifyRecoveryLock", 1),
    def("VacuumInterval", 10),
    def("VacuumMaxRunTime", 120),
    def("RepackLimit", 10000),
    obsolete("VacuumLimit", 5000),
    def("VacuumFastPathCount", 60),
    def("MaxQueueDropMsg", 1_000_000),
    def("AllowUnhealthyDBRead", 0),
    def("StatHistoryInterval", 1),
    def("DeferredAttachTO", 120),
    def("AllowClientDBAttach", 1),
    obsolete("RecoverPDBBySeqNum", 1),
    obsolete("DeferredRebalanceOnNodeAdd", 300),
    def("FetchCollapse", 1),
    def("HopcountMakeSticky", 50),
    def("StickyDuration", 600),
    def("StickyPindown", 200),
    def("NoIPTakeover", 0),
    def("DBRecordCountWarn", 100_000),
    def("DBRecordSizeWarn", 10_000_000),
    def("DBSizeWarn", 100_000_000),
    def("PullDBPreallocation", 10_485_760),
    obsolete("NoIPHostOnAllDisabled", 1),
    obsolete("Samba3AvoidDeadlocks", 0),
    obsolete("TDBMutexEnabled", 1),
    def("LockProcessesPerDB", 200),
    def("RecBufferSizeLimit", 1_000_000),
    def("QueueBufferSize", 1024),
    def("IPAllocAlgorithm", 2),
    def("AllowMixedVersions", 0),
    // ctdb-rs: keepalive period in milliseconds, for sub-second failure detection.
    // Non-zero overrides KeepaliveInterval; setting KeepaliveInterval clears it, so
    // CTDB's tunable keeps its meaning. Default 200 ms × KeepaliveLimit 5 = 1 s to
    // declare a silent (powered-off) node dead, where CTDB's defaults take 25 s.
    def(KEEPALIVE_INTERVAL_MS, 200),
    // ctdb-rs: how long a node may keep public addresses after it last asked a
    // lock-holding leader for its lease (asked four times per lease). Shorter than
    // the keepalive timeout (1 s) so that a lost node's lease has run out by the
    // time it is declared dead; a new leader waits one lease (+ 0.2 s) for nodes it
    // cannot vouch for.
    def(IP_LEASE_TIME_MS, 500),
    // ctdb-rs: how long nodes that lost their lock-holding leader, but still form
    // a connected majority, may keep the public addresses they hold, counted from
    // the end of their last lease (`core::holds`). It bridges a recovery lock that
    // the cluster volume keeps for a dead leader (2 s on GlusterFS with the
    // recommended options, 83 s at its defaults). Its price: a leader that is not
    // connected to enough nodes to rule such a hold out (a lone survivor of three)
    // waits this long before it moves the others' addresses. 0 = no holds.
    def(LEADERLESS_HOLD_MS, 10_000),
    // ctdb-rs: 1 = after tickling a client, watch its answers, and where this
    // node's kernel's reset does not reach it (a firewall drops outgoing resets,
    // or the reset is lost) reset it ourselves (netif::tickle); 0 = tickle only,
    // as CTDB does. Read by the tickle task whenever tickles are asked for.
    def(TICKLE_RESET_FALLBACK, 1),
];

/// Our public-address lease tunable (see [`DEFINITIONS`]).
pub const IP_LEASE_TIME_MS: &str = "IPLeaseTimeMs";

/// Our leaderless hold tunable (see [`DEFINITIONS`]).
pub const LEADERLESS_HOLD_MS: &str = "LeaderlessHoldMs";

/// Our millisecond keepalive tunable (see [`DEFINITIONS`]).
pub const KEEPALIVE_INTERVAL_MS: &str = "KeepaliveIntervalMs";

/// Our tickle reset fallback switch (see [`DEFINITIONS`]).
pub const TICKLE_RESET_FALLBACK: &str = "TickleResetFallback";

/// A tunable the code reads, as its index in [`DEFINITIONS`]. Made only by
/// [`key`], at compile time, so a misspelt name does not build and reading a value
/// ([`Tunables::value`]) cannot fail or fall back on a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(usize);

impl Key {
    /// The tunable's canonical name.
    pub fn name(self) -> &'static str {
        DEFINITIONS[self.0].name
    }
}

/// The key of the tunable named exactly `name` (canonical spelling). Used in
/// constants, where an unknown name is a compile-time error.
pub const fn key(name: &str) -> Key {
    let mut i = 0;
    while i < DEFINITIONS.len() {
        let d = DEFINITIONS[i].name.as_bytes();
        let n = name.as_bytes();
        if d.len() == n.len() {
            let mut j = 0;
            while j < d.len() && d[j] == n[j] {
                j += 1;
            }
            if j == d.len() {
                return Key(i);
            }
        }
        i += 1;
    }
    panic!("no tunable of that name in DEFINITIONS");
}

/// The tunables the daemon reads, by key (see [`Key`]).
pub mod keys {
    use super::{key, Key};

    /// `ControlTimeout`, seconds.
    pub const CONTROL_TIMEOUT: Key = key("ControlTimeout");
    /// `KeepaliveInterval`, seconds.
    pub const KEEPALIVE_INTERVAL: Key = key("KeepaliveInterval");
    /// `KeepaliveLimit`, periods.
    pub const KEEPALIVE_LIMIT: Key = key("KeepaliveLimit");
    /// `TakeoverTimeout`, seconds.
    pub const TAKEOVER_TIMEOUT: Key = key("TakeoverTimeout");
    /// `MonitorInterval`, seconds.
    pub const MONITOR_INTERVAL: Key = key("MonitorInterval");
    /// `EventScriptTimeout`, seconds (0 = no limit).
    pub const EVENT_SCRIPT_TIMEOUT: Key = key("EventScriptTimeout");
    /// `MonitorTimeoutCount`, timed-out monitors in a row before UNHEALTHY.
    pub const MONITOR_TIMEOUT_COUNT: Key = key("MonitorTimeoutCount");
    /// `RecoveryBanPeriod`, seconds.
    pub const RECOVERY_BAN_PERIOD: Key = key("RecoveryBanPeriod");
    /// `StatHistoryInterval`, seconds between two statistics history entries.
    pub const STAT_HISTORY_INTERVAL: Key = key("StatHistoryInterval");
    /// `EnableBans`, 0 or 1.
    pub const ENABLE_BANS: Key = key("EnableBans");
    /// `NoIPFailback`, 0 or 1.
    pub const NO_IP_FAILBACK: Key = key("NoIPFailback");
    /// `NoIPTakeover`, 0 or 1.
    pub const NO_IP_TAKEOVER: Key = key("NoIPTakeover");
    /// `IPAllocAlgorithm`: 0 deterministic, 1 non-deterministic, 2 LCP2.
    pub const IP_ALLOC_ALGORITHM: Key = key("IPAllocAlgorithm");
    /// `KeepaliveIntervalMs` (ctdb-rs), milliseconds (0 = `KeepaliveInterval`).
    pub const KEEPALIVE_INTERVAL_MS: Key = key(super::KEEPALIVE_INTERVAL_MS);
    /// `IPLeaseTimeMs` (ctdb-rs), milliseconds.
    pub const IP_LEASE_TIME_MS: Key = key(super::IP_LEASE_TIME_MS);
    /// `LeaderlessHoldMs` (ctdb-rs), milliseconds.
    pub const LEADERLESS_HOLD_MS: Key = key(super::LEADERLESS_HOLD_MS);
    /// `RecBufferSizeLimit`, bytes: the largest batch of records a recovery
    /// sends as one message.
    pub const REC_BUFFER_SIZE_LIMIT: Key = key("RecBufferSizeLimit");
    /// `VacuumInterval`, seconds between two vacuum runs of a volatile database.
    pub const VACUUM_INTERVAL: Key = key("VacuumInterval");
    /// `HopcountMakeSticky`, hops after which a record becomes sticky.
    pub const HOPCOUNT_MAKE_STICKY: Key = key("HopcountMakeSticky");
    /// `StickyDuration`, seconds a record stays sticky.
    pub const STICKY_DURATION: Key = key("StickyDuration");
    /// `StickyPindown`, milliseconds a sticky record stays with a new dmaster.
    pub const STICKY_PINDOWN: Key = key("StickyPindown");
    /// `VacuumMaxRunTime`, seconds a vacuum run may wait for the other nodes.
    pub const VACUUM_MAX_RUN_TIME: Key = key("VacuumMaxRunTime");
    /// `VacuumFastPathCount`: every this many runs, one traverses the whole file.
    pub const VACUUM_FAST_PATH_COUNT: Key = key("VacuumFastPathCount");
    /// `RepackLimit`: a vacuumed file whose free list has at least this many
    /// entries is repacked (0: never).
    pub const REPACK_LIMIT: Key = key("RepackLimit");
    /// `AllowClientDBAttach`, 0 or 1: local clients may attach databases; a
    /// database may be detached only while it is 0.
    pub const ALLOW_CLIENT_DB_ATTACH: Key = key("AllowClientDBAttach");
    /// `TickleResetFallback` (ctdb-rs), 0 or 1.
    pub const TICKLE_RESET_FALLBACK: Key = key(super::TICKLE_RESET_FALLBACK);
}

/// Result of setting a tunable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    /// Stored.
    Set,
    /// Stored, but the tunable is obsolete (SET_TUNABLE status 1).
    Obsolete,
}

/// No tunable has that name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no such tunable {0}")]
pub struct UnknownTunable(pub String);

/// Current values of every tunable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables {
    values: Vec<u32>,
}

impl Default for Tunables {
    fn default() -> Self {
        Self {
            values: DEFINITIONS.iter().map(|d| d.default).collect(),
        }
    }
}

impl Tunables {
    fn index(name: &str) -> Option<usize> {
        DEFINITIONS
            .iter()
            .position(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// The definition of `name`, matched case-insensitively.
    pub fn definition(name: &str) -> Option<&'static TunableDef> {
        Self::index(name).map(|i| &DEFINITIONS[i])
    }

    /// Value of `name`.
    pub fn get(&self, name: &str) -> Result<u32, UnknownTunable> {
        Self::index(name)
            .map(|i| self.values[i])
            .ok_or_else(|| UnknownTunable(name.to_owned()))
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: u32) -> Result<SetOutcome, UnknownTunable> {
        let i = Self::index(name).ok_or_else(|| UnknownTunable(name.to_owned()))?;
        self.values[i] = value;
        if DEFINITIONS[i].name == "KeepaliveInterval" {
            // An administrator who sets CTDB's seconds tunable means it.
            let ms = Self::index(KEEPALIVE_INTERVAL_MS).expect("defined above");
            self.values[ms] = 0;
        }
        Ok(if DEFINITIONS[i].obsolete {
            SetOutcome::Obsolete
        } else {
            SetOutcome::Set
        })
    }

    /// The current value of the tunable `key`.
    pub fn value(&self, key: Key) -> u32 {
        self.values[key.0]
    }

    /// Whether the 0/1 tunable `key` is on (any non-zero value).
    pub fn enabled(&self, key: Key) -> bool {
        self.value(key) != 0
    }

    /// The tunable `key`, in seconds, as milliseconds.
    pub fn secs_as_ms(&self, key: Key) -> u64 {
        u64::from(self.value(key)) * 1000
    }

    /// The keepalive period in milliseconds: `KeepaliveIntervalMs` when non-zero, else
    /// `KeepaliveInterval` seconds; never below 10 ms.
    pub fn keepalive_interval_ms(&self) -> u64 {
        let ms = match self.value(keys::KEEPALIVE_INTERVAL_MS) {
            0 => self.secs_as_ms(keys::KEEPALIVE_INTERVAL),
            ms => u64::from(ms),
        };
        ms.max(10)
    }

    /// How long a silent peer may stay connected: `KeepaliveLimit` keepalive periods.
    pub fn keepalive_timeout_ms(&self) -> u64 {
        let limit = u64::from(self.value(keys::KEEPALIVE_LIMIT).max(1));
        limit * self.keepalive_interval_ms()
    }

    /// The public-address lease length in milliseconds (`IPLeaseTimeMs`).
    pub fn ip_lease_time_ms(&self) -> u64 {
        u64::from(self.value(keys::IP_LEASE_TIME_MS))
    }

    /// How long a leaderless majority may keep its addresses (`LeaderlessHoldMs`).
    pub fn leaderless_hold_ms(&self) -> u64 {
        u64::from(self.value(keys::LEADERLESS_HOLD_MS))
    }

    /// `LeaderlessHoldMs` for a cluster whose lock is on a volume that may keep a
    /// dead holder's lock for `dead_lock_bound`, when the administrator did not set
    /// it: long enough that the survivors of the leader's power loss keep their
    /// addresses until one of them can take the lock (the bound, then up to 30 s
    /// more for a lock attempt that was hanging on the volume, the election and the
    /// takeover run). `None` when the default already covers it.
    ///
    /// The price, a leader connected to too few nodes to rule holds out waiting as
    /// long before moving an unseen node's addresses, is no price on GlusterFS: a
    /// replica volume that lost its majority of bricks refuses writes anyway.
    pub fn leaderless_hold_for_volume(&self, dead_lock_bound: Duration) -> Option<u32> {
        const AFTER_THE_LOCK_IS_FREE: Duration = Duration::from_secs(30);
        let hold = dead_lock_bound + AFTER_THE_LOCK_IS_FREE;
        let hold_ms = u32::try_from(hold.as_millis()).unwrap_or(u32::MAX);
        let current = self.value(keys::LEADERLESS_HOLD_MS);
        (current != 0 && hold_ms > current).then_some(hold_ms)
    }

    /// Time allowed for one event (`EventScriptTimeout` seconds); `None` when 0,
    /// which means no limit (as for `ctdb event run 0 ...`).
    pub fn event_script_timeout_ms(&self) -> Option<u64> {
        Some(self.secs_as_ms(keys::EVENT_SCRIPT_TIMEOUT)).filter(|ms| *ms > 0)
    }

    /// Names of the tunables `listvars` shows, in CTDB's order.
    pub fn listed_names() -> impl Iterator<Item = &'static str> {
        DEFINITIONS.iter().filter(|d| !d.obsolete).map(|d| d.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctdbs_sixty_two_tunables_then_ours() {
        assert_eq!(DEFINITIONS.len(), 66);
        assert_eq!(DEFINITIONS[61].name, "AllowMixedVersions");
        assert_eq!(Tunables::listed_names().count(), 53);
        assert_eq!(Tunables::listed_names().next(), Some("SeqnumInterval"));
    }

    #[test]
    fn keys_name_the_tunables_they_read() {
        // `key` resolves at compile time; this checks it resolves to the right
        // entry (a wrong index would read another tunable).
        for (k, name) in [
            (keys::CONTROL_TIMEOUT, "ControlTimeout"),
            (keys::ENABLE_BANS, "EnableBans"),
            (keys::IP_ALLOC_ALGORITHM, "IPAllocAlgorithm"),
            (keys::TICKLE_RESET_FALLBACK, "TickleResetFallback"),
        ] {
            assert_eq!(k.name(), name);
        }
        let mut t = Tunables::default();
        assert_eq!(t.value(keys::MONITOR_INTERVAL), 15);
        t.set("monitorinterval", 1).unwrap();
        assert_eq!(t.value(keys::MONITOR_INTERVAL), 1);
        assert_eq!(t.event_script_timeout_ms(), Some(30_000));
        t.set("EventScriptTimeout", 0).unwrap();
        assert_eq!(t.event_script_timeout_ms(), None);
    }

    #[test]
    #[should_panic(expected = "no tunable of that name")]
    fn a_misspelt_key_is_refused() {
        // In a constant this panic is a compile error; here it shows the check.
        let _ = key("EnableBan");
    }

    #[test]
    fn a_volume_that_keeps_a_dead_holders_lock_long_lengthens_the_default_hold() {
        let t = Tunables::default();
        assert_eq!(t.leaderless_hold_ms(), 10_000);
        // GlusterFS at its defaults: ~83 s measured, 90 s bound.
        assert_eq!(
            t.leaderless_hold_for_volume(Duration::from_secs(90)),
            Some(120_000)
        );
        // A hold that already covers it is kept.
        let mut long = Tunables::default();
        long.set(LEADERLESS_HOLD_MS, 200_000).unwrap();
        assert_eq!(
            long.leaderless_hold_for_volume(Duration::from_secs(90)),
            None
        );
        // Holds switched off (0) stay off.
        let mut off = Tunables::default();
        off.set(LEADERLESS_HOLD_MS, 0).unwrap();
        assert_eq!(
            off.leaderless_hold_for_volume(Duration::from_secs(90)),
            None
        );
    }

    #[test]
    fn setting_keepalive_interval_seconds_overrides_the_millisecond_default() {
        let mut t = Tunables::default();
        assert_eq!(t.keepalive_interval_ms(), 200);
        t.set("KeepaliveInterval", 2).unwrap();
        assert_eq!(t.keepalive_interval_ms(), 2000);
        t.set("KeepaliveIntervalMs", 100).unwrap();
        assert_eq!(t.keepalive_interval_ms(), 100);
    }

    #[test]
    fn names_match_case_insensitively_and_obsolete_is_reported() {
        let mut t = Tunables::default();
        assert_eq!(t.get("keepaliveinterval"), Ok(5));
        assert_eq!(t.set("ENABLEBANS", 0), Ok(SetOutcome::Set));
        assert_eq!(t.get("EnableBans"), Ok(0));
        assert_eq!(t.set("DeterministicIPs", 1), Ok(SetOutcome::Obsolete));
        assert_eq!(t.get("DeterministicIPs"), Ok(1));
        assert!(t.get("NoSuchThing").is_err());
    }
}

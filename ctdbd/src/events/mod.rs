//! Event scripts: the directories that say which scripts are enabled, the runner that
//! runs an event's scripts, and the status CTDB's tools print about the last run.
//!
//! What it owns: CTDB 4.17's event-script behaviour (legacy component only), checked
//! against `ctdb(1)`, `ctdb(7)`, `ctdb.conf(5)`, `ctdb-script.options(5)`,
//! `ctdb-tunables(7)`, Debian's installed layout, and the stock `ctdb-eventd` and
//! `ctdb-event` run on a scratch `CTDB_BASE`.
//!
//! - [`event`] (pure): [`Event`] and [`EventKind`], the names and arguments scripts
//!   receive.
//! - [`scripts`] (file system): provided scripts in a data directory, enabled by
//!   symlinks in the configuration directory; list, enable, disable, and the ordered
//!   plan an event follows.
//! - [`runner`] (tokio edge): runs one event, every script in its own process group,
//!   output captured and bounded, one deadline for the whole event, the whole group
//!   killed when it passes, the debug script run first.
//! - [`status`] (pure): the last result per event and the text of `ctdb event status`,
//!   `ctdb scriptstatus` and `ctdb event script list`.
//!
//! What it does not own: when events run and what their results mean for the node.
//! The core decides (`RunEvent` outputs); an events task in the daemon owns one
//! [`EventRunner`] and an [`EventStatusStore`], runs one event at a time, and hands
//! each [`EventResult`] back to the core as a `ScriptFinished`-style input. The core
//! never waits on a script.
//!
//! ```text
//!   core --RunEvent{event, timeout}--> events task --run()--> sh NN.name.script ...
//!     ^                                    |   (process group, pipe, deadline)
//!     +------ ScriptFinished{result} ------+--> EventStatusStore (ctdb event status)
//! ```

pub mod event;
pub mod protocol;
pub mod runner;
pub mod scripts;
pub mod status;

pub use event::{Event, EventKind, UnknownEvent};
pub use runner::{
    DebugHookResult, EventResult, EventRunner, Overall, RunnerConfig, ScriptResult, ScriptStatus,
};
pub use scripts::{
    planned_scripts, PlannedScript, Readiness, ScriptDirs, ScriptEntry, ScriptError, ScriptName,
    ScriptSource,
};
pub use status::{
    ctime_utc, render_event_status, render_script_list, render_scriptstatus, render_status_reply,
    status_label, strerror, EventStatusStore, ScriptCounters, StatusOutput,
};

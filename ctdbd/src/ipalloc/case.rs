//! The takeover test case format (`ctdb-takeover-case 1`, described in
//! `ctdbd/tests/data/takeover/FORMAT.md`): parsing a case file into a [`Case`], turning
//! each step into an allocation [`Input`], and running the steps.
//!
//! Used by the table test `ctdbd/tests/takeover_cases.rs` and by the `ctdb-ipalloc`
//! tool; the caller reads the file, so this stays free of I/O. The parser is strict:
//! every key must be known, present once and in the documented order, every count
//! key must match its table, and the `[nodes]` columns must agree with each other, so
//! a hand-edited case that says something it does not mean fails with the file and
//! line instead of testing the wrong thing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{
    allocate, can_host_ips, Algorithm, Allocation, Assignment, Input, KnownIp, LogLevel, NodeView,
    Settings,
};
use crate::protocol::control::Runstate;

/// The value of the `format` key this parser reads.
pub const FORMAT: &str = "ctdb-takeover-case 1";

/// The node flag bits a case may use, with their names, in naming order.
const FLAG_NAMES: [(u32, &str); 6] = [
    (0x01, "DISCONNECTED"),
    (0x02, "UNHEALTHY"),
    (0x04, "PERMANENTLY_DISABLED"),
    (0x08, "BANNED"),
    (0x10, "DELETED"),
    (0x20, "STOPPED"),
];

const CASE_KEYS: [&str; 11] = [
    "format",
    "name",
    "description",
    "algorithm",
    "source",
    "env",
    "loglevel",
    "loglevel_source",
    "no_ip_takeover",
    "no_ip_failback",
    "steps",
];

const STEP_KEYS: [&str; 9] = [
    "title",
    "node_count",
    "node_flags",
    "node_states",
    "runstates",
    "input_mode",
    "input_from",
    "log_lines",
    "expect_count",
];

/// A malformed case file; nothing was run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {kind}", path.display())]
pub struct CaseError {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// 1-based line the problem was found on (for a missing item, where it was due).
    pub line: usize,
    /// What is wrong.
    pub kind: CaseErrorKind,
}

/// What is wrong with a case file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseErrorKind {
    /// A line that does not belong where it is (e.g. a table row among keys).
    #[error("unexpected line {text:?}")]
    UnexpectedLine {
        /// The line.
        text: String,
    },
    /// A key this format does not have.
    #[error("unknown key `{key}`")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// A key given twice or after a key that should follow it.
    #[error("key `{key}` repeated or out of order")]
    KeyOutOfOrder {
        /// The key.
        key: String,
    },
    /// A required key is absent.
    #[error("missing key `{key}`")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key's value cannot be used.
    #[error("bad value {value:?} for `{key}`")]
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// A section header this format does not have.
    #[error("unknown section `[{name}]`")]
    UnknownSection {
        /// The header's text between the brackets.
        name: String,
    },
    /// A section header where another one (or a key) was due.
    #[error("section `[{name}]` out of place; expected {expected}")]
    SectionOutOfPlace {
        /// The header's text between the brackets.
        name: String,
        /// What was due instead.
        expected: String,
    },
    /// A section is absent.
    #[error("missing section {name}")]
    MissingSection {
        /// The section, with brackets.
        name: String,
    },
    /// A table row with the wrong number of columns.
    #[error("{expected} columns expected, found {found}")]
    ColumnCount {
        /// Columns of the table.
        expected: usize,
        /// Columns in the row.
        found: usize,
    },
    /// A table cell that cannot be used.
    #[error("bad {column} {value:?}")]
    BadColumn {
        /// The column's name.
        column: &'static str,
        /// The cell as written.
        value: String,
    },
    /// A count key that does not match what follows it.
    #[error("`{key}` says {declared} but there are {found}")]
    CountMismatch {
        /// The key.
        key: &'static str,
        /// Its value.
        declared: usize,
        /// What the file holds.
        found: usize,
    },
    /// A per-node step key that disagrees with the `[nodes]` table.
    #[error("`{key}` disagrees with the [nodes] table for node {pnn}")]
    NodeMismatch {
        /// The key.
        key: &'static str,
        /// The first node that differs.
        pnn: u32,
    },
    /// A `[nodes]` row whose state or `available` column does not follow from its
    /// flags and runstate.
    #[error("node {pnn}: `{column}` does not follow from the flags and runstate")]
    NodeInconsistent {
        /// The node.
        pnn: u32,
        /// The column that disagrees.
        column: &'static str,
    },
    /// `input_from = previous_step` in the first step.
    #[error("`input_from = previous_step` in the first step")]
    NoPreviousStep,
}

/// A parsed case file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// `name`: the file name without `.case`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `algorithm`.
    pub algorithm: Algorithm,
    /// `source`: where the case came from.
    pub source: String,
    /// `env`: the environment of the original run, as `(NAME, VALUE)` pairs.
    pub env: Vec<(String, String)>,
    /// `loglevel`.
    pub log_level: LogLevel,
    /// `loglevel_source = env` (else `default`).
    pub log_level_from_env: bool,
    /// `no_ip_takeover`.
    pub no_ip_takeover: bool,
    /// `no_ip_failback`.
    pub no_ip_failback: bool,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// One run of the allocation inside a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// N of `[step N]`.
    pub number: usize,
    /// Line of the `[step N]` header.
    pub line: usize,
    /// `title`; empty for single-step cases.
    pub title: String,
    /// The `[nodes]` table, one row per node in pnn order.
    pub nodes: Vec<NodeRow>,
    /// `input_from`.
    pub input_from: InputFrom,
    /// The IP input.
    pub ips: IpTable,
    /// The expected log lines, text after the `|`.
    pub log: Vec<String>,
    /// The expected allocation, in output order.
    pub expect: Vec<Assignment>,
}

/// One `[nodes]` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRow {
    /// The node's pnn (its row index).
    pub pnn: u32,
    /// Its node flags.
    pub flags: u32,
    /// Its runstate.
    pub runstate: Runstate,
    /// Whether it can host addresses (checked against flags and runstate).
    pub available: bool,
}

/// Where a step's IP table came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFrom {
    /// Written by the original script.
    Literal,
    /// The previous step's output; a runner feeds its actual output instead.
    PreviousStep,
}

/// A step's IP input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpTable {
    /// `[ips]`: one table for all nodes.
    Shared(Vec<SharedIp>),
    /// `[node_ips P]`: each node's own view, by pnn.
    PerNode(Vec<Vec<KnownIp>>),
}

/// One `[ips]` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedIp {
    /// The address.
    pub addr: IpAddr,
    /// `current_pnn`; `None` for `-1`.
    pub current: Option<u32>,
    /// `known_on`: the nodes it is configured on; `None` for `*` (all).
    pub known_on: Option<Vec<u32>>,
}

impl Case {
    /// Parses a case file's text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, CaseError> {
        Parser::new(path).run(text)
    }

    /// The allocation settings the case implies (no forced rebalancing).
    pub fn settings(&self) -> Settings {
        Settings {
            algorithm: self.algorithm,
            no_ip_failback: self.no_ip_failback,
            no_ip_takeover: self.no_ip_takeover,
            force_rebalance_nodes: Vec::new(),
        }
    }

    /// Runs every step in order, feeding each `previous_step` step the actual result
    /// of the step before it. One allocation per step.
    pub fn run(&self) -> Vec<Allocation> {
        let mut results: Vec<Allocation> = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let input = step.input(self, results.last());
            results.push(allocate(&input));
        }
        results
    }
}

impl Step {
    /// The allocation input of this step. For `input_from = previous_step`, a given
    /// `previous` result replaces the written table (every node knows every address,
    /// with the owner the previous step gave it).
    pub fn input(&self, case: &Case, previous: Option<&Allocation>) -> Input {
        let from_previous;
        let table = match (self.input_from, previous) {
            (InputFrom::PreviousStep, Some(previous)) => {
                from_previous = IpTable::Shared(
                    previous
                        .ips
                        .iter()
                        .map(|a| SharedIp {
                            addr: a.addr,
                            current: a.owner,
                            known_on: None,
                        })
                        .collect(),
                );
                &from_previous
            }
            _ => &self.ips,
        };
        let nodes = self
            .nodes
            .iter()
            .map(|node| {
                let known = match table {
                    IpTable::Shared(rows) => rows
                        .iter()
                        .filter(|row| {
                            row.known_on
                                .as_ref()
                                .is_none_or(|on| on.contains(&node.pnn))
                        })
                        .map(|row| KnownIp {
                            addr: row.addr,
                            owner: row.current,
                        })
                        .collect(),
                    IpTable::PerNode(views) => views[node.pnn as usize].clone(),
                };
                NodeView::new(known, node.available)
            })
            .collect();
        Input {
            nodes,
            settings: case.settings(),
            log_level: case.log_level,
        }
    }
}

/// Parses an integer as C's `strtol(text, NULL, 0)` would for a whole token:
/// `0x` hex, leading `0` octal, else decimal.
fn parse_c_integer(text: &str) -> Option<u32> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse().ok()
    }
}

/// The state name of a flag mask (`HEALTHY`, `UNHEALTHY+STOPPED`); `None` if the
/// mask has bits outside the six named ones.
fn state_name(flags: u32) -> Option<String> {
    let known: u32 = FLAG_NAMES.iter().map(|(bit, _)| bit).sum();
    if flags & !known != 0 {
        return None;
    }
    if flags == 0 {
        return Some("HEALTHY".to_string());
    }
    let names: Vec<&str> = FLAG_NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    Some(names.join("+"))
}

/// `-1` or a pnn.
fn parse_owner(text: &str, column: &'static str) -> Result<Option<u32>, CaseErrorKind> {
    if text == "-1" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| CaseErrorKind::BadColumn {
            column,
            value: text.to_string(),
        })
}

fn parse_addr(text: &str) -> Result<IpAddr, CaseErrorKind> {
    text.parse().map_err(|_| CaseErrorKind::BadColumn {
        column: "ip",
        value: text.to_string(),
    })
}

fn columns(row: &str, expected: usize) -> Result<Vec<&str>, CaseErrorKind> {
    let cells: Vec<&str> = row.split_whitespace().collect();
    if cells.len() != expected {
        return Err(CaseErrorKind::ColumnCount {
            expected,
            found: cells.len(),
        });
    }
    Ok(cells)
}

/// Key lines of one block, checked for name, order and presence.
struct Keys {
    names: &'static [&'static str],
    /// `(value, line)` by position in `names`.
    values: Vec<Option<(String, usize)>>,
    /// Position of the last key given.
    last: Option<usize>,
}

impl Keys {
    fn new(names: &'static [&'static str]) -> Self {
        Self {
            names,
            values: vec![None; names.len()],
            last: None,
        }
    }

    fn set(&mut self, key: &str, value: &str, line: usize) -> Result<(), CaseErrorKind> {
        let Some(pos) = self.names.iter().position(|&n| n == key) else {
            return Err(CaseErrorKind::UnknownKey {
                key: key.to_string(),
            });
        };
        if self.last.is_some_and(|last| pos <= last) {
            return Err(CaseErrorKind::KeyOutOfOrder {
                key: key.to_string(),
            });
        }
        self.last = Some(pos);
        self.values[pos] = Some((value.to_string(), line));
        Ok(())
    }

    /// The first missing key, if any.
    fn missing(&self) -> Option<&'static str> {
        self.names
            .iter()
            .zip(&self.values)
            .find(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
    }

    /// A key's value and line; only called once [`missing`](Self::missing) is `None`.
    fn get(&self, key: &'static str) -> (&str, usize) {
        let pos = self
            .names
            .iter()
            .position(|&n| n == key)
            .expect("key is in the block's list");
        let (value, line) = self.values[pos]
            .as_ref()
            .expect("presence checked by `missing`");
        (value, *line)
    }
}

/// Where in the file the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    CaseKeys,
    StepKeys,
    Nodes,
    Ips,
    NodeIps(usize),
    Log,
    Expect,
}

/// A step being read.
struct StepBuilder {
    number: usize,
    line: usize,
    keys: Keys,
    nodes: Vec<NodeRow>,
    shared: Option<Vec<SharedIp>>,
    per_node: Vec<Vec<KnownIp>>,
    log: Vec<String>,
    expect: Vec<Assignment>,
    /// Whether `[log]` and `[expect]` were seen.
    seen_log: bool,
    seen_expect: bool,
}

struct Parser {
    path: PathBuf,
    case_keys: Keys,
    steps: Vec<Step>,
    step: Option<StepBuilder>,
    place: Place,
}

impl Parser {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            case_keys: Keys::new(&CASE_KEYS),
            steps: Vec::new(),
            step: None,
            place: Place::CaseKeys,
        }
    }

    fn error(&self, line: usize, kind: CaseErrorKind) -> CaseError {
        CaseError {
            path: self.path.clone(),
            line,
            kind,
        }
    }

    fn run(mut self, text: &str) -> Result<Case, CaseError> {
        let mut last_line = 0;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            last_line = number;
            let line = raw.trim_end();
            let content = line.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if content.starts_with("[step ") {
                // The open step ends here; its own errors point into it.
                self.finish_step(number - 1)?;
            }
            self.line(number, line, content)
                .map_err(|kind| self.error(number, kind))?;
        }
        self.finish_step(last_line)?;
        self.finish(last_line)
    }

    /// Handles one non-blank, non-comment line.
    fn line(&mut self, number: usize, line: &str, content: &str) -> Result<(), CaseErrorKind> {
        if let Some(name) = content.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            return self.section(number, name);
        }
        let Some(step) = self.step.as_mut() else {
            let (key, value) =
                content
                    .split_once('=')
                    .ok_or_else(|| CaseErrorKind::UnexpectedLine {
                        text: line.to_string(),
                    })?;
            return self.case_keys.set(key.trim(), value.trim(), number);
        };
        let node_count = step.nodes.len();
        match self.place {
            Place::CaseKeys => unreachable!("a step is open, so its header moved us on"),
            Place::StepKeys => {
                let (key, value) =
                    content
                        .split_once('=')
                        .ok_or_else(|| CaseErrorKind::UnexpectedLine {
                            text: line.to_string(),
                        })?;
                step.keys.set(key.trim(), value.trim(), number)
            }
            Place::Nodes => {
                let cells = columns(content, 5)?;
                let pnn = u32::try_from(step.nodes.len()).expect("few nodes");
                if cells[0].parse::<u32>().ok() != Some(pnn) {
                    return Err(CaseErrorKind::BadColumn {
                        column: "pnn",
                        value: cells[0].to_string(),
                    });
                }
                let flags = parse_c_integer(cells[1]).ok_or_else(|| CaseErrorKind::BadColumn {
                    column: "flags",
                    value: cells[1].to_string(),
                })?;
                let runstate =
                    Runstate::parse(cells[3]).ok_or_else(|| CaseErrorKind::BadColumn {
                        column: "runstate",
                        value: cells[3].to_string(),
                    })?;
                let available = match cells[4] {
                    "yes" => true,
                    "no" => false,
                    other => {
                        return Err(CaseErrorKind::BadColumn {
                            column: "available",
                            value: other.to_string(),
                        })
                    }
                };
                if state_name(flags).as_deref() != Some(cells[2]) {
                    return Err(CaseErrorKind::NodeInconsistent {
                        pnn,
                        column: "state",
                    });
                }
                if can_host_ips(flags, runstate) != available {
                    return Err(CaseErrorKind::NodeInconsistent {
                        pnn,
                        column: "available",
                    });
                }
                step.nodes.push(NodeRow {
                    pnn,
                    flags,
                    runstate,
                    available,
                });
                Ok(())
            }
            Place::Ips => {
                let cells = columns(content, 3)?;
                let addr = parse_addr(cells[0])?;
                let current = parse_owner(cells[1], "current_pnn")?;
                let known_on = if cells[2] == "*" {
                    None
                } else {
                    let bad = || CaseErrorKind::BadColumn {
                        column: "known_on",
                        value: cells[2].to_string(),
                    };
                    let list = cells[2]
                        .split(',')
                        .map(|p| p.parse::<u32>().ok().filter(|&p| (p as usize) < node_count))
                        .collect::<Option<Vec<u32>>>()
                        .ok_or_else(bad)?;
                    Some(list)
                };
                step.shared.get_or_insert_with(Vec::new).push(SharedIp {
                    addr,
                    current,
                    known_on,
                });
                Ok(())
            }
            Place::NodeIps(_) => {
                let cells = columns(content, 2)?;
                let known = KnownIp {
                    addr: parse_addr(cells[0])?,
                    owner: parse_owner(cells[1], "current_pnn")?,
                };
                step.per_node
                    .last_mut()
                    .expect("a [node_ips P] header opened this table")
                    .push(known);
                Ok(())
            }
            Place::Log => {
                let text =
                    content
                        .strip_prefix('|')
                        .ok_or_else(|| CaseErrorKind::UnexpectedLine {
                            text: line.to_string(),
                        })?;
                step.log.push(text.to_string());
                Ok(())
            }
            Place::Expect => {
                let cells = columns(content, 2)?;
                step.expect.push(Assignment {
                    addr: parse_addr(cells[0])?,
                    owner: parse_owner(cells[1], "pnn")?,
                });
                Ok(())
            }
        }
    }

    /// Handles a `[name]` or `[name N]` header.
    fn section(&mut self, number: usize, name: &str) -> Result<(), CaseErrorKind> {
        let (word, index) = match name.split_once(' ') {
            Some((word, n)) => (word, Some(n.trim())),
            None => (name, None),
        };
        let index = index
            .map(|n| {
                n.parse::<usize>()
                    .map_err(|_| CaseErrorKind::UnknownSection {
                        name: name.to_string(),
                    })
            })
            .transpose()?;
        let out_of_place = |expected: &str| CaseErrorKind::SectionOutOfPlace {
            name: name.to_string(),
            expected: expected.to_string(),
        };
        match (word, index) {
            ("step", Some(n)) => {
                // The caller has already closed the previous step.
                let due = self.steps.len() + 1;
                if n != due {
                    return Err(out_of_place(&format!("[step {due}]")));
                }
                if let Some(key) = self.case_keys.missing() {
                    return Err(CaseErrorKind::MissingKey { key });
                }
                self.step = Some(StepBuilder {
                    number: n,
                    line: number,
                    keys: Keys::new(&STEP_KEYS),
                    nodes: Vec::new(),
                    shared: None,
                    per_node: Vec::new(),
                    log: Vec::new(),
                    expect: Vec::new(),
                    seen_log: false,
                    seen_expect: false,
                });
                self.place = Place::StepKeys;
                Ok(())
            }
            ("nodes", None) => {
                let Some(step) = self.step.as_ref() else {
                    return Err(out_of_place("[step 1]"));
                };
                if self.place != Place::StepKeys {
                    return Err(out_of_place("[log] or [expect]"));
                }
                if let Some(key) = step.keys.missing() {
                    return Err(CaseErrorKind::MissingKey { key });
                }
                self.place = Place::Nodes;
                Ok(())
            }
            ("ips", None) if self.place == Place::Nodes => {
                self.check_node_count()?;
                self.place = Place::Ips;
                Ok(())
            }
            ("node_ips", Some(p)) => {
                let due = match self.place {
                    Place::Nodes => 0,
                    Place::NodeIps(q) => q + 1,
                    _ => return Err(out_of_place("[ips]")),
                };
                if p != due {
                    return Err(out_of_place(&format!("[node_ips {due}]")));
                }
                self.check_node_count()?;
                let step = self.step.as_mut().expect("[nodes] came before");
                if p >= step.nodes.len() {
                    return Err(out_of_place("[log]"));
                }
                step.per_node.push(Vec::new());
                self.place = Place::NodeIps(p);
                Ok(())
            }
            ("log", None) if matches!(self.place, Place::Ips | Place::NodeIps(_)) => {
                let step = self.step.as_mut().expect("[nodes] came before");
                if let Place::NodeIps(p) = self.place {
                    if p + 1 != step.nodes.len() {
                        return Err(out_of_place(&format!("[node_ips {}]", p + 1)));
                    }
                }
                step.seen_log = true;
                self.place = Place::Log;
                Ok(())
            }
            ("expect", None) if self.place == Place::Log => {
                self.step.as_mut().expect("[log] came before").seen_expect = true;
                self.place = Place::Expect;
                Ok(())
            }
            ("ips" | "log" | "expect", None) => Err(out_of_place(match self.place {
                Place::CaseKeys => "[step 1]",
                Place::StepKeys => "[nodes]",
                Place::Nodes => "[ips] or [node_ips 0]",
                Place::Ips | Place::NodeIps(_) => "[log]",
                Place::Log => "[expect]",
                Place::Expect => "[step N] or the end",
            })),
            _ => Err(CaseErrorKind::UnknownSection {
                name: name.to_string(),
            }),
        }
    }

    /// After `[nodes]`: the table must have `node_count` rows.
    fn check_node_count(&self) -> Result<(), CaseErrorKind> {
        let step = self.step.as_ref().expect("[nodes] came before");
        let (value, _) = step.keys.get("node_count");
        let declared: usize = value.parse().map_err(|_| CaseErrorKind::BadValue {
            key: "node_count",
            value: value.to_string(),
        })?;
        if declared != step.nodes.len() {
            return Err(CaseErrorKind::CountMismatch {
                key: "node_count",
                declared,
                found: step.nodes.len(),
            });
        }
        Ok(())
    }

    /// Validates and stores the open step, if any; `end` is its last line.
    fn finish_step(&mut self, end: usize) -> Result<(), CaseError> {
        let Some(step) = self.step.take() else {
            return Ok(());
        };
        let missing = |name: &str| {
            self.error(
                end,
                CaseErrorKind::MissingSection {
                    name: name.to_string(),
                },
            )
        };
        if let Some(key) = step.keys.missing() {
            return Err(self.error(step.line, CaseErrorKind::MissingKey { key }));
        }
        if !step.seen_log {
            return Err(missing("[log]"));
        }
        if !step.seen_expect {
            return Err(missing("[expect]"));
        }

        let value_error = |key: &'static str| {
            let (value, line) = step.keys.get(key);
            self.error(
                line,
                CaseErrorKind::BadValue {
                    key,
                    value: value.to_string(),
                },
            )
        };
        let count = |key: &'static str, found: usize| -> Result<(), CaseError> {
            let (value, line) = step.keys.get(key);
            let declared: usize = value.parse().map_err(|_| value_error(key))?;
            if declared != found {
                return Err(self.error(
                    line,
                    CaseErrorKind::CountMismatch {
                        key,
                        declared,
                        found,
                    },
                ));
            }
            Ok(())
        };
        count("log_lines", step.log.len())?;
        count("expect_count", step.expect.len())?;

        // The per-node keys must say what the [nodes] table says.
        let per_node = |key: &'static str, cell: &dyn Fn(&NodeRow, &str) -> bool| {
            let (value, line) = step.keys.get(key);
            let tokens: Vec<&str> = value.split(',').map(str::trim).collect();
            if tokens.len() != step.nodes.len() {
                return Err(self.error(
                    line,
                    CaseErrorKind::CountMismatch {
                        key,
                        declared: tokens.len(),
                        found: step.nodes.len(),
                    },
                ));
            }
            match step.nodes.iter().zip(&tokens).find(|(n, t)| !cell(n, t)) {
                Some((node, _)) => {
                    Err(self.error(line, CaseErrorKind::NodeMismatch { key, pnn: node.pnn }))
                }
                None => Ok(()),
            }
        };
        per_node("node_flags", &|n, t| parse_c_integer(t) == Some(n.flags))?;
        per_node("node_states", &|n, t| {
            state_name(n.flags).as_deref() == Some(t)
        })?;
        per_node("runstates", &|n, t| n.runstate.name() == t)?;

        let (mode, mode_line) = step.keys.get("input_mode");
        let ips = match (mode, step.shared) {
            ("shared", Some(rows)) if step.per_node.is_empty() => IpTable::Shared(rows),
            ("per_node", None) if !step.per_node.is_empty() => IpTable::PerNode(step.per_node),
            ("shared" | "per_node", _) => {
                return Err(self.error(
                    mode_line,
                    CaseErrorKind::MissingSection {
                        name: if mode == "shared" {
                            "[ips]".to_string()
                        } else {
                            "[node_ips 0]".to_string()
                        },
                    },
                ))
            }
            _ => return Err(value_error("input_mode")),
        };
        let input_from = match step.keys.get("input_from") {
            ("literal", _) => InputFrom::Literal,
            ("previous_step", line) if step.number == 1 => {
                return Err(self.error(line, CaseErrorKind::NoPreviousStep))
            }
            ("previous_step", _) => InputFrom::PreviousStep,
            _ => return Err(value_error("input_from")),
        };

        self.steps.push(Step {
            number: step.number,
            line: step.line,
            title: step.keys.get("title").0.to_string(),
            nodes: step.nodes,
            input_from,
            ips,
            log: step.log,
            expect: step.expect,
        });
        Ok(())
    }

    /// Builds the case from the case keys and the finished steps.
    fn finish(self, last_line: usize) -> Result<Case, CaseError> {
        if let Some(key) = self.case_keys.missing() {
            return Err(self.error(last_line, CaseErrorKind::MissingKey { key }));
        }
        let keys = &self.case_keys;
        let bad = |key: &'static str| {
            let (value, line) = keys.get(key);
            self.error(
                line,
                CaseErrorKind::BadValue {
                    key,
                    value: value.to_string(),
                },
            )
        };
        let flag = |key: &'static str| match keys.get(key).0 {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(key)),
        };

        if keys.get("format").0 != FORMAT {
            return Err(bad("format"));
        }
        let algorithm =
            Algorithm::from_short_name(keys.get("algorithm").0).ok_or_else(|| bad("algorithm"))?;
        let env = keys
            .get("env")
            .0
            .split_whitespace()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(name, value)| (name.to_string(), value.to_string()))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("env"))?;
        let log_level =
            LogLevel::parse_prefix(keys.get("loglevel").0).ok_or_else(|| bad("loglevel"))?;
        let log_level_from_env = match keys.get("loglevel_source").0 {
            "env" => true,
            "default" => false,
            _ => return Err(bad("loglevel_source")),
        };
        let (steps_value, steps_line) = keys.get("steps");
        let declared: usize = steps_value.parse().map_err(|_| bad("steps"))?;
        if declared == 0 || declared != self.steps.len() {
            return Err(self.error(
                steps_line,
                CaseErrorKind::CountMismatch {
                    key: "steps",
                    declared,
                    found: self.steps.len(),
                },
            ));
        }

        Ok(Case {
            name: keys.get("name").0.to_string(),
            description: keys.get("description").0.to_string(),
            algorithm,
            source: keys.get("source").0.to_string(),
            env,
            log_level,
            log_level_from_env,
            no_ip_takeover: flag("no_ip_takeover")?,
            no_ip_failback: flag("no_ip_failback")?,
            steps: self.steps,
            path: self.path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# a comment
format = ctdb-takeover-case 1
name = lcp2.900
description = two nodes, one down
algorithm = lcp2
source = test
env = CTDB_IP_ALGORITHM=lcp2 CTDB_TEST_LOGLEVEL=DEBUG
loglevel = DEBUG
loglevel_source = env
no_ip_takeover = 0
no_ip_failback = 0
steps = 2

[step 1]
title =
node_count = 2
node_flags = 0,0x2
node_states = HEALTHY,UNHEALTHY
runstates = RUNNING,RUNNING
input_mode = shared
input_from = literal
log_lines = 2
expect_count = 2

[nodes]
# pnn flags state runstate available
0 0x00 HEALTHY RUNNING yes
1 0x02 UNHEALTHY RUNNING no

[ips]
10.0.0.2 1 *
10.0.0.1 -1 0,1

[log]
|Unassign IP: 10.0.0.2 from 1
|  two leading spaces

[expect]
10.0.0.2 0
10.0.0.1 0

[step 2]
title = node 1 comes back
node_count = 2
node_flags = 0,0
node_states = HEALTHY,HEALTHY
runstates = RUNNING,RUNNING
input_mode = per_node
input_from = previous_step
log_lines = 0
expect_count = 0

[nodes]
0 0x00 HEALTHY RUNNING yes
1 0x00 HEALTHY RUNNING yes

[node_ips 0]
10.0.0.2 0
[node_ips 1]
10.0.0.1 0

[log]

[expect]
";

    fn parse(text: &str) -> Result<Case, CaseError> {
        Case::parse(text, Path::new("x.case"))
    }

    fn error_at(text: &str) -> (usize, CaseErrorKind) {
        let e = parse(text).unwrap_err();
        assert_eq!(e.path, Path::new("x.case"));
        (e.line, e.kind)
    }

    #[test]
    fn parses_a_two_step_case() {
        let case = parse(GOOD).unwrap();
        assert_eq!(case.name, "lcp2.900");
        assert_eq!(case.algorithm, Algorithm::Lcp2);
        assert_eq!(case.log_level, LogLevel::Debug);
        assert!(case.log_level_from_env);
        assert_eq!(case.env[1], ("CTDB_TEST_LOGLEVEL".into(), "DEBUG".into()));
        assert_eq!(case.steps.len(), 2);
        let one = &case.steps[0];
        assert_eq!(one.nodes[1].flags, 2);
        assert!(!one.nodes[1].available);
        assert_eq!(
            one.log,
            vec!["Unassign IP: 10.0.0.2 from 1", "  two leading spaces"]
        );
        assert_eq!(one.expect[1].to_string(), "10.0.0.1 0");
        let IpTable::Shared(rows) = &one.ips else {
            panic!("shared")
        };
        assert_eq!(rows[0].known_on, None);
        assert_eq!(rows[1].known_on, Some(vec![0, 1]));
        assert_eq!(rows[1].current, None);
        let two = &case.steps[1];
        assert_eq!(two.title, "node 1 comes back");
        assert_eq!(two.input_from, InputFrom::PreviousStep);
        assert!(matches!(&two.ips, IpTable::PerNode(v) if v.len() == 2));
    }

    #[test]
    fn shared_input_gives_each_node_its_known_and_available_lists() {
        let case = parse(GOOD).unwrap();
        let input = case.steps[0].input(&case, None);
        assert_eq!(input.nodes[0].known.len(), 2);
        assert_eq!(input.nodes[0].available.len(), 2);
        assert_eq!(input.nodes[1].known.len(), 2);
        assert!(input.nodes[1].available.is_empty());
        assert_eq!(input.log_level, LogLevel::Debug);
    }

    #[test]
    fn previous_step_input_uses_the_actual_previous_output() {
        let case = parse(GOOD).unwrap();
        let previous = Allocation {
            ips: vec![Assignment {
                addr: "10.9.9.9".parse().unwrap(),
                owner: Some(1),
            }],
            log: vec![],
        };
        let input = case.steps[1].input(&case, Some(&previous));
        for node in &input.nodes {
            assert_eq!(
                node.known,
                vec![KnownIp {
                    addr: previous.ips[0].addr,
                    owner: Some(1)
                }]
            );
        }
        // Without a previous result the written table is used.
        let input = case.steps[1].input(&case, None);
        assert_eq!(input.nodes[1].known[0].addr.to_string(), "10.0.0.1");
    }

    #[test]
    fn run_chains_steps() {
        let case = parse(GOOD).unwrap();
        let results = case.run();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].ips, case.steps[0].expect);
    }

    #[test]
    fn c_integers() {
        assert_eq!(parse_c_integer("0x20"), Some(32));
        assert_eq!(parse_c_integer("010"), Some(8));
        assert_eq!(parse_c_integer("0"), Some(0));
        assert_eq!(parse_c_integer("12"), Some(12));
        assert_eq!(parse_c_integer("09"), None);
        assert_eq!(state_name(0x22).as_deref(), Some("UNHEALTHY+STOPPED"));
        assert_eq!(state_name(0x40), None);
    }

    #[test]
    fn unknown_key_names_its_line() {
        let text = GOOD.replace("source = test", "origin = test");
        assert_eq!(
            error_at(&text),
            (
                6,
                CaseErrorKind::UnknownKey {
                    key: "origin".into()
                }
            )
        );
    }

    #[test]
    fn keys_out_of_order() {
        let text = GOOD.replace(
            "name = lcp2.900\ndescription = two nodes, one down",
            "description = x\nname = y",
        );
        assert_eq!(
            error_at(&text),
            (4, CaseErrorKind::KeyOutOfOrder { key: "name".into() })
        );
    }

    #[test]
    fn bad_address_and_column_count() {
        let text = GOOD.replace("10.0.0.2 1 *", "10.0.0.300 1 *");
        assert_eq!(
            error_at(&text),
            (
                31,
                CaseErrorKind::BadColumn {
                    column: "ip",
                    value: "10.0.0.300".into()
                }
            )
        );
        let text = GOOD.replace("10.0.0.2 1 *", "10.0.0.2 1");
        assert_eq!(
            error_at(&text),
            (
                31,
                CaseErrorKind::ColumnCount {
                    expected: 3,
                    found: 2
                }
            )
        );
    }

    #[test]
    fn counts_must_match() {
        let text = GOOD.replace("log_lines = 2", "log_lines = 3");
        assert_eq!(
            error_at(&text),
            (
                22,
                CaseErrorKind::CountMismatch {
                    key: "log_lines",
                    declared: 3,
                    found: 2
                }
            )
        );
        let text = GOOD.replace("steps = 2", "steps = 1");
        assert_eq!(
            error_at(&text),
            (
                12,
                CaseErrorKind::CountMismatch {
                    key: "steps",
                    declared: 1,
                    found: 2
                }
            )
        );
    }

    #[test]
    fn node_columns_must_agree() {
        let text = GOOD.replace(
            "1 0x02 UNHEALTHY RUNNING no",
            "1 0x02 UNHEALTHY RUNNING yes",
        );
        assert_eq!(
            error_at(&text),
            (
                28,
                CaseErrorKind::NodeInconsistent {
                    pnn: 1,
                    column: "available"
                }
            )
        );
        let text = GOOD.replace("node_flags = 0,0x2", "node_flags = 0,0x20");
        assert_eq!(
            error_at(&text),
            (
                17,
                CaseErrorKind::NodeMismatch {
                    key: "node_flags",
                    pnn: 1
                }
            )
        );
    }

    #[test]
    fn log_lines_need_a_bar() {
        let text = GOOD.replace("|Unassign IP", "Unassign IP");
        assert!(matches!(
            error_at(&text),
            (35, CaseErrorKind::UnexpectedLine { .. })
        ));
    }

    #[test]
    fn sections_in_order() {
        let text = GOOD.replace("[node_ips 1]", "[node_ips 2]");
        assert!(matches!(
            error_at(&text),
            (59, CaseErrorKind::SectionOutOfPlace { .. })
        ));
        let text = GOOD.replace("[step 2]", "[step 3]");
        assert!(matches!(
            error_at(&text),
            (42, CaseErrorKind::SectionOutOfPlace { .. })
        ));
        let text = GOOD.replace("[expect]\n10.0.0.2 0\n10.0.0.1 0\n", "");
        assert!(matches!(
            error_at(&text),
            (_, CaseErrorKind::MissingSection { .. })
        ));
        let text = GOOD.replace("[ips]", "[addresses]");
        assert!(matches!(
            error_at(&text),
            (_, CaseErrorKind::UnknownSection { .. })
        ));
    }

    #[test]
    fn previous_step_in_first_step() {
        let text = GOOD.replacen("input_from = literal", "input_from = previous_step", 1);
        assert_eq!(error_at(&text), (21, CaseErrorKind::NoPreviousStep));
    }

    #[test]
    fn error_message_names_file_and_line() {
        let text = GOOD.replace("loglevel = DEBUG", "loglevel = LOUD");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.to_string(), "x.case:8: bad value \"LOUD\" for `loglevel`");
    }
}

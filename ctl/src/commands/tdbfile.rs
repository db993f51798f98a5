//! `tfetch` and `tstore`: one record of a TDB file named on the command line,
//! read or written directly with libtdb (no daemon control is involved, though
//! the tool still connects first, as 4.17's does).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ctdbd::db::ltdb::LtdbHeader;
use ctdbd::db::tdb::{StoreMode, Tdb};
use serde::Serialize;

use super::db::{header_and_data, str_to_data, Record};
use super::node::Done;
use super::{json_via_serde, CommandError, Report, Style};

const EINVAL: i32 = 22;
const ERANGE: i32 = 34;

/// Opens `path` as 4.17's tool does: existing file, read-write, default flags.
fn open(path: &str) -> Result<Tdb, CommandError> {
    Tdb::open(Path::new(path), 0, 0, libc::O_RDWR, 0)
        .map_err(|_| CommandError::stderr(format!("Failed to open TDB file {path}")))
}

/// Parses a key or value argument, or fails with the reason and what it was.
fn parse(text: &str, what: &str) -> Result<Vec<u8>, CommandError> {
    str_to_data(text).map_err(|reason| CommandError::Failed {
        stdout: String::new(),
        stderr: format!("{reason}\nFailed to parse {what} {text}\n"),
        code: EINVAL,
    })
}

/// `ctdb tfetch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// Why the copy to the output file failed, if it did (the record is still shown).
    #[serde(skip)]
    pub warning: Option<String>,
}

impl Report for Fetched {
    fn text(&self, _style: &Style) -> String {
        header_and_data(&self.record)
    }
    json_via_serde!();
    fn stderr(&self) -> String {
        self.warning
            .as_ref()
            .map(|w| format!("{w}\n"))
            .unwrap_or_default()
    }
}

/// `ctdb tfetch TDB KEY [FILE]`: prints the record's header and value; with FILE,
/// also writes the stored bytes (header included) there.
pub fn tfetch(args: &[String]) -> Result<Fetched, CommandError> {
    let (path, key_text, out) = match args {
        [p, k] => (p, k, None),
        [p, k, f] => (p, k, Some(f)),
        _ => return Err(CommandError::Usage("tfetch")),
    };
    let tdb = open(path)?;
    let key = parse(key_text, "key")?;
    let stored = match tdb.fetch(&key) {
        Ok(Some(stored)) => stored,
        _ => {
            return Err(CommandError::stderr(format!(
                "No record for key {key_text}"
            )))
        }
    };
    drop(tdb);
    let Some(record) = Record::from_stored(&key, &stored) else {
        return Err(CommandError::stderr(format!(
            "Invalid record for key {key_text}"
        )));
    };
    let warning = out.and_then(|file| {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(file);
        match opened {
            Err(_) => Some(format!("Failed to open output file {file}")),
            Ok(mut f) => f
                .write_all(&stored)
                .err()
                .map(|_| "Failed to write record to file".to_owned()),
        }
    });
    Ok(Fetched { record, warning })
}

/// C's `strtoull(text, 0)` as samba's checked wrapper uses it: leading blanks,
/// an optional `+`, base from the prefix; no digits or a `-` is EINVAL, overflow
/// ERANGE; trailing text is ignored.
fn checked_strtoull(text: &str) -> Result<u64, i32> {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if t.starts_with('-') {
        return Err(EINVAL);
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let (radix, body) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) if hex.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, hex),
        _ if t.starts_with('0') => (8, t),
        _ => (10, t),
    };
    let digits: String = body.chars().take_while(|c| c.is_digit(radix)).collect();
    if digits.is_empty() {
        return Err(EINVAL);
    }
    u64::from_str_radix(&digits, radix).map_err(|_| ERANGE)
}

/// C's `atol` kept to 32 bits: leading blanks, a sign, decimal digits; none is 0.
fn atol_u32(text: &str) -> u32 {
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let value = rest
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |v, d| {
            v.wrapping_mul(10).wrapping_add(i64::from(d - b'0'))
        });
    (if neg { value.wrapping_neg() } else { value }) as u32
}

/// `ctdb tstore TDB KEY DATA [RSN [DMASTER]]`: stores DATA behind a fresh ltdb
/// header (rsn and dmaster as given, else 0). 4.17 accepts no flags argument in
/// practice: its synopsis names one, but a sixth word is a usage error.
pub fn tstore(args: &[String]) -> Result<Done, CommandError> {
    if !(3..=5).contains(&args.len()) {
        return Err(CommandError::Usage("tstore"));
    }
    let tdb = open(&args[0])?;
    let key = parse(&args[1], "key")?;
    let value = parse(&args[2], "value")?;
    let mut header = LtdbHeader::default();
    if let Some(rsn) = args.get(3) {
        header.rsn = checked_strtoull(rsn).map_err(CommandError::silent)?;
    }
    if let Some(dmaster) = args.get(4) {
        header.dmaster = atol_u32(dmaster);
    }
    let mut stored = header.to_bytes().to_vec();
    stored.extend_from_slice(&value);
    tdb.store(&key, &stored, StoreMode::Replace).map_err(|_| {
        CommandError::stderr(format!(
            "Failed to write record {} to file {}",
            args[1], args[0]
        ))
    })?;
    Ok(Done::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsn_reads_like_checked_strtoull() {
        assert_eq!(checked_strtoull("12"), Ok(12));
        assert_eq!(checked_strtoull(" 0x10zz"), Ok(16));
        assert_eq!(checked_strtoull("010"), Ok(8));
        assert_eq!(checked_strtoull("abc"), Err(EINVAL));
        assert_eq!(checked_strtoull("-1"), Err(EINVAL));
        assert_eq!(checked_strtoull("99999999999999999999"), Err(ERANGE));
    }

    #[test]
    fn dmaster_reads_like_atol() {
        assert_eq!(atol_u32("3"), 3);
        assert_eq!(atol_u32("x"), 0);
        assert_eq!(atol_u32("-1"), u32::MAX);
        assert_eq!(atol_u32(" 7abc"), 7);
    }
}

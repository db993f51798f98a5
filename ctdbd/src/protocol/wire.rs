//! Primitive encodings of CTDB's wire format (reference/ctdb-protocol-core.md §1).
//!
//! Everything is host byte order (little-endian on the supported platforms), with
//! no alignment of its own; structures that have padding spell it out. [`Reader`]
//! never trusts a length or count from the wire: it checks every read against the
//! bytes that are really there and names the field that ran short.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why bytes from the wire could not be decoded. Nothing was changed by a failed decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before `field` was complete.
    #[error("truncated {field}: need {needed} bytes, have {available}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {field}: {value:#x}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A structure was followed by bytes that belong to nothing.
    #[error("{extra} unexpected trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that was decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A string that must end with a NUL byte has none.
    #[error("{field} is not NUL-terminated")]
    Unterminated {
        /// The string field.
        field: &'static str,
    },
    /// A string that names something (a database, a path) is not UTF-8.
    #[error("{field} is not valid UTF-8")]
    NotUtf8 {
        /// The string field.
        field: &'static str,
    },
}

/// Cursor over a byte slice that reads CTDB primitives.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The unread bytes, consuming them.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Takes exactly `n` bytes for `field`.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.bytes(N, field)?;
        // The slice has exactly N bytes: `bytes` checked the length.
        Ok(bytes.try_into().expect("slice of length N"))
    }

    /// Reads a u16.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    /// Reads a u32.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    /// Reads an i32.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        self.array(field).map(i32::from_le_bytes)
    }

    /// Reads a u64.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// Reads an i64.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        self.array(field).map(i64::from_le_bytes)
    }

    /// Reads an f64.
    pub fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        self.array(field).map(f64::from_le_bytes)
    }

    /// Skips `n` padding bytes (their content is ignored, as CTDB does).
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        self.bytes(n, field).map(drop)
    }

    /// Reads a u32 count of items of `item_size` bytes each, rejecting a count that
    /// the remaining input cannot possibly hold, so that no caller allocates for it.
    pub fn count(&mut self, item_size: usize, field: &'static str) -> Result<usize, DecodeError> {
        let count = self.u32(field)? as usize;
        let needed = count.saturating_mul(item_size);
        if needed > self.buf.len() {
            return Err(DecodeError::Truncated {
                field,
                needed,
                available: self.buf.len(),
            });
        }
        Ok(count)
    }

    /// Reads a `stringn`: u32 length including the NUL, then the bytes. Length 0 is
    /// CTDB's NULL string, returned as `None`.
    pub fn stringn(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        let len = self.u32(field)? as usize;
        if len == 0 {
            return Ok(None);
        }
        let bytes = self.bytes(len, field)?;
        Ok(Some(c_string(bytes)))
    }

    /// Reads a 28-byte `ctdb_sock_addr`.
    pub fn sock_addr(&mut self, field: &'static str) -> Result<SocketAddr, DecodeError> {
        let raw: [u8; SOCK_ADDR_SIZE] = self.array(field)?;
        decode_sock_addr(&raw, field)
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                what,
                extra: self.buf.len(),
            })
        }
    }
}

/// A length as the u32 that the wire carries. Every payload we build is far below
/// 4 GiB (the framer caps packets at 64 MiB), so a longer one is a bug of ours.
pub fn len_u32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).expect("payload shorter than 4 GiB")
}

/// Text up to the first NUL (or the whole slice), lossily decoded: CTDB strings are
/// C strings without a declared encoding.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Size of `ctdb_sock_addr` on the wire: that of `struct sockaddr_in6`.
pub const SOCK_ADDR_SIZE: usize = 28;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn decode_sock_addr(
    raw: &[u8; SOCK_ADDR_SIZE],
    field: &'static str,
) -> Result<SocketAddr, DecodeError> {
    let family = u16::from_le_bytes([raw[0], raw[1]]);
    // The port is the one field in network order (§1.1).
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    match family {
        AF_INET => {
            let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
            Ok(SocketAddr::new(IpAddr::V4(ip), port))
        }
        AF_INET6 => {
            let octets: [u8; 16] = raw[8..24].try_into().expect("16 bytes");
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        other => Err(DecodeError::Invalid {
            field,
            value: u64::from(other),
        }),
    }
}

/// Appends CTDB primitives to a byte vector.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer with room for `capacity` bytes (a large buffer written
    /// at once is then never copied to grow).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Appends a u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends an i32.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends a u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends an i64.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends an f64.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    /// Appends `n` zero bytes of padding.
    pub fn pad(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    /// Appends a `stringn` (NULL when `None`).
    pub fn stringn(&mut self, s: Option<&str>) -> &mut Self {
        match s {
            None => self.u32(0),
            Some(s) => {
                let len = u32::try_from(s.len() + 1).expect("string shorter than 4 GiB");
                self.u32(len).bytes(s.as_bytes()).u8(0)
            }
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a 28-byte `ctdb_sock_addr`, zeroing every unused byte as CTDB does.
    pub fn sock_addr(&mut self, addr: &SocketAddr) -> &mut Self {
        let mut raw = [0u8; SOCK_ADDR_SIZE];
        raw[2..4].copy_from_slice(&addr.port().to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => {
                raw[0..2].copy_from_slice(&AF_INET.to_le_bytes());
                raw[4..8].copy_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                raw[0..2].copy_from_slice(&AF_INET6.to_le_bytes());
                raw[8..24].copy_from_slice(&ip.octets());
            }
        }
        self.bytes(&raw)
    }
}

/// An IP address as CTDB parses one (`ctdb/protocol/protocol_util.c` behaviour, §1.1):
/// an IPv4-mapped IPv6 address is stored as IPv4, brackets around IPv6 are allowed.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let trimmed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    let ip: IpAddr = trimmed.parse().ok()?;
    Some(canonical_ip(ip))
}

/// Maps an IPv4-mapped IPv6 address to plain IPv4, as CTDB stores it.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// CTDB's sort order for addresses (`ctdb_sock_addr_cmp`): IPv4 before IPv6, then
/// numerically.
pub fn ip_order(a: &IpAddr, b: &IpAddr) -> std::cmp::Ordering {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x.cmp(y),
        (IpAddr::V6(x), IpAddr::V6(y)) => x.cmp(y),
        (IpAddr::V4(_), IpAddr::V6(_)) => std::cmp::Ordering::Less,
        (IpAddr::V6(_), IpAddr::V4(_)) => std::cmp::Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sock_addr_ipv4_matches_observed_bytes() {
        // reference §1.1: 10.0.0.31, port 0.
        let expected: [u8; 28] = [
            0x02, 0, 0, 0, 0x0a, 0, 0, 0x1f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0,
        ];
        let addr: SocketAddr = "10.0.0.31:0".parse().unwrap();
        let mut w = Writer::new();
        w.sock_addr(&addr);
        assert_eq!(w.into_bytes(), expected);
        assert_eq!(Reader::new(&expected).sock_addr("addr").unwrap(), addr);
    }

    #[test]
    fn sock_addr_port_is_network_order() {
        let addr: SocketAddr = "127.0.0.1:4379".parse().unwrap();
        let mut w = Writer::new();
        w.sock_addr(&addr);
        assert_eq!(&w.into_bytes()[..8], &[2, 0, 0x11, 0x1b, 127, 0, 0, 1]);
    }

    #[test]
    fn sock_addr_ipv6_round_trips() {
        let addr: SocketAddr = "[fd00::5357:5f01]:0".parse().unwrap();
        let mut w = Writer::new();
        w.sock_addr(&addr);
        let bytes = w.into_bytes();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[0..2], &[10, 0]);
        assert_eq!(Reader::new(&bytes).sock_addr("addr").unwrap(), addr);
    }

    #[test]
    fn unknown_family_is_an_error_naming_the_field() {
        let raw = [7u8; 28];
        let err = Reader::new(&raw).sock_addr("public_ip.addr").unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Invalid {
                field: "public_ip.addr",
                ..
            }
        ));
    }

    #[test]
    fn count_larger_than_input_is_rejected_before_allocation() {
        let raw = [0xff, 0xff, 0xff, 0xff, 0, 0];
        let err = Reader::new(&raw).count(36, "node_map.num").unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Truncated {
                field: "node_map.num",
                ..
            }
        ));
    }

    #[test]
    fn parse_ip_maps_v4_mapped_and_brackets() {
        assert_eq!(
            parse_ip("::ffff:10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_ip("[fd00::1]"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_ip("10.0.0.256"), None);
    }

    #[test]
    fn stringn_null_and_text() {
        let mut w = Writer::new();
        w.stringn(None).stringn(Some("eth1"));
        let bytes = w.into_bytes();
        assert_eq!(bytes, [0, 0, 0, 0, 5, 0, 0, 0, b'e', b't', b'h', b'1', 0]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.stringn("a").unwrap(), None);
        assert_eq!(r.stringn("b").unwrap().as_deref(), Some("eth1"));
    }
}

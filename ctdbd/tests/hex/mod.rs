//! Hex fixtures shared by the codec tests: parsing the hex text and comparing bytes
//! with a readable difference.

#![allow(dead_code)] // each test binary uses a part

/// The bytes of a line of hex digits; panics naming `origin` on a bad digit.
pub fn parse_hex(text: &str, origin: &str) -> Vec<u8> {
    let pairs = text.as_bytes().chunks_exact(2);
    assert!(
        pairs.remainder().is_empty(),
        "{origin}: odd number of hex digits"
    );
    pairs
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .unwrap_or_else(|| panic!("{origin}: bad hex digits at {}", 2 * i))
        })
        .collect()
}

/// Panics with the first differing offset and a hex window of both sides.
pub fn assert_same_bytes(origin: &str, what: &str, expected: &[u8], actual: &[u8]) {
    if expected == actual {
        return;
    }
    let first = expected
        .iter()
        .zip(actual)
        .position(|(a, b)| a != b)
        .unwrap_or(expected.len().min(actual.len()));
    let window = |b: &[u8]| {
        let start = first.saturating_sub(8);
        let end = (first + 16).min(b.len());
        b.get(start..end)
            .unwrap_or_default()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    panic!(
        "{origin}: {what} differs at offset {first} (0x{first:x}); lengths {} vs {}\n  \
         expected [{}..]: {}\n  actual   [{}..]: {}",
        expected.len(),
        actual.len(),
        first.saturating_sub(8),
        window(expected),
        first.saturating_sub(8),
        window(actual),
    );
}

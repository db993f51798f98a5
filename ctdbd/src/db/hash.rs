//! Bob Jenkins' lookup3 hash (`hashlittle`, initial value 0): the function that
//! names clustered databases (`db_id`), picks a key's lmaster, and places keys on
//! hash chains in files created with `TDB_INCOMPATIBLE_HASH`
//! (reference/ctdb-protocol-samba.md §2.3).
//!
//! Pure: no I/O. The byte order is fixed (little-endian words), so the result is
//! the same on every host and for every alignment of the input.

/// The seed lookup3 adds to the length; `hashlittle` starts its three state words
/// at this value plus the length plus the caller's initial value (ours is 0).
const SEED: u32 = 0xdead_beef;

/// Bytes consumed per round of the main loop: three little-endian 32-bit words.
const BLOCK: usize = 12;

/// lookup3's `hashlittle(bytes, len, 0)`.
///
/// The state is three words `a`, `b`, `c`, all starting at `0xdeadbeef + len`.
/// Every 12-byte block except the last is added word-wise and stirred by `mix`;
/// the last 1–12 bytes are added zero-padded and settled by `finish`; the result
/// is `c`. An empty input skips both and returns the start value, `0xdeadbeef`.
pub fn lookup3(bytes: &[u8]) -> u32 {
    // lookup3 keeps the length in 32 bits; longer inputs wrap, as they do in C.
    let start = SEED.wrapping_add(bytes.len() as u32);
    let mut state = [start; 3];
    let mut rest = bytes;
    // Strictly more than one block left: this one is not the last.
    while rest.len() > BLOCK {
        add_block(&mut state, &rest[..BLOCK]);
        mix(&mut state);
        rest = &rest[BLOCK..];
    }
    if rest.is_empty() {
        return state[2];
    }
    let mut last = [0u8; BLOCK];
    last[..rest.len()].copy_from_slice(rest);
    add_block(&mut state, &last);
    finish(&mut state);
    state[2]
}

/// The database id of the database `name`: the hash of the name with its
/// terminating NUL, as CTDB's `DB_ATTACH` computes it (§2.3).
pub fn db_id(name: &str) -> u32 {
    let mut bytes = Vec::with_capacity(name.len() + 1);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0);
    lookup3(&bytes)
}

/// Adds one 12-byte block to the state, as three little-endian words.
fn add_block(state: &mut [u32; 3], block: &[u8]) {
    for (word, chunk) in state.iter_mut().zip(block.chunks_exact(4)) {
        let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        *word = word.wrapping_add(value);
    }
}

/// The reversible stir between blocks. Each of the six steps takes one word away
/// from another, xors in the third rotated by that step's amount, and adds the
/// third into the one after; the rotations are 4, 6, 8, 16, 19, 4.
fn mix(state: &mut [u32; 3]) {
    let [mut a, mut b, mut c] = *state;
    a = a.wrapping_sub(c) ^ c.rotate_left(4);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(6);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(8);
    b = b.wrapping_add(a);
    a = a.wrapping_sub(c) ^ c.rotate_left(16);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a) ^ a.rotate_left(19);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b) ^ b.rotate_left(4);
    b = b.wrapping_add(a);
    *state = [a, b, c];
}

/// The final avalanche after the last block: seven steps, each xoring one word
/// into the next (c, a, b, c, ...) and then subtracting it rotated by 14, 11, 25,
/// 16, 4, 14, 24.
fn finish(state: &mut [u32; 3]) {
    let [mut a, mut b, mut c] = *state;
    c = (c ^ b).wrapping_sub(b.rotate_left(14));
    a = (a ^ c).wrapping_sub(c.rotate_left(11));
    b = (b ^ a).wrapping_sub(a.rotate_left(25));
    c = (c ^ b).wrapping_sub(b.rotate_left(16));
    a = (a ^ c).wrapping_sub(c.rotate_left(4));
    b = (b ^ a).wrapping_sub(a.rotate_left(14));
    c = (c ^ b).wrapping_sub(b.rotate_left(24));
    *state = [a, b, c];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw-byte vectors of reference/ctdb-protocol-samba.md §2.3.
    #[test]
    fn byte_vectors() {
        assert_eq!(lookup3(b""), 0xdead_beef);
        assert_eq!(lookup3(b"a"), 0x58d6_8708);
        assert_eq!(lookup3(b"abc"), 0x0e39_7631);
        let thirteen: Vec<u8> = (1..=13).collect();
        assert_eq!(lookup3(&thirteen), 0xe7d7_a0e5);
    }

    /// The database names of §2.3 (each hashed with its NUL).
    #[test]
    fn database_ids() {
        let vectors = [
            ("locking.tdb", 0x7a19_d84d),
            ("brlock.tdb", 0x4e66_c2b2),
            ("g_lock.tdb", 0x4d2a_432b),
            ("leases.tdb", 0x0691_6e77),
            ("smbXsrv_version_global.tdb", 0x521b_7544),
            ("smbXsrv_client_global.tdb", 0x477d_2e20),
            ("smbXsrv_session_global.tdb", 0x6b06_a26d),
            ("smbXsrv_tcon_global.tdb", 0x68c1_2c2c),
            ("smbXsrv_open_global.tdb", 0x66f7_1b8c),
            ("secrets.tdb", 0x7132_c184),
            ("registry.tdb", 0x6cf2_837d),
            ("share_info.tdb", 0xc307_8fba),
            ("account_policy.tdb", 0x2ca2_51cf),
            ("group_mapping.tdb", 0xa141_3774),
            ("passdb.tdb", 0x3ef1_9640),
            ("idmap2.tdb", 0x866c_598f),
            ("netlogon_creds_cli.tdb", 0x2d60_8c16),
            ("printer_list.tdb", 0x5bcf_cbd7),
            ("__db_sequence_number__", 0xd64d_294d),
        ];
        for (name, id) in vectors {
            assert_eq!(db_id(name), id, "db_id({name:?})");
            let mut with_nul = name.as_bytes().to_vec();
            with_nul.push(0);
            assert_eq!(lookup3(&with_nul), id, "lookup3({name:?} + NUL)");
        }
    }
}

//! Fuzz target: arbitrary bytes into the CTDB framers, `Packet::decode` and the
//! typed decoders chosen by opcode/srvid (body in `../src/lib.rs`).
//!
//! Needs a nightly toolchain and cargo-fuzz:
//!
//! ```sh
//! cargo install cargo-fuzz
//! cd fuzz
//! cargo +nightly fuzz run packet_decode                  # until stopped
//! cargo +nightly fuzz run packet_decode -- -max_total_time=300
//! ```
//!
//! Seed the corpus from the captured fixtures for a head start:
//!
//! ```sh
//! mkdir -p corpus/packet_decode
//! for f in ../ctdbd/tests/fixtures/*/*.hex; do
//!   grep -v '^#' "$f" | while read -r h; do
//!     echo "$h" | xxd -r -p > "corpus/packet_decode/$(echo "$h" | sha1sum | cut -c1-16)"
//!   done
//! done
//! ```
//!
//! On a stable toolchain the same body runs under proptest in
//! `ctdbd/tests/codec_props.rs` (`fuzz_body_never_panics`), and `cargo check` in this
//! directory verifies the target still compiles.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ctdbd_fuzz::packet_decode(data);
});

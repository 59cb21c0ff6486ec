//! Crash-safe segment log store (issue 9). Step 1a: the record codec only.
//!
//! A record on disk is `len (u32 LE, body length, 17..=MAX_BODY) ‖ CRC-32C
//! (CRC_32_ISCSI, u32 LE) of the body ‖ body`. The body is: u64 id, u64 time_us, u8 severity (0–7),
//! then source, message_id, message (u16-length-prefixed UTF-8 strings) and
//! data: u16 count of (key, value) string pairs. Every length is checked
//! against the remaining bytes and against the limits below before anything
//! is allocated; decoding never panics on any input.
//!
//! Not yet done (next steps): segment files, meta/Generation, limits,
//! paging, durability API.

mod record;

pub use record::{decode, encode, Decoded, Entry, RecordError, MAX_BODY, MAX_DATA_PAIRS};

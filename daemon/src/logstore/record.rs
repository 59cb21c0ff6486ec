//! Record framing: length ‖ CRC-32C ‖ body (see the module doc).

use crc::{Crc, CRC_32_ISCSI};

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Largest body accepted (encode and decode).
pub const MAX_BODY: usize = 64 * 1024;
/// Largest number of data pairs per entry.
pub const MAX_DATA_PAIRS: usize = 64;
const HEADER: usize = 8;

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub time_us: u64,
    pub severity: u8,
    pub source: String,
    pub message_id: String,
    pub message: String,
    pub data: Vec<(String, String)>,
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer bytes than the header or the declared body: a torn tail.
    Truncated,
    /// Declared length out of range.
    BadLength,
    /// CRC mismatch.
    BadCrc,
    /// Body malformed (bad lengths, UTF-8, severity, trailing bytes).
    BadBody,
    /// Entry too large to encode.
    TooLarge,
}

/// A decoded record and the number of bytes it took.
#[derive(Debug)]
pub struct Decoded {
    pub entry: Entry,
    pub len: usize,
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), RecordError> {
    let n = u16::try_from(s.len()).map_err(|_| RecordError::TooLarge)?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Append the framed record of `e` to `out`.
pub fn encode(e: &Entry, out: &mut Vec<u8>) -> Result<(), RecordError> {
    if e.severity > 7 || e.data.len() > MAX_DATA_PAIRS {
        return Err(RecordError::TooLarge);
    }
    let mut body = Vec::with_capacity(64 + e.message.len());
    body.extend_from_slice(&e.id.to_le_bytes());
    body.extend_from_slice(&e.time_us.to_le_bytes());
    body.push(e.severity);
    put_str(&mut body, &e.source)?;
    put_str(&mut body, &e.message_id)?;
    put_str(&mut body, &e.message)?;
    body.extend_from_slice(&(e.data.len() as u16).to_le_bytes());
    for (k, v) in &e.data {
        put_str(&mut body, k)?;
        put_str(&mut body, v)?;
    }
    if body.len() > MAX_BODY {
        return Err(RecordError::TooLarge);
    }
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&CRC32C.checksum(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if n > self.0.len() {
            return Err(RecordError::BadBody);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u16(&mut self) -> Result<usize, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    /// A u16-length-prefixed UTF-8 string, borrowed (its length is checked
    /// against the remaining bytes before anything is allocated).
    fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = self.u16()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| RecordError::BadBody)
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.str().map(str::to_owned)
    }
}

/// The fields a filter looks at, borrowed from a record whose length and
/// CRC were checked (the rest of the body is not parsed).
#[derive(Debug)]
pub struct Head<'a> {
    pub id: u64,
    pub time_us: u64,
    pub severity: u8,
    pub source: &'a str,
    pub message_id: &'a str,
    /// Bytes the whole record takes.
    pub len: usize,
}

/// The body of the record at the start of `buf`, its length and CRC
/// checked.
fn framed_body(buf: &[u8]) -> Result<&[u8], RecordError> {
    let (Some(len), Some(crc)) = (buf.get(0..4), buf.get(4..HEADER)) else {
        return Err(RecordError::Truncated);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if !(17..=MAX_BODY).contains(&len) {
        return Err(RecordError::BadLength);
    }
    let body = buf
        .get(HEADER..HEADER + len)
        .ok_or(RecordError::Truncated)?;
    if CRC32C.checksum(body) != crc {
        return Err(RecordError::BadCrc);
    }
    Ok(body)
}

/// The head of the record at the start of `buf`, without allocating.
pub fn peek(buf: &[u8]) -> Result<Head<'_>, RecordError> {
    head(buf).map(|(h, _)| h)
}

/// The head of the record at the start of `buf` and a reader at the rest
/// of its body (message and data).
fn head(buf: &[u8]) -> Result<(Head<'_>, Reader<'_>), RecordError> {
    let body = framed_body(buf)?;
    let mut r = Reader(body);
    let h = Head {
        id: r.u64()?,
        time_us: r.u64()?,
        severity: r.take(1)?[0],
        source: r.str()?,
        message_id: r.str()?,
        len: HEADER + body.len(),
    };
    Ok((h, r))
}

/// Decode the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Result<Decoded, RecordError> {
    let (h, mut r) = head(buf)?;
    if h.severity > 7 {
        return Err(RecordError::BadBody);
    }
    let message = r.string()?;
    let pairs = r.u16()?;
    if pairs > MAX_DATA_PAIRS {
        return Err(RecordError::BadBody);
    }
    let mut data = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let k = r.string()?;
        let v = r.string()?;
        data.push((k, v));
    }
    if !r.0.is_empty() {
        return Err(RecordError::BadBody);
    }
    Ok(Decoded {
        entry: Entry {
            id: h.id,
            time_us: h.time_us,
            severity: h.severity,
            source: h.source.to_owned(),
            message_id: h.message_id.to_owned(),
            message,
            data,
        },
        len: h.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            time_us: 1_700_000_000_000_000 + id,
            severity: (id % 8) as u8,
            source: "psu".into(),
            message_id: "bmcd.PowerFault".into(),
            message: format!("entry {id}"),
            data: vec![("RAIL".into(), "12V".into()), ("N".into(), id.to_string())],
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        for id in 1..=3 {
            encode(&entry(id), &mut buf).unwrap();
        }
        let mut at = 0;
        for id in 1..=3 {
            let d = decode(&buf[at..]).unwrap();
            assert_eq!(d.entry, entry(id));
            at += d.len;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn torn_at_every_offset_is_rejected() {
        let mut buf = Vec::new();
        encode(&entry(7), &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn random_corruption_never_panics_nor_passes_bad_crc() {
        let mut good = Vec::new();
        encode(&entry(42), &mut good).unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15; // xorshift, fixed seed
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let mut b = good.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let i = (next() as usize) % b.len();
                b[i] ^= 1 << (next() % 8);
            }
            if let Ok(d) = decode(&b) {
                // Only acceptable if CRC of the accepted body matches its header.
                let body = &b[HEADER..d.len];
                assert_eq!(CRC32C.checksum(body).to_le_bytes(), b[4..8]);
            }
            // Pure garbage too.
            let g: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
            let _ = decode(&g);
        }
    }
}

//! The snapshot's bytes: the whole table as of one write, with the
//! history sum there. Pure code (docs/durability.md, "Files").
//!
//! `"TCSNAP2\n" | size u64 | data id u64 | seq u64 | sum u64 |
//! size × value i64 | crc u32` over everything before the crc.

use super::record::{u32_at, u64_at, Damage, FORMAT_1, FORMAT_1_WHY};

const SNAPSHOT_MAGIC: &[u8; 8] = b"TCSNAP2\n";

/// A snapshot's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The data's identity.
    pub data_id: u64,
    /// The seq of the last write it holds.
    pub seq: u64,
    /// The history sum at that write.
    pub sum: u64,
    /// The table.
    pub values: Vec<i64>,
}

/// Bytes of a snapshot before its values.
const SNAPSHOT_HEADER: usize = 8 + 8 + 8 + 8 + 8;

impl Snapshot {
    /// The file's bytes.
    pub fn encode(data_id: u64, seq: u64, sum: u64, values: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + 4 + values.len() * 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        for v in [values.len() as u64, data_id, seq, sum] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a snapshot; any fault is damage (a snapshot is written whole
    /// and renamed into place, so it is never torn).
    pub fn decode(b: &[u8]) -> Result<Snapshot, Damage> {
        let bad = |offset, why: &str| Damage {
            offset,
            why: why.to_string(),
        };
        if FORMAT_1.iter().any(|m| b.get(..8) == Some(&m[..])) {
            return Err(bad(0, FORMAT_1_WHY));
        }
        if b.get(..8) != Some(SNAPSHOT_MAGIC) {
            return Err(bad(0, "not a tablecache snapshot"));
        }
        let size = u64_at(b, 8).ok_or_else(|| bad(8, "cut short"))? as usize;
        let end = size
            .checked_mul(8)
            .and_then(|v| v.checked_add(SNAPSHOT_HEADER))
            .filter(|&e| e.checked_add(4) == Some(b.len()))
            .ok_or_else(|| bad(8, "its length does not match its table size"))?;
        if u32_at(b, end) != Some(crc32fast::hash(&b[..end])) {
            return Err(bad(end, "checksum mismatch"));
        }
        Ok(Snapshot {
            data_id: u64_at(b, 16).unwrap_or(0),
            seq: u64_at(b, 24).unwrap_or(0),
            sum: u64_at(b, 32).unwrap_or(0),
            values: (0..size)
                .map(|k| u64_at(b, SNAPSHOT_HEADER + 8 * k).unwrap_or(0) as i64)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_any_flipped_byte_is_caught() {
        let b = Snapshot::encode(42, 17, 5, &[1, -2, 3]);
        let s = Snapshot::decode(&b).unwrap();
        assert_eq!(
            (s.data_id, s.seq, s.sum, s.values.as_slice()),
            (42, 17, 5, &[1i64, -2, 3][..])
        );
        for k in 0..b.len() {
            let mut c = b.clone();
            c[k] ^= 0x10;
            assert!(Snapshot::decode(&c).is_err(), "byte {k}");
        }
        assert!(Snapshot::decode(&b[..b.len() - 1]).is_err());
    }
}

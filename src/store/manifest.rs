//! The manifest: the list of files a data directory should hold, so that
//! recovery can tell a missing file from one that never was. Pure code:
//! the bytes and their checks (docs/durability.md, "Files").
//!
//! ```text
//! "TCMAN02\n" | size u64 | data id u64 | snapshot seq u64 (0: none)
//!             | n u32 | n × segment first seq u64 | crc u32
//! ```
//!
//! It is rewritten whole (a temporary file, synced, renamed into place)
//! when a segment is created — before any record goes into it — and when
//! a snapshot has made older segments useless — before they are deleted.
//! So a crash can leave a file the manifest does not list (an empty new
//! segment, or an old one a snapshot covers), never a listed file missing.

use super::record::Damage;

const MAGIC: &[u8; 8] = b"TCMAN02\n";

/// The manifest's file name in the data directory.
pub const NAME: &str = "MANIFEST";

/// What the directory should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Entries in the table.
    pub size: u64,
    /// The table's identity.
    pub data_id: u64,
    /// The seq of the snapshot the segments start after (0: no snapshot);
    /// the snapshot file may be newer (a crash before the manifest caught
    /// up), never older.
    pub snapshot: u64,
    /// The first seq of every segment, oldest first.
    pub segments: Vec<u64>,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl Manifest {
    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + 8 * self.segments.len());
        out.extend_from_slice(MAGIC);
        for v in [self.size, self.data_id, self.snapshot] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            out.extend_from_slice(&s.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a manifest; any fault is damage (it is written whole and
    /// renamed into place, so it is never torn).
    pub fn decode(b: &[u8]) -> Result<Manifest, Damage> {
        let bad = |offset, why: &str| Damage {
            offset,
            why: why.to_string(),
        };
        if b.get(..8) != Some(MAGIC) {
            return Err(bad(0, "not a tablecache manifest"));
        }
        let n = b
            .get(32..36)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
            .ok_or_else(|| bad(32, "cut short"))?;
        let end = 36 + 8 * n;
        if b.len() != end + 4 {
            return Err(bad(32, "its length does not match its count of segments"));
        }
        if b[end..] != crc32fast::hash(&b[..end]).to_le_bytes() {
            return Err(bad(end, "checksum mismatch"));
        }
        let segments: Vec<u64> = (0..n).map(|k| u64_at(b, 36 + 8 * k).unwrap_or(0)).collect();
        if segments.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad(36, "its segments are out of order"));
        }
        Ok(Manifest {
            size: u64_at(b, 8).unwrap_or(0),
            data_id: u64_at(b, 16).unwrap_or(0),
            snapshot: u64_at(b, 24).unwrap_or(0),
            segments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Manifest {
        Manifest {
            size: 10,
            data_id: 0xabc,
            snapshot: 41,
            segments: vec![1, 42, 900],
        }
    }

    #[test]
    fn round_trips_and_any_flipped_byte_or_cut_is_caught() {
        let b = one().encode();
        assert_eq!(Manifest::decode(&b), Ok(one()));
        for k in 0..b.len() {
            let mut c = b.clone();
            c[k] ^= 0x04;
            assert!(Manifest::decode(&c).is_err(), "byte {k}");
            assert!(Manifest::decode(&b[..k]).is_err(), "cut at {k}");
        }
        let empty = Manifest {
            segments: vec![],
            ..one()
        };
        assert_eq!(Manifest::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn segments_out_of_order_are_damage() {
        let m = Manifest {
            segments: vec![42, 1],
            ..one()
        };
        assert!(Manifest::decode(&m.encode()).unwrap_err().why.contains("out of order"));
    }
}

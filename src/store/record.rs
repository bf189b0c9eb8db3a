//! The bytes on disk, and reading them back: log records, segment
//! headers, snapshots, and the scan that recovery runs over a segment.
//! Pure code (docs/durability.md draws the formats).
//!
//! All integers are little-endian. A record:
//!
//! ```text
//! len u32 | crc u32 | payload (len bytes)
//! payload: seq u64 | op u8 (1 PUT, 2 CLR) | n u32 | n × (index u64, value i64)
//! crc: CRC-32 of the len bytes and the payload
//! ```
//!
//! A segment (`wal-<first seq, 16 hex digits>.log`) opens with a header:
//! `"TCWAL01\n" | size u64 | data id u64 | first seq u64 | crc u32`.
//! A snapshot: `"TCSNAP1\n" | size u64 | data id u64 | seq u64 |
//! size × value i64 | crc u32` over everything before the crc.

use std::fmt;

/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 8 + 8 + 8 + 8 + 4;
const SEGMENT_MAGIC: &[u8; 8] = b"TCWAL01\n";
const SNAPSHOT_MAGIC: &[u8; 8] = b"TCSNAP1\n";
/// Bytes before a record's payload.
pub const RECORD_HEADER: usize = 8;
/// The longest payload a record may have (a PUT of the longest message
/// the server accepts fits many times over); a longer `len` is damage.
pub const MAX_PAYLOAD: usize = 64 << 20;

const OP_PUT: u8 = 1;
const OP_CLR: u8 = 2;

/// One logged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `PUT` of these indices and values.
    Put(Vec<(u64, i64)>),
    /// `CLR`: every entry to 0.
    Clr,
}

/// A record: its sequence number and its write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Writes are numbered from 1, one after another, for the table's life.
    pub seq: u64,
    /// What it did.
    pub write: Write,
}

/// Appends the record of a PUT to `out`.
pub fn encode_put(out: &mut Vec<u8>, seq: u64, ind: &[i64], data: &[i64]) {
    let n = ind.len().min(data.len());
    let payload = 8 + 1 + 4 + n * 16;
    let start = out.len();
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(OP_PUT);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for (&i, &v) in ind.iter().zip(data) {
        out.extend_from_slice(&(i as u64).to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    seal(out, start);
}

/// Appends the record of a CLR to `out`.
pub fn encode_clr(out: &mut Vec<u8>, seq: u64) {
    let start = out.len();
    out.extend_from_slice(&13u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(OP_CLR);
    out.extend_from_slice(&0u32.to_le_bytes());
    seal(out, start);
}

/// Fills in the crc of the record that starts at `start`.
fn seal(out: &mut [u8], start: usize) {
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 4]);
    h.update(&out[start + RECORD_HEADER..]);
    let crc = h.finalize().to_le_bytes();
    out[start + 4..start + 8].copy_from_slice(&crc);
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A segment's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Entries in the table.
    pub size: u64,
    /// The data's identity (chosen when the directory was created).
    pub data_id: u64,
    /// The seq its first record has.
    pub first_seq: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEGMENT_HEADER);
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.data_id.to_le_bytes());
        out.extend_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header; `None` unless it is whole and its crc matches.
    pub fn decode(b: &[u8]) -> Option<SegmentHeader> {
        if b.get(..8)? != SEGMENT_MAGIC || u32_at(b, 32)? != crc32fast::hash(b.get(..32)?) {
            return None;
        }
        Some(SegmentHeader {
            size: u64_at(b, 8)?,
            data_id: u64_at(b, 16)?,
            first_seq: u64_at(b, 24)?,
        })
    }
}

/// Why a file cannot be trusted: where, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the file.
    pub offset: usize,
    /// What is wrong there.
    pub why: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.why)
    }
}

/// What a segment's records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Its header.
    pub header: SegmentHeader,
    /// Its whole records, in order.
    pub records: Vec<Record>,
    /// Bytes up to the end of the last whole record.
    pub good_len: usize,
    /// Set when the segment ends in a torn record (a crash mid-append):
    /// its offset. Everything from there on is to be cut off.
    pub torn: Option<usize>,
}

/// Reads one record's payload.
fn decode_payload(p: &[u8]) -> Option<Record> {
    let seq = u64_at(p, 0)?;
    let op = *p.get(8)?;
    let n = u32_at(p, 9)? as usize;
    match op {
        OP_CLR if n == 0 && p.len() == 13 => Some(Record { seq, write: Write::Clr }),
        OP_PUT if p.len() == 13 + n.checked_mul(16)? => {
            let pairs = (0..n)
                .map(|k| Some((u64_at(p, 13 + 16 * k)?, u64_at(p, 21 + 16 * k)? as i64)))
                .collect::<Option<Vec<_>>>()?;
            Some(Record {
                seq,
                write: Write::Put(pairs),
            })
        }
        _ => None,
    }
}

/// A whole, intact record at `at`: (record, its end).
fn record_at(b: &[u8], at: usize) -> Option<(Record, usize)> {
    let len = u32_at(b, at)? as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let end = at.checked_add(RECORD_HEADER)?.checked_add(len)?;
    let payload = b.get(at + RECORD_HEADER..end)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&b[at..at + 4]);
    h.update(payload);
    if h.finalize() != u32_at(b, at + 4)? {
        return None;
    }
    Some((decode_payload(payload)?, end))
}

/// Scans a segment. A record cut short by the end of the file, or a last
/// record whose crc fails, is a torn tail (what a crash mid-append
/// leaves). Anything wrong before the last record is damage — and so is
/// a "torn" record after which an intact record follows (its length was
/// damaged, not cut).
pub fn scan_segment(b: &[u8]) -> Result<Scan, Damage> {
    let header = SegmentHeader::decode(b).ok_or_else(|| Damage {
        offset: 0,
        why: "no valid segment header".into(),
    })?;
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    let mut expect = header.first_seq;
    while at < b.len() {
        match record_at(b, at) {
            Some((r, end)) => {
                if r.seq != expect {
                    return Err(Damage {
                        offset: at,
                        why: format!("record seq {} where {expect} was due", r.seq),
                    });
                }
                expect += 1;
                records.push(r);
                at = end;
            }
            None => {
                // Torn only if nothing intact follows it: a crash cuts
                // the last append (one commit's records) short.
                if b.len() - at > 2 * MAX_PAYLOAD {
                    return Err(Damage {
                        offset: at,
                        why: "a record that does not check out, far from the end".into(),
                    });
                }
                let later = (at + 1..b.len().saturating_sub(RECORD_HEADER))
                    .find(|&k| record_at(b, k).is_some_and(|(r, _)| r.seq >= expect));
                if let Some(k) = later {
                    return Err(Damage {
                        offset: at,
                        why: format!("a record that does not check out, with an intact record after it at byte {k}"),
                    });
                }
                return Ok(Scan {
                    header,
                    records,
                    good_len: at,
                    torn: Some(at),
                });
            }
        }
    }
    Ok(Scan {
        header,
        records,
        good_len: at,
        torn: None,
    })
}

/// A snapshot's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The data's identity.
    pub data_id: u64,
    /// The seq of the last write it holds.
    pub seq: u64,
    /// The table.
    pub values: Vec<i64>,
}

impl Snapshot {
    /// The file's bytes.
    pub fn encode(data_id: u64, seq: u64, values: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(36 + values.len() * 8);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(values.len() as u64).to_le_bytes());
        out.extend_from_slice(&data_id.to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
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
        if b.get(..8) != Some(SNAPSHOT_MAGIC) {
            return Err(bad(0, "not a tablecache snapshot"));
        }
        let size = u64_at(b, 8).ok_or_else(|| bad(8, "cut short"))? as usize;
        let end = size
            .checked_mul(8)
            .and_then(|v| v.checked_add(32))
            .filter(|&e| e.checked_add(4) == Some(b.len()))
            .ok_or_else(|| bad(8, "its length does not match its table size"))?;
        if u32_at(b, end) != Some(crc32fast::hash(&b[..end])) {
            return Err(bad(end, "checksum mismatch"));
        }
        Ok(Snapshot {
            data_id: u64_at(b, 16).unwrap_or(0),
            seq: u64_at(b, 24).unwrap_or(0),
            values: (0..size).map(|k| u64_at(b, 32 + 8 * k).unwrap_or(0) as i64).collect(),
        })
    }
}

/// Applies a replayed write to the values (indices outside are ignored:
/// a record is only ever written for a write the table accepted).
pub fn apply(values: &mut [i64], w: &Write) {
    match w {
        Write::Clr => values.iter_mut().for_each(|v| *v = 0),
        Write::Put(pairs) => {
            for &(i, v) in pairs {
                if let Some(slot) = values.get_mut(i as usize) {
                    *slot = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first_seq: u64, records: &[Record]) -> Vec<u8> {
        let mut b = SegmentHeader {
            size: 10,
            data_id: 7,
            first_seq,
        }
        .encode();
        for r in records {
            match &r.write {
                Write::Clr => encode_clr(&mut b, r.seq),
                Write::Put(p) => {
                    let (i, v): (Vec<i64>, Vec<i64>) = p.iter().map(|&(i, v)| (i as i64, v)).unzip();
                    encode_put(&mut b, r.seq, &i, &v)
                }
            }
        }
        b
    }

    fn three() -> Vec<Record> {
        vec![
            Record {
                seq: 1,
                write: Write::Put(vec![(1, 10), (2, -20)]),
            },
            Record {
                seq: 2,
                write: Write::Clr,
            },
            Record {
                seq: 3,
                write: Write::Put(vec![(9, i64::MIN)]),
            },
        ]
    }

    #[test]
    fn records_round_trip() {
        let b = segment(1, &three());
        let s = scan_segment(&b).unwrap();
        assert_eq!(s.records, three());
        assert_eq!((s.good_len, s.torn), (b.len(), None));
        assert_eq!(s.header.first_seq, 1);
        let mut v = vec![5; 10];
        for r in &s.records {
            apply(&mut v, &r.write);
        }
        assert_eq!(v, [0, 0, 0, 0, 0, 0, 0, 0, 0, i64::MIN]);
    }

    #[test]
    fn a_tail_cut_anywhere_is_torn_and_the_records_before_survive() {
        let b = segment(1, &three());
        let last = scan_segment(&segment(1, &three()[..2])).unwrap().good_len;
        for cut in last..b.len() {
            let s = scan_segment(&b[..cut]).unwrap_or_else(|d| panic!("cut at {cut}: {d}"));
            assert_eq!(s.records, three()[..2], "cut at {cut}");
            assert_eq!(s.torn, (cut > last).then_some(last), "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_last_record_is_torn_but_a_damaged_middle_is_damage() {
        let b = segment(1, &three());
        let second = scan_segment(&segment(1, &three()[..1])).unwrap().good_len;
        // Flip a byte of the last record's payload: torn.
        let mut last = b.clone();
        let n = last.len();
        last[n - 3] ^= 0x40;
        assert_eq!(
            scan_segment(&last).unwrap().torn,
            Some(scan_segment(&segment(1, &three()[..2])).unwrap().good_len)
        );
        // Flip a byte of the second record: damage, at its offset.
        let mut mid = b.clone();
        mid[second + 10] ^= 0x40;
        let d = scan_segment(&mid).unwrap_err();
        assert_eq!(d.offset, second);
        // A damaged length in the middle (pointing past the end) too.
        let mut len = b;
        len[second + 3] = 0x7f;
        assert_eq!(scan_segment(&len).unwrap_err().offset, second);
    }

    #[test]
    fn out_of_order_seqs_and_bad_headers_are_damage() {
        let mut recs = three();
        recs[1].seq = 5;
        assert!(scan_segment(&segment(1, &recs))
            .unwrap_err()
            .why
            .contains("seq 5 where 2"));
        let mut b = segment(1, &three());
        b[9] ^= 1;
        assert_eq!(scan_segment(&b).unwrap_err().offset, 0);
        assert!(scan_segment(b"").is_err());
    }

    #[test]
    fn snapshots_round_trip_and_any_flipped_byte_is_caught() {
        let b = Snapshot::encode(42, 17, &[1, -2, 3]);
        let s = Snapshot::decode(&b).unwrap();
        assert_eq!((s.data_id, s.seq, s.values.as_slice()), (42, 17, &[1i64, -2, 3][..]));
        for k in 0..b.len() {
            let mut c = b.clone();
            c[k] ^= 0x10;
            assert!(Snapshot::decode(&c).is_err(), "byte {k}");
        }
        assert!(Snapshot::decode(&b[..b.len() - 1]).is_err());
    }
}

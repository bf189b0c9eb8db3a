//! The log's bytes, and reading them back: records, segment headers, the
//! history sum, and the scan that recovery runs over a segment (the
//! snapshot's bytes are in snapshot.rs, the manifest's in manifest.rs).
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
//! `"TCWAL02\n" | size u64 | data id u64 | first seq u64 | sum u64 | crc u32`.
//!
//! The **history sum** names a history, not a table: a hash chained over
//! the payload of every write since the table began ([`chain`]). A
//! segment's header holds the sum before its first record, a snapshot the
//! sum at its seq; recovery recomputes it record by record, and a proxy
//! compares it (with the write count) before keeping its cache across a
//! restart, so a table rewound to an earlier write and written again
//! never passes for the history the proxy saw.

use std::fmt;

/// Bytes of a segment header.
pub const SEGMENT_HEADER: usize = 8 + 8 + 8 + 8 + 8 + 4;
const SEGMENT_MAGIC: &[u8; 8] = b"TCWAL02\n";
/// What the first format (before history sums and the manifest) began its
/// files with: recognised only to say so.
pub(super) const FORMAT_1: [&[u8; 8]; 2] = [b"TCWAL01\n", b"TCSNAP1\n"];
/// Why a file of the first format is refused.
pub const FORMAT_1_WHY: &str = "written by an earlier tablecache (data format 1, without history sums or a manifest), which this one does not read: start this server on a new directory (docs/durability.md, \"Formats\")";
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

/// A record as a scan found it: where it starts, and the history sum
/// after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The record.
    pub record: Record,
    /// Its offset in the segment.
    pub at: usize,
    /// The history sum once it is applied.
    pub sum: u64,
}

/// The history sum after a write whose record payload is `payload`, when
/// it was `prev` before (0 for an empty table). Not a cryptographic hash:
/// it tells histories apart by accident, not against an adversary who
/// writes the data directory (who could do anything anyway). 64 bits, a
/// word at a time, each word mixed in with a multiply and a xor-shift, and
/// the length and a finaliser at the end (the mixing steps of splitmix64).
pub fn chain(prev: u64, payload: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| {
        let h = (h ^ w).wrapping_mul(K);
        h ^ (h >> 29)
    };
    let mut h = prev ^ K;
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().unwrap_or_default()));
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    h = mix(h, u64::from_le_bytes(last));
    h = mix(h, payload.len() as u64);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The payload of the record that starts at `start` of `out` (to chain).
pub fn payload_of(out: &[u8], start: usize) -> &[u8] {
    &out[start + RECORD_HEADER..]
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

pub(super) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub(super) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
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
    /// The history sum before its first record.
    pub sum: u64,
}

impl SegmentHeader {
    /// The header's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEGMENT_HEADER);
        out.extend_from_slice(SEGMENT_MAGIC);
        for v in [self.size, self.data_id, self.first_seq, self.sum] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a header; damage unless it is whole and its crc matches.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, Damage> {
        let end = SEGMENT_HEADER - 4;
        let bad = |why: &str| Damage {
            offset: 0,
            why: why.to_string(),
        };
        if FORMAT_1.iter().any(|m| b.get(..8) == Some(&m[..])) {
            return Err(bad(FORMAT_1_WHY));
        }
        if b.len() < SEGMENT_HEADER
            || b.get(..8) != Some(SEGMENT_MAGIC)
            || u32_at(b, end) != b.get(..end).map(crc32fast::hash)
        {
            return Err(bad("no valid segment header"));
        }
        Ok(SegmentHeader {
            size: u64_at(b, 8).unwrap_or(0),
            data_id: u64_at(b, 16).unwrap_or(0),
            first_seq: u64_at(b, 24).unwrap_or(0),
            sum: u64_at(b, 32).unwrap_or(0),
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

/// How a segment ends, after its last whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// At that record: nothing follows.
    Clean,
    /// In bytes that are no record, with no intact record after them: what
    /// a crash in the middle of an append leaves (or junk written there).
    /// Only these may be cut without asking, and only in the newest
    /// segment.
    Junk(usize),
    /// In damage that a crash does not leave: a bad record with an intact
    /// one after it, a record out of order.
    Damage(Damage),
}

/// What a segment's records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Its header.
    pub header: SegmentHeader,
    /// Its whole records, in order, up to the first fault.
    pub records: Vec<Found>,
    /// How it ends.
    pub end: End,
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

/// True if the bytes at `at` could begin a record with a seq in
/// `seqs`: its length, op, count and seq agree with one another and it
/// fits in `b`. Reads 21 bytes, whatever the record's claimed length.
fn looks_like_record(b: &[u8], at: usize, seqs: std::ops::RangeInclusive<u64>) -> Option<usize> {
    let len = u32_at(b, at)? as usize;
    let seq = u64_at(b, at + RECORD_HEADER)?;
    let op = *b.get(at + RECORD_HEADER + 8)?;
    let n = u32_at(b, at + RECORD_HEADER + 9)? as usize;
    let fits = match op {
        OP_CLR => n == 0 && len == 13,
        OP_PUT => Some(len) == n.checked_mul(16).and_then(|v| v.checked_add(13)),
        _ => false,
    };
    (fits && len <= MAX_PAYLOAD && seqs.contains(&seq) && b.len() - at - RECORD_HEADER >= len).then_some(len)
}

/// A whole, intact record at `at`: (record, payload, its end).
fn record_at(b: &[u8], at: usize) -> Option<(Record, &[u8], usize)> {
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
    Some((decode_payload(payload)?, payload, end))
}

/// Looks for an intact record after the bad bytes at `from` whose seq
/// could follow `expect`'s: if there is one, the bad bytes are damage,
/// not a torn tail. Linear in the bytes after `from`: every offset is
/// first checked on its 21 header bytes (length, op, count and seq must
/// agree), and only those that pass have their checksum computed, within
/// a budget of a few times the tail's length. Junk crafted to exhaust the
/// budget is called damage (`Err`): refused, never a long start.
fn intact_after(b: &[u8], from: usize, expect: u64) -> Result<Option<usize>, ()> {
    // A record is at least 21 bytes: no later seq can be further on.
    let tail = b.len() - from;
    let seqs = expect..=expect.saturating_add((tail / (RECORD_HEADER + 13)) as u64);
    let mut budget = 4 * tail + (1 << 20);
    for k in from + 1..b.len().saturating_sub(RECORD_HEADER + 13) + 1 {
        let Some(len) = looks_like_record(b, k, seqs.clone()) else {
            continue;
        };
        budget = budget.checked_sub(len + 4).ok_or(())?;
        if record_at(b, k).is_some() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// Scans a segment: its header (damage if missing, or of the first
/// format), then its records from the sum `header.sum` on, up to the
/// first fault. Bytes after the last whole record with no intact record
/// after them end it as [`End::Junk`]; an intact record after bad bytes
/// makes them [`End::Damage`] (a length was damaged, not cut).
pub fn scan_segment(b: &[u8]) -> Result<Scan, Damage> {
    let header = SegmentHeader::decode(b)?;
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER;
    let mut sum = header.sum;
    let mut expect = header.first_seq;
    let end = loop {
        if at >= b.len() {
            break End::Clean;
        }
        match record_at(b, at) {
            Some((r, _, _)) if r.seq != expect => {
                break End::Damage(Damage {
                    offset: at,
                    why: format!("record seq {} where {expect} was due", r.seq),
                })
            }
            Some((record, payload, end)) => {
                sum = chain(sum, payload);
                records.push(Found { record, at, sum });
                expect += 1;
                at = end;
            }
            None if b.len() - at > 2 * MAX_PAYLOAD => {
                break End::Damage(Damage {
                    offset: at,
                    why: "a record that does not check out, far from the end".into(),
                })
            }
            None => match intact_after(b, at, expect) {
                Ok(None) => break End::Junk(at),
                Ok(Some(k)) => {
                    break End::Damage(Damage {
                        offset: at,
                        why: format!("a record that does not check out, with an intact record after it at byte {k}"),
                    })
                }
                Err(()) => {
                    break End::Damage(Damage {
                        offset: at,
                        why: "a record that does not check out, followed by too many record-like fragments to tell a torn tail from damage".into(),
                    })
                }
            },
        }
    };
    Ok(Scan { header, records, end })
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
            sum: 99,
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

    const PINNED_CLR: u64 = 0x8c45_5962_04f8_4c2b;
    const PINNED_PUT: u64 = 0x5afd_9cff_1edb_e160;

    fn records(s: &Scan) -> Vec<Record> {
        s.records.iter().map(|f| f.record.clone()).collect()
    }

    /// Where a segment of the first `n` of three() ends.
    fn end_of(n: usize) -> usize {
        segment(1, &three()[..n]).len()
    }

    #[test]
    fn records_round_trip_with_their_offsets_and_sums() {
        let b = segment(1, &three());
        let s = scan_segment(&b).unwrap();
        assert_eq!(records(&s), three());
        assert_eq!(s.end, End::Clean);
        assert_eq!(s.header.first_seq, 1);
        assert_eq!(
            s.records.iter().map(|f| f.at).collect::<Vec<_>>(),
            [SEGMENT_HEADER, end_of(1), end_of(2)]
        );
        // Each sum chains the one before, from the header's.
        let mut sum = 99;
        for (k, f) in s.records.iter().enumerate() {
            sum = chain(sum, &b[f.at + RECORD_HEADER..end_of(k + 1)]);
            assert_eq!(f.sum, sum);
        }
        let mut v = vec![5; 10];
        for r in records(&s) {
            apply(&mut v, &r.write);
        }
        assert_eq!(v, [0, 0, 0, 0, 0, 0, 0, 0, 0, i64::MIN]);
    }

    #[test]
    fn the_sum_tells_histories_apart() {
        // The same write at another seq, another value, another start.
        let put = |seq: u64, v: i64| {
            let mut b = Vec::new();
            encode_put(&mut b, seq, &[1], &[v]);
            b
        };
        let a = chain(0, payload_of(&put(2, 77), 0));
        assert_ne!(a, chain(0, payload_of(&put(3, 77), 0)));
        assert_ne!(a, chain(0, payload_of(&put(2, 78), 0)));
        assert_ne!(a, chain(1, payload_of(&put(2, 77), 0)));
        assert_eq!(a, chain(0, payload_of(&put(2, 77), 0)));
        // Every single-bit change of a payload changes it.
        let p = put(2, 77);
        for bit in 0..(p.len() - RECORD_HEADER) * 8 {
            let mut q = p.clone();
            q[RECORD_HEADER + bit / 8] ^= 1 << (bit % 8);
            assert_ne!(chain(0, payload_of(&q, 0)), a, "bit {bit}");
        }
    }

    /// The sum is part of the format on disk (segment headers and
    /// snapshots hold it): it must never change, whatever is tidied.
    #[test]
    fn the_sum_is_pinned() {
        let mut b = Vec::new();
        encode_clr(&mut b, 1);
        let start = b.len();
        encode_put(&mut b, 2, &[3, 4], &[-5, 6]);
        let clr = chain(0, payload_of(&b[..start], 0));
        let put = chain(clr, payload_of(&b, start));
        assert_eq!((clr, put), (PINNED_CLR, PINNED_PUT), "{clr:#x} {put:#x}");
        assert_eq!(payload_of(&b, start).len(), 13 + 32);
    }

    #[test]
    fn records_whose_fields_disagree_are_not_records() {
        // Checksums right, contents wrong: a CLR with pairs, a PUT whose
        // count does not match its length.
        let sealed = |payload: &[u8]| {
            let mut r = (payload.len() as u32).to_le_bytes().to_vec();
            r.extend_from_slice(&[0; 4]);
            r.extend_from_slice(payload);
            seal(&mut r, 0);
            r
        };
        let mut clr = 4u64.to_le_bytes().to_vec();
        clr.push(OP_CLR);
        clr.extend_from_slice(&1u32.to_le_bytes());
        let mut put = 4u64.to_le_bytes().to_vec();
        put.push(OP_PUT);
        put.extend_from_slice(&2u32.to_le_bytes());
        put.extend_from_slice(&[0; 16]);
        for bad in [sealed(&clr), sealed(&put)] {
            let mut b = segment(1, &three());
            b.extend_from_slice(&bad);
            let s = scan_segment(&b).unwrap();
            assert_eq!((records(&s), s.end), (three(), End::Junk(end_of(3))));
        }
        assert_eq!(
            Damage {
                offset: 7,
                why: "x".into()
            }
            .to_string(),
            "at byte 7: x"
        );
    }

    #[test]
    fn an_intact_clr_after_bad_bytes_makes_them_damage() {
        let mut recs = three();
        recs.push(Record {
            seq: 4,
            write: Write::Clr,
        });
        let mut b = segment(1, &recs);
        b[end_of(2) + 3] = 0x7f; // the third record's length, past the end
        let s = scan_segment(&b).unwrap();
        assert!(matches!(&s.end, End::Damage(d) if d.offset == end_of(2)), "{:?}", s.end);
    }

    #[test]
    fn a_tail_cut_anywhere_is_junk_and_the_records_before_survive() {
        let b = segment(1, &three());
        let last = end_of(2);
        for cut in last..b.len() {
            let s = scan_segment(&b[..cut]).unwrap_or_else(|d| panic!("cut at {cut}: {d}"));
            assert_eq!(records(&s), three()[..2], "cut at {cut}");
            let end = if cut > last { End::Junk(last) } else { End::Clean };
            assert_eq!(s.end, end, "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_last_record_is_junk_but_a_damaged_middle_is_damage() {
        let b = segment(1, &three());
        let second = end_of(1);
        // Flip a byte of the last record's payload: junk at its start.
        let mut last = b.clone();
        let n = last.len();
        last[n - 3] ^= 0x40;
        assert_eq!(scan_segment(&last).unwrap().end, End::Junk(end_of(2)));
        // Flip a byte of the second record: damage, at its offset, and the
        // record before it kept.
        let mut mid = b.clone();
        mid[second + 10] ^= 0x40;
        let s = scan_segment(&mid).unwrap();
        assert!(matches!(&s.end, End::Damage(d) if d.offset == second), "{:?}", s.end);
        assert_eq!(records(&s), three()[..1]);
        // A damaged length in the middle (pointing past the end) too.
        let mut len = b;
        len[second + 3] = 0x7f;
        assert!(matches!(scan_segment(&len).unwrap().end, End::Damage(d) if d.offset == second));
    }

    #[test]
    fn out_of_order_seqs_and_bad_headers_are_damage() {
        let mut recs = three();
        recs[1].seq = 5;
        let s = scan_segment(&segment(1, &recs)).unwrap();
        assert!(
            matches!(&s.end, End::Damage(d) if d.why.contains("seq 5 where 2")),
            "{:?}",
            s.end
        );
        let mut b = segment(1, &three());
        b[9] ^= 1;
        assert_eq!(scan_segment(&b).unwrap_err().offset, 0);
        assert!(scan_segment(b"").is_err());
        // A header cut short anywhere is no header (its missing checksum
        // does not match a missing checksum).
        let b = segment(1, &three());
        for cut in 0..SEGMENT_HEADER {
            assert!(SegmentHeader::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        // A header alone (a new segment) is whole.
        assert_eq!(SegmentHeader::decode(&b[..SEGMENT_HEADER]).map(|h| h.first_seq), Ok(1));
        // The first format is named as such.
        let mut old = segment(1, &three());
        old[..8].copy_from_slice(b"TCWAL01\n");
        assert_eq!(scan_segment(&old).unwrap_err().why, FORMAT_1_WHY);
    }

    /// Junk whose every word reads as a record length of half its size:
    /// every offset's claimed record fits. The scan stays linear: at most
    /// 21 bytes read per offset, and checksums only where a record's
    /// header bytes agree with one another.
    #[test]
    fn junk_that_reads_as_long_records_is_scanned_once() {
        let junk_len = 1 << 20;
        let word = ((junk_len / 2) as u32).to_le_bytes();
        let mut b = segment(1, &three());
        b.extend(word.iter().copied().cycle().take(junk_len));
        let s = scan_segment(&b).unwrap();
        assert_eq!((records(&s), s.end), (three(), End::Junk(end_of(3))));
        // Junk with a record header every 21 bytes, each claiming the
        // longest length that fits (and failing its checksum): without a
        // bound, every one would cost a checksum over the rest. It runs
        // out of the budget and is damage, not a long start.
        let total = 1 << 20;
        let mut fake = vec![0u8; total];
        let mut p = 0;
        while p + 21 <= total {
            let n = (total - p - RECORD_HEADER - 13) / 16;
            fake[p..p + 4].copy_from_slice(&((13 + 16 * n) as u32).to_le_bytes());
            fake[p + 8..p + 16].copy_from_slice(&4u64.to_le_bytes());
            fake[p + 16] = OP_PUT;
            fake[p + 17..p + 21].copy_from_slice(&(n as u32).to_le_bytes());
            p += 21;
        }
        let mut b = segment(1, &three());
        b.extend_from_slice(&fake);
        let s = scan_segment(&b).unwrap();
        assert_eq!(records(&s), three());
        assert!(
            matches!(&s.end, End::Damage(d) if d.offset == end_of(3) && d.why.contains("too many record-like")),
            "{:?}",
            s.end
        );
    }
}

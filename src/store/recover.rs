//! Reading a data directory back, without changing it: the manifest,
//! the latest snapshot, and every record of the log after it, up to the
//! first fault (`read`). A server's start (open.rs) and a repair
//! (repair.rs) decide what to do with the fault. docs/durability.md,
//! "Recovery".

use super::files::{list_segments, segment_name};
use super::manifest::{self, Manifest};
use super::record::{self, Damage, End, FORMAT_1_WHY};
use super::snapshot::Snapshot;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where reading the log stopped before its end.
#[derive(Debug)]
pub(super) struct Fault {
    /// The segment (its first seq and path).
    pub first: u64,
    pub path: PathBuf,
    /// Where in it the bad bytes start (`None`: the file is missing; 0:
    /// its header is bad).
    pub offset: Option<usize>,
    /// What is wrong.
    pub why: String,
    /// Junk at the end of the newest segment: what a crash mid-append
    /// leaves, cut without asking.
    pub junk: bool,
    /// The listed segments after it (first seq, path): a repair moves
    /// them away with it.
    pub later: Vec<(u64, PathBuf)>,
}

/// What a directory holds, read up to the first fault.
#[derive(Debug)]
pub(super) struct Replayed {
    pub manifest: Manifest,
    /// The manifest had to be made from the files (repair only).
    pub rebuilt: bool,
    /// The table's size: the snapshot's (written before the manifest, so
    /// the newer after a crash mid-resize), else the manifest's.
    pub size: u64,
    /// Segments the manifest lists that are not on disk (repair, which
    /// reads the files found instead): their first seqs.
    pub missing: Vec<u64>,
    /// The last write read and the history sum after it.
    pub seq: u64,
    pub sum: u64,
    pub values: Vec<i64>,
    pub replayed: u64,
    /// The segments read whole, or up to the fault (kept by a repair).
    pub segments: Vec<(u64, PathBuf)>,
    pub fault: Option<Fault>,
    /// Files the manifest does not list that a crash leaves (a segment
    /// created but not yet listed, segments a snapshot covers): deleted.
    pub leftovers: Vec<PathBuf>,
    /// Segments the manifest does not list that hold records: refused by
    /// a start, moved away by a repair.
    pub strays: Vec<PathBuf>,
}

/// An error that says the directory cannot be used as it is.
pub(super) fn refusal(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn damaged(path: &Path, d: &Damage) -> io::Error {
    refusal(format_args!(
        "{}: damaged {d}; refusing to start: restore the directory from a backup (docs/durability.md, \"Recovery\")",
        path.display()
    ))
}

/// A table of `n` zeros, or an error if it cannot be had.
pub(super) fn zeros(n: u64) -> io::Result<Vec<i64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n as usize).map_err(|e| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot allocate a table of {n} entries: {e}"),
        )
    })?;
    v.resize(n as usize, 0);
    Ok(v)
}

/// The snapshot, if there is one; damage is an error (a snapshot is
/// written whole and renamed into place: no crash damages it).
fn load_snapshot(dir: &Path) -> io::Result<Option<Snapshot>> {
    let path = dir.join("snapshot");
    match fs::read(&path) {
        Ok(b) => Ok(Some(Snapshot::decode(&b).map_err(|d| damaged(&path, &d))?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The manifest; when it is missing or damaged, one made from the files
/// found if `rebuild` (a repair), else an error that says what to do.
fn load_manifest(
    dir: &Path,
    snapshot: Option<&Snapshot>,
    on_disk: &[(u64, PathBuf)],
    rebuild: bool,
) -> io::Result<(Manifest, bool)> {
    let path = dir.join(manifest::NAME);
    let why = match fs::read(&path) {
        Ok(b) => match Manifest::decode(&b) {
            Ok(m) => return Ok((m, false)),
            Err(d) => format!("damaged {d}"),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => "missing".to_string(),
        Err(e) => return Err(e),
    };
    // Files of the first format have no manifest: say that, not "missing".
    if let Some((_, first)) = on_disk.first() {
        let head = fs::read(first)?;
        if let Err(d) = record::SegmentHeader::decode(&head) {
            if d.why == FORMAT_1_WHY {
                return Err(refusal(format_args!("{}: {FORMAT_1_WHY}", dir.display())));
            }
        }
    }
    if !rebuild {
        return Err(refusal(format_args!(
            "{}: {why}; refusing to start: `tablecache repair {}` makes a new one from the files found (docs/durability.md, \"Recovery\")",
            path.display(),
            dir.display()
        )));
    }
    // The table is the snapshot's; without one, the one most segments
    // name (the newest's, between equals): a segment copied in from
    // another table does not decide.
    let mut headers = Vec::new();
    for (_, p) in on_disk {
        if let Ok(h) = record::SegmentHeader::decode(&read_head(p)?) {
            headers.push(h);
        }
    }
    // (`max_by_key` keeps the last of equals: the newest.)
    let most = headers
        .iter()
        .max_by_key(|h| headers.iter().filter(|g| g.data_id == h.data_id).count());
    let (size, data_id) = match (snapshot, most) {
        (Some(s), _) => (s.values.len() as u64, s.data_id),
        (None, Some(h)) => (h.size, h.data_id),
        (None, None) if !on_disk.is_empty() => {
            let p = &on_disk[0].1;
            return Err(damaged(
                p,
                &Damage {
                    offset: 0,
                    why: "no valid segment header".into(),
                },
            ));
        }
        (None, None) => {
            return Err(refusal(format_args!(
                "{}: not a tablecache data directory",
                dir.display()
            )))
        }
    };
    let snap = snapshot.map_or(0, |s| s.seq);
    let segments = on_disk.iter().map(|(f, _)| *f).collect();
    Ok((
        Manifest {
            size,
            data_id,
            snapshot: snap,
            segments,
        },
        true,
    ))
}

/// The running state of a replay.
struct Walk {
    size: u64,
    seq: u64,
    sum: u64,
    values: Vec<i64>,
    replayed: u64,
}

impl Walk {
    /// Applies one segment's records after the walk's seq (checking the
    /// history sums where they meet); how the segment ends.
    fn segment(&mut self, m: &Manifest, first: u64, bytes: &[u8]) -> Result<End, Damage> {
        let scan = record::scan_segment(bytes)?;
        let h = scan.header;
        let at0 = |why: String| Damage { offset: 0, why };
        // A segment the snapshot covers may be of the size before a resize.
        let resized = h.size != self.size && h.first_seq > self.seq;
        if resized || h.data_id != m.data_id || h.first_seq != first {
            return Err(at0(
                "its header belongs to another table or another place in the log".into()
            ));
        }
        if h.first_seq > self.seq + 1 {
            return Err(at0(format!(
                "records {} to {} are missing",
                self.seq + 1,
                h.first_seq - 1
            )));
        }
        if h.first_seq == self.seq + 1 && h.sum != self.sum {
            return Err(at0("it continues another history than the one before it".into()));
        }
        for f in &scan.records {
            if f.record.seq <= self.seq {
                // In the snapshot already: the histories must agree there.
                if f.record.seq == self.seq && f.sum != self.sum {
                    return Err(Damage {
                        offset: f.at,
                        why: "the snapshot and this record belong to different histories".into(),
                    });
                }
                continue;
            }
            record::apply(&mut self.values, &f.record.write);
            (self.seq, self.sum) = (f.record.seq, f.sum);
            self.replayed += 1;
        }
        Ok(scan.end)
    }
}

/// Reads `dir` up to the first fault: the manifest, the snapshot, every
/// listed segment. A repair (`repair`) reads every segment found instead,
/// with a manifest made from the files if it has none, and notes the
/// listed ones that are missing. `want`: the size a server asks for (a
/// stored size that differs is refused unless `resize`), before the table
/// is allocated.
pub(super) fn read(dir: &Path, want: Option<(u64, bool)>, repair: bool) -> io::Result<Replayed> {
    let on_disk = list_segments(dir)?;
    let snapshot = load_snapshot(dir)?;
    let (manifest, rebuilt) = load_manifest(dir, snapshot.as_ref(), &on_disk, repair)?;
    let stored = snapshot.as_ref().map_or(manifest.size, |s| s.values.len() as u64);
    check_size(dir, want, stored)?;
    if repair && snapshot.is_none() && on_disk.first().is_some_and(|(first, _)| *first > 1) {
        return Err(refusal(format_args!(
            "{}: the log starts at write {}, and the snapshot of the writes before it is missing: nothing can be repaired; restore the directory from a backup (docs/durability.md, \"Repair\")",
            dir.display(),
            on_disk[0].0
        )));
    }
    let mut walk = start_walk(dir, snapshot.as_ref(), &manifest, stored)?;
    let missing = manifest
        .segments
        .iter()
        .copied()
        .filter(|f| !on_disk.iter().any(|(g, _)| g == f))
        .collect();
    let (listed, leftovers, strays) = to_read(dir, &on_disk, &manifest, walk.seq, repair)?;
    let (segments, fault) = replay(&mut walk, &manifest, &listed)?;
    Ok(Replayed {
        manifest,
        rebuilt,
        size: stored,
        missing,
        seq: walk.seq,
        sum: walk.sum,
        values: walk.values,
        replayed: walk.replayed,
        segments,
        fault,
        leftovers,
        strays,
    })
}

/// A table of another size than asked is refused, unless resizing.
fn check_size(dir: &Path, want: Option<(u64, bool)>, stored: u64) -> io::Result<()> {
    if let Some((size, false)) = want.filter(|&(size, _)| size != stored) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} holds a table of {stored} entries, not {size}: start with --size {stored}, or add --resize to change it",
                dir.display(),
            ),
        ));
    }
    Ok(())
}

/// Where the replay starts: the snapshot the manifest names, or an empty
/// table when the manifest names none.
fn start_walk(dir: &Path, snapshot: Option<&Snapshot>, manifest: &Manifest, stored: u64) -> io::Result<Walk> {
    Ok(match snapshot {
        Some(s) if s.seq < manifest.snapshot || s.data_id != manifest.data_id => {
            return Err(damaged(
                &dir.join("snapshot"),
                &Damage {
                    offset: 0,
                    why: format!("it is not the snapshot the manifest names (write {})", manifest.snapshot),
                },
            ))
        }
        Some(s) => Walk {
            size: stored,
            seq: s.seq,
            sum: s.sum,
            values: s.values.clone(),
            replayed: 0,
        },
        None if manifest.snapshot > 0 => {
            return Err(refusal(format_args!(
                "{}: the snapshot of write {} is missing; refusing to start: restore the directory from a backup (docs/durability.md, \"Recovery\")",
                dir.display(),
                manifest.snapshot
            )))
        }
        None => Walk {
            size: stored,
            seq: 0,
            sum: 0,
            values: zeros(stored)?,
            replayed: 0,
        },
    })
}

/// Segments read, in order; segments left over from before the snapshot;
/// strays (another table's). Repair reads every segment it finds; a start
/// reads those the manifest lists.
type ToRead = (Segments, Vec<PathBuf>, Vec<PathBuf>);

/// Segments by the first write each holds.
type Segments = Vec<(u64, PathBuf)>;

fn to_read(dir: &Path, on_disk: &[(u64, PathBuf)], manifest: &Manifest, seq: u64, repair: bool) -> io::Result<ToRead> {
    Ok(if repair {
        // Every segment found, but one whose whole header says it belongs
        // to another table or place: a stray, moved away, so it cannot
        // cut the log where it sorts.
        let mut listed = Vec::new();
        let mut strays = Vec::new();
        for (first, path) in on_disk {
            match record::SegmentHeader::decode(&read_head(path)?) {
                Ok(h) if h.data_id != manifest.data_id || h.first_seq != *first => strays.push(path.clone()),
                _ => listed.push((*first, path.clone())),
            }
        }
        (listed, vec![], strays)
    } else {
        let listed = manifest
            .segments
            .iter()
            .map(|&f| (f, dir.join(segment_name(f))))
            .collect();
        let (leftovers, strays) = unlisted(on_disk, manifest, seq)?;
        (listed, leftovers, strays)
    })
}

/// Replays the segments in order, up to the first fault: the segments
/// that hold records, and the fault, if any.
fn replay(walk: &mut Walk, manifest: &Manifest, listed: &[(u64, PathBuf)]) -> io::Result<(Segments, Option<Fault>)> {
    let mut segments = Vec::new();
    let mut fault = None;
    for (k, (first, path)) in listed.iter().enumerate() {
        let at_fault = |offset, why: String, junk| Fault {
            first: *first,
            path: path.clone(),
            offset,
            why,
            junk,
            later: listed[k + 1..].to_vec(),
        };
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let why = format!("missing (the manifest lists it: writes from {first} on were in it)");
                fault = Some(at_fault(None, why, false));
                break;
            }
            Err(e) => return Err(e),
        };
        let end = walk.segment(manifest, *first, &bytes);
        let newest = k + 1 == listed.len();
        let stop = match end {
            Ok(End::Clean) => None,
            Ok(End::Junk(at)) if newest => Some(at_fault(Some(at), "bytes that are no record".into(), true)),
            Ok(End::Junk(at)) => Some(at_fault(
                Some(at),
                "a record that does not check out, but later segments follow".into(),
                false,
            )),
            Ok(End::Damage(d)) | Err(d) => Some(at_fault(Some(d.offset), d.why, false)),
        };
        if stop.as_ref().is_none_or(|f| f.offset != Some(0)) {
            segments.push((*first, path.clone()));
        }
        if stop.is_some() {
            fault = stop;
            break;
        }
    }
    Ok((segments, fault))
}

/// The first bytes of a file, as many as a segment header has (or fewer).
fn read_head(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut head = Vec::with_capacity(record::SEGMENT_HEADER);
    fs::File::open(path)?
        .take(record::SEGMENT_HEADER as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// The segments on disk the manifest does not list: those a crash leaves
/// (this table's, older than every listed one, so a snapshot covers them;
/// or a header alone, created but not yet listed), and the others.
fn unlisted(on_disk: &[(u64, PathBuf)], m: &Manifest, snapshot_seq: u64) -> io::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let oldest = m.segments.first().copied().unwrap_or(snapshot_seq + 1);
    let (mut leftovers, mut strays) = (Vec::new(), Vec::new());
    for (first, path) in on_disk {
        if m.segments.contains(first) {
            continue;
        }
        let ours = record::SegmentHeader::decode(&read_head(path)?)
            .is_ok_and(|h| h.data_id == m.data_id && h.first_seq == *first);
        if ours && (*first < oldest || fs::metadata(path)?.len() == record::SEGMENT_HEADER as u64) {
            leftovers.push(path.clone());
        } else {
            strays.push(path.clone());
        }
    }
    Ok((leftovers, strays))
}

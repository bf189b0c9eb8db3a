//! Recovery: opening a data directory, loading the latest snapshot,
//! replaying the log after it, cutting a torn tail and refusing damage
//! (docs/durability.md, "Recovery").

use super::record::{self, Damage, Record, Snapshot};
use super::{create_segment, new_data_id, Store, StoreConfig};
use log::{info, warn};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

fn damaged(path: &Path, d: &Damage) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: damaged {d}; refusing to start (docs/durability.md, \"Recovery\", says what to do)",
            path.display()
        ),
    )
}

/// The segments in `dir`, in log order.
fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let first = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        if let Some(first) = first {
            segs.push((first, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

impl Store {
    /// Opens (or creates) the table in `cfg.dir` with `size` entries and
    /// recovers it: the latest snapshot, then every later record of the
    /// log. A torn last record (a crash mid-append) is cut off; damage
    /// anywhere else is an error naming the file and the offset.
    pub fn open(cfg: &StoreConfig, size: u64) -> io::Result<(Store, Vec<i64>)> {
        let dir = cfg.dir.clone();
        let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(at)?;
        // One server per directory: two appending to one log would
        // interleave their records (an exclusive lock, released when the
        // process ends, however it ends).
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(at)?;
        if lock.try_lock().is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is in use by another server (its LOCK is held)", dir.display()),
            ));
        }
        let zeros = |n: u64| -> io::Result<Vec<i64>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n as usize).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("cannot allocate a table of {n} entries: {e}"),
                )
            })?;
            v.resize(n as usize, 0);
            Ok(v)
        };
        // Unfinished files of a crash: a snapshot, a segment being created.
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path)?;
            }
        }
        let snap_path = dir.join("snapshot");
        let snapshot = match fs::read(&snap_path) {
            Ok(b) => Some(Snapshot::decode(&b).map_err(|d| damaged(&snap_path, &d))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut segs = list_segments(&dir)?;
        if snapshot.is_none() && segs.is_empty() {
            // The memory first: a table that cannot be had leaves no files.
            let values = zeros(size)?;
            let data_id = new_data_id();
            let file = create_segment(&dir, size, data_id, 1)?;
            info!("server: new table of {size} entries in {}", dir.display());
            return Ok((Store::new(cfg, lock, size, data_id, 0, file, 1, vec![]), values));
        }
        let (mut stored_size, mut data_id, mut seq, mut values) = match &snapshot {
            Some(s) => (s.values.len() as u64, s.data_id, s.seq, s.values.clone()),
            None => (0, 0, 0, Vec::new()),
        };
        let mut replayed = 0u64;
        let last = segs.len().saturating_sub(1);
        for (k, (first, path)) in segs.iter().enumerate() {
            let bytes = fs::read(path)?;
            let scan = record::scan_segment(&bytes).map_err(|d| damaged(path, &d))?;
            let h = scan.header;
            if snapshot.is_none() && k == 0 {
                (stored_size, data_id) = (h.size, h.data_id);
                if stored_size != size && !cfg.resize {
                    break; // refused below, before allocating the stored size
                }
                values = zeros(h.size)?;
            }
            if h.size != stored_size || h.data_id != data_id || h.first_seq != *first {
                return Err(damaged(
                    path,
                    &Damage {
                        offset: 0,
                        why: "its header belongs to another table or another place in the log".into(),
                    },
                ));
            }
            if h.first_seq > seq + 1 {
                return Err(damaged(
                    path,
                    &Damage {
                        offset: 0,
                        why: format!("records {} to {} are missing", seq + 1, h.first_seq - 1),
                    },
                ));
            }
            for r in &scan.records {
                if r.seq <= seq {
                    continue; // in the snapshot already
                }
                record::apply(&mut values, &r.write);
                seq = r.seq;
                replayed += 1;
            }
            if let Some(at) = scan.torn {
                if k != last {
                    return Err(damaged(
                        path,
                        &Damage {
                            offset: at,
                            why: "a torn record, but later segments follow".into(),
                        },
                    ));
                }
                let f = OpenOptions::new().write(true).open(path)?;
                f.set_len(at as u64)?;
                f.sync_all()?;
                warn!(
                    "server: cut a torn record at the end of {} at byte {at} (a crash mid-append; that write was never acknowledged)",
                    path.display()
                );
            }
        }
        if stored_size != size && !cfg.resize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} holds a table of {stored_size} entries, not {size}: start with --size {stored_size}, or add --resize to change it",
                    dir.display()
                ),
            ));
        }
        let (file, first) = match segs.last() {
            Some((first, path)) if stored_size == size => (OpenOptions::new().append(true).open(path)?, *first),
            _ => (create_segment(&dir, size, data_id, seq + 1)?, seq + 1),
        };
        let older: Vec<(u64, PathBuf)> = segs.drain(..).filter(|(f, _)| *f != first).collect();
        let mut store = Store::new(cfg, lock, size, data_id, seq, file, first, older);
        store.stats.replayed = replayed;
        store.segment_bytes = store.file.metadata()?.len();
        if stored_size != size {
            values.resize(size as usize, 0);
            store.write_snapshot_now(&values)?;
            warn!("server: table resized from {stored_size} to {size} entries");
        }
        info!(
            "server: recovered {} entries from {} ({} records replayed, last write {seq})",
            values.len(),
            dir.display(),
            replayed
        );
        Ok((store, values))
    }
}

/// The records of a data directory, for tests and tools: every write after
/// the snapshot, in order (no repair, no side effects).
pub fn read_records(dir: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for (_, path) in list_segments(dir)? {
        let bytes = fs::read(&path)?;
        let scan = record::scan_segment(&bytes).map_err(|d| damaged(&path, &d))?;
        out.extend(scan.records);
    }
    Ok(out)
}

//! Opening a data directory for a server: a new table, or the one
//! recovered (recover.rs), with junk at the end of the newest segment cut
//! and kept, and every other fault refused with the way out named
//! (`tablecache repair`). docs/durability.md, "Recovery".

use super::files::{create_segment, cut_segment, list_segments, lock_dir, remove_unfinished};
use super::manifest;
use super::recover::{read, refusal, zeros, Fault, Replayed};
use super::{new_data_id, record, Store, StoreConfig, Tip};
use log::{info, warn};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

impl Store {
    /// Opens (or creates) the table in `cfg.dir` with `size` entries and
    /// recovers it: the latest snapshot, then every later record of the
    /// log. Junk after the last record of the newest segment is cut (and
    /// kept in `cut/`); every other fault is an error naming the file, the
    /// offset and `tablecache repair`.
    pub fn open(cfg: &StoreConfig, size: u64) -> io::Result<(Store, Vec<i64>)> {
        let dir = cfg.dir.as_path();
        let lock = lock_dir(dir)?;
        remove_unfinished(dir)?;
        // No manifest and no snapshot, and no segment with a record: a new
        // directory, or one whose first start was killed before its first
        // manifest (leaving a segment header alone).
        let segs = list_segments(dir)?;
        let mut fresh = !dir.join(manifest::NAME).exists() && !dir.join("snapshot").exists();
        for (_, path) in &segs {
            fresh &= fs::metadata(path)?.len() <= record::SEGMENT_HEADER as u64;
        }
        if fresh {
            for (_, path) in &segs {
                fs::remove_file(path)?;
            }
            // The memory first: a table that cannot be had leaves no files.
            let values = zeros(size)?;
            let store = Store::create(cfg, lock, size, new_data_id(), (0, 0), vec![])?;
            info!("server: new table of {size} entries in {}", dir.display());
            return Ok((store, values));
        }
        let mut r = read(dir, Some((size, cfg.resize)), false)?;
        if let Some(f) = r.fault.take() {
            match (f.junk, f.offset) {
                (true, Some(at)) => {
                    let (n, copy) = cut_segment(dir, &f.path, at)?;
                    warn!(
                        "server: cut {n} bytes after the last record of {} at byte {at} (what a crash mid-append leaves; that write was never acknowledged); a copy is in {}",
                        f.path.display(),
                        copy.display()
                    );
                }
                _ => return Err(refuse(dir, &f)),
            }
        }
        if let Some(stray) = r.strays.first() {
            return Err(refusal(format_args!(
                "{}: a segment with records that the manifest does not list; refusing to start: `tablecache repair {}` moves it to cut/",
                stray.display(),
                dir.display()
            )));
        }
        for path in &r.leftovers {
            fs::remove_file(path)?;
            info!("server: removed {}, left by a crash", path.display());
        }
        let stored = r.size;
        let mut store = Store::reopen(cfg, lock, &r)?;
        store.stats.replayed = r.replayed;
        store.segment_bytes = store.file.metadata()?.len();
        let mut values = r.values;
        if stored != size {
            values.resize(size as usize, 0);
            store.size = size;
            store.write_snapshot_now(&values)?;
            warn!("server: table resized from {stored} to {size} entries");
        }
        info!(
            "server: recovered {} entries from {} ({} records replayed, last write {})",
            values.len(),
            dir.display(),
            r.replayed,
            r.seq
        );
        Ok((store, values))
    }

    /// A store for a new table, or one whose segments were all cut: a
    /// first segment after `(seq, sum)`, listed in a new manifest.
    fn create(
        cfg: &StoreConfig,
        lock: fs::File,
        size: u64,
        data_id: u64,
        (seq, sum): (u64, u64),
        older: Vec<(u64, PathBuf)>,
    ) -> io::Result<Store> {
        let header = record::SegmentHeader {
            size,
            data_id,
            first_seq: seq + 1,
            sum,
        };
        let file = create_segment(&cfg.dir, header)?;
        let tip = Tip {
            size,
            data_id,
            seq,
            sum,
            snapshot_seq: 0,
            file,
            first: seq + 1,
            older,
        };
        let store = Store::new(cfg, lock, tip);
        store.write_manifest()?;
        Ok(store)
    }

    /// A store that appends to the newest segment read (or a new one).
    fn reopen(cfg: &StoreConfig, lock: fs::File, r: &Replayed) -> io::Result<Store> {
        let m = &r.manifest;
        let Some(((first, path), older)) = r.segments.split_last() else {
            let mut store = Store::create(cfg, lock, r.size, m.data_id, (r.seq, r.sum), vec![])?;
            store.snapshot_seq = m.snapshot;
            store.write_manifest()?;
            return Ok(store);
        };
        let tip = Tip {
            size: r.size,
            data_id: m.data_id,
            seq: r.seq,
            sum: r.sum,
            snapshot_seq: m.snapshot,
            file: OpenOptions::new().append(true).open(path)?,
            first: *first,
            older: older.to_vec(),
        };
        Ok(Store::new(cfg, lock, tip))
    }
}

/// Why a start refuses a fault, and what to do about it.
fn refuse(dir: &Path, f: &Fault) -> io::Error {
    let place = match f.offset {
        Some(at) => format!("{}: damaged at byte {at}: {}", f.path.display(), f.why),
        None => format!("{}: {}", f.path.display(), f.why),
    };
    refusal(format_args!(
        "{place}; refusing to start: `tablecache repair {}` cuts the log there (keeping a copy of what it cuts and saying what is lost), or restore the directory from a backup (docs/durability.md, \"Recovery\")",
        dir.display()
    ))
}

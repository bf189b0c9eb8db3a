//! The durable table: a write-ahead log of segments, snapshots, a
//! manifest, and recovery at start-up (`server --data-dir`). The formats
//! are in `record.rs` and `manifest.rs` (pure); the directory's files,
//! its lock and whole-or-nothing writes in `files.rs`; reading a
//! directory back in `recover.rs`, opening it for a server in `open.rs`,
//! cutting damage knowingly in `repair.rs` (`tablecache repair`); this
//! file writes: the log's appends and syncs, snapshots and the manifest. docs/durability.md has the rules and a picture of a
//! write's path to the disk and back.
//!
//! The commit rule: a write is applied to the table and its record put in
//! `pending`; at the end of the loop pass ([`Store::commit`]) the pass's
//! records go to the log in one `write(2)` and, with `--fsync always`, one
//! `fdatasync` (group commit). The server holds every reply of a pass that
//! logged a write until that commit is done, so no acknowledgement — and
//! no read of an unlogged value — leaves before its record is in the log
//! (on disk, with `always`).
//!
//! Snapshots: when the current segment passes a size relative to the
//! table, a new segment starts and a helper thread writes the table as of
//! that moment to `snapshot.tmp`, syncs it, renames it to `snapshot` and
//! syncs the directory; the loop then deletes the segments the snapshot
//! covers. The thread keeps a big table's write off the loop; records
//! carry sequence numbers, so a crash anywhere in between replays right.

mod config;
mod files;
pub mod manifest;
mod open;
pub mod record;
mod recover;
mod repair;
pub mod snapshot;

pub use config::{Fsync, StoreConfig};
pub use repair::repair;

use crate::reactor::DISK;
use crate::trace_event;
use files::{create_segment, segment_name, write_atomically};
use log::{info, warn};
use manifest::Manifest;
use record::SegmentHeader;
use snapshot::Snapshot;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Counters for STS.
#[derive(Debug, Default, Clone)]
pub struct StoreStats {
    /// `fdatasync` calls on the log.
    pub syncs: u64,
    /// The slowest, microseconds.
    pub sync_max_us: u64,
    /// Records since the last snapshot.
    pub records: u64,
    /// Snapshots taken by this process.
    pub snapshots: u64,
    /// Records replayed at start-up.
    pub replayed: u64,
}

/// Smallest segment size that triggers a snapshot. A segment roll costs
/// the loop a few syncs (the new segment, the manifest, the directory), so
/// a small table under fast writes must not roll many times a second; a
/// start replays at most this much log (about 450,000 one-index PUTs).
const SNAPSHOT_MIN_BYTES: u64 = 16 << 20;

/// The log and snapshots of one table.
pub struct Store {
    /// The directory itself, held locked for the store's life: one server
    /// per directory.
    _lock: File,
    dir: PathBuf,
    fsync: Fsync,
    size: u64,
    data_id: u64,
    /// The seq of the last write logged (pending or not), and the history
    /// sum after it (record.rs, [`record::chain`]).
    seq: u64,
    sum: u64,
    /// The seq of the snapshot the manifest names (0: none).
    snapshot_seq: u64,
    /// The segment being appended to, its first seq and its length.
    file: File,
    segment_first: u64,
    segment_bytes: u64,
    /// Older segments (first seq, path), deleted once a snapshot covers them.
    older: Vec<(u64, PathBuf)>,
    /// Records of this pass, not yet written; how many.
    pending: Vec<u8>,
    pending_records: u64,
    /// Written but not yet synced (batch, never); when last synced.
    unsynced: bool,
    last_sync: Instant,
    snapshot_bytes: u64,
    /// A snapshot being written: its seq, and the thread's answer.
    snapshotting: Option<(u64, Receiver<io::Result<()>>)>,
    /// Counters.
    pub stats: StoreStats,
}

/// A fresh identity for a new table: random enough to tell two tables
/// apart (std's hasher keys are random per process).
fn new_data_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}

/// A fresh identity for a table kept in memory (it dies with the process).
pub fn memory_data_id() -> u64 {
    new_data_id()
}

/// Where a recovered log stands: what [`Store::new`] starts from.
struct Tip {
    size: u64,
    data_id: u64,
    /// The last write, and the history sum after it.
    seq: u64,
    sum: u64,
    /// The snapshot the manifest names.
    snapshot_seq: u64,
    /// The segment to append to: its file and first seq.
    file: File,
    first: u64,
    /// Older segments.
    older: Vec<(u64, PathBuf)>,
}

impl Store {
    fn new(cfg: &StoreConfig, lock: File, tip: Tip) -> Store {
        let snapshot_bytes = match cfg.snapshot_bytes {
            0 => SNAPSHOT_MIN_BYTES.max(tip.size.saturating_mul(16)),
            n => n,
        };
        Store {
            _lock: lock,
            dir: cfg.dir.clone(),
            fsync: cfg.fsync,
            size: tip.size,
            data_id: tip.data_id,
            seq: tip.seq,
            sum: tip.sum,
            snapshot_seq: tip.snapshot_seq,
            file: tip.file,
            segment_first: tip.first,
            segment_bytes: record::SEGMENT_HEADER as u64,
            older: tip.older,
            pending: Vec::new(),
            pending_records: 0,
            unsynced: false,
            last_sync: Instant::now(),
            snapshot_bytes,
            snapshotting: None,
            stats: StoreStats::default(),
        }
    }

    /// The table's identity: the same across restarts of this directory.
    pub fn data_id(&self) -> u64 {
        self.data_id
    }

    /// The seq of the last write logged.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The history sum after it: what a proxy compares, with the seq,
    /// before keeping its cache across a restart.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// Records a PUT (written at the next commit).
    pub fn log_put(&mut self, ind: &[i64], data: &[i64]) {
        self.seq += 1;
        let start = self.pending.len();
        record::encode_put(&mut self.pending, self.seq, ind, data);
        self.logged(start);
    }

    /// Records a CLR (written at the next commit).
    pub fn log_clr(&mut self) {
        self.seq += 1;
        let start = self.pending.len();
        record::encode_clr(&mut self.pending, self.seq);
        self.logged(start);
    }

    /// A record was put in `pending` at `start`: the history sum moves on.
    fn logged(&mut self, start: usize) {
        self.sum = record::chain(self.sum, record::payload_of(&self.pending, start));
        self.pending_records += 1;
    }

    /// The manifest as it should be now: the snapshot, every segment.
    fn manifest(&self) -> Manifest {
        let mut segments: Vec<u64> = self.older.iter().map(|(first, _)| *first).collect();
        segments.push(self.segment_first);
        Manifest {
            size: self.size,
            data_id: self.data_id,
            snapshot: self.snapshot_seq,
            segments,
        }
    }

    /// Writes the manifest (whole, synced).
    fn write_manifest(&self) -> io::Result<()> {
        write_atomically(&self.dir, manifest::NAME, &self.manifest().encode())
    }

    /// Starts a new segment after the last write: created, then listed in
    /// the manifest, then appended to.
    fn roll_segment(&mut self) -> io::Result<()> {
        let header = SegmentHeader {
            size: self.size,
            data_id: self.data_id,
            first_seq: self.seq + 1,
            sum: self.sum,
        };
        let file = create_segment(&self.dir, header)?;
        // What the old one had is written (and synced, with always); batch
        // and never leave its tail to the snapshot, which is synced. An
        // old one with no records had the new one's name: it was replaced.
        drop(std::mem::replace(&mut self.file, file));
        if self.segment_first <= self.seq {
            self.older
                .push((self.segment_first, self.dir.join(segment_name(self.segment_first))));
        }
        self.segment_first = self.seq + 1;
        self.segment_bytes = record::SEGMENT_HEADER as u64;
        self.write_manifest()
    }

    /// True while records of this pass wait for their commit (replies wait
    /// with them).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the pass: writes its records in one `write(2)` and, as the mode
    /// says, syncs (one `fdatasync` for all of them: group commit). Then
    /// starts a snapshot of `values` if the segment has grown enough. An
    /// error here means the log can no longer be trusted: the server stops.
    pub fn commit(&mut self, values: &[i64], now: Instant) -> io::Result<()> {
        if !self.pending.is_empty() {
            let at = crate::trace::stamp();
            self.file.write_all(&self.pending)?;
            crate::trace_event_at!(
                at,
                "server",
                DISK,
                "APPEND",
                "{} record{}, {} bytes written to {}",
                self.pending_records,
                if self.pending_records == 1 { "" } else { "s" },
                self.pending.len(),
                segment_name(self.segment_first)
            );
            self.segment_bytes += self.pending.len() as u64;
            self.stats.records += self.pending_records;
            self.pending.clear();
            self.pending_records = 0;
            self.unsynced = true;
            match self.fsync {
                Fsync::Always => self.sync(now)?,
                Fsync::Batch(every) if now.saturating_duration_since(self.last_sync) >= every => self.sync(now)?,
                _ => {}
            }
        }
        self.tick(now)?;
        // Only a segment with records rolls (a tiny --snapshot-bytes would
        // otherwise roll an empty one every pass).
        if self.segment_bytes >= self.snapshot_bytes && self.snapshotting.is_none() && self.segment_first <= self.seq {
            self.start_snapshot(values)?;
        }
        Ok(())
    }

    /// `fdatasync` of the current segment.
    fn sync(&mut self, now: Instant) -> io::Result<()> {
        let t = Instant::now();
        self.file.sync_data()?;
        let us = t.elapsed().as_micros() as u64;
        trace_event!(
            "server",
            DISK,
            "FSYNC",
            "fdatasync took {us} us: the records are on disk"
        );
        self.stats.syncs += 1;
        self.stats.sync_max_us = self.stats.sync_max_us.max(us);
        self.unsynced = false;
        self.last_sync = now;
        Ok(())
    }

    /// Timers: the batch mode's sync, a finished snapshot.
    pub fn tick(&mut self, now: Instant) -> io::Result<()> {
        if let (Fsync::Batch(every), true) = (self.fsync, self.unsynced) {
            if now.saturating_duration_since(self.last_sync) >= every {
                self.sync(now)?;
            }
        }
        if let Some((seq, rx)) = &self.snapshotting {
            let seq = *seq;
            match rx.try_recv() {
                Err(mpsc::TryRecvError::Empty) => {}
                Ok(Ok(())) => {
                    self.snapshotting = None;
                    self.snapshot_done(seq)?;
                }
                Ok(Err(e)) => {
                    self.snapshotting = None;
                    warn!("server: snapshot failed: {e}; the log keeps everything, trying again later");
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.snapshotting = None;
                    warn!("server: the snapshot thread died; the log keeps everything");
                }
            }
        }
        Ok(())
    }

    /// When [`Store::tick`] has something to do.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let batch = match (self.fsync, self.unsynced) {
            (Fsync::Batch(every), true) => Some(self.last_sync + every),
            _ => None,
        };
        let snap = self.snapshotting.as_ref().map(|_| now + Duration::from_millis(5));
        crate::reactor::earliest(batch, snap)
    }

    /// Starts a new segment and writes the table, as of now, to a snapshot
    /// on a helper thread.
    fn start_snapshot(&mut self, values: &[i64]) -> io::Result<()> {
        let seq = self.seq;
        self.roll_segment()?;
        let bytes = Snapshot::encode(self.data_id, seq, self.sum, values);
        let dir = self.dir.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("snapshot".into()).spawn(move || {
            let _ = tx.send(write_atomically(&dir, "snapshot", &bytes));
        })?;
        trace_event!(
            "server",
            DISK,
            "SNAPSHOT",
            "writing the table as of write {seq}; new segment {}",
            segment_name(seq + 1)
        );
        self.snapshotting = Some((seq, rx));
        Ok(())
    }

    /// A snapshot of write `seq` is durable: delete the segments it covers
    /// (once the manifest no longer lists them).
    fn snapshot_done(&mut self, seq: u64) -> io::Result<()> {
        let (gone, keep): (Vec<_>, Vec<_>) = self.older.drain(..).partition(|(first, _)| *first <= seq);
        self.older = keep;
        self.snapshot_seq = seq;
        self.write_manifest()?;
        // No sync after: a deletion lost to a crash leaves a segment older
        // than every listed one, which recovery removes.
        for (_, path) in &gone {
            fs::remove_file(path)?;
        }
        self.stats.snapshots += 1;
        self.stats.records = self.seq - seq;
        info!(
            "server: snapshot of write {seq} done, {} old segments removed",
            gone.len()
        );
        Ok(())
    }

    /// A snapshot written on the loop (start-up after a resize), covering
    /// every segment.
    fn write_snapshot_now(&mut self, values: &[i64]) -> io::Result<()> {
        let bytes = Snapshot::encode(self.data_id, self.seq, self.sum, values);
        write_atomically(&self.dir, "snapshot", &bytes)?;
        self.snapshot_seq = self.seq;
        self.roll_segment()?;
        self.snapshot_done(self.seq)
    }

    /// STS fields.
    pub fn encode_stats(&self, out: &mut crate::buffer::Buffer) {
        use crate::proto::encode_field;
        encode_field(out, "FSYNC", &self.fsync.name());
        encode_field(out, "LOG_BYTES", &self.segment_bytes);
        encode_field(out, "LOG_RECORDS", &self.stats.records);
        encode_field(out, "SYNCS", &self.stats.syncs);
        encode_field(out, "SYNC_MAX_US", &self.stats.sync_max_us);
        encode_field(out, "SNAPSHOTS", &self.stats.snapshots);
    }
}

//! How a table is kept: the directory, when records reach the disk
//! (`--fsync`), when snapshots are taken, and whether a new size is
//! accepted. Plain settings.

use std::path::PathBuf;
use std::time::Duration;

/// When a write's record must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before its acknowledgement leaves (one `fdatasync` per loop pass
    /// that logged writes): an acknowledged write survives a crash of the
    /// machine.
    Always,
    /// At most this long after it is written: a machine crash may lose the
    /// writes of the last interval (a crash of the process alone loses
    /// nothing: the records are in the kernel).
    Batch(Duration),
    /// When the kernel writes it back (typically within 30 s on Linux): a
    /// machine crash may lose that much; a process crash nothing.
    Never,
}

impl Fsync {
    /// The mode's name (`--fsync`, STS).
    pub fn name(&self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch(_) => "batch",
            Fsync::Never => "never",
        }
    }
}

/// Where and how the table is kept.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The directory (created if missing).
    pub dir: PathBuf,
    /// When records reach the disk.
    pub fsync: Fsync,
    /// A snapshot is taken when the current segment passes this many bytes
    /// (0: the default, the larger of 16 MiB and twice the table's size on
    /// disk).
    pub snapshot_bytes: u64,
    /// Accept a table size other than the stored one (the table is cut
    /// or zero-extended, and a snapshot at the new size is written).
    pub resize: bool,
}

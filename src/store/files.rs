//! The files of a data directory and the careful ways to change them:
//! their names, the directory's lock, whole-or-nothing writes (a
//! temporary file, synced, renamed, the directory synced), and cutting
//! the log with a copy of what is cut kept in `cut/`. docs/durability.md,
//! "Files".

use super::record::SegmentHeader;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A segment's file name: its first seq in 16 hex digits, so names sort
/// in log order.
pub(super) fn segment_name(first_seq: u64) -> String {
    format!("wal-{first_seq:016x}.log")
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` durably and whole: a temporary file,
/// synced, renamed into place, and the directory synced. A crash leaves
/// the old file or the new one, never a part.
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Creates a segment whose first record will be `first_seq`, after the
/// history sum `sum`, whole (so a crash never leaves a segment without a
/// header). The manifest must list it before a record goes in.
pub(super) fn create_segment(dir: &Path, header: SegmentHeader) -> io::Result<File> {
    let name = segment_name(header.first_seq);
    write_atomically(dir, &name, &header.encode())?;
    // Appends go to the end.
    OpenOptions::new().append(true).open(dir.join(name))
}

/// Locks `dir` itself (`flock` on its own descriptor), so that no file
/// anyone can delete or re-create stands for the lock: one server (or
/// repair) per directory. Released when the process ends, however it ends.
pub(super) fn lock_dir(dir: &Path) -> io::Result<File> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    fs::create_dir_all(dir).map_err(at)?;
    let lock = File::open(dir).map_err(at)?;
    if lock.try_lock().is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is in use by another server (it holds the directory's lock)",
                dir.display()
            ),
        ));
    }
    Ok(lock)
}

/// The segments in `dir`, in log order.
pub(super) fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        // Exactly the names the server gives: 16 hex digits.
        let first = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|hex| hex.len() == 16)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        if let Some(first) = first {
            segs.push((first, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// Deletes the unfinished files of a crash: a snapshot, a segment or a
/// manifest being written (`snapshot.tmp`, `wal-….log.tmp`,
/// `MANIFEST.tmp`; no other file, should the directory hold others).
pub(super) fn remove_unfinished(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let ours =
            name == "snapshot" || name == super::manifest::NAME || (name.starts_with("wal-") && name.ends_with(".log"));
        if ours {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A path in `dir/cut/` for `name` that holds nothing yet (`name`, else
/// `name.2`, `name.3`...): a second cut never overwrites the first.
pub(super) fn cut_path(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let cut = dir.join("cut");
    fs::create_dir_all(&cut)?;
    let mut path = cut.join(name);
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = cut.join(format!("{name}.{n}"));
    }
    Ok(path)
}

/// Copies `bytes` (cut from the log) to `dir/cut/name`, synced, and
/// returns its path: nothing removed from the log is destroyed.
pub(super) fn keep_copy(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let path = cut_path(dir, name)?;
    let cut = dir.join("cut");
    let mut f = fs::File::create(&path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    sync_dir(&cut)?;
    Ok(path)
}

/// Cuts a segment at `at`, keeping a copy of what was cut; how many bytes,
/// and where the copy is.
pub(super) fn cut_segment(dir: &Path, path: &Path, at: usize) -> io::Result<(usize, PathBuf)> {
    let bytes = fs::read(path)?;
    let name = format!("{}.from-{at}", path.file_name().unwrap_or_default().to_string_lossy());
    let copy = keep_copy(dir, &name, &bytes[at.min(bytes.len())..])?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(at as u64)?;
    f.sync_all()?;
    Ok((bytes.len().saturating_sub(at), copy))
}

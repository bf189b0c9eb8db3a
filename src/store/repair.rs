//! `tablecache repair DIR`: cuts a damaged log knowingly. It reads the
//! directory as a start would (recover.rs), and where reading stops — a
//! bad record, a missing segment, a bad header, a gap — it cuts the log
//! there: the rest of that segment and every later one go to `DIR/cut/`
//! (nothing is destroyed), a manifest is written for what remains, and
//! it says what was removed and which writes the table now holds. Like
//! `redis-check-aof --fix`: the server itself never guesses past a fault
//! a crash cannot leave. docs/durability.md, "Repair".

use super::files::{cut_path, cut_segment, lock_dir, remove_unfinished, segment_name, write_atomically};
use super::manifest::{self, Manifest};
use super::recover::{self, Fault, Replayed};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Repairs the data directory `dir`; what it did, one line each (or why
/// it cannot: a server holds it, a damaged or missing snapshot, which
/// only a backup can replace).
pub fn repair(dir: &Path) -> io::Result<Vec<String>> {
    if !dir.is_dir() {
        return Err(recover::refusal(format_args!("{}: no such directory", dir.display())));
    }
    let _lock = lock_dir(dir)?;
    remove_unfinished(dir)?;
    let mut r = recover::read(dir, None, true)?;
    let mut said = Vec::new();
    if r.rebuilt {
        keep_old_manifest(dir, &mut said)?;
    }
    let fault = r.fault.take();
    // Segments the manifest lists that are gone: a loss only if they held
    // writes past what the files found hold.
    for &first in &r.missing {
        let name = segment_name(first);
        if first > r.seq && fault.is_none() {
            said.push(format!(
                "{name} is missing (the manifest lists it): the writes from {first} on are lost"
            ));
        } else if first <= r.seq {
            said.push(format!(
                "{name} is missing, but the snapshot or the segments found hold its writes"
            ));
        }
    }
    if let Some(f) = fault {
        cut_at(dir, &f, &mut said)?;
    }
    for stray in std::mem::take(&mut r.strays) {
        said.push(format!("moved {} to cut/: the manifest does not list it", name(&stray)));
        move_to_cut(dir, &stray)?;
    }
    for path in &r.leftovers {
        fs::remove_file(path)?;
    }
    if said.is_empty() {
        said.push(format!("nothing to repair: the log reads whole, to write {}", r.seq));
        return Ok(said);
    }
    write_manifest(dir, &r)?;
    said.push(match r.seq {
        0 => "the table now holds no writes (all zeros)".to_string(),
        1 => "the table now holds write 1 alone".to_string(),
        n => format!("the table now holds writes 1 to {n}: what it held after write {n}"),
    });
    Ok(said)
}

/// A file's name, for messages.
fn name(path: &Path) -> String {
    path.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

/// Moves `path` into `dir/cut/`.
fn move_to_cut(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    let to = cut_path(dir, &name(path))?;
    fs::rename(path, &to)?;
    Ok(to)
}

/// A manifest that could not be read is kept beside the cuts.
fn keep_old_manifest(dir: &Path, said: &mut Vec<String>) -> io::Result<()> {
    let path = dir.join(manifest::NAME);
    if path.exists() {
        move_to_cut(dir, &path)?;
        said.push(format!(
            "{} could not be read: moved to cut/, made again from the files found",
            manifest::NAME
        ));
    } else {
        said.push(format!(
            "{} was missing: made again from the files found",
            manifest::NAME
        ));
    }
    Ok(())
}

/// Cuts the log at `f`: the rest of its segment, and every later segment.
fn cut_at(dir: &Path, f: &Fault, said: &mut Vec<String>) -> io::Result<()> {
    match f.offset {
        None => said.push(format!(
            "{} is {}: the writes from {} on are lost",
            name(&f.path),
            f.why,
            f.first
        )),
        Some(0) => {
            let to = move_to_cut(dir, &f.path)?;
            said.push(format!(
                "moved {} to {}: its header is bad ({}); the writes from {} on are lost",
                name(&f.path),
                to.display(),
                f.why,
                f.first
            ));
        }
        Some(at) => {
            let (n, copy) = cut_segment(dir, &f.path, at)?;
            said.push(format!(
                "cut {n} bytes from {} at byte {at} ({}); a copy is in {}",
                name(&f.path),
                f.why,
                copy.display()
            ));
        }
    }
    for (first, path) in &f.later {
        if path.exists() {
            move_to_cut(dir, path)?;
            said.push(format!(
                "moved {} (writes from {first} on) to cut/: it came after the cut",
                name(path)
            ));
        }
    }
    Ok(())
}

/// The manifest for what remains.
fn write_manifest(dir: &Path, r: &Replayed) -> io::Result<()> {
    let m = Manifest {
        size: r.size,
        segments: r.segments.iter().map(|(first, _)| *first).collect(),
        ..r.manifest.clone()
    };
    write_atomically(dir, manifest::NAME, &m.encode())
}

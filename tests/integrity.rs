//! The durable table's integrity (docs/durability.md, "Integrity"), with
//! the built binary: a rewound history never passes for the one a proxy
//! cached, the manifest knows every file, the lock holds without a file,
//! damage is refused and `tablecache repair` cuts it knowingly, and junk
//! after the last record is cut and kept.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the last server on `dir` logged.
fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.err")).unwrap_or_default()
}

/// Starts a server on `dir` expecting it to refuse; what it said. One that
/// starts instead fails the test (and is killed).
fn refused(dir: &Path) -> String {
    let log = dir.with_file_name("refused.log");
    let mut child = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
    if line.starts_with("listening on") {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "started on a directory it should refuse: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let status = child.wait().unwrap();
    let err = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// `tablecache repair DIR`: its exit code and what it printed.
fn repair(dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["repair", dir.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("panicked"), "{said}");
    (out.status.code(), said)
}

/// Stops a server cleanly (SIGTERM) and waits for it.
fn stop(mut server: Proc) {
    server.signal("TERM");
    server.child.wait().unwrap();
}

/// The log segments of `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("wal-") && name.ends_with(".log")
        })
        .collect();
    segs.sort();
    segs
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn put(p: &mut Peer, i: usize, v: i64) {
    let reply = p.ask(&format!("OP=PUT;IND={i};DATA={v}"));
    assert!(reply.ends_with("CODE=200"), "{reply}");
}

fn get(addr: &str, i: usize) -> i64 {
    let reply = Peer::connect(addr.parse().unwrap()).ask(&format!("OP=GET;IND={i}"));
    field(&reply, "DATA")
        .unwrap_or_else(|| panic!("{reply}"))
        .parse()
        .unwrap()
}

/// Every file directly in `from`, copied to a new `to` (a backup).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// The files under `dir/cut` and their sizes (what recovery or repair
/// removed from the log, kept).
fn kept_cuts(dir: &Path) -> Vec<(String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir.join("cut")) else {
        return vec![];
    };
    let mut v: Vec<_> = entries
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), len(&p))
        })
        .collect();
    v.sort();
    v
}

#[derive(Debug, Clone, Copy)]
enum Rewind {
    /// The directory is restored from a copy taken before the last write.
    Restore,
    /// The last record is cut (what a machine crash can leave under
    /// `--fsync never`).
    CutLast,
}

/// A proxy caches a value of write 2; the server's directory goes back to
/// write 1; another write makes the count 2 again. The proxy must not take
/// the new write 2 for the one it saw.
fn a_rewound_table_never_passes_for_the_history_a_proxy_cached(how: Rewind) {
    let tmp = TempDir::new("rewind");
    let dir = tmp.join("data");
    let server = leasing("127.0.0.1:0", Some(&dir));
    let addr = server.addr.clone();
    let mut direct = Peer::connect(addr.parse().unwrap());
    put(&mut direct, 0, 1);
    let backup = tmp.join("backup");
    copy_dir(&dir, &backup);
    let one = len(segments(&dir).last().unwrap());
    put(&mut direct, 0, 2);
    // The proxy's lease answer tells it the write count: 2.
    let (proxy, mut c) = leased_proxy(&addr);
    assert_eq!(c.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=2;CODE=200");
    let hits = |c: &mut Peer| field(&c.ask("OP=STS"), "HITS").unwrap().parse::<u64>().unwrap();
    let before = hits(&mut c);
    assert_eq!(c.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=2;CODE=200");
    assert_eq!(hits(&mut c), before + 1, "cached");

    // Frozen, the proxy cannot reconnect before the write below.
    proxy.signal("STOP");
    drop((direct, server));
    match how {
        Rewind::Restore => {
            std::fs::remove_dir_all(&dir).unwrap();
            copy_dir(&backup, &dir);
        }
        Rewind::CutLast => {
            let seg = segments(&dir).pop().unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(one)
                .unwrap();
        }
    }
    let server = leasing(&addr, Some(&dir));
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    put(&mut direct, 1, 77);
    assert_eq!(get(&server.addr, 0), 1, "{how:?}: the server went back to write 1");
    proxy.signal("CONT");
    wait_leased(&mut c);
    assert_eq!(
        c.ask("OP=GET;IND=0"),
        "OP=GET;IND=0;DATA=1;CODE=200",
        "{how:?}: the proxy served a value of another history"
    );
}

#[test]
fn a_table_restored_from_an_older_copy_never_passes_for_the_history_a_proxy_cached() {
    a_rewound_table_never_passes_for_the_history_a_proxy_cached(Rewind::Restore);
}

#[test]
fn a_table_whose_last_record_was_lost_never_passes_for_the_history_a_proxy_cached() {
    a_rewound_table_never_passes_for_the_history_a_proxy_cached(Rewind::CutLast);
}

#[test]
fn a_missing_newest_segment_is_refused_and_repair_says_what_is_lost() {
    let tmp = TempDir::new("missing");
    let dir = tmp.join("data");
    // A small snapshot threshold: several segments, and a snapshot kept.
    let server = durable(&dir, &["--snapshot-bytes", "4096"]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    for v in 1..=400 {
        put(&mut p, 1, v);
    }
    wait_until("a snapshot", || {
        field(&p.ask("OP=STS"), "SNAPSHOTS").is_some_and(|n| n != "0")
    });
    stop(server);
    assert!(dir.join("snapshot").exists());
    let newest = segments(&dir).pop().unwrap();
    let name = newest.file_name().unwrap().to_string_lossy().into_owned();
    let first = u64::from_str_radix(&name[4..20], 16).unwrap();
    assert!(first > 1 && first <= 400, "{name}");
    std::fs::remove_file(&newest).unwrap();

    let err = refused(&dir);
    assert!(
        err.contains(&name) && err.contains("missing") && err.contains("tablecache repair"),
        "{err}"
    );
    let (code, said) = repair(&dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains(&name) && said.contains("lost"), "{said}");
    let server = durable(&dir, &[]);
    assert_eq!(
        get(&server.addr, 1),
        first as i64 - 1,
        "every write before the lost segment"
    );
    // And the log goes on from there.
    put(&mut Peer::connect(server.addr.parse().unwrap()), 1, 1000);
    stop(server);
    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 1000);
}

#[test]
fn deleting_the_lock_file_does_not_let_a_second_server_in() {
    let tmp = TempDir::new("lock");
    let dir = tmp.join("data");
    let first = durable(&dir, &[]);
    let _ = std::fs::remove_file(dir.join("LOCK"));
    let err = refused(&dir);
    assert!(err.contains("in use by another server"), "{err}");
    // Nor can repair touch it while the server runs.
    let (code, said) = repair(&dir);
    assert_ne!(code, Some(0), "{said}");
    assert!(said.contains("in use by another server"), "{said}");
    put(&mut Peer::connect(first.addr.parse().unwrap()), 2, 5);
    assert_eq!(get(&first.addr, 2), 5);
}

#[test]
fn a_bad_record_before_good_ones_is_refused_and_repair_keeps_every_record_before_it() {
    let tmp = TempDir::new("bad-record");
    let dir = tmp.join("data");
    let server = durable(&dir, &[]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    let seg = segments(&dir).pop().unwrap();
    // The segment's length after each write: where each record starts.
    let mut ends = vec![len(&seg)];
    for v in 1..=6 {
        put(&mut p, 1, v);
        ends.push(len(&seg));
    }
    stop(server);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[ends[2] as usize + 12] ^= 0x01; // inside record 3
    std::fs::write(&seg, &bytes).unwrap();

    let err = refused(&dir);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains(&format!("at byte {}", ends[2])) && err.contains("tablecache repair"),
        "{err}"
    );
    let (code, said) = repair(&dir);
    assert_eq!(code, Some(0), "{said}");
    let cut = ends[6] - ends[2];
    assert!(said.contains(&format!("{cut} bytes")), "{said}");
    let kept = kept_cuts(&dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1, cut, "a copy of what was cut: {kept:?}");
    assert_eq!(
        std::fs::read(dir.join("cut").join(&kept[0].0)).unwrap(),
        bytes[ends[2] as usize..]
    );

    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 2, "every record before the bad one");
    put(&mut Peer::connect(server.addr.parse().unwrap()), 1, 100);
    stop(server);
    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 100);
}

#[test]
fn junk_after_the_last_record_is_cut_said_and_kept() {
    let tmp = TempDir::new("junk");
    let dir = tmp.join("data");
    let server = durable(&dir, &[]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    for v in 1..=3 {
        put(&mut p, 1, v);
    }
    stop(server);
    let seg = segments(&dir).pop().unwrap();
    let good = len(&seg);
    // Junk whose every word reads as a record length of half its size:
    // the shape that made the old scan quadratic.
    let junk_len = 256 << 10;
    let word = ((junk_len / 2) as u32).to_le_bytes();
    let junk: Vec<u8> = word.iter().copied().cycle().take(junk_len).collect();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&junk);
    std::fs::write(&seg, &bytes).unwrap();
    // Unfinished files of the server's are removed at start; no others.
    std::fs::write(dir.join("snapshot.tmp"), b"half").unwrap();
    std::fs::write(dir.join("notes.tmp"), b"mine").unwrap();

    let server = durable(&dir, &[]);
    assert!(!dir.join("snapshot.tmp").exists());
    assert_eq!(std::fs::read(dir.join("notes.tmp")).unwrap(), b"mine");
    assert_eq!(get(&server.addr, 1), 3);
    assert_eq!(len(&seg), good, "the junk is gone from the log");
    let said = server_log(&dir);
    assert!(said.contains(&format!("{junk_len} bytes")), "{said}");
    let kept = kept_cuts(&dir);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(dir.join("cut").join(&kept[0].0)).unwrap(), junk);
}

#[test]
fn a_start_killed_before_its_manifest_starts_again_as_a_new_table() {
    // What a kill between the first segment and the first manifest leaves.
    let tmp = TempDir::new("first-start");
    let dir = tmp.join("data");
    stop(durable(&dir, &[]));
    std::fs::remove_file(dir.join("MANIFEST")).unwrap();
    assert_eq!(segments(&dir).len(), 1);
    let server = durable(&dir, &[]);
    put(&mut Peer::connect(server.addr.parse().unwrap()), 1, 4);
    stop(server);
    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 4);
}

#[test]
fn resizing_a_table_with_no_writes_since_its_last_segment_lists_it_once() {
    let tmp = TempDir::new("resize-empty");
    let dir = tmp.join("data");
    stop(durable(&dir, &[]));
    stop(durable(&dir, &["--size", "20", "--resize"]));
    stop(durable(&dir, &["--size", "30", "--resize"]));
    let server = durable(&dir, &["--size", "30"]);
    put(&mut Peer::connect(server.addr.parse().unwrap()), 25, 7);
    stop(server);
    let server = durable(&dir, &["--size", "30"]);
    assert_eq!(get(&server.addr, 25), 7);
}

#[test]
fn repair_with_a_stale_manifest_keeps_every_intact_segment() {
    let tmp = TempDir::new("stale-manifest");
    let dir = tmp.join("data");
    let server = durable(&dir, &["--snapshot-bytes", "4096"]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    for v in 1..=50 {
        put(&mut p, 1, v);
    }
    let stale = std::fs::read(dir.join("MANIFEST")).unwrap();
    for v in 51..=200 {
        put(&mut p, 1, v);
    }
    wait_until("a snapshot", || {
        field(&p.ask("OP=STS"), "SNAPSHOTS").is_some_and(|n| n != "0")
    });
    stop(server);
    std::fs::write(dir.join("MANIFEST"), stale).unwrap();
    let err = refused(&dir);
    assert!(err.contains("tablecache repair"), "{err}");
    let (code, said) = repair(&dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(!said.contains("lost"), "nothing was lost: {said}");
    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 200, "{said}");
}

#[test]
fn repair_refuses_a_log_whose_snapshot_is_gone() {
    let tmp = TempDir::new("no-snapshot");
    let dir = tmp.join("data");
    let server = durable(&dir, &["--snapshot-bytes", "4096"]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    for v in 1..=200 {
        put(&mut p, 1, v);
    }
    wait_until("a snapshot", || {
        field(&p.ask("OP=STS"), "SNAPSHOTS").is_some_and(|n| n != "0")
    });
    stop(server);
    std::fs::remove_file(dir.join("snapshot")).unwrap();
    std::fs::remove_file(dir.join("MANIFEST")).unwrap();
    let (code, said) = repair(&dir);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("snapshot") && said.contains("backup"), "{said}");
}

#[test]
fn what_is_cut_twice_is_kept_twice_and_files_not_ours_are_left_alone() {
    let tmp = TempDir::new("cut-twice");
    let dir = tmp.join("data");
    for round in 0..2 {
        let server = durable(&dir, &[]);
        let mut p = Peer::connect(server.addr.parse().unwrap());
        let seg = segments(&dir).pop().unwrap();
        let at = len(&seg);
        put(&mut p, 1, round);
        put(&mut p, 1, round + 10);
        stop(server);
        let mut bytes = std::fs::read(&seg).unwrap();
        bytes[at as usize + 12] ^= 1; // the first of the two
        std::fs::write(&seg, &bytes).unwrap();
        assert_eq!(repair(&dir).0, Some(0));
    }
    assert_eq!(kept_cuts(&dir).len(), 2, "{:?}", kept_cuts(&dir));
    // A file that only looks like a segment's name is not one.
    std::fs::write(dir.join("wal-0.log"), b"my notes").unwrap();
    stop(durable(&dir, &[]));
    assert_eq!(std::fs::read(dir.join("wal-0.log")).unwrap(), b"my notes");
}

#[test]
fn repair_moves_another_tables_segment_away_and_keeps_this_ones_log() {
    let tmp = TempDir::new("foreign-segment");
    let (dir, other) = (tmp.join("data"), tmp.join("other"));
    for (d, v) in [(&other, 9), (&dir, 1)] {
        let server = durable(d, &[]);
        put(&mut Peer::connect(server.addr.parse().unwrap()), 1, v);
        stop(server);
    }
    // Another table's segment, under a name that sorts first; no manifest.
    let theirs = segments(&other).pop().unwrap();
    std::fs::copy(&theirs, dir.join("wal-0000000000000000.log")).unwrap();
    std::fs::remove_file(dir.join("MANIFEST")).unwrap();
    let (code, said) = repair(&dir);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("wal-0000000000000000.log"), "{said}");
    let server = durable(&dir, &[]);
    assert_eq!(get(&server.addr, 1), 1, "this table's write kept: {said}");
}

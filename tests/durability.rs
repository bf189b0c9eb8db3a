//! The durable server (`--data-dir`), over loopback with the built binary:
//! no acknowledged write lost across SIGKILL, torn tails cut, damage
//! refused, snapshots under load, the size stored, group commit.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A fresh folder for one test (removed when dropped); the data
/// directory is its `data`, and a server's log goes beside it.
fn fresh_dir(name: &str) -> TempDir {
    TempDir::new(name)
}

/// A durable server on `dir` (no leases: direct clients only, so no grace
/// period to wait out after a restart).
fn durable(dir: &Path, size: usize, extra: &[&str]) -> Proc {
    let size = size.to_string();
    let mut args = vec!["--size", &size];
    args.extend_from_slice(extra);
    common::durable(dir, &args)
}

/// The table, from DMP.
fn table(addr: &str, size: usize) -> Vec<i64> {
    let mut p = Peer::connect(addr.parse().unwrap());
    let dmp = p.ask("OP=DMP");
    assert!(dmp.ends_with("CODE=200"), "{dmp}");
    let mut vals = vec![0i64; size];
    if let (Some(ind), Some(data)) = (field(&dmp, "IND"), field(&dmp, "DATA")) {
        for (i, v) in ind.split(',').zip(data.split(',')) {
            vals[i.parse::<usize>().unwrap()] = v.parse().unwrap();
        }
    }
    vals
}

fn sts(addr: &str) -> String {
    Peer::connect(addr.parse().unwrap()).ask("OP=STS")
}

fn num(reply: &str, key: &str) -> u64 {
    field(reply, key)
        .unwrap_or_else(|| panic!("no {key} in {reply}"))
        .parse()
        .unwrap()
}

/// One writer's view of a cycle: the value of the last PUT acknowledged,
/// and of the last one sent.
#[derive(Debug, Clone, Copy, Default)]
struct Sent {
    acked: i64,
    sent: i64,
}

/// Pipelines PUTs of `value, value+1, ...` to all of `indices` at once
/// (one message, so one record), up to `depth` unanswered, until the
/// connection dies or `stop` is set. Returns what was acked and sent.
fn writer(addr: String, indices: Vec<usize>, first: i64, depth: usize, acked_any: std::sync::mpsc::Sender<()>) -> Sent {
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let ind: Vec<String> = indices.iter().map(|i| i.to_string()).collect();
    let mut out = Sent {
        acked: first - 1,
        sent: first - 1,
    };
    let mut in_flight = 0usize;
    let mut told = false;
    loop {
        while in_flight < depth {
            let v = out.sent + 1;
            let data: Vec<String> = indices.iter().map(|_| v.to_string()).collect();
            let msg = format!("OP=PUT;IND={};DATA={}\n", ind.join(","), data.join(","));
            if s.write_all(msg.as_bytes()).is_err() {
                return out;
            }
            out.sent = v;
            in_flight += 1;
        }
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return out,
            Ok(_) => {
                assert!(line.trim_end().ends_with("CODE=200"), "{line}");
                out.acked += 1;
                in_flight -= 1;
                if !told {
                    let _ = acked_any.send(());
                    told = true;
                }
            }
        }
    }
}

#[test]
fn no_acknowledged_write_is_lost_when_the_server_is_killed() {
    killed_under_writers("always", 20);
}

/// A crash of the process alone loses nothing in the other modes either:
/// the records are in the kernel before the replies leave.
#[test]
fn no_acknowledged_write_is_lost_when_the_server_is_killed_with_fsync_batch_or_never() {
    killed_under_writers("batch", 10);
    killed_under_writers("never", 10);
}

/// `cycles` times: writers pipelining PUTs, a SIGKILL at a random moment,
/// a restart with `--fsync mode`, and a look at what was recovered.
fn killed_under_writers(mode: &str, cycles: usize) {
    let dir = fresh_dir(&format!("kill-{mode}"));
    let (writers, per, size) = (4usize, 5usize, 20usize);
    let mut next = vec![1i64; writers];
    let mut in_flight_at_kill = 0i64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    // A small snapshot threshold: snapshots start (and get killed) too.
    let flags = ["--snapshot-bytes", "4096", "--fsync", mode];
    for cycle in 0..cycles {
        let server = durable(&dir, size, &flags);
        // The table as recovered: each writer's indices hold one value
        // (a PUT is all or nothing), at least the last acknowledged one.
        let vals = table(&server.addr, size);
        for w in 0..writers {
            let mine = &vals[w * per..(w + 1) * per];
            assert!(
                mine.iter().all(|&v| v == mine[0]),
                "cycle {cycle}, writer {w}: a torn PUT {mine:?}"
            );
            // The same as the check after the last kill saw (no writes since).
            assert_eq!(mine[0], next[w] - 1, "cycle {cycle}, writer {w}");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (addr, tx) = (server.addr.clone(), tx.clone());
                let first = next[w];
                std::thread::spawn(move || writer(addr, (w * per..(w + 1) * per).collect(), first, 16, tx))
            })
            .collect();
        // Every writer has had a write acknowledged; then a random moment.
        for _ in 0..writers {
            rx.recv_timeout(patience()).expect("a write acknowledged");
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 30_000));
        server.signal("KILL");
        let sent: Vec<Sent> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        drop(server);
        // Restart and look: at least the acknowledged value, at most the
        // last one sent.
        let again = durable(&dir, size, &flags);
        let vals = table(&again.addr, size);
        for (w, s) in sent.iter().enumerate() {
            let v = vals[w * per];
            assert!(
                v >= s.acked && v <= s.sent,
                "{mode}, cycle {cycle}, writer {w}: recovered {v}, acknowledged {}, sent {}",
                s.acked,
                s.sent
            );
            in_flight_at_kill += s.sent - s.acked;
            next[w] = v + 1;
        }
    }
    // The kills landed while writes were in flight (else this tested less).
    assert!(in_flight_at_kill > 0, "no kill landed mid-pipeline");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `n` PUTs one after another (each acknowledged), then stops the
/// server gracefully. Returns the dir's only segment file.
fn log_of(dir: &Path, n: i64) -> PathBuf {
    let server = durable(dir, 10, &[]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    for v in 1..=n {
        assert!(p.ask(&format!("OP=PUT;IND={};DATA={v}", v % 10)).ends_with("CODE=200"));
    }
    server.signal("TERM");
    let mut server = server;
    server.child.wait().unwrap();
    let segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs[0].clone()
}

#[test]
fn a_torn_last_record_is_cut_at_any_byte_and_the_rest_recovers() {
    let dir = fresh_dir("torn");
    let seg = log_of(&dir, 4);
    let whole = std::fs::read(&seg).unwrap();
    // The fourth record's start: the file as it was after three writes.
    let three = {
        let d3 = fresh_dir("torn3");
        let s3 = std::fs::read(log_of(&d3, 3)).unwrap();
        let _ = std::fs::remove_dir_all(&d3);
        s3.len()
    };
    assert!(three + 30 < whole.len(), "{three} of {}", whole.len());
    for cut in three..whole.len() {
        std::fs::write(&seg, &whole[..cut]).unwrap();
        let server = durable(&dir, 10, &[]);
        let vals = table(&server.addr, 10);
        assert_eq!(&vals[1..5], &[1, 2, 3, 0], "cut at byte {cut} of {}", whole.len());
        drop(server);
        // The torn bytes are gone from the file.
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, three, "cut at {cut}");
    }
    // Uncut, all four are there.
    std::fs::write(&seg, &whole).unwrap();
    let server = durable(&dir, 10, &[]);
    assert_eq!(&table(&server.addr, 10)[1..5], &[1, 2, 3, 4]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the server on `dir` expecting it to refuse; its stderr.
fn refused(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["server", "--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = Command::new(BIN).args(&args).stdin(Stdio::null()).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "started on a bad directory");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn damage_in_the_middle_refuses_to_start_naming_the_file_and_offset() {
    let dir = fresh_dir("damage");
    let seg = log_of(&dir, 4);
    let mut bytes = std::fs::read(&seg).unwrap();
    let header = tablecache::store::record::SEGMENT_HEADER;
    let second = header + (bytes.len() - header) / 4; // records are the same size
    bytes[second + 12] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = refused(&dir, &[]);
    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains(&name) && err.contains(&format!("at byte {second}")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A damaged snapshot is refused too.
    let dir2 = fresh_dir("damage-snap");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::write(dir2.join("snapshot"), b"TCSNAP2\nnot really").unwrap();
    let err = refused(&dir2, &[]);
    assert!(err.contains("snapshot") && err.contains("damaged"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn the_size_is_stored_and_changes_only_with_resize() {
    let dir = fresh_dir("size");
    drop(log_of(&dir, 3));
    let err = refused(&dir, &["--size", "20"]);
    assert!(
        err.contains("holds a table of 10 entries") && err.contains("--resize"),
        "{err}"
    );
    let server = durable(&dir, 20, &["--resize"]);
    let vals = table(&server.addr, 20);
    assert_eq!((&vals[1..4], vals.len()), (&[1i64, 2, 3][..], 20));
    drop(server);
    // The new size is stored: no --resize needed now.
    let server = durable(&dir, 20, &[]);
    assert_eq!(&table(&server.addr, 20)[1..4], &[1, 2, 3]);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn snapshots_taken_under_load_keep_every_write() {
    let dir = fresh_dir("snap");
    let size = 200;
    let server = durable(&dir, size, &["--snapshot-bytes", "2048"]);
    let mut p = Peer::connect(server.addr.parse().unwrap());
    // 2000 writes, pipelined 100 at a time, while snapshots come and go.
    let mut want = vec![0i64; size];
    for batch in 0..20 {
        let mut msg = String::new();
        for k in 0..100 {
            let (i, v) = ((batch * 37 + k * 13) % size, (batch * 100 + k + 1) as i64);
            msg.push_str(&format!("OP=PUT;IND={i};DATA={v}\n"));
            want[i] = v;
        }
        p.send(msg.as_bytes());
        for _ in 0..100 {
            assert!(p.line().ends_with("CODE=200"));
        }
    }
    let stats = sts(&server.addr);
    assert!(num(&stats, "SNAPSHOTS") >= 2, "{stats}");
    assert_eq!(num(&stats, "WRITE_SEQ"), 2000);
    assert_eq!(table(&server.addr, size), want);
    server.signal("KILL");
    drop(server);
    // Covered segments were deleted; the rest recovers exactly.
    let segs = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().to_string_lossy().ends_with(".log"))
        .count();
    assert!(segs <= 3, "{segs} segments left");
    let server = durable(&dir, size, &["--snapshot-bytes", "2048"]);
    assert_eq!(table(&server.addr, size), want);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pass_of_writes_shares_one_fsync_and_no_reply_leaves_before_it() {
    let dir = fresh_dir("group");
    let log = dir.join("trace.txt");
    let server = spawn_node_logging(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--lease-ms",
            "0",
            "--trace",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // 100 PUTs in one write(2): one read pass, one commit.
    let mut p = Peer::connect(server.addr.parse().unwrap());
    let burst: String = (0..100).map(|k| format!("OP=PUT;IND={};DATA={k}\n", k % 10)).collect();
    p.send(burst.as_bytes());
    for _ in 0..100 {
        assert!(p.line().ends_with("CODE=200"));
    }
    let stats = sts(&server.addr);
    let syncs = num(&stats, "SYNCS");
    assert!((1..=3).contains(&syncs), "100 writes, {syncs} fdatasyncs: {stats}");
    assert_eq!(field(&stats, "FSYNC").as_deref(), Some("always"));
    server.signal("TERM");
    let mut server = server;
    server.child.wait().unwrap();
    // In the trace (one thread: lines in program order), every reply write
    // comes after the APPEND of every PUT decoded before it, and after an
    // FSYNC that followed that APPEND.
    let mut text = String::new();
    std::fs::File::open(&log).unwrap().read_to_string(&mut text).unwrap();
    let (mut put, mut append, mut fsync) = (None, None, None);
    let mut replies = 0;
    for (k, line) in text.lines().enumerate() {
        if line.contains(" DECODED ") && line.contains("OP=PUT") {
            put = Some(k);
        } else if line.contains(" APPEND ") {
            append = Some(k);
        } else if line.contains(" FSYNC ") {
            fsync = Some(k);
        } else if line.contains(" server  0   WRITABLE ") {
            assert!(
                put < append && append < fsync,
                "reply at line {k} before its records were on disk:\n{text}"
            );
            replies += 1;
        }
    }
    assert!(replies >= 1 && put.is_some(), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn batch_and_never_keep_what_a_clean_stop_wrote() {
    for mode in ["batch", "never"] {
        let dir = fresh_dir(&format!("mode-{mode}"));
        let server = durable(&dir, 10, &["--fsync", mode, "--fsync-interval-ms", "50"]);
        let mut p = Peer::connect(server.addr.parse().unwrap());
        assert!(p.ask("OP=PUT;IND=3;DATA=33").ends_with("CODE=200"));
        let stats = sts(&server.addr);
        assert_eq!(field(&stats, "FSYNC").as_deref(), Some(mode));
        if mode == "batch" {
            // The interval passes, and the batch sync comes.
            let start = Instant::now();
            while num(&sts(&server.addr), "SYNCS") == 0 {
                assert!(start.elapsed() < patience(), "no batch sync");
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            assert_eq!(num(&stats, "SYNCS"), 0);
        }
        // A killed process loses nothing the kernel has.
        server.signal("KILL");
        drop(server);
        let server = durable(&dir, 10, &[]);
        assert_eq!(table(&server.addr, 10)[3], 33, "{mode}");
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn fsync_flags_need_a_data_dir() {
    let out = Command::new(BIN).args(["server", "--fsync", "never"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data-dir"));
}

#[test]
fn a_proxy_keeps_its_cache_across_a_durable_restart_and_stays_coherent() {
    let dir = fresh_dir("resume");
    let server = leasing("127.0.0.1:0", Some(&dir));
    let addr = server.addr.clone();
    let mut direct = Peer::connect(addr.parse().unwrap());
    assert!(direct.ask("OP=PUT;IND=1;DATA=10").ends_with("CODE=200"));
    let (_proxy, mut c) = leased_proxy(&addr);
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200");
    let hits = |c: &mut Peer| num(&c.ask("OP=STS"), "HITS");
    let before = hits(&mut c);
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200");
    assert_eq!(hits(&mut c), before + 1, "cached");

    // The server dies and comes back on its address with its table.
    drop((direct, server));
    let server = leasing(&addr, Some(&dir));
    wait_leased(&mut c);
    let before = hits(&mut c);
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200");
    assert_eq!(hits(&mut c), before + 1, "the cache was kept across the restart");
    // And the server tracks the kept entry again: a write elsewhere
    // invalidates it before it is acknowledged.
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    assert!(direct.ask("OP=PUT;IND=1;DATA=11").ends_with("CODE=200"));
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=11;CODE=200");

    // A server without the table (in memory) is another table: the cache
    // goes.
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=11;CODE=200");
    drop((direct, server));
    let _fresh = leasing(&addr, None);
    wait_leased(&mut c);
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_write_while_the_proxy_was_away_empties_its_cache() {
    // The proxy reconnects to the same table, but it was written since the
    // proxy last heard its write count: nothing cached is trusted.
    let dir = fresh_dir("resume-written");
    let server = leasing("127.0.0.1:0", Some(&dir));
    let addr = server.addr.clone();
    let (proxy, mut c) = leased_proxy(&addr);
    assert_eq!(c.ask("OP=GET;IND=2"), "OP=GET;IND=2;DATA=0;CODE=200");
    // Frozen, the proxy cannot reconnect before the write below.
    proxy.signal("STOP");
    drop(server);
    let server = leasing(&addr, Some(&dir));
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    assert!(direct.ask("OP=PUT;IND=3;DATA=33").ends_with("CODE=200"));
    proxy.signal("CONT");
    wait_leased(&mut c);
    let misses = num(&c.ask("OP=STS"), "MISSES");
    assert_eq!(c.ask("OP=GET;IND=2"), "OP=GET;IND=2;DATA=0;CODE=200");
    assert_eq!(num(&c.ask("OP=STS"), "MISSES"), misses + 1, "the cache was emptied");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_server_per_directory_and_no_files_for_a_table_too_big() {
    let dir = fresh_dir("lock");
    let first = durable(&dir, 10, &[]);
    let err = refused(&dir, &["--size", "10"]);
    assert!(err.contains("is in use by another server"), "{err}");
    drop(first); // SIGKILL: the lock goes with the process
    let again = durable(&dir, 10, &[]);
    drop(again);
    // A table that cannot be allocated: a clear error, and the directory
    // still starts at a size that can be. (Only where 32 GiB cannot be had:
    // on a machine with that much memory the allocation would succeed.)
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(u64::MAX);
    if mem_kib >= 32 << 20 {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let big = fresh_dir("big");
    let err = refused(&big, &["--size", "4294967296"]);
    assert!(
        err.contains("cannot allocate a table of 4294967296 entries") && !err.contains("panicked"),
        "{err}"
    );
    let fine = durable(&big, 10, &[]);
    assert_eq!(table(&fine.addr, 10), vec![0; 10]);
    drop(fine);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&big);
}

#[test]
fn a_log_that_cannot_be_written_stops_the_server_without_acknowledging() {
    // The server's files may not grow past 32 KiB (`ulimit -f`, with
    // SIGXFSZ ignored so the write fails with EFBIG instead of killing the
    // process). The write that no longer fits is not acknowledged: the
    // server stops with an error, and a restart holds every acknowledged
    // write and nothing after.
    let dir = fresh_dir("log-fails");
    let log = dir.join("server.err");
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec {BIN} server --listen 127.0.0.1:0 --lease-ms 0 --log-level warn --data-dir {}",
        dir.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let mut server = spawn_command_logged(cmd, &log);
    let addr = server.addr.clone();
    let mut p = Peer::connect(addr.parse().unwrap());
    let mut acked = 0i64;
    loop {
        assert!(acked < 100_000, "32 KiB of log never filled");
        p.send(format!("OP=PUT;IND=1;DATA={}\n", acked + 1).as_bytes());
        let mut reply = String::new();
        // Closed (EOF) when the server stops; a hang fails on the bound.
        if p.reader.read_line(&mut reply).unwrap() == 0 {
            break;
        }
        assert_eq!(reply.trim_end(), format!("OP=PUT;IND=1;DATA={};CODE=200", acked + 1));
        acked += 1;
    }
    assert!(acked > 0);
    let status = server.child.wait().unwrap();
    assert!(!status.success(), "the server exits with an error: {status}");
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("the log failed"), "{said}");
    let server = durable(&dir, 10, &[]);
    assert_eq!(
        table(&server.addr, 10)[1],
        acked,
        "the last acknowledged write, and nothing after"
    );
}

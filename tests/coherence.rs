//! Many proxies, one table (docs/coherence.md): a write through one proxy,
//! or straight to the server, stops every other proxy from serving the old
//! value before it is acknowledged — also when a proxy or the server
//! freezes, when a proxy dies, and across a server restart. Histories over
//! several proxies and direct clients are checked for linearizability with
//! each connection in order.

mod common;
use common::history::*;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tablecache::proxy::ProxyConfig;
use tablecache::server::ServerConfig;
use tablecache::NodeHandle;

fn server_with_lease(size: usize, lease_ms: u64) -> NodeHandle {
    server_node(ServerConfig {
        size,
        lease: Duration::from_millis(lease_ms),
        // Every history here runs with the trust boundary on.
        peer_secret_file: Some(secret_file()),
        ..Default::default()
    })
}

fn proxy(upstream: SocketAddr, capacity: usize) -> NodeHandle {
    proxy_node(ProxyConfig {
        peer_secret_file: Some(secret_file()),
        ..proxy_to(upstream, capacity)
    })
}

fn num(sts: &str, key: &str) -> u64 {
    field(sts, key)
        .unwrap_or_else(|| panic!("no {key} in {sts}"))
        .parse()
        .unwrap()
}

#[test]
fn a_write_through_one_proxy_or_the_server_invalidates_the_others() {
    let server = server_with_lease(10, 1000);
    let (pa, pb) = (proxy(server.addr(), 5), proxy(server.addr(), 5));
    let (mut a, mut b) = (Peer::connect(pa.addr()), Peer::connect(pb.addr()));
    let mut direct = Peer::connect(server.addr());
    wait_leased(&mut a);
    wait_leased(&mut b);
    // Both cache 1 (and B caches 2).
    assert_eq!(a.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(b.ask("OP=GET;IND=1,2"), "OP=GET;IND=1,2;DATA=0,0;CODE=200");
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(num(&b.ask("OP=STS"), "HITS"), 1, "B served 1 from its cache");
    // A write through A: acknowledged only once B has dropped 1.
    assert_eq!(a.ask("OP=PUT;IND=1;DATA=7"), "OP=PUT;IND=1;DATA=7;CODE=200");
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=7;CODE=200");
    assert!(b.ask("OP=DMP").contains("IND=2"), "B kept 2, which nobody wrote");
    // A write straight to the server reaches both.
    assert_eq!(
        direct.ask("OP=PUT;IND=1,2;DATA=8,9"),
        "OP=PUT;IND=1,2;DATA=8,9;CODE=200"
    );
    assert_eq!(a.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=8;CODE=200");
    assert_eq!(b.ask("OP=GET;IND=1,2"), "OP=GET;IND=1,2;DATA=8,9;CODE=200");
    let (sa, sb, ss) = (a.ask("OP=STS"), b.ask("OP=STS"), direct.ask("OP=STS"));
    assert_eq!(num(&sb, "INV_RECV"), 2, "{sb}");
    assert_eq!(num(&sa, "INV_RECV"), 1, "{sa}");
    assert_eq!(num(&ss, "INV_SENT"), 3, "{ss}");
    assert_eq!(num(&ss, "PROXIES"), 2, "{ss}");
    assert_eq!(num(&ss, "ACKS"), 3, "{ss}");
}

#[test]
fn without_leases_another_proxy_serves_the_overwritten_value() {
    // The same steps with `--lease-ms 0`: the server grants no leases, each
    // proxy keeps only the single-proxy guarantee, and B answers from a
    // cache that the write through A made stale. This is what the
    // invalidations prevent (and what the test above would see without
    // them).
    let server = server_with_lease(10, 0);
    let (pa, pb) = (proxy(server.addr(), 5), proxy(server.addr(), 5));
    let (mut a, mut b) = (Peer::connect(pa.addr()), Peer::connect(pb.addr()));
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(a.ask("OP=PUT;IND=1;DATA=7"), "OP=PUT;IND=1;DATA=7;CODE=200");
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200", "stale");
    assert_eq!(field(&b.ask("OP=STS"), "LEASE_MS").as_deref(), Some("0"));
}

#[test]
fn clr_waits_until_every_proxy_has_dropped_everything() {
    let server = server_with_lease(10, 1000);
    let proxies: Vec<NodeHandle> = (0..3).map(|_| proxy(server.addr(), 5)).collect();
    let mut peers: Vec<Peer> = proxies.iter().map(|p| Peer::connect(p.addr())).collect();
    let mut direct = Peer::connect(server.addr());
    assert_eq!(
        direct.ask("OP=PUT;IND=0,1,2,3;DATA=5,6,7,8"),
        "OP=PUT;IND=0,1,2,3;DATA=5,6,7,8;CODE=200"
    );
    for p in &mut peers {
        wait_leased(p);
        assert_eq!(p.ask("OP=GET;IND=0,1,2,3"), "OP=GET;IND=0,1,2,3;DATA=5,6,7,8;CODE=200");
        assert_eq!(num(&p.ask("OP=STS"), "CACHED"), 4);
    }
    assert_eq!(direct.ask("OP=CLR"), "OP=CLR;CODE=200");
    for p in &mut peers {
        let sts = p.ask("OP=STS");
        assert_eq!(num(&sts, "INV_RECV"), 1, "{sts}");
        assert_eq!(num(&sts, "CACHED"), 0, "one INV without IND dropped every entry: {sts}");
        assert_eq!(p.ask("OP=GET;IND=0,1,2,3"), "OP=GET;IND=0,1,2,3;DATA=0,0,0,0;CODE=200");
    }
}

#[test]
fn histories_across_proxies_and_direct_clients_are_linearizable() {
    for round in 0..20 {
        let server = server_with_lease(SIZE, 1000);
        let (pa, pb) = (proxy(server.addr(), 2), proxy(server.addr(), 2));
        for p in [&pa, &pb] {
            wait_leased(&mut Peer::connect(p.addr()));
        }
        // Six clients: two on each proxy, two straight on the server.
        let history = run_clients(&[pa.addr(), pb.addr(), server.addr()], 300 + round, 6, 14, false);
        assert_linearizable(&history, round);
    }
}

/// Binaries: a server of `SIZE` entries and `proxies` proxies (cache of
/// 2) in front of it, each leased.
fn spawn_system(proxies: usize, server_args: &[&str]) -> (Proc, Vec<Proc>) {
    let secret = secret_arg();
    let mut args = vec![
        "server",
        "--listen",
        "127.0.0.1:0",
        "--size",
        "4",
        "--grace-ms",
        "0",
        "--peer-secret-file",
        &secret,
    ];
    args.extend_from_slice(server_args);
    args.extend_from_slice(&["--log-level", "warn"]);
    let server = spawn_node(&args);
    let ps: Vec<Proc> = (0..proxies)
        .map(|_| {
            spawn_node(&[
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                &server.addr,
                "--capacity",
                "2",
                "--peer-secret-file",
                &secret,
                "--log-level",
                "warn",
            ])
        })
        .collect();
    for p in &ps {
        wait_leased(&mut Peer::connect(p.addr.parse().unwrap()));
    }
    (server, ps)
}

#[test]
fn histories_stay_linearizable_while_a_proxy_or_the_server_freezes() {
    for round in 0..6u64 {
        let (server, ps) = spawn_system(2, &[]);
        let pids = [server.pid(), ps[0].pid(), ps[1].pid()];
        let stop = Arc::new(AtomicBool::new(false));
        let freezer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(round * 7919 + 17);
                while !stop.load(Ordering::SeqCst) {
                    let pid = pids[rng.below(3) as usize];
                    signal(pid, "STOP");
                    std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
                    signal(pid, "CONT");
                    std::thread::sleep(Duration::from_millis(10 + rng.below(20)));
                }
            })
        };
        let targets: Vec<SocketAddr> = [&ps[0].addr, &ps[1].addr, &server.addr]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let history = run_clients(&targets, 400 + round, 6, 14, false);
        stop.store(true, Ordering::SeqCst);
        freezer.join().unwrap();
        for pid in pids {
            signal(pid, "CONT");
        }
        assert_linearizable(&history, round);
    }
}

#[test]
fn a_proxy_frozen_longer_than_its_lease_delays_writes_by_one_lease_and_never_serves_stale() {
    // Leases of 200 ms. Proxy B caches 1, then freezes for 3 s. A write
    // of 1 through A waits for B: B never confirms, so the server closes
    // B's connection at half a lease and waits out B's last lease. When B
    // wakes, its lease has run out: it reads what it missed, reconnects and
    // answers the new value, never the old one.
    let (server, ps) = spawn_system(2, &["--lease-ms", "200"]);
    let (mut a, mut b) = (
        Peer::connect(ps[0].addr.parse().unwrap()),
        Peer::connect(ps[1].addr.parse().unwrap()),
    );
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    ps[1].signal("STOP");
    let t = Instant::now();
    assert_eq!(a.ask("OP=PUT;IND=1;DATA=7"), "OP=PUT;IND=1;DATA=7;CODE=200");
    let waited = t.elapsed();
    // Other indices and other connections carry on meanwhile.
    assert_eq!(direct.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=7;CODE=200");
    std::thread::sleep(Duration::from_millis(3000).saturating_sub(t.elapsed()));
    ps[1].signal("CONT");
    let r = b.ask("OP=GET;IND=1");
    assert!(
        r == "OP=GET;IND=1;DATA=7;CODE=200" || r.contains("CODE=50"),
        "B must not serve the overwritten 0: {r}"
    );
    wait_until("B serves the new value", || {
        b.ask("OP=GET;IND=1") == "OP=GET;IND=1;DATA=7;CODE=200"
    });
    let sts = direct.ask("OP=STS");
    assert_eq!(num(&sts, "WRITES_DELAYED"), 1, "{sts}");
    assert_eq!(num(&sts, "LEASES_EXPIRED"), 1, "{sts}");
    // Bounded by a lease after B's last answer (plus the machine's
    // scheduling: the exact bound is unit-tested in leases.rs), never by
    // B's freeze.
    assert!(waited < Duration::from_millis(2500), "the write waited {waited:?}");
}

#[test]
fn histories_stay_linearizable_when_a_proxy_freezes_past_its_lease() {
    for round in 0..3u64 {
        let (server, ps) = spawn_system(2, &["--lease-ms", "100"]);
        let frozen = ps[1].pid();
        let stop = Arc::new(AtomicBool::new(false));
        let freezer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                    signal(frozen, "STOP");
                    std::thread::sleep(Duration::from_millis(250));
                    signal(frozen, "CONT");
                }
            })
        };
        let targets: Vec<SocketAddr> = [&ps[0].addr, &ps[1].addr, &server.addr]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        // The frozen proxy's clients may get a 502 when the server expires
        // it with their requests in flight: those requests are optional.
        let history = run_clients(&targets, 500 + round, 6, 14, true);
        stop.store(true, Ordering::SeqCst);
        freezer.join().unwrap();
        signal(frozen, "CONT");
        assert_linearizable(&history, round);
    }
}

#[test]
fn a_killed_proxy_holds_writes_for_one_lease_at_most() {
    let (server, mut ps) = spawn_system(1, &["--lease-ms", "300"]);
    let mut p = Peer::connect(ps[0].addr.parse().unwrap());
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    assert_eq!(p.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    let killed = ps.pop().unwrap();
    killed.signal("KILL");
    drop(killed);
    let t = Instant::now();
    assert_eq!(direct.ask("OP=PUT;IND=1;DATA=5"), "OP=PUT;IND=1;DATA=5;CODE=200");
    let waited = t.elapsed();
    // A write to an index it never held does not wait at all.
    assert_eq!(direct.ask("OP=PUT;IND=2;DATA=5"), "OP=PUT;IND=2;DATA=5;CODE=200");
    let sts = direct.ask("OP=STS");
    assert_eq!(num(&sts, "WRITES_DELAYED"), 1, "{sts}");
    // One lease at most (exactly: leases.rs's unit tests), plus however
    // late this machine runs the server's timer.
    assert!(num(&sts, "DELAY_MAX_US") < 300_000 + 2_000_000, "{sts}");
    assert!(waited < patience(), "waited {waited:?}");
}

#[test]
fn a_restarted_server_lets_no_write_through_while_an_old_lease_may_run() {
    // Proxy P caches 1=3 and freezes. The server dies and a new one starts
    // on its address (grace: one lease). A write to the new server waits
    // out the grace, so that when P wakes its lease has run out and it
    // never answers the 3 the write replaced.
    let server = spawn_node(&server_args(&["--lease-ms", "1500"]));
    let addr = server.addr.clone();
    let p = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &addr,
        "--log-level",
        "warn",
    ]);
    let mut c = Peer::connect(p.addr.parse().unwrap());
    wait_leased(&mut c);
    assert_eq!(c.ask("OP=PUT;IND=1;DATA=3"), "OP=PUT;IND=1;DATA=3;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=3;CODE=200");
    p.signal("STOP");
    let frozen_at = Instant::now();
    drop(server); // SIGKILL
    let server2 = spawn_node(&["server", "--listen", &addr, "--lease-ms", "1500", "--log-level", "warn"]);
    let mut direct = Peer::connect(server2.addr.parse().unwrap());
    assert_eq!(direct.ask("OP=PUT;IND=1;DATA=4"), "OP=PUT;IND=1;DATA=4;CODE=200");
    assert!(
        frozen_at.elapsed() >= Duration::from_millis(1500),
        "the write waited out the grace"
    );
    p.signal("CONT");
    let r = c.ask("OP=GET;IND=1");
    assert!(
        r == "OP=GET;IND=1;DATA=4;CODE=200" || r.contains("CODE=50"),
        "stale after restart: {r}"
    );
    wait_until("P serves the new server's value", || {
        c.ask("OP=GET;IND=1") == "OP=GET;IND=1;DATA=4;CODE=200"
    });
    assert_eq!(num(&direct.ask("OP=STS"), "WRITES_DELAYED"), 1);
}

/// A longer check, and a tool for whoever changes the rules: 40 random
/// rounds over two proxies (`A`, `B`) and direct clients (`S`), counting
/// the rounds that are not linearizable, printing the first one shrunk to
/// the reads no order explains; with leases every round must be. Ignored
/// for its length (a minute). `LEASE_MS=0` runs it without leases (then
/// it only counts: what the invalidations prevent); `TARGETS` picks where
/// the six clients go (`ABS`, `AB`, `AABB`...); `TRACE=1` logs every event.
///
/// `LEASE_MS=0 cargo test --test coherence explore_rounds -- --ignored --nocapture`
#[test]
#[ignore]
fn explore_rounds() {
    let which = std::env::var("TARGETS").unwrap_or("ABS".into());
    let lease: u64 = std::env::var("LEASE_MS").map(|v| v.parse().unwrap()).unwrap_or(1000);
    if std::env::var("TRACE").is_ok() {
        tablecache::trace::init_logging(log::LevelFilter::Trace);
    }
    let mut fails = 0;
    for round in 0..40 {
        eprintln!("ROUND {round} START");
        let server = server_with_lease(SIZE, lease);
        let (pa, pb) = (proxy(server.addr(), 2), proxy(server.addr(), 2));
        for p in [&pa, &pb] {
            if lease > 0 {
                wait_leased(&mut Peer::connect(p.addr()));
            }
        }
        let targets: Vec<SocketAddr> = which
            .chars()
            .map(|c| match c {
                'A' => pa.addr(),
                'B' => pb.addr(),
                _ => server.addr(),
            })
            .collect();
        let history = run_clients(&targets, 300 + round, 6, 14, false);
        if !linearizable(&history) {
            fails += 1;
            if fails == 1 {
                eprintln!("ROUND {round} FAILED\n{}", describe(&shrink(&history)));
            }
        }
    }
    eprintln!("{which} with leases of {lease} ms: {fails} of 40 rounds not linearizable");
    assert!(lease == 0 || fails == 0, "{fails} rounds not linearizable with leases");
}

/// A raw connection holding a lease of the server's, holding `ind` (as a
/// proxy that fetched it).
fn holder_of(server: &NodeHandle, ind: &str) -> Peer {
    let mut h = Peer::connect(server.addr());
    assert!(h.ask(&format!("OP=LEASE;KEY={SECRET}")).ends_with(";CODE=200"));
    assert!(h.ask(&format!("OP=GET;IND={ind}")).ends_with(";CODE=200"));
    h
}

#[test]
fn a_writer_that_half_closes_still_gets_the_reply_its_write_waits_for() {
    let server = server_with_lease(10, 60_000);
    let mut holder = holder_of(&server, "1");
    let mut w = Peer::connect(server.addr());
    w.send(b"OP=PUT;IND=1;DATA=5\n");
    w.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(holder.line(), "OP=INV;SEQ=1;IND=1");
    // Meanwhile a direct reader sees the table before the write, and no
    // NOCACHE: that is for proxies, which keep what they read.
    let mut r = Peer::connect(server.addr());
    assert_eq!(r.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(holder.ask("OP=ACK;SEQ=1"), "OP=ACK;SEQ=1;CODE=200");
    assert_eq!(w.line(), "OP=PUT;IND=1;DATA=5;CODE=200", "answered, then closed");
    assert!(w.closed_by_peer());
    assert_eq!(r.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
}

#[test]
fn a_connection_behind_a_waiting_write_is_read_no_further_than_its_byte_budget() {
    // Requests behind a write that waits are read and queued, as the bytes
    // they came as, but not without end: past BACKLOG_MAX_BYTES the server
    // stops reading the connection, and reads on once the write is
    // applied. Every request is answered, in order.
    let server = server_with_lease(10, 60_000);
    let mut holder = holder_of(&server, "1");
    let mut w = Peer::connect(server.addr());
    // Each queued GET takes its 12 bytes and a 9-byte header, in chunks:
    // the one that makes the queue allocate its last chunk is the last read.
    use tablecache::server::{BACKLOG_CHUNK_BYTES, BACKLOG_MAX_BYTES};
    let queued = (BACKLOG_MAX_BYTES - BACKLOG_CHUNK_BYTES) / (12 + 9) + 1;
    let n = queued + 50_000;
    let mut out = w.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        out.write_all(b"OP=PUT;IND=1;DATA=5\n").unwrap();
        out.write_all(&b"OP=GET;IND=2\n".repeat(n)).unwrap();
    });
    assert_eq!(holder.line(), "OP=INV;SEQ=1;IND=1");
    let mut probe = Peer::connect(server.addr());
    wait_until("the writer's connection paused", || {
        num(&probe.ask("OP=STS"), "PAUSED") >= 1
    });
    // Paused at the budget exactly: the holder's GET, then what fits.
    assert_eq!(num(&probe.ask("OP=STS"), "GET"), 1 + queued as u64);
    assert_eq!(holder.ask("OP=ACK;SEQ=1"), "OP=ACK;SEQ=1;CODE=200");
    assert_eq!(w.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
    for i in 0..n {
        let got = w.line();
        assert_eq!(got, "OP=GET;IND=2;DATA=0;CODE=200", "reply {i}");
    }
    writer.join().unwrap();
    assert_eq!(num(&probe.ask("OP=STS"), "GET"), 1 + n as u64, "read on to the end");
}

#[test]
fn a_resuming_proxy_keeps_its_cache_only_if_nothing_changed() {
    let server = server_with_lease(10, 60_000);
    let mut p = Peer::connect(server.addr());
    let table = |p: &mut Peer| {
        let sts = p.ask("OP=STS");
        (field(&sts, "DATA_ID").unwrap(), num(&sts, "WRITE_SEQ"))
    };
    let keep = |ask: &str| {
        let r = Peer::connect(server.addr()).ask(&format!("{ask};KEY={SECRET}"));
        assert!(r.ends_with(";CODE=200"), "{ask} -> {r}");
        field(&r, "KEEP").unwrap_or_else(|| panic!("{ask} -> {r}"))
    };
    // A write waits on index 1 (held by another proxy): not kept, though
    // nothing was applied yet.
    let (id, seq) = table(&mut p);
    let mut holder = holder_of(&server, "1");
    let mut w = Peer::connect(server.addr());
    w.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(holder.line(), "OP=INV;SEQ=1;IND=1");
    assert_eq!(
        keep(&format!("OP=LEASE;IND=1,2;ID={id};SEQ={seq}")),
        "0",
        "a write waits on 1"
    );
    assert_eq!(holder.ask("OP=ACK;SEQ=1"), "OP=ACK;SEQ=1;CODE=200");
    assert_eq!(w.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
    // Now nothing waits. (A resumer that is kept holds its indices: its
    // connection closing would hold writes to them for a lease, so that
    // case comes last.)
    let (id, seq) = table(&mut p);
    let other = format!("{:016x}", u64::from_str_radix(&id, 16).unwrap() ^ 1);
    assert_eq!(
        keep(&format!("OP=LEASE;IND=1,2;ID={other};SEQ={seq}")),
        "0",
        "another table"
    );
    assert_eq!(
        keep(&format!("OP=LEASE;IND=1,2;ID={id};SEQ={}", seq - 1)),
        "0",
        "other writes"
    );
    assert_eq!(
        keep(&format!("OP=LEASE;IND=1,99;ID={id};SEQ={seq}")),
        "0",
        "not this table's index"
    );
    assert_eq!(keep(&format!("OP=LEASE;IND=1,2;ID={id};SEQ={seq}")), "1");
}

#[test]
fn a_confirmation_forgets_only_the_entries_it_confirms() {
    // TRACKED counts the entries the server tracks for proxies. An ACK of
    // SEQ n forgets an entry only if n is its latest invalidation: one held
    // again since, or invalidated again since, stays tracked. A write whose
    // connection closes while it waits is dropped, never applied.
    let server = server_with_lease(10, 60_000);
    let mut direct = Peer::connect(server.addr());
    assert!(direct.ask("OP=PUT;IND=1,2,3;DATA=1,2,3").ends_with("CODE=200"));
    let tracked = |p: &mut Peer| num(&p.ask("OP=STS"), "TRACKED");
    let mut holder = holder_of(&server, "1,2,3");
    assert_eq!(tracked(&mut direct), 3);
    // A CLR waits on the holder; its writer leaves before it is applied,
    // resetting the connection (closed with its STS reply unread: a FIN
    // alone would still be answered).
    let mut w1 = Peer::connect(server.addr());
    w1.send(b"OP=STS\nOP=CLR\n");
    assert_eq!(holder.line(), "OP=INV;SEQ=1");
    w1.stream.peek(&mut [0u8; 1]).unwrap();
    drop(w1);
    wait_until("the CLR is dropped", || {
        num(&direct.ask("OP=STS"), "WRITES_WAITING") == 0
    });
    // 1 is held again (no write waits on it now), then written again.
    assert_eq!(holder.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=1;CODE=200");
    let mut w2 = Peer::connect(server.addr());
    w2.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(holder.line(), "OP=INV;SEQ=2;IND=1");
    // 2 is held again too, and stays so.
    assert_eq!(holder.ask("OP=GET;IND=2"), "OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(holder.ask("OP=ACK;SEQ=1"), "OP=ACK;SEQ=1;CODE=200");
    assert_eq!(tracked(&mut direct), 2, "3 forgotten; 1 waits for SEQ 2; 2 held");
    assert_eq!(holder.ask("OP=ACK;SEQ=2"), "OP=ACK;SEQ=2;CODE=200");
    assert_eq!(w2.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
    assert_eq!(tracked(&mut direct), 1, "1 forgotten, 2 held");
    // Nothing waits on 1 any more: the holder may keep it (no NOCACHE).
    assert_eq!(holder.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(
        direct.ask("OP=GET;IND=1,2,3"),
        "OP=GET;IND=1,2,3;DATA=5,2,3;CODE=200",
        "the CLR was never applied"
    );
    assert_eq!(tracked(&mut direct), 2);
    drop(holder);
    wait_until("the holder's entries are forgotten", || tracked(&mut direct) == 0);
}

#[test]
fn a_clr_waits_out_the_lease_of_a_proxy_that_left_holding_entries() {
    // A proxy whose connection closed may still serve what it held until
    // its last lease runs out: a CLR, which names no index, waits for that
    // too. (A lease of 3 s: the server must still remember the proxy when
    // the CLR arrives.)
    let server = server_with_lease(10, 3000);
    let mut h = Peer::connect(server.addr());
    assert!(h.ask(&format!("OP=LEASE;KEY={SECRET}")).ends_with(";CODE=200"));
    let asked = Instant::now(); // its last lease runs from after this
    assert!(h.ask("OP=GET;IND=1").ends_with(";CODE=200"));
    drop(h);
    let mut direct = Peer::connect(server.addr());
    wait_until("the server saw it leave", || num(&direct.ask("OP=STS"), "PROXIES") == 0);
    assert_eq!(direct.ask("OP=CLR"), "OP=CLR;CODE=200");
    assert!(
        asked.elapsed() >= Duration::from_millis(3000),
        "applied {:?} after the lease began",
        asked.elapsed()
    );
    assert_eq!(num(&direct.ask("OP=STS"), "WRITES_DELAYED"), 1);
}

#[test]
fn a_write_waits_for_no_proxy_that_holds_none_of_its_indices() {
    // A holds 1, B holds 2. A PUT to 1 waits for A's ACK only: B leaving
    // meanwhile (its last lease runs for a minute) does not hold it up.
    let server = server_with_lease(10, 60_000);
    let mut a = holder_of(&server, "1");
    let b = holder_of(&server, "2");
    let mut w = Peer::connect(server.addr());
    w.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(a.line(), "OP=INV;SEQ=1;IND=1");
    drop(b);
    let mut direct = Peer::connect(server.addr());
    wait_until("B is gone", || num(&direct.ask("OP=STS"), "PROXIES") == 1);
    assert_eq!(a.ask("OP=ACK;SEQ=1"), "OP=ACK;SEQ=1;CODE=200");
    assert_eq!(w.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
}

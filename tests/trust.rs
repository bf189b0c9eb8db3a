//! Coherence is only for trusted peers, and nothing a peer does makes a
//! node hold more than a stated number of bytes (docs/coherence.md,
//! "Trust"; docs/architecture.md, "Limits"): an ordinary client cannot
//! hold a lease or slow a writer; a refused proxy keeps nothing it cannot
//! be told about; requests behind a parked write, departed proxies and
//! tracking are bounded; every connection past the descriptor limit is
//! answered or closed.

mod common;
use common::*;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tablecache::proxy::ProxyConfig;
use tablecache::server::{Server, ServerConfig};
use tablecache::NodeHandle;

fn num(sts: &str, key: &str) -> u64 {
    field(sts, key)
        .unwrap_or_else(|| panic!("no {key} in {sts}"))
        .parse()
        .unwrap()
}

fn server(cfg: ServerConfig) -> NodeHandle {
    server_node(cfg)
}

fn proxy(upstream: SocketAddr, secret: bool) -> NodeHandle {
    proxy_node(ProxyConfig {
        peer_secret_file: secret.then(secret_file),
        ..proxy_to(upstream, 10)
    })
}

/// The tests here measure rates and memory: one at a time, so that no
/// other test of this file shares the two cores with them.
fn alone() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The time `n` direct PUTs take (to every index in turn).
fn put_time(w: &mut Peer, n: usize) -> Duration {
    let t = Instant::now();
    for k in 0..n {
        let i = k % 10;
        let r = w.ask(&format!("OP=PUT;IND={i};DATA={k}"));
        assert!(r.ends_with(";CODE=200"), "{r}");
    }
    t.elapsed()
}

/// Compares a rate with `f` done before each of its chunks against the
/// same without it, in finely interleaved chunks (noise from the rest of
/// the machine then falls on both alike): true if with it the rate is at
/// least `ratio` of the rate without, in one of three tries (a real
/// slowdown fails all three: a write that waited would take a lease).
fn keeps_rate(ratio: f64, mut chunk: impl FnMut(bool) -> Duration) -> Result<(), String> {
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (mut with, mut without) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..20 {
            without += chunk(false);
            with += chunk(true);
        }
        let r = without.as_secs_f64() / with.as_secs_f64();
        if r >= ratio {
            return Ok(());
        }
        seen.push(r);
    }
    Err(format!("rate with / without: {seen:?}, wanted {ratio}"))
}

#[test]
fn a_connection_without_the_secret_holds_no_lease_and_never_slows_a_writer() {
    let _alone = alone();
    let s = server(ServerConfig {
        size: 10,
        peer_secret_file: Some(secret_file()),
        ..Default::default()
    });
    let mut evil = Peer::connect(s.addr());
    let r = evil.ask("OP=LEASE");
    assert_eq!(
        r,
        "OP=LEASE;CODE=403;MSG=not a trusted peer: LEASE needs KEY, the peer secret"
    );
    let r = evil.ask("OP=LEASE;KEY=tests-0123456789-abcdeF");
    assert_eq!(r, "OP=LEASE;CODE=403;MSG=not a trusted peer: wrong KEY");
    let r = evil.ask("OP=ACK;SEQ=1");
    assert_eq!(r, "OP=ACK;CODE=403;MSG=ACK from a connection that holds no lease");
    // Served as an ordinary client: it reads everything, confirms nothing.
    assert_eq!(
        evil.ask("OP=GET;IND=0,1,2,3,4,5,6,7,8,9"),
        "OP=GET;IND=0,1,2,3,4,5,6,7,8,9;DATA=0,0,0,0,0,0,0,0,0,0;CODE=200"
    );
    let mut w = Peer::connect(s.addr());
    let sts = w.ask("OP=STS");
    assert_eq!((num(&sts, "PROXIES"), num(&sts, "TRACKED")), (0, 0), "{sts}");
    assert_eq!(num(&sts, "LEASES_REFUSED"), 2, "{sts}");
    // Writes with such a connection and without it, interleaved: the same
    // rate, and none waits.
    let addr = s.addr();
    keeps_rate(0.9, |with| {
        let mut e = with.then(|| Peer::connect(addr));
        if let Some(e) = e.as_mut() {
            assert!(e.ask("OP=LEASE").contains(";CODE=403;"));
            assert!(e.ask("OP=GET;IND=0,1,2,3,4,5,6,7,8,9").ends_with(";CODE=200"));
        }
        put_time(&mut w, 100)
    })
    .unwrap();
    assert_eq!(num(&w.ask("OP=STS"), "WRITES_DELAYED"), 0);
    // The proxy that has the secret is granted; one without it is not,
    // and reads nothing from its cache.
    let good = proxy(s.addr(), true);
    wait_leased(&mut Peer::connect(good.addr()));
    let bad = proxy(s.addr(), false);
    let mut c = Peer::connect(bad.addr());
    wait_until("the proxy without the secret refused", || {
        field(&c.ask("OP=STS"), "LEASE_STATE").as_deref() == Some("refused")
    });
    for _ in 0..3 {
        assert!(c.ask("OP=GET;IND=1").ends_with(";CODE=200"));
    }
    let sts = c.ask("OP=STS");
    assert_eq!((num(&sts, "HITS"), num(&sts, "LEASE_MS")), (0, 0), "{sts}");
    assert!(num(&sts, "LEASE_REFUSED") >= 1, "{sts}");
    assert_eq!(num(&w.ask("OP=STS"), "PROXIES"), 1);
}

/// A local address of this host other than loopback, if it has one (the
/// address a packet to the outside would leave from; nothing is sent).
fn outside_addr() -> Option<std::net::IpAddr> {
    let u = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    u.connect("192.0.2.77:9").or_else(|_| u.connect("203.0.113.1:9")).ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn without_a_secret_only_loopback_peers_hold_leases() {
    let _alone = alone();
    let s = Server::bind(ServerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        size: 10,
        grace: Duration::ZERO,
        ..Default::default()
    })
    .unwrap()
    .spawn()
    .unwrap();
    let port = s.addr().port();
    let mut local = Peer::connect(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(local.ask("OP=LEASE").starts_with("OP=LEASE;MS=1000;"));
    // This machine's other address: a peer from the network.
    let ip = outside_addr().expect("this host has a non-loopback address");
    let mut remote = Peer::connect(SocketAddr::new(ip, port));
    assert_eq!(
        remote.ask("OP=LEASE"),
        "OP=LEASE;CODE=403;MSG=not a trusted peer: without --peer-secret-file only loopback peers hold leases"
    );
    assert_eq!(remote.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(num(&local.ask("OP=STS"), "PROXIES"), 1);
}

#[test]
fn the_secret_never_shows_in_a_trace_a_log_or_sts() {
    let _alone = alone();
    let dir_tmp = TempDir::new("trust-trace");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let (slog, plog) = (dir.join("server.log"), dir.join("proxy.log"));
    let secret = secret_arg();
    let server = spawn_node_logging(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--grace-ms",
            "0",
            "--peer-secret-file",
            &secret,
            "--trace",
        ],
        log_to(&slog),
    );
    let proxy = spawn_node_logging(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &server.addr,
            "--peer-secret-file",
            &secret,
            "--trace",
        ],
        log_to(&plog),
    );
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    assert!(c.ask("OP=GET;IND=1").ends_with(";CODE=200"));
    let sts = Peer::connect(server.addr.parse().unwrap()).ask("OP=STS");
    drop((proxy, server));
    let (s, p) = (
        std::fs::read_to_string(&slog).unwrap(),
        std::fs::read_to_string(&plog).unwrap(),
    );
    assert!(
        s.contains("OP=LEASE;KEY=(hidden)"),
        "the server traced the LEASE, hidden:\n{s}"
    );
    for text in [&s, &p, &sts] {
        assert!(!text.contains(SECRET), "the secret leaked:\n{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_proxy_with_the_wrong_secret_is_told_why_and_the_server_says_so_once() {
    let _alone = alone();
    let dir_tmp = TempDir::new("trust-wrong");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let (slog, plog, wrong) = (dir.join("server.log"), dir.join("proxy.log"), dir.join("wrong"));
    std::fs::write(&wrong, "another-secret-0123456789\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let secret = secret_arg();
    let server = spawn_node_logging(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--grace-ms",
            "0",
            "--peer-secret-file",
            &secret,
        ],
        log_to(&slog),
    );
    let proxy = spawn_node_logging(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &server.addr,
            "--peer-secret-file",
            wrong.to_str().unwrap(),
        ],
        log_to(&plog),
    );
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    // Refused, then asked again at least twice: still one line each.
    wait_until("refused three times", || num(&c.ask("OP=STS"), "LEASE_REFUSED") >= 3);
    drop((proxy, server));
    let (s, p) = (
        std::fs::read_to_string(&slog).unwrap(),
        std::fs::read_to_string(&plog).unwrap(),
    );
    let said = |log: &str, what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(said(&s, "LEASE refused, not a trusted peer: wrong KEY"), 1, "{s}");
    assert_eq!(
        said(&p, "refuses this proxy a lease (not a trusted peer: wrong KEY)"),
        1,
        "{p}"
    );
    assert!(p.contains("other users may read it"), "the wrong file is 0644: {p}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_refused_proxy_is_granted_when_a_slot_frees_and_never_serves_an_old_value() {
    let _alone = alone();
    let s = server(ServerConfig {
        size: 10,
        max_proxies: 1,
        ..Default::default()
    });
    let a = proxy(s.addr(), false);
    wait_leased(&mut Peer::connect(a.addr()));
    let b = proxy(s.addr(), false);
    let mut probe = Peer::connect(b.addr());
    wait_until("B refused", || {
        field(&probe.ask("OP=STS"), "LEASE_STATE").as_deref() == Some("refused")
    });
    // B is busy all along: a client reads index 0 through it without a
    // pause, and checks each value against the last acknowledged write.
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (acked, stop, addr) = (acked.clone(), stop.clone(), b.addr());
        std::thread::spawn(move || {
            let mut c = Peer::connect(addr);
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let before = acked.load(Ordering::SeqCst);
                let r = c.ask("OP=GET;IND=0");
                let v: u64 = field(&r, "DATA").unwrap().parse().unwrap();
                assert!(v >= before, "read {v} after {before} was acknowledged");
                reads += 1;
            }
            reads
        })
    };
    // While refused it reads from the server (its cache keeps nothing).
    wait_until("B busy", || num(&probe.ask("OP=STS"), "MISSES") >= 50);
    assert_eq!(num(&probe.ask("OP=STS"), "HITS"), 0);
    drop(a); // A leaves: its slot frees
    wait_until("B granted, busy as it is", || {
        num(&probe.ask("OP=STS"), "LEASE_MS") == 1000
    });
    wait_until("B serves hits", || num(&probe.ask("OP=STS"), "HITS") >= 20);
    // A direct write: acknowledged, then B never answers the old value.
    let mut w = Peer::connect(s.addr());
    assert_eq!(w.ask("OP=PUT;IND=0;DATA=42"), "OP=PUT;IND=0;DATA=42;CODE=200");
    acked.store(42, Ordering::SeqCst);
    let mut c = Peer::connect(b.addr());
    for _ in 0..20 {
        assert_eq!(c.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=42;CODE=200");
    }
    stop.store(true, Ordering::SeqCst);
    assert!(reader.join().expect("no stale read") > 0);
}

/// A server binary (a fresh system: no grace; warnings only) with `extra`
/// flags.
fn server_bin(extra: &[&str]) -> Proc {
    spawn_node(&server_args(extra))
}

/// The server's STS, asked on a new connection.
fn server_sts(addr: &str) -> String {
    Peer::connect(addr.parse().unwrap()).ask("OP=STS")
}

#[test]
fn requests_behind_a_parked_write_cost_the_server_a_bounded_number_of_bytes() {
    let _alone = alone();
    // A proxy holds index 1 and freezes; a direct PUT of 1 parks; 20 MB of
    // the longest GETs (64 KB) pipelined behind it, five times the budget.
    // The server holds at most its byte budget of them (4 MiB) and stops
    // reading; once the write goes, it answers them no faster than the
    // writer reads (its output limit). Before the bound, 50 MB of them
    // made it hold 200 MB, and 330 MB answering.
    let (server, proxy) = spawn_server_and_proxy_with(&["--lease-ms", "10000"], &[]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    assert!(c.ask("OP=GET;IND=1").ends_with(";CODE=200"));
    proxy.signal("STOP");
    let base = server.rss_kib();
    let mut w = Peer::connect(server.addr.parse().unwrap());
    let ind: Vec<String> = (0..32_000).map(|i| (i % 10).to_string()).collect();
    let get = format!("OP=GET;IND={}\n", ind.join(","));
    assert!(get.len() < 65_536);
    let n = 20_000_000 / get.len() / 10 * 10;
    let mut out = w.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        out.write_all(b"OP=PUT;IND=1;DATA=5\n").unwrap();
        let batch = get.repeat(10);
        for _ in 0..n / 10 {
            out.write_all(batch.as_bytes()).unwrap();
        }
    });
    wait_until("the writer paused", || num(&server_sts(&server.addr), "PAUSED") >= 1);
    let held = server.rss_kib().saturating_sub(base);
    eprintln!("the server grew by {held} KiB holding the backlog");
    const BOUND_KIB: u64 = 8 << 10;
    assert!(held < BOUND_KIB, "the server grew by {held} KiB holding the backlog");
    // Released: the replies (about 40 MB) leave as the writer reads.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (peak.clone(), done.clone(), server.pid());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    proxy.signal("CONT");
    assert_eq!(w.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        w.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with(";CODE=200\n"), "reply {i}");
    }
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    writer.join().unwrap();
    let grew = peak.load(Ordering::SeqCst).saturating_sub(base);
    eprintln!("the server grew by {grew} KiB at most answering the backlog");
    assert!(grew < BOUND_KIB, "the server grew by {grew} KiB answering the backlog");
}

#[test]
fn clients_without_a_lease_share_one_budget_behind_parked_writes() {
    let _alone = alone();
    // Thirty clients, none a proxy, each with a write parked behind a
    // holder that never confirms, each pipelining 8 MB of the longest GETs
    // behind it: past 64 MiB together the server reads none of them
    // further (each may finish the message it was reading).
    let server = server_bin(&["--lease-ms", "10000"]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let mut holder = Peer::connect(addr);
    assert!(holder.ask("OP=LEASE").ends_with(";CODE=200"));
    assert!(holder.ask("OP=GET;IND=1").ends_with(";CODE=200"));
    let base = server.rss_kib();
    let ind: Vec<String> = (0..32_000).map(|i| (i % 10).to_string()).collect();
    let batch = format!("OP=GET;IND={}\n", ind.join(",")).repeat(8);
    let writers: Vec<(TcpStream, std::thread::JoinHandle<()>)> = (0..30)
        .map(|k| {
            let s = TcpStream::connect(addr).unwrap();
            let mut out = s.try_clone().unwrap();
            let batch = batch.clone();
            let t = std::thread::spawn(move || {
                let _ = out.write_all(format!("OP=PUT;IND=1;DATA={k}\n").as_bytes());
                for _ in 0..16 {
                    if out.write_all(batch.as_bytes()).is_err() {
                        return; // shut at the end of the test
                    }
                }
            });
            (s, t)
        })
        .collect();
    wait_until("every writer paused", || num(&server_sts(&server.addr), "PAUSED") >= 30);
    let grew = server.rss_kib().saturating_sub(base);
    // 64 MiB, and per writer a message read past it and its buffers.
    eprintln!("the server grew by {grew} KiB for 30 writers");
    assert!(grew < 96 << 10, "the server grew by {grew} KiB for 30 writers");
    for (s, t) in writers {
        let _ = s.shutdown(std::net::Shutdown::Both);
        t.join().unwrap();
    }
}

#[test]
fn churning_proxies_neither_slow_writes_to_what_they_never_read_nor_grow_memory() {
    let _alone = alone();
    // Proxies that lease, read 1,100 indices of 4,096 and vanish, over and
    // over (from the server's side a kill -9 is this close). Each leaves
    // its indices blocked for a lease; a write to an index none of them
    // read must not wait, and what they leave behind has a byte bound.
    let server = server_bin(&["--size", "4096"]);
    let addr: SocketAddr = server.addr.parse().unwrap();
    let base = server.rss_kib();
    let churning = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let churns = Arc::new(AtomicU64::new(0));
    let churner = {
        let (churning, stop, churns) = (churning.clone(), stop.clone(), churns.clone());
        std::thread::spawn(move || {
            let ind: Vec<String> = (0..1100).map(|i| i.to_string()).collect();
            let ask = format!("OP=LEASE\nOP=GET;IND={}\n", ind.join(","));
            while !stop.load(Ordering::SeqCst) {
                if !churning.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let mut p = Peer::connect(addr);
                p.send(ask.as_bytes());
                assert!(p.line().starts_with("OP=LEASE;MS="));
                assert!(p.line().ends_with(";CODE=200"));
                drop(p);
                churns.fetch_add(1, Ordering::SeqCst);
                // A hundred proxies a second: far more churn than starting
                // processes gives, not a flood that measures the CPU.
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut w = Peer::connect(addr);
    let mut k = 0u64;
    let verdict = keeps_rate(0.5, |with| {
        churning.store(with, Ordering::SeqCst);
        if with {
            // A proxy has just gone: its indices are blocked for a lease
            // while the writes below are timed.
            let c0 = churns.load(Ordering::SeqCst);
            wait_until("a proxy churned", || churns.load(Ordering::SeqCst) > c0);
        }
        let t = Instant::now();
        for _ in 0..300 {
            k += 1;
            assert!(w.ask(&format!("OP=PUT;IND=4000;DATA={k}")).ends_with(";CODE=200"));
        }
        t.elapsed()
    });
    churning.store(false, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    churner.join().unwrap();
    let n = churns.load(Ordering::SeqCst);
    assert!(n >= 20, "only {n} proxies churned");
    verdict.unwrap();
    let sts = server_sts(&server.addr);
    assert_eq!(num(&sts, "WRITES_DELAYED"), 0, "no write to 4000 waited: {sts}");
    assert!(num(&sts, "DEPARTED_BYTES") <= tablecache::server::departed::DEPARTED_BYTES_MAX as u64);
    let grew = server.rss_kib().saturating_sub(base);
    assert!(grew < 32 << 10, "the server grew by {grew} KiB after {n} churns: {sts}");
}

/// Hit ratio of a Zipf run through a proxy of 60,000 entries in front of
/// a 300,000-entry server, with leases or without: more than 65,536 distinct
/// indices miss, past the server's default tracking bound.
fn zipf_hit_ratio(leases: bool) -> (f64, String) {
    // The default bound scaled down by ten, with the table and the cache:
    // the same shape, a tenth of the requests.
    let mut args = vec!["--size", "30000", "--max-tracked", "6554"];
    if !leases {
        args.extend_from_slice(&["--lease-ms", "0"]);
    }
    let (server, proxy) = spawn_server_and_proxy_with(&args, &["--capacity", "6000"]);
    if leases {
        wait_leased(&mut Peer::connect(proxy.addr.parse().unwrap()));
    }
    let out = Command::new(BIN)
        .args(["bench", "--connect", &proxy.addr, "-n", "100000", "-c", "4", "-P", "16"])
        .args(["--keys", "30000", "--dist", "zipf:0.9", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = Peer::connect(proxy.addr.parse().unwrap()).ask("OP=STS");
    let (hits, misses) = (num(&p, "HITS") as f64, num(&p, "MISSES") as f64);
    (hits / (hits + misses), server_sts(&server.addr))
}

#[test]
fn a_proxy_past_the_tracking_bound_keeps_most_of_its_cache() {
    let _alone = alone();
    let (tracked, sts) = zipf_hit_ratio(true);
    assert!(num(&sts, "LEASE_OVERFLOWS") > 0, "the bound was reached: {sts}");
    let (alone, _) = zipf_hit_ratio(false);
    assert!(
        tracked >= 0.95 * alone,
        "hit ratio {tracked:.4} tracked, {alone:.4} without leases"
    );
}

/// A node binary started under `ulimit -n 64`.
fn spawn_limited(args: &[&str]) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args(args)
        .stderr(Stdio::null());
    spawn_command(cmd)
}

/// Where a node's log goes: a new file at `path`.
fn log_to(path: &std::path::Path) -> Stdio {
    Stdio::from(std::fs::File::create(path).unwrap())
}

/// Opens 200 connections to `addr`, sends a GET on each, and checks that
/// every one is answered (200 or 503) or closed: none left silent.
fn none_silent(addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut conns = Vec::new();
    for _ in 0..200 {
        let s = TcpStream::connect_timeout(&addr, patience()).expect("connect");
        s.set_read_timeout(Some(patience())).unwrap();
        let _ = (&s).write_all(b"OP=GET;IND=1\n");
        conns.push(s);
    }
    let (mut ok, mut refused, mut closed) = (0, 0, 0);
    for (i, s) in conns.iter_mut().enumerate() {
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Ok(n) => {
                let r = String::from_utf8_lossy(&buf[..n]);
                if r.contains("CODE=200") {
                    ok += 1;
                } else {
                    assert!(r.contains("CODE=503"), "connection {i}: {r}");
                    refused += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!("connection {i} left silent: {e} ({ok} answered, {refused} refused)"),
        }
    }
    assert!(ok >= 1, "{ok} answered, {refused} refused, {closed} closed");
}

#[test]
fn under_an_open_file_limit_of_64_every_connection_is_answered_or_closed() {
    let _alone = alone();
    let server = spawn_limited(&server_args(&[]));
    none_silent(&server.addr);
    let proxy = spawn_limited(&proxy_args(&server.addr, &[]));
    none_silent(&proxy.addr);
}

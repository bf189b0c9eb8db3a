//! Abuse and faults: connection limits, idle and slowloris peers, a client
//! that never reads, a frozen or killed server behind the proxy, random
//! bytes, and graceful stop on SIGTERM.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use tablecache::frontend::Limits;

#[test]
fn the_connection_limit_holds_and_room_comes_back() {
    let node = start_server_with(
        10,
        Limits {
            max_connections: 3,
            ..Default::default()
        },
    );
    let mut held: Vec<Peer> = (0..3).map(|_| Peer::connect(node.addr())).collect();
    for p in &mut held {
        assert_eq!(p.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    }
    // The fourth is accepted, told why, and closed; the others go on.
    let mut extra = Peer::connect(node.addr());
    assert_eq!(extra.line(), "CODE=503;MSG=too many connections");
    assert!(extra.closed_by_peer());
    assert_eq!(held[0].ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    // Closing one gives its room back.
    drop(held.pop());
    wait_until("a slot frees up", || {
        let mut p = Peer::connect(node.addr());
        p.ask("OP=GET;IND=2") == "OP=GET;IND=2;DATA=0;CODE=200"
    });
    let sts = held[0].ask("OP=STS");
    assert!(field(&sts, "REJECTED").unwrap().parse::<u64>().unwrap() >= 1, "{sts}");
}

#[test]
fn idle_and_half_sent_connections_are_closed_after_the_timeout() {
    let idle_ms = 1000;
    let node = start_server_with(
        10,
        Limits {
            idle_timeout: Duration::from_millis(idle_ms),
            ..Default::default()
        },
    );
    let t0 = Instant::now();
    let mut idle = Peer::connect(node.addr());
    // Slowloris: a line connection stuck halfway through its second message.
    let mut slow = Peer::connect(node.addr());
    assert_eq!(slow.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    slow.send(b"OP=GET;IN"); // and never the rest
                             // Not closed early: a read finds nothing (the peer is still there).
    idle.stream.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut idle.stream, &mut byte);
    assert!(
        early.is_err() || t0.elapsed() >= Duration::from_millis(idle_ms),
        "closed before the timeout: {early:?}"
    );
    idle.stream.set_read_timeout(Some(patience())).unwrap();
    // A connection that keeps sending whole messages stays open.
    let mut busy = Peer::connect(node.addr());
    while t0.elapsed() < Duration::from_millis(idle_ms * 5 / 2) {
        assert_eq!(busy.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(idle.closed_by_peer(), "the idle connection is closed");
    assert!(slow.closed_by_peer(), "the half-sent connection is closed");
    assert_eq!(busy.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    let sts = busy.ask("OP=STS");
    assert_eq!(field(&sts, "IDLE_CLOSED").as_deref(), Some("2"), "{sts}");
}

/// Sends `n` GETs (from a thread of its own) without reading a single
/// reply; the node must stop reading from us rather than buffer our
/// replies without bound. The socket's receive buffer is small (set before
/// connecting, so the window it advertises stays small), and `n` replies
/// are more than the node's kernel will take (its send buffer grows to
/// 4 MiB here): otherwise the kernels could hold them all, and a node that
/// writes between reads would never need to pause. The thread ends once
/// every request is written, which may take the replies being read.
fn flood_without_reading(addr: &str, n: usize) -> (TcpStream, std::thread::JoinHandle<()>) {
    use socket2::{Domain, Socket, Type};
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let batch: Vec<u8> = b"OP=GET;IND=1\n".repeat(1000);
        for _ in 0..n / 1000 {
            w.write_all(&batch).expect("the node reads the requests, in time");
        }
    });
    (s, writer)
}

#[test]
fn a_client_that_does_not_read_cannot_grow_the_proxy_and_gets_every_reply_later() {
    let (_server, proxy) = spawn_server_and_proxy(&[]);
    let mut other = Peer::connect(proxy.addr.parse().unwrap());
    assert_eq!(other.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200"); // cached now
    let rss_before = proxy.rss_kib();
    // 14.5 MB of replies: more than the kernels between us will hold.
    let n = 500_000;
    let (mut hog, writer) = flood_without_reading(&proxy.addr, n);
    // Give the proxy every chance to (wrongly) buffer: wait until it has
    // paused the hog, then check memory and another client's service.
    wait_until("the proxy pauses the non-reading client", || {
        field(&other.ask("OP=STS"), "PAUSED").is_some_and(|v| v != "0")
    });
    let rss_after = proxy.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "proxy memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Another client still gets a hit quickly (best of 5, on a shared machine).
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(other.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
            t.elapsed()
        })
        .min()
        .unwrap();
    // A hit stuck behind the hog would never be answered at all; a second
    // is ten times what a loaded two-core machine has shown, and still
    // tells a hit served at once from one that waited on the hog's turn.
    assert!(best < Duration::from_secs(1), "hit took {best:?}");
    // Now the hog reads: every reply arrives, in order.
    hog.set_read_timeout(Some(patience())).unwrap();
    let want = b"OP=GET;IND=1;DATA=0;CODE=200\n";
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut got = 0;
    while got < n {
        let k = hog.read(&mut buf).expect("replies keep coming");
        assert!(k > 0, "closed after {got} replies");
        pending.extend_from_slice(&buf[..k]);
        let whole = pending.len() / want.len();
        for chunk in pending[..whole * want.len()].chunks(want.len()) {
            assert_eq!(chunk, want);
        }
        pending.drain(..whole * want.len());
        got += whole;
    }
    assert_eq!(got, n);
    writer.join().unwrap();
}

#[test]
fn a_frozen_server_gives_504_in_time_and_service_resumes_after_sigcont() {
    let (server, proxy) = spawn_server_and_proxy(&["--upstream-timeout-ms", "300"]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    assert_eq!(c.ask("OP=PUT;IND=1;DATA=5"), "OP=PUT;IND=1;DATA=5;CODE=200");
    server.signal("STOP");
    let t = Instant::now();
    let r = c.ask("OP=GET;IND=2");
    let waited = t.elapsed();
    server.signal("CONT");
    assert_eq!(r, "OP=GET;CODE=504;MSG=upstream timeout");
    assert!(
        waited >= Duration::from_millis(300),
        "not before the timeout: {waited:?}"
    );
    wait_until("service resumes", || {
        c.ask("OP=GET;IND=1") == "OP=GET;IND=1;DATA=5;CODE=200"
    });
    wait_until("misses reach the server again", || {
        c.ask("OP=GET;IND=2") == "OP=GET;IND=2;DATA=0;CODE=200"
    });
}

#[test]
fn a_server_killed_under_a_deep_pipeline_answers_everything_then_recovers() {
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let addr = server.addr.clone();
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &addr,
        "--capacity",
        "0",
        "--log-level",
        "warn",
    ]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    // The first half is answered; then the server freezes, the second half
    // goes upstream, and the server is killed with all of it in flight.
    let depth = 2000;
    let half = |from: usize| -> String {
        (from..from + depth / 2)
            .map(|i| format!("OP=GET;IND={}\n", i % 10))
            .collect()
    };
    c.send(half(0).as_bytes());
    for i in 0..depth / 2 {
        assert_eq!(c.line(), format!("OP=GET;IND={};DATA=0;CODE=200", i % 10));
    }
    server.signal("STOP");
    c.send(half(depth / 2).as_bytes());
    let mut probe = Peer::connect(proxy.addr.parse().unwrap());
    // (One fetch or a few carry them: the reads of a pass grow one.)
    wait_until("the second half is upstream", || {
        field(&probe.ask("OP=STS"), "READS_WAITING").as_deref() == Some(&(depth / 2).to_string())
    });
    drop(server); // SIGKILL, with depth / 2 requests in flight
    for i in depth / 2..depth {
        let r = c.line();
        assert!(r.starts_with("OP=GET;CODE=502;"), "reply {i}: {r}");
    }
    // A new server on the same address; the proxy finds it by itself.
    let _server2 = spawn_node(&["server", "--listen", &addr, "--log-level", "warn"]);
    wait_until("recovery after restart", || {
        c.ask("OP=GET;IND=3") == "OP=GET;IND=3;DATA=0;CODE=200"
    });
}

#[test]
fn random_and_mutated_bytes_never_take_a_node_down() {
    let server = start_server(10);
    let proxy = proxy_node(proxy_to(server.addr(), 5));
    let seeds: [&[u8]; 6] = [
        b"OP=GET;IND=1,2\n",
        b"OP=PUT;IND=1,2;DATA=10,-3\n",
        b"OP=CLR\n",
        b"OP=ADD;IND=0,4,7\n",
        b"OP=STS\n",
        b"OP=DMP\n",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for target in [server.addr(), proxy.addr()] {
        for round in 0..50 {
            let mut s = TcpStream::connect(target).unwrap();
            s.set_read_timeout(Some(patience())).unwrap();
            let mut all = Vec::new();
            for _ in 0..250 {
                let mut msg = seeds[(rnd() % 6) as usize].to_vec();
                match rnd() % 4 {
                    0 => {
                        // Pure noise.
                        msg = (0..rnd() % 64).map(|_| rnd() as u8).collect();
                    }
                    1 => {
                        let p = (rnd() as usize) % msg.len();
                        msg[p] = rnd() as u8;
                    }
                    2 => {
                        let p = (rnd() as usize) % msg.len();
                        msg.insert(p, b";=,-\r\n\x00\xff9"[(rnd() % 9) as usize]);
                    }
                    _ => {
                        let p = (rnd() as usize) % msg.len();
                        msg.truncate(p);
                    }
                }
                all.extend_from_slice(&msg);
            }
            s.write_all(&all).unwrap();
            if round % 2 == 0 {
                // Vanish without reading the replies.
                let _ = s.shutdown(Shutdown::Both);
                continue;
            }
            // Half-close: the node answers what it can, then closes.
            s.shutdown(Shutdown::Write).unwrap();
            let mut sink = Vec::new();
            s.read_to_end(&mut sink).expect("the node closes after answering");
            assert!(!sink.is_empty(), "round {round}: some replies");
        }
        // The node still answers a valid request correctly.
        let mut p = Peer::connect(target);
        assert_eq!(p.ask("OP=PUT;IND=9;DATA=99"), "OP=PUT;IND=9;DATA=99;CODE=200");
        assert_eq!(p.ask("OP=GET;IND=9"), "OP=GET;IND=9;DATA=99;CODE=200");
    }
}

#[test]
fn sigterm_stops_the_proxy_after_answering_what_is_in_flight() {
    let (server, mut proxy) = spawn_server_and_proxy(&[]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    assert_eq!(c.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    // Freeze the server so a miss is in flight when the proxy is told to stop.
    server.signal("STOP");
    c.send(b"OP=GET;IND=5\n");
    wait_until("the miss is upstream", || {
        let mut probe = Peer::connect(proxy.addr.parse().unwrap());
        field(&probe.ask("OP=STS"), "UP_INFLIGHT").as_deref() == Some("1")
    });
    proxy.signal("TERM");
    server.signal("CONT");
    assert_eq!(c.line(), "OP=GET;IND=5;DATA=0;CODE=200", "in-flight request answered");
    assert!(c.closed_by_peer());
    let mut status = None;
    wait_until("proxy exits", || {
        status = proxy.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
}

#[test]
fn a_firehose_client_does_not_starve_the_others() {
    let node = start_server(10);
    let addr = node.addr();
    let n = 200_000;
    let hose = TcpStream::connect(addr).unwrap();
    let mut writer = hose.try_clone().unwrap();
    let mut reader = hose;
    reader.set_read_timeout(Some(patience())).unwrap();
    let w = std::thread::spawn(move || {
        let batch = b"OP=GET;IND=3\n".repeat(1000);
        for _ in 0..n / 1000 {
            writer.write_all(&batch).unwrap();
        }
    });
    let r = std::thread::spawn(move || {
        let want = b"OP=GET;IND=3;DATA=0;CODE=200\n".len();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        while total < n * want {
            let k = reader.read(&mut buf).expect("firehose replies");
            assert!(k > 0);
            total += k;
        }
    });
    // Meanwhile another client is served, request after request.
    let mut other = Peer::connect(addr);
    for i in 0..50 {
        assert_eq!(
            other.ask(&format!("OP=PUT;IND=4;DATA={i}")),
            format!("OP=PUT;IND=4;DATA={i};CODE=200")
        );
    }
    w.join().unwrap();
    r.join().unwrap();
}

/// A stand-in server that answers the first request of whoever connects
/// with `bytes` of one endless line.
/// A server that answers its peer's first request (after a proxy's
/// `OP=LEASE`, refused like an older server would) with one line of
/// `bytes` bytes that never ends.
fn endless_line_server(bytes: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut first = String::new();
        let _ = std::io::BufRead::read_line(&mut r, &mut first);
        if first.trim_end() == "OP=LEASE" {
            let _ = s.write_all(b"OP=LEASE;CODE=400;MSG=unknown OP LEASE\n");
            let _ = std::io::BufRead::read_line(&mut r, &mut first); // the request
        }
        let chunk = vec![b'7'; 1 << 20];
        let mut sent = 0;
        while sent < bytes {
            if s.write_all(&chunk).is_err() {
                return; // the peer gave up: what we wanted
            }
            sent += chunk.len();
        }
        // Keep the connection open (no EOF) until the peer closes it.
        let _ = s.read(&mut [0u8; 16]);
    });
    (addr, t)
}

#[test]
fn a_reply_longer_than_any_reply_is_an_error_not_a_spin() {
    // 64 MiB is the longest reply the client and the proxy accept.
    let (addr, server) = endless_line_server(80 << 20);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = tablecache::client::Client::connect(addr, patience()).and_then(|mut c| c.request_raw(b"OP=GET;IND=1"));
        let _ = tx.send(r.map_err(|e| e.to_string()));
    });
    let got = rx
        .recv_timeout(patience())
        .expect("the client answers within the bound");
    assert_eq!(got, Err("reply too long".to_string()));
    server.join().unwrap();
}

#[test]
fn an_upstream_reply_longer_than_any_reply_resets_the_upstream() {
    let (up, server) = endless_line_server(80 << 20);
    // The reply's length, not the clock, must end it: on a loaded machine
    // 64 MiB through loopback can outlast the default 5 s upstream timeout
    // (a 504 instead of the 502 this test is about).
    let (_s, proxy) = (
        (),
        spawn_node(&[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up.to_string(),
            "--upstream-timeout-ms",
            "60000",
            "--log-level",
            "warn",
        ]),
    );
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    let reply = c.ask("OP=GET;IND=1");
    assert_eq!(reply, "OP=GET;CODE=502;MSG=upstream reply too long");
    server.join().unwrap();
}

#[test]
fn at_the_default_log_level_the_log_does_not_grow_per_request() {
    let dir_tmp = TempDir::new("log");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let server = spawn_node_logging(
        &["server", "--listen", "127.0.0.1:0", "--size", "1000"],
        file("server").into(),
    );
    let proxy = spawn_node_logging(
        &["proxy", "--listen", "127.0.0.1:0", "--upstream", &server.addr],
        file("proxy").into(),
    );
    // 3,000 requests: misses that evict (capacity 5 over 1,000 indices),
    // PUTs, hits, ADDs.
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    let mut batch = String::new();
    for n in 0..3000 {
        let i = (n * 37) % 1000;
        batch += &match n % 4 {
            0 => format!("OP=GET;IND={i}\n"),
            1 => format!("OP=PUT;IND={i};DATA={n}\n"),
            2 => format!("OP=GET;IND={i}\n"),
            _ => format!("OP=ADD;IND={i},{}\n", (i + 1) % 1000),
        };
    }
    c.send(batch.as_bytes());
    for _ in 0..3000 {
        assert!(c.line().ends_with("CODE=200"));
    }
    let lines = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap().lines().count();
    let (s, p) = (lines("server"), lines("proxy"));
    assert!(
        s < 20 && p < 20,
        "log lines after 3,000 requests: server {s}, proxy {p}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replies_still_owed_count_against_a_client_that_does_not_read() {
    // Each request asks index 0 32,000 times: one fetch upstream, but a
    // reply of about 750 KB. A client that pipelines 100 of them and
    // reads nothing must not make the proxy hold them all (75 MB): the
    // proxy stops reading once the replies it owes pass the limit, counted
    // before they exist. (Measured: 1.2-1.7 MB of growth; 17 MB before.)
    let (server, proxy) = spawn_server_and_proxy(&["--capacity", "0"]);
    let mut other = Peer::connect(proxy.addr.parse().unwrap());
    assert!(other.ask("OP=GET;IND=1").ends_with("CODE=200"));
    let rss_before = proxy.rss_kib();
    // The server frozen meanwhile: nothing comes back until the proxy has
    // decided how much of the pipeline to take.
    server.signal("STOP");
    let mut req = b"OP=GET;IND=0".to_vec();
    req.extend(b",0".repeat(31_999));
    req.push(b'\n');
    let hog = TcpStream::connect(&proxy.addr).unwrap();
    let mut w = hog.try_clone().unwrap();
    // The writer blocks once the proxy stops reading; it ends when the
    // connection is dropped at the end of the test.
    std::thread::spawn(move || {
        for _ in 0..100 {
            if w.write_all(&req).is_err() {
                return;
            }
        }
    });
    wait_until("the proxy pauses the client, or takes the whole pipeline", || {
        let sts = other.ask("OP=STS");
        field(&sts, "PAUSED").is_some_and(|v| v != "0") || field(&sts, "UP_INFLIGHT").as_deref() == Some("100")
    });
    server.signal("CONT");
    wait_until("every reply taken is back from the server", || {
        field(&other.ask("OP=STS"), "UP_INFLIGHT").as_deref() == Some("0")
    });
    let rss_after = proxy.rss_kib();
    assert!(
        rss_after < rss_before + 6 * 1024,
        "proxy memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop(hog);
}

#[test]
fn sigterm_answers_every_owed_request_before_closing() {
    // The server stays frozen: nothing in flight will be answered by it
    // (nor time out: the upstream timeout is a minute). Every request the
    // proxy took still gets a reply line, in order, before the connection
    // closes.
    let (server, mut proxy) = spawn_server_and_proxy(&["--upstream-timeout-ms", "60000", "--stop-timeout-ms", "300"]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    assert_eq!(c.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    server.signal("STOP");
    c.send(b"OP=GET;IND=5\nOP=GET;IND=0\nOP=PUT;IND=6;DATA=1\n");
    wait_until("the miss and the write are upstream", || {
        let mut probe = Peer::connect(proxy.addr.parse().unwrap());
        // (A lease renewal may be in flight too.)
        let n: usize = field(&probe.ask("OP=STS"), "UP_INFLIGHT").unwrap().parse().unwrap();
        n >= 2
    });
    let termed = Instant::now();
    proxy.signal("TERM");
    let line = c.line();
    assert!(line.starts_with("OP=GET;CODE=503"), "{line}");
    // After the stop timeout asked for (300 ms), not the default 5 s: the
    // bound is the point, with room for a loaded machine.
    assert!(termed.elapsed() < Duration::from_secs(4), "{:?}", termed.elapsed());
    // The hit was decided when it arrived: its real answer, in its turn.
    assert_eq!(c.line(), "OP=GET;IND=0;DATA=0;CODE=200");
    let line = c.line();
    assert!(line.starts_with("OP=PUT;CODE=503"), "{line}");
    assert!(c.closed_by_peer());
    let mut status = None;
    wait_until("proxy exits", || {
        status = proxy.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    server.signal("CONT");
}

#[test]
fn a_server_idle_timeout_never_shows_through_the_proxy() {
    // The server closes connections quiet for 0.6 s, the proxy's included.
    // Clients of the proxy never see a 503 for it, and once the proxy has
    // seen it happen, it keeps its connection alive. (A lease of a minute:
    // renewing it would keep the connection busy on its own.)
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--lease-ms",
        "60000",
        "--grace-ms",
        "0",
        "--idle-timeout-ms",
        "600",
        "--log-level",
        "warn",
    ]);
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &server.addr,
        "--log-level",
        "warn",
    ]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    let mut probe = Peer::connect(proxy.addr.parse().unwrap());
    // The proxy's fresh upstream goes unused until the server closes it.
    wait_until("the server closes the idle upstream", || {
        field(&probe.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n != "0")
    });
    for i in 0..5 {
        let r = c.ask(&format!("OP=PUT;IND={i};DATA={i}"));
        assert_eq!(r, format!("OP=PUT;IND={i};DATA={i};CODE=200"));
        std::thread::sleep(Duration::from_millis(250));
    }
    // Quiet for 2.5 times the server's idle timeout: the keepalive
    // (a third of the silence the server allowed) holds the connection.
    let resets = field(&probe.ask("OP=STS"), "UP_RESETS").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.ask("OP=GET;IND=4"), "OP=GET;IND=4;DATA=4;CODE=200");
    assert_eq!(
        field(&probe.ask("OP=STS"), "UP_RESETS").unwrap(),
        resets,
        "no idle close since"
    );
}

/// A stand-in server that answers every request line with a mutated copy
/// of the right answer (from a real table) three times in four, the right
/// answer otherwise; it accepts the proxy again after every reset.
fn mutating_upstream(seed: u64) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut x = seed | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut table = tablecache::table::Table::new(10);
        let mut req = tablecache::proto::Request::default();
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut w = s.try_clone().unwrap();
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                let mut out = tablecache::buffer::Buffer::new();
                match req.parse(line.as_bytes()) {
                    Ok(()) => {
                        if let Err(p) = table.execute(&req, &mut out) {
                            tablecache::proto::encode_error(&mut out, Some(req.op), p.code(), &p);
                        }
                    }
                    Err((op, p)) => tablecache::proto::encode_error(&mut out, op, p.code(), &p),
                }
                let mut reply = out.data().to_vec();
                if rnd() % 4 != 0 && !reply.is_empty() {
                    let p = (rnd() as usize) % reply.len();
                    match rnd() % 4 {
                        0 => reply[p] = b"0123456789;=,-OPCDTAGIN"[(rnd() % 23) as usize],
                        1 => reply.insert(p, b";=,-9"[(rnd() % 5) as usize]),
                        2 => reply.truncate(p),
                        _ => reply.extend_from_slice(b";CODE=200"),
                    }
                }
                reply.push(b'\n');
                if w.write_all(&reply).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

#[test]
fn mutated_upstream_replies_never_take_the_proxy_down_and_every_client_is_answered() {
    let up = mutating_upstream(0x9E37_79B9_7F4A_7C15);
    let proxy = proxy_node(proxy_to(up, 3));
    let requests = [
        "OP=GET;IND=1,2",
        "OP=PUT;IND=1,2;DATA=10,-3",
        "OP=CLR",
        "OP=ADD;IND=0,4,7",
        "OP=GET;IND=5",
        "OP=PUT;IND=3;DATA=7",
    ];
    let mut resets = 0;
    for round in 0..30 {
        let mut c = Peer::connect(proxy.addr());
        let batch: String = (0..20)
            .map(|k| format!("{}\n", requests[(round * 7 + k) % 6]))
            .collect();
        c.send(batch.as_bytes());
        for k in 0..20 {
            let line = c.line();
            assert!(line.contains("CODE="), "round {round}, reply {k}: {line}");
        }
        let sts = c.ask("OP=STS");
        resets = field(&sts, "UP_RESETS").unwrap().parse().unwrap();
    }
    assert!(resets > 0, "mismatched replies reset the upstream");
}

#[test]
fn a_peer_that_never_reads_its_replies_is_closed_after_the_idle_timeout() {
    // It sends, the node answers, the answers pile up unread: the node is
    // not waiting on itself but on the peer, and the idle timeout applies.
    // (A second, a margin over the time one busy turn of a debug build
    // takes, so the probe is never the one found idle.)
    let server = start_server_with(
        10,
        Limits {
            idle_timeout: Duration::from_millis(1000),
            ..Limits::default()
        },
    );
    let mut probe = Peer::connect(server.addr());
    assert!(probe
        .ask(&format!("OP=PUT;IND=1;DATA={}", i64::MAX))
        .ends_with("CODE=200"));
    // 500 requests of 1 KB whose replies are 20 KB each: 10 MB of replies,
    // far more than the peer's kernel buffers take, for little work.
    let mut hog = TcpStream::connect(server.addr()).unwrap();
    let mut req = b"OP=GET;IND=1".to_vec();
    req.extend(b",1".repeat(999));
    req.push(b'\n');
    for _ in 0..500 {
        hog.write_all(&req).unwrap();
    }
    wait_until("the node holds replies the peer does not read", || {
        field(&probe.ask("OP=STS"), "PAUSED").is_some_and(|n| n != "0")
    });
    wait_until("the node closes the peer that does not read", || {
        field(&probe.ask("OP=STS"), "IDLE_CLOSED").is_some_and(|n| n != "0")
    });
    drop(hog);
}

/// Connects to `addr` until a connect gets no answer: the listener's
/// accept queue is then full, and its kernel drops further SYNs (a connect
/// that neither succeeds nor fails). Returns what fills it.
fn fill_accept_queue(addr: std::net::SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::new();
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        held.push(s);
        assert!(held.len() < 20_000, "the accept queue never filled");
    }
    held
}

/// A proxy in front of `addr` that gives up on the server after `ms`.
fn proxy_giving_up_after(addr: std::net::SocketAddr, ms: u64) -> Proc {
    spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &addr.to_string(),
        "--upstream-timeout-ms",
        &ms.to_string(),
        "--log-level",
        "warn",
    ])
}

#[test]
fn an_upstream_connect_that_hangs_is_given_up_in_time_and_retried() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = fill_accept_queue(addr);
    let proxy = proxy_giving_up_after(addr, 300);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    let t = Instant::now();
    let r = c.ask("OP=GET;IND=1");
    assert!(r.starts_with("OP=GET;CODE=503"), "{r}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "given up only at the timeout"
    );
    // It tries again, and gives that connect up as well.
    let mut probe = Peer::connect(proxy.addr.parse().unwrap());
    wait_until("a second connect given up", || {
        field(&probe.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n.parse::<u64>().unwrap() >= 2)
    });
    assert_eq!(field(&probe.ask("OP=STS"), "UPSTREAM").as_deref(), Some("down"));
    drop(held);
}

#[test]
fn a_reconnect_that_hangs_after_a_lost_request_is_given_up_too() {
    // The server closes with a request owed (a 502), and the reconnect
    // then hangs: the connect gets its own deadline on the new connection,
    // whatever timer the lost request had armed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let proxy = proxy_giving_up_after(addr, 600);
    let (up, _) = l.accept().unwrap();
    let mut lines = std::io::BufReader::new(up.try_clone().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
    assert_eq!(line.trim_end(), "OP=LEASE");
    (&up).write_all(b"OP=LEASE;CODE=400;MSG=unknown OP LEASE\n").unwrap();
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    c.send(b"OP=GET;IND=1\n");
    line.clear();
    std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
    assert_eq!(line.trim_end(), "OP=GET;IND=1");
    // No room for the reconnect, then the server goes with the GET owed.
    let held = fill_accept_queue(addr);
    drop((lines, up));
    assert!(c.line().starts_with("OP=GET;CODE=502"));
    let mut probe = Peer::connect(proxy.addr.parse().unwrap());
    wait_until("the hanging reconnect given up", || {
        field(&probe.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n.parse::<u64>().unwrap() >= 2)
    });
    drop(held);
}

#[test]
fn a_connect_that_hangs_is_given_up_even_with_no_request_waiting() {
    // Nobody asks anything: the connect's own deadline ends it, not a
    // request's, and the retry is given up the same way. (With bare
    // framing the proxy queues nothing of its own while connecting: over
    // lines its LEASE would be waiting from the connect's start.)
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let held = fill_accept_queue(addr);
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &addr.to_string(),
        "--upstream-framing",
        "bare",
        "--upstream-timeout-ms",
        "300",
        "--log-level",
        "warn",
    ]);
    let mut probe = Peer::connect(proxy.addr.parse().unwrap());
    wait_until("two hanging connects given up", || {
        field(&probe.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n.parse::<u64>().unwrap() >= 2)
    });
    assert_eq!(field(&probe.ask("OP=STS"), "UPSTREAM").as_deref(), Some("down"));
    drop(held);
}

#[test]
fn a_request_held_upstream_past_the_keepalive_does_not_stall_the_proxy() {
    // With a lease (1 s, renewed a third of it after the send that renewed
    // it last, busy or not) a request held by a frozen server outlives the
    // renewal's time: one renewal goes out behind it and no more (a
    // renewal set in the past would spin the loop and flood the server),
    // and the proxy keeps answering what it can answer itself.
    let (server, proxy) = spawn_server_and_proxy(&[]);
    let paddr = proxy.addr.parse().unwrap();
    let mut c = Peer::connect(paddr);
    wait_leased(&mut c);
    server.signal("STOP");
    c.send(b"OP=GET;IND=5\n");
    let mut probe = Peer::connect(paddr);
    wait_until("the miss is upstream", || {
        field(&probe.ask("OP=STS"), "UP_INFLIGHT").as_deref() == Some("1")
    });
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(1500) {
        let sts = probe.ask("OP=STS");
        let inflight: u64 = field(&sts, "UP_INFLIGHT").unwrap().parse().unwrap();
        assert!((1..=2).contains(&inflight), "the miss and one renewal at most: {sts}");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.signal("CONT");
    assert_eq!(c.line(), "OP=GET;IND=5;DATA=0;CODE=200");
}

#[test]
fn a_stopping_proxy_does_not_reconnect_to_its_server() {
    // A server that accepts and closes at once: the proxy retries after
    // 50, 100, 200, 400, 800 ms, then 1.6 s or more. Told to stop while a
    // retry is pending, it must not connect again, though it keeps running
    // for a client whose replies it cannot flush.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &addr.to_string(),
        "--log-level",
        "warn",
    ]);
    let paddr: std::net::SocketAddr = proxy.addr.parse().unwrap();
    // The client that holds the stopping proxy.
    let (hog, writer, _) = stuck_pipeliner(paddr);
    let mut probe = Peer::connect(paddr);
    let sts = |p: &mut Peer, k: &str| field(&p.ask("OP=STS"), k).unwrap();
    for _ in 0..6 {
        let (s, _) = l.accept().unwrap();
        drop(s);
    }
    wait_until("the sixth reset seen, a retry pending", || {
        sts(&mut probe, "UP_RESETS").parse::<u64>().unwrap() >= 6 && sts(&mut probe, "UPSTREAM") == "down"
    });
    let backoff: u64 = sts(&mut probe, "UP_BACKOFF_MS").parse().unwrap();
    assert!(backoff >= 1600, "the pending retry waits {backoff} ms");
    proxy.signal("TERM");
    l.set_nonblocking(true).unwrap();
    // Longer than the pending retry's wait: it would have connected by then.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(backoff + 400) {
        match l.accept() {
            Ok(_) => panic!("the stopping proxy connected to its server again"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut proxy = proxy;
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy was still stopping through the watch (held by the client)"
    );
    let _ = hog.shutdown(Shutdown::Both);
    writer.join().unwrap();
}

/// A client pipelining requests the node answers itself (STS, a reply
/// fifty times its request) and reading none of the replies, until the
/// node stops reading it: the sockets' buffers are full and the node has
/// answered no more of its requests for half a second. Returns the
/// socket, the writer thread (it ends when the socket is shut) and how
/// many of its requests the node answered.
fn stuck_pipeliner(addr: std::net::SocketAddr) -> (TcpStream, std::thread::JoinHandle<()>, u64) {
    let hog = TcpStream::connect(addr).unwrap();
    let mut w = hog.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let batch = b"OP=STS\n".repeat(1000);
        for _ in 0..300 {
            if w.write_all(&batch).is_err() {
                return;
            }
        }
    });
    let mut probe = Peer::connect(addr);
    let mut asked = 0u64;
    // (REQS, PAUSED) from the node's STS; `asked` counts the probe's own.
    let mut sts = |asked: &mut u64| {
        *asked += 1;
        let r = probe.ask("OP=STS");
        let n = |k: &str| field(&r, k).unwrap().parse::<u64>().unwrap();
        (n("REQS"), n("PAUSED"))
    };
    let mut answered = 0;
    wait_until("the pipelining client's reading paused, its replies stuck", || {
        let (before, _) = sts(&mut asked);
        std::thread::sleep(Duration::from_millis(500));
        let (after, paused) = sts(&mut asked);
        // Only the probe's own STS was answered meanwhile, and the node
        // paused reading the client (the probe never is): it cannot
        // resume, as the client never reads.
        answered = after - asked;
        paused > 0 && after <= before + 1
    });
    (hog, writer, answered)
}

#[test]
fn a_client_pipelining_when_the_proxy_stops_gets_every_reply_it_answered() {
    // The proxy stops while a client has sent far more than it has read.
    // It answers no more of its requests, but the replies it did answer
    // reach the client, followed by a clean end: closing a socket with
    // unread requests would reset the connection and destroy them.
    let (_server, proxy) = spawn_server_and_proxy(&[]);
    let (mut hog, writer, answered) = stuck_pipeliner(proxy.addr.parse().unwrap());
    assert!(answered > 1000, "{answered} answered before the stop");
    proxy.signal("TERM");
    let stopped = Instant::now();
    hog.set_read_timeout(Some(patience())).unwrap();
    let mut replies = 0u64;
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match hog.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                replies += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(16);
                tail.drain(..keep);
            }
            Err(e) => panic!("after {replies} of {answered} replies: {e}"),
        }
    }
    assert!(tail.ends_with(b"CODE=200\n"), "the last reply is whole: {tail:?}");
    assert_eq!(replies, answered, "every answered request's reply arrived");
    // The proxy read and dropped the rest of the requests meanwhile, so it
    // sees this close and ends at once, well before its 5 s stop deadline.
    let _ = hog.shutdown(Shutdown::Both);
    writer.join().unwrap();
    let mut proxy = proxy;
    wait_until("the proxy exits", || proxy.child.try_wait().unwrap().is_some());
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "the proxy waited for its stop deadline: it did not see the client close"
    );
}

#[test]
fn a_reply_with_nothing_on_the_wire_resets_the_upstream_and_the_proxy_lives() {
    // A server that grants no lease and, later, says something unasked
    // while a client's miss is queued in the proxy but not yet written:
    // the proxy is stopped meanwhile, so that both arrive in one poll, the
    // client's bytes first. The reply answers nothing on the wire: the
    // upstream is out of step and is reset; the client gets its 502 and
    // the proxy keeps serving.
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap().to_string();
    let proxy = spawn_node(&proxy_args(&up, &[]));
    let (s, _) = l.accept().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "OP=LEASE");
    w.write_all(b"OP=LEASE;CODE=400;MSG=unknown OP LEASE\n").unwrap();
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_until("the proxy has its LEASE answered", || {
        field(&c.ask("OP=STS"), "LEASE_STATE").as_deref() == Some("alone")
    });
    // Indices 0..=5 answered once: a miss of 3 is batched (held for the
    // pass's flush) rather than written at once.
    c.send(b"OP=GET;IND=5\n");
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), "OP=GET;IND=5");
    w.write_all(b"OP=GET;IND=5;DATA=0;CODE=200\n").unwrap();
    assert_eq!(c.line(), "OP=GET;IND=5;DATA=0;CODE=200");
    proxy.signal("STOP");
    c.send(b"OP=GET;IND=3\n");
    std::thread::sleep(Duration::from_millis(50)); // the client's bytes first
    w.write_all(b"OP=GET;CODE=500;MSG=unasked\n").unwrap();
    proxy.signal("CONT");
    let got = c.line();
    assert!(
        got.starts_with("OP=GET;CODE=502"),
        "the miss fails with the reset: {got}"
    );
    assert!(
        field(&c.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n != "0"),
        "alive and reset"
    );
}

//! The caching proxy over loopback, against the real server and against a
//! scripted stand-in server the test drives line by line (to see exactly
//! what goes upstream, and to hold replies back).

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tablecache::proxy::ProxyConfig;
use tablecache::NodeHandle;

fn start_proxy(upstream: SocketAddr, capacity: usize) -> NodeHandle {
    proxy_node(proxy_to(upstream, capacity))
}

/// A proxy of 5 entries in front of `up` that gives up on a request after
/// 300 ms (to time writes out quickly).
fn start_impatient_proxy(up: &Scripted) -> NodeHandle {
    proxy_node(ProxyConfig {
        upstream: up.addr(),
        capacity: 5,
        upstream_timeout: Duration::from_millis(300),
        ..Default::default()
    })
}

/// A stand-in server: accepts the proxy's one upstream connection and lets
/// the test read each request and write each reply itself.
///
/// The proxy's first request on each connection is `OP=LEASE`; the stand-in
/// answers it as a server that grants none (an older or foreign server:
/// the proxy keeps the single-proxy guarantee), or with a lease of
/// `lease_ms` when made with [`Scripted::granting`].
struct Scripted {
    listener: TcpListener,
    conn: Option<(BufReader<TcpStream>, TcpStream)>,
    lease_ms: Option<u64>,
    /// The answer to LEASE, when neither a grant nor a refusal.
    lease_reply: Option<&'static str>,
}

impl Scripted {
    fn new() -> Scripted {
        Scripted {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
            conn: None,
            lease_ms: None,
            lease_reply: None,
        }
    }
    fn granting(lease_ms: u64) -> Scripted {
        Scripted {
            lease_ms: Some(lease_ms),
            ..Scripted::new()
        }
    }
    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
    fn accept(&mut self) {
        self.accept_unanswered();
        match (self.lease_reply, self.lease_ms) {
            (Some(r), _) => self.reply(r),
            (None, Some(ms)) => self.reply(&format!("OP=LEASE;MS={ms};CODE=200")),
            (None, None) => self.reply("OP=LEASE;CODE=400;MSG=unknown OP LEASE"),
        }
    }
    /// Accepts the proxy's next connection and reads its LEASE, leaving
    /// the answer to the test.
    fn accept_unanswered(&mut self) {
        let (s, _) = self.listener.accept().unwrap();
        s.set_read_timeout(Some(patience())).unwrap();
        self.conn = Some((BufReader::new(s.try_clone().unwrap()), s));
        let (r, _) = self.conn.as_mut().unwrap();
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        assert_eq!(first.trim_end(), "OP=LEASE", "the proxy asks for a lease first");
    }
    fn recv(&mut self) -> String {
        if self.conn.is_none() {
            self.accept();
        }
        let (r, _) = self.conn.as_mut().unwrap();
        let mut s = String::new();
        assert!(r.read_line(&mut s).unwrap() > 0, "proxy closed the upstream");
        s.trim_end().to_string()
    }
    fn reply(&mut self, line: &str) {
        let (_, w) = self.conn.as_mut().unwrap();
        w.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
    /// True if nothing arrives within `ms` (used only to show that the
    /// proxy did NOT send something; a pass never depends on the timing).
    fn silent_for(&mut self, ms: u64) -> bool {
        let (r, _) = self.conn.as_mut().unwrap();
        r.get_ref().set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
        let mut s = String::new();
        let silent = r.read_line(&mut s).is_err();
        r.get_ref().set_read_timeout(Some(patience())).unwrap();
        silent
    }
}

/// Fetches `ind` through the proxy, with the stand-in server answering
/// `data`, so that it is cached.
fn warm(c: &mut Peer, up: &mut Scripted, ind: &str, data: &str) {
    c.send(format!("OP=GET;IND={ind}\n").as_bytes());
    assert_eq!(up.recv(), format!("OP=GET;IND={ind}"));
    up.reply(&format!("OP=GET;IND={ind};DATA={data};CODE=200"));
    assert_eq!(c.line(), format!("OP=GET;IND={ind};DATA={data};CODE=200"));
}

#[test]
fn fifo_order_at_capacity_and_hits_do_not_refresh() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 3);
    let mut c = Peer::connect(proxy.addr());
    c.ask("OP=GET;IND=1");
    c.ask("OP=GET;IND=2");
    c.ask("OP=GET;IND=3");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=3;IND=1,2,3;DATA=0,0,0;CODE=200");
    c.ask("OP=GET;IND=1"); // a hit on the oldest: it stays oldest
    c.ask("OP=GET;IND=4");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=3;IND=2,3,4;DATA=0,0,0;CODE=200");
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "EVICTIONS").as_deref(), Some("1"), "{sts}");
    assert_eq!(field(&sts, "HITS").as_deref(), Some("1"), "{sts}");
    assert_eq!(field(&sts, "MISSES").as_deref(), Some("4"), "{sts}");
    assert_eq!(field(&sts, "HIT_IND").as_deref(), Some("1:1"), "{sts}");
}

#[test]
fn a_miss_fetches_only_the_missing_indices_in_one_request() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=11;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=11;CODE=200");
    c.send(b"OP=GET;IND=3,1,2,3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3,2", "only the misses, each once");
    up.reply("OP=GET;IND=3,2;DATA=33,22;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3,1,2,3;DATA=33,11,22,33;CODE=200");
    c.send(b"OP=ADD;IND=1,2,3,4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4", "ADD fetches like GET");
    up.reply("OP=GET;IND=4;DATA=44;CODE=200");
    assert_eq!(c.line(), "OP=ADD;IND=1,2,3,4;DATA=110;CODE=200");
    // All hits now: nothing goes upstream.
    assert_eq!(c.ask("OP=ADD;IND=1,2,3,4,1"), "OP=ADD;IND=1,2,3,4,1;DATA=121;CODE=200");
    assert!(up.silent_for(100));
}

#[test]
fn write_through_the_server_has_the_value_before_the_ack() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    let mut direct = Peer::connect(server.addr());
    c.ask("OP=GET;IND=1"); // cached
    assert_eq!(c.ask("OP=PUT;IND=1,6;DATA=10,60"), "OP=PUT;IND=1,6;DATA=10,60;CODE=200");
    assert_eq!(direct.ask("OP=GET;IND=1,6"), "OP=GET;IND=1,6;DATA=10,60;CODE=200");
    // The held entry was updated in place; the absent one was not inserted.
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=1;DATA=10;CODE=200");
    assert_eq!(c.ask("OP=CLR"), "OP=CLR;CODE=200");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;CODE=200");
    assert_eq!(direct.ask("OP=GET;IND=1,6"), "OP=GET;IND=1,6;DATA=0,0;CODE=200");
}

#[test]
fn a_refused_put_leaves_the_cache_unchanged_and_errors_pass_through() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.ask("OP=PUT;IND=2;DATA=5");
    c.ask("OP=GET;IND=2");
    assert_eq!(
        c.ask("OP=PUT;IND=2,12;DATA=9,9"),
        "OP=PUT;CODE=400;MSG=index 12 out of range 0..9"
    );
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=2;DATA=5;CODE=200");
    assert_eq!(
        c.ask("OP=GET;IND=2,12"),
        "OP=GET;CODE=400;MSG=index 12 out of range 0..9"
    );
    assert_eq!(
        c.ask("OP=DMP"),
        "OP=DMP;CAPACITY=5;IND=2;DATA=5;CODE=200",
        "nothing of it cached"
    );

    // A server that refuses with another code: passed on, cache untouched.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "1");
    c.send(b"OP=PUT;IND=1;DATA=2\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=2");
    up.reply("OP=PUT;CODE=500;MSG=disk on fire");
    assert_eq!(c.line(), "OP=PUT;CODE=500;MSG=disk on fire");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=1;CODE=200");
}

#[test]
fn replies_keep_request_order_behind_a_delayed_miss() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "1");
    // A miss, then a hit, then an error, pipelined: the miss is held.
    c.send(b"OP=GET;IND=2\nOP=GET;IND=1\nOP=BAD\nOP=DMP\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    assert!(up.silent_for(50));
    up.reply("OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "CODE=400;MSG=unknown OP BAD");
    // DMP, like a hit, is decided when it arrives: before 2 was fetched.
    assert_eq!(c.line(), "OP=DMP;CAPACITY=5;IND=1;DATA=1;CODE=200");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=1,2;DATA=1,2;CODE=200");
}

#[test]
fn one_clients_pending_miss_never_delays_another_clients_hit() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    warm(&mut a, &mut up, "1", "1");
    a.send(b"OP=GET;IND=7\n");
    assert_eq!(up.recv(), "OP=GET;IND=7");
    // A's miss is held upstream; B's hit is answered anyway.
    assert_eq!(b.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=1;CODE=200");
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=7;DATA=7;CODE=200");
}

#[test]
fn a_fetch_sent_before_a_put_does_not_leave_the_old_value_cached() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3");
    b.send(b"OP=PUT;IND=3;DATA=7\n");
    assert_eq!(up.recv(), "OP=PUT;IND=3;DATA=7");
    // The server answers in order: the fetch saw the old value.
    up.reply("OP=GET;IND=3;DATA=0;CODE=200");
    up.reply("OP=PUT;IND=3;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=3;DATA=0;CODE=200");
    assert_eq!(b.line(), "OP=PUT;IND=3;DATA=7;CODE=200");
    assert_eq!(
        a.ask("OP=GET;IND=3"),
        "OP=GET;IND=3;DATA=7;CODE=200",
        "a hit after the ack"
    );
    assert!(up.silent_for(50), "served from the cache");
}

#[test]
fn a_read_never_mixes_a_cached_value_with_one_fetched_after_a_write() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=1\n");
    up.recv();
    up.reply("OP=GET;IND=1;DATA=0;CODE=200");
    a.line();
    // PUT 1,2 in flight; GET 1,2 with 1 cached (old) and 2 missing.
    b.send(b"OP=PUT;IND=1,2;DATA=7,7\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1,2;DATA=7,7");
    a.send(b"OP=GET;IND=1,2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2", "the cached 1 is fetched again");
    up.reply("OP=PUT;IND=1,2;DATA=7,7;CODE=200");
    up.reply("OP=GET;IND=1,2;DATA=7,7;CODE=200");
    assert_eq!(b.line(), "OP=PUT;IND=1,2;DATA=7,7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1,2;DATA=7,7;CODE=200");
}

#[test]
fn a_client_that_leaves_still_fills_the_cache() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4");
    drop(a);
    let mut b = Peer::connect(proxy.addr());
    // B's request queues behind the fetch upstream, so when B hears back,
    // the fetch for the departed client has been applied.
    b.send(b"OP=GET;IND=5\n");
    assert_eq!(up.recv(), "OP=GET;IND=5");
    up.reply("OP=GET;IND=4;DATA=40;CODE=200");
    up.reply("OP=GET;IND=5;DATA=50;CODE=200");
    assert_eq!(b.line(), "OP=GET;IND=5;DATA=50;CODE=200");
    assert_eq!(b.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=4,5;DATA=40,50;CODE=200");
}

#[test]
fn a_reply_that_does_not_match_is_a_502_and_resets_the_upstream() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1,2;DATA=1,2;CODE=200");
    let line = c.line();
    assert!(line.starts_with("OP=GET;CODE=502;"), "{line}");
    // The proxy reconnects by itself and carries on.
    up.conn = None;
    up.accept();
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
}

/// The server stops and a new one starts on its address. With leases
/// (`lease` non-zero) the proxy serves nothing from its cache while the
/// server is away: the lease went with the connection. Without, it keeps
/// serving hits from the cache as it was.
fn server_going_down_and_coming_back(lease: Duration) {
    let cfg = |listen| tablecache::server::ServerConfig {
        listen,
        size: 10,
        lease,
        grace: Duration::ZERO,
        ..Default::default()
    };
    let server = tablecache::server::Server::bind(cfg(any_addr()))
        .unwrap()
        .spawn()
        .unwrap();
    let addr = server.addr();
    let proxy = start_proxy(addr, 5);
    let mut c = Peer::connect(proxy.addr());
    assert_eq!(c.ask("OP=PUT;IND=1;DATA=5"), "OP=PUT;IND=1;DATA=5;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(field(&c.ask("OP=STS"), "HITS").as_deref(), Some("1"));
    server.stop().unwrap();
    // Misses and writes fail fast while it is down.
    let mut saw_unavailable = false;
    wait_until("the proxy notices the server is gone", || {
        let r = c.ask("OP=GET;IND=2");
        saw_unavailable = r.starts_with("OP=GET;CODE=503;") || r.starts_with("OP=GET;CODE=502;");
        saw_unavailable
    });
    let t = Instant::now();
    let r = c.ask("OP=PUT;IND=2;DATA=1");
    assert!(r.starts_with("OP=PUT;CODE=503;"), "{r}");
    assert!(t.elapsed() < patience(), "no hang");
    let r = c.ask("OP=GET;IND=1");
    if lease.is_zero() {
        assert_eq!(r, "OP=GET;IND=1;DATA=5;CODE=200", "a hit while down");
    } else {
        assert!(r.starts_with("OP=GET;CODE=503;"), "no lease, no hit: {r}");
    }
    // A new server on the same address: the proxy reconnects by itself.
    let server2 = tablecache::server::Server::bind(cfg(addr))
        .expect("rebind the same port")
        .spawn()
        .unwrap();
    wait_until("the proxy reconnects", || {
        c.ask("OP=GET;IND=2") == "OP=GET;IND=2;DATA=0;CODE=200"
    });
    // The fresh server lost the table; the proxy dropped its cache at reconnect.
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=0;CODE=200");
    drop(server2);
}

#[test]
fn the_server_going_down_and_coming_back() {
    server_going_down_and_coming_back(Duration::from_millis(1000));
}

#[test]
fn without_leases_hits_are_served_while_the_server_is_down() {
    server_going_down_and_coming_back(Duration::ZERO);
}

#[test]
fn a_thousand_concurrent_clients_through_the_proxy() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 5);
    let mut setup = Peer::connect(proxy.addr());
    setup.ask("OP=PUT;IND=0,1,2,3,4,5,6,7,8,9;DATA=0,1,2,3,4,5,6,7,8,9");
    let mut peers: Vec<Peer> = (0..1000).map(|_| Peer::connect(proxy.addr())).collect();
    for (i, p) in peers.iter_mut().enumerate() {
        p.send(format!("OP=GET;IND={},{}\n", i % 10, (i * 7) % 10).as_bytes());
    }
    for (i, p) in peers.iter_mut().enumerate() {
        let (a, b) = (i % 10, (i * 7) % 10);
        assert_eq!(p.line(), format!("OP=GET;IND={a},{b};DATA={a},{b};CODE=200"));
    }
    let sts = setup.ask("OP=STS");
    assert_eq!(field(&sts, "CONNS").as_deref(), Some("1001"), "{sts}");
}

#[test]
fn a_write_whose_outcome_is_unknown_is_not_served_from_the_cache() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1,5\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,5");
    up.reply("OP=GET;IND=1,5;DATA=1,5;CODE=200");
    c.line();
    c.send(b"OP=PUT;IND=1;DATA=2\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=2");
    // The server vanishes after taking the PUT, and stays away.
    drop(up);
    let r = c.line();
    assert!(r.starts_with("OP=PUT;CODE=502;"), "{r}");
    // Index 1 may be 1 or 2 on the server now: it is no longer cached;
    // index 5 is unaffected and still served while the server is down.
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=5;DATA=5;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=5"), "OP=GET;IND=5;DATA=5;CODE=200");
    let r = c.ask("OP=GET;IND=1");
    assert!(r.starts_with("OP=GET;CODE=503;"), "{r}");
}

#[test]
fn a_pipelined_put_then_get_reads_its_own_write() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "2", "20");
    // One write, two requests: the GET must see the PUT before it, as it
    // would on the server, although 2 is cached with its old value.
    c.send(b"OP=PUT;IND=2;DATA=2\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=PUT;IND=2;DATA=2");
    assert_eq!(up.recv(), "OP=GET;IND=2", "the GET follows its PUT upstream");
    up.reply("OP=PUT;IND=2;DATA=2;CODE=200");
    up.reply("OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=PUT;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=2;CODE=200");
    // The write is acknowledged: 2 is a hit again, with the new value.
    assert_eq!(c.ask("OP=GET;IND=2"), "OP=GET;IND=2;DATA=2;CODE=200");
    assert!(up.silent_for(50), "served from the cache");
}

#[test]
fn a_hit_behind_its_own_pending_miss_sees_a_write_sent_before_that_miss() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    warm(&mut a, &mut up, "1", "1");
    // B's PUT of 1 goes upstream first, then A's miss of 7; A's GET 1 must
    // take effect after its GET 7, so after B's PUT: it cannot read the
    // cached 1.
    b.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=5");
    a.send(b"OP=GET;IND=7\nOP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=7");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=PUT;IND=1;DATA=5;CODE=200");
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    up.reply("OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(b.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1;DATA=5;CODE=200");
}

#[test]
fn a_hit_behind_its_own_pending_miss_with_no_write_in_flight_stays_a_hit() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    warm(&mut a, &mut up, "1", "1");
    a.send(b"OP=GET;IND=7\nOP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=7");
    assert!(up.silent_for(50), "1 is answered from the cache");
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1;DATA=1;CODE=200");
}

#[test]
fn an_oversize_line_is_answered_in_its_turn() {
    let mut up = Scripted::new();
    // Each miss a GET of its own: the 70 KB between them may take the
    // proxy more than one pass to read.
    let proxy = proxy_node(ProxyConfig {
        upstream_batch_bytes: 0,
        ..proxy_to(up.addr(), 5)
    });
    let mut c = Peer::connect(proxy.addr());
    // A miss, a line over --max-message-bytes, another miss: three
    // replies, in the order asked.
    let mut msg = b"OP=GET;IND=7\nOP=GET;IND=".to_vec();
    msg.extend(std::iter::repeat_n(b'1', 70_000));
    msg.extend(b"\nOP=GET;IND=8\n");
    c.send(&msg);
    assert_eq!(up.recv(), "OP=GET;IND=7");
    assert_eq!(up.recv(), "OP=GET;IND=8");
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    up.reply("OP=GET;IND=8;DATA=8;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(c.line(), "OP=GET;CODE=413;MSG=message over 65536 bytes");
    assert_eq!(c.line(), "OP=GET;IND=8;DATA=8;CODE=200");
}

#[test]
fn a_hit_behind_its_own_pending_miss_may_come_before_a_later_write() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    warm(&mut a, &mut up, "1", "1");
    // A's miss goes upstream first, then B's PUT of 1: A's GET 1 takes
    // effect between the two, so the cached 1 is the right answer.
    a.send(b"OP=GET;IND=7\n");
    assert_eq!(up.recv(), "OP=GET;IND=7");
    b.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=5");
    a.send(b"OP=GET;IND=1\n");
    assert!(up.silent_for(50), "answered from the cache");
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    up.reply("OP=PUT;IND=1;DATA=5;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(b.line(), "OP=PUT;IND=1;DATA=5;CODE=200");
}

#[test]
fn a_client_resumed_by_an_upstream_reply_is_served_to_the_end() {
    // A miss held upstream, then a long pipeline of hits: the client is
    // paused (too many unanswered requests), and resumed when the miss is
    // answered. Resuming it many times over within that one pass must not
    // leave it parked with its bytes unread.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "1");
    const HITS: usize = 100_000;
    let mut w = c.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.write_all(b"OP=GET;IND=7\n").unwrap();
        let hits = b"OP=GET;IND=1\n".repeat(HITS);
        w.write_all(&hits).unwrap();
    });
    assert_eq!(up.recv(), "OP=GET;IND=7");
    // Hold the miss until the proxy has paused the client and every byte
    // of the pipeline sits in the sockets: from then on no new edge comes
    // from this client.
    let mut probe = Peer::connect(proxy.addr());
    wait_until("the client is paused", || {
        field(&probe.ask("OP=STS"), "PAUSED").is_some_and(|n| n != "0")
    });
    writer.join().unwrap();
    up.reply("OP=GET;IND=7;DATA=7;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=7;DATA=7;CODE=200");
    for n in 0..HITS {
        let l = c.line();
        assert_eq!(l, "OP=GET;IND=1;DATA=1;CODE=200", "reply {n}");
    }
}

#[test]
fn an_upstream_502_or_504_for_a_write_leaves_its_outcome_unknown() {
    // The upstream may itself be a proxy: its 502/504 for a PUT means the
    // write may have been applied. The old value must not be served.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1,2", "10,20");
    c.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=5");
    up.reply("OP=PUT;CODE=504;MSG=upstream timeout");
    assert_eq!(c.line(), "OP=PUT;CODE=504;MSG=upstream timeout");
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1", "1 is asked again");
    up.reply("OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=5;CODE=200");
    // A 400 is a refusal: the cache stays.
    c.send(b"OP=PUT;IND=1;DATA=6\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=6");
    up.reply("OP=PUT;CODE=400;MSG=no");
    assert_eq!(c.line(), "OP=PUT;CODE=400;MSG=no");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
    // A CLR answered 502: nothing cached is known any more.
    c.send(b"OP=CLR\n");
    assert_eq!(up.recv(), "OP=CLR");
    up.reply("OP=CLR;CODE=502;MSG=upstream connection lost");
    assert_eq!(c.line(), "OP=CLR;CODE=502;MSG=upstream connection lost");
    c.send(b"OP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=2", "2 is asked again");
    up.reply("OP=GET;IND=2;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=0;CODE=200");
}

#[test]
fn losing_the_upstream_with_a_big_cache_does_not_stall_hits() {
    // 200,000 entries cached, 20,000 indices of PUTs in flight when the
    // upstream goes away: each of those indices leaves the cache, and hits
    // from another client must keep flowing meanwhile.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 200_000);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    for k in 0..25 {
        let list = (k * 8000..(k + 1) * 8000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        a.send(format!("OP=GET;IND={list}\n").as_bytes());
        assert_eq!(up.recv(), format!("OP=GET;IND={list}"));
        up.reply(&format!("OP=GET;IND={list};DATA={list};CODE=200"));
        a.line();
    }
    for k in 0..4 {
        let list = (k * 5000..(k + 1) * 5000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        a.send(format!("OP=PUT;IND={list};DATA={list}\n").as_bytes());
        assert!(up.recv().starts_with("OP=PUT"));
    }
    assert_eq!(b.ask("OP=GET;IND=199999"), "OP=GET;IND=199999;DATA=199999;CODE=200");
    // The server goes away with the PUTs unanswered, and stays away: with
    // its listener still open, the proxy's reconnect would complete in the
    // kernel's backlog and empty the cache (a restarted server may hold
    // another table) before the DMP below, or not, as timing falls.
    drop(up);
    let mut slowest = Duration::ZERO;
    loop {
        let t = Instant::now();
        assert_eq!(b.ask("OP=GET;IND=199999"), "OP=GET;IND=199999;DATA=199999;CODE=200");
        let sts = b.ask("OP=STS");
        slowest = slowest.max(t.elapsed());
        if field(&sts, "UP_RESETS").is_some_and(|n| n != "0") {
            break;
        }
    }
    // A hit that waited on the upstream would wait its timeout (5 s): half
    // of that leaves a loaded machine room and still tells the two apart.
    assert!(slowest < Duration::from_millis(2500), "a hit waited {slowest:?}");
    for _ in 0..4 {
        assert!(a.line().contains("CODE=502"));
    }
    // The written indices (0..20,000) are gone; the oldest left is 20,000.
    let dmp = b.ask("OP=DMP");
    assert!(
        field(&dmp, "IND").unwrap().starts_with("20000,20001,"),
        "{}",
        &dmp[..60]
    );
}

#[test]
fn a_reply_that_is_not_the_answer_to_the_request_resets_the_upstream() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    // Each case: the request sent, a reply that does not answer it.
    let cases = [
        ("OP=PUT;IND=1;DATA=5", "OP=PUT;IND=3;DATA=777;CODE=200"),
        ("OP=PUT;IND=1;DATA=5", "OP=PUT;IND=1;DATA=6;CODE=200"),
        ("OP=PUT;IND=1;DATA=5", "OP=PUT;CODE=400;CODE=200"),
        ("OP=GET;IND=1", "OP=GET;IND=1;DATA=1;DATA=2;CODE=200"),
        ("OP=GET;IND=1", "OP=GET;IND=1;DATA=1;CODE=204"),
        ("OP=PUT;IND=1;DATA=5", "OP=PUT;IND=1;DATA=5;CODE=100"),
        ("OP=CLR", "OP=CLR;CODE=0"),
    ];
    for (req, bad) in cases {
        c.send(format!("{req}\n").as_bytes());
        assert_eq!(up.recv(), req);
        up.reply(bad);
        let got = c.line();
        assert!(got.contains("CODE=502;MSG=upstream out of step"), "{bad} -> {got}");
        up.accept(); // the proxy dropped that connection: take its next one
    }
    // Nothing of those replies entered the cache: 1 is asked again.
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=0;CODE=200");
}

#[test]
fn an_acknowledgement_given_twice_cannot_stand_for_the_next_write() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    warm(&mut a, &mut up, "2", "0");
    a.send(b"OP=PUT;IND=1;DATA=11\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=11");
    b.send(b"OP=PUT;IND=2;DATA=22\n");
    assert_eq!(up.recv(), "OP=PUT;IND=2;DATA=22");
    up.reply("OP=PUT;IND=1;DATA=11;CODE=200");
    up.reply("OP=PUT;IND=1;DATA=11;CODE=200");
    assert_eq!(a.line(), "OP=PUT;IND=1;DATA=11;CODE=200");
    let got = b.line();
    assert!(got.contains("CODE=502"), "B's write was not acknowledged: {got}");
    // And the proxy does not serve 22 as if it had been.
    up.accept();
    b.send(b"OP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    up.reply("OP=GET;IND=2;DATA=0;CODE=200");
    assert_eq!(b.line(), "OP=GET;IND=2;DATA=0;CODE=200");
}

#[test]
fn an_add_gets_the_same_answer_through_the_proxy_as_from_the_server() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 5);
    let mut s = Peer::connect(server.addr());
    let mut p = Peer::connect(proxy.addr());
    assert!(p.ask("OP=GET;IND=0,1").ends_with("CODE=200")); // cached
    assert!(p
        .ask(&format!("OP=PUT;IND=0,1;DATA={},1", i64::MAX))
        .ends_with("CODE=200"));
    for add in [
        "OP=ADD;IND=0,1,99",
        "OP=ADD;IND=99,0,1",
        "OP=ADD;IND=0,1",
        "OP=ADD;IND=0,5",
    ] {
        assert_eq!(p.ask(add), s.ask(add), "{add}");
    }
    assert_eq!(
        s.ask("OP=ADD;IND=0,1,99"),
        "OP=ADD;CODE=400;MSG=index 99 out of range 0..9"
    );
}

/// A server whose every connection goes wrong in the same way (`serve`
/// does it to each accepted connection): the proxy must back off further
/// each time until the server has answered a request.
fn backoff_grows_against(serve: fn(TcpStream)) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let at = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            at.lock().unwrap().push(Instant::now());
            serve(s);
        }
    });
    let proxy = start_proxy(addr, 5);
    let mut c = Peer::connect(proxy.addr());
    wait_until("five failed connections", || accepted.lock().unwrap().len() >= 5);
    let sts = c.ask("OP=STS");
    let backoff: u64 = field(&sts, "UP_BACKOFF_MS").unwrap().parse().unwrap();
    assert!(
        backoff >= 400,
        "after five failed connections the proxy waits {backoff} ms: {sts}"
    );
    // And it does wait: each reconnect is scheduled after the failure
    // before it was seen, so the gaps between accepts are at least 50,
    // 100, 200 and 400 ms (lower bounds: a slow machine only widens them).
    let at = accepted.lock().unwrap().clone();
    for (i, pair) in at.windows(2).take(4).enumerate() {
        let gap = pair[1] - pair[0];
        let wait = Duration::from_millis(50 << i);
        assert!(
            gap >= wait,
            "reconnect {} came {gap:?} after a failure, before its {wait:?} backoff",
            i + 2
        );
    }
}

#[test]
fn a_server_that_accepts_and_refuses_is_retried_with_a_growing_backoff() {
    // A server at its connection limit accepts, says 503 and closes. A
    // connect that works is not an upstream that works.
    backoff_grows_against(|mut s| {
        let _ = s.write_all(b"CODE=503;MSG=too many connections\n");
    });
}

#[test]
fn a_server_that_says_503_and_closes_later_is_retried_with_a_growing_backoff() {
    // However long it takes to close after its 503 (here 100 ms, longer
    // than an idle close may come), a refusing server is not one that
    // closed an idle connection: no reconnect at once.
    backoff_grows_against(|mut s| {
        s.set_read_timeout(Some(patience())).unwrap();
        let mut first = String::new();
        let _ = BufReader::new(&s).read_line(&mut first);
        let _ = s.write_all(b"OP=LEASE;CODE=503;MSG=too many connections\n");
        std::thread::sleep(Duration::from_millis(100));
    });
}

#[test]
fn a_server_that_closes_with_a_request_unanswered_is_retried_with_a_growing_backoff() {
    // It reads the proxy's first request and closes without a word: a
    // crash, not an idle close (something was waiting). No reconnect at
    // once.
    backoff_grows_against(|s| {
        s.set_read_timeout(Some(patience())).unwrap();
        let mut first = String::new();
        let _ = BufReader::new(&s).read_line(&mut first);
    });
}

#[test]
fn a_request_sent_after_an_answered_one_times_out_on_its_own_clock() {
    // One deadline timer serves every request in flight. Armed for the
    // first, it fires after that one was answered, with a later request at
    // the head: it must be set again for that request's own deadline.
    let mut up = Scripted::new();
    let proxy = start_impatient_proxy(&up); // gives up after 300 ms
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=5;CODE=200");
    // Sent while the first request's timer is (most likely) still armed;
    // if the machine stalls past it, the second arms its own: either way
    // it must time out.
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"OP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    let t = Instant::now();
    assert_eq!(c.line(), "OP=GET;CODE=504;MSG=upstream timeout");
    assert!(t.elapsed() >= Duration::from_millis(150), "not before its own deadline");
}

#[test]
fn sts_counts_each_error_code_the_proxy_answered() {
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    assert!(c.ask("OP=FOO").contains("CODE=400"));
    assert!(
        c.ask("OP=GET;IND=99").contains("CODE=400"),
        "out of range, from the server"
    );
    assert!(c.ask("OP=GET;IND=x").contains("CODE=400"));
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "ERR400").as_deref(), Some("3"), "{sts}");
    assert_eq!(field(&sts, "ERR502"), None, "{sts}");
    // Per index: a miss, then two hits.
    for _ in 0..3 {
        assert!(c.ask("OP=GET;IND=1").ends_with("CODE=200"));
    }
    let sts = c.ask("OP=STS");
    // 99 was asked of the server too (the proxy does not know the size).
    assert_eq!(field(&sts, "MISS_IND").as_deref(), Some("1:1,99:1"), "{sts}");
    assert_eq!(field(&sts, "HIT_IND").as_deref(), Some("1:2"), "{sts}");
}

#[test]
fn per_index_counters_stop_at_4096_indices() {
    // Clients choose the indices: the proxy keeps its own counters for
    // every index below 4096 and for the first 4096 others it sees, and
    // only counts the rest in the totals.
    let server = start_server(13_000);
    let proxy = start_proxy(server.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    for chunk in (8000..12_096).collect::<Vec<i64>>().chunks(512) {
        let list = chunk.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert!(c.ask(&format!("OP=GET;IND={list}")).ends_with("CODE=200"));
    }
    for probe in ["4500", "0", "8000"] {
        assert!(c.ask(&format!("OP=GET;IND={probe}")).ends_with("CODE=200"));
    }
    let sts = c.ask("OP=STS");
    let misses = field(&sts, "MISS_IND").unwrap();
    assert!(
        misses.starts_with("0:1,8000:2,8001:1,"),
        "4500 came 4097th of the others: untracked; 0 is below 4096: tracked; {}",
        &misses[..40]
    );
    assert_eq!(
        field(&sts, "MISSES").as_deref(),
        Some("4099"),
        "the totals count everything"
    );
}

#[test]
fn the_proxys_dmp_lists_at_most_1024_entries() {
    let server = start_server(3000);
    let proxy = start_proxy(server.addr(), 2000);
    let mut c = Peer::connect(proxy.addr());
    let list = (0..2000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    assert!(c.ask(&format!("OP=GET;IND={list}")).ends_with("CODE=200"));
    let dmp = c.ask("OP=DMP");
    assert_eq!(field(&dmp, "IND").unwrap().split(',').count(), 1024);
    assert_eq!(field(&dmp, "DATA").unwrap().split(',').count(), 1024);
    assert_eq!(field(&c.ask("OP=STS"), "CACHED").as_deref(), Some("2000"));
}

#[test]
fn a_write_that_timed_out_may_still_land_so_its_index_is_not_cached_until_settled() {
    // The server stalls on B's PUT; the proxy gives up (504) and reconnects.
    // The server may still read that PUT from the old connection and apply
    // it after a fetch on the new one returned the old value: so the
    // proxy must not cache 1 until the server has finished with the old
    // connection.
    let mut up = Scripted::new();
    let proxy = start_impatient_proxy(&up);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "0");
    c.send(b"OP=PUT;IND=1;DATA=5\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1;DATA=5");
    assert_eq!(c.line(), "OP=PUT;CODE=504;MSG=upstream timeout");
    let old = up.conn.take(); // the server keeps reading the old one
    up.accept();
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=0;CODE=200"); // before the old PUT lands
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=0;CODE=200");
    let mut probe = Peer::connect(proxy.addr());
    assert_eq!(field(&probe.ask("OP=STS"), "UP_DRAINING").as_deref(), Some("1"));
    // Now the old PUT lands: a read of 1 must not come from the cache.
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1", "1 was not cached");
    up.reply("OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=5;CODE=200");
    // The server closes the old connection: nothing can land any more, so
    // 1 is cached again after its next fetch.
    let (mut r, _w) = old.unwrap();
    let mut rest = String::new();
    assert_eq!(
        r.read_line(&mut rest).unwrap(),
        0,
        "the proxy shut the old connection for writing"
    );
    drop((r, _w));
    wait_until("the old connection is drained", || {
        field(&probe.ask("OP=STS"), "UP_DRAINING").as_deref() == Some("0")
    });
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=5;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=5;CODE=200");
    assert!(up.silent_for(50), "cached again");
}

#[test]
fn concurrent_misses_of_one_index_share_one_fetch() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut clients: Vec<Peer> = (0..5).map(|_| Peer::connect(proxy.addr())).collect();
    clients[0].send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4");
    for c in &mut clients[1..] {
        c.send(b"OP=GET;IND=4\n");
    }
    // The server is slow: the four later misses arrive while the first
    // fetch is in flight, and join it.
    let mut probe = Peer::connect(proxy.addr());
    wait_until("four reads joined the fetch", || {
        field(&probe.ask("OP=STS"), "COALESCED").as_deref() == Some("4")
    });
    assert!(up.silent_for(50), "no second fetch");
    up.reply("OP=GET;IND=4;DATA=44;CODE=200");
    for c in &mut clients {
        assert_eq!(c.line(), "OP=GET;IND=4;DATA=44;CODE=200");
    }
    // The same for a whole multi-index request.
    clients[0].send(b"OP=GET;IND=7,8\n");
    assert_eq!(up.recv(), "OP=GET;IND=7,8");
    clients[1].send(b"OP=ADD;IND=8,7\n");
    clients[2].send(b"OP=GET;IND=7,8,7\n");
    wait_until("both joined", || {
        field(&probe.ask("OP=STS"), "COALESCED").as_deref() == Some("6")
    });
    assert!(up.silent_for(50), "no second fetch");
    up.reply("OP=GET;IND=7,8;DATA=70,80;CODE=200");
    assert_eq!(clients[0].line(), "OP=GET;IND=7,8;DATA=70,80;CODE=200");
    assert_eq!(clients[1].line(), "OP=ADD;IND=8,7;DATA=150;CODE=200");
    assert_eq!(clients[2].line(), "OP=GET;IND=7,8,7;DATA=70,80,70;CODE=200");
}

#[test]
fn a_read_does_not_join_a_fetch_that_asks_more_than_it_does() {
    // A's fetch asks 3 and 20; the server refuses it (20 is out of range).
    // B asked only 3: it must get 3, as it would from the server alone.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=3,20\n");
    assert_eq!(up.recv(), "OP=GET;IND=3,20");
    b.send(b"OP=GET;IND=3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3", "B's own fetch");
    up.reply("OP=GET;CODE=400;MSG=index 20 out of range 0..9");
    up.reply("OP=GET;IND=3;DATA=0;CODE=200");
    assert_eq!(a.line(), "OP=GET;CODE=400;MSG=index 20 out of range 0..9");
    assert_eq!(b.line(), "OP=GET;IND=3;DATA=0;CODE=200");
}

#[test]
fn a_miss_after_a_write_does_not_join_a_fetch_sent_before_it() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    let mut c = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4");
    b.send(b"OP=PUT;IND=4;DATA=9\n");
    assert_eq!(up.recv(), "OP=PUT;IND=4;DATA=9");
    // C asks after the PUT was sent: the fetch before it will not do.
    c.send(b"OP=GET;IND=4,5\n");
    assert_eq!(up.recv(), "OP=GET;IND=4,5", "a second fetch, after the PUT");
    up.reply("OP=GET;IND=4;DATA=0;CODE=200");
    up.reply("OP=PUT;IND=4;DATA=9;CODE=200");
    up.reply("OP=GET;IND=4,5;DATA=9,0;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=4;DATA=0;CODE=200");
    assert_eq!(b.line(), "OP=PUT;IND=4;DATA=9;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4,5;DATA=9,0;CODE=200");
}

#[test]
fn a_client_that_leaves_while_joined_to_a_fetch_disturbs_no_one() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    let mut c = Peer::connect(proxy.addr());
    a.send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4");
    b.send(b"OP=GET;IND=4\n");
    let mut probe = Peer::connect(proxy.addr());
    wait_until("B joined", || {
        field(&probe.ask("OP=STS"), "COALESCED").as_deref() == Some("1")
    });
    drop(b); // gone: its reply, when it comes, goes nowhere
    c.send(b"OP=GET;IND=4\n");
    wait_until("C joined", || {
        field(&probe.ask("OP=STS"), "COALESCED").as_deref() == Some("2")
    });
    up.reply("OP=GET;IND=4;DATA=44;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=4;DATA=44;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4;DATA=44;CODE=200");
    // And a new read after it: the value is cached now. B's connection
    // (half-closed, as far as the proxy can tell) closes once its reply
    // is written.
    assert_eq!(probe.ask("OP=GET;IND=4"), "OP=GET;IND=4;DATA=44;CODE=200");
    assert!(up.silent_for(50));
    wait_until("B's connection is closed", || {
        field(&probe.ask("OP=STS"), "CONNS").as_deref() == Some("3")
    });
}

#[test]
fn a_fetch_answered_after_the_drain_settles_is_not_cached_if_sent_before() {
    // A PUT of 1 and 2 times out; the proxy reconnects and fetches 1 (the
    // server reads 0). The server then applies the old PUT and closes the
    // old connection, before the fetch's reply reaches the proxy: that
    // reply (0) must not be cached, or a later GET 1,2 would be torn.
    let mut up = Scripted::new();
    let proxy = start_impatient_proxy(&up);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=PUT;IND=1,2;DATA=5,5\n");
    assert_eq!(up.recv(), "OP=PUT;IND=1,2;DATA=5,5");
    assert_eq!(c.line(), "OP=PUT;CODE=504;MSG=upstream timeout");
    let old = up.conn.take();
    up.accept();
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    drop(old); // the old PUT lands, the old connection closes
    let mut probe = Peer::connect(proxy.addr());
    wait_until("drained", || {
        field(&probe.ask("OP=STS"), "UP_DRAINING").as_deref() == Some("0")
    });
    up.reply("OP=GET;IND=1;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=0;CODE=200");
    c.send(b"OP=GET;IND=1,2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2", "1 was not cached");
    up.reply("OP=GET;IND=1,2;DATA=5,5;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1,2;DATA=5,5;CODE=200");
}

#[test]
fn an_invalidation_is_applied_in_order_with_the_replies_and_acknowledged() {
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    // After the reply: 1 is cached, then dropped, then fetched again.
    warm(&mut c, &mut up, "1", "10");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200");
    up.reply("OP=INV;SEQ=1;IND=1");
    assert_eq!(up.recv(), "OP=ACK;SEQ=1", "confirmed once applied");
    up.reply("OP=ACK;SEQ=1;CODE=200");
    warm(&mut c, &mut up, "1", "11");
    // Crossing a fetch: the server sent the INV, then answered a fetch it
    // processed while the write waited (NOCACHE): not cached.
    c.send(b"OP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    up.reply("OP=INV;SEQ=2;IND=1");
    up.reply("OP=GET;IND=2;DATA=20;NOCACHE=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=20;CODE=200");
    assert_eq!(up.recv(), "OP=ACK;SEQ=2");
    up.reply("OP=ACK;SEQ=2;CODE=200");
    warm(&mut c, &mut up, "2", "21");
    // ... or after the write was applied: the newer value is cached.
    c.send(b"OP=GET;IND=3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3");
    up.reply("OP=INV;SEQ=3;IND=3");
    up.reply("OP=GET;IND=3;DATA=33;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=33;CODE=200");
    assert_eq!(up.recv(), "OP=ACK;SEQ=3");
    up.reply("OP=ACK;SEQ=3;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=2,3"), "OP=GET;IND=2,3;DATA=21,33;CODE=200");
    // An INV without IND drops everything.
    up.reply("OP=INV;SEQ=4");
    assert_eq!(up.recv(), "OP=ACK;SEQ=4");
    up.reply("OP=ACK;SEQ=4;CODE=200");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;CODE=200");
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "INV_RECV").as_deref(), Some("4"), "{sts}");
    assert_eq!(field(&sts, "LEASE_MS").as_deref(), Some("60000"), "{sts}");
}

#[test]
fn with_leases_a_read_joins_no_fetch_already_sent() {
    // Another proxy's write may be applied between the server's answer to
    // a fetch on the wire and a read arriving now: the read sends its own.
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let (mut c, mut d) = (Peer::connect(proxy.addr()), Peer::connect(proxy.addr()));
    // (Not the first request: the fetch in question is not number 1.)
    warm(&mut c, &mut up, "3", "30");
    c.send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4");
    d.send(b"OP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=4", "a second fetch, not a join");
    up.reply("OP=GET;IND=4;DATA=40;CODE=200");
    up.reply("OP=GET;IND=4;DATA=41;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4;DATA=40;CODE=200");
    assert_eq!(d.line(), "OP=GET;IND=4;DATA=41;CODE=200");
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "COALESCED").as_deref(), Some("0"), "{sts}");
    assert_eq!(
        field(&sts, "UP_REQS").as_deref(),
        Some("4"),
        "LEASE and three fetches: {sts}"
    );
}

#[test]
fn a_proxy_renews_its_lease_when_quiet_and_serves_no_hit_without_one() {
    let mut up = Scripted::granting(300);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "10");
    // Quiet: a renewal well before the lease runs out (a third of it).
    assert_eq!(up.recv(), "OP=LEASE");
    up.reply("OP=LEASE;MS=300;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200");
    // The next renewal is left unanswered: once the lease has run out,
    // 1 is not served from the cache but fetched (behind the renewal).
    assert_eq!(up.recv(), "OP=LEASE");
    std::thread::sleep(Duration::from_millis(350));
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1", "no hit without a lease");
    up.reply("OP=LEASE;MS=300;CODE=200");
    up.reply("OP=GET;IND=1;DATA=12;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=12;CODE=200");
    let sts = c.ask("OP=STS");
    assert!(field(&sts, "LEASE_LAPSES").unwrap() != "0", "{sts}");
}

#[test]
fn a_coherent_server_without_room_for_a_lease_gets_every_read() {
    // A 503 to LEASE is not a server without leases: the proxy must not
    // fall back to trusting its cache alone. It reads nothing from it and
    // asks again.
    let mut up = Scripted {
        lease_reply: Some("OP=LEASE;CODE=503;MSG=too many proxies hold leases"),
        ..Scripted::new()
    };
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "10");
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1", "not a hit without a lease");
    up.reply("OP=GET;IND=1;DATA=11;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=11;CODE=200");
    assert_eq!(up.recv(), "OP=LEASE", "asked again");
}

/// Reads the next request from a stand-in server's side of a connection
/// that refused the proxy a lease with a 503: the proxy asks again when
/// quiet for a second, and each such LEASE is refused the same way.
fn read_up(r: &mut BufReader<TcpStream>, w: &mut TcpStream) -> String {
    loop {
        let mut s = String::new();
        assert!(r.read_line(&mut s).unwrap() > 0, "proxy closed the upstream");
        if s.trim_end() != "OP=LEASE" {
            return s.trim_end().to_string();
        }
        w.write_all(b"OP=LEASE;CODE=503;MSG=busy\n").unwrap();
    }
}

#[test]
fn the_backoff_ends_when_the_server_answers_not_when_it_says_503() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = start_proxy(l.local_addr().unwrap(), 5);
    let mut c = Peer::connect(proxy.addr());
    let accept = || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(patience())).unwrap();
        (BufReader::new(s.try_clone().unwrap()), s)
    };
    let sts = |c: &mut Peer, k: &str| field(&c.ask("OP=STS"), k);
    // The first connection is closed with the proxy's own LEASE in
    // flight: it fails, as no client's request, and the proxy retries
    // after the first backoff.
    let (mut r, s) = accept();
    let mut lease = String::new();
    r.read_line(&mut lease).unwrap();
    assert_eq!(lease, "OP=LEASE\n");
    drop((r, s));
    // A server at its limit answers 503 (to the LEASE): not yet a server
    // that works.
    let (mut r, mut s) = accept();
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(read_up(&mut r, &mut s), "OP=GET;IND=1");
    s.write_all(b"OP=GET;CODE=503;MSG=busy\n").unwrap();
    assert_eq!(c.line(), "OP=GET;CODE=503;MSG=busy");
    assert_eq!(
        sts(&mut c, "UP_BACKOFF_MS").as_deref(),
        Some("50"),
        "a 503 ends no backoff"
    );
    assert_eq!(
        sts(&mut c, "ERR502"),
        None,
        "the failed LEASE was the proxy's own: no client got a 502"
    );
    // Any other answer does.
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(read_up(&mut r, &mut s), "OP=GET;IND=1");
    s.write_all(b"OP=GET;CODE=400;MSG=no\n").unwrap();
    assert_eq!(c.line(), "OP=GET;CODE=400;MSG=no");
    assert_eq!(
        sts(&mut c, "UP_BACKOFF_MS").as_deref(),
        Some("0"),
        "the server answered"
    );
}

#[test]
fn an_invalidation_that_repeats_a_seq_resets_the_upstream() {
    // Invalidations are numbered: one that is not new means the proxy and
    // the server disagree on what was applied. The proxy drops the
    // connection (and with it the lease) rather than guess.
    for repeat in ["OP=INV;SEQ=1;IND=2", "OP=INV;SEQ=0;IND=2"] {
        let mut up = Scripted::granting(60_000);
        let proxy = start_proxy(up.addr(), 5);
        let mut c = Peer::connect(proxy.addr());
        warm(&mut c, &mut up, "1", "10");
        up.reply("OP=INV;SEQ=1;IND=1");
        assert_eq!(up.recv(), "OP=ACK;SEQ=1");
        up.reply("OP=ACK;SEQ=1;CODE=200");
        up.reply(repeat);
        let (r, _) = up.conn.as_mut().unwrap();
        let mut rest = String::new();
        assert_eq!(
            r.read_line(&mut rest).expect("the proxy closes at once"),
            0,
            "after {repeat:?} the proxy sent {rest:?} instead of closing"
        );
        // A fresh connection, a fresh lease: it carries on.
        up.conn = None;
        up.accept();
        warm(&mut c, &mut up, "2", "20");
    }
}

#[test]
fn a_close_with_a_request_in_flight_teaches_no_keepalive() {
    // A server that closes while a request waits has crashed or reset, not
    // closed an idle connection: however long the silence before, the
    // proxy must not start pinging it.
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    std::thread::sleep(Duration::from_millis(700));
    up.conn = None;
    assert!(c.line().starts_with("OP=GET;CODE=502;"));
    up.accept();
    assert!(up.silent_for(800), "the proxy pings a server that has no idle policy");
}

#[test]
fn a_lease_of_zero_ms_is_no_lease() {
    // `MS=0` grants nothing: the proxy treats the server as one without
    // leases, and does not renew a lease that never was (at once, again
    // and again).
    let mut up = Scripted {
        lease_reply: Some("OP=LEASE;MS=0;CODE=200"),
        ..Scripted::new()
    };
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "10");
    assert!(up.silent_for(300), "no renewals");
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200", "a hit");
    assert_eq!(field(&c.ask("OP=STS"), "LEASE_MS").as_deref(), Some("0"));
}

#[test]
fn an_upstream_reset_fails_the_requests_in_flight_with_502() {
    let mut up = Scripted::new();
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    c.send(b"OP=GET;IND=2\n");
    // Closing a socket with bytes unread resets the connection: wait until
    // the second request has arrived, unread.
    let (r, s) = up.conn.take().unwrap();
    assert!(r.buffer().is_empty());
    let mut one = [0u8; 1];
    assert_eq!(s.peek(&mut one).unwrap(), 1);
    drop((r, s));
    assert!(c.line().starts_with("OP=GET;CODE=502;"));
    assert!(c.line().starts_with("OP=GET;CODE=502;"));
    up.accept();
    warm(&mut c, &mut up, "1", "10");
}

#[test]
fn a_lease_is_renewed_a_third_of_it_after_the_send_that_renewed_it_busy_or_not() {
    // A lease runs from the send of the request whose answer renewed it
    // last. The connect's LEASE (sent after t0) is renewed a third of the
    // lease later even while a GET is held at the server, and only once
    // until that renewal is answered.
    let t0 = Instant::now();
    let mut up = Scripted::granting(3000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    assert_eq!(up.recv(), "OP=LEASE", "renewed with a request in flight");
    let renewed = t0.elapsed();
    assert!(renewed >= Duration::from_secs(1), "not before a third: {renewed:?}");
    assert!(up.silent_for(1500), "one renewal out at a time");
    up.reply("OP=GET;IND=1;DATA=10;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=10;CODE=200");
    up.reply("OP=LEASE;MS=3000;CODE=200");
    assert_eq!(up.recv(), "OP=LEASE", "and again a third after that one");
    up.reply("OP=LEASE;MS=3000;CODE=200");
}

#[test]
fn a_client_with_1024_replies_waiting_is_read_no_further_until_they_are_answered() {
    // Each request owes its client a reply in order: a client pipelining
    // past 1024 of them while the server is slow is paused, not queued
    // without end, and read on once replies flow. (Each miss a GET of its
    // own, so the first one alone is read here.)
    let mut up = Scripted::new();
    let proxy = proxy_node(ProxyConfig {
        upstream_batch_bytes: 0,
        ..proxy_to(up.addr(), 5)
    });
    let mut c = Peer::connect(proxy.addr());
    let n = 1100;
    c.send(&b"OP=GET;IND=1\n".repeat(n));
    assert_eq!(up.recv(), "OP=GET;IND=1");
    let mut probe = Peer::connect(proxy.addr());
    let mut asked = 0;
    wait_until("the client paused", || {
        asked += 1;
        field(&probe.ask("OP=STS"), "PAUSED").as_deref() == Some("1")
    });
    let reqs: usize = field(&probe.ask("OP=STS"), "REQS").unwrap().parse().unwrap();
    // (REQS counts every STS the probe sent, this one too.)
    assert_eq!(reqs - asked - 1, 1024, "the client's requests read when it paused");
    // The server answers now, every fetch it gets.
    std::thread::spawn(move || {
        up.reply("OP=GET;IND=1;DATA=7;CODE=200");
        loop {
            let (r, _) = up.conn.as_mut().unwrap();
            let mut line = String::new();
            if !matches!(r.read_line(&mut line), Ok(n) if n > 0) {
                return; // the proxy is gone: the test is over
            }
            assert_eq!(line, "OP=GET;IND=1\n");
            up.reply("OP=GET;IND=1;DATA=7;CODE=200");
        }
    });
    for i in 0..n {
        assert_eq!(c.line(), "OP=GET;IND=1;DATA=7;CODE=200", "reply {i}");
    }
}

#[test]
fn a_reconnected_proxy_keeps_its_cache_only_when_the_server_says_keep() {
    // The server answers LEASE with the same table and write count as
    // before the reconnect: the proxy asks to keep its entries, and reads
    // none of them until the answer. KEEP=0 (with CODE=200) empties the
    // cache; KEEP=1 keeps it.
    let mut up = Scripted::new();
    up.lease_reply = Some("OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;CODE=200");
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "10");
    warm(&mut c, &mut up, "2", "20");
    for keep in ["0", "1"] {
        up.conn = None; // the server goes away and comes back
        assert_eq!(up.recv(), "OP=LEASE;IND=1,2;ID=00000000000000ab;SEQ=5", "KEEP={keep}");
        // Until the answer, a cached entry is fetched.
        c.send(b"OP=GET;IND=1\n");
        assert_eq!(up.recv(), "OP=GET;IND=1", "KEEP={keep}");
        up.reply(&format!(
            "OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;KEEP={keep};CODE=200"
        ));
        up.reply("OP=GET;IND=1;DATA=11;CODE=200");
        assert_eq!(c.line(), "OP=GET;IND=1;DATA=11;CODE=200");
        wait_leased(&mut c);
        if keep == "0" {
            warm(&mut c, &mut up, "2", "21");
        } else {
            // A hit: the stand-in never answers a GET from here on.
            assert_eq!(c.ask("OP=GET;IND=2"), "OP=GET;IND=2;DATA=21;CODE=200");
        }
    }
}

#[test]
fn a_resume_prepared_for_a_connection_that_is_gone_is_not_sent_on_the_next() {
    // The server answers LEASE and closes at once, and the proxy reads
    // both in one pass (its process is stopped meanwhile): the resuming
    // LEASE it was about to send belongs to the lost connection. On the
    // next one it asks LEASE and waits for the answer before anything else.
    let mut up = Scripted::new();
    up.lease_reply = Some("OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;CODE=200");
    let upstream = up.addr().to_string();
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--log-level",
        "error",
    ]);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    warm(&mut c, &mut up, "1", "10");
    up.conn = None;
    up.accept_unanswered();
    proxy.signal("STOP");
    up.reply("OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;CODE=200");
    up.conn = None; // answered and closed at once
    proxy.signal("CONT");
    up.accept_unanswered();
    assert!(up.silent_for(300), "nothing before the LEASE is answered");
    up.reply("OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;CODE=200");
    assert_eq!(up.recv(), "OP=LEASE;IND=1;ID=00000000000000ab;SEQ=5");
    up.reply("OP=LEASE;MS=60000;ID=00000000000000ab;SEQ=5;KEEP=1;CODE=200");
    wait_leased(&mut c);
    assert_eq!(c.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=10;CODE=200", "kept");
}

#[test]
fn an_error_answer_to_the_proxys_own_request_is_no_clients_error() {
    // An ACK the server refuses is the proxy's own business: no client
    // was answered an error, so STS counts none.
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "1", "10");
    up.reply("OP=INV;SEQ=1;IND=1");
    assert_eq!(up.recv(), "OP=ACK;SEQ=1");
    up.reply("OP=ACK;SEQ=1;CODE=400;MSG=ACK from a connection that holds no lease");
    // Answered after the ACK's answer on the same connection: read after it.
    warm(&mut c, &mut up, "2", "20");
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "ERR400"), None, "{sts}");
}

#[test]
fn a_fetch_answered_with_nocache_for_one_index_caches_the_others() {
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=4,5\n");
    assert_eq!(up.recv(), "OP=GET;IND=4,5");
    up.reply("OP=GET;IND=4,5;DATA=40,50;NOCACHE=4;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4,5;DATA=40,50;CODE=200");
    // 5 is a hit (the stand-in answers nothing unasked); 4 is fetched.
    assert_eq!(c.ask("OP=GET;IND=5"), "OP=GET;IND=5;DATA=50;CODE=200");
    warm(&mut c, &mut up, "4", "41");
}

#[test]
fn a_client_is_paused_at_256_kib_of_replies_it_is_owed_counting_21_bytes_per_index_asked() {
    // Replies not yet written count against the client's 256 KiB output
    // budget by their expected size: the request's length, 21 bytes per
    // index a GET asks (a value and its comma) and 64. Each GET here is
    // 6010 bytes and asks 1000 indices: 27074 bytes expected, so the
    // tenth (270740 > 262144) pauses the client.
    let mut up = Scripted::new();
    let proxy = proxy_node(ProxyConfig {
        upstream: up.addr(),
        capacity: 5,
        upstream_timeout: Duration::from_secs(600),
        ..Default::default()
    });
    let ind: Vec<String> = (10_000..11_000).map(|i| i.to_string()).collect();
    let get = format!("OP=GET;IND={}\n", ind.join(","));
    assert_eq!(get.len(), 6011);
    let c = Peer::connect(proxy.addr());
    let mut out = c.stream.try_clone().unwrap();
    let n = 60; // more than pause the client even at 1 byte per index
    let writer = std::thread::spawn(move || {
        let _ = out.write_all(get.repeat(n).as_bytes());
    });
    let mut probe = Peer::connect(proxy.addr());
    let mut asked = 0;
    wait_until("the client paused", || {
        asked += 1;
        field(&probe.ask("OP=STS"), "PAUSED").as_deref() == Some("1")
    });
    let reqs: usize = field(&probe.ask("OP=STS"), "REQS").unwrap().parse().unwrap();
    assert_eq!(reqs - asked - 1, 10, "the client's requests read when it paused");
    // The client leaves and the server goes: nothing is owed any more (the
    // proxy would otherwise wait for the replies when stopped).
    c.stream.shutdown(std::net::Shutdown::Both).unwrap();
    let _ = writer.join();
    up.accept();
    up.conn = None;
}

#[test]
fn with_leases_a_read_behind_its_own_miss_joins_no_fetch_sent_before_that_miss() {
    // One client pipelines GET 2, GET 3, GET 2,3; with a lease and no write
    // in flight, the last read may join a fetch not yet on the wire, but
    // only one at or after the connection's latest request in flight (GET
    // 3): not the fetch of 2 sent before it, whose value could be older
    // than one the client already depends on. (Should the kernel hand the
    // proxy the bytes in two passes, both fetches are on the wire when the
    // last read arrives: it then asks both indices itself.)
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    up.accept();
    wait_leased(&mut c);
    c.send(b"OP=GET;IND=2\nOP=GET;IND=3\nOP=GET;IND=2,3\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    assert_eq!(up.recv(), "OP=GET;IND=3");
    let third = up.recv();
    assert!(third == "OP=GET;IND=2" || third == "OP=GET;IND=2,3", "{third}");
    up.reply("OP=GET;IND=2;DATA=20;CODE=200");
    up.reply("OP=GET;IND=3;DATA=30;CODE=200");
    if third == "OP=GET;IND=2" {
        up.reply("OP=GET;IND=2;DATA=21;CODE=200");
    } else {
        up.reply("OP=GET;IND=2,3;DATA=21,30;CODE=200");
    }
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=20;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=30;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2,3;DATA=21,30;CODE=200");
}

#[test]
fn with_leases_a_read_joins_no_fetch_queued_before_another_clients_write() {
    // Clients A and B send while the proxy is stopped, so that one loop
    // pass reads A's GET 2 and PUT 1=5, then B's GET 1,2, with A's fetch of
    // 2 not on the wire yet. The server may answer that fetch, then apply
    // another proxy's write to 2, then A's write (held while it waits for
    // that proxy), then the requests behind it: B's read, which sees A's
    // write to 1, must take 2 from a fetch sent after that write too.
    // (Should the kernel hand the proxy B's bytes first, or in another
    // pass, the same three requests go up: the test then cannot tell, but
    // does not fail.)
    let mut up = Scripted::granting(60_000);
    let upstream = up.addr().to_string();
    let proxy = spawn_node(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--log-level",
        "warn",
    ]);
    let addr: SocketAddr = proxy.addr.parse().unwrap();
    let (mut a, mut b) = (Peer::connect(addr), Peer::connect(addr));
    up.accept();
    wait_leased(&mut a);
    assert!(b.ask("OP=STS").ends_with("CODE=200"), "B's connection is open");
    proxy.signal("STOP");
    a.send(b"OP=GET;IND=2\nOP=PUT;IND=1;DATA=5\n");
    b.send(b"OP=GET;IND=1,2\n");
    proxy.signal("CONT");
    let mut sent: Vec<String> = (0..3).map(|_| up.recv()).collect();
    sent.sort();
    assert_eq!(sent, ["OP=GET;IND=1,2", "OP=GET;IND=2", "OP=PUT;IND=1;DATA=5"]);
}

/// Invalidations, each with a new SEQ, then the answer to a fetch, in one
/// burst from the server (more than the proxy holds as events at once).
fn flood_then_answer(up: &mut Scripted, count: u64) {
    let mut burst = String::new();
    for seq in 1..=count {
        burst.push_str(&format!("OP=INV;SEQ={seq};IND=2\n"));
    }
    burst.push_str("OP=GET;IND=1;DATA=11;CODE=200");
    up.reply(&burst);
}

#[test]
fn a_flood_of_invalidations_is_taken_in_bounded_batches_in_order() {
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    flood_then_answer(&mut up, 3000);
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=11;CODE=200");
    // Every invalidation was applied and acknowledged, the last one last.
    loop {
        let ack = up.recv();
        assert!(ack.starts_with("OP=ACK;SEQ="), "{ack}");
        if ack == "OP=ACK;SEQ=3000" {
            break;
        }
        up.reply(&format!("{ack};CODE=200"));
    }
    let sts = c.ask("OP=STS");
    assert_eq!(field(&sts, "INV_RECV").as_deref(), Some("3000"), "{sts}");
}

#[test]
fn replies_left_behind_a_flood_are_taken_even_when_the_server_closes() {
    // The server's close comes in the read pass that stops at the bound:
    // the replies read before it still answer their clients.
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    flood_then_answer(&mut up, 3000);
    up.conn = None; // closed
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=11;CODE=200");
}

/// A proxy of 5 entries in front of `up`, whose LEASE `up` has answered
/// (with a 400: a server without leases, so the proxy caches alone), and
/// which has seen `up` answer a GET of 9 (cached).
fn settled_proxy(up: &mut Scripted, batch_bytes: usize) -> NodeHandle {
    let proxy = proxy_node(ProxyConfig {
        upstream_batch_bytes: batch_bytes,
        ..proxy_to(up.addr(), 5)
    });
    let mut probe = Peer::connect(proxy.addr());
    up.accept();
    wait_until("the proxy has its LEASE answered", || {
        field(&probe.ask("OP=STS"), "LEASE_STATE").as_deref() == Some("alone")
    });
    // Fetches are batched only within the indices the server has answered.
    warm(&mut probe, up, "9", "90");
    proxy
}

#[test]
fn the_misses_of_one_pass_go_as_one_get_and_each_gets_its_part() {
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    // One write, one read pass: three reads grow one fetch, one GET. (The
    // last read's 3 is the first read's: it is not asked twice.)
    c.send(b"OP=GET;IND=3\nOP=ADD;IND=4,5\nOP=GET;IND=6,3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3,4,5,6");
    assert!(up.silent_for(50), "nothing else was sent");
    up.reply("OP=GET;IND=3,4,5,6;DATA=30,40,50,60;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=30;CODE=200");
    assert_eq!(c.line(), "OP=ADD;IND=4,5;DATA=90;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=6,3;DATA=60,30;CODE=200");
    let sts = c.ask("OP=STS");
    // (The fetch of 9 that made the indices known, then these three.)
    assert_eq!(field(&sts, "UP_FETCHES").as_deref(), Some("4"), "{sts}");
    assert_eq!(field(&sts, "UP_FETCH_GETS").as_deref(), Some("2"), "{sts}");
    // Every part entered the cache: hits now.
    assert_eq!(
        c.ask("OP=GET;IND=3,4,5,6"),
        "OP=GET;IND=3,4,5,6;DATA=30,40,50,60;CODE=200"
    );
    assert!(up.silent_for(50), "answered from the cache");
}

#[test]
fn a_batch_never_crosses_a_write() {
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\nOP=PUT;IND=3;DATA=9\nOP=GET;IND=4\nOP=GET;IND=5\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2");
    assert_eq!(up.recv(), "OP=PUT;IND=3;DATA=9");
    assert_eq!(up.recv(), "OP=GET;IND=4,5");
    up.reply("OP=GET;IND=1,2;DATA=1,2;CODE=200");
    up.reply("OP=PUT;IND=3;DATA=9;CODE=200");
    up.reply("OP=GET;IND=4,5;DATA=4,5;CODE=200");
    for want in [
        "OP=GET;IND=1;DATA=1;CODE=200",
        "OP=GET;IND=2;DATA=2;CODE=200",
        "OP=PUT;IND=3;DATA=9;CODE=200",
        "OP=GET;IND=4;DATA=4;CODE=200",
        "OP=GET;IND=5;DATA=5;CODE=200",
    ] {
        assert_eq!(c.line(), want);
    }
}

#[test]
fn a_batch_is_bounded_by_its_bytes() {
    let mut up = Scripted::new();
    // Two indices' worth (21 bytes each, at most, counted).
    let proxy = settled_proxy(&mut up, 42);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\nOP=GET;IND=3\nOP=GET;IND=4,5,6\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2");
    assert_eq!(up.recv(), "OP=GET;IND=3");
    assert_eq!(up.recv(), "OP=GET;IND=4,5,6", "a fetch over the bound goes alone");
    up.reply("OP=GET;IND=1,2;DATA=1,2;CODE=200");
    up.reply("OP=GET;IND=3;DATA=3;CODE=200");
    up.reply("OP=GET;IND=4,5,6;DATA=4,5,6;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=3;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4,5,6;DATA=4,5,6;CODE=200");
}

#[test]
fn an_error_answering_a_batch_answers_each_of_its_fetches() {
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2");
    up.reply("OP=GET;CODE=400;MSG=no such index");
    assert_eq!(c.line(), "OP=GET;CODE=400;MSG=no such index");
    assert_eq!(c.line(), "OP=GET;CODE=400;MSG=no such index");
    assert_eq!(
        c.ask("OP=DMP"),
        "OP=DMP;CAPACITY=5;IND=9;DATA=90;CODE=200",
        "nothing more cached"
    );
}

#[test]
fn a_reply_that_does_not_answer_the_whole_batch_resets_the_upstream() {
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2");
    // The answer to the first fetch alone: out of step.
    up.reply("OP=GET;IND=1;DATA=1;CODE=200");
    assert!(c.line().starts_with("OP=GET;CODE=502"));
    assert!(c.line().starts_with("OP=GET;CODE=502"));
    assert_eq!(
        c.ask("OP=DMP"),
        "OP=DMP;CAPACITY=5;IND=9;DATA=90;CODE=200",
        "nothing more cached"
    );
}

#[test]
fn nocache_in_a_batch_answer_holds_for_the_fetch_that_asked_that_index() {
    let mut up = Scripted::granting(60_000);
    let proxy = start_proxy(up.addr(), 5);
    let mut c = Peer::connect(proxy.addr());
    up.accept();
    wait_leased(&mut c);
    warm(&mut c, &mut up, "9", "90");
    c.send(b"OP=GET;IND=3\nOP=GET;IND=4\n");
    assert_eq!(up.recv(), "OP=GET;IND=3,4");
    // A write to 4 waits at the server: 4 must not be kept.
    up.reply("OP=GET;IND=3,4;DATA=30,40;NOCACHE=4;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=30;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4;DATA=40;CODE=200");
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=9,3;DATA=90,30;CODE=200");
}

#[test]
fn a_bad_index_in_a_pass_fails_only_the_request_that_asked_it() {
    // A GET of an index the table lacks is refused (400) by the server; a
    // valid GET in the same pass, from the same client or another, must
    // not inherit that refusal by sharing a batched GET with it.
    let server = start_server(10);
    let proxy = start_proxy(server.addr(), 1);
    let mut c = Peer::connect(proxy.addr());
    wait_leased(&mut c);
    // Known indices first (the proxy batches only what it has seen the
    // server answer), then a pass with a valid miss and a bad one.
    for i in 0..10 {
        assert!(c.ask(&format!("OP=GET;IND={i}")).ends_with(";CODE=200"));
    }
    for round in 0..20 {
        c.send(b"OP=GET;IND=4\nOP=GET;IND=99\nOP=GET;IND=5\n");
        assert_eq!(c.line(), "OP=GET;IND=4;DATA=0;CODE=200", "round {round}");
        assert!(c.line().starts_with("OP=GET;CODE=400"), "round {round}");
        assert_eq!(c.line(), "OP=GET;IND=5;DATA=0;CODE=200", "round {round}");
    }
}

/// The proxy binary (so that it can be stopped with SIGSTOP) in front of
/// `up`, its session in `state` ("alone", "granted"), indices up to
/// `known` answered once (so fetches of them may be grown), and three
/// clients accepted and registered: a probe and two more.
fn stoppable_proxy(up: &mut Scripted, state: &str, known: &str) -> (Proc, Peer, Peer, Peer) {
    let proxy = spawn_node(&proxy_args(&up.addr().to_string(), &["--capacity", "5"]));
    let addr: SocketAddr = proxy.addr.parse().unwrap();
    let mut probe = Peer::connect(addr);
    up.accept();
    wait_until("the proxy's session with the server settles", || {
        field(&probe.ask("OP=STS"), "LEASE_STATE").as_deref() == Some(state)
    });
    warm(&mut probe, up, known, "0");
    let (mut a, mut b) = (Peer::connect(addr), Peer::connect(addr));
    for c in [&mut a, &mut b] {
        assert!(c.ask("OP=STS").contains("CODE=200"), "accepted and registered");
    }
    (proxy, probe, a, b)
}

#[test]
fn an_upstream_answer_in_the_middle_of_a_pass_does_not_split_its_misses() {
    // The proxy (the binary, so it can be stopped) is stopped while three
    // sockets become readable, in this order: client A's miss, the
    // server's answer to an earlier fetch, client B's miss. Woken, one loop
    // pass takes them in that order. A's fetch must stay open through the
    // answer, grown by B's miss: one GET for the pass, written at its end.
    let mut up = Scripted::new();
    let (proxy, mut probe, mut a, mut b) = stoppable_proxy(&mut up, "alone", "9");
    probe.send(b"OP=GET;IND=8\n");
    assert_eq!(up.recv(), "OP=GET;IND=8");
    proxy.signal("STOP");
    a.send(b"OP=GET;IND=1\n");
    up.reply("OP=GET;IND=8;DATA=80;CODE=200");
    b.send(b"OP=GET;IND=2\n");
    proxy.signal("CONT");
    assert_eq!(up.recv(), "OP=GET;IND=1,2", "one GET for the pass's misses");
    up.reply("OP=GET;IND=1,2;DATA=10,20;CODE=200");
    assert_eq!(probe.line(), "OP=GET;IND=8;DATA=80;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1;DATA=10;CODE=200");
    assert_eq!(b.line(), "OP=GET;IND=2;DATA=20;CODE=200");
}

#[test]
fn with_a_lease_a_read_after_an_upstream_event_joins_the_open_fetch() {
    // As above, with a lease: only a fetch not yet on the wire may be
    // joined. The open fetch, left open through the server's answer in
    // the middle of the pass, is not on the wire: B's read of the index A
    // asked joins it, and the index is asked once.
    let mut up = Scripted::granting(60_000);
    let (proxy, mut probe, mut a, mut b) = stoppable_proxy(&mut up, "granted", "9");
    probe.send(b"OP=GET;IND=8\n");
    assert_eq!(up.recv(), "OP=GET;IND=8");
    proxy.signal("STOP");
    a.send(b"OP=GET;IND=1\n");
    up.reply("OP=GET;IND=8;DATA=80;CODE=200");
    b.send(b"OP=GET;IND=1,2\n");
    proxy.signal("CONT");
    assert_eq!(up.recv(), "OP=GET;IND=1,2", "1 joined, 2 grown: one GET, 1 once");
    up.reply("OP=GET;IND=1,2;DATA=10,20;CODE=200");
    assert_eq!(probe.line(), "OP=GET;IND=8;DATA=80;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1;DATA=10;CODE=200");
    assert_eq!(b.line(), "OP=GET;IND=1,2;DATA=10,20;CODE=200");
}

#[test]
fn after_a_413_in_the_middle_of_a_pass_no_read_joins_a_fetch_for_a_part() {
    // With a lease (only fetches not yet written may be joined). The proxy
    // is stopped while: client X's read of 300 known indices becomes the
    // pass's open fetch; the server refuses an earlier batched GET as too
    // long (its bound is below the proxy's); client Y reads one of X's
    // indices. Y must not join X's fetch: it may be refused as too long
    // too, and Y alone would not be.
    let mut up = Scripted::granting(60_000);
    let (proxy, mut probe, mut x, mut y) = stoppable_proxy(&mut up, "granted", "999");
    probe.send(b"OP=GET;IND=1\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2", "a batched GET");
    let big: Vec<String> = (100..400).map(|i| i.to_string()).collect();
    let big = big.join(",");
    proxy.signal("STOP");
    x.send(format!("OP=GET;IND={big}\n").as_bytes());
    up.reply("OP=GET;CODE=413;MSG=message over 12 bytes");
    y.send(b"OP=GET;IND=150\n");
    proxy.signal("CONT");
    assert_eq!(up.recv(), format!("OP=GET;IND={big}"));
    assert_eq!(up.recv(), "OP=GET;IND=150", "Y's index in a GET of its own");
    up.reply("OP=GET;CODE=413;MSG=message over 12 bytes");
    up.reply("OP=GET;IND=150;DATA=15;CODE=200");
    for _ in 0..2 {
        assert!(probe.line().starts_with("OP=GET;CODE=413"));
    }
    assert!(x.line().starts_with("OP=GET;CODE=413"));
    assert_eq!(y.line(), "OP=GET;IND=150;DATA=15;CODE=200");
}

#[test]
fn a_read_takes_all_its_values_from_one_fetch() {
    // A bound of two indices: #1 fetches 5; the next read asks 5, 6 and
    // 7, which do not fit in #1. It must not take 5 from #1 and 6 and 7
    // from a fetch of its own: two fetches are two instants at the
    // server, and a write of 5 and 6 by someone else may fall between
    // them (unseen by this proxy, if #1's 5 came back NOCACHE).
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 42);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=5\nOP=GET;IND=5,6,7\n");
    assert_eq!(up.recv(), "OP=GET;IND=5");
    assert_eq!(
        up.recv(),
        "OP=GET;IND=5,6,7",
        "all of the second read's values from one fetch"
    );
    up.reply("OP=GET;IND=5;DATA=50;CODE=200");
    up.reply("OP=GET;IND=5,6,7;DATA=51,61,71;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=5;DATA=50;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=5,6,7;DATA=51,61,71;CODE=200");
}

#[test]
fn a_fetch_past_the_bound_is_joined_only_whole() {
    // A read of 400 indices (8,400 bytes of them: past the 8192 bound, so
    // nobody grows it) may be refused as too long by a server with a
    // smaller limit: a read of one of them must not share that refusal.
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    warm(&mut c, &mut up, "999", "0");
    let big: Vec<String> = (100..500).map(|i| i.to_string()).collect();
    let big = big.join(",");
    c.send(format!("OP=GET;IND={big}\nOP=GET;IND=103\n").as_bytes());
    assert_eq!(up.recv(), format!("OP=GET;IND={big}"));
    assert_eq!(up.recv(), "OP=GET;IND=103", "a fetch of its own");
    up.reply("OP=GET;CODE=413;MSG=message over 4096 bytes");
    up.reply("OP=GET;IND=103;DATA=30;CODE=200");
    assert!(c.line().starts_with("OP=GET;CODE=413"));
    assert_eq!(c.line(), "OP=GET;IND=103;DATA=30;CODE=200");
}

#[test]
fn a_batch_refused_as_too_long_turns_batching_off() {
    let mut up = Scripted::new();
    let proxy = settled_proxy(&mut up, 8192);
    let mut c = Peer::connect(proxy.addr());
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1,2");
    // A server with a small --max-message-bytes.
    up.reply("OP=GET;CODE=413;MSG=message over 8 bytes");
    assert!(c.line().starts_with("OP=GET;CODE=413"));
    assert!(c.line().starts_with("OP=GET;CODE=413"));
    // From now on each fetch goes alone.
    c.send(b"OP=GET;IND=1\nOP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    up.reply("OP=GET;IND=1;DATA=1;CODE=200");
    up.reply("OP=GET;IND=2;DATA=2;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=2;DATA=2;CODE=200");
}

#[test]
fn only_indices_the_server_answered_are_batched() {
    let mut up = Scripted::new();
    let proxy = proxy_node(proxy_to(up.addr(), 5));
    let mut c = Peer::connect(proxy.addr());
    up.accept();
    wait_until("the proxy has its LEASE answered", || {
        field(&c.ask("OP=STS"), "LEASE_STATE").as_deref() == Some("alone")
    });
    // Answers that name no GET's indices teach nothing (a PUT's success).
    c.send(b"OP=PUT;IND=5;DATA=1\n");
    assert_eq!(up.recv(), "OP=PUT;IND=5;DATA=1");
    up.reply("OP=PUT;IND=5;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=PUT;IND=5;DATA=1;CODE=200");
    c.send(b"OP=GET;IND=0\nOP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=0", "not known yet: alone");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=0;DATA=0;CODE=200");
    up.reply("OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=0;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    // 0 and 1 are known now, and cached: a CLR empties the cache, so they
    // miss again, in one fetch.
    c.send(b"OP=CLR\n");
    assert_eq!(up.recv(), "OP=CLR");
    up.reply("OP=CLR;CODE=200");
    assert_eq!(c.line(), "OP=CLR;CODE=200");
    c.send(b"OP=GET;IND=0\nOP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=0,1", "known: one fetch");
    up.reply("OP=GET;IND=0,1;DATA=0,1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=0;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    // A fetch within the bound refused as too long, even alone: the
    // server's limit is below the bound, and each read's fetch goes alone
    // from now on.
    c.send(b"OP=GET;IND=2\n");
    assert_eq!(up.recv(), "OP=GET;IND=2");
    up.reply("OP=GET;CODE=413;MSG=too long");
    assert!(c.line().starts_with("OP=GET;CODE=413"));
    c.send(b"OP=CLR\n");
    assert_eq!(up.recv(), "OP=CLR");
    up.reply("OP=CLR;CODE=200");
    assert_eq!(c.line(), "OP=CLR;CODE=200");
    c.send(b"OP=GET;IND=0\nOP=GET;IND=1\n");
    assert_eq!(up.recv(), "OP=GET;IND=0", "growing is off");
    assert_eq!(up.recv(), "OP=GET;IND=1");
    up.reply("OP=GET;IND=0;DATA=0;CODE=200");
    up.reply("OP=GET;IND=1;DATA=1;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=0;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=1;DATA=1;CODE=200");
}

#[test]
fn a_server_that_closes_right_after_answering_is_reconnected_at_once() {
    // It answered the LEASE, then closed: working (many naive servers
    // close after each reply), so the proxy reconnects at once, with no
    // backoff in which a client would be told 503.
    let mut up = Scripted::new();
    let proxy = proxy_node(proxy_to(up.addr(), 5));
    let mut c = Peer::connect(proxy.addr());
    up.accept();
    up.conn = None;
    wait_until("the proxy saw the close", || {
        field(&c.ask("OP=STS"), "UP_RESETS").is_some_and(|n| n != "0")
    });
    c.send(b"OP=GET;IND=3\n");
    assert_eq!(up.recv(), "OP=GET;IND=3", "sent on the new connection");
    up.reply("OP=GET;IND=3;DATA=30;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=30;CODE=200");
}

#[test]
fn a_server_that_resets_the_connection_fails_what_is_in_flight_at_once() {
    // Closed with a request unread, the server's socket sends RST: the
    // proxy's read fails, and the request in flight gets its 502 now, not
    // at the upstream timeout (a minute here).
    let mut up = Scripted::new();
    let proxy = proxy_node(ProxyConfig {
        upstream_timeout: Duration::from_secs(60),
        ..proxy_to(up.addr(), 5)
    });
    let mut c = Peer::connect(proxy.addr());
    up.accept();
    c.send(b"OP=GET;IND=3\n");
    let (_, s) = up.conn.take().unwrap();
    let mut one = [0u8; 1];
    s.peek(&mut one).unwrap(); // the GET is there, unread
    drop(s); // (and the reader's clone with it, above)
    let t = Instant::now();
    assert!(c.line().starts_with("OP=GET;CODE=502"));
    assert!(t.elapsed() < Duration::from_secs(30), "not at the timeout");
}

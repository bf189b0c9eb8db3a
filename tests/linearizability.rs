//! Linearizability through one proxy: several clients pipeline random GET,
//! PUT, ADD and CLR requests through a small cache (so hits, misses and
//! evictions mix), every invocation and reply is timed, and the history is
//! checked against a model of the whole table with the Wing–Gong search
//! (with memoisation, as Lowe and Porcupine do), with the rule that one
//! connection's requests take effect in the order it sent them. Every PUT
//! writes unique values, so each read can be traced to its write.

mod common;
use common::history::*;
use common::*;
use std::sync::Arc;
use std::time::Instant;

use tablecache::proxy::ProxyConfig;

#[test]
fn the_checker_rejects_a_torn_read() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
    // PUT 1=7,2=7 completes; a later GET sees 1 old and 2 new: no instant.
    let h = vec![
        Event {
            conn: 0,
            pos: 0,
            op: Op::Put(vec![1, 2], vec![7, 7]),
            result: vec![],
            call: at(0),
            ret: at(10),
            optional: false,
        },
        Event {
            conn: 1,
            pos: 0,
            op: Op::Get(vec![1, 2]),
            result: vec![0, 7],
            call: at(5),
            ret: at(15),
            optional: false,
        },
    ];
    assert!(!linearizable(&h));
    let ok = vec![
        h[0].clone(),
        Event {
            result: vec![0, 0],
            ..h[1].clone()
        },
    ];
    assert!(linearizable(&ok), "overlapping: the GET may come first");
    let stale = vec![
        h[0].clone(),
        Event {
            result: vec![0, 0],
            call: at(11),
            ret: at(12),
            ..h[1].clone()
        },
    ];
    assert!(!linearizable(&stale), "a read after the write returned must see it");
}

#[test]
fn the_checker_keeps_each_connections_order() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
    // One connection pipelines PUT 2=5 then GET 2; both overlap in time, so
    // only the order rule forbids the GET reading the old 0.
    let put = Event {
        conn: 0,
        pos: 0,
        op: Op::Put(vec![2], vec![5]),
        result: vec![],
        call: at(0),
        ret: at(10),
        optional: false,
    };
    let get = Event {
        conn: 0,
        pos: 1,
        op: Op::Get(vec![2]),
        result: vec![0],
        call: at(1),
        ret: at(11),
        optional: false,
    };
    assert!(!linearizable(&[put.clone(), get.clone()]));
    assert!(linearizable(&[
        put.clone(),
        Event {
            result: vec![5],
            ..get.clone()
        }
    ]));
    // The same two on different connections may go either way.
    assert!(linearizable(&[put, Event { conn: 1, pos: 0, ..get }]));
}

#[test]
fn the_checker_lets_a_failed_write_land_or_not_but_nothing_else() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
    // PUT 1=7 got a 502 (its connection was cut): a later read may see 7
    // or the old 0, but never a value nobody wrote.
    let put = Event {
        conn: 0,
        pos: 0,
        op: Op::Put(vec![1], vec![7]),
        result: vec![],
        call: at(0),
        ret: at(10),
        optional: true,
    };
    let get = |v: i64, conn: usize, pos: usize| Event {
        conn,
        pos,
        op: Op::Get(vec![1]),
        result: vec![v],
        call: at(20),
        ret: at(30),
        optional: false,
    };
    assert!(linearizable(&[put.clone(), get(7, 1, 0)]));
    assert!(linearizable(&[put.clone(), get(0, 1, 0)]));
    assert!(!linearizable(&[put.clone(), get(8, 1, 0)]));
    // Its connection's later requests still come after it, if it landed.
    assert!(linearizable(&[put.clone(), get(0, 0, 1)]));
    // A failed read explains nothing and constrains nothing.
    let failed_get = Event {
        optional: true,
        result: vec![],
        ..get(0, 2, 0)
    };
    assert!(linearizable(&[failed_get, get(0, 1, 0)]));
}

/// Runs `clients` pipelining clients through a 2-entry proxy in front of
/// `upstream` and checks the history; returns how many reads joined a
/// fetch in flight (STS `COALESCED`).
fn check_round(upstream: std::net::SocketAddr, round: u64, clients: usize, ops: usize) -> u64 {
    check_round_with(upstream, round, clients, ops, 2)
}

fn check_round_with(upstream: std::net::SocketAddr, round: u64, clients: usize, ops: usize, capacity: usize) -> u64 {
    let proxy = proxy_node(ProxyConfig {
        // With a secret: presented to a server that asks for it (the
        // freezing server below), ignored by one that does not.
        peer_secret_file: Some(secret_file()),
        ..proxy_to(upstream, capacity)
    });
    let addr = proxy.addr();
    let history = run_clients(&[addr], round, clients, ops, false);
    assert_linearizable(&history, round);
    let sts = Peer::connect(addr).ask("OP=STS");
    field(&sts, "COALESCED").unwrap().parse().unwrap()
}

#[test]
fn histories_through_the_proxy_are_linearizable() {
    for round in 0..25 {
        let server = start_server(SIZE);
        check_round(server.addr(), round, 4, 14);
    }
}

/// Runs `f` against a server process of `SIZE` entries that is frozen
/// (SIGSTOP) for `frozen_ms` then thawed for `thawed_ms`, over and over:
/// the pauses widen every window in which a fetch, a write and a hit can
/// overlap.
fn with_freezing_server<T>(frozen_ms: u64, thawed_ms: u64, f: impl FnOnce(std::net::SocketAddr) -> T) -> T {
    let secret = secret_arg();
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--size",
        "4",
        "--peer-secret-file",
        &secret,
        "--log-level",
        "warn",
    ]);
    let pid = server.pid();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let freezer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let kill = |sig: &str| signal(pid, sig);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                kill("STOP");
                std::thread::sleep(std::time::Duration::from_millis(frozen_ms));
                kill("CONT");
                std::thread::sleep(std::time::Duration::from_millis(thawed_ms));
            }
            kill("CONT");
        })
    };
    let out = f(server.addr.parse().unwrap());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    freezer.join().unwrap();
    out
}

#[test]
fn histories_stay_linearizable_when_misses_share_fetches() {
    // Few indices, a cache of one entry, six pipelining clients and a server
    // frozen half the time: many reads of an index arrive while a fetch of
    // it is in flight, and join it (unless a write was sent in between).
    let mut coalesced = 0;
    for round in 0..8 {
        coalesced += with_freezing_server(10, 10, |up| check_round_with(up, 200 + round, 6, 14, 1));
    }
    assert!(coalesced > 0, "the workload made reads share fetches");
}

#[test]
fn histories_stay_linearizable_while_the_server_freezes_and_thaws() {
    for round in 0..6 {
        with_freezing_server(15, 25, |up| check_round(up, 100 + round, 4, 14));
    }
}

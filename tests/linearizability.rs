//! Linearizability through one proxy: several clients pipeline random GET,
//! PUT, ADD and CLR requests through a small cache (so hits, misses and
//! evictions mix), every invocation and reply is timed, and the history is
//! checked against a model of the whole table with the Wing–Gong search
//! (with memoisation, as Lowe and Porcupine do), with the rule that one
//! connection's requests take effect in the order it sent them. Every PUT
//! writes unique values, so each read can be traced to its write.

mod common;
use common::*;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use tablecache::proxy::{Proxy, ProxyConfig};

const SIZE: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Get(Vec<usize>),
    Put(Vec<usize>, Vec<i64>),
    Add(Vec<usize>),
    Clr,
}

#[derive(Debug, Clone)]
struct Event {
    /// The client connection, and the request's position in its pipeline.
    conn: usize,
    pos: usize,
    op: Op,
    /// Values read (GET) or the sum (ADD).
    result: Vec<i64>,
    call: Instant,
    ret: Instant,
}

fn encode(op: &Op) -> String {
    let list = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    match op {
        Op::Get(i) => format!("OP=GET;IND={}", list(i)),
        Op::Add(i) => format!("OP=ADD;IND={}", list(i)),
        Op::Put(i, d) => format!(
            "OP=PUT;IND={};DATA={}",
            list(i),
            d.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        ),
        Op::Clr => "OP=CLR".into(),
    }
}

/// A tiny deterministic generator (xorshift), seeded per client and round.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_op(rng: &mut Rng, client: usize, serial: &mut i64) -> Op {
    let mut indices = |max: u64| -> Vec<usize> {
        (0..1 + rng.below(max))
            .map(|_| rng.below(SIZE as u64) as usize)
            .collect()
    };
    let ind = indices(3);
    match rng.below(20) {
        0..=8 => Op::Get(ind),
        9..=14 => {
            let data = ind
                .iter()
                .map(|_| {
                    *serial += 1;
                    (client as i64 + 1) * 1_000_000 + *serial
                })
                .collect();
            Op::Put(ind, data)
        }
        15..=18 => Op::Add(ind),
        _ => Op::Clr,
    }
}

/// One client: keeps `depth` requests in flight on one connection.
fn run_client(addr: std::net::SocketAddr, client: usize, seed: u64, ops: usize, depth: usize) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut serial = 0;
    let mut p = Peer::connect(addr);
    let mut inflight: std::collections::VecDeque<(Op, Instant)> = Default::default();
    let mut done = Vec::new();
    let mut sent = 0;
    while done.len() < ops {
        while sent < ops && inflight.len() < depth {
            let op = random_op(&mut rng, client, &mut serial);
            let call = Instant::now();
            p.send(format!("{}\n", encode(&op)).as_bytes());
            inflight.push_back((op, call));
            sent += 1;
        }
        let line = p.line();
        let ret = Instant::now();
        let (op, call) = inflight.pop_front().unwrap();
        assert!(line.ends_with("CODE=200"), "{op:?} -> {line}");
        let result = match op {
            Op::Get(_) | Op::Add(_) => field(&line, "DATA")
                .unwrap()
                .split(',')
                .map(|v| v.parse().unwrap())
                .collect(),
            _ => vec![],
        };
        let pos = done.len();
        done.push(Event {
            conn: client,
            pos,
            op,
            result,
            call,
            ret,
        });
    }
    done
}

/// Applies `op` to `state` if its recorded result is what the model gives.
fn step(state: &[i64; SIZE], e: &Event) -> Option<[i64; SIZE]> {
    let mut s = *state;
    match &e.op {
        Op::Get(ind) => {
            let got: Vec<i64> = ind.iter().map(|&i| s[i]).collect();
            (got == e.result).then_some(s)
        }
        Op::Add(ind) => {
            let sum: i64 = ind.iter().map(|&i| s[i]).sum();
            (vec![sum] == e.result).then_some(s)
        }
        Op::Put(ind, data) => {
            for (&i, &v) in ind.iter().zip(data) {
                s[i] = v;
            }
            Some(s)
        }
        Op::Clr => Some([0; SIZE]),
    }
}

/// Wing–Gong search with memoisation of (linearized set, state). Returns
/// true if some order of the events, consistent with real time and with
/// each connection's order, explains every result.
fn linearizable(events: &[Event]) -> bool {
    assert!(events.len() <= 128, "the bitset holds 128 events");
    let n = events.len();
    let mut seen: HashSet<(u128, [i64; SIZE])> = HashSet::new();
    let mut stack: Vec<(u128, [i64; SIZE])> = vec![(0, [0; SIZE])];
    let full: u128 = if n == 128 { u128::MAX } else { (1u128 << n) - 1 };
    let mut budget = 5_000_000u64;
    while let Some((done, state)) = stack.pop() {
        if done == full {
            return true;
        }
        budget -= 1;
        assert!(budget > 0, "checker budget exhausted: shorten the histories");
        // An event may go next only if no pending event returned before it
        // was called.
        let min_ret = (0..n)
            .filter(|i| done & (1 << i) == 0)
            .map(|i| events[i].ret)
            .min()
            .unwrap();
        for (i, e) in events.iter().enumerate() {
            if done & (1 << i) != 0 || e.call > min_ret {
                continue;
            }
            // A connection's requests take effect in the order sent.
            let earlier_pending = events
                .iter()
                .enumerate()
                .any(|(j, o)| done & (1 << j) == 0 && o.conn == e.conn && o.pos < e.pos);
            if earlier_pending {
                continue;
            }
            if let Some(next) = step(&state, e) {
                let key = (done | (1 << i), next);
                if seen.insert(key) {
                    stack.push(key);
                }
            }
        }
    }
    false
}

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
        },
        Event {
            conn: 1,
            pos: 0,
            op: Op::Get(vec![1, 2]),
            result: vec![0, 7],
            call: at(5),
            ret: at(15),
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
    };
    let get = Event {
        conn: 0,
        pos: 1,
        op: Op::Get(vec![2]),
        result: vec![0],
        call: at(1),
        ret: at(11),
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

/// Runs `clients` pipelining clients through a 2-entry proxy in front of
/// `upstream` and checks the history; returns how many reads joined a
/// fetch in flight (STS `COALESCED`).
fn check_round(upstream: std::net::SocketAddr, round: u64, clients: usize, ops: usize) -> u64 {
    check_round_with(upstream, round, clients, ops, 2)
}

fn check_round_with(upstream: std::net::SocketAddr, round: u64, clients: usize, ops: usize, capacity: usize) -> u64 {
    let proxy = Proxy::bind(ProxyConfig {
        listen: any_addr(),
        upstream,
        capacity,
        ..Default::default()
    })
    .unwrap()
    .spawn()
    .unwrap();
    let addr = proxy.addr();
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                run_client(
                    addr,
                    c,
                    (round * 977 + c as u64 * 131 + 7) * 0x9E37_79B9,
                    ops,
                    1 + c % 3,
                )
            })
        })
        .collect();
    let mut history: Vec<Event> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    history.sort_by_key(|e| e.call);
    assert!(linearizable(&history), "round {round}: not linearizable: {history:#?}");
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
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--size",
        "4",
        "--log-level",
        "warn",
    ]);
    let pid = server.pid().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let freezer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let kill = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                kill("-STOP");
                std::thread::sleep(std::time::Duration::from_millis(frozen_ms));
                kill("-CONT");
                std::thread::sleep(std::time::Duration::from_millis(thawed_ms));
            }
            kill("-CONT");
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

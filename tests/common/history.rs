//! Histories and their check: pipelining clients record every request
//! (connection, position, invocation and reply times, result), and a
//! Wing–Gong search (memoised, as Lowe's and Porcupine's) decides whether
//! one order of them — consistent with real time and with each
//! connection's order — explains every result, over the whole table.
//! Every PUT writes unique values, so each read traces to its write.
//!
//! A request answered with an error (a 502 when a proxy's upstream
//! connection is cut, say) may or may not have taken effect: it is
//! optional, and the search may place it after its call, or nowhere.

use super::*;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Instant;

/// Entries in the table the histories use.
pub const SIZE: usize = 4;

#[derive(Debug, Clone)]
pub enum Op {
    Get(Vec<usize>),
    Put(Vec<usize>, Vec<i64>),
    Add(Vec<usize>),
    Clr,
}

#[derive(Debug, Clone)]
pub struct Event {
    /// The client connection, and the request's position in its pipeline.
    pub conn: usize,
    pub pos: usize,
    pub op: Op,
    /// Values read (GET) or the sum (ADD).
    pub result: Vec<i64>,
    pub call: Instant,
    pub ret: Instant,
    /// Answered with an error: it may or may not have taken effect.
    pub optional: bool,
}

pub fn encode(op: &Op) -> String {
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
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn random_op(rng: &mut Rng, client: usize, serial: &mut i64) -> Op {
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

/// One client: keeps `depth` requests in flight on one connection. With
/// `errors_allowed`, an error reply makes its request optional; without,
/// it fails the test.
pub fn run_client(
    addr: std::net::SocketAddr,
    client: usize,
    seed: u64,
    ops: usize,
    depth: usize,
    errors_allowed: bool,
) -> Vec<Event> {
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
        let optional = !line.ends_with("CODE=200");
        assert!(!optional || errors_allowed, "{op:?} -> {line}");
        let result = match op {
            _ if optional => vec![],
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
            optional,
        });
    }
    done
}

/// Applies `op` to `state` if its recorded result is what the model gives
/// (an optional read explains nothing and changes nothing).
fn step(state: &[i64; SIZE], e: &Event) -> Option<[i64; SIZE]> {
    let mut s = *state;
    match &e.op {
        Op::Get(_) | Op::Add(_) if e.optional => Some(s),
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

/// Fails the test, showing the history and its shortest failing window,
/// unless `history` (of round `round`) is linearizable.
pub fn assert_linearizable(history: &[Event], round: u64) {
    assert!(
        linearizable(history),
        "round {round}: not linearizable:\n{}\nshrunk:\n{}",
        describe(history),
        describe(&shrink(history))
    );
}

/// Wing–Gong search with memoisation of (linearized set, state). Returns
/// true if some order of the events, consistent with real time and with
/// each connection's order, explains every result.
pub fn linearizable(events: &[Event]) -> bool {
    assert!(events.len() <= 128, "the bitset holds 128 events");
    let n = events.len();
    // Optional events never constrain real time (they never returned),
    // and the search is over once every other one is placed.
    let required: u128 = (0..n).filter(|&i| !events[i].optional).fold(0, |m, i| m | (1 << i));
    let mut seen: HashSet<(u128, [i64; SIZE])> = HashSet::new();
    let mut stack: Vec<(u128, [i64; SIZE])> = vec![(0, [0; SIZE])];
    let full: u128 = if n == 128 { u128::MAX } else { (1u128 << n) - 1 };
    let mut budget = 5_000_000u64;
    let _ = full;
    while let Some((done, state)) = stack.pop() {
        if done & required == required {
            return true;
        }
        budget -= 1;
        assert!(budget > 0, "checker budget exhausted: shorten the histories");
        // An event may go next only if no pending event returned before it
        // was called.
        let min_ret = (0..n)
            .filter(|&i| done & (1 << i) == 0 && !events[i].optional)
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
            if e.optional {
                // Or it never took effect.
                let key = (done | (1 << i), state);
                if seen.insert(key) {
                    stack.push(key);
                }
            }
        }
    }
    false
}

/// Runs `clients` pipelining clients, client `c` on `targets[c %
/// targets.len()]`, all starting together; returns the history sorted by
/// invocation.
pub fn run_clients(
    targets: &[std::net::SocketAddr],
    round: u64,
    clients: usize,
    ops: usize,
    errors_allowed: bool,
) -> Vec<Event> {
    let barrier = Arc::new(Barrier::new(clients));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let b = barrier.clone();
            let addr = targets[c % targets.len()];
            std::thread::spawn(move || {
                b.wait();
                run_client(
                    addr,
                    c,
                    (round * 977 + c as u64 * 131 + 7) * 0x9E37_79B9,
                    ops,
                    1 + c % 3,
                    errors_allowed,
                )
            })
        })
        .collect();
    let mut history: Vec<Event> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    history.sort_by_key(|e| e.call);
    history
}

/// A history, one event a line, times in microseconds from the first call
/// (for failure messages).
pub fn describe(history: &[Event]) -> String {
    let Some(t0) = history.iter().map(|e| e.call).min() else {
        return String::new();
    };
    let us = |t: Instant| t.saturating_duration_since(t0).as_micros();
    history
        .iter()
        .map(|e| {
            format!(
                "c{}#{:<2} {:>7}..{:<7} {}{} -> {:?}",
                e.conn,
                e.pos,
                us(e.call),
                us(e.ret),
                if e.optional { "(failed) " } else { "" },
                encode(&e.op),
                e.result
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A smaller history that is still not linearizable: reads are dropped one
/// by one while the rest still fails (dropping a read never turns a
/// linearizable history into one that is not), so what is left points at
/// the reads no order explains.
pub fn shrink(history: &[Event]) -> Vec<Event> {
    let mut h = history.to_vec();
    let mut i = 0;
    while i < h.len() {
        if matches!(h[i].op, Op::Get(_) | Op::Add(_)) {
            let mut t = h.clone();
            t.remove(i);
            if !linearizable(&t) {
                h = t;
                continue;
            }
        }
        i += 1;
    }
    h
}

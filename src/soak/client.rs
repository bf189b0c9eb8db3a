//! One soak client: a thread with one connection at a time, up to
//! `depth` requests in flight on it, every request recorded. A reply is
//! `ok` or `error`; a connection that dies or stays silent past the
//! timeout leaves its requests in flight `unknown`, and the client opens
//! a new connection (a new `conn` in the history).

use crate::check::{Op, Outcome, Record};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the clients share.
pub struct Shared {
    /// Times in the history count from here.
    pub base: Instant,
    /// Operations still to send, all clients together.
    pub left: AtomicI64,
    /// Operations answered (ok or error), for the fault pacing.
    pub answered: AtomicU64,
    /// Connection numbers.
    pub next_conn: AtomicU64,
    /// Give up (the run failed).
    pub abort: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// A small seeded generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// How long a request may go unanswered before its connection is
/// dropped (a frozen proxy, a partition).
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// The pause after an error reply.
const ERROR_PAUSE: Duration = Duration::from_millis(25);

/// Distinct indices, 1 to `max` of them.
fn indices(rng: &mut Rng, size: usize, max: u64) -> Vec<usize> {
    let mut v: Vec<usize> = Vec::new();
    for _ in 0..1 + rng.below(max) {
        let i = rng.below(size as u64) as usize;
        if !v.contains(&i) {
            v.push(i);
        }
    }
    v
}

/// The next operation: reads and writes of 1–3 indices, a rare CLR;
/// every value written is this client's own (`id`, serial). No ADD: a
/// sum cannot be traced to the writes it saw, so over a long history
/// with failed writes the check of one grows exponentially (docs/testing.md,
/// "Soak"; tests/linearizability.rs checks ADD on shorter histories).
fn next_op(rng: &mut Rng, id: u64, serial: &mut i64, size: usize) -> Op {
    match rng.below(100) {
        0..=47 => Op::Get(indices(rng, size, 3)),
        48..=98 => {
            let ind = indices(rng, size, 3);
            let data = ind
                .iter()
                .map(|_| {
                    *serial += 1;
                    (id as i64 + 1) * 1_000_000_000 + *serial
                })
                .collect();
            Op::Put(ind, data)
        }
        _ => Op::Clr,
    }
}

fn encode(op: &Op) -> String {
    let list = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    match op {
        Op::Get(i) => format!("OP=GET;IND={}\n", list(i)),
        Op::Add(i) => format!("OP=ADD;IND={}\n", list(i)),
        Op::Put(i, d) => format!(
            "OP=PUT;IND={};DATA={}\n",
            list(i),
            d.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
        ),
        Op::Clr => "OP=CLR\n".into(),
    }
}

/// What a reply line says: ok with the values of a read, or an error.
fn outcome(op: &Op, line: &str) -> Outcome {
    let field = |k: &str| line.split(';').find_map(|f| f.strip_prefix(k));
    if field("CODE=") != Some("200") {
        return Outcome::Error;
    }
    match op {
        Op::Get(_) | Op::Add(_) => {
            let vals: Option<Vec<i64>> = field("DATA=")
                .map(|d| d.split(',').map(|v| v.trim().parse().ok()).collect())
                .unwrap_or(None);
            vals.map_or(Outcome::Error, Outcome::Ok)
        }
        _ => Outcome::Ok(Vec::new()),
    }
}

/// Runs client `id` against `target` until the shared budget of
/// operations is spent; returns its records.
pub fn run(id: u64, target: SocketAddr, seed: u64, depth: usize, size: usize, shared: &Shared) -> Vec<Record> {
    let mut rng = Rng(seed | 1);
    let mut serial = 0;
    let mut out = Vec::new();
    let mut pending_op: Option<Op> = None;
    'connections: while !shared.abort.load(Ordering::Relaxed) {
        if shared.left.load(Ordering::Relaxed) <= 0 && pending_op.is_none() {
            break;
        }
        let Ok(sock) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let _ = sock.set_nodelay(true);
        let _ = sock.set_read_timeout(Some(REPLY_TIMEOUT));
        let _ = sock.set_write_timeout(Some(REPLY_TIMEOUT));
        let Ok(mut writer) = sock.try_clone() else { continue };
        let mut reader = BufReader::new(sock);
        let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut seq = 0;
        let mut inflight: VecDeque<usize> = VecDeque::new();
        loop {
            // Fill the pipeline.
            while inflight.len() < depth {
                let op = match pending_op.take() {
                    Some(op) => op,
                    None if shared.left.fetch_sub(1, Ordering::Relaxed) > 0 => next_op(&mut rng, id, &mut serial, size),
                    None => break,
                };
                let call = shared.now_us();
                out.push(Record {
                    client: id,
                    conn,
                    seq,
                    op: op.clone(),
                    call,
                    ret: None,
                    outcome: Outcome::Unknown,
                });
                seq += 1;
                inflight.push_back(out.len() - 1);
                if writer.write_all(encode(&op).as_bytes()).is_err() {
                    // Sent or not, its fate is unknown: it stays recorded
                    // as unknown; the connection is done.
                    continue 'connections;
                }
            }
            let Some(&n) = inflight.front() else { break 'connections };
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => continue 'connections, // in flight: unknown
                Ok(_) => {}
            }
            let ret = shared.now_us();
            inflight.pop_front();
            out[n].ret = Some(ret);
            out[n].outcome = outcome(&out[n].op, line.trim_end());
            shared.answered.fetch_add(1, Ordering::Relaxed);
            if out[n].outcome == Outcome::Error {
                // The node is cut off or restarting: wait a little rather
                // than spend the run's operations on instant errors.
                std::thread::sleep(ERROR_PAUSE);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_become_outcomes() {
        let get = Op::Get(vec![1, 2]);
        assert_eq!(
            outcome(&get, "OP=GET;IND=1,2;DATA=10,-3;CODE=200"),
            Outcome::Ok(vec![10, -3])
        );
        assert_eq!(outcome(&get, "OP=GET;CODE=502;MSG=upstream gone"), Outcome::Error);
        assert_eq!(outcome(&get, "OP=GET;IND=1,2;DATA=x;CODE=200"), Outcome::Error);
        assert_eq!(outcome(&Op::Clr, "OP=CLR;CODE=200"), Outcome::Ok(vec![]));
        assert_eq!(encode(&Op::Put(vec![1, 2], vec![5, 6])), "OP=PUT;IND=1,2;DATA=5,6\n");
    }

    #[test]
    fn values_written_are_unique_per_client_and_indices_distinct() {
        let mut seen = std::collections::HashSet::new();
        for id in 0..3 {
            let (mut rng, mut serial) = (Rng(id + 11), 0);
            for _ in 0..2000 {
                match next_op(&mut rng, id, &mut serial, 10) {
                    Op::Put(ind, data) => {
                        let mut i = ind.clone();
                        i.dedup();
                        assert_eq!(i.len(), ind.len());
                        for v in data {
                            assert!(seen.insert(v), "{v} written twice");
                        }
                    }
                    Op::Get(ind) | Op::Add(ind) => assert!(!ind.is_empty() && ind.iter().all(|&i| i < 10)),
                    Op::Clr => {}
                }
            }
        }
    }
}

//! The load generator's engine: what to send (operation, keys), on which
//! connection and when (closed loop: refill; open loop: the schedule), and
//! reading the replies back with their latency.

use super::{BenchConfig, Dist};
use crate::buffer::Buffer;
use crate::conn::{read_limit, Conn, ConnectOutcome, ReadOutcome, State, WriteOutcome};

/// Longest reply the generator takes (its requests are small).
const MAX_REPLY: usize = 1 << 20;
use super::wire::Protocol;
use crate::framing::Frame;
use crate::proto::Op;
use hdrhistogram::Histogram;
use mio::event::Event;
use mio::{Poll, Token};
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

/// A small fast PRNG (xorshift64*): the choices only need to be spread,
/// not unpredictable.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks keys.
pub(super) struct Keys {
    pub(super) keys: u64,
    /// Zipf: cumulative probabilities of keys 0..n.
    pub(super) cdf: Option<Vec<f64>>,
}

impl Keys {
    pub(super) fn new(keys: u64, dist: &Dist) -> Keys {
        let cdf = match dist {
            Dist::Uniform => None,
            Dist::Zipf(s) => {
                let mut acc = 0.0;
                let mut v: Vec<f64> = (1..=keys)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(*s);
                        acc
                    })
                    .collect();
                for x in &mut v {
                    *x /= acc;
                }
                Some(v)
            }
        };
        Keys { keys, cdf }
    }

    pub(super) fn pick(&self, rng: &mut Rng) -> i64 {
        match &self.cdf {
            None => (rng.next() % self.keys) as i64,
            Some(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as i64
            }
        }
    }
}

/// Per-connection state: when each outstanding request's clock started.
#[derive(Default)]
pub(super) struct Outstanding {
    pub(super) started: VecDeque<(Instant, Op)>,
}

pub(super) struct Bench {
    pub(super) cfg: BenchConfig,
    pub(super) poll: Poll,
    pub(super) conns: Slab<Conn<Outstanding>>,
    pub(super) scratch: Buffer,
    pub(super) rng: Rng,
    pub(super) keys: Keys,
    pub(super) ind: Vec<i64>,
    pub(super) data: Vec<i64>,
    pub(super) hist: Histogram<u64>,
    /// Per operation (GET, PUT, ADD): latencies and errors.
    pub(super) by_op: [Histogram<u64>; 3],
    pub(super) op_errors: [u64; 3],
    pub(super) lag: Histogram<u64>,
    pub(super) errors: BTreeMap<u16, u64>,
    pub(super) measured: u64,
    /// Requests sent so far (`-n` stops sending at its count).
    pub(super) sent: u64,
    /// Indices read, in order, with `--record`.
    pub(super) recorded: Vec<i64>,
    /// Measuring starts here (after the warm-up) and ends at `end`.
    pub(super) measure_from: Instant,
    pub(super) end: Instant,
    /// Open loop: the start of the schedule and the next request's number.
    pub(super) sched_start: Instant,
    pub(super) next_k: u64,
    /// Open loop: since when some connection has had room (for send lag).
    pub(super) free_since: Option<Instant>,
    pub(super) backlogged: u64,
    pub(super) cursor: usize,
    pub(super) dead: usize,
    /// Reply codes of the current read pass (reused).
    pub(super) codes: Vec<u16>,
    /// Encodes requests in the run's protocol.
    pub(super) enc: super::wire::Encoder,
}

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Bench {
    pub(super) fn choose_op(&mut self) -> Op {
        let [g, p, a] = self.cfg.mix;
        // One kind only: no draw, so the keys drawn are exactly the
        // sequence `tablecache sim` generates from the same seed.
        match (g, p, a) {
            (_, 0, 0) => return Op::Get,
            (0, _, 0) => return Op::Put,
            (0, 0, _) => return Op::Add,
            _ => {}
        }
        let total: u32 = self.cfg.mix.iter().sum();
        let r = (self.rng.next() % total as u64) as u32;
        if r < g {
            Op::Get
        } else if r < g + p {
            Op::Put
        } else {
            Op::Add
        }
    }

    /// Encodes one request into connection `key` with its clock at `start`.
    /// False once `-n` requests have been sent.
    pub(super) fn may_send(&self) -> bool {
        self.cfg.requests.is_none_or(|n| self.sent < n)
    }

    pub(super) fn send_one(&mut self, key: usize, start: Instant) {
        self.sent += 1;
        let op = self.choose_op();
        self.ind.clear();
        self.data.clear();
        for _ in 0..self.cfg.batch {
            let k = self.keys.pick(&mut self.rng);
            self.ind.push(k);
            if op == Op::Put {
                self.data.push((self.rng.next() % 1_000_000) as i64);
            }
        }
        if self.cfg.record && matches!(op, Op::Get | Op::Add) {
            self.recorded.extend_from_slice(&self.ind);
        }
        let conn = &mut self.conns[key];
        self.enc
            .encode(self.cfg.protocol, &mut conn.output, op, &self.ind, &self.data);
        conn.ext.started.push_back((start, op));
    }

    /// How many more requests connection `key` takes now (0 if none or
    /// not open).
    fn room(&self, key: usize) -> usize {
        match self.conns.get(key) {
            Some(c) if c.state() == State::Open => self.cfg.pipeline.saturating_sub(c.ext.started.len()),
            _ => 0,
        }
    }

    pub(super) fn has_room(&self, key: usize) -> bool {
        let c = &self.conns[key];
        c.state() == State::Open && c.ext.started.len() < self.cfg.pipeline
    }

    /// Closed loop: top every connection up to its pipeline depth.
    pub(super) fn refill_closed(&mut self, key: usize, now: Instant) {
        while now < self.end && self.has_room(key) && self.may_send() {
            self.send_one(key, Instant::now());
        }
    }

    /// Open loop: send every request whose time has come, on connections
    /// with room; each is timed from its scheduled time (a wait for the
    /// generator is part of its latency). Returns how many left.
    pub(super) fn send_due(&mut self, now: Instant, rate: f64) -> usize {
        let n = self.conns.capacity().max(1);
        // The requests due leave in one write if one connection has room
        // for them all: start on the first such connection, or else on the
        // one with the most room (a write per connection used).
        let due = ((now.saturating_duration_since(self.sched_start).as_secs_f64() * rate) as u64)
            .saturating_add(1)
            .saturating_sub(self.next_k) as usize;
        if due > 0 && self.room(self.cursor % n) < due {
            let mut best = (0, self.cursor % n);
            for step in 0..n {
                let k = (self.cursor + step) % n;
                let room = self.room(k);
                if room > best.0 {
                    best = (room, k);
                }
                if room >= due {
                    break;
                }
            }
            self.cursor = best.1;
        }
        let mut sent = 0;
        loop {
            let sched = self.sched_start + Duration::from_secs_f64(self.next_k as f64 / rate);
            if sched > now || sched >= self.end || !self.may_send() {
                break;
            }
            // Find a connection with room.
            let mut found = None;
            for step in 0..n {
                let k = (self.cursor + step) % n;
                if self.conns.contains(k) && self.has_room(k) {
                    found = Some(k);
                    break;
                }
            }
            let Some(k) = found else {
                // Every connection is at its pipeline limit: the rest waits,
                // its clock running from its scheduled time.
                self.free_since = None;
                break;
            };
            // Stay on this connection while it has room: the requests of
            // one wakeup then leave in one write (over loopback each write
            // costs the receiver's TCP work too), and the connections take
            // turns as their pipelines fill.
            self.cursor = k;
            let ready = self.free_since.map_or(sched, |f| f.max(sched));
            if ready > sched && sched >= self.measure_from {
                // It had to wait for a connection with room.
                self.backlogged += 1;
            }
            if sched >= self.measure_from {
                let _ = self.lag.record(now.saturating_duration_since(ready).as_micros() as u64);
            }
            self.send_one(k, sched);
            self.next_k += 1;
            sent += 1;
        }
        sent
    }

    pub(super) fn on_reply(&mut self, key: usize, body_code: u16, now: Instant) {
        let Some((start, op)) = self.conns[key].ext.started.pop_front() else {
            return;
        };
        let slot = op_slot(op);
        if start >= self.measure_from && now <= self.end + Duration::from_secs(60) && start < self.end {
            self.measured += 1;
            let us = now.saturating_duration_since(start).as_micros() as u64;
            self.hist.saturating_record(us.max(1));
            self.by_op[slot].saturating_record(us.max(1));
            if body_code != 200 {
                *self.errors.entry(body_code).or_default() += 1;
                self.op_errors[slot] += 1;
            }
        }
    }

    pub(super) fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        let key = token.0;
        let Some(conn) = self.conns.get_mut(key) else { return };
        if let State::Connecting { .. } = conn.state() {
            match conn.on_connect_event(self.poll.registry()) {
                ConnectOutcome::Connected => {}
                ConnectOutcome::Pending => return,
                ConnectOutcome::Failed(e) => {
                    let to = conn.peer.map_or("?".to_string(), |a| a.to_string());
                    log::warn!("bench: connect to {to}: {e}");
                    conn.close(self.poll.registry(), "connect failed");
                    self.dead += 1;
                    return;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let codes = &mut self.codes;
            let proto = self.cfg.protocol;
            let outcome = conn.read_pass(&mut self.scratch, read_limit(MAX_REPLY), usize::MAX, now, |c| loop {
                if proto != Protocol::Line {
                    // Another store's replies: no CODE, an error is an error.
                    match super::wire::reply(proto, c.input.data()) {
                        Some((len, err)) => {
                            codes.push(if err { ERROR_REPLY } else { 200 });
                            c.input.consume(len);
                            continue;
                        }
                        None => return true,
                    }
                }
                match c.next_message(MAX_REPLY) {
                    Frame::Complete { body, total } => {
                        codes.push(reply_code(&c.input.data()[..body]));
                        c.consume(total);
                    }
                    Frame::Oversize(_) | Frame::Incomplete => return true,
                }
            });
            let lost = matches!(outcome, ReadOutcome::Eof | ReadOutcome::Error(_));
            for code in std::mem::take(&mut self.codes) {
                self.on_reply(key, code, now);
            }
            if lost {
                let conn = &mut self.conns[key];
                log::warn!(
                    "bench: connection {key} lost with {} outstanding",
                    conn.ext.started.len()
                );
                conn.close(self.poll.registry(), "lost");
                self.dead += 1;
                return;
            }
        }
        if self.cfg.rate.is_none() {
            self.refill_closed(key, now);
        } else if self.has_room(key) && self.free_since.is_none() {
            self.free_since = Some(now);
        }
    }

    pub(super) fn flush_all(&mut self) -> io::Result<()> {
        for (_, c) in self.conns.iter_mut() {
            if c.state() != State::Open {
                continue;
            }
            if !c.output.is_empty() {
                if let WriteOutcome::Error(e) = c.flush() {
                    log::warn!("bench: write: {e}");
                }
            }
            c.update_interest(self.poll.registry())?;
        }
        Ok(())
    }

    pub(super) fn outstanding(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.state() == State::Open)
            .map(|(_, c)| c.ext.started.len())
            .sum()
    }
}

/// Where an operation's numbers are kept: GET, PUT, ADD.
pub(super) fn op_slot(op: Op) -> usize {
    match op {
        Op::Put => 1,
        Op::Add => 2,
        _ => 0,
    }
}

/// The code an error reply of RESP or memcached is counted under.
pub(super) const ERROR_REPLY: u16 = 500;

/// The status code of a reply body (a reply without CODE counts as 200).
pub(super) fn reply_code(body: &[u8]) -> u16 {
    match body.windows(5).rposition(|w| w == b"CODE=") {
        None => 200,
        Some(p) => body[p + 5..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u16, |acc, &d| acc.saturating_mul(10).saturating_add((d - b'0') as u16)),
    }
}

//! The load generator's engine: what to send (operation, keys), on which
//! connection and when (closed loop: refill; open loop: the schedule).
//! Reading the replies back is in replies.rs.

pub(super) use super::keys::{Keys, Rng};
use super::report::{self, cpu_seconds, percentiles, proxy_counts, OpStats, ProxyCounts, Report};
use super::wire::{self, ErrorKind};
use super::BenchConfig;
use crate::buffer::Buffer;
use crate::conn::{Conn, State, WriteOutcome};
use crate::reactor::poll as poll_retry;
use mio::{Events, Token};

/// Longest reply the generator takes (its requests are small).
pub(super) const MAX_REPLY: usize = 1 << 20;
use crate::proto::Op;
use hdrhistogram::Histogram;
use mio::Poll;
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::time::{Duration, Instant};

/// One request on the wire: when its clock started (its schedule, open
/// loop), when it was written (its timeout runs from there), what it was.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sent {
    pub(super) start: Instant,
    pub(super) sent: Instant,
    pub(super) op: Op,
}

/// Per-connection state: the requests awaiting replies, oldest first.
#[derive(Default)]
pub(super) struct Outstanding {
    pub(super) started: VecDeque<Sent>,
    /// The last request answered, if it was measured and succeeded: a
    /// reply with nothing left to answer makes it suspect (a desync).
    pub(super) last_ok: Option<Op>,
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
    pub(super) errors: BTreeMap<ErrorKind, u64>,
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
    /// Replies, measured or not (the live line counts them).
    pub(super) answered: u64,
    /// Measured requests that got a reply (error replies too; not
    /// timeouts or losses): what throughput counts.
    pub(super) replied: u64,
    /// What each reply of the current read pass was (reused).
    pub(super) outcomes: Vec<Option<ErrorKind>>,
    /// When the target last answered anything.
    pub(super) last_reply: Instant,
    /// When the timeouts are next looked at.
    pub(super) next_check: Instant,
    /// Connections closed and opened again (after a timeout, a desync, a
    /// loss).
    pub(super) reconnects: u64,
    /// The target answered in another protocol: what it looks like.
    pub(super) foreign: Option<String>,
    /// Why the run stopped before its end, if it did.
    pub(super) stopped: Option<String>,
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

    pub(super) fn send_one(&mut self, key: usize, start: Instant, sent: Instant) {
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
        conn.ext.started.push_back(Sent { start, sent, op });
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
            let t = Instant::now();
            self.send_one(key, t, t);
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
            self.send_one(k, sched, now);
            self.next_k += 1;
            sent += 1;
        }
        sent
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

impl Bench {
    /// A run's state, its connections started (not yet connected).
    pub(super) fn new(cfg: BenchConfig) -> io::Result<Bench> {
        let poll = Poll::new()?;
        let mut conns = Slab::with_capacity(cfg.connections);
        let now = Instant::now();
        for i in 0..cfg.connections {
            let entry = conns.vacant_entry();
            let token = Token(entry.key());
            let c = Conn::connect(
                cfg.connect[i % cfg.connect.len()],
                token,
                1,
                "bench",
                poll.registry(),
                now,
                Outstanding::default(),
            )?;
            entry.insert(c);
        }
        Ok(Bench {
            keys: Keys::new(cfg.keys, &cfg.dist),
            rng: Rng(cfg.seed | 1),
            cfg,
            poll,
            conns,
            scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
            ind: Vec::new(),
            data: Vec::new(),
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| invalid(e.to_string()))?,
            by_op: [(); 3].map(|()| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")),
            op_errors: [0; 3],
            lag: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| invalid(e.to_string()))?,
            errors: BTreeMap::new(),
            measured: 0,
            sent: 0,
            recorded: Vec::new(),
            measure_from: now,
            end: now,
            sched_start: now,
            next_k: 0,
            free_since: None,
            backlogged: 0,
            cursor: 0,
            dead: 0,
            outcomes: Vec::new(),
            answered: 0,
            replied: 0,
            last_reply: now,
            next_check: now,
            reconnects: 0,
            foreign: None,
            stopped: None,
            enc: wire::Encoder::default(),
        })
    }

    /// Waits until every connection is connected (10 s at most); one
    /// that cannot be is an error before anything is measured.
    pub(super) fn connect_all(&mut self, events: &mut Events) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .conns
            .iter()
            .any(|(_, c)| matches!(c.state(), State::Connecting { .. }))
        {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"));
            }
            poll_retry(&mut self.poll, events, Some(deadline - now))?;
            for ev in events.iter() {
                self.ready(ev.token(), ev, now);
            }
        }
        if self.dead > 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("cannot connect to {}", report::targets_text(&self.cfg.connect)),
            ));
        }
        Ok(())
    }

    /// The report of the run that ended: `before`, the proxy's counts
    /// before it; `cpu0`, the CPU seconds then; `wall`, its length.
    pub(super) fn report(&mut self, before: Option<ProxyCounts>, cpu0: Option<f64>, wall: f64) -> Report {
        let cpu_s = match (cpu0, cpu_seconds()) {
            (Some(a), Some(z)) => Some(z - a),
            _ => None,
        };
        let cpu = cpu_s.filter(|_| wall > 0.0).map(|s| s / wall);
        let cpu_us_per_reply = cpu_s
            .filter(|_| self.answered > 0)
            .map(|s| s * 1e6 / self.answered as f64);
        // Not asked of a target that answered nothing.
        let after = before.and_then(|_| proxy_counts(&self.cfg.connect, self.cfg.timeout));
        let (hit_ratio, up_gets_per_fetch) = match (before, after) {
            (Some(b), Some(a)) => b.since(&a),
            _ => (None, None),
        };
        let by_op = ["get", "put", "add"]
            .iter()
            .enumerate()
            .filter(|&(k, _)| self.cfg.mix[k] > 0)
            .map(|(k, &op)| OpStats {
                op,
                requests: self.by_op[k].len(),
                errors: self.op_errors[k],
                latency_us: percentiles(&self.by_op[k]),
            })
            .collect();
        Report {
            requests: self.measured,
            replies: self.replied,
            errors: std::mem::take(&mut self.errors),
            elapsed: self.end.saturating_duration_since(self.measure_from).as_secs_f64(),
            stopped: self.stopped.take(),
            foreign: self.foreign.take(),
            reconnects: self.reconnects,
            latency_us: percentiles(&self.hist),
            mean_us: if self.hist.is_empty() { 0.0 } else { self.hist.mean() },
            hit_ratio,
            send_lag_p99_us: self.cfg.rate.map(|_| {
                if self.lag.is_empty() {
                    0
                } else {
                    self.lag.value_at_quantile(0.99)
                }
            }),
            backlogged: self.backlogged,
            cpu,
            cpu_us_per_reply,
            up_gets_per_fetch,
            recorded: std::mem::take(&mut self.recorded),
            by_op,
            histogram: self.hist.clone(),
        }
    }
}

//! `tablecache bench`: the load generator and latency meter. One thread,
//! one `mio::Poll`, many connections, like the other nodes.
//!
//! Run it: `tablecache bench --connect 127.0.0.1:8081 --connections 50 --pipeline 16`.
//!
//! Two modes:
//! - **Closed loop** (no `--rate`): every connection keeps `--pipeline`
//!   requests outstanding and sends the next one as soon as a reply
//!   arrives. Gives the maximum throughput.
//! - **Open loop** (`--rate R`): request *k* is *scheduled* at
//!   `start + k / R`, whatever happened before, and its latency is measured
//!   **from that scheduled instant**, not from when it could be sent. A
//!   target that stalls for 100 ms therefore shows up as 100 ms of latency
//!   for every request scheduled during the stall (the coordinated-omission
//!   correction wrk2 makes). A request that finds every connection at its
//!   pipeline limit waits in a backlog, its clock already running.
//!
//! What a latency number spans: from the scheduled send time (open loop)
//! or from just before the request is encoded (closed loop), to the moment
//! the whole reply line has been read from the socket.

use crate::buffer::Buffer;
use crate::client::Client;
use crate::conn::{Conn, ConnectOutcome, ReadOutcome, State, WriteOutcome};
use crate::framing::Frame;
use crate::proto::{encode_request, Op};
use crate::reactor::poll as poll_retry;
use hdrhistogram::Histogram;
use mio::event::Event;
use mio::{Events, Poll, Token};
use slab::Slab;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How keys are picked.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Every key equally likely.
    Uniform,
    /// Zipf with exponent `s` (key 0 the most popular).
    Zipf(f64),
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The target (proxy or server).
    pub connect: SocketAddr,
    /// Requests per second (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// Time before measuring starts (excluded from the results).
    pub warmup: Duration,
    /// Connections.
    pub connections: usize,
    /// Requests outstanding per connection at most.
    pub pipeline: usize,
    /// Keys are `0..keys`.
    pub keys: u64,
    /// Weights of GET, PUT, ADD.
    pub mix: [u32; 3],
    /// Indices per request.
    pub batch: usize,
    /// Key distribution.
    pub dist: Dist,
    /// Print a progress line on a terminal.
    pub progress: bool,
    /// Seed of the key and operation choices.
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connect: "127.0.0.1:8081".parse().expect("literal address"),
            rate: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            connections: 1,
            pipeline: 1,
            keys: 10,
            mix: [100, 0, 0],
            batch: 1,
            dist: Dist::Uniform,
            progress: false,
            seed: 0x5eed,
        }
    }
}

/// Parses `get=80,put=15,add=5` (missing kinds weigh 0).
pub fn parse_mix(s: &str) -> Result<[u32; 3], String> {
    let mut mix = [0u32; 3];
    for part in s.split(',') {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("bad mix item {part:?}"))?;
        let v: u32 = v.trim().parse().map_err(|_| format!("bad weight in {part:?}"))?;
        let slot = match k.trim().to_ascii_lowercase().as_str() {
            "get" => 0,
            "put" => 1,
            "add" => 2,
            other => return Err(format!("unknown operation {other:?} in mix (get, put, add)")),
        };
        mix[slot] = v;
    }
    if mix.iter().sum::<u32>() == 0 {
        return Err("the mix weighs nothing".into());
    }
    Ok(mix)
}

/// Parses `uniform` or `zipf:S`.
pub fn parse_dist(s: &str) -> Result<Dist, String> {
    if s == "uniform" {
        return Ok(Dist::Uniform);
    }
    match s.strip_prefix("zipf:").map(|v| v.parse::<f64>()) {
        Some(Ok(v)) if v > 0.0 && v.is_finite() => Ok(Dist::Zipf(v)),
        _ => Err(format!("bad distribution {s:?} (uniform or zipf:S, S > 0)")),
    }
}

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Replies received in the measured window.
    pub requests: u64,
    /// Of those, replies whose CODE was not 200, by code.
    pub errors: BTreeMap<u16, u64>,
    /// Measured window, seconds.
    pub elapsed: f64,
    /// Latency percentiles, microseconds: p50, p90, p99, p99.9, p99.99, max.
    pub latency_us: [u64; 6],
    /// Proxy hit ratio over the run (from STS), when the target is a proxy.
    pub hit_ratio: Option<f64>,
    /// Open loop: p99 of the generator's own send lag (µs), i.e. how late
    /// it sent requests that had a free connection.
    pub send_lag_p99_us: Option<u64>,
    /// Open loop: measured requests that had to wait for a connection with
    /// room (every connection was at its pipeline limit when they were due).
    pub backlogged: u64,
    /// CPU time the generator used, as a fraction of the wall time.
    pub cpu: Option<f64>,
}

impl Report {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Replies per second.
    pub fn throughput(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.requests as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// True when the generator, not the target, may have limited the run.
    pub fn generator_fell_behind(&self) -> bool {
        self.send_lag_p99_us.is_some_and(|l| l > 1000)
    }
}

/// A small fast PRNG (xorshift64*): the choices only need to be spread,
/// not unpredictable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks keys.
struct Keys {
    keys: u64,
    /// Zipf: cumulative probabilities of keys 0..n.
    cdf: Option<Vec<f64>>,
}

impl Keys {
    fn new(keys: u64, dist: &Dist) -> Keys {
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

    fn pick(&self, rng: &mut Rng) -> i64 {
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
struct Outstanding {
    started: VecDeque<Instant>,
}

struct Bench {
    cfg: BenchConfig,
    poll: Poll,
    conns: Slab<Conn<Outstanding>>,
    scratch: Buffer,
    rng: Rng,
    keys: Keys,
    ind: Vec<i64>,
    data: Vec<i64>,
    hist: Histogram<u64>,
    lag: Histogram<u64>,
    errors: BTreeMap<u16, u64>,
    measured: u64,
    /// Measuring starts here (after the warm-up) and ends at `end`.
    measure_from: Instant,
    end: Instant,
    /// Open loop: the start of the schedule and the next request's number.
    sched_start: Instant,
    next_k: u64,
    /// Open loop: since when some connection has had room (for send lag).
    free_since: Option<Instant>,
    backlogged: u64,
    cursor: usize,
    dead: usize,
    /// Reply codes of the current read pass (reused).
    codes: Vec<u16>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Bench {
    fn choose_op(&mut self) -> Op {
        let [g, p, _a] = self.cfg.mix;
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
    fn send_one(&mut self, key: usize, start: Instant) {
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
        let conn = &mut self.conns[key];
        encode_request(&mut conn.output, op, &self.ind, &self.data);
        conn.end_message();
        conn.ext.started.push_back(start);
    }

    fn has_room(&self, key: usize) -> bool {
        let c = &self.conns[key];
        c.state() == State::Open && c.ext.started.len() < self.cfg.pipeline
    }

    /// Closed loop: top every connection up to its pipeline depth.
    fn refill_closed(&mut self, key: usize, now: Instant) {
        while now < self.end && self.has_room(key) {
            self.send_one(key, Instant::now());
        }
    }

    /// Open loop: send every request whose time has come, on connections
    /// with room, round robin.
    fn send_due(&mut self, now: Instant, rate: f64) {
        let n = self.conns.capacity().max(1);
        loop {
            let sched = self.sched_start + Duration::from_secs_f64(self.next_k as f64 / rate);
            if sched > now || sched >= self.end {
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
            self.cursor = k + 1;
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
        }
    }

    fn on_reply(&mut self, key: usize, body_code: u16, now: Instant) {
        let Some(start) = self.conns[key].ext.started.pop_front() else {
            return;
        };
        if start >= self.measure_from && now <= self.end + Duration::from_secs(60) && start < self.end {
            self.measured += 1;
            let us = now.saturating_duration_since(start).as_micros() as u64;
            self.hist.saturating_record(us.max(1));
            if body_code != 200 {
                *self.errors.entry(body_code).or_default() += 1;
            }
        }
    }

    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        let key = token.0;
        let Some(conn) = self.conns.get_mut(key) else { return };
        if let State::Connecting { .. } = conn.state() {
            match conn.on_connect_event(self.poll.registry()) {
                ConnectOutcome::Connected => {}
                ConnectOutcome::Pending => return,
                ConnectOutcome::Failed(e) => {
                    log::warn!("bench: connect to {}: {e}", self.cfg.connect);
                    conn.close(self.poll.registry(), "connect failed");
                    self.dead += 1;
                    return;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let codes = &mut self.codes;
            let outcome = conn.read_pass(&mut self.scratch, 1 << 20, usize::MAX, now, |c| loop {
                match c.next_message(1 << 20) {
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

    fn flush_all(&mut self) -> io::Result<()> {
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

    fn outstanding(&self) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.state() == State::Open)
            .map(|(_, c)| c.ext.started.len())
            .sum()
    }
}

/// The status code of a reply body (a reply without CODE counts as 200).
fn reply_code(body: &[u8]) -> u16 {
    match body.windows(5).rposition(|w| w == b"CODE=") {
        None => 200,
        Some(p) => body[p + 5..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .fold(0u16, |acc, &d| acc.saturating_mul(10).saturating_add((d - b'0') as u16)),
    }
}

/// CPU seconds this process has used (from /proc; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// Hits and misses from a proxy's STS (`None` when the target is not a proxy).
fn proxy_counts(addr: SocketAddr) -> Option<(u64, u64)> {
    let mut c = Client::connect(addr, Duration::from_secs(5)).ok()?;
    let line = c.request_raw(b"OP=STS").ok()?;
    let get = |k: &str| {
        line.split(';')
            .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if !line.contains("ROLE=proxy") {
        return None;
    }
    Some((get("HITS")?, get("MISSES")?))
}

/// Runs a benchmark.
pub fn run(cfg: BenchConfig) -> io::Result<Report> {
    if cfg.connections == 0 || cfg.pipeline == 0 || cfg.batch == 0 || cfg.keys == 0 || cfg.mix.iter().sum::<u32>() == 0
    {
        return Err(invalid(
            "connections, pipeline, batch and keys must be at least 1".into(),
        ));
    }
    let before = proxy_counts(cfg.connect);
    let poll = Poll::new()?;
    let mut conns = Slab::with_capacity(cfg.connections);
    let now = Instant::now();
    for _ in 0..cfg.connections {
        let entry = conns.vacant_entry();
        let token = Token(entry.key());
        let c = Conn::connect(
            cfg.connect,
            token,
            1,
            "bench",
            poll.registry(),
            now,
            Outstanding::default(),
        )?;
        entry.insert(c);
    }
    let mut b = Bench {
        keys: Keys::new(cfg.keys, &cfg.dist),
        rng: Rng(cfg.seed | 1),
        cfg,
        poll,
        conns,
        scratch: Buffer::with_capacity(crate::conn::READ_CHUNK),
        ind: Vec::new(),
        data: Vec::new(),
        hist: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| invalid(e.to_string()))?,
        lag: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| invalid(e.to_string()))?,
        errors: BTreeMap::new(),
        measured: 0,
        measure_from: now,
        end: now,
        sched_start: now,
        next_k: 0,
        free_since: None,
        backlogged: 0,
        cursor: 0,
        dead: 0,
        codes: Vec::new(),
    };
    let mut events = Events::with_capacity(1024);
    // Connect everything first.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b
        .conns
        .iter()
        .any(|(_, c)| matches!(c.state(), State::Connecting { .. }))
    {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connecting timed out"));
        }
        poll_retry(&mut b.poll, &mut events, Some(deadline - now))?;
        for ev in events.iter() {
            b.ready(ev.token(), ev, now);
        }
    }
    if b.dead > 0 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("cannot connect to {}", b.cfg.connect),
        ));
    }
    let start = Instant::now();
    b.sched_start = start;
    b.measure_from = start + b.cfg.warmup;
    b.end = b.measure_from + b.cfg.duration;
    b.free_since = Some(start);
    let cpu0 = cpu_seconds();
    if b.cfg.rate.is_none() {
        for k in 0..b.conns.capacity() {
            if b.conns.contains(k) {
                b.refill_closed(k, start);
            }
        }
    }
    b.flush_all()?;
    let mut last_progress = start;
    let mut last_count = 0u64;
    let progress = b.cfg.progress && io::stderr().is_terminal() && io::stdout().is_terminal();
    loop {
        let now = Instant::now();
        if now >= b.end && (b.outstanding() == 0 || now >= b.end + Duration::from_secs(5)) {
            break;
        }
        if b.dead == b.cfg.connections {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "every connection was lost",
            ));
        }
        if let Some(rate) = b.cfg.rate {
            b.send_due(now, rate);
            b.flush_all()?;
        }
        // Sleep until the next scheduled send or a reply. epoll counts in
        // milliseconds: for the last sub-millisecond stretch before a send,
        // poll without sleeping, so requests leave on time (the price is a
        // busy core at rates over ~1000/s).
        let timeout = match b.cfg.rate {
            Some(rate) if now < b.end => {
                let next = b.sched_start + Duration::from_secs_f64(b.next_k as f64 / rate);
                let wait = next.saturating_duration_since(now);
                Some(Duration::from_millis(wait.as_millis() as u64))
            }
            _ => Some(Duration::from_millis(100)),
        };
        poll_retry(&mut b.poll, &mut events, timeout)?;
        let now = Instant::now();
        for ev in events.iter() {
            b.ready(ev.token(), ev, now);
        }
        b.flush_all()?;
        if progress && now.duration_since(last_progress) >= Duration::from_secs(1) {
            let rate = (b.measured - last_count) as f64 / now.duration_since(last_progress).as_secs_f64();
            let p99 = b.hist.value_at_quantile(0.99);
            let t = now.saturating_duration_since(start).as_secs();
            eprint!("\r  {t:>3}s  {rate:>10.0} req/s  p99 {p99} us      ");
            last_progress = now;
            last_count = b.measured;
        }
    }
    if progress {
        eprintln!();
    }
    let wall = b.end.min(Instant::now()).saturating_duration_since(start).as_secs_f64();
    let cpu = match (cpu0, cpu_seconds()) {
        (Some(a), Some(z)) if wall > 0.0 => Some((z - a) / wall),
        _ => None,
    };
    let after = proxy_counts(b.cfg.connect);
    let hit_ratio = match (before, after) {
        (Some((h0, m0)), Some((h1, m1))) if (h1 + m1) > (h0 + m0) => {
            Some((h1 - h0) as f64 / ((h1 - h0) + (m1 - m0)) as f64)
        }
        _ => None,
    };
    let h = &b.hist;
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    Ok(Report {
        requests: b.measured,
        errors: b.errors,
        elapsed: b.cfg.duration.as_secs_f64(),
        latency_us: [
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            q(0.9999),
            if h.is_empty() { 0 } else { h.max() },
        ],
        hit_ratio,
        send_lag_p99_us: b.cfg.rate.map(|_| {
            if b.lag.is_empty() {
                0
            } else {
                b.lag.value_at_quantile(0.99)
            }
        }),
        backlogged: b.backlogged,
        cpu,
    })
}

fn mix_text(m: &[u32; 3]) -> String {
    ["get", "put", "add"]
        .iter()
        .zip(m)
        .filter(|(_, &w)| w > 0)
        .map(|(n, w)| format!("{n}={w}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn dist_text(d: &Dist) -> String {
    match d {
        Dist::Uniform => "uniform".into(),
        Dist::Zipf(s) => format!("zipf:{s}"),
    }
}

/// The human-readable report.
pub fn render(cfg: &BenchConfig, r: &Report) -> String {
    let mut s = String::new();
    let mode = match cfg.rate {
        Some(rate) => format!("open loop at {rate} req/s"),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        s,
        "tablecache bench: {} {mode}, {} connections x pipeline {}, {} s measured after {} s of warm-up (excluded)",
        cfg.connect,
        cfg.connections,
        cfg.pipeline,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "  mix {}, {} index(es) per request, {} keys {}",
        mix_text(&cfg.mix),
        cfg.batch,
        cfg.keys,
        dist_text(&cfg.dist)
    );
    let errs: Vec<String> = r.errors.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(
        s,
        "requests    {}  (errors {}{})",
        r.requests,
        r.error_count(),
        if errs.is_empty() {
            String::new()
        } else {
            format!(" = {}", errs.join(", "))
        }
    );
    let _ = writeln!(s, "throughput  {:.0} req/s", r.throughput());
    let l = r.latency_us;
    let _ = writeln!(
        s,
        "latency us  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        l[0], l[1], l[2], l[3], l[4], l[5]
    );
    if let Some(h) = r.hit_ratio {
        let _ = writeln!(s, "hit ratio   {:.1}% (proxy STS before and after)", h * 100.0);
    }
    if let Some(cpu) = r.cpu {
        let _ = writeln!(s, "generator   {:.0}% of one core", cpu * 100.0);
    }
    if let Some(lag) = r.send_lag_p99_us {
        let _ = writeln!(
            s,
            "send lag    p99 {lag} us (how late the generator sent requests that had a free connection)"
        );
        if r.backlogged > 0 {
            let _ = writeln!(
                s,
                "backlog     {} requests found every connection at its pipeline limit when due (the target fell behind)",
                r.backlogged
            );
        }
        if r.generator_fell_behind() {
            let _ = writeln!(
                s,
                "WARNING     the generator fell behind its schedule: latencies include its own delay"
            );
        }
    }
    s
}

/// The one-line JSON summary (`--json`).
pub fn json(cfg: &BenchConfig, r: &Report) -> String {
    let l = r.latency_us;
    let errs: Vec<String> = r.errors.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect();
    let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x:.4}"));
    format!(
        concat!(
            "{{\"requests\":{},\"errors\":{},\"errors_by_code\":{{{}}},\"throughput\":{:.1},",
            "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"p9999\":{},\"max\":{}}},",
            "\"hit_ratio\":{},\"generator_cpu\":{},\"send_lag_p99_us\":{},\"backlogged\":{},",
            "\"target\":\"{}\",\"mode\":\"{}\",\"rate\":{},\"duration_s\":{},\"warmup_s\":{},",
            "\"connections\":{},\"pipeline\":{},\"keys\":{},\"mix\":\"{}\",\"batch\":{},\"dist\":\"{}\"}}"
        ),
        r.requests,
        r.error_count(),
        errs.join(","),
        r.throughput(),
        l[0],
        l[1],
        l[2],
        l[3],
        l[4],
        l[5],
        opt(r.hit_ratio),
        opt(r.cpu),
        r.send_lag_p99_us.map_or("null".to_string(), |v| v.to_string()),
        r.backlogged,
        cfg.connect,
        if cfg.rate.is_some() { "open" } else { "closed" },
        cfg.rate.map_or("null".to_string(), |v| v.to_string()),
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        cfg.connections,
        cfg.pipeline,
        cfg.keys,
        mix_text(&cfg.mix),
        cfg.batch,
        dist_text(&cfg.dist)
    )
}

/// Writes the report (and the JSON line) to stdout.
pub fn print(cfg: &BenchConfig, r: &Report, as_json: bool) {
    let mut out = io::stdout().lock();
    let _ = write!(out, "{}", render(cfg, r));
    if as_json {
        let _ = writeln!(out, "{}", json(cfg, r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_and_dist_parse() {
        assert_eq!(parse_mix("get=80,put=15,add=5").unwrap(), [80, 15, 5]);
        assert_eq!(parse_mix("put=1").unwrap(), [0, 1, 0]);
        assert!(parse_mix("get=0").is_err());
        assert!(parse_mix("mul=3").is_err());
        assert_eq!(parse_dist("zipf:0.99").unwrap(), Dist::Zipf(0.99));
        assert!(parse_dist("zipf:-1").is_err());
    }

    #[test]
    fn zipf_favours_low_keys_and_stays_in_range() {
        let k = Keys::new(100, &Dist::Zipf(0.99));
        let mut rng = Rng(7);
        let picks: Vec<i64> = (0..10_000).map(|_| k.pick(&mut rng)).collect();
        assert!(picks.iter().all(|&p| (0..100).contains(&p)));
        let zeros = picks.iter().filter(|&&p| p == 0).count();
        let fifties = picks.iter().filter(|&&p| p == 50).count();
        assert!(zeros > 5 * fifties.max(1), "{zeros} vs {fifties}");
    }

    #[test]
    fn reply_codes() {
        assert_eq!(reply_code(b"OP=GET;IND=1;DATA=2;CODE=200"), 200);
        assert_eq!(reply_code(b"OP=GET;CODE=503;MSG=upstream unavailable"), 503);
        assert_eq!(reply_code(b"OP=GET;IND=1;DATA=2"), 200);
    }
}

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
//!
//! The rooms: this file (settings, the run), `load` (the generator: what
//! to send, when, on which connection), `replies` (reading them back,
//! timeouts and errors by kind), `wire` (each protocol's bytes), `pacer` (when the
//! open loop's send passes wake, and the timerfd that wakes them),
//! `preload` (setting every key before a run), `report` (what a run
//! measured, as text and JSON).

mod drive;
mod json;
mod keys;
mod load;
pub(crate) mod pacer;
pub mod plot;
mod preload;
mod replies;
mod report;
pub mod wire;

pub use json::json;
pub use pacer::{next_pass, DEFAULT_SEND_INTERVAL};
pub use report::{hdr_text, print_quiet, render, report_title, OpStats, Report};

use load::{invalid, Bench};
use mio::Events;
use report::{cpu_seconds, proxy_counts};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
pub use wire::{ErrorKind, Protocol};

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
    /// The targets (proxies or servers): connection `i` goes to
    /// `connect[i % len]`, so a run can spread over several proxies.
    pub connect: Vec<SocketAddr>,
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
    /// Send this many requests, then stop (`-n`; `None`: run for
    /// `duration`). Every one is measured: pair it with no warm-up.
    pub requests: Option<u64>,
    /// Keep every index read, in order (`--record`; 8 bytes a key).
    pub record: bool,
    /// The protocol spoken (`--protocol`): tablecache's, RESP, memcached's.
    pub protocol: Protocol,
    /// Set every key first (`--preload`), so that GETs find values.
    pub preload: bool,
    /// Open loop: the send passes come at least this far apart on the
    /// schedule (`--send-interval-us`); see [`next_pass`].
    pub send_interval: Duration,
    /// A request unanswered this long is an error (`--timeout`).
    pub timeout: Duration,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            connect: vec!["127.0.0.1:8081".parse().expect("literal address")],
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
            requests: None,
            record: false,
            protocol: Protocol::Line,
            preload: false,
            send_interval: DEFAULT_SEND_INTERVAL,
            timeout: Duration::from_secs(2),
        }
    }
}

/// `n` keys drawn the way the bench draws them (the same generator and
/// distributions), from `seed`: the trace `tablecache sim` generates.
pub fn key_stream(keys: u64, dist: &Dist, seed: u64, n: usize) -> Vec<i64> {
    let k = load::Keys::new(keys.max(1), dist);
    let mut rng = load::Rng(seed | 1);
    (0..n).map(|_| k.pick(&mut rng)).collect()
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

/// Why a run stopped when Ctrl-C stopped it (`Report::stopped`).
pub const INTERRUPTED: &str = "interrupted (Ctrl-C)";

/// Runs a benchmark.
pub fn run(cfg: BenchConfig) -> io::Result<Report> {
    if cfg.connections == 0
        || cfg.pipeline == 0
        || cfg.batch == 0
        || cfg.keys == 0
        || cfg.mix.iter().sum::<u32>() == 0
        || cfg.connect.is_empty()
    {
        return Err(invalid(
            "connections, pipeline, batch and keys must be at least 1".into(),
        ));
    }
    if let Some(why) = cfg.protocol.cannot(cfg.mix, cfg.batch) {
        return Err(invalid(why));
    }
    if cfg.preload {
        for &a in &cfg.connect {
            preload::preload(a, cfg.protocol, cfg.keys, cfg.timeout)?;
        }
    }
    // Only a tablecache proxy answers the STS the hit ratio comes from.
    let before = match cfg.protocol {
        Protocol::Line => proxy_counts(&cfg.connect, cfg.timeout),
        _ => None,
    };
    let mut b = Bench::new(cfg)?;
    // Ctrl-C ends the run with a report of what was measured.
    let mut signals = crate::reactor::signals::Signals::register(b.poll.registry())?;
    let mut events = Events::with_capacity(1024);
    b.connect_all(&mut events)?;
    let start = Instant::now();
    b.last_reply = start;
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
    b.drive(start, &mut events, &mut signals)?;
    // What is still unanswered a timeout after the end timed out, and so
    // did what the open loop scheduled but never sent (unless the run was
    // stopped: then it was only cut short).
    if b.stopped.is_none() {
        let keys: Vec<usize> = b.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            b.fail_outstanding(k, ErrorKind::Timeout);
        }
        b.fail_unsent();
    }
    // The generator's CPU over the time it ran (not only the window).
    let wall = start.elapsed().as_secs_f64();
    Ok(b.report(before, cpu0, wall))
}

/// Prints the report; with `as_json`, the report goes to stderr and the
/// JSON line alone to stdout (so `bench --json | jq` reads only JSON).
pub fn print(cfg: &BenchConfig, r: &Report, as_json: bool) {
    if as_json {
        let _ = std::io::Write::write_all(&mut io::stderr().lock(), render(cfg, r).as_bytes());
        crate::outln!("{}", json(cfg, r));
    } else {
        crate::out!("{}", render(cfg, r));
    }
}

#[cfg(test)]
mod tests {
    use super::load::{Keys, Rng};
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
}

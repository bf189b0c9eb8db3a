//! What a benchmark run measured, as a human-readable report and as one
//! JSON line, and the probes it takes around the run (CPU time, a proxy's
//! hit and miss counts).

use super::wire::ErrorKind;
use super::{BenchConfig, Dist};
use crate::client::Client;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use std::net::SocketAddr;
use std::time::Duration;

/// The outcome of a run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Requests of the measured window, answered or failed.
    pub requests: u64,
    /// Of those, the ones a reply came back for (error replies too; not
    /// timeouts or losses): what throughput counts.
    pub replies: u64,
    /// Of those, the ones that failed, by kind (a CODE other than 200,
    /// an error reply, a timeout...).
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Why the run stopped before its end (interrupted, a silent target).
    pub stopped: Option<String>,
    /// The target answered in another protocol: what it looks like.
    pub foreign: Option<String>,
    /// Connections closed and opened again.
    pub reconnects: u64,
    /// Measured window, seconds.
    pub elapsed: f64,
    /// Latency percentiles, microseconds: p50, p90, p99, p99.9, p99.99, max.
    pub latency_us: [u64; 6],
    /// Mean latency, microseconds (what a hit ratio predicts is a mean).
    pub mean_us: f64,
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
    /// The generator's CPU per reply it took, microseconds (warm-up
    /// included, as in `cpu`): its own cost, to set beside a target's.
    pub cpu_us_per_reply: Option<f64>,
    /// GETs a proxy sent upstream per client read that sent indices (from
    /// STS `UP_FETCH_GETS` / `UP_FETCHES`; below 1 when the misses of a
    /// pass grow one GET).
    pub up_gets_per_fetch: Option<f64>,
    /// With `BenchConfig::record`: every index read (GET, ADD), in the
    /// order requested — a trace for `tablecache sim`.
    pub recorded: Vec<i64>,
    /// Per operation in the mix: its own count, errors and percentiles.
    pub by_op: Vec<OpStats>,
    /// Every measured latency (µs), for `--hdr-out`.
    pub histogram: Histogram<u64>,
}

/// One operation's share of a run.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// `get`, `put` or `add`.
    pub op: &'static str,
    /// Replies measured.
    pub requests: u64,
    /// Of those, errors.
    pub errors: u64,
    /// p50, p90, p99, p99.9, p99.99, max (µs).
    pub latency_us: [u64; 6],
}

/// p50, p90, p99, p99.9, p99.99 and max of `h` (zeros when empty).
pub(super) fn percentiles(h: &Histogram<u64>) -> [u64; 6] {
    if h.is_empty() {
        return [0; 6];
    }
    let q = |x: f64| h.value_at_quantile(x);
    [q(0.5), q(0.9), q(0.99), q(0.999), q(0.9999), h.max()]
}

impl Report {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Errors over requests (0 when there were none).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.error_count() as f64 / self.requests as f64
        }
    }

    /// Replies per second.
    pub fn throughput(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.replies as f64 / self.elapsed
        } else {
            0.0
        }
    }

    /// True when the generator, not the target, may have limited the run.
    pub fn generator_fell_behind(&self) -> bool {
        self.send_lag_p99_us.is_some_and(|l| l > 1000)
    }
}

/// A short name for a run (its target, shape, loop and rate, and mix),
/// for a curve's legend.
pub fn report_title(cfg: &BenchConfig) -> String {
    let run = match cfg.rate {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".into(),
    };
    format!(
        "{} {}x{} {run} {}",
        targets_text(&cfg.connect),
        cfg.connections,
        cfg.pipeline,
        mix_text(&cfg.mix)
    )
}

/// CPU seconds this process has used (from /proc; `None` elsewhere).
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// Hits and misses from a proxy's STS (`None` when the target is not a
/// proxy, or does not answer within `wait`: the run's timeout).
pub(super) fn proxy_counts(targets: &[SocketAddr], wait: Duration) -> Option<ProxyCounts> {
    let counts: Vec<ProxyCounts> = targets.iter().filter_map(|&a| proxy_counts_at(a, wait)).collect();
    if counts.is_empty() {
        return None;
    }
    Some(counts.iter().fold(ProxyCounts::default(), |a, b| ProxyCounts {
        hits: a.hits + b.hits,
        misses: a.misses + b.misses,
        fetches: a.fetches + b.fetches,
        fetch_gets: a.fetch_gets + b.fetch_gets,
    }))
}

/// A proxy's counters as its STS says them: indices hit and missed, its
/// clients' fetches and the GETs that carried them upstream.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ProxyCounts {
    pub hits: u64,
    pub misses: u64,
    pub fetches: u64,
    pub fetch_gets: u64,
}

impl ProxyCounts {
    /// The hit ratio, and upstream GETs per fetch, between `self` (before)
    /// and `after`; `None` for what did not move.
    pub fn since(&self, after: &ProxyCounts) -> (Option<f64>, Option<f64>) {
        let (h, m) = (after.hits - self.hits, after.misses - self.misses);
        let (f, g) = (after.fetches - self.fetches, after.fetch_gets - self.fetch_gets);
        let ratio = (h + m > 0).then(|| h as f64 / (h + m) as f64);
        let per_fetch = (f > 0).then(|| g as f64 / f as f64);
        (ratio, per_fetch)
    }
}

/// The targets, as given to `--connect`.
pub fn targets_text(targets: &[SocketAddr]) -> String {
    targets.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

fn proxy_counts_at(addr: SocketAddr, wait: Duration) -> Option<ProxyCounts> {
    let mut c = Client::connect(addr, wait).ok()?;
    let line = c.request_raw(b"OP=STS").ok()?;
    let get = |k: &str| {
        line.split(';')
            .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse::<u64>().ok())
    };
    if !line.contains("ROLE=proxy") {
        return None;
    }
    Some(ProxyCounts {
        hits: get("HITS")?,
        misses: get("MISSES")?,
        // (Absent from an older proxy's STS.)
        fetches: get("UP_FETCHES").unwrap_or(0),
        fetch_gets: get("UP_FETCH_GETS").unwrap_or(0),
    })
}

pub(super) fn mix_text(m: &[u32; 3]) -> String {
    ["get", "put", "add"]
        .iter()
        .zip(m)
        .filter(|(_, &w)| w > 0)
        .map(|(n, w)| format!("{n}={w}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn dist_text(d: &Dist) -> String {
    match d {
        Dist::Uniform => "uniform".into(),
        Dist::Zipf(s) => format!("zipf:{s}"),
    }
}

/// What a run is about to do, before its first live line.
pub fn header(cfg: &BenchConfig) -> String {
    let length = match cfg.requests {
        Some(n) => format!("{n} requests"),
        None => format!("{} s", cfg.duration.as_secs_f64()),
    };
    format!(
        "tablecache bench: {} {}, {} x pipeline {}: {length} after {} s of warm-up (Ctrl-C stops it with a report)",
        targets_text(&cfg.connect),
        if cfg.rate.is_some() { "open loop" } else { "closed loop" },
        plural(cfg.connections, "connection"),
        cfg.pipeline,
        cfg.warmup.as_secs_f64()
    )
}

/// The human-readable report.
pub fn render(cfg: &BenchConfig, r: &Report) -> String {
    let mut s = String::new();
    render_setup(&mut s, cfg, r);
    render_outcome(&mut s, r);
    render_timing(&mut s, r);
    render_generator(&mut s, r);
    s
}

/// What was run, and whether it ran to its end.
fn render_setup(s: &mut String, cfg: &BenchConfig, r: &Report) {
    let mode = match cfg.rate {
        Some(rate) => format!(
            "open loop at {rate} req/s (send passes >= {} us apart)",
            cfg.send_interval.as_micros()
        ),
        None => "closed loop".into(),
    };
    let _ = writeln!(
        s,
        "tablecache bench: {} {mode}, {} x pipeline {}, {:.3} s measured after {} s of warm-up (excluded)",
        targets_text(&cfg.connect),
        plural(cfg.connections, "connection"),
        cfg.pipeline,
        r.elapsed,
        cfg.warmup.as_secs_f64()
    );
    if let Some(why) = &r.stopped {
        let _ = writeln!(s, "STOPPED     {why}: the numbers cover the time measured until then");
    }
    if let Some(what) = &r.foreign {
        let _ = writeln!(s, "PROTOCOL    {what}");
    }
    let _ = writeln!(
        s,
        "  mix {}, {} index(es) per request, {} keys {}",
        mix_text(&cfg.mix),
        cfg.batch,
        cfg.keys,
        dist_text(&cfg.dist)
    );
}

/// Requests, errors and reconnects.
fn render_outcome(s: &mut String, r: &Report) {
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
    if r.error_count() > 0 {
        let _ = writeln!(
            s,
            "ERRORS      {} of {} requests failed ({:.2}%): see the kinds above (docs/benchmarks.md, \"What a number means\")",
            r.error_count(),
            r.requests,
            r.error_rate() * 100.0
        );
    }
    if r.reconnects > 0 {
        let _ = writeln!(
            s,
            "reconnects  {} (connections closed after a timeout, a desync or a loss, and opened again)",
            r.reconnects
        );
    }
}

/// Throughput, latency (per operation too), the hit ratio.
fn render_timing(s: &mut String, r: &Report) {
    let _ = writeln!(s, "throughput  {:.0} req/s", r.throughput());
    let l = r.latency_us;
    let _ = writeln!(
        s,
        "latency us  p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        l[0], l[1], l[2], l[3], l[4], l[5]
    );
    if r.by_op.len() > 1 {
        for o in &r.by_op {
            let l = o.latency_us;
            let _ = writeln!(
                s,
                "  {:<4} {:>10} req  errors {:<6} p50 {}  p99 {}  p99.9 {}  max {}",
                o.op, o.requests, o.errors, l[0], l[2], l[3], l[5]
            );
        }
    }
    if let Some(h) = r.hit_ratio {
        let _ = writeln!(s, "hit ratio   {:.1}% (proxy STS before and after)", h * 100.0);
    }
    if let Some(g) = r.up_gets_per_fetch {
        let _ = writeln!(
            s,
            "upstream    {g:.3} GETs per fetch (a pass's misses go as one GET; proxy STS)"
        );
    }
}

/// The generator's own cost and lag.
fn render_generator(s: &mut String, r: &Report) {
    if let Some(cpu) = r.cpu {
        let per = r
            .cpu_us_per_reply
            .map_or(String::new(), |us| format!(", {us:.2} µs per reply"));
        let _ = writeln!(s, "generator   {:.0}% of one core{per}", cpu * 100.0);
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
}

/// `n thing` or `n things`.
fn plural(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// The latency distribution in HdrHistogram's percentile-distribution
/// text format (what `HistogramLogProcessor` and `outputPercentileDistribution`
/// print, and the standard plotter, plotFiles.html, reads), values in
/// milliseconds.
pub fn hdr_text(h: &hdrhistogram::Histogram<u64>) -> String {
    let mut s = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let (value, q) = (v.value_iterated_to() as f64 / 1000.0, v.quantile_iterated_to());
            if q < 1.0 {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let ms = |x: f64| x / 1000.0;
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        ms(h.mean()),
        ms(h.stdev())
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max() as f64),
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        // What the library keeps per bucket for this precision.
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    s
}

/// Writes the report (and the JSON line) to stdout.
/// `-q`: one line, like redis-benchmark's quiet mode.
pub fn print_quiet(r: &Report) {
    let [p50, _, p99, _, _, max] = r.latency_us;
    let errors = r.error_count();
    crate::outln!(
        "{:.0} requests per second, p50 {p50} us, p99 {p99} us, max {max} us, {} requests, {errors} errors",
        r.throughput(),
        r.requests
    );
}

//! `tablecache sim`: replays a trace of indices through every eviction
//! policy at several capacities, offline, next to Bélády's MIN on the same
//! trace — the fewest misses any policy could have had, knowing the
//! future (Bélády, 1966). Pure code: a trace in, miss counts out.
//!
//! A replay does what the proxy does for a client reading one index at a
//! time: a lookup (`Policy::get`), and on a miss an insertion. So a live
//! proxy fed the same trace by one client counts the same hits (tested).

use crate::bench::{key_stream, Dist};
use crate::cache::{by_name, Policy, POLICIES};
use crate::proto::{Op, Request};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

/// One result: a policy at a capacity over a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `fifo`, `lru`, `clock`, `sieve`, `s3fifo`, or `min` (Bélády).
    pub policy: &'static str,
    /// Entries the cache holds.
    pub capacity: usize,
    /// Requests replayed.
    pub requests: u64,
    /// Misses.
    pub misses: u64,
}

impl Row {
    /// Misses over requests.
    pub fn miss_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.misses as f64 / self.requests as f64
        }
    }
}

/// Misses of `policy` over `trace`.
pub fn replay(policy: &mut dyn Policy, trace: &[i64]) -> u64 {
    let mut misses = 0;
    for &k in trace {
        if policy.get(k).is_none() {
            misses += 1;
            policy.insert(k, 0);
        }
    }
    misses
}

/// Bélády's MIN: on a miss with the cache full, evict the entry whose next
/// use is farthest in the future (never, first). Every miss inserts, as
/// in the proxy, so the count is the lower bound for the policies here.
pub fn belady(trace: &[i64], capacity: usize) -> u64 {
    if capacity == 0 {
        return trace.len() as u64;
    }
    // next[i]: the position of the next request of trace[i] (or never).
    let mut next = vec![usize::MAX; trace.len()];
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (i, &k) in trace.iter().enumerate().rev() {
        if let Some(&j) = seen.get(&k) {
            next[i] = j;
        }
        seen.insert(k, i);
    }
    // Cached keys by their next use, farthest last.
    let mut by_next: BTreeSet<(usize, i64)> = BTreeSet::new();
    let mut held: HashMap<i64, usize> = HashMap::new();
    let mut misses = 0;
    for (i, &k) in trace.iter().enumerate() {
        match held.get(&k).copied() {
            Some(n) => {
                by_next.remove(&(n, k));
            }
            None => {
                misses += 1;
                if held.len() >= capacity {
                    if let Some((_, far)) = by_next.pop_last() {
                        held.remove(&far);
                    }
                }
            }
        }
        held.insert(k, next[i]);
        by_next.insert((next[i], k));
    }
    misses
}

/// Every policy and MIN at every capacity.
pub fn run(trace: &[i64], capacities: &[usize]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &capacity in capacities {
        for name in POLICIES {
            let mut p = by_name(name, capacity).expect("a known policy");
            rows.push(Row {
                policy: name,
                capacity,
                requests: trace.len() as u64,
                misses: replay(&mut *p, trace),
            });
        }
        rows.push(Row {
            policy: "min",
            capacity,
            requests: trace.len() as u64,
            misses: belady(trace, capacity),
        });
    }
    rows
}

/// A generated trace: `requests` keys among `keys`, uniform or Zipf, from
/// `seed` (the bench's generator).
pub fn generate(keys: u64, requests: usize, dist: &Dist, seed: u64) -> Vec<i64> {
    key_stream(keys, dist, seed, requests)
}

/// Mixes scans into `trace`: about a fraction `share` of the requests
/// become runs of 100 consecutive indices beyond the trace's keys, each
/// read once and never again (the pattern that flushes a FIFO or LRU
/// cache). Seeded, so the same arguments give the same trace.
pub fn with_scans(trace: &[i64], keys: u64, share: f64, seed: u64) -> Vec<i64> {
    const RUN: usize = 100;
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // A scan starts before a base request with these odds: then scans
    // take `share` of the requests (a run is RUN long, a base request 1).
    let r = RUN as f64;
    let start_odds = (share / (r - (r - 1.0) * share)).clamp(0.0, 1.0);
    let mut out = Vec::with_capacity(trace.len());
    let mut base = trace.iter();
    let mut scan: Option<(i64, usize)> = None;
    // Each scan reads indices no scan read before.
    let mut fresh = keys as i64;
    while out.len() < trace.len() {
        if let Some((next, left)) = scan {
            out.push(next);
            scan = (left > 1).then_some((next + 1, left - 1));
            continue;
        }
        if ((rnd() >> 11) as f64 / (1u64 << 53) as f64) < start_odds {
            scan = Some((fresh, RUN));
            fresh += RUN as i64;
            continue;
        }
        match base.next() {
            Some(&k) => out.push(k),
            None => break,
        }
    }
    out
}

/// The miss-ratio curves as a self-contained SVG: capacity across (log
/// scale), miss ratio up, a line per policy, MIN dashed.
pub fn svg(rows: &[Row], title: &str) -> String {
    let mut caps: Vec<usize> = rows.iter().map(|r| r.capacity.max(1)).collect();
    caps.sort_unstable();
    caps.dedup();
    let top_ratio = rows.iter().map(|r| r.miss_ratio()).fold(0.0f64, f64::max);
    let p = Plot {
        lo: caps[0] as f64,
        hi: *caps.last().unwrap_or(&1) as f64,
        ymax: ((top_ratio * 10.0).ceil() / 10.0).max(0.1),
    };
    let (w, h, left) = (W, H, LEFT);
    let esc = |t: &str| t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{left}" y="28" font-size="15">{}</text>"#, esc(title));
    p.axes(&mut s, &caps);
    p.lines(&mut s, rows, &caps);
    s.push_str("</svg>\n");
    s
}

/// The chart's size and margins.
const W: f64 = 760.0;
const H: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// The chart's scales: capacities `lo..hi` on a log axis, miss ratios
/// `0..ymax`.
struct Plot {
    lo: f64,
    hi: f64,
    ymax: f64,
}

impl Plot {
    fn x(&self, c: usize) -> f64 {
        let span = (self.hi / self.lo).log2().max(1e-9);
        LEFT + (W - LEFT - RIGHT) * ((c.max(1) as f64 / self.lo).log2() / span)
    }

    fn y(&self, r: f64) -> f64 {
        TOP + (H - TOP - BOTTOM) * (1.0 - r / self.ymax)
    }

    /// Axes, grid and ticks, and the axes' names.
    fn axes(&self, s: &mut String, caps: &[usize]) {
        let (w, h, left, right, top, bottom) = (W, H, LEFT, RIGHT, TOP, BOTTOM);
        let _ = write!(
            s,
            r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
            h - bottom,
            w - right,
            h - bottom,
            h - bottom
        );
        let steps = (self.ymax * 10.0).round() as usize;
        for k in 0..=steps {
            let r = k as f64 / 10.0;
            let _ = write!(
                s,
                r##"<line x1="{left}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end">{r:.1}</text>"##,
                self.y(r),
                w - right,
                left - 6.0,
                self.y(r) + 4.0
            );
        }
        for &c in caps {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"#,
                self.x(c),
                h - bottom + 18.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">cache capacity (entries, log scale)</text>"#,
            left + (w - left - right) / 2.0,
            h - 15.0
        );
        let _ = write!(
            s,
            r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">miss ratio</text>"#,
            top + (h - top - bottom) / 2.0,
            top + (h - top - bottom) / 2.0
        );
    }

    /// One line per policy, and its key.
    fn lines(&self, s: &mut String, rows: &[Row], caps: &[usize]) {
        let colors = [
            ("fifo", "#d62728", ""),
            ("lru", "#1f77b4", ""),
            ("clock", "#ff7f0e", ""),
            ("sieve", "#2ca02c", ""),
            ("s3fifo", "#9467bd", ""),
            ("min", "#000000", r#" stroke-dasharray="6 4""#),
        ];
        for (n, (name, color, dash)) in colors.iter().enumerate() {
            let pts: Vec<String> = caps
                .iter()
                .filter_map(|&c| rows.iter().find(|r| r.policy == *name && r.capacity.max(1) == c))
                .map(|r| format!("{:.1},{:.1}", self.x(r.capacity), self.y(r.miss_ratio())))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                pts.join(" ")
            );
            let ly = TOP + 20.0 * n as f64;
            let _ = write!(
                s,
                r#"<line x1="{0}" y1="{ly}" x2="{1}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/><text x="{2}" y="{3}">{name}</text>"#,
                W - RIGHT + 15.0,
                W - RIGHT + 45.0,
                W - RIGHT + 52.0,
                ly + 4.0
            );
        }
    }
}

/// A trace from text: one index a line, or protocol lines (`OP=GET;IND=..`)
/// whose GET and ADD indices are taken in order (other operations are
/// skipped). Blank lines and `#` comments are skipped; anything else is
/// an error naming the line.
pub fn parse_trace(text: &str) -> Result<Vec<i64>, String> {
    let mut out = Vec::new();
    let mut req = Request::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Ok(k) = line.parse::<i64>() {
            out.push(k);
            continue;
        }
        match req.parse(line.as_bytes()) {
            Ok(()) if matches!(req.op, Op::Get | Op::Add) => out.extend_from_slice(&req.ind),
            Ok(()) => {}
            Err((_, p)) => return Err(format!("line {}: not an index nor a request ({p})", n + 1)),
        }
    }
    Ok(out)
}

/// Capacities to try when none are given: from 1% of the distinct keys
/// to all of them, doubling.
pub fn default_capacities(trace: &[i64]) -> Vec<usize> {
    let distinct = trace.iter().collect::<std::collections::HashSet<_>>().len().max(1);
    let mut v = Vec::new();
    let mut c = (distinct / 100).max(1);
    while c < distinct {
        v.push(c);
        c *= 2;
    }
    v.push(distinct);
    v
}

/// The miss ratios as a table: a row per policy, a column per capacity.
pub fn table(rows: &[Row]) -> String {
    let mut caps: Vec<usize> = rows.iter().map(|r| r.capacity).collect();
    caps.dedup();
    let mut s = String::new();
    let _ = write!(s, "{:<8}", "capacity");
    for c in &caps {
        let _ = write!(s, "{c:>9}");
    }
    s.push('\n');
    for name in POLICIES.iter().copied().chain(["min"]) {
        let _ = write!(s, "{name:<8}");
        for c in &caps {
            if let Some(r) = rows.iter().find(|r| r.policy == name && r.capacity == *c) {
                let _ = write!(s, "{:>9.4}", r.miss_ratio());
            }
        }
        s.push('\n');
    }
    s
}

/// The results as one JSON object: `{"requests":N,"results":[{policy,
/// capacity, requests, misses, miss_ratio}, ...]}`.
pub fn json(rows: &[Row]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"policy\":\"{}\",\"capacity\":{},\"requests\":{},\"misses\":{},\"miss_ratio\":{}}}",
                r.policy,
                r.capacity,
                r.requests,
                r.misses,
                r.miss_ratio()
            )
        })
        .collect();
    let requests = rows.first().map_or(0, |r| r.requests);
    format!("{{\"requests\":{requests},\"results\":[{}]}}", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn belady_on_a_textbook_trace() {
        // 7 0 1 2 0 3 0 4 2 3 0 3 2 with 3 frames: 7 misses with MIN
        // (10 with FIFO, 9 with LRU: the classic page-replacement exercise).
        let t = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2];
        assert_eq!(belady(&t, 3), 7);
        assert_eq!(replay(&mut crate::cache::Fifo::new(3), &t), 10);
        assert_eq!(replay(&mut crate::cache::Lru::new(3), &t), 9);
        assert_eq!(belady(&t, 0), t.len() as u64);
    }

    #[test]
    fn traces_parse_from_indices_or_protocol_lines() {
        let t = parse_trace("3\n# c\n\nOP=GET;IND=1,2\nOP=PUT;IND=9;DATA=1\nop=add;ind=4\n5\n").unwrap();
        assert_eq!(t, [3, 1, 2, 4, 5]);
        assert!(parse_trace("x").unwrap_err().starts_with("line 1:"));
    }

    #[test]
    fn scans_are_mixed_in_at_about_the_share_asked() {
        let base: Vec<i64> = (0..200_000).map(|i| i % 50).collect();
        let t = with_scans(&base, 50, 0.2, 7);
        assert_eq!(t.len(), base.len());
        let scanned: Vec<i64> = t.iter().copied().filter(|&k| k >= 50).collect();
        let share = scanned.len() as f64 / t.len() as f64;
        assert!((0.18..0.22).contains(&share), "{share}");
        let distinct: std::collections::HashSet<i64> = scanned.iter().copied().collect();
        assert_eq!(distinct.len(), scanned.len(), "each scanned index read once");
        assert_eq!(t, with_scans(&base, 50, 0.2, 7), "seeded");
    }

    #[test]
    fn the_svg_draws_a_line_per_policy_and_min_dashed() {
        let rows = run(&[1, 2, 1, 3, 1, 4, 2, 5], &[1, 2, 4]);
        let svg = svg(&rows, "a <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), POLICIES.len() + 1);
        assert_eq!(svg.matches("stroke-dasharray").count(), 2, "MIN's line and its legend");
        assert!(svg.contains("a &lt;test&gt;"));
        assert!(!svg.contains("<script"), "self-contained, no script");
    }

    #[test]
    fn output_names_every_policy_and_min() {
        let rows = run(&[1, 2, 1, 3, 1, 4], &[2]);
        assert_eq!(rows.len(), POLICIES.len() + 1);
        let j: serde_json::Value = serde_json::from_str(&json(&rows)).unwrap();
        assert_eq!(j["results"][5]["policy"], "min");
        assert!(table(&rows).contains("s3fifo"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn every_operation_keeps_each_policy_within_its_capacity_and_consistent(
            ops in proptest::collection::vec((0u8..10, -3i64..12), 0..400),
            capacity in 0usize..8,
        ) {
            for name in POLICIES {
                let mut p = by_name(name, capacity).unwrap();
                let mut model: std::collections::HashMap<i64, i64> = Default::default();
                for &(op, k) in &ops {
                    match op {
                        0..=4 => {
                            let got = p.get(k);
                            prop_assert!(got.is_none() || got == model.get(&k).copied(), "{name}: get {k}");
                            if got.is_none() {
                                if let Some((out, _)) = p.insert(k, k * 10) {
                                    model.remove(&out);
                                }
                                if capacity > 0 {
                                    model.insert(k, k * 10);
                                }
                            }
                        }
                        5 | 6 => {
                            if p.update(k, k * 100) {
                                prop_assert!(model.contains_key(&k));
                                model.insert(k, k * 100);
                            }
                        }
                        7 | 8 => {
                            p.remove(k);
                            model.remove(&k);
                        }
                        _ => {
                            p.clear();
                            model.clear();
                        }
                    }
                    prop_assert!(p.len() <= capacity, "{name} holds {} > {capacity}", p.len());
                    let mut held = p.entries();
                    held.sort_unstable();
                    let mut want: Vec<(i64, i64)> = model.iter().map(|(&k, &v)| (k, v)).collect();
                    want.sort_unstable();
                    prop_assert_eq!(held, want, "{}: entries", name);
                }
            }
        }

        #[test]
        fn min_never_misses_more_and_no_policy_outgrows_its_capacity(
            trace in proptest::collection::vec(0i64..20, 0..300),
            capacity in 0usize..12,
        ) {
            let min = belady(&trace, capacity);
            for name in POLICIES {
                let mut p = by_name(name, capacity).unwrap();
                let mut misses = 0;
                for &k in &trace {
                    if p.get(k).is_none() {
                        misses += 1;
                        p.insert(k, k);
                    }
                    prop_assert!(p.len() <= capacity, "{name} holds {} > {capacity}", p.len());
                    prop_assert_eq!(p.entries().len(), p.len());
                }
                prop_assert!(min <= misses, "{} missed {} < MIN {}", name, misses, min);
            }
        }
    }
}

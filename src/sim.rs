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
        // (9 with FIFO, 10 with LRU: the classic page-replacement exercise).
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

//! Where hit or miss is decided, as a pure function of the cache, the
//! writes in flight upstream and the client's own pending requests
//! (docs/architecture.md, "Why the proxy is linearizable"):
//!
//! - Every index cached, and the client has no earlier request still to
//!   take effect upstream: a **hit**, answered at arrival (its instant is
//!   now; whatever is in flight has not been acknowledged, so it may come
//!   after).
//! - Every index cached, the client has earlier requests still upstream,
//!   and no write (PUT, CLR) to any of those indices is in flight: still a
//!   **hit**, decided now, queued behind them. Its instant is just after
//!   theirs: every write that could change these values is sent after
//!   them, so the values are the same then.
//! - Otherwise a **fetch**: the request goes upstream, in order, after
//!   everything sent before it. Cached values of indices with a write in
//!   flight are fetched again (a value from before a write must not be
//!   mixed with one from after it); the rest are kept from the cache.

use crate::cache::{IndexMap, Policy};
use crate::proxy::pending::UpKind;

/// Writes in flight upstream: per index, and CLRs (which write every index).
#[derive(Debug, Default)]
pub struct Writes {
    per_index: IndexMap<u32>,
    clr: u32,
}

impl Writes {
    /// A request was sent upstream.
    pub fn begin(&mut self, kind: &UpKind) {
        match kind {
            UpKind::Put(ind, _) => {
                for &i in ind {
                    *self.per_index.entry(i).or_default() += 1;
                }
            }
            UpKind::Clr => self.clr += 1,
            UpKind::Fetch(_) => {}
        }
    }

    /// A request left the upstream queue (answered or failed).
    pub fn end(&mut self, kind: &UpKind) {
        match kind {
            UpKind::Put(ind, _) => {
                for i in ind {
                    if let Some(n) = self.per_index.get_mut(i) {
                        *n -= 1;
                        if *n == 0 {
                            self.per_index.remove(i);
                        }
                    }
                }
            }
            UpKind::Clr => self.clr = self.clr.saturating_sub(1),
            UpKind::Fetch(_) => {}
        }
    }

    /// True if a write that may change `index` is in flight.
    #[inline]
    pub fn touches(&self, index: i64) -> bool {
        self.clr > 0 || (!self.per_index.is_empty() && self.per_index.contains_key(&index))
    }
}

/// What to do with a GET or ADD.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every value decided now (in `vals`).
    Hit,
    /// Fetch the indices in `missing`; `vals` holds the values kept from
    /// the cache (`None` for the ones to fill from the fetch).
    Fetch,
}

/// Decides a GET or ADD of `ind`. `behind` is true when the client has
/// earlier requests still to take effect upstream. Fills `vals` (one per
/// index asked) and, for a fetch, `missing` (each index once, in the order
/// first asked).
pub fn decide(
    cache: &mut dyn Policy,
    writes: &Writes,
    behind: bool,
    ind: &[i64],
    vals: &mut Vec<Option<i64>>,
    missing: &mut Vec<i64>,
) -> Plan {
    vals.clear();
    missing.clear();
    let mut all_hit = true;
    for &i in ind {
        let v = cache.get(i);
        all_hit &= v.is_some();
        vals.push(v);
    }
    if all_hit && (!behind || !ind.iter().any(|&i| writes.touches(i))) {
        return Plan::Hit;
    }
    for (v, &i) in vals.iter_mut().zip(ind) {
        if v.is_some() && writes.touches(i) {
            *v = None;
        }
    }
    // Each missing index once (a set, not a scan, so a request of
    // thousands of indices stays linear).
    let mut seen: IndexMap<()> = IndexMap::default();
    for (v, &i) in vals.iter().zip(ind) {
        if v.is_none() && seen.insert(i, ()).is_none() {
            missing.push(i);
        }
    }
    Plan::Fetch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Fifo;

    fn cache(entries: &[(i64, i64)]) -> Fifo {
        let mut c = Fifo::new(10);
        for &(i, v) in entries {
            c.insert(i, v);
        }
        c
    }

    fn run(c: &mut Fifo, w: &Writes, behind: bool, ind: &[i64]) -> (Plan, Vec<Option<i64>>, Vec<i64>) {
        let (mut vals, mut missing) = (Vec::new(), Vec::new());
        let plan = decide(c, w, behind, ind, &mut vals, &mut missing);
        (plan, vals, missing)
    }

    #[test]
    fn all_cached_is_a_hit_whatever_is_in_flight_when_nothing_is_owed_before() {
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]));
        let (plan, vals, _) = run(&mut c, &w, false, &[1, 2]);
        assert_eq!(plan, Plan::Hit);
        assert_eq!(vals, [Some(10), Some(20)]);
    }

    #[test]
    fn behind_its_own_pending_request_a_written_index_is_fetched() {
        // A client pipelines PUT 2=5 then GET 2, with 2 cached at 20.
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]));
        let (plan, vals, missing) = run(&mut c, &w, true, &[1, 2]);
        assert_eq!(plan, Plan::Fetch);
        assert_eq!(vals, [Some(10), None], "1 kept from the cache, 2 fetched");
        assert_eq!(missing, [2]);
    }

    #[test]
    fn behind_its_own_pending_request_an_unwritten_index_stays_a_hit() {
        let mut c = cache(&[(1, 10)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]));
        assert_eq!(run(&mut c, &w, true, &[1]).0, Plan::Hit);
        w.end(&UpKind::Put(vec![2], vec![5]));
        w.begin(&UpKind::Clr);
        assert_eq!(run(&mut c, &w, true, &[1]).0, Plan::Fetch, "a CLR writes every index");
        w.end(&UpKind::Clr);
        assert_eq!(run(&mut c, &w, true, &[1]).0, Plan::Hit);
    }

    #[test]
    fn a_miss_fetches_each_missing_index_once_and_refetches_written_ones() {
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![1], vec![7]));
        let (plan, vals, missing) = run(&mut c, &w, false, &[3, 1, 2, 3, 1]);
        assert_eq!(plan, Plan::Fetch);
        assert_eq!(vals, [None, None, Some(20), None, None]);
        assert_eq!(missing, [3, 1]);
    }

    #[test]
    fn writes_count_per_index_until_the_last_one_ends() {
        let mut w = Writes::default();
        let put = UpKind::Put(vec![4, 4], vec![1, 2]);
        w.begin(&put);
        w.begin(&UpKind::Put(vec![4], vec![3]));
        w.end(&put);
        assert!(w.touches(4));
        w.end(&UpKind::Put(vec![4], vec![3]));
        assert!(!w.touches(4));
        w.begin(&UpKind::Fetch(vec![4]));
        assert!(!w.touches(4), "a fetch is not a write");
    }
}

//! Where hit or miss is decided, as a pure function of the cache, the
//! writes in flight upstream and the client's own pending requests
//! (docs/architecture.md, "Why the proxy is linearizable"):
//!
//! - Every index cached, and the client has no earlier request still to
//!   take effect upstream: a **hit**, answered at arrival (its instant is
//!   now; whatever is in flight has not been acknowledged, so it may come
//!   after).
//! - Every index cached, the client has earlier requests still upstream,
//!   and no write (PUT, CLR) to any of those indices that is still in
//!   flight was sent before the latest of them (or is it): still a
//!   **hit**, decided now, queued behind them. Its instant is just after
//!   theirs: every write
//!   that could have changed these values before then has been answered
//!   (and applied to the cache), and the writes still in flight were sent
//!   after them, so they may take effect after this read.
//! - Otherwise a **fetch**: the request goes upstream, in order, after
//!   everything sent before it. Cached values of indices with a write in
//!   flight are fetched again (a value from before a write must not be
//!   mixed with one from after it); the rest are kept from the cache.
//!
//! With other proxies and clients at the same server ([`Mode::Shared`],
//! docs/coherence.md) one more rule: a cached index with a write of ours
//! in flight is never a hit — the server may have applied the write
//! already and another proxy may have read the new value. Without a valid
//! lease ([`Mode::Lapsed`]) nothing is read from the cache.

use crate::cache::{IndexMap, Policy};
use crate::proto::{Op, Problem};
use crate::proxy::lease::Mode;
use crate::proxy::pending::{UpKind, Written};

/// Writes in flight to one index (or CLRs in flight): how many, and a
/// lower bound on the upstream sequence number of the oldest.
#[derive(Debug, Default, Clone, Copy)]
struct InFlight {
    count: u32,
    /// Requests leave the upstream queue in the order sent, so when the
    /// oldest ends the next one was sent after it: `seq + 1` is a safe
    /// lower bound without keeping a list per index.
    oldest: u64,
}

impl InFlight {
    fn begin(&mut self, seq: u64) {
        if self.count == 0 {
            self.oldest = seq;
        }
        self.count += 1;
    }

    /// Returns true when none is left.
    fn end(&mut self, seq: u64) -> bool {
        self.count = self.count.saturating_sub(1);
        self.oldest = self.oldest.max(seq + 1);
        self.count == 0
    }

    fn sent_up_to(&self, seq: u64) -> bool {
        self.count > 0 && self.oldest <= seq
    }
}

/// Writes in flight upstream: per index, and CLRs (which write every
/// index). `seq` is the upstream sequence number of a request: requests
/// are numbered in the order they are sent.
#[derive(Debug, Default)]
pub struct Writes {
    per_index: IndexMap<InFlight>,
    clr: InFlight,
}

impl Writes {
    /// Request `seq` was sent upstream.
    pub fn begin(&mut self, kind: &UpKind, seq: u64) {
        match kind.written() {
            Written::Indices(ind) => {
                for &i in ind {
                    self.per_index.entry(i).or_default().begin(seq);
                }
            }
            Written::All => self.clr.begin(seq),
            Written::Nothing => {}
        }
    }

    /// Request `seq` left the upstream queue (answered or failed).
    pub fn end(&mut self, kind: &UpKind, seq: u64) {
        match kind.written() {
            Written::Indices(ind) => {
                for i in ind {
                    if self.per_index.get_mut(i).is_some_and(|w| w.end(seq)) {
                        self.per_index.remove(i);
                    }
                }
            }
            Written::All => {
                self.clr.end(seq);
            }
            Written::Nothing => {}
        }
    }

    /// True if any write is in flight.
    #[inline]
    pub fn any(&self) -> bool {
        self.clr.count > 0 || !self.per_index.is_empty()
    }

    /// True if a write that may change `index` is in flight.
    #[inline]
    pub fn touches(&self, index: i64) -> bool {
        self.clr.count > 0 || (!self.per_index.is_empty() && self.per_index.contains_key(&index))
    }

    /// True if a write that may change `index` is in flight and is request
    /// `seq` or was sent before it.
    #[inline]
    pub fn touches_up_to(&self, index: i64, seq: u64) -> bool {
        self.clr.sent_up_to(seq) || self.per_index.get(&index).is_some_and(|w| w.sent_up_to(seq))
    }
}

/// Writes that failed on a connection the server may still apply them
/// from (it is being drained): the indices they write may change at any
/// moment, so they are fetched but not cached until it is settled.
#[derive(Debug, Default)]
pub struct Zombies {
    /// A connection is being drained.
    pub draining: bool,
    /// A connection could not be drained: its writes stay possible for good.
    pub pinned: bool,
    /// A CLR is among them: nothing may be cached.
    all: bool,
    indices: IndexMap<()>,
    /// The drained connection is settled, but requests sent before that
    /// (up to this upstream sequence) are still in flight: a fetch among
    /// them may have read a value before a zombie write landed, so the
    /// zombies stand until they are all done.
    settle_after: Option<u64>,
    /// The upstream sequence of the latest request done (answered or
    /// failed).
    last_done: u64,
}

impl Zombies {
    /// A write may still land: it failed on a connection being drained,
    /// or on one that could not be drained (or its upstream, itself a
    /// proxy, could not tell: `pinned`).
    pub fn add(&mut self, kind: &UpKind) {
        match kind.written() {
            Written::Indices(ind) => ind.iter().for_each(|&i| {
                self.indices.insert(i, ());
            }),
            Written::All => self.all = true,
            Written::Nothing => {}
        }
    }

    /// Request `seq` is done (answered or failed; requests end in the order
    /// sent). Call after its answer has been applied to the cache.
    pub fn done(&mut self, seq: u64) {
        self.last_done = seq;
        if self.settle_after.is_some_and(|s| seq >= s) {
            self.clear();
        }
    }

    /// The server is done with the drained connection: the zombies end once
    /// every request sent until now (up to `last_sent`) is done too.
    pub fn settled(&mut self, last_sent: u64) {
        self.draining = false;
        if self.last_done >= last_sent {
            self.clear();
        } else {
            self.settle_after = Some(last_sent);
        }
    }

    fn clear(&mut self) {
        self.settle_after = None;
        if !self.pinned && !self.draining {
            self.all = false;
            self.indices.clear();
        }
    }

    /// Whether a fetched value of `index` may enter the cache.
    pub fn cacheable(&self, index: i64) -> bool {
        !self.all && (self.indices.is_empty() || !self.indices.contains_key(&index))
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

/// Decides a GET or ADD of `ind`. `behind` is the upstream sequence number
/// of the client's latest request still in flight, if it has one (its
/// earlier requests must take effect first). Fills `vals` (one per index
/// asked) and, for a fetch, `missing` (each index once, in the order first
/// asked). `mode` says whether the cache may be read, and whether writes
/// in flight are visible elsewhere.
pub fn decide(
    cache: &mut dyn Policy,
    writes: &Writes,
    behind: Option<u64>,
    mode: Mode,
    ind: &[i64],
    vals: &mut Vec<Option<i64>>,
    missing: &mut Vec<i64>,
) -> Plan {
    vals.clear();
    missing.clear();
    let mut all_hit = true;
    for &i in ind {
        let v = if mode == Mode::Lapsed { None } else { cache.get(i) };
        all_hit &= v.is_some();
        vals.push(v);
    }
    // Shared, a write of ours in flight can hold back at the server the
    // requests sent after it, while our confirmations of invalidations
    // overtake them (docs/coherence.md, "Confirmations overtake"): a cached
    // value is then safe only for a read that takes effect now.
    let held_back = mode == Mode::Shared && writes.any();
    let safe = match (behind, mode) {
        (_, Mode::Shared) if ind.iter().any(|&i| writes.touches(i)) => false,
        (None, _) => true,
        (Some(_), _) if held_back => false,
        (Some(seq), _) => !ind.iter().any(|&i| writes.touches_up_to(i, seq)),
    };
    if all_hit && safe {
        return Plan::Hit;
    }
    for (v, &i) in vals.iter_mut().zip(ind) {
        if v.is_some() && (held_back || writes.touches(i)) {
            *v = None;
        }
    }
    // Each missing index once: a scan of what is kept for a short request
    // (no allocation), a set for a long one (so thousands of indices stay
    // linear).
    if ind.len() <= 16 {
        for (v, &i) in vals.iter().zip(ind) {
            if v.is_none() && !missing.contains(&i) {
                missing.push(i);
            }
        }
    } else {
        let mut seen: IndexMap<()> = IndexMap::default();
        for (v, &i) in vals.iter().zip(ind) {
            if v.is_none() && seen.insert(i, ()).is_none() {
                missing.push(i);
            }
        }
    }
    Plan::Fetch
}

/// For an ADD, the sum (overflow-checked); 0 for a GET.
pub fn sum_if_add(op: Op, vals: &[Option<i64>]) -> Result<i64, Problem> {
    if op != Op::Add {
        return Ok(0);
    }
    vals.iter()
        .try_fold(0i64, |acc, v| acc.checked_add(v.unwrap_or(0)))
        .ok_or(Problem::AddOverflow)
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

    fn run(c: &mut Fifo, w: &Writes, behind: Option<u64>, ind: &[i64]) -> (Plan, Vec<Option<i64>>, Vec<i64>) {
        let (mut vals, mut missing) = (Vec::new(), Vec::new());
        let plan = decide(c, w, behind, Mode::Alone, ind, &mut vals, &mut missing);
        (plan, vals, missing)
    }

    #[test]
    fn a_long_request_fetches_each_missing_index_once_in_the_order_asked() {
        // Over 16 indices the dedup takes a set instead of a scan: the
        // same answer either way.
        let mut c = cache(&[(1, 10), (2, 20)]);
        let w = Writes::default();
        let ind: Vec<i64> = [9, 1, 8, 9, 2, 7, 8, 1].iter().cycle().take(20).copied().collect();
        let (plan, vals, missing) = run(&mut c, &w, None, &ind);
        assert_eq!(plan, Plan::Fetch);
        assert_eq!(missing, [9, 8, 7], "each once, cached ones kept");
        assert_eq!(vals.iter().filter(|v| v.is_some()).count(), 7, "the cached 1s and 2s");
        let short = run(&mut c, &w, None, &ind[..8]);
        assert_eq!(short.2, [9, 8, 7], "a short request: the same");
    }

    #[test]
    fn all_cached_is_a_hit_whatever_is_in_flight_when_nothing_is_owed_before() {
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]), 1);
        let (plan, vals, _) = run(&mut c, &w, None, &[1, 2]);
        assert_eq!(plan, Plan::Hit);
        assert_eq!(vals, [Some(10), Some(20)]);
    }

    #[test]
    fn behind_its_own_pending_request_a_written_index_is_fetched() {
        // A client pipelines PUT 2=5 (upstream request 1) then GET 2, with
        // 2 cached at 20.
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]), 1);
        let (plan, vals, missing) = run(&mut c, &w, Some(1), &[1, 2]);
        assert_eq!(plan, Plan::Fetch);
        assert_eq!(vals, [Some(10), None], "1 kept from the cache, 2 fetched");
        assert_eq!(missing, [2]);
    }

    #[test]
    fn behind_its_own_pending_request_an_unwritten_index_stays_a_hit() {
        let mut c = cache(&[(1, 10)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]), 1);
        assert_eq!(run(&mut c, &w, Some(2), &[1]).0, Plan::Hit);
        w.end(&UpKind::Put(vec![2], vec![5]), 1);
        w.begin(&UpKind::Clr, 3);
        assert_eq!(
            run(&mut c, &w, Some(4), &[1]).0,
            Plan::Fetch,
            "a CLR writes every index"
        );
        w.end(&UpKind::Clr, 3);
        assert_eq!(run(&mut c, &w, Some(4), &[1]).0, Plan::Hit);
    }

    #[test]
    fn a_write_sent_after_the_clients_pending_request_may_come_after_the_hit() {
        // The client's miss is upstream request 5; another client's PUT of
        // 1 is request 6: the hit takes effect between the two.
        let mut c = cache(&[(1, 10)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![1], vec![7]), 6);
        assert_eq!(run(&mut c, &w, Some(5), &[1]).0, Plan::Hit);
        // The same PUT sent before the client's request: fetched again.
        assert_eq!(run(&mut c, &w, Some(7), &[1]).0, Plan::Fetch);
        // Two PUTs of 1 in flight, 6 and 9. When 6 ends, only a lower bound
        // of the oldest is kept (7): safe, if cautious for a request at 8.
        w.begin(&UpKind::Put(vec![1], vec![8]), 9);
        w.end(&UpKind::Put(vec![1], vec![7]), 6);
        assert_eq!(run(&mut c, &w, Some(6), &[1]).0, Plan::Hit);
        assert_eq!(run(&mut c, &w, Some(8), &[1]).0, Plan::Fetch);
        assert_eq!(run(&mut c, &w, Some(9), &[1]).0, Plan::Fetch, "behind its own PUT");
        w.end(&UpKind::Put(vec![1], vec![8]), 9);
        assert_eq!(run(&mut c, &w, Some(10), &[1]).0, Plan::Hit, "no write left");
    }

    #[test]
    fn a_miss_fetches_each_missing_index_once_and_refetches_written_ones() {
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![1], vec![7]), 1);
        let (plan, vals, missing) = run(&mut c, &w, None, &[3, 1, 2, 3, 1]);
        assert_eq!(plan, Plan::Fetch);
        assert_eq!(vals, [None, None, Some(20), None, None]);
        assert_eq!(missing, [3, 1]);
    }

    #[test]
    fn shared_a_write_in_flight_makes_its_index_a_miss_and_lapsed_reads_nothing() {
        let mut c = cache(&[(1, 10), (2, 20)]);
        let mut w = Writes::default();
        w.begin(&UpKind::Put(vec![2], vec![5]), 1);
        let (mut vals, mut missing) = (Vec::new(), Vec::new());
        // Alone, a hit with nothing owed before (the write may come after).
        let p = decide(&mut c, &w, None, Mode::Alone, &[2], &mut vals, &mut missing);
        assert_eq!(p, Plan::Hit);
        // Shared, another proxy may already have read 5: fetch it (and,
        // with a write of ours in flight, 1 as well: see below).
        let p = decide(&mut c, &w, None, Mode::Shared, &[1, 2], &mut vals, &mut missing);
        assert_eq!(
            (p, vals.clone(), missing.clone()),
            (Plan::Fetch, vec![None, None], vec![1, 2])
        );
        assert_eq!(
            decide(&mut c, &w, None, Mode::Shared, &[1], &mut vals, &mut missing),
            Plan::Hit,
            "an index with no write in flight stays a hit"
        );
        let p = decide(&mut c, &w, None, Mode::Lapsed, &[1], &mut vals, &mut missing);
        assert_eq!(
            (p, missing.clone()),
            (Plan::Fetch, vec![1]),
            "no lease: nothing from the cache"
        );
    }

    #[test]
    fn writes_count_per_index_until_the_last_one_ends() {
        let mut w = Writes::default();
        let put = UpKind::Put(vec![4, 4], vec![1, 2]);
        w.begin(&put, 1);
        w.begin(&UpKind::Put(vec![4], vec![3]), 2);
        w.end(&put, 1);
        assert!(w.touches(4));
        w.end(&UpKind::Put(vec![4], vec![3]), 2);
        assert!(!w.touches(4));
        w.begin(&UpKind::Fetch(vec![4]), 3);
        assert!(!w.touches(4), "a fetch is not a write");
    }

    #[test]
    fn a_clr_in_flight_writes_every_index() {
        let mut w = Writes::default();
        assert!(!w.any());
        w.begin(&UpKind::Clr, 7);
        assert!(w.any(), "a CLR is a write");
        assert!(w.touches(123), "of every index");
        assert!(w.touches_up_to(123, 7) && !w.touches_up_to(123, 6));
        w.end(&UpKind::Clr, 7);
        assert!(!w.any() && !w.touches(123));
    }

    #[test]
    fn zombies_end_once_every_request_sent_before_the_settling_is_done() {
        let mut z = Zombies {
            draining: true,
            ..Default::default()
        };
        z.add(&UpKind::Put(vec![3], vec![30]));
        assert!(!z.cacheable(3) && z.cacheable(4));
        z.done(5);
        // The drained connection is settled with requests up to 10 sent:
        // a fetch among 6..=10 may have read 3 before the zombie landed.
        z.settled(10);
        z.done(7);
        assert!(!z.cacheable(3), "request 10 is not done yet");
        z.done(10);
        assert!(z.cacheable(3), "all done: the zombie write has landed or never will");
    }

    #[test]
    fn pinned_zombies_stay_for_good() {
        // A connection that could not be drained: its writes may land at
        // any time, whatever is settled later.
        let mut z = Zombies {
            pinned: true,
            draining: true,
            ..Default::default()
        };
        z.add(&UpKind::Clr);
        z.settled(0);
        z.done(1);
        assert!(!z.cacheable(3));
    }
}

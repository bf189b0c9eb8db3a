//! Reads waiting on the server, and coalescing: a GET or ADD that needs an
//! index another request is already fetching joins that fetch instead of
//! sending its own (one fetch for a crowd). Pure data, no sockets.
//!
//! When joining is safe (docs/architecture.md, "Coalescing"): a fetch `F`
//! of index `i` may be joined while it is in flight, by a read of a
//! connection whose own latest request upstream was sent no later than `F`
//! (the read takes effect just after `F`, so after everything its
//! connection sent before it), that asks every index `F` asks or for
//! which `F` cannot be refused (so it inherits no refusal it would not
//! have got alone), and only until a write that may change `i` (a PUT of
//! `i`, any CLR) is sent: a read that arrives after that write was sent
//! gets a value fetched after it.
//!
//! A read takes all its values from one fetch ([`Reads::plan`] says why).
//! [`Reads::add`] and [`Reads::answered`] keep the general case all the
//! same (a read waiting on several fetches, each value from the one meant
//! for it, answered when the last is back). The common miss, a read of one
//! index, is kept in its fetch's own list instead ([`Reads::add_one`]):
//! answering a pass's fetch then walks one list in order, where a read in
//! the slab costs a chase to its entry and to each of its lists.
//!
//! ```text
//!   fetch #7 GET 4      readers [A, B, C]     joinable {4 → #7}
//!   B's PUT 4 sent      joinable {}           (D's GET 4 now sends #9)
//!   fetch #9 GET 4      readers [D]           joinable {4 → #9}
//! ```

mod join;

use crate::cache::IndexMap;
use crate::proto::Op;
use crate::proxy::pending::Waiter;
use crate::proxy::pool::Pool;
use slab::Slab;
use std::collections::hash_map::Entry;
use std::collections::VecDeque;

/// A GET or ADD waiting for values from one or more fetches.
#[derive(Debug)]
pub struct Read {
    /// Whose slot its reply fills.
    pub waiter: Waiter,
    /// GET or ADD.
    pub op: Op,
    /// The indices asked, in order.
    pub ind: Vec<i64>,
    /// Their values: from the cache at arrival, or `None` until a fetch
    /// brings them.
    pub vals: Vec<Option<i64>>,
    /// Where each value still to come comes from, sorted by fetch. A value
    /// of the same index in another fetch is not it: an older fetch may
    /// hold the index from before a write.
    sources: Vec<Source>,
    /// Fetches still to come back.
    waiting_on: u32,
    /// Which read this is: its slab key may be reused by a later read once
    /// it is over, while a fetch it waited on still names it.
    id: u64,
}

impl Read {
    /// A read of `ind` with the values decided at arrival.
    pub fn new(waiter: Waiter, op: Op, ind: Vec<i64>, vals: Vec<Option<i64>>) -> Read {
        Read {
            waiter,
            op,
            ind,
            vals,
            sources: Vec::new(),
            waiting_on: 0,
            id: 0,
        }
    }
}

/// A read over, as [`Reads::answered`] and [`Reads::failed`] hand it
/// out: whose reply it is, and what it asked and got.
#[derive(Debug)]
pub struct Done<'a> {
    /// Whose slot its reply fills.
    pub waiter: Waiter,
    /// GET or ADD.
    pub op: Op,
    /// The indices asked, in order.
    pub ind: &'a [i64],
    /// Their values (`None` for those a failed fetch did not bring).
    pub vals: &'a [Option<i64>],
}

impl Read {
    fn done(&self) -> Done<'_> {
        Done {
            waiter: self.waiter,
            op: self.op,
            ind: &self.ind,
            vals: &self.vals,
        }
    }
}

/// A read of one index that missed: it waits on one fetch, for the value
/// at `at`, and that fetch's list is all it needs.
#[derive(Debug, Clone, Copy)]
struct One {
    waiter: Waiter,
    op: Op,
    index: i64,
    at: u32,
}

impl One {
    fn done<'a>(&'a self, val: &'a [Option<i64>; 1]) -> Done<'a> {
        Done {
            waiter: self.waiter,
            op: self.op,
            ind: std::slice::from_ref(&self.index),
            vals: val,
        }
    }
}

/// Where one value of a read comes from: fetch `seq`'s value at `at`, for
/// the read's position `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Source {
    seq: u64,
    at: u32,
    to: u32,
}

/// A read as a fetch names it: its slab key, and its id (the key alone
/// may be a later read's by the time the fetch comes back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadRef {
    key: usize,
    id: u64,
}

/// A read waiting on a fetch, as the fetch lists it: a read of one index
/// whole, any other by its name in the slab. One list, in the order the
/// reads came, so that a client's replies to one fetch are made in the
/// order it sent them (one made early would wait in a list of its own).
#[derive(Debug, Clone, Copy)]
enum Waiting {
    One(One),
    Read(ReadRef),
}

/// A fetch in flight.
#[derive(Debug)]
struct Fetch {
    /// Its upstream sequence number.
    seq: u64,
    /// The reads waiting on it, in the order they came (a list from the
    /// spares: a fetch that the reads of a pass grew has hundreds).
    readers: Vec<Waiting>,
    /// Its indices, kept when it may be refused for one of them (see
    /// [`Reads::plan`]): more than one, not all known to the server.
    ind: Option<Vec<i64>>,
}

/// The reads in flight and the fetches they wait on.
///
/// Fetches are sent in the order of their sequence numbers and the
/// upstream answers in order, so the fetches in flight are a queue sorted
/// by sequence: the one answered is almost always at its front, and any
/// other is found by binary search. A read of one index lives in its
/// fetch's list, any other in a slab. The miss path hashes nothing but the
/// index of [`Reads::joinable`].
#[derive(Debug)]
pub struct Reads {
    reads: Slab<Read>,
    next_id: u64,
    /// The fetches in flight, by increasing sequence.
    fetches: VecDeque<Fetch>,
    /// Index → the in-flight fetch of it a read may still join, and the
    /// index's place in it.
    joinable: IndexMap<(u64, u32)>,
    /// Reads that joined a fetch in flight (STS `COALESCED`).
    pub coalesced: u64,
    /// Lists given back by finished reads and requests, reused by the next
    /// ones: a warm miss path allocates nothing (`pool.rs`). Index lists
    /// (a read's, a write's), 256 long ones or 4096 short ones.
    pub ind: Pool<i64>,
    /// A read's value lists, as many.
    pub vals: Pool<Option<i64>>,
    sources: Pool<Source>,
    /// Fetch lists and lists of a fetch's readers, kept apart (the reads of
    /// a pass grow them to hundreds of entries): more than the fetches in
    /// flight at once at full load (one or two a loop pass).
    pub fetch_lists: Pool<i64>,
    readers: Pool<Waiting>,
    /// Reads of one index waiting, in the fetches' lists.
    ones_waiting: usize,
}

/// A read's lists kept at most: of any length up to 4096, and more when
/// short, enough for every fetch of a full pipeline of misses in flight at
/// once (50 clients × 16 and more).
const SPARES: usize = 256;
const SMALL_SPARES: usize = 4096;
/// Fetch and reader lists kept at most.
const FETCH_SPARES: usize = 64;

impl Default for Reads {
    fn default() -> Reads {
        Reads {
            reads: Slab::new(),
            next_id: 0,
            fetches: VecDeque::new(),
            joinable: IndexMap::default(),
            coalesced: 0,
            ind: Pool::new(SPARES, SMALL_SPARES),
            vals: Pool::new(SPARES, SMALL_SPARES),
            sources: Pool::new(SPARES, SMALL_SPARES),
            fetch_lists: Pool::new(FETCH_SPARES, FETCH_SPARES),
            readers: Pool::new(FETCH_SPARES, FETCH_SPARES),
            ones_waiting: 0,
        }
    }
}

impl Reads {
    /// Where fetch `seq` is in the queue, if in flight.
    /// (An answer is for the oldest, almost always; a read joins or grows
    /// the newest, almost always.)
    fn position(&self, seq: u64) -> Option<usize> {
        match (self.fetches.front(), self.fetches.back()) {
            (Some(f), _) if f.seq == seq => Some(0),
            (_, Some(b)) if b.seq == seq => Some(self.fetches.len() - 1),
            _ => self.fetches.binary_search_by_key(&seq, |f| f.seq).ok(),
        }
    }

    /// Registers `read`, each of its missing values coming from the
    /// fetch [`Reads::joinable`] names for its index now: the fetches it
    /// joined, or the one it sent or grew (already `fetch_sent` or
    /// `fetch_grew`). `joined_any` counts it as coalesced.
    pub fn add(&mut self, mut read: Read, joined_any: bool) {
        read.id = self.next_id;
        self.next_id += 1;
        read.waiting_on = 0;
        let mut sources = self.sources.take();
        for (to, (v, i)) in read.vals.iter().zip(&read.ind).enumerate() {
            if v.is_none() {
                if let Some(&(seq, at)) = self.joinable.get(i) {
                    sources.push(Source { seq, at, to: to as u32 });
                }
            }
        }
        sources.sort_unstable();
        let me = ReadRef {
            key: self.reads.vacant_key(),
            id: read.id,
        };
        let mut last = None;
        for s in &sources {
            if last != Some(s.seq) {
                last = Some(s.seq);
                if let Some(p) = self.position(s.seq) {
                    self.fetches[p].readers.push(Waiting::Read(me));
                    read.waiting_on += 1;
                }
            }
        }
        read.sources = sources;
        if joined_any {
            self.coalesced += 1;
        }
        let key = self.reads.insert(read);
        debug_assert_eq!(key, me.key);
    }

    /// Registers a read of the one index `index`, which missed: like
    /// [`Reads::add`], its value comes from the fetch
    /// [`Reads::joinable`] names for it now, but it is kept in that
    /// fetch's list, not in the slab. `place`: that fetch and the
    /// index's place in it, when the caller knows them (it has just sent
    /// or grown the fetch: one hash lookup fewer).
    pub fn add_one(&mut self, waiter: Waiter, op: Op, index: i64, place: Option<(u64, u32)>, joined_any: bool) {
        debug_assert!(place.is_none() || place.as_ref() == self.joinable.get(&index));
        let place = place.or_else(|| self.joinable.get(&index).copied());
        let place = place.and_then(|(seq, at)| Some((self.position(seq)?, at)));
        let Some((p, at)) = place else {
            // (Not reached: the caller has just sent, grown or joined a
            // fetch of `index`.) The general read does what it always did.
            debug_assert!(false, "a read of {index} with no fetch of it");
            return self.add(Read::new(waiter, op, vec![index], vec![None]), joined_any);
        };
        let one = One { waiter, op, index, at };
        self.fetches[p].readers.push(Waiting::One(one));
        self.ones_waiting += 1;
        if joined_any {
            self.coalesced += 1;
        }
    }

    /// Gives a finished read's lists back.
    fn give_read(&mut self, read: Read) {
        self.ind.give(read.ind);
        self.vals.give(read.vals);
        self.sources.give(read.sources);
    }

    /// Fetch `seq` of `ind` was sent: those indices may be joined (a later
    /// fetch of an index replaces an earlier one: it is the newer view).
    /// `known`: every index is one the server has answered on this
    /// connection (then no index can get the fetch refused). Fetches are
    /// sent in the order of their sequence numbers.
    pub fn fetch_sent(&mut self, seq: u64, ind: &[i64], known: bool) {
        for (at, &i) in ind.iter().enumerate() {
            self.joinable.insert(i, (seq, at as u32));
        }
        debug_assert!(self.fetches.back().is_none_or(|f| f.seq < seq));
        let ind = (ind.len() > 1 && !known).then(|| self.ind.copy(ind));
        let readers = self.readers.take();
        self.fetches.push_back(Fetch { seq, readers, ind });
    }

    /// Fetch `seq`, not on the wire yet, grew by `ind` from its place
    /// `from` on (every index known to the server: a fetch grows only
    /// then).
    pub fn fetch_grew(&mut self, seq: u64, from: usize, ind: &[i64]) {
        for (k, &i) in ind.iter().enumerate() {
            self.joinable.insert(i, (seq, (from + k) as u32));
        }
    }

    /// Fetch `seq` of `ind` answered `data`: fills every read waiting on it
    /// and hands over (to `done`) each read that now has all its values.
    pub fn answered(&mut self, seq: u64, ind: &[i64], data: &[i64], mut done: impl FnMut(&Done)) {
        let Some(fetch) = self.fetch_over(seq, ind) else { return };
        for &w in &fetch.readers {
            let r = match w {
                Waiting::One(one) => {
                    self.ones_waiting -= 1;
                    done(&one.done(&[data.get(one.at as usize).copied()]));
                    continue;
                }
                Waiting::Read(r) => r,
            };
            let Some(read) = self.reads.get_mut(r.key).filter(|read| read.id == r.id) else {
                continue; // ended already (another of its fetches failed)
            };
            // The places this fetch fills: one run of the sorted sources.
            let first = read.sources.partition_point(|s| s.seq < seq);
            for s in read.sources[first..].iter().take_while(|s| s.seq == seq) {
                if let Some(slot) = read.vals.get_mut(s.to as usize) {
                    *slot = data.get(s.at as usize).copied();
                }
            }
            read.waiting_on -= 1;
            if read.waiting_on == 0 {
                let read = self.reads.remove(r.key);
                done(&read.done());
                self.give_read(read);
            }
        }
        self.readers.give(fetch.readers);
    }

    /// Fetch `seq` of `ind` failed (or was refused by the server): every
    /// read waiting on it is over, handed to `failed` (once, even if it
    /// waited on other fetches too).
    pub fn failed(&mut self, seq: u64, ind: &[i64], mut failed: impl FnMut(&Done)) {
        let Some(fetch) = self.fetch_over(seq, ind) else { return };
        for &w in &fetch.readers {
            match w {
                Waiting::One(one) => {
                    self.ones_waiting -= 1;
                    failed(&one.done(&[None]));
                }
                Waiting::Read(r) => {
                    if self.reads.get(r.key).is_some_and(|read| read.id == r.id) {
                        let read = self.reads.remove(r.key);
                        failed(&read.done());
                        self.give_read(read);
                    }
                }
            }
        }
        self.readers.give(fetch.readers);
    }

    /// Fetch `seq` of `ind` is over: no longer joinable, out of the queue
    /// (its list of indices given back); returns it.
    fn fetch_over(&mut self, seq: u64, ind: &[i64]) -> Option<Fetch> {
        for &i in ind {
            // One hash lookup per index: the entry, removed only if still
            // this fetch's (a later fetch of the index replaced it).
            if let Entry::Occupied(e) = self.joinable.entry(i) {
                if e.get().0 == seq {
                    e.remove();
                }
            }
        }
        let fetch = match self.position(seq) {
            Some(0) => self.fetches.pop_front(),
            Some(p) => self.fetches.remove(p),
            None => None,
        };
        let mut fetch = fetch?;
        if let Some(v) = fetch.ind.take() {
            self.ind.give(v);
        }
        Some(fetch)
    }

    /// True when no read waits.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.ones_waiting == 0
    }

    /// Reads waiting on fetches (STS `READS_WAITING`).
    pub fn len(&self) -> usize {
        self.reads.len() + self.ones_waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::pending::UpKind;

    pub(super) fn w(key: usize) -> Waiter {
        Waiter { key, gen: 1, seq: 0 }
    }

    pub(super) fn plan(r: &Reads, missing: &[i64], behind: Option<u64>) -> (Vec<i64>, Vec<u64>) {
        let (mut f, mut j) = (Vec::new(), Vec::new());
        // (The newest fetch taken as the open one, which the read may both
        // join and grow.)
        let open = r.fetches.back().map(|f| f.seq);
        r.plan(missing, missing, behind, Some(0), open, &mut f, &mut j);
        (f, j)
    }

    #[test]
    fn a_crowd_of_misses_shares_one_fetch() {
        let mut r = Reads::default();
        // A misses 4: fetch #7.
        assert_eq!(plan(&r, &[4], None), (vec![4], vec![]));
        r.fetch_sent(7, &[4], false);
        r.add(Read::new(w(1), Op::Get, vec![4], vec![None]), false);
        // B and C miss 4 too: they join #7.
        for k in 2..4 {
            assert_eq!(plan(&r, &[4], None), (vec![], vec![7]));
            r.add(Read::new(w(k), Op::Get, vec![4], vec![None]), true);
        }
        assert_eq!(r.coalesced, 2);
        assert!(!r.is_empty());
        let mut got = Vec::new();
        r.answered(7, &[4], &[44], |read| got.push((read.waiter.key, read.vals.to_vec())));
        got.sort_by_key(|g| g.0);
        assert_eq!(got, vec![(1, vec![Some(44)]), (2, vec![Some(44)]), (3, vec![Some(44)])]);
        assert!(r.is_empty());
        // Fetch over: 4 is not joinable any more.
        assert_eq!(plan(&r, &[4], None), (vec![4], vec![]));
    }

    #[test]
    fn a_read_of_two_fetches_is_answered_when_both_are_back() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        r.fetch_sent(8, &[5], false);
        r.add(
            Read::new(w(1), Op::Add, vec![4, 5, 6], vec![None, None, Some(60)]),
            true,
        );
        let mut done = Vec::new();
        r.answered(7, &[4], &[40], |read| done.push(read.vals.to_vec()));
        assert!(done.is_empty(), "still waiting on #8");
        r.answered(8, &[5], &[50], |read| done.push(read.vals.to_vec()));
        assert_eq!(done, vec![vec![Some(40), Some(50), Some(60)]]);
    }

    #[test]
    fn a_value_comes_only_from_the_fetch_meant_for_it() {
        // #7 fetched 4 and 5; a PUT of 5 was sent; a read of 4 and 5 joins
        // #7 for 4 and sends #9 for 5. #7's (older) 5 must not be used.
        let mut r = Reads::default();
        r.fetch_sent(7, &[4, 5], false);
        r.write_sent(&UpKind::Put(vec![5], vec![55]));
        let (to_fetch, joined) = plan(&r, &[4, 5], None);
        assert_eq!((to_fetch.clone(), joined), (vec![5], vec![7]));
        r.fetch_sent(9, &to_fetch, false);
        r.add(Read::new(w(1), Op::Get, vec![4, 5], vec![None, None]), true);
        let mut done = Vec::new();
        r.answered(7, &[4, 5], &[40, 0], |read| done.push(read.vals.to_vec()));
        r.answered(9, &[5], &[55], |read| done.push(read.vals.to_vec()));
        assert_eq!(done, vec![vec![Some(40), Some(55)]]);
    }

    #[test]
    fn a_read_joining_many_fetches_stays_linear() {
        // 20,000 single-index fetches, one read of all of them: planning and
        // answering must not scan the read once per fetch (this would take
        // minutes if it did; it takes milliseconds).
        let n = 20_000;
        let mut r = Reads::default();
        for i in 0..n {
            r.fetch_sent(i as u64 + 1, &[i], false);
        }
        let ind: Vec<i64> = (0..n).collect();
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&ind, &ind, None, Some(0), None, &mut f, &mut j);
        assert_eq!(
            (f.len(), j.len()),
            (n as usize, 0),
            "one fetch of its own, not 20,000 joined"
        );
        // Waiting on all of them all the same (as `add` allows), answering
        // stays linear.
        r.add(Read::new(w(1), Op::Get, ind.clone(), vec![None; n as usize]), true);
        let mut done = Vec::new();
        for i in 0..n {
            r.answered(i as u64 + 1, &[i], &[i * 10], |read| done.push(read.vals.to_vec()));
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0][n as usize - 1], Some((n - 1) * 10));
    }

    #[test]
    fn a_failed_fetch_ends_its_readers_once() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        r.fetch_sent(8, &[5], false);
        r.add(Read::new(w(1), Op::Get, vec![4, 5], vec![None, None]), false);
        r.add(Read::new(w(2), Op::Get, vec![5], vec![None]), true);
        let mut failed = Vec::new();
        assert!(!r.is_empty());
        r.failed(7, &[4], |read| failed.push(read.waiter.key));
        r.failed(8, &[5], |read| failed.push(read.waiter.key));
        assert_eq!(failed, vec![1, 2]);
        assert!(r.is_empty());
    }

    #[test]
    fn reads_that_grew_one_fetch_each_get_their_own_places() {
        // A: GET 4 opens fetch #7; B: GET 6,8,4 grows it by 6,8 and joins
        // 4; C: ADD 5,6 grows it by 5 and joins 6. One answer, three
        // replies.
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], true);
        r.add(Read::new(w(1), Op::Get, vec![4], vec![None]), false);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[6, 8, 4], &[6, 8, 4], Some(7), Some(0), Some(7), &mut f, &mut j);
        assert_eq!((f, j), (vec![6, 8], vec![7]));
        r.fetch_grew(7, 1, &[6, 8]);
        r.add(Read::new(w(2), Op::Get, vec![6, 8, 4], vec![None; 3]), true);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[5, 6], &[5, 6], Some(7), Some(0), Some(7), &mut f, &mut j);
        assert_eq!((f, j), (vec![5], vec![7]), "a known fetch is joined for a part");
        r.fetch_grew(7, 3, &[5]);
        r.add(Read::new(w(3), Op::Add, vec![5, 6], vec![None, None]), true);
        // D: GET 9 grows it by 9, at its place 4, given.
        r.fetch_grew(7, 4, &[9]);
        r.add_one(w(4), Op::Get, 9, Some((7, 4)), false);
        assert_eq!(r.len(), 4);
        let mut done = Vec::new();
        r.answered(7, &[4, 6, 8, 5, 9], &[40, 60, 80, 50, 90], |read| {
            done.push((read.waiter.key, read.vals.to_vec()))
        });
        assert_eq!(
            done,
            [
                (1, vec![Some(40)]),
                (2, vec![Some(60), Some(80), Some(40)]),
                (3, vec![Some(50), Some(60)]),
                (4, vec![Some(90)])
            ]
        );
        assert!(r.is_empty() && r.fetches.is_empty() && r.joinable.is_empty());
    }

    #[test]
    fn a_fetchs_list_of_readers_is_reused() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        for k in 0..10 {
            r.add(Read::new(w(k), Op::Get, vec![4], vec![None]), k > 0);
        }
        r.answered(7, &[4], &[40], |_| {});
        assert_eq!(r.readers.len(), 1, "given back");
        r.fetch_sent(8, &[4], false);
        assert!(
            r.readers.is_empty() && r.fetches[0].readers.capacity() >= 10,
            "taken again"
        );
        for _ in 0..FETCH_SPARES + 5 {
            r.readers.give(Vec::with_capacity(4));
        }
        r.readers.give(Vec::with_capacity(4097));
        assert_eq!(r.readers.len(), FETCH_SPARES);
        let mut r = Reads::default();
        r.readers.give(Vec::with_capacity(4096));
        r.readers.give(Vec::with_capacity(4097));
        assert_eq!(r.readers.len(), 1, "a list longer than 4096 is freed");
    }

    #[test]
    fn a_read_ended_by_a_failed_fetch_is_not_touched_by_its_other_fetch() {
        // Read 1 waits on #7 and #8; #7 fails (it is over); its slab key is
        // reused by read 2, on #8 and #9: #8's answer counts once for read
        // 2 (not again through read 1's stale name), which waits for #9.
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        r.fetch_sent(8, &[5], false);
        r.add(Read::new(w(1), Op::Get, vec![4, 5], vec![None, None]), false);
        let mut failed = Vec::new();
        r.failed(7, &[4], |read| failed.push(read.waiter.key));
        assert_eq!(failed, [1]);
        r.fetch_sent(9, &[6], false);
        r.add(Read::new(w(2), Op::Get, vec![5, 6], vec![None, None]), true);
        let mut done = Vec::new();
        r.answered(8, &[5], &[50], |read| done.push((read.waiter.key, read.vals.to_vec())));
        assert!(done.is_empty(), "read 2 still waits for #9");
        r.answered(9, &[6], &[60], |read| done.push((read.waiter.key, read.vals.to_vec())));
        assert_eq!(done, [(2, vec![Some(50), Some(60)])]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_read_of_a_fetch_in_the_middle_of_the_queue_waits_on_that_one() {
        // #7, #8, #9 in flight: reads of 5 (one index, and two indices
        // with a cached one) wait on #8, neither the oldest nor the newest.
        let mut r = Reads::default();
        for (seq, i) in [(7, 4), (8, 5), (9, 6)] {
            r.fetch_sent(seq, &[i], false);
        }
        r.add_one(w(1), Op::Get, 5, None, true);
        r.add(Read::new(w(2), Op::Get, vec![5, 1], vec![None, Some(10)]), true);
        let mut done = Vec::new();
        r.answered(9, &[6], &[60], |d| done.push((d.waiter.key, d.vals.to_vec())));
        r.answered(7, &[4], &[40], |d| done.push((d.waiter.key, d.vals.to_vec())));
        assert!(done.is_empty(), "neither is #7's or #9's");
        r.answered(8, &[5], &[50], |d| done.push((d.waiter.key, d.vals.to_vec())));
        assert_eq!(done, [(1, vec![Some(50)]), (2, vec![Some(50), Some(10)])]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_fetchs_reads_are_answered_in_the_order_they_came() {
        // One client pipelines GET 4, GET 4,5, GET 5 into fetch #7 (slots
        // 0, 1, 2): their replies must be made in that order, so each goes
        // straight into the client's output (one out of order waits in a
        // list of its own).
        let mut r = Reads::default();
        r.fetch_sent(7, &[4, 5], true);
        let slot = |seq| Waiter { key: 1, gen: 1, seq };
        r.add_one(slot(0), Op::Get, 4, Some((7, 0)), false);
        r.add(Read::new(slot(1), Op::Get, vec![4, 5], vec![None, None]), true);
        r.add_one(slot(2), Op::Get, 5, Some((7, 1)), true);
        let mut order = Vec::new();
        r.answered(7, &[4, 5], &[40, 50], |d| order.push((d.waiter.seq, d.vals.to_vec())));
        assert_eq!(
            order,
            [(0, vec![Some(40)]), (1, vec![Some(40), Some(50)]), (2, vec![Some(50)])]
        );
    }

    #[test]
    fn reads_of_one_index_wait_in_their_fetchs_list_beside_the_others() {
        // #7 fetches 4 and 5 (known to the server): A reads 4, B reads 5
        // (one index each), C reads 5 and 4 (in the slab).
        let mut r = Reads::default();
        r.fetch_sent(7, &[4, 5], true);
        r.add_one(w(1), Op::Get, 4, None, false);
        r.add_one(w(2), Op::Add, 5, Some((7, 1)), true);
        r.add(Read::new(w(3), Op::Get, vec![5, 4], vec![None, None]), true);
        assert_eq!((r.len(), r.coalesced), (3, 2));
        assert_eq!(r.reads.len(), 1, "no slab entry for A and B");
        let mut done = Vec::new();
        r.answered(7, &[4, 5], &[40, 50], |d| {
            done.push((d.waiter.key, d.op, d.ind.to_vec(), d.vals.to_vec()))
        });
        assert_eq!(
            done,
            [
                (1, Op::Get, vec![4], vec![Some(40)]),
                (2, Op::Add, vec![5], vec![Some(50)]),
                (3, Op::Get, vec![5, 4], vec![Some(50), Some(40)]),
            ]
        );
        assert!(r.is_empty() && r.fetches.is_empty());
        assert_eq!(r.readers.len(), 1, "the list given back");
        r.fetch_sent(8, &[6], false);
        assert!(
            r.readers.is_empty() && r.fetches[0].readers.capacity() >= 3,
            "and taken again"
        );
    }

    #[test]
    fn a_read_of_one_index_waits_on_the_fetch_joinable_names_and_fails_with_it() {
        // #7 has 4; a PUT of 4 was sent; #9 fetches 4 again: a read of 4
        // now waits on #9, not #7.
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        r.write_sent(&UpKind::Put(vec![4], vec![1]));
        r.fetch_sent(9, &[4], false);
        r.add_one(w(1), Op::Get, 4, None, false);
        let mut done = Vec::new();
        r.answered(7, &[4], &[0], |d| done.push(d.vals.to_vec()));
        assert!(done.is_empty(), "not from the fetch before the write");
        assert_eq!(r.len(), 1);
        let mut failed = Vec::new();
        r.failed(9, &[4], |d| failed.push((d.waiter.key, d.op, d.ind.to_vec())));
        assert_eq!(failed, [(1, Op::Get, vec![4])]);
        assert!(r.is_empty());
    }

    #[test]
    fn lists_are_copied_into_spares() {
        let mut r = Reads::default();
        r.ind.give(Vec::with_capacity(50));
        let ind = r.ind.copy(&[1, 2, 3]);
        assert_eq!(
            (ind.as_slice(), ind.capacity()),
            (&[1, 2, 3][..], 50),
            "the spare, filled"
        );
        let vals = r.vals.copy(&[Some(1), None]);
        assert_eq!(vals, [Some(1), None]);
        r.give_read(Read::new(w(1), Op::Get, ind, vals));
        let again = r.vals.copy(&[None]);
        assert!(again == [None] && again.capacity() >= 2, "the read's list, reused");
    }

    #[test]
    fn fetch_lists_are_kept_apart_up_to_64_of_4096_entries() {
        let mut r = Reads::default();
        for _ in 0..FETCH_SPARES + 5 {
            r.fetch_lists.give(Vec::with_capacity(400));
        }
        r.fetch_lists.give(Vec::with_capacity(4097));
        assert_eq!((r.fetch_lists.len(), r.ind.len()), (FETCH_SPARES, 0));
        let v = r.fetch_lists.copy(&[1, 2]);
        assert!(v.capacity() >= 400 && v == [1, 2], "a kept list is reused");
    }

    #[test]
    fn spare_lists_are_kept_up_to_256_and_4096_entries_long_and_more_when_short() {
        // The pools bound what a burst of big reads leaves allocated.
        let mut r = Reads::default();
        for _ in 0..SPARES + 10 {
            r.ind.give(Vec::with_capacity(100));
        }
        assert_eq!(r.ind.len(), SPARES);
        // Short lists: as many as a full pipeline of misses takes.
        let mut r = Reads::default();
        for _ in 0..SMALL_SPARES + 10 {
            r.ind.give(Vec::with_capacity(64));
        }
        assert_eq!(r.ind.len(), SMALL_SPARES);
        let mut r = Reads::default();
        r.ind.give(Vec::with_capacity(4096));
        r.ind.give(Vec::with_capacity(4097));
        assert_eq!(r.ind.len(), 1, "a list longer than 4096 is freed");
        for cap in [4096, 4097] {
            let mut read = Read::new(w(1), Op::Get, Vec::new(), Vec::with_capacity(cap));
            read.ind = Vec::with_capacity(cap);
            r.give_read(read);
        }
        assert_eq!((r.ind.len(), r.vals.len()), (2, 1));
        let mut r = Reads::default();
        for _ in 0..SPARES + 10 {
            r.give_read(Read::new(w(1), Op::Get, Vec::with_capacity(65), vec![None; 65]));
        }
        assert_eq!((r.ind.len(), r.vals.len()), (SPARES, SPARES));
    }
}

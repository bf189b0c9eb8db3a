//! Linearizability of a history over the whole table: a Wing–Gong search
//! with memoisation (as Lowe's and Porcupine's), with the rule that one
//! connection's operations take effect in the order sent. Pure code.
//!
//! The search places operations one at a time. A connection's next
//! operation may go next if it was sent before every operation still to
//! place was answered (real time); an answered one must match the table
//! as the order so far leaves it; one whose outcome is unknown or an
//! error may be applied or skipped. Reads that failed explain nothing and
//! are left out. A state of the search is the table and how far each
//! connection has got; a state seen before is not searched again (its
//! key is a 128-bit hash of both, kept up to date move by move).
//!
//! Because a connection's operations go in order, the choices at each
//! step are only the connections' next operations: a history of a
//! million operations from a few dozen connections at a time is searched
//! in about as many steps, unless it is wrong (then the search may need
//! its whole budget to say so, and says which operation it could not
//! place).

use super::{Op, Outcome, Record};
use std::collections::{BTreeSet, HashSet};

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One order explains every result.
    Linearizable,
    /// No order does: the operation the search could get no further than,
    /// and the operations around it (indices into the history).
    Violation {
        /// The answered operation no order could place.
        stuck: usize,
        /// The operations that overlap the failing stretch, by call time.
        window: Vec<usize>,
    },
    /// The budget ran out first: not a pass.
    Undecided,
}

/// What the search did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// Moves tried.
    pub steps: u64,
    /// Operations checked (failed reads left out).
    pub checked: usize,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: a good spread from any input.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A 128-bit key part for (a, b): two independent 64-bit hashes.
fn key(a: u64, b: u64, salt: u64) -> u128 {
    let lo = mix(a.wrapping_mul(0x100_0000_01B3) ^ mix(b ^ salt));
    let hi = mix(lo ^ a.rotate_left(32) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ salt.rotate_left(7));
    ((hi as u128) << 64) | lo as u128
}

/// A move: place connection `c`'s next operation, applied or skipped.
#[derive(Debug, Clone, Copy)]
struct Move {
    conn: usize,
    apply: bool,
}

/// A node of the search: its moves (in `moves[start..end]`), the next to
/// try, and how to undo the move that led to it.
struct Frame {
    start: usize,
    end: usize,
    next: usize,
    /// The move that led here (`None` at the root), and where its undo
    /// records start.
    came_by: Option<(Move, usize)>,
}

struct Search<'a> {
    rec: &'a [Record],
    /// Per connection: its operations in order (indices into `rec`).
    conns: Vec<Vec<usize>>,
    /// Per connection and position: the next position holding an
    /// answered operation (or the length).
    next_required: Vec<Vec<usize>>,
    prefix: Vec<usize>,
    state: Vec<i64>,
    hash: u128,
    /// (answer time of its first unplaced answered operation, connection).
    rets: BTreeSet<(u64, usize)>,
    /// (call time of its next operation, connection).
    calls: BTreeSet<(u64, usize)>,
    /// (connection, cell, old value) for undo.
    undo: Vec<(usize, i64)>,
    seen: HashSet<u128>,
    placed: usize,
    /// Values some answered read saw: a write of one of them must have
    /// been applied, so its "apply" is tried first.
    observed: HashSet<i64>,
    /// Per (cell, value): answered GETs still to place that read it.
    readers: std::collections::HashMap<(usize, i64), u32>,
    /// CLRs still to place (a 0 may come back).
    clears_left: usize,
    /// Per record: an answered PUT nobody saw, which may go as soon as
    /// it hides nothing wanted.
    free: Vec<bool>,
}

impl<'a> Search<'a> {
    fn required(&self, i: usize) -> bool {
        matches!(self.rec[i].outcome, Outcome::Ok(_))
    }

    fn ret(&self, i: usize) -> u64 {
        if self.required(i) {
            self.rec[i].ret.unwrap_or(u64::MAX)
        } else {
            u64::MAX
        }
    }

    /// Puts connection `c`'s entries in the index sets for its position.
    fn index(&mut self, c: usize, add: bool) {
        let p = self.prefix[c];
        let ops = &self.conns[c];
        let r = self.next_required[c][p];
        let ret = (r < ops.len()).then(|| self.ret(ops[r]));
        let call = (p < ops.len()).then(|| self.rec[ops[p]].call);
        if add {
            ret.map(|t| self.rets.insert((t, c)));
            call.map(|t| self.calls.insert((t, c)));
        } else {
            ret.map(|t| self.rets.remove(&(t, c)));
            call.map(|t| self.calls.remove(&(t, c)));
        }
    }

    fn cell_key(i: usize, v: i64) -> u128 {
        key(i as u64, v as u64, 0xA5A5)
    }

    fn conn_key(c: usize, p: usize) -> u128 {
        key(c as u64, p as u64, 0x5A5A)
    }

    fn set_cell(&mut self, i: usize, v: i64) {
        let old = self.state[i];
        if old != v {
            self.hash ^= Self::cell_key(i, old) ^ Self::cell_key(i, v);
            self.undo.push((i, old));
            self.state[i] = v;
        }
    }

    /// Does operation `i` fit the table now (an answered read must read
    /// what the table holds)?
    fn fits(&self, i: usize) -> bool {
        let (op, Outcome::Ok(vals)) = (&self.rec[i].op, &self.rec[i].outcome) else {
            return true;
        };
        match op {
            Op::Get(ind) => ind.len() == vals.len() && ind.iter().zip(vals).all(|(&i, v)| self.state.get(i) == Some(v)),
            Op::Add(ind) => {
                let sum = ind
                    .iter()
                    .try_fold(0i64, |s, &i| self.state.get(i).map(|v| s.wrapping_add(*v)));
                sum.is_some() && vals.len() == 1 && sum == Some(vals[0])
            }
            _ => true,
        }
    }

    /// Places connection `m.conn`'s next operation; false if it does not fit.
    /// The (cell, value) pairs an answered GET read.
    fn reads(&self, i: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
        let (op, out) = (&self.rec[i].op, &self.rec[i].outcome);
        let pairs = match (op, out) {
            (Op::Get(ind), Outcome::Ok(vals)) => Some(ind.iter().copied().zip(vals.iter().copied())),
            _ => None,
        };
        pairs.into_iter().flatten()
    }

    /// Would applying write `i` hide a value a read still to place must
    /// see? Values are unique, so a hidden value never comes back (a 0
    /// may, while a CLR is still to place): this order is dead now, not
    /// many moves later.
    fn hides_wanted(&self, i: usize) -> bool {
        self.hides(i, false)
    }

    /// [`Search::hides_wanted`]; `strict`: a 0 counts even while a CLR
    /// could bring it back (for a move made without trying others).
    fn hides(&self, i: usize, strict: bool) -> bool {
        let hides = |k: usize, new: i64| {
            let old = self.state.get(k).copied().unwrap_or(new);
            let back = old == 0 && self.clears_left > 0 && !strict;
            old != new && self.readers.get(&(k, old)).is_some_and(|&n| n > 0) && !back
        };
        match &self.rec[i].op {
            Op::Put(ind, data) => ind.iter().zip(data).any(|(&k, &v)| hides(k, v)),
            Op::Clr => (0..self.state.len()).any(|k| hides(k, 0)),
            _ => false,
        }
    }

    fn play(&mut self, m: Move) -> bool {
        let c = m.conn;
        let i = self.conns[c][self.prefix[c]];
        if m.apply && (!self.fits(i) || self.hides_wanted(i)) {
            return false;
        }
        self.count(i, m, -1);
        self.index(c, false);
        if m.apply {
            match &self.rec[i].op {
                Op::Put(ind, data) => {
                    for (&k, &v) in ind.iter().zip(data) {
                        if k < self.state.len() {
                            self.set_cell(k, v);
                        }
                    }
                }
                Op::Clr => {
                    for k in 0..self.state.len() {
                        self.set_cell(k, 0);
                    }
                }
                _ => {}
            }
        }
        let p = self.prefix[c];
        self.hash ^= Self::conn_key(c, p) ^ Self::conn_key(c, p + 1);
        self.prefix[c] = p + 1;
        if self.required(i) {
            self.placed += 1;
        }
        self.index(c, true);
        true
    }

    /// Keeps the counts of reads and CLRs still to place.
    fn count(&mut self, i: usize, m: Move, by: i32) {
        let pairs: Vec<(usize, i64)> = self.reads(i).collect();
        for p in pairs {
            let n = self.readers.entry(p).or_insert(0);
            *n = (*n as i32 + by).max(0) as u32;
        }
        if matches!(self.rec[i].op, Op::Clr) {
            self.clears_left = (self.clears_left as i64 + by as i64).max(0) as usize;
        }
        let _ = m;
    }

    fn unplay(&mut self, m: Move, undo_from: usize) {
        let c = m.conn;
        self.index(c, false);
        let p = self.prefix[c] - 1;
        self.count(self.conns[c][p], m, 1);
        self.hash ^= Self::conn_key(c, p + 1) ^ Self::conn_key(c, p);
        self.prefix[c] = p;
        if self.required(self.conns[c][p]) {
            self.placed -= 1;
        }
        while self.undo.len() > undo_from {
            let Some((k, old)) = self.undo.pop() else { break };
            let now = self.state[k];
            self.hash ^= Self::cell_key(k, now) ^ Self::cell_key(k, old);
            self.state[k] = old;
        }
        self.index(c, true);
    }

    /// The moves from here, best first. A read that may go next and fits
    /// the table now is the only move: placing it now loses no order (it
    /// changes nothing, and everything still to place was answered after
    /// it was sent). Else the writes: answered ones by answer time, then
    /// the failed or unknown ones, applied first when a read saw one of
    /// their values, else skipped first.
    fn moves(&self, out: &mut Vec<Move>) {
        let Some(&(horizon, _)) = self.rets.first() else { return };
        let heads: Vec<(u64, usize)> = self
            .calls
            .range(..=(horizon, usize::MAX))
            .map(|&(_, c)| (self.ret(self.conns[c][self.prefix[c]]), c))
            .collect();
        if let Some(&(_, c)) = heads.iter().find(|&&(_, c)| {
            let i = self.conns[c][self.prefix[c]];
            !self.rec[i].op.writes() && self.fits(i)
        }) {
            out.push(Move { conn: c, apply: true });
            return;
        }
        // Likewise a write nobody saw (no GET returned its values, no ADD
        // after it summed its indices) that hides nothing a read still
        // wants: whatever follows, no read can tell it went now.
        if let Some(&(_, c)) = heads.iter().find(|&&(_, c)| {
            let i = self.conns[c][self.prefix[c]];
            self.free[i] && !self.hides(i, true)
        }) {
            out.push(Move { conn: c, apply: true });
            return;
        }
        // What the reads that may go next but do not fit want: a write
        // giving one of those values goes first (just in time), the
        // others when their answer is due (by answer time).
        // (An ADD that does not fit wants any write to its indices.)
        let mut wanted: Vec<(usize, i64)> = Vec::new();
        let mut summed: Vec<usize> = Vec::new();
        for &(_, c) in &heads {
            let r = &self.rec[self.conns[c][self.prefix[c]]];
            match (&r.op, &r.outcome) {
                (Op::Get(ind), Outcome::Ok(vals)) => wanted.extend(
                    ind.iter()
                        .zip(vals)
                        .filter(|(&i, v)| self.state.get(i) != Some(v))
                        .map(|(&i, &v)| (i, v)),
                ),
                (Op::Add(ind), Outcome::Ok(_)) => summed.extend(ind),
                _ => {}
            }
        }
        let needed = |op: &Op| match op {
            Op::Put(ind, data) => ind
                .iter()
                .zip(data)
                .any(|(&i, &v)| wanted.contains(&(i, v)) || summed.contains(&i)),
            Op::Clr => !summed.is_empty() || wanted.iter().any(|&(_, v)| v == 0),
            _ => false,
        };
        // A write that holds up its own connection's next operation, sent
        // already, is wanted now too.
        let blocks = |c: usize| {
            let p = self.prefix[c] + 1;
            p < self.conns[c].len() && self.rec[self.conns[c][p]].call <= horizon
        };
        // Order: wanted now; then writes no read saw, as early as may be
        // (a read of their index must not fall between them and the write
        // that hides them); then the others when their answer is due.
        let mut writes: Vec<(u8, u64, usize, bool)> = heads
            .iter()
            .filter_map(|&(ret, c)| {
                let r = &self.rec[self.conns[c][self.prefix[c]]];
                let seen = match &r.op {
                    Op::Put(_, data) => data.iter().any(|v| self.observed.contains(v)),
                    _ => true,
                };
                let (class, at) = if needed(&r.op) || blocks(c) {
                    (0, ret)
                } else if !seen {
                    (1, r.call)
                } else {
                    (2, ret)
                };
                r.op.writes().then_some((class, at, c, needed(&r.op)))
            })
            .collect();
        writes.sort_unstable();
        for (_, _, c, need) in writes {
            let i = self.conns[c][self.prefix[c]];
            let ret = self.ret(i);
            if ret != u64::MAX {
                out.push(Move { conn: c, apply: true });
            } else {
                // A failed or unknown write. A PUT still here was seen (the
                // others were left out): it took effect, since its values
                // are its own. A CLR may or may not have: both, applied
                // first if a read wants a 0 now.
                // A seen PUT: first when a read wants its value, else
                // after the answered writes.
                match &self.rec[i].op {
                    Op::Put(_, data) if data.iter().any(|v| self.observed.contains(v)) => {
                        out.push(Move { conn: c, apply: true });
                    }
                    _ => {
                        out.push(Move { conn: c, apply: need });
                        out.push(Move { conn: c, apply: !need });
                    }
                }
            }
        }
    }
}

/// Checks `history` against a table of `size` entries, all 0 at the
/// start, trying at most `budget` moves.
pub fn check(history: &[Record], size: usize, budget: u64) -> Report {
    // Failed reads explain nothing: left out. Connections in order.
    let mut by_conn: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    let mut checked = 0;
    let mut free = vec![false; history.len()];
    let observed: HashSet<i64> = history
        .iter()
        .filter(|r| matches!(r.op, Op::Get(_)))
        .filter_map(|r| match &r.outcome {
            Outcome::Ok(v) => Some(v.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    // Indices an answered ADD reads, and from when.
    let summed_after: Vec<(u64, &[usize])> = history
        .iter()
        .filter_map(|r| match (&r.op, &r.outcome) {
            (Op::Add(ind), Outcome::Ok(_)) => Some((r.ret.unwrap_or(u64::MAX), &ind[..])),
            _ => None,
        })
        .collect();
    let acked = acked_writes(history);
    // (An ADD's call, looked up by its answer time: see `summed_after`.)
    let add_calls: std::collections::HashMap<u64, u64> = history
        .iter()
        .filter(|r| matches!((&r.op, &r.outcome), (Op::Add(_), Outcome::Ok(_))))
        .filter_map(|r| Some((r.ret?, r.call)))
        .collect();
    let adds_called = |ret: u64| add_calls.get(&ret).copied().unwrap_or(0);
    for (i, r) in history.iter().enumerate() {
        let failed_read = !r.op.writes() && !matches!(r.outcome, Outcome::Ok(_));
        // A failed or unknown PUT no read saw (no GET returned its
        // values, no ADD answered after it was sent summed its indices)
        // changes nothing anyone saw: any order that applies it also works
        // without it, so it is left out.
        let unseen_failed_put = match (&r.op, &r.outcome) {
            (Op::Put(ind, data), Outcome::Error | Outcome::Unknown) => {
                !data.iter().any(|v| observed.contains(v))
                    && !summed_after
                        .iter()
                        .any(|(at, s)| *at >= r.call && ind.iter().any(|i| s.contains(i)))
            }
            _ => false,
        };
        if failed_read || unseen_failed_put {
            continue;
        }
        if let (Op::Put(ind, data), Outcome::Ok(_), Some(ret)) = (&r.op, &r.outcome, r.ret) {
            // An ADD can have summed it only between its call and the
            // answer of a write to the same index sent after it was
            // answered (then it is hidden for good).
            free[i] = !data.iter().any(|v| observed.contains(v))
                && !ind.iter().any(|&k| {
                    let dead = hidden_by(&acked, k, ret);
                    summed_after
                        .iter()
                        .any(|(at, s)| *at >= r.call && s.contains(&k) && adds_called(*at) <= dead)
                });
        }
        checked += 1;
        if matches!(r.outcome, Outcome::Ok(_)) {
            by_conn.entry(r.conn).or_default().push(i);
        } else {
            // A failed or unknown write may land at any time after it was
            // sent, even after later requests of its connection (a proxy
            // that gave up on its upstream connection drains it, and the
            // server may apply a write from it late: docs/architecture.md,
            // "coherence" rule 6): a sequence of its own.
            by_conn.entry(u64::MAX - i as u64).or_default().push(i);
        }
    }
    let mut conns: Vec<Vec<usize>> = by_conn.into_values().collect();
    for ops in &mut conns {
        ops.sort_by_key(|&i| history[i].seq);
    }
    let mut s = Search {
        rec: history,
        next_required: Vec::new(),
        prefix: vec![0; conns.len()],
        state: vec![0; size],
        hash: 0,
        rets: BTreeSet::new(),
        calls: BTreeSet::new(),
        undo: Vec::new(),
        seen: HashSet::new(),
        placed: 0,
        observed,
        readers: Default::default(),
        clears_left: 0,
        free,
        conns,
    };
    for ops in s.conns.clone() {
        for i in ops {
            let pairs: Vec<(usize, i64)> = s.reads(i).collect();
            for p in pairs {
                *s.readers.entry(p).or_insert(0) += 1;
            }
            if matches!(history[i].op, Op::Clr) {
                s.clears_left += 1;
            }
        }
    }
    s.next_required = s
        .conns
        .iter()
        .map(|ops| {
            let mut next = vec![ops.len(); ops.len() + 1];
            for p in (0..ops.len()).rev() {
                next[p] = if matches!(history[ops[p]].outcome, Outcome::Ok(_)) {
                    p
                } else {
                    next[p + 1]
                };
            }
            next
        })
        .collect();
    s.hash = (0..size).fold(0, |h, i| h ^ Search::cell_key(i, 0))
        ^ (0..s.conns.len()).fold(0, |h, c| h ^ Search::conn_key(c, 0));
    for c in 0..s.conns.len() {
        s.index(c, true);
    }
    let required = history.iter().filter(|r| matches!(r.outcome, Outcome::Ok(_))).count();
    let verdict = run(&mut s, required, budget);
    Report {
        verdict: verdict.0,
        steps: verdict.1,
        checked,
    }
}

/// Per index: the answered writes to it, as (call, the least answer time
/// of this and every later-called one), by call time.
fn acked_writes(history: &[Record]) -> std::collections::HashMap<usize, Vec<(u64, u64)>> {
    let mut by: std::collections::HashMap<usize, Vec<(u64, u64)>> = Default::default();
    for r in history {
        let (Op::Put(ind, _), Outcome::Ok(_), Some(ret)) = (&r.op, &r.outcome, r.ret) else {
            continue;
        };
        for &k in ind {
            by.entry(k).or_default().push((r.call, ret));
        }
    }
    for v in by.values_mut() {
        v.sort_unstable();
        for j in (0..v.len().saturating_sub(1)).rev() {
            v[j].1 = v[j].1.min(v[j + 1].1);
        }
    }
    by
}

/// When index `k`'s value written by a write answered at `ret` is hidden
/// for good: the earliest answer of a write to `k` sent after `ret`.
fn hidden_by(acked: &std::collections::HashMap<usize, Vec<(u64, u64)>>, k: usize, ret: u64) -> u64 {
    let Some(v) = acked.get(&k) else { return u64::MAX };
    let from = v.partition_point(|&(call, _)| call <= ret);
    v.get(from).map_or(u64::MAX, |&(_, min_ret)| min_ret)
}

fn run(s: &mut Search, required: usize, budget: u64) -> (Verdict, u64) {
    let mut moves: Vec<Move> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    s.moves(&mut moves);
    stack.push(Frame {
        start: 0,
        end: moves.len(),
        next: 0,
        came_by: None,
    });
    s.seen.insert(s.hash);
    let mut steps = 0u64;
    // The deepest point: answered operations placed, and the one that
    // had to go next there.
    let mut deepest = (0usize, None::<usize>);
    loop {
        if s.placed == required {
            return (Verdict::Linearizable, steps);
        }
        let Some(top) = stack.last_mut() else { break };
        if top.next == top.end {
            // Nothing left here: back up.
            let f = stack.pop().unwrap_or(Frame {
                start: 0,
                end: 0,
                next: 0,
                came_by: None,
            });
            moves.truncate(f.start);
            if let Some((m, undo_from)) = f.came_by {
                s.unplay(m, undo_from);
            }
            continue;
        }
        let m = moves[top.next];
        top.next += 1;
        steps += 1;
        if steps > budget {
            return (Verdict::Undecided, steps);
        }
        let undo_from = s.undo.len();
        if !s.play(m) {
            continue;
        }
        if !s.seen.insert(s.hash) {
            s.unplay(m, undo_from);
            continue;
        }
        if s.placed >= deepest.0 {
            let stuck = s
                .rets
                .first()
                .map(|&(_, c)| s.conns[c][s.next_required[c][s.prefix[c]]]);
            deepest = (s.placed, stuck);
        }
        let start = moves.len();
        s.moves(&mut moves);
        stack.push(Frame {
            start,
            end: moves.len(),
            next: start,
            came_by: Some((m, undo_from)),
        });
    }
    let stuck = deepest.1.or_else(|| {
        // Stuck at the very start: the first answered operation.
        (0..s.rec.len())
            .filter(|&i| matches!(s.rec[i].outcome, Outcome::Ok(_)))
            .min_by_key(|&i| s.rec[i].ret)
    });
    let Some(stuck) = stuck else {
        return (Verdict::Linearizable, steps);
    };
    (
        Verdict::Violation {
            stuck,
            window: window(s.rec, stuck),
        },
        steps,
    )
}

/// The operations overlapping the stretch that ends at `stuck`'s answer
/// (or a write's first reader after it) and starts at the earliest call
/// of an operation still running when `stuck` was sent, at most 40 of
/// them (the nearest), by call time.
fn window(rec: &[Record], stuck: usize) -> Vec<usize> {
    // A write that could not go: up to the first read of its indices
    // answered after it (the read that saw the value it would hide).
    let mut end = rec[stuck].ret.unwrap_or(u64::MAX);
    if let Op::Put(ind, _) = &rec[stuck].op {
        let reader = rec
            .iter()
            .filter(
                |r| matches!((&r.op, &r.outcome), (Op::Get(i), Outcome::Ok(_)) if i.iter().any(|k| ind.contains(k))),
            )
            .filter_map(|r| r.ret.filter(|&t| t > end))
            .min();
        end = end.max(reader.unwrap_or(end));
    }
    let start = rec
        .iter()
        .filter(|r| r.call <= rec[stuck].call && r.ret.is_none_or(|t| t >= rec[stuck].call))
        .map(|r| r.call)
        .min()
        .unwrap_or(rec[stuck].call);
    let mut w: Vec<usize> = (0..rec.len())
        .filter(|&i| rec[i].call <= end && rec[i].ret.is_none_or(|t| t >= start))
        .collect();
    w.sort_by_key(|&i| (rec[i].call, i));
    if w.len() > 40 {
        let at = w.iter().position(|&i| i == stuck).unwrap_or(0);
        let from = at.saturating_sub(30).min(w.len() - 40);
        w = w[from..from + 40].to_vec();
    }
    w
}

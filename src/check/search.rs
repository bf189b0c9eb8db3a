//! The state of the linearizability search and its moves: the table,
//! how far each connection has got, the 128-bit key of both, and which
//! operations may go next, best first ([`super::linear`] runs the search).
//! Pure code.

use super::{Op, Outcome, Record};
use std::collections::{BTreeSet, HashSet};

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: a good spread from any input.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A 128-bit key part for (a, b): two independent 64-bit hashes.
pub(super) fn key(a: u64, b: u64, salt: u64) -> u128 {
    let lo = mix(a.wrapping_mul(0x100_0000_01B3) ^ mix(b ^ salt));
    let hi = mix(lo ^ a.rotate_left(32) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ salt.rotate_left(7));
    ((hi as u128) << 64) | lo as u128
}

/// A move: place connection `c`'s next operation, applied or skipped.
#[derive(Debug, Clone, Copy)]
pub(super) struct Move {
    pub(super) conn: usize,
    pub(super) apply: bool,
}

pub(super) struct Search<'a> {
    pub(super) rec: &'a [Record],
    /// Per connection: its operations in order (indices into `rec`).
    pub(super) conns: Vec<Vec<usize>>,
    /// Per connection and position: the next position holding an
    /// answered operation (or the length).
    pub(super) next_required: Vec<Vec<usize>>,
    pub(super) prefix: Vec<usize>,
    pub(super) state: Vec<i64>,
    pub(super) hash: u128,
    /// (answer time of its first unplaced answered operation, connection).
    pub(super) rets: BTreeSet<(u64, usize)>,
    /// (call time of its next operation, connection).
    pub(super) calls: BTreeSet<(u64, usize)>,
    /// (connection, cell, old value) for undo.
    pub(super) undo: Vec<(usize, i64)>,
    pub(super) seen: HashSet<u128>,
    pub(super) placed: usize,
    /// Values some answered read saw: a write of one of them must have
    /// been applied, so its "apply" is tried first.
    pub(super) observed: HashSet<i64>,
    /// Per (cell, value): answered GETs still to place that read it.
    pub(super) readers: std::collections::HashMap<(usize, i64), u32>,
    /// CLRs still to place (a 0 may come back).
    pub(super) clears_left: usize,
    /// Per record: an answered PUT nobody saw, which may go as soon as
    /// it hides nothing wanted.
    pub(super) free: Vec<bool>,
}

impl<'a> Search<'a> {
    pub(super) fn required(&self, i: usize) -> bool {
        matches!(self.rec[i].outcome, Outcome::Ok(_))
    }

    pub(super) fn ret(&self, i: usize) -> u64 {
        if self.required(i) {
            self.rec[i].ret.unwrap_or(u64::MAX)
        } else {
            u64::MAX
        }
    }

    /// Puts connection `c`'s entries in the index sets for its position.
    pub(super) fn index(&mut self, c: usize, add: bool) {
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

    pub(super) fn cell_key(i: usize, v: i64) -> u128 {
        key(i as u64, v as u64, 0xA5A5)
    }

    pub(super) fn conn_key(c: usize, p: usize) -> u128 {
        key(c as u64, p as u64, 0x5A5A)
    }

    pub(super) fn set_cell(&mut self, i: usize, v: i64) {
        let old = self.state[i];
        if old != v {
            self.hash ^= Self::cell_key(i, old) ^ Self::cell_key(i, v);
            self.undo.push((i, old));
            self.state[i] = v;
        }
    }

    /// Does operation `i` fit the table now (an answered read must read
    /// what the table holds)?
    pub(super) fn fits(&self, i: usize) -> bool {
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
    pub(super) fn reads(&self, i: usize) -> impl Iterator<Item = (usize, i64)> + '_ {
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
    pub(super) fn hides_wanted(&self, i: usize) -> bool {
        self.hides(i, false)
    }

    /// [`Search::hides_wanted`]; `strict`: a 0 counts even while a CLR
    /// could bring it back (for a move made without trying others).
    pub(super) fn hides(&self, i: usize, strict: bool) -> bool {
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

    pub(super) fn play(&mut self, m: Move) -> bool {
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
    pub(super) fn count(&mut self, i: usize, m: Move, by: i32) {
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

    pub(super) fn unplay(&mut self, m: Move, undo_from: usize) {
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
    pub(super) fn moves(&self, out: &mut Vec<Move>) {
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

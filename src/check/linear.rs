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

use super::search::{Move, Search};
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

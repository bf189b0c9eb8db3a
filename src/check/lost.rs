//! Lost acknowledged writes: a read that returned a value older than a
//! write to the same index that was acknowledged before the read was
//! sent. Pure code.
//!
//! Every PUT writes values no other writes, so a read's value names the
//! write it saw (0: the start, or a CLR). If some acknowledged write to
//! that index started after that write was answered, and was answered
//! itself before the read was sent, no order can put the read between
//! them: the acknowledged write was lost to that read. This check needs
//! no search and never guesses (linearizability, [`super::linear`], is
//! the stronger check; this one names the writes a crash or a stale cache
//! lost, which is what a durability claim is about).

use super::{Op, Outcome, Record};
use std::collections::HashMap;

/// A read that missed an acknowledged write: (the read, the write).
pub type Lost = (usize, usize);

/// Every (read, lost write) pair in `history`.
pub fn lost_writes(history: &[Record]) -> Vec<Lost> {
    // Where each value came from: (index, value) -> the write.
    let mut source: HashMap<(usize, i64), usize> = HashMap::new();
    // Per index, the acknowledged writes: (call, ret, record).
    let mut acked: HashMap<usize, Vec<(u64, u64, usize)>> = HashMap::new();
    let mut clears: Vec<usize> = Vec::new();
    // Acknowledged CLRs: (call, ret, record); they write every index.
    let mut acked_clears: Vec<(u64, u64, usize)> = Vec::new();
    for (n, r) in history.iter().enumerate() {
        let ok = matches!(r.outcome, Outcome::Ok(_));
        match &r.op {
            Op::Put(ind, data) => {
                for (&i, &v) in ind.iter().zip(data) {
                    source.insert((i, v), n);
                    if let (true, Some(ret)) = (ok, r.ret) {
                        acked.entry(i).or_default().push((r.call, ret, n));
                    }
                }
            }
            Op::Clr => {
                clears.push(n);
                if let (true, Some(ret)) = (ok, r.ret) {
                    acked_clears.push((r.call, ret, n));
                }
            }
            _ => {}
        }
    }
    let mut lost = Vec::new();
    for (n, r) in history.iter().enumerate() {
        let (Op::Get(ind), Outcome::Ok(vals)) = (&r.op, &r.outcome) else {
            continue;
        };
        for (&i, &v) in ind.iter().zip(vals) {
            // The latest time the value seen could have been written
            // (`None`: it may be the table's first value).
            let written: Option<u64> = if v == 0 {
                // The start, or any CLR sent before the read was answered
                // (a failed one may have landed at any time since).
                clears
                    .iter()
                    .filter(|&&c| history[c].call <= r.ret.unwrap_or(u64::MAX))
                    .map(|&c| match history[c].outcome {
                        Outcome::Ok(_) => history[c].ret.unwrap_or(u64::MAX),
                        _ => u64::MAX,
                    })
                    .max()
            } else {
                match source.get(&(i, v)) {
                    // A failed or unknown write may land at any time after
                    // it was sent, even after later writes: no claim.
                    Some(&w) if !matches!(history[w].outcome, Outcome::Ok(_)) => continue,
                    Some(&w) => Some(history[w].ret.unwrap_or(u64::MAX)),
                    None => continue, // a value nobody wrote: linearizability says so
                }
            };
            let later = |&&(call, ret, _): &&(u64, u64, usize)| written.is_none_or(|w| call > w) && ret < r.call;
            let puts = acked.get(&i).map_or(&[][..], |v| &v[..]);
            // A CLR cannot be lost to a read of 0.
            let clrs = if v == 0 { &[][..] } else { &acked_clears[..] };
            if let Some(&(_, _, w)) = puts.iter().chain(clrs).find(later) {
                lost.push((n, w));
            }
        }
    }
    lost
}

//! One proxy's tracked indices at the server: what it may hold (and the
//! SEQ of an invalidation out for an index), the order they came in (so
//! the oldest are trimmed first when it reaches its bound), and the
//! invalidations encoded for it. Pure code; `leases.rs` keeps the
//! holders and decides when to trim.

use crate::buffer::Buffer;
use crate::cache::IndexMap;
use crate::proto::encode_inv;
use std::time::Instant;

/// How far a holder's tracking may run past its bound while the
/// invalidation that makes room is out (a sixteenth): a hard cap, so
/// memory stays bounded even if it is never confirmed.
pub(super) fn slack(bound: usize) -> usize {
    bound / 16 + 1
}

/// What one proxy may hold.
#[derive(Debug)]
pub(super) struct Holder {
    /// Its connection (slab key and generation).
    pub(super) key: usize,
    pub(super) gen: u64,
    /// Index → 0 while held, or the SEQ of the invalidation sent for it
    /// and not confirmed yet.
    pub(super) held: IndexMap<u64>,
    /// The indices in the order they started being tracked, oldest first
    /// (entries no longer held are skipped when met; compacted when it
    /// grows past twice `held`).
    pub(super) order: std::collections::VecDeque<i64>,
    /// The SEQ of the invalidation out to make room, until confirmed.
    pub(super) trimming: Option<u64>,
    /// The invalidations sent and not confirmed: (SEQ, when sent, the
    /// indices it names, or `None` for every index).
    pub(super) unacked: std::collections::VecDeque<(u64, Instant, Option<Vec<i64>>)>,
    pub(super) next_seq: u64,
    pub(super) acked: u64,
    /// When the server last answered it: its lease runs until then + lease.
    pub(super) last_grant: Instant,
    /// Invalidations encoded and not yet moved to its connection.
    pub(super) outbox: Buffer,
}

/// Invalidates the holder's oldest fresh entries (a sixteenth of `bound`)
/// to make room; false if it holds none that is not already being
/// invalidated. (The caller notes the holder as unconfirmed and outgoing.)
pub(super) fn trim(h: &mut Holder, bound: usize, now: Instant) -> bool {
    let want = slack(bound);
    let mut batch = Vec::with_capacity(want.min(4096));
    while batch.len() < want {
        let Some(i) = h.order.pop_front() else { break };
        // Skipped: no longer held, or an INV is out for it already. (An
        // index listed twice after a re-insert goes at its first place: a
        // little early, never unsafe.)
        if h.held.get(&i) == Some(&0) {
            batch.push(i);
        }
    }
    if batch.is_empty() {
        return false;
    }
    batch.sort_unstable();
    batch.dedup();
    h.trimming = Some(invalidate(h, Some(batch), now));
    true
}

/// Notes `i` as the holder's newest tracked index.
pub(super) fn remember(h: &mut Holder, i: i64) {
    h.order.push_back(i);
    if h.order.len() > 2 * h.held.len() + 1024 {
        compact(h);
    }
}

/// Drops the order entries of indices no longer held, and repeats (the
/// newest place of each kept), so the list stays within twice `held`.
pub(super) fn compact(h: &mut Holder) {
    let mut seen: IndexMap<()> = IndexMap::default();
    let mut kept: std::collections::VecDeque<i64> = std::collections::VecDeque::with_capacity(h.held.len());
    for &i in h.order.iter().rev() {
        if h.held.contains_key(&i) && seen.insert(i, ()).is_none() {
            kept.push_front(i);
        }
    }
    h.order = kept;
}

/// Encodes an invalidation of `ind` (every index for `None`) into the
/// holder's outbox and marks those entries as invalidating; returns its
/// SEQ. (The caller notes the holder as unconfirmed and outgoing.)
pub(super) fn invalidate(h: &mut Holder, ind: Option<Vec<i64>>, now: Instant) -> u64 {
    let seq = h.next_seq;
    h.next_seq += 1;
    encode_inv(&mut h.outbox, seq, ind.as_deref());
    match &ind {
        Some(ind) => {
            for i in ind {
                h.held.insert(*i, seq);
            }
        }
        None => h.held.values_mut().for_each(|v| *v = seq),
    }
    h.outbox.push(b'\n');
    h.unacked.push_back((seq, now, ind));
    seq
}

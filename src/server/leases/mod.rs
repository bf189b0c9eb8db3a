//! The server's half of coherence (docs/coherence.md): which proxy may
//! hold which index, the invalidations it owes them, and the writes that
//! wait for those to be confirmed. Pure bookkeeping, no sockets: the
//! server node moves the invalidations this file encodes into the
//! proxies' connections and applies the writes it releases.
//!
//! The rule, per write (PUT, CLR) of indices `S`, from any connection:
//!
//! ```text
//!   every other proxy that may hold an index of S
//!     ├─ holds it:          send OP=INV;SEQ=n;IND=..   and wait for ACK ≥ n
//!     ├─ INV n already out: wait for ACK ≥ n
//!     └─ connection gone:   wait until the lease it last got runs out
//!   then apply the write and reply (the writer's connection waits, in order)
//! ```
//!
//! A proxy's lease runs `lease` from the moment the server answered it
//! (the proxy counts it, shorter, from when it sent the request), so a
//! proxy that stopped answering cannot serve anything once the lease it
//! last got has run out. One that holds an invalidation unconfirmed for
//! half a lease is expired: its connection is closed, and the writes wait
//! out its last lease instead of its answer.

mod parking;

use super::departed::Departed;
use super::holder::{invalidate, remember, slack, trim, Holder};
use crate::buffer::Buffer;
use crate::cache::{IndexMap, IntHasher};
use crate::proto::{encode_field, Op, Problem, Request};
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

/// Indices tracked for one proxy, by default (`--max-tracked`); past it,
/// its oldest tracked indices are invalidated to make room.
pub const MAX_TRACKED_PER_PROXY: usize = 65536;
/// Indices tracked for all proxies together; past it, the proxy asking for
/// more makes room in its own list the same way.
pub const MAX_TRACKED: usize = 1 << 20;
/// Proxies holding a lease at once, by default (`--max-proxies`); more are
/// answered 503 (and read nothing from their caches until a lease is
/// granted).
pub const MAX_PROXIES: usize = 1024;

/// A proxy known to the server, by a number never reused.
pub type HolderId = u64;

/// One thing a parked write waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The start-up grace: leases granted by an earlier life of the server.
    Grace,
    /// This proxy's ACK of this SEQ (if it goes, this becomes its last
    /// lease's end).
    Ack(HolderId, u64),
    /// Proxies gone: until their last lease has run out.
    Until(Instant),
}

/// A write waiting for invalidations to be confirmed.
#[derive(Debug)]
pub struct Parked {
    /// The writer's connection.
    pub key: usize,
    /// Its generation (the connection may be gone and its key reused).
    pub gen: u64,
    /// The write itself.
    pub req: Request,
    /// When it arrived.
    pub arrived: Instant,
    waits: Vec<Wait>,
}

/// Counters for STS.
#[derive(Debug, Default, Clone)]
pub struct LeaseStats {
    /// Invalidations sent (one INV message may name several indices).
    pub inv_sent: u64,
    /// Confirmations received.
    pub acks: u64,
    /// Writes that had to wait.
    pub writes_delayed: u64,
    /// The longest wait, in microseconds.
    pub delay_max_us: u64,
    /// Proxies expired for not confirming an invalidation in time.
    pub expired: u64,
    /// Invalidations sent to make room in a proxy's tracking (its oldest
    /// indices), at its bound or the server's.
    pub overflows: u64,
    /// LEASEs refused: not a trusted peer (403), or no room (503).
    pub refused: u64,
}

/// The lease directory of a server.
#[derive(Debug)]
pub struct Leases {
    lease: Duration,
    grace_until: Instant,
    /// By id, with the cache's cheap integer hasher (ids are the server's
    /// own numbers, not a peer's).
    holders: HashMap<HolderId, Holder, BuildHasherDefault<IntHasher>>,
    /// Proxies gone while their last lease may still run.
    departed: Departed,
    /// Proxies holding a lease at once at most (`--max-proxies`).
    max_proxies: usize,
    /// Indices tracked per proxy (`--max-tracked`).
    max_tracked: usize,
    parked: Vec<Parked>,
    /// Indices with a write parked (a reply must not let a proxy cache
    /// them), and parked CLRs.
    pending: IndexMap<u32>,
    pending_all: u32,
    tracked: usize,
    next_id: HolderId,
    /// Proxies with an invalidation unconfirmed, and with invalidations
    /// not yet moved to their connection (so that nothing scans them all).
    unconfirmed: std::collections::BTreeSet<HolderId>,
    outgoing: Vec<HolderId>,
    /// Counters.
    pub stats: LeaseStats,
}

impl Leases {
    /// A directory granting leases of `lease`, holding writes until
    /// `now + grace` (the leases an earlier life of the server may have
    /// granted).
    pub fn new(lease: Duration, grace: Duration, now: Instant) -> Leases {
        Leases {
            lease,
            grace_until: now.checked_add(grace).unwrap_or(now),
            holders: HashMap::default(),
            departed: Departed::default(),
            max_proxies: MAX_PROXIES,
            max_tracked: MAX_TRACKED_PER_PROXY,
            parked: Vec::new(),
            pending: IndexMap::default(),
            pending_all: 0,
            tracked: 0,
            next_id: 1,
            unconfirmed: Default::default(),
            outgoing: Vec::new(),
            stats: LeaseStats::default(),
        }
    }

    /// The same, with at most `max_proxies` proxies holding a lease at
    /// once and `max_tracked` indices tracked for each (both at least 1).
    pub fn bounded(mut self, max_proxies: usize, max_tracked: usize) -> Leases {
        self.max_proxies = max_proxies.max(1);
        self.max_tracked = max_tracked.max(1);
        self
    }

    /// The lease length.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The connection `key`/`gen` asked for a lease: it is a proxy from now
    /// on. Returns its id, or `None` at the `--max-proxies` bound.
    pub fn join(&mut self, key: usize, gen: u64, now: Instant) -> Option<HolderId> {
        if self.holders.len() >= self.max_proxies {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.holders.insert(
            id,
            Holder {
                key,
                gen,
                held: IndexMap::default(),
                order: Default::default(),
                trimming: None,
                unacked: Default::default(),
                next_seq: 1,
                acked: 0,
                last_grant: now,
                outbox: Buffer::new(),
            },
        );
        Some(id)
    }

    /// The server answered proxy `id` now: its lease runs from here.
    pub fn granted(&mut self, id: HolderId, now: Instant) {
        if let Some(h) = self.holders.get_mut(&id) {
            h.last_grant = now;
        }
    }

    /// Proxy `id` is being sent the values of `ind` (which also renews its
    /// lease): from now on it may hold them. The ones it must not keep (a
    /// write to them is parked, or its tracking is at its hard cap) go to
    /// `nocache`. At its bound (or the server's), its oldest tracked
    /// indices are invalidated to make room: it loses those entries, not
    /// its whole cache (Redis's tracking table does the same).
    pub fn register(&mut self, id: HolderId, ind: &[i64], nocache: &mut Vec<i64>, now: Instant) {
        nocache.clear();
        let Some(h) = self.holders.get_mut(&id) else { return };
        h.last_grant = now; // its reply is being sent
        let bound = self.max_tracked;
        for &i in ind {
            if self.pending_all > 0 || (!self.pending.is_empty() && self.pending.contains_key(&i)) {
                nocache.push(i);
                continue;
            }
            let full = h.held.len() >= bound || self.tracked >= MAX_TRACKED;
            if !full {
                // The common case: one hash lookup.
                match h.held.entry(i) {
                    Entry::Vacant(v) => {
                        v.insert(0);
                        self.tracked += 1;
                        remember(h, i);
                    }
                    Entry::Occupied(mut o) => {
                        if *o.get() != 0 {
                            // An INV for it is out: this value is newer,
                            // so it is held again, and placed again in the
                            // order (a trim skipped it meanwhile).
                            o.insert(0);
                            remember(h, i);
                        }
                    }
                }
                continue;
            }
            // At the bound. Held already: nothing grows (as above).
            if let Some(v) = h.held.get_mut(&i) {
                if *v != 0 {
                    *v = 0;
                    remember(h, i);
                }
                continue;
            }
            // New: make room by invalidating its oldest, one trim at a time.
            if h.trimming.is_none() && trim(h, bound, now) {
                self.stats.overflows += 1;
                self.stats.inv_sent += 1;
                self.unconfirmed.insert(id);
                self.outgoing.push(id);
            }
            if h.held.len() >= bound + slack(bound) || self.tracked >= MAX_TRACKED + slack(MAX_TRACKED) {
                nocache.push(i); // no room until the trim is confirmed
                continue;
            }
            h.held.insert(i, 0);
            self.tracked += 1;
            remember(h, i);
        }
    }

    /// Proxy `id` confirms the invalidations up to `seq`.
    pub fn ack(&mut self, id: HolderId, seq: u64) -> Result<(), Problem> {
        let Some(h) = self.holders.get_mut(&id) else {
            return Err(Problem::NoLease);
        };
        if seq >= h.next_seq {
            return Err(Problem::AckAhead(seq));
        }
        self.stats.acks += 1;
        h.acked = h.acked.max(seq);
        if h.trimming.is_some_and(|t| t <= seq) {
            h.trimming = None;
        }
        while h.unacked.front().is_some_and(|(n, _, _)| *n <= seq) {
            let Some((n, _, ind)) = h.unacked.pop_front() else {
                break;
            };
            let before = h.held.len();
            match ind {
                Some(ind) => ind.iter().for_each(|i| {
                    if h.held.get(i) == Some(&n) {
                        h.held.remove(i);
                    }
                }),
                None => h.held.retain(|_, v| *v == 0 || *v > n),
            }
            self.tracked -= before - h.held.len();
        }
        if h.unacked.is_empty() {
            self.unconfirmed.remove(&id);
        }
        Ok(())
    }

    /// A write arrives from the connection `writer` (`Some` if it is a
    /// proxy). Invalidations go out to the other proxies that may hold its
    /// indices. Returns `None` when it may be applied now, or what it must
    /// wait for (then park it: [`Leases::park`]).
    pub fn write_must_wait(&mut self, writer: Option<HolderId>, req: &Request, now: Instant) -> Option<Vec<Wait>> {
        let mut waits = Vec::new();
        if now < self.grace_until {
            waits.push(Wait::Grace);
        }
        let all = req.op == Op::Clr;
        let mut fresh: Vec<i64> = Vec::new();
        for (&id, h) in self.holders.iter_mut() {
            if Some(id) == writer || h.held.is_empty() {
                continue;
            }
            let mut wait_seq = 0;
            let mut invalidated = false;
            if all {
                for &v in h.held.values() {
                    wait_seq = wait_seq.max(v);
                }
                if h.held.values().any(|&v| v == 0) {
                    wait_seq = invalidate(h, None, now);
                    invalidated = true;
                }
            } else {
                fresh.clear();
                for &i in &req.ind {
                    match h.held.get(&i) {
                        Some(0) => fresh.push(i),
                        Some(&v) => wait_seq = wait_seq.max(v),
                        None => {}
                    }
                }
                if !fresh.is_empty() {
                    // A PUT may name an index twice: each once.
                    fresh.sort_unstable();
                    fresh.dedup();
                    wait_seq = invalidate(h, Some(fresh.clone()), now);
                    invalidated = true;
                }
            }
            if invalidated {
                self.stats.inv_sent += 1;
                self.unconfirmed.insert(id);
                self.outgoing.push(id);
            }
            if wait_seq > 0 {
                waits.push(Wait::Ack(id, wait_seq));
            }
        }
        self.prune(now);
        if let Some(until) = self.departed.blocks_until(req, now) {
            waits.push(Wait::Until(until));
        }
        (!waits.is_empty()).then_some(waits)
    }

    /// Forgets departed proxies whose last lease has run out.
    pub fn prune(&mut self, now: Instant) {
        self.departed.prune(now);
    }

    /// Proxy `id`'s connection closed: what it held stays blocked until
    /// its last lease has run out.
    pub fn left(&mut self, id: HolderId) {
        let Some(h) = self.holders.remove(&id) else { return };
        self.unconfirmed.remove(&id);
        self.tracked -= h.held.len();
        let until = h.last_grant + self.lease;
        // Writes parked on its confirmation wait for its lease instead.
        for w in self.parked.iter_mut().flat_map(|p| p.waits.iter_mut()) {
            if matches!(*w, Wait::Ack(gone, _) if gone == id) {
                *w = Wait::Until(until);
            }
        }
        if !h.held.is_empty() {
            let held: Vec<i64> = h.held.keys().copied().collect();
            self.departed.add(&held, until);
        }
    }

    /// Proxies that have left an invalidation unconfirmed for half a lease:
    /// their connections (key, generation) are to be closed.
    pub fn overdue(&mut self, now: Instant, out: &mut Vec<(usize, u64)>) {
        let limit = self.lease / 2;
        for id in &self.unconfirmed {
            let Some(h) = self.holders.get(id) else { continue };
            if h.unacked.front().is_some_and(|(_, sent, _)| now >= *sent + limit) {
                out.push((h.key, h.gen));
            }
        }
        self.stats.expired += out.len() as u64;
    }

    /// When something here is next due (strictly after `now`): the grace's
    /// end, an invalidation's confirmation deadline, a departed proxy's
    /// lease end.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let limit = self.lease / 2;
        let acks = self
            .unconfirmed
            .iter()
            .filter_map(|id| self.holders.get(id)?.unacked.front().map(|(_, s, _)| *s + limit));
        let parked = !self.parked.is_empty();
        let grace = parked.then_some(self.grace_until);
        let gone = self.parked.iter().flat_map(|p| &p.waits).filter_map(|w| match *w {
            Wait::Until(t) => Some(t),
            _ => None,
        });
        grace.into_iter().chain(acks).chain(gone).filter(|&t| t > now).min()
    }

    /// Moves each proxy's encoded invalidations out: `f(key, gen, bytes)`.
    pub fn drain_outboxes(&mut self, mut f: impl FnMut(usize, u64, &[u8])) {
        for id in self.outgoing.drain(..) {
            let Some(h) = self.holders.get_mut(&id) else { continue };
            if !h.outbox.is_empty() {
                f(h.key, h.gen, h.outbox.data());
                h.outbox.clear();
            }
        }
    }

    /// The STS fields of coherence.
    pub fn encode_stats(&self, out: &mut Buffer) {
        let s = &self.stats;
        encode_field(out, "LEASE_MS", &self.lease.as_millis());
        encode_field(out, "PROXIES", &self.holders.len());
        encode_field(out, "TRACKED", &self.tracked);
        encode_field(out, "INV_SENT", &s.inv_sent);
        encode_field(out, "ACKS", &s.acks);
        encode_field(out, "WRITES_DELAYED", &s.writes_delayed);
        encode_field(out, "WRITES_WAITING", &self.parked.len());
        encode_field(out, "DELAY_MAX_US", &s.delay_max_us);
        encode_field(out, "LEASES_EXPIRED", &s.expired);
        encode_field(out, "LEASE_OVERFLOWS", &s.overflows);
        encode_field(out, "LEASES_REFUSED", &s.refused);
        encode_field(out, "MAX_PROXIES", &self.max_proxies);
        encode_field(out, "MAX_TRACKED", &self.max_tracked);
        encode_field(out, "DEPARTED", &self.departed.live());
        encode_field(out, "DEPARTED_BYTES", &self.departed.bytes());
        encode_field(out, "DEPARTED_UNLISTED", &self.departed.unlisted_count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(ind: &[i64]) -> Request {
        Request::new(Op::Put, ind, &vec![7; ind.len()])
    }

    fn outbox(l: &mut Leases) -> Vec<(usize, String)> {
        let mut v = Vec::new();
        l.drain_outboxes(|key, _, b| v.push((key, String::from_utf8_lossy(b).into_owned())));
        v.sort();
        v
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_write_waits_for_every_other_holder_to_confirm() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        let (a, b) = (l.join(0, 1, t0).unwrap(), l.join(1, 1, t0).unwrap());
        let mut nocache = Vec::new();
        l.register(a, &[1, 2], &mut nocache, t0);
        l.register(b, &[1], &mut nocache, t0);
        assert!(nocache.is_empty());
        // A writes 1 and 3: only B is told (A updates its own cache).
        let waits = l.write_must_wait(Some(a), &put(&[1, 3]), t0).expect("B holds 1");
        assert_eq!(outbox(&mut l), [(1, "OP=INV;SEQ=1;IND=1\n".to_string())]);
        l.park(0, 1, &put(&[1, 3]), waits, t0);
        // Meanwhile a fetch of 1 may not be cached; of 2, it may.
        l.register(b, &[1, 2], &mut nocache, t0);
        assert_eq!(nocache, [1]);
        assert!(l.next_ready(t0).is_none());
        assert_eq!(l.ack(b, 2), Err(Problem::AckAhead(2)));
        l.ack(b, 1).unwrap();
        let p = l.next_ready(t0 + ms(1)).expect("released by the ACK");
        assert_eq!((p.key, p.req.ind.clone()), (0, vec![1, 3]));
        // B no longer holds 1: a direct write to 1 tells only A.
        assert!(l.write_must_wait(None, &put(&[1]), t0).is_some());
        assert_eq!(outbox(&mut l), [(0, "OP=INV;SEQ=1;IND=1\n".to_string())]);
        // A CLR from a direct client: everyone who holds anything.
        let clr = Request::new(Op::Clr, &[], &[]);
        assert!(l.write_must_wait(None, &clr, t0).is_some());
        assert_eq!(
            outbox(&mut l),
            [(0, "OP=INV;SEQ=2\n".to_string()), (1, "OP=INV;SEQ=2\n".to_string())]
        );
    }

    #[test]
    fn a_holder_that_goes_away_blocks_its_indices_for_its_last_lease() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        let a = l.join(0, 1, t0).unwrap();
        l.register(a, &[1], &mut Vec::new(), t0);
        l.granted(a, t0 + ms(100));
        l.left(a);
        let waits = l
            .write_must_wait(None, &put(&[1]), t0 + ms(200))
            .expect("A may still serve 1");
        assert!(l.write_must_wait(None, &put(&[2]), t0 + ms(200)).is_none());
        l.park(5, 1, &put(&[1]), waits, t0 + ms(200));
        assert_eq!(l.next_deadline(t0 + ms(200)), Some(t0 + ms(1100)));
        assert!(l.next_ready(t0 + ms(1099)).is_none());
        assert!(l.next_ready(t0 + ms(1100)).is_some(), "one lease after its last answer");
        assert_eq!(l.stats.delay_max_us, 900_000);
    }

    #[test]
    fn a_holder_that_does_not_confirm_in_half_a_lease_is_expired() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        let a = l.join(3, 9, t0).unwrap();
        l.register(a, &[1], &mut Vec::new(), t0);
        let w = l.write_must_wait(None, &put(&[1]), t0).unwrap();
        l.park(0, 1, &put(&[1]), w, t0);
        // The node is woken then (the grace, over at t0, is not due again).
        assert_eq!(l.next_deadline(t0), Some(t0 + ms(500)));
        let mut out = Vec::new();
        l.overdue(t0 + ms(499), &mut out);
        assert!(out.is_empty());
        l.overdue(t0 + ms(500), &mut out);
        assert_eq!(out, [(3, 9)]);
        l.left(a); // its connection is closed
        assert!(l.next_ready(t0 + ms(999)).is_none(), "its last lease may still run");
        assert!(l.next_ready(t0 + ms(1000)).is_some());
    }

    #[test]
    fn proxies_beyond_the_bound_get_no_lease_and_departed_lists_are_bounded() {
        use crate::server::departed::{DEPARTED_BYTES_MAX, ENTRY_BYTES, INDEX_BYTES};
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0).bounded(3, MAX_TRACKED_PER_PROXY);
        let ids: Vec<HolderId> = (0..3).map(|k| l.join(k, 1, t0).unwrap()).collect();
        assert!(l.join(3, 1, t0).is_none(), "--max-proxies 3");
        // A departed proxy that held many indices blocks writes to those
        // only: a write to an index it never read goes at once.
        let many: Vec<i64> = (0..2000).collect();
        l.register(ids[0], &many, &mut Vec::new(), t0);
        l.left(ids[0]);
        assert!(l.join(3, 1, t0).is_some(), "room again");
        assert!(l.write_must_wait(None, &put(&[1999]), t0).is_some());
        assert!(l.write_must_wait(None, &put(&[5000]), t0).is_none());
        assert_eq!(l.departed.bytes(), ENTRY_BYTES + INDEX_BYTES * 2000);
        // Past the bound on the departed lists' bytes, one that leaves
        // blocks every write until its lease ends: memory stays bounded.
        let n = (DEPARTED_BYTES_MAX / INDEX_BYTES) as i64;
        let big: Vec<i64> = (10_000..10_000 + n).collect();
        let mut l2 = Leases::new(ms(1000), Duration::ZERO, t0).bounded(8, big.len());
        let a = l2.join(0, 1, t0).unwrap();
        l2.register(a, &big, &mut Vec::new(), t0);
        l2.left(a);
        assert_eq!((l2.departed.live(), l2.departed.unlisted_count), (0, 1));
        let w = l2.write_must_wait(None, &put(&[1]), t0 + ms(10)).expect("blocked");
        assert_eq!(w, [Wait::Until(t0 + ms(1000))]);
        l2.park(7, 1, &put(&[1]), w, t0 + ms(10));
        assert_eq!(l2.next_deadline(t0 + ms(10)), Some(t0 + ms(1000)));
        assert!(l2.next_ready(t0 + ms(999)).is_none());
        assert!(l2.next_ready(t0 + ms(1000)).is_some());
        l2.prune(t0 + ms(1000));
        assert!(l2.write_must_wait(None, &put(&[1]), t0 + ms(1000)).is_none());
        // Forgotten departed proxies give their bytes back.
        l.prune(t0 + ms(1000));
        assert_eq!((l.departed.live(), l.departed.bytes()), (0, 0));
    }

    #[test]
    fn a_write_parked_on_a_holder_that_leaves_waits_for_its_lease() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        let a = l.join(0, 1, t0).unwrap();
        l.register(a, &[3], &mut Vec::new(), t0);
        let w = l.write_must_wait(None, &put(&[3]), t0).unwrap();
        assert_eq!(w, [Wait::Ack(a, 1)]);
        l.park(5, 1, &put(&[3]), w, t0);
        l.granted(a, t0 + ms(50));
        l.left(a);
        assert_eq!(l.next_deadline(t0 + ms(60)), Some(t0 + ms(1050)), "its lease's end");
        assert!(l.next_ready(t0 + ms(1049)).is_none(), "its last lease may still run");
        assert!(l.next_ready(t0 + ms(1050)).is_some());
    }

    #[test]
    fn writes_wait_out_the_grace_after_start() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), ms(1000), t0);
        let w = l.write_must_wait(None, &put(&[1]), t0).expect("grace");
        l.park(0, 1, &put(&[1]), w, t0);
        assert!(l.next_ready(t0 + ms(999)).is_none());
        assert!(l.next_ready(t0 + ms(1000)).is_some());
        assert!(l.write_must_wait(None, &put(&[1]), t0 + ms(1000)).is_none());
    }

    #[test]
    fn a_holder_at_its_tracking_bound_loses_its_oldest_indices_only() {
        let t0 = Instant::now();
        let bound = 64; // slack: 5
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0).bounded(4, bound);
        let a = l.join(0, 1, t0).unwrap();
        let first: Vec<i64> = (0..bound as i64).collect();
        let mut nocache = Vec::new();
        l.register(a, &first, &mut nocache, t0);
        assert!(nocache.is_empty() && outbox(&mut l).is_empty());
        // Re-reading a held index does not grow anything.
        l.register(a, &[0], &mut nocache, t0);
        assert!(nocache.is_empty() && outbox(&mut l).is_empty());
        l.register(a, &[1000], &mut nocache, t0);
        assert_eq!(
            outbox(&mut l),
            [(0, "OP=INV;SEQ=1;IND=0,1,2,3,4\n".to_string())],
            "the five oldest"
        );
        assert_eq!((l.stats.overflows, l.stats.inv_sent), (1, 1));
        assert!(nocache.is_empty(), "within the slack: tracked");
        // While that is out, more is tracked up to the hard cap, then not.
        let more: Vec<i64> = (1001..1010).collect();
        l.register(a, &more, &mut nocache, t0);
        assert_eq!(nocache, [1005, 1006, 1007, 1008, 1009]);
        assert_eq!(l.tracked, bound + slack(bound));
        assert!(outbox(&mut l).is_empty(), "one trim at a time");
        l.ack(a, 1).unwrap();
        assert_eq!(l.tracked, bound, "the trimmed five are gone");
        // The next trim takes the next oldest; a direct write to a trimmed
        // index no longer waits for this proxy.
        l.register(a, &[2000], &mut nocache, t0);
        assert_eq!(outbox(&mut l), [(0, "OP=INV;SEQ=2;IND=5,6,7,8,9\n".to_string())]);
        assert!(l.write_must_wait(None, &put(&[3]), t0).is_none());
        assert!(l.write_must_wait(None, &put(&[10]), t0).is_some());
    }

    #[test]
    fn an_index_held_again_while_an_inv_for_it_is_out_is_trimmed_in_its_turn() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0).bounded(4, 4); // slack 1
        let a = l.join(0, 1, t0).unwrap();
        l.register(a, &[0, 1, 2, 3], &mut Vec::new(), t0);
        assert!(l.write_must_wait(None, &put(&[0]), t0).is_some()); // INV 1 {0}
        outbox(&mut l);
        l.register(a, &[10], &mut Vec::new(), t0); // trim: 0 is out already, so 1
        assert_eq!(outbox(&mut l), [(0, "OP=INV;SEQ=2;IND=1\n".to_string())]);
        l.register(a, &[0], &mut Vec::new(), t0); // 0 held again, newest
        l.ack(a, 2).unwrap();
        assert_eq!(l.tracked, 4, "0, 2, 3, 10");
        let mut trimmed = Vec::new();
        for (n, i) in (20..24).enumerate() {
            l.register(a, &[i], &mut Vec::new(), t0);
            for (_, inv) in outbox(&mut l) {
                trimmed.push(inv.trim_end().rsplit('=').next().unwrap().to_string());
            }
            l.ack(a, 3 + n as u64).unwrap();
        }
        assert_eq!(trimmed, ["2", "3", "10", "0"], "oldest first, 0 in its new place");
    }

    #[test]
    fn a_confirmed_clr_keeps_what_was_read_or_invalidated_since() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        assert_eq!(l.lease(), ms(1000));
        let a = l.join(0, 1, t0).unwrap();
        l.register(a, &[1, 2], &mut Vec::new(), t0);
        let clr = Request::new(Op::Clr, &[], &[]);
        let w = l.write_must_wait(None, &clr, t0).unwrap();
        assert_eq!(outbox(&mut l), [(0, "OP=INV;SEQ=1\n".to_string())]);
        l.park(9, 1, &clr, w, t0);
        // While the CLR waits, a fetch of anything is not to be kept.
        let mut nocache = Vec::new();
        l.register(a, &[5], &mut nocache, t0);
        assert_eq!(nocache, [5]);
        assert!(l.next_ready(t0).is_none());
        l.ack(a, 1).unwrap();
        assert!(l.next_ready(t0).is_some());
        // After the CLR: 1 read again (fresh), 3 read and invalidated by a
        // later INV; then the CLR's INV is confirmed late... as a repeat.
        l.register(a, &[1, 2, 3], &mut Vec::new(), t0);
        assert!(l.write_must_wait(None, &clr, t0).is_some()); // INV 2, every index
        outbox(&mut l);
        l.register(a, &[1, 3], &mut Vec::new(), t0); // held again, fresh
        assert!(l.write_must_wait(None, &put(&[3]), t0).is_some()); // INV 3 {3}
        outbox(&mut l);
        l.ack(a, 2).unwrap();
        assert_eq!(l.tracked, 2, "1 (fresh) and 3 (its INV 3 still out) stay, 2 goes");
        assert_eq!(l.stats.acks, 2);
        assert!(l.write_must_wait(None, &put(&[2]), t0).is_none(), "2 is no longer held");
        assert!(l.write_must_wait(None, &put(&[1]), t0).is_some(), "1 is");
    }

    #[test]
    fn tracking_for_all_proxies_together_has_a_hard_cap() {
        let t0 = Instant::now();
        let cap = MAX_TRACKED + slack(MAX_TRACKED);
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0).bounded(4, cap + 100);
        let a = l.join(0, 1, t0).unwrap();
        let many: Vec<i64> = (0..cap as i64 + 10).collect();
        let mut nocache = Vec::new();
        l.register(a, &many, &mut nocache, t0);
        assert_eq!(l.tracked, cap);
        assert_eq!(nocache.len(), 10, "past the cap: not kept");
        assert_eq!(l.stats.overflows, 1, "its oldest are being trimmed");
    }

    #[test]
    fn a_dropped_or_released_write_unmarks_its_indices_and_counters_count() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), ms(100), t0); // a grace of 100 ms
        assert_eq!(l.next_deadline(t0), None, "nothing parked: the grace wakes no one");
        let a = l.join(0, 1, t0).unwrap();
        let mut nocache = Vec::new();
        // Two writes of 1 and one of 2 wait (the grace); 1 and 2 are not
        // to be kept meanwhile; dropping one write of 1 leaves 1 marked.
        for (key, ind) in [(5, [1]), (6, [1]), (7, [2])] {
            let w = l.write_must_wait(None, &put(&ind), t0).unwrap();
            l.park(key, 1, &put(&ind), w, t0);
        }
        assert_eq!(l.stats.writes_delayed, 3);
        assert_eq!(l.next_deadline(t0), Some(t0 + ms(100)));
        l.drop_parked(5, 2); // another connection that reused key 5: nothing
        l.drop_parked(5, 1);
        l.register(a, &[1, 2, 3], &mut nocache, t0);
        assert_eq!(nocache, [1, 2]);
        assert_eq!(l.parked.len(), 2);
        l.drop_parked(6, 1);
        l.register(a, &[1, 2, 3], &mut nocache, t0);
        assert_eq!(nocache, [2], "1 no longer waits");
        assert_eq!(l.next_ready(t0 + ms(100)).map(|p| p.key), Some(7));
        l.register(a, &[1, 2, 3], &mut nocache, t0);
        assert!(nocache.is_empty());
        // Invalidations sent are counted once per message; tracking
        // shrinks when a holder leaves; an expiry is counted.
        assert!(l.write_must_wait(None, &put(&[1, 2]), t0 + ms(100)).is_some());
        assert!(l.write_must_wait(None, &put(&[3]), t0 + ms(100)).is_some());
        assert_eq!(l.stats.inv_sent, 2);
        let mut out = Vec::new();
        l.overdue(t0 + ms(600), &mut out);
        assert_eq!((out.len(), l.stats.expired), (1, 1));
        assert_eq!(l.tracked, 3);
        l.left(a);
        assert_eq!(l.tracked, 0);
        let mut b = Buffer::new();
        l.encode_stats(&mut b);
        let sts = String::from_utf8(b.data().to_vec()).unwrap();
        for f in [
            ";PROXIES=0;",
            ";TRACKED=0;",
            ";INV_SENT=2;",
            ";WRITES_DELAYED=3;",
            ";LEASES_EXPIRED=1;",
            ";DEPARTED=1;",
        ] {
            assert!(sts.contains(f), "{f} in {sts}");
        }
    }

    #[test]
    fn the_order_list_stays_within_twice_what_is_held() {
        let t0 = Instant::now();
        let mut l = Leases::new(ms(1000), Duration::ZERO, t0);
        let a = l.join(0, 1, t0).unwrap();
        for round in 0..3000u64 {
            // Read, invalidated, confirmed: over and over.
            l.register(a, &[1, 2], &mut Vec::new(), t0);
            l.write_must_wait(None, &put(&[1, 2]), t0).unwrap();
            outbox(&mut l);
            l.ack(a, round + 1).unwrap();
        }
        let h = &l.holders[&a];
        assert!(h.held.is_empty());
        assert!(h.order.len() <= 2 * h.held.len() + 1024 + 2, "{}", h.order.len());
    }
}

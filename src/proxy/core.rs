//! The proxy's state between events, [`ProxyCore`]: the cache, the writes
//! and reads in flight, the counters, and the session with the server,
//! with the one place the session's moves are applied ([`ProxyCore::session`]).
//! The request handlers (`service.rs`) and the answer handling
//! (`answers.rs`) both work on it.

use crate::buffer::Buffer;
use crate::cache::Policy;
use crate::proto::Request;
use crate::proxy::counters::Counters;
use crate::proxy::decide::{Writes, Zombies};
use crate::proxy::lease::{Event, Lease, Next, Refusal, State};
use crate::proxy::pending::{Made, UpKind};
use crate::proxy::reads::Reads;
use log::{debug, error, info, warn};
use std::time::Instant;

/// The cache and everything the handlers keep between requests.
pub struct ProxyCore {
    /// The cache and its eviction policy.
    pub cache: Box<dyn Policy + Send>,
    /// Writes in flight upstream.
    pub writes: Writes,
    /// Counters for STS.
    pub counters: Counters,
    /// Reads waiting on fetches, and which fetches may be joined.
    pub reads: Reads,
    /// Reused across requests (no allocation per request).
    pub(super) req: Request,
    pub(super) vals: Vec<Option<i64>>,
    pub(super) missing: Vec<i64>,
    pub(super) to_fetch: Vec<i64>,
    pub(super) joined: Vec<u64>,
    /// A reply body built and written at once (a refusal).
    pub(super) body: Buffer,
    /// The replies [`ProxyCore::complete`] made, for the node to deliver.
    pub made: Made,
    /// The sequence number the next request sent upstream gets.
    pub(super) next_seq: u64,
    /// Writes that may still land (see [`Zombies`]).
    pub(super) zombies: Zombies,
    /// The session with the server: whether the cache may be read, and
    /// whether what is fetched may be kept (docs/coherence.md).
    pub lease: Lease,
    /// The node name of its trace lines (`proxy`).
    pub trace_name: &'static str,
    /// An own request the session asked for, for the node to send (it
    /// owns the upstream): a resuming LEASE (docs/durability.md).
    pub to_send: Option<UpKind>,
    /// The clock as read for the batch of requests being handled (see
    /// [`ProxyCore::batch_clock`]); `None` until a read of the batch needs it.
    pub(super) clock: Option<Instant>,
}

/// Indices as the protocol writes them: `1,2,3`.
pub(super) struct List<'a>(pub(super) &'a [i64]);

impl std::fmt::Display for List<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (k, i) in self.0.iter().enumerate() {
            if k > 0 {
                f.write_str(",")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

impl ProxyCore {
    /// An empty cache; `asks_lease` when the upstream speaks line framing
    /// (a bare server cannot take part in coherence); `trace_name` on its
    /// trace lines.
    pub fn new(cache: Box<dyn Policy + Send>, asks_lease: bool, trace_name: &'static str) -> ProxyCore {
        ProxyCore {
            cache,
            writes: Writes::default(),
            counters: Counters::default(),
            reads: Reads::default(),
            req: Request::default(),
            vals: Vec::new(),
            missing: Vec::new(),
            to_fetch: Vec::new(),
            joined: Vec::new(),
            body: Buffer::new(),
            made: Made::default(),
            next_seq: 1,
            zombies: Zombies::default(),
            lease: Lease::new(asks_lease),
            trace_name,
            to_send: None,
            clock: None,
        }
    }

    /// A new batch of one client's requests begins: the clock is read
    /// afresh, once, by the first read of the batch that needs it.
    pub fn batch_begins(&mut self) {
        self.clock = None;
    }

    /// The instant the lease is checked at for a read of this batch: the
    /// clock read once per batch, after every request of the batch arrived
    /// (they were in the input when the batch began). Nothing from
    /// upstream is applied while a batch is handled — no answer, no
    /// invalidation, no lease renewal — so every request of the batch is
    /// decided on the same state as if the whole batch had been handled at
    /// that one instant, which a faster machine could do; the decision is
    /// the one a clock read per request would give on such a machine.
    pub(super) fn batch_clock(clock: &mut Option<Instant>) -> Instant {
        *clock.get_or_insert_with(Instant::now)
    }

    /// Moves the session with the server and does what it says next. An
    /// illegal move (a bug) is logged as an error and leaves the cache
    /// empty, in every build.
    pub(super) fn session(&mut self, event: Event, now: Instant) -> Option<UpKind> {
        let before = self.lease.state();
        let next = match self.lease.on(event, now) {
            Ok(next) => next,
            Err(illegal) => {
                error!("proxy lease session: {illegal}; cache cleared");
                self.cache.clear();
                return None;
            }
        };
        self.log_session(before);
        match next {
            Next::Stay => None,
            Next::Send(kind) => Some(kind),
            Next::Resume(history) => {
                let ind = self.cache.entries().iter().map(|&(i, _)| i).collect();
                self.to_send = Some(UpKind::Resume { history, ind });
                None
            }
            Next::Clear(why) => {
                if !self.cache.is_empty() {
                    info!("proxy cache cleared: {why}");
                    self.cache.clear();
                }
                None
            }
            Next::Kept => {
                info!(
                    "proxy kept {} cached entries across the reconnect (same table, no write since)",
                    self.cache.len()
                );
                None
            }
        }
    }

    /// Says what changed in the session, once per change (a server that
    /// closes idle connections would otherwise repeat it all day).
    fn log_session(&mut self, before: State) {
        let now = self.lease.state();
        match (before, now) {
            (State::Granted { .. }, State::Granted { .. }) => {}
            (_, State::Granted { length, .. }) => info!(
                "proxy upstream grants leases of {} ms: coherent with other proxies",
                length.as_millis()
            ),
            (_, State::Refused { .. }) if self.lease.refusal_logged == self.lease.refusal => {
                debug!("proxy upstream still grants no lease ({})", self.lease.refusal_msg)
            }
            (_, State::Refused { .. }) => {
                self.lease.refusal_logged = self.lease.refusal;
                let every = crate::proxy::lease::RETRY.as_millis();
                let why = &self.lease.refusal_msg;
                match self.lease.refusal {
                    Some(Refusal::NotTrusted) => error!(
                        "proxy upstream refuses this proxy a lease ({why}): give the proxy the server's own --peer-secret-file, or run it on the server's host; reading nothing from the cache, asking again every {every} ms"
                    ),
                    _ => warn!(
                        "proxy upstream grants no lease now ({why}): reading nothing from the cache, asking again every {every} ms"
                    ),
                }
            }
            (_, State::Alone) if !self.lease.warned_alone => {
                self.lease.warned_alone = true;
                warn!("proxy upstream grants no leases: other proxies and direct writers may leave this cache stale (docs/coherence.md)");
            }
            _ => {}
        }
    }

    /// Time passes for the session: an own request to send now (a refused
    /// proxy's retry, a quiet lease's renewal), if any. Call only when the
    /// upstream can take a request.
    pub fn tick(&mut self, now: Instant) -> Option<UpKind> {
        self.session(Event::Tick, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_the_clock_once_and_the_next_batch_afresh() {
        let mut core = ProxyCore::new(Box::new(crate::cache::Fifo::new(2)), true, "proxy");
        assert_eq!(core.clock, None, "no clock read before a read needs it");
        let first = ProxyCore::batch_clock(&mut core.clock);
        let again = ProxyCore::batch_clock(&mut core.clock);
        assert_eq!(first, again, "one instant for the whole batch");
        core.batch_begins();
        assert_eq!(core.clock, None, "a new batch reads the clock again");
        assert!(ProxyCore::batch_clock(&mut core.clock) >= first);
    }
}

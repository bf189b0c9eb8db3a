//! What the proxy does with what happens upstream ([`ProxyCore::complete`]):
//! an answer applied to the cache and turned into the replies of every
//! read waiting on it (its own and those that joined it), a failure
//! turned into errors in order, an invalidation applied, the lease
//! session told of connects, losses and LEASE answers.

use super::core::{List, ProxyCore};
use crate::cache::{IndexMap, Policy};
use crate::proto::encode_read_reply;
use crate::proto::{code, encode_error, encode_ok, Op, Reply};
use crate::proxy::decide::sum_if_add;
use crate::proxy::lease::Event;
use crate::proxy::pending::{UpKind, UpReq, Waiter, Written};
use crate::proxy::upstream::UpEvent;
use crate::reactor::UPSTREAM;
use crate::trace_event;
use std::time::Instant;

impl ProxyCore {
    /// Applies what happened upstream to the cache and builds the replies
    /// it completes, left in [`ProxyCore::made`] with whose slot each
    /// fills, for the node to deliver.
    pub fn complete(&mut self, event: UpEvent, now: Instant) {
        match event {
            UpEvent::Connected => {
                // The server may have restarted with a fresh table while
                // we were apart, and it tracks nothing of ours any more.
                // A durable server's table may be the same one: the cache
                // is kept, unread, until its first LEASE answer says.
                self.to_send = None;
                let cached = !self.cache.is_empty();
                self.session(Event::Connected { cached }, now);
            }
            UpEvent::Disconnected => {
                self.session(Event::Lost, now);
                // A resuming LEASE not sent yet was for the lost
                // connection: the next one asks LEASE afresh and its
                // answer decides (sent there, it would come before that).
                self.to_send = None;
            }
            UpEvent::Invalidated(inv) => self.invalidated(inv.has_ind.then_some(&inv.ind[..])),
            UpEvent::Draining => self.zombies.draining = true,
            UpEvent::DrainLost => self.zombies.pinned = true,
            UpEvent::Settled => self.zombies.settled(self.next_seq - 1),
            UpEvent::Answered(req, reply) if matches!(req.kind, UpKind::Lease | UpKind::Resume { .. }) => {
                let event = Event::Answer {
                    resume: matches!(req.kind, UpKind::Resume { .. }),
                    reply,
                    sent: req.queued,
                    cached: !self.cache.is_empty(),
                };
                self.session(event, now);
            }
            UpEvent::Answered(req, _) if req.kind.is_own() => self.lease.renewed(req.queued),
            UpEvent::Failed(req, ..) if req.kind.is_own() => {}
            UpEvent::Answered(req, reply) => self.answered(req, reply),
            UpEvent::Failed(req, code, why) => {
                self.writes.end(&req.kind, req.seq);
                self.forget_written(&req.kind);
                if self.zombies.draining || self.zombies.pinned {
                    self.zombies.add(&req.kind);
                }
                let seq = req.seq;
                self.fail(req, code, &why);
                self.zombies.done(seq);
            }
        }
    }

    /// An invalidation from the server: `ind`, or every entry.
    fn invalidated(&mut self, ind: Option<&[i64]>) {
        self.lease.invalidations += 1;
        match ind {
            Some(ind) => ind.iter().for_each(|&i| self.cache.remove(i)),
            None => self.cache.clear(),
        }
        let who = self.trace_name;
        match ind {
            Some(ind) => trace_event!(
                who,
                UPSTREAM,
                "INVALIDATE",
                "cache: {} dropped (another writer)",
                List(ind)
            ),
            None => trace_event!(
                who,
                UPSTREAM,
                "INVALIDATE",
                "cache: everything dropped (another writer)"
            ),
        }
        self.reads.invalidated(ind);
        log_cache(&*self.cache, self.trace_name);
    }

    /// A client's request answered by the server.
    fn answered(&mut self, req: UpReq, reply: &Reply) {
        self.lease.renewed(req.queued);
        self.writes.end(&req.kind, req.seq);
        let seq = req.seq;
        if reply.is_ok() {
            self.apply_ok(req, reply);
        } else {
            // A 502 or 504 from upstream (itself a proxy, say) means
            // the write may or may not have been applied. (Whether
            // it may still land later, only that proxy knows:
            // chains of proxies are outside the one-proxy contract.)
            if matches!(reply.code, code::BAD_GATEWAY | code::GATEWAY_TIMEOUT) {
                self.forget_written(&req.kind);
            }
            if reply.code == code::TOO_LARGE && matches!(req.kind, UpKind::Fetch(_)) {
                // The server's bound is below ours: a fetch in flight of
                // known indices may be refused too, so none is joined for
                // a part any more (the pass's open fetch among them).
                self.reads.refused_too_large();
            }
            // The server's verdict, passed on unchanged.
            self.fail(req, reply.code, &reply.msg);
        }
        self.zombies.done(seq);
    }

    /// An error for `req`: for a fetch, for every read waiting on it.
    fn fail(&mut self, req: UpReq, code: u16, msg: &dyn std::fmt::Display) {
        let (counters, made) = (&mut self.counters, &mut self.made);
        let mut answer = |waiter: Waiter, op: Op| {
            counters.error(code);
            made.push(waiter, |body| encode_error(body, Some(op), code, msg));
        };
        match &req.kind {
            UpKind::Fetch(ind) => self.reads.failed(req.seq, ind, |read| answer(read.waiter, read.op)),
            _ => answer(req.waiter, req.op),
        }
        self.recycle(req.kind);
    }

    /// Gives a finished request's lists back for reuse.
    fn recycle(&mut self, kind: UpKind) {
        match kind {
            UpKind::Fetch(ind) => self.reads.fetch_lists.give(ind),
            UpKind::Put(ind, data) => {
                self.reads.ind.give(ind);
                self.reads.ind.give(data);
            }
            _ => {}
        }
    }

    /// A write whose outcome is unknown (no reply, or a gateway error from
    /// upstream): the server may or may not hold the new values, so the
    /// cache must not keep serving the old ones.
    fn forget_written(&mut self, kind: &UpKind) {
        match kind.written() {
            Written::Indices(ind) => ind.iter().for_each(|&i| self.cache.remove(i)),
            Written::All => self.cache.clear(),
            Written::Nothing => {}
        }
    }

    fn apply_ok(&mut self, req: UpReq, reply: &Reply) {
        let data = &reply.data[..];
        match &req.kind {
            UpKind::Fetch(ind) => {
                // Indices a write waits on at the server (rare): a set when
                // there are many, so a big fetch stays linear.
                let many: Option<IndexMap<()>> =
                    (reply.nocache.len() > 16).then(|| reply.nocache.iter().map(|&i| (i, ())).collect());
                let waits = |i: &i64| match &many {
                    Some(set) => set.contains_key(i),
                    None => reply.nocache.contains(i),
                };
                // Kept only if the server tracks this connection (a lease
                // was granted before this fetch was read), or nobody
                // tracks anything (no leases at all).
                let keeps = self.lease.keeps();
                for (&i, &v) in ind.iter().zip(data).filter(|_| keeps) {
                    if !self.zombies.cacheable(i) {
                        continue; // a failed write may still change it
                    }
                    if !reply.nocache.is_empty() && waits(&i) {
                        continue; // a write to it waits at the server
                    }
                    if let Some((old, oldv)) = self.cache.insert(i, v) {
                        self.counters.evictions += 1;
                        trace_event!(self.trace_name, UPSTREAM, "EVICT", "cache: {i} in, {old}:{oldv} out");
                    }
                }
                log_cache(&*self.cache, self.trace_name);
                let (counters, made) = (&mut self.counters, &mut self.made);
                self.reads.answered(req.seq, ind, data, |read| {
                    made.push(read.waiter, |body| match sum_if_add(read.op, read.vals) {
                        Ok(sum) => encode_read_reply(body, read.op, read.ind, read.vals, sum),
                        Err(p) => {
                            counters.error(p.code());
                            encode_error(body, Some(read.op), p.code(), &p);
                        }
                    });
                });
            }
            UpKind::Put(ind, data) => {
                for (&i, &v) in ind.iter().zip(data) {
                    self.cache.update(i, v);
                }
                log_cache(&*self.cache, self.trace_name);
                self.made.push(req.waiter, |body| encode_ok(body, Op::Put, ind, data));
            }
            UpKind::Clr => {
                self.cache.clear();
                log_cache(&*self.cache, self.trace_name);
                self.made.push(req.waiter, |body| encode_ok(body, Op::Clr, &[], &[]));
            }
            UpKind::Ping | UpKind::Lease | UpKind::Ack(_) | UpKind::Resume { .. } => {} // answered to no one
        }
        self.recycle(req.kind);
    }
}

/// Logs the cache after a change at `debug`, oldest first (as the seed's
/// proxy prints its table): every entry of a small cache, only its size for
/// a big one, so the cost never depends on the cache's size. The trace gets
/// a `CACHE` line on the upstream, whose replies and invalidations change
/// it (what the demo's player shows as the cache).
fn log_cache(c: &dyn Policy, who: &'static str) {
    use log::debug;
    if !log::log_enabled!(log::Level::Debug) && !crate::trace::enabled() {
        return;
    }
    // (The entries are listed only when few: `entries` copies them.)
    let few = c.len() <= 32;
    let entries = if few { c.entries() } else { Vec::new() };
    match crate::trace::small_cells(c.len(), entries.into_iter()) {
        Some(cells) => {
            let (len, cap, policy) = (c.len(), c.capacity(), c.name());
            let cells = if cells.is_empty() { "(empty)" } else { cells.as_str() };
            trace_event!(who, UPSTREAM, "CACHE", "{policy} {len}/{cap}, next out first: {cells}");
            debug!("proxy cache [{cells}] (oldest first, {len}/{cap})")
        }
        None => debug!("proxy cache: {}/{} entries (DMP shows them)", c.len(), c.capacity()),
    }
}

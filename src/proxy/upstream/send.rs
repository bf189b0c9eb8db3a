//! Sending: a request queued into the connection's output (a bare
//! server gets one at a time; the fetches of a loop pass wait to go as one
//! GET, docs/coherence.md "Batching"), the flush that writes every request
//! queued in a loop pass at once, and how each request is encoded.

use super::*;

impl Upstream {
    /// Queues a request (written at the next flush). Call only when
    /// [`Upstream::refusal`] is `None`.
    pub fn send(&mut self, req: UpReq, now: Instant) {
        debug_assert!(self.refusal().is_none());
        if self.conn.is_none() {
            return;
        }
        let fetch = match &req.kind {
            UpKind::Fetch(ind) => {
                self.stats.fetches += 1;
                self.batchable(ind).then_some(21 * ind.len())
            }
            _ => None,
        };
        let inflight_was = self.inflight.len();
        self.inflight_bytes += req.kind.wire_bytes();
        self.stats.requests += 1;
        self.queued_seq = self.queued_seq.max(req.seq);
        self.line.last_io = now;
        if self.inflight.is_empty() && self.deadline_armed != Some(self.gen) {
            self.arm_deadline(now + self.timeout);
        }
        match fetch {
            // A bare server gets one request at a time, as its answers come.
            _ if self.framing == Framing::Bare => {
                self.inflight.push_back(req);
                if self.sent == 0 {
                    self.write_next_bare(inflight_was);
                }
            }
            // A fetch the next reads of the pass may grow: it waits for the
            // flush (the caller found the open one full, if any).
            Some(bytes) => {
                self.write_open();
                self.inflight.push_back(req);
                (self.open, self.batch_bytes) = (true, bytes);
            }
            // Anything else goes now, after the fetch queued before it.
            _ => {
                self.write_open();
                self.inflight.push_back(req);
                self.write_last();
            }
        }
    }

    /// Whether a fetch of `ind` may share a GET with others: batching is
    /// on, the server speaks lines, `ind` fits the bound, and the server
    /// has answered every index on this connection (a fetch of one it
    /// lacks is refused, and a refusal must reach only the read that
    /// earned it).
    pub fn batchable(&self, ind: &[i64]) -> bool {
        self.framing == Framing::Line
            && 21 * ind.len() <= self.batch_max
            && ind.iter().all(|&i| (0..=self.known).contains(&i))
    }

    /// The sequence number of the fetch reads may grow now, if any.
    pub fn open_fetch(&self) -> Option<u64> {
        self.inflight.back().filter(|_| self.open).map(|r| r.seq)
    }

    /// Grows the fetch queued last, not written yet, by `ind`, for a read
    /// of client `whose`: returns the fetch's sequence number and where
    /// `ind` starts in it. `None` when there is no such fetch, when `ind`
    /// is not [`Upstream::batchable`], or when the GET would pass its bound
    /// (the caller then sends a fetch of its own, which closes this one).
    /// Every read of a loop pass that misses then shares one request, one
    /// answer and one completion.
    pub fn grow_fetch(&mut self, ind: &[i64], whose: usize) -> Option<(u64, usize)> {
        let bytes = 21 * ind.len();
        if !self.open || self.batch_bytes + bytes > self.batch_max || !self.batchable(ind) {
            return None;
        }
        let req = self.inflight.back_mut()?;
        let UpKind::Fetch(have) = &mut req.kind else {
            return None;
        };
        let from = have.len();
        have.extend_from_slice(ind);
        self.batch_bytes += bytes;
        self.inflight_bytes += bytes;
        self.stats.fetches += 1;
        if crate::trace::enabled() {
            self.merged.push(whose);
        }
        Some((req.seq, from))
    }

    /// Writes the open fetch, if any.
    pub(super) fn write_open(&mut self) {
        if std::mem::take(&mut self.open) {
            self.batch_bytes = 0;
            self.write_last();
        }
    }

    /// Writes the request queued last.
    fn write_last(&mut self) {
        let (Some(conn), Some(req)) = (self.conn.as_mut(), self.inflight.back()) else {
            return;
        };
        write_request(conn, &req.kind, self.secret.as_ref());
        if self.merged.is_empty() {
            announce(&mut self.announce, req);
        } else {
            announce_grown(&mut self.announce, req, &self.merged);
            self.merged.clear();
        }
        if matches!(req.kind, UpKind::Fetch(_)) {
            self.stats.fetch_gets += 1;
        }
        self.sent += 1;
    }

    /// A bare server's next request: the one at `at` in flight.
    pub(super) fn write_next_bare(&mut self, at: usize) {
        let (Some(conn), Some(req)) = (self.conn.as_mut(), self.inflight.get(at)) else {
            return;
        };
        write_request(conn, &req.kind, self.secret.as_ref());
        announce(&mut self.announce, req);
        if matches!(req.kind, UpKind::Fetch(_)) {
            self.stats.fetch_gets += 1;
        }
        self.sent = 1;
    }

    /// Sets the deadline timer of the current connection for `at`.
    pub(super) fn arm_deadline(&mut self, at: Instant) {
        self.timers.add(at, UpTimer::Deadline, UPSTREAM.0, self.gen);
        self.deadline_armed = Some(self.gen);
    }

    /// Writes queued requests, the open fetch with them (once per loop
    /// pass, at its end, so requests from many clients leave in one write).
    pub fn flush(&mut self, now: Instant) {
        self.write_open();
        self.write_out(now);
    }

    /// Writes what is queued except the open fetch, which the reads of the
    /// rest of the loop pass may still grow (an upstream event in the
    /// middle of a pass: otherwise the pass's misses would go as two GETs,
    /// one each side of it).
    pub(super) fn write_out(&mut self, now: Instant) {
        self.wire_seq = match self.open_fetch() {
            Some(open) => open - 1,
            None => self.queued_seq,
        };
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.state() != State::Open {
            return;
        }
        // What this write carries, and for whom: the step between a
        // client's PENDING and the bytes leaving for the server.
        let queued = conn.output.len();
        for what in self.announce.drain(..) {
            trace_event!(self.role, UPSTREAM, "SEND", "{what}: {queued} bytes to write");
        }
        if let WriteOutcome::Error(e) = conn.flush() {
            return self.reset(code::BAD_GATEWAY, &format!("upstream write failed: {e}"), now);
        }
        if let Err(e) = conn.update_interest(&self.registry) {
            self.reset(code::BAD_GATEWAY, &format!("reregister: {e}"), now);
        }
    }
}

/// Whose a request is, for the trace: a client's, or the proxy's own.
struct Whose<'a>(&'a UpReq);

impl std::fmt::Display for Whose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.kind.is_own() {
            f.write_str("the proxy itself")
        } else {
            write!(f, "client {}", self.0.waiter.key)
        }
    }
}

/// Notes a fetch grown by the reads of other clients, written as one GET.
fn announce_grown(out: &mut Vec<String>, req: &UpReq, merged: &[usize]) {
    if crate::trace::enabled() {
        let mut whose = vec![Whose(req).to_string()];
        whose.extend(merged.iter().map(|k| format!("client {k}")));
        out.push(format!(
            "GET of {} fetches in one, for {}",
            whose.len(),
            whose.join(", ")
        ));
    }
}

/// Notes a request written into the output, for the trace's `SEND` line
/// at the next flush.
pub(super) fn announce(out: &mut Vec<String>, req: &UpReq) {
    if crate::trace::enabled() {
        out.push(format!("{} for {}", req.kind.name(), Whose(req)));
    }
}

/// Encodes an upstream request into the connection's output; a LEASE
/// carries the peer secret, if there is one.
pub(super) fn write_request(up: &mut Conn<()>, kind: &UpKind, secret: Option<&crate::peer::Secret>) {
    let key = secret.map(|s| s.expose());
    let out = &mut up.output;
    match kind {
        UpKind::Fetch(ind) => encode_request(out, kind.op(), ind, &[]),
        UpKind::Put(ind, data) => encode_request(out, kind.op(), ind, data),
        UpKind::Clr => encode_request(out, kind.op(), &[], &[]),
        UpKind::Ping => encode_request(out, kind.op(), &[0], &[]),
        UpKind::Lease => encode_lease_request(out, &[], None, key),
        UpKind::Resume { history, ind } => encode_lease_request(out, ind, Some(history), key),
        UpKind::Ack(seq) => encode_ack(out, *seq, false),
    }
    up.end_message();
}

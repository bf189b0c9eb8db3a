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
                // Batched only if every index is one the server answered.
                let known = ind.iter().all(|&i| (0..=self.known).contains(&i));
                known.then_some(21 * ind.len())
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
            // The fetches of a pass wait for the flush, to go as one.
            Some(bytes) if self.batch_max > 0 => {
                if self.batch > 0 && self.batch_bytes + bytes > self.batch_max {
                    self.write_batch();
                }
                self.inflight.push_back(req);
                self.batch += 1;
                self.batch_bytes += bytes;
            }
            // Anything else goes now, after the fetches queued before it.
            _ => {
                self.write_batch();
                self.inflight.push_back(req);
                self.write_batch_of(1);
            }
        }
    }

    /// Writes the fetches not written yet as one GET (one alone as itself).
    pub(super) fn write_batch(&mut self) {
        let n = self.batch;
        (self.batch, self.batch_bytes) = (0, 0);
        if n > 0 {
            self.write_batch_of(n);
        }
    }

    /// Writes the last `n` requests in flight as one request on the wire:
    /// itself for one, a GET of every fetch's indices for more.
    fn write_batch_of(&mut self, n: usize) {
        // (Only written requests are ever answered and popped, so the
        // unwritten ones are all still at the tail; checked all the same.)
        let n = n.min(self.inflight.len());
        let Some(conn) = self.conn.as_mut().filter(|_| n > 0) else {
            return;
        };
        let members = self.inflight.range(self.inflight.len() - n..);
        if n == 1 {
            let req = &self.inflight[self.inflight.len() - 1];
            write_request(conn, &req.kind, self.secret.as_ref());
            announce(&mut self.announce, req);
        } else {
            encode_get_lists(&mut conn.output, members.clone().map(|r| r.kind.indices()));
            conn.end_message();
            announce_batch(&mut self.announce, members);
        }
        if matches!(self.inflight[self.inflight.len() - 1].kind, UpKind::Fetch(_)) {
            self.stats.fetch_gets += 1;
        }
        self.sent += n;
        self.groups.push_back(n);
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
        self.groups.push_back(1);
    }

    /// Sets the deadline timer of the current connection for `at`.
    pub(super) fn arm_deadline(&mut self, at: Instant) {
        self.timers.add(at, UpTimer::Deadline, UPSTREAM.0, self.gen);
        self.deadline_armed = Some(self.gen);
    }

    /// Writes queued requests (once per loop pass, so requests from many
    /// clients leave in one write).
    pub fn flush(&mut self, now: Instant) {
        self.write_batch();
        self.wire_seq = self.queued_seq;
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

/// Notes fetches written as one GET, for the trace's `SEND` line.
fn announce_batch<'a>(out: &mut Vec<String>, members: impl Iterator<Item = &'a UpReq>) {
    if crate::trace::enabled() {
        let whose: Vec<String> = members.map(|r| Whose(r).to_string()).collect();
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

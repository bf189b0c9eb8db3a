//! Sending: a request queued into the connection's output (a bare
//! server gets one at a time), the flush that writes every request queued
//! in a loop pass at once, and how each request is encoded.

use super::*;

impl Upstream {
    /// Queues a request (written at the next flush). Call only when
    /// [`Upstream::refusal`] is `None`.
    pub fn send(&mut self, req: UpReq, now: Instant) {
        debug_assert!(self.refusal().is_none());
        let Some(conn) = self.conn.as_mut() else { return };
        if self.framing != Framing::Bare || self.sent == 0 {
            write_request(conn, &req.kind, self.secret.as_ref());
            announce(&mut self.announce, &req);
            self.sent += 1;
        }
        self.inflight_bytes += req.kind.wire_bytes();
        self.stats.requests += 1;
        self.queued_seq = self.queued_seq.max(req.seq);
        self.line.last_io = now;
        if self.inflight.is_empty() && self.deadline_armed != Some(self.gen) {
            self.arm_deadline(now + self.timeout);
        }
        self.inflight.push_back(req);
    }

    /// Sets the deadline timer of the current connection for `at`.
    pub(super) fn arm_deadline(&mut self, at: Instant) {
        self.timers.add(at, UpTimer::Deadline, UPSTREAM.0, self.gen);
        self.deadline_armed = Some(self.gen);
    }

    /// Writes queued requests (once per loop pass, so requests from many
    /// clients leave in one write).
    pub fn flush(&mut self, now: Instant) {
        self.wire_seq = self.queued_seq;
        let Some(conn) = self.conn.as_mut() else { return };
        if conn.state() != State::Open {
            return;
        }
        // What this write carries, and for whom: the step between a
        // client's PENDING and the bytes leaving for the server.
        for what in self.announce.drain(..) {
            trace_event!(self.role, UPSTREAM, "SEND", "{what}");
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

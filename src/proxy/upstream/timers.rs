//! The upstream's timers: the request (or connect) deadline, reconnects,
//! the keepalive that honours the server's idle policy, a bare reply's end.

use super::*;

impl Upstream {
    /// Fires due timers: the request deadline, reconnects, a bare reply's end.
    pub fn fire_timers(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_due(now) {
            if t.gen != self.gen {
                continue; // for an upstream connection that is gone
            }
            match t.kind {
                UpTimer::Reconnect => {
                    if self.conn.is_none() && !self.stopping {
                        self.connect(now);
                    }
                }
                UpTimer::BareIdle => {
                    let Some(conn) = self.conn.as_mut() else { continue };
                    match conn.bare_timer_fired(now, self.bare_idle) {
                        BarePause::Nothing => {}
                        BarePause::Rearm(at) => self.timers.add(at, UpTimer::BareIdle, UPSTREAM.0, t.gen),
                        // The reply is whole: take it (an empty read pass
                        // hands the input over).
                        BarePause::Ended => self.read(now),
                    }
                }
                UpTimer::Deadline => self.deadline(now),
                UpTimer::KeepAlive => self.keepalive(now),
            }
        }
    }

    /// The keepalive timer: if the connection has been quiet for the
    /// learned interval, send a ping; arm the next check either way.
    pub(super) fn keepalive(&mut self, now: Instant) {
        if !self.connected() {
            return;
        }
        match self.idle.keepalive(self.line.last_io, self.inflight.is_empty(), now) {
            None => {}
            Some(KeepAlive::Ping(next)) => {
                // (A coherent server tracks index 0 for a leased proxy's
                // ping: one more invalidation, only with an idle timeout
                // under a third of the lease, which renewals outpace
                // otherwise.)
                self.send(UpReq::own(UpKind::Ping, now), now);
                self.timers.add(next, UpTimer::KeepAlive, UPSTREAM.0, self.gen);
            }
            Some(KeepAlive::Check(at)) => self.timers.add(at, UpTimer::KeepAlive, UPSTREAM.0, self.gen),
        }
    }

    pub(super) fn deadline(&mut self, now: Instant) {
        self.deadline_armed = None; // this one fired
        let since = match self.conn.as_ref().map(|c| c.state()) {
            Some(State::Connecting { since }) => since,
            _ => match self.inflight.front() {
                Some(head) => head.queued,
                None => return,
            },
        };
        let connecting = matches!(self.conn.as_ref().map(|c| c.state()), Some(State::Connecting { .. }));
        if now < since + self.timeout {
            self.arm_deadline(since + self.timeout);
        } else if connecting {
            self.reset(code::UNAVAILABLE, "connect timed out", now);
        } else {
            self.reset_live(code::GATEWAY_TIMEOUT, "upstream timeout", now);
        }
    }
}

//! The frontend's timers (idle connections, the bare pause, accept retry,
//! the stop deadline) and the graceful stop.

use super::pump::process;
use super::{FrontTimer, Frontend, Service};
use crate::conn::{BarePause, ConnEvent, State};
use crate::reactor::LISTENER;
use crate::trace_event;
use log::debug;
use std::time::Instant;

impl<X: Default> Frontend<X> {
    /// Fires due timers; returns the next deadline.
    pub fn tick<S: Service<Ext = X>>(&mut self, svc: &mut S, now: Instant) -> Option<Instant> {
        // Connections that yielded their turn: read and flush them again.
        for (key, gen) in std::mem::take(&mut self.requeue) {
            if self.conns.get(key).is_some_and(|c| c.gen == gen) {
                self.pump(svc, key, now);
                self.after_io(svc, key, now);
            }
        }
        while let Some(t) = self.timers.pop_due(now) {
            match t.kind {
                FrontTimer::Accept => self.accept(now),
                FrontTimer::StopDeadline => {
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for k in keys {
                        // A last write of what is owed, without waiting.
                        let _ = self.conns[k].flush();
                        self.close(svc, k, "stop deadline");
                    }
                }
                FrontTimer::Idle => self.idle_timer(svc, t.key, t.gen, now),
                FrontTimer::BareIdle => self.bare_timer(svc, t.key, t.gen, now),
            }
        }
        self.next_deadline(now)
    }

    /// When the node must look at the frontend again: `now` while a
    /// connection waits to be served again (its bytes raise no new edge),
    /// else the nearest timer. A node that does more I/O after `tick` (the
    /// proxy delivering upstream replies) asks again afterwards.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.requeue.is_empty() {
            self.timers.next()
        } else {
            Some(now) // poll without sleeping, then serve them again
        }
    }

    /// The bare window after a connection's last bytes: if the peer has
    /// been quiet that long, what it sent is one whole message.
    fn bare_timer<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, gen: u64, now: Instant) {
        let sizes = (self.conns.len(), self.timers.len());
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.gen != gen {
            return;
        }
        match conn.bare_timer_fired(now, self.limits.bare_idle) {
            BarePause::Nothing => {}
            BarePause::Rearm(at) => self.timers.add(at, FrontTimer::BareIdle, key, gen),
            BarePause::Ended => {
                process(svc, conn, &self.limits, &mut self.stats, sizes, now);
                self.after_io(svc, key, now);
            }
        }
    }

    fn idle_timer<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, gen: u64, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.gen != gen {
            return; // the connection this timer was for is gone
        }
        conn.idle_at = None;
        let idle = self.limits.idle_timeout;
        // Not idle while the peer waits on us: replies owed and not yet
        // written. Replies written but not taken are the peer's to read:
        // the clock runs (from the last bytes it took), so a peer that
        // never reads is closed like one that never speaks.
        let waiting_on_us = conn.output.is_empty() && (svc.owes(conn) || conn.paused);
        let deadline = conn.last_active + idle;
        if waiting_on_us || now < deadline {
            let next = if waiting_on_us { now + idle } else { deadline };
            conn.idle_at = Some(next);
            self.timers.add(next, FrontTimer::Idle, key, gen);
            return;
        }
        self.stats.idle_closed += 1;
        let half = if !conn.output.is_empty() {
            "not reading its replies"
        } else if conn.input.is_empty() {
            "idle"
        } else {
            "stuck in a partial message"
        };
        debug!(
            "{} tok={key} peer={:?}: closing, {half} for {} ms",
            self.role,
            conn.peer,
            idle.as_millis()
        );
        self.close(svc, key, "idle timeout");
    }

    /// Graceful stop: close the listener, close idle connections, and let
    /// the others finish what they are owed (bounded by a deadline).
    pub fn stop<S: Service<Ext = X>>(&mut self, svc: &mut S, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if let Some(mut l) = self.listener.take() {
            let _ = self.registry.deregister(&mut l);
            trace_event!(self.role, LISTENER, "CLOSE", "listener closed (stopping)");
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for k in keys {
            let conn = &mut self.conns[k];
            if conn.state() == State::Open && conn.transition(ConnEvent::Stop, "node stopping").is_err() {
                self.close(svc, k, "illegal state move");
                continue;
            }
            self.after_io(svc, k, now);
        }
        let deadline = now + self.limits.stop_timeout;
        self.stop_at = Some(deadline);
        self.timers.add(deadline, FrontTimer::StopDeadline, LISTENER.0, 0);
    }
}

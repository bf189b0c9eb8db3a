//! The read → message → reply pump of one connection, and what follows
//! every burst of I/O: flush, resume a paused reader, close a finished one;
//! and `ready`, where an event for a connection enters it.

use super::{FrontInfo, FrontStats, FrontTimer, Frontend, Limits, Service, MAX_ROUNDS};
use crate::conn::{is_peer_gone, read_limit, Conn, ReadOutcome, State, WriteOutcome};
use crate::framing::Frame;
use crate::proto::Problem;
use crate::reactor::LISTENER;
use crate::trace_event;
use log::{debug, warn};
use mio::event::Event;
use mio::Token;
use std::time::Instant;

impl<X: Default> Frontend<X> {
    /// Dispatches an event for the listener or one of the connections.
    pub fn ready<S: Service<Ext = X>>(&mut self, svc: &mut S, token: Token, event: &Event, now: Instant) {
        if token == LISTENER {
            self.accept(now);
            return;
        }
        let key = token.0;
        let Some(conn) = self.conns.get_mut(key) else {
            return; // spurious: the connection is already gone
        };
        // Fixed order: error, then read, then write.
        if event.is_error() {
            let err = conn.sock.take_error().ok().flatten();
            match err {
                Some(e) => trace_event!(conn.role, conn.token, "ERROR", "{e}"),
                None => trace_event!(conn.role, conn.token, "ERROR", "error event, no pending error"),
            }
            self.close(svc, key, "socket error");
            return;
        }
        if event.is_readable() || event.is_read_closed() {
            self.pump(svc, key, now);
        }
        self.after_io(svc, key, now);
    }

    /// Reads and handles messages until the socket is drained, the peer
    /// half-closes, or backpressure pauses the connection.
    pub(super) fn pump<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, now: Instant) {
        let read_limit = read_limit(self.limits.max_message_bytes);
        let sizes = (self.conns.len(), self.timers.len());
        let Some(conn) = self.conns.get_mut(key) else { return };
        if conn.state() == State::Lingering {
            return self.drain_lingering(svc, key, now);
        }
        let (limits, stats) = (&self.limits, &mut self.stats);
        let outcome = conn.read_pass(&mut self.scratch, read_limit, MAX_ROUNDS, now, |c| {
            process(svc, c, limits, stats, sizes, now);
            true
        });
        match outcome {
            // Fairness: this peer keeps its socket full. Let the others have
            // their turn and come back in `tick` (no new edge would come for
            // bytes already there).
            ReadOutcome::Yielded => self.requeue.push((key, conn.gen)),
            ReadOutcome::Error(e) => return self.io_failed(svc, key, "read", &e),
            _ => {}
        }
        // A message without a newline so far: it ends when the peer has
        // been quiet for the bare window.
        if let Some(at) = conn.bare_timer_due(self.limits.bare_idle) {
            self.timers.add(at, FrontTimer::BareIdle, key, conn.gen);
        }
        if conn.state() == State::ReadClosed && !conn.paused && !conn.input.is_empty() {
            debug!(
                "{} tok={key}: {} bytes of a partial message dropped at EOF",
                self.role,
                conn.input.len()
            );
            conn.input.clear();
        }
    }

    /// A `Lingering` connection: drop what the peer sends until it closes.
    fn drain_lingering<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let (dropped, outcome) = conn.discard_input(&mut self.scratch, MAX_ROUNDS);
        if dropped > 0 {
            // A peer still sending is not idle: the idle timer must not
            // close (and so reset) it while it drains.
            conn.last_active = now;
        }
        match outcome {
            ReadOutcome::Eof => self.close(svc, key, "peer closed after our FIN"),
            ReadOutcome::Error(e) => self.io_failed(svc, key, "read", &e),
            ReadOutcome::Yielded => self.requeue.push((key, conn.gen)),
            _ => {}
        }
    }

    /// Closes a connection the node is done with, all its replies written.
    /// If the peer sent requests that will not be answered, closing now
    /// would reset the connection (the kernel's answer to unread bytes)
    /// and destroy the replies still on their way: instead shut the sending
    /// side, so the peer reads every reply and then the end, and drain what
    /// it sends until it closes (or the stop deadline).
    fn finish_closing<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let (dropped, outcome) = conn.discard_input(&mut self.scratch, MAX_ROUNDS);
        match outcome {
            ReadOutcome::Eof => return self.close(svc, key, "closing, all replies sent, peer closed"),
            ReadOutcome::Error(e) => return self.io_failed(svc, key, "read", &e),
            ReadOutcome::WouldBlock if dropped == 0 => return self.close(svc, key, "closing, all replies sent"),
            _ => {}
        }
        debug!(
            "{} tok={key}: {dropped} bytes of requests left unanswered; lingering",
            self.role
        );
        if let Err(e) = conn.linger(
            "FIN after the last reply; reading and dropping what the peer still sends",
            "all replies sent, requests left unread",
        ) {
            return self.io_failed(svc, key, "shutdown", &e);
        }
        if matches!(outcome, ReadOutcome::Yielded) {
            self.requeue.push((key, conn.gen));
        }
        if let Err(e) = conn.update_interest(&self.registry) {
            warn!("{} tok={key}: reregister: {e}", self.role);
            self.close(svc, key, "reregister failed");
        }
    }

    /// A read or write failed: the connection is dead. A peer that simply
    /// went away is logged at debug, anything else at warn.
    fn io_failed<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, what: &str, e: &std::io::Error) {
        if is_peer_gone(e) {
            debug!("{} tok={key}: {what}: {e}", self.role);
        } else {
            warn!("{} tok={key}: {what}: {e}", self.role);
        }
        self.close(svc, key, &format!("{what} error"));
    }

    /// After events or new output: flush, resume a paused reader, and close
    /// when the connection is finished. Proxies call this for clients whose
    /// replies arrived from upstream.
    pub fn after_io<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, now: Instant) {
        let mut resumes = 0;
        loop {
            if !self.write_out(svc, key, now) {
                return;
            }
            let Some(conn) = self.conns.get_mut(key) else { return };
            // Work the service queued for this connection goes on once
            // the peer has taken most of its replies.
            if conn.output.len() <= self.limits.max_pending_output / 4 && svc.owes(conn) {
                let info = FrontInfo {
                    stats: &self.stats,
                    connections: self.conns.len(),
                    timers: self.timers.len(),
                };
                let conn = &mut self.conns[key];
                if svc.catch_up(conn, &info, now) {
                    resumes += 1;
                    if resumes > MAX_ROUNDS {
                        self.requeue.push((key, conn.gen));
                        break;
                    }
                    continue;
                }
            }
            let Some(conn) = self.conns.get_mut(key) else { return };
            // Resume once the peer has taken most of its replies.
            let resume = conn.paused
                && conn.output.len() + svc.owed_bytes(conn) <= self.limits.max_pending_output / 4
                && !svc.congested(conn)
                && matches!(conn.state(), State::Open | State::ReadClosed);
            if !resume {
                break;
            }
            resumes += 1;
            if resumes > MAX_ROUNDS {
                // A peer that reads as fast as it writes could keep us here:
                // finish this pass, resume it from `tick`.
                self.requeue.push((key, conn.gen));
                break;
            }
            conn.paused = false;
            trace_event!(
                conn.role,
                conn.token,
                "RESUME",
                "pending output {} bytes: reading again",
                conn.output.len()
            );
            let n = (self.conns.len(), self.timers.len());
            let conn = &mut self.conns[key];
            process(svc, conn, &self.limits, &mut self.stats, n, now);
            if conn.reading() {
                self.pump(svc, key, now);
            }
        }
        self.settle(svc, key);
    }

    /// Writes what the connection owes its peer, unless the service holds
    /// it back; false when the connection is gone (or failed and closed).
    fn write_out<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        if conn.state() == State::Lingering && !conn.output.is_empty() {
            // Its sending side is shut: nothing more can reach the peer
            // (a server's invalidation for a stopping proxy, say), and
            // a write would fail and reset the connection.
            conn.output.clear();
        }
        if !conn.output.is_empty() && !svc.hold(conn) {
            let before = conn.output.len();
            if let WriteOutcome::Error(e) = conn.flush() {
                self.io_failed(svc, key, "write", &e);
                return false;
            }
            // Activity is the peer taking bytes, not our trying.
            if conn.output.len() < before {
                conn.last_active = now;
            }
        }
        true
    }

    /// After the I/O: a half-closed or closing connection with nothing
    /// left to send or owe is closed; any other gets the interest it needs.
    fn settle<S: Service<Ext = X>>(&mut self, svc: &mut S, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else { return };
        let finished = match conn.state() {
            // Half-closed: paused, it may still hold requests to answer.
            State::ReadClosed => conn.output.is_empty() && !svc.owes(conn) && !conn.paused,
            // Closing reads nothing more, paused or not.
            State::Closing => conn.output.is_empty() && !svc.owes(conn),
            _ => false,
        };
        if finished {
            if conn.state() == State::ReadClosed {
                self.close(svc, key, "peer half-closed, all replies sent");
            } else {
                self.finish_closing(svc, key);
            }
            return;
        }
        if let Err(e) = conn.update_interest(&self.registry) {
            warn!("{} tok={key}: reregister: {e}", self.role);
            self.close(svc, key, "reregister failed");
        }
    }
}

/// Handles every whole message in `conn.input`, in order, until none is
/// left or the connection pauses.
pub(super) fn process<S: Service>(
    svc: &mut S,
    conn: &mut Conn<S::Ext>,
    limits: &Limits,
    stats: &mut FrontStats,
    (connections, timers): (usize, usize),
    now: Instant,
) {
    svc.batch_begins();
    while !conn.paused && matches!(conn.state(), State::Open | State::ReadClosed) {
        match conn.next_message(limits.max_message_bytes) {
            Frame::Complete { body, total } => {
                stats.messages += 1;
                trace_event!(
                    conn.role,
                    conn.token,
                    "DECODED",
                    "{} ({total} bytes)",
                    // A peer secret never reaches a trace.
                    String::from_utf8_lossy(&crate::peer::redact(&conn.input.data()[..body]))
                );
                let info = FrontInfo {
                    stats,
                    connections,
                    timers,
                };
                let before = conn.output.len();
                svc.on_message(conn, body, &info, now);
                if conn.output.len() > before {
                    trace_event!(
                        conn.role,
                        conn.token,
                        "QUEUED",
                        "reply queued, {} bytes to write",
                        conn.output.len()
                    );
                } else {
                    trace_event!(conn.role, conn.token, "PENDING", "{}", svc.pending_note());
                }
                conn.consume(total);
                conn.last_active = now;
            }
            Frame::Oversize(op) => {
                svc.reject(conn, op, &Problem::TooLong(limits.max_message_bytes));
                conn.last_active = now;
            }
            Frame::Incomplete => break,
        }
        let owed = conn.output.len() + svc.owed_bytes(conn);
        if owed > limits.max_pending_output || svc.congested(conn) {
            conn.paused = true;
            stats.paused += 1;
            trace_event!(
                conn.role,
                conn.token,
                "PAUSE",
                "owed {owed} bytes of replies: reading stopped (backpressure)"
            );
        }
    }
}

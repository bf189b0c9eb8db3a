//! The replies, and what fails: each reply matched to the oldest request
//! of its connection and classified (wire.rs), latencies recorded;
//! requests that time out, connections that desync or are lost, counted
//! by kind and opened again; a silent target stopping the run.

use super::load::{op_slot, Bench, Outstanding, Sent, MAX_REPLY};
use super::wire::{ErrorKind, Expect, Protocol};
use crate::conn::{read_limit, Conn, ConnectOutcome, ReadOutcome, State};
use crate::framing::Frame;
use crate::proto::Op;
use mio::event::Event;
use mio::Token;
use std::time::{Duration, Instant};

impl Bench {
    /// Whether a request that started at `start` falls in the measured
    /// window.
    fn measured_at(&self, start: Instant) -> bool {
        start >= self.measure_from && start < self.end
    }

    /// Counts one failed request (no latency: it has none).
    fn count_error(&mut self, kind: ErrorKind, op: Op) {
        *self.errors.entry(kind).or_default() += 1;
        self.op_errors[op_slot(op)] += 1;
    }

    /// A reply for connection `key`: it answers the oldest request. One
    /// with no request left to answer is a desync (`false`: the connection
    /// is opened again): the reply before it may have been an extra one
    /// too, so the last request it answered counts as failed (once: the
    /// connection's other replies are dropped with it).
    pub(super) fn on_reply(&mut self, key: usize, outcome: Option<ErrorKind>, now: Instant) -> bool {
        self.last_reply = now;
        self.answered += 1;
        let out = &mut self.conns[key].ext;
        let Some(Sent { start, op, .. }) = out.started.pop_front() else {
            if let Some(op) = out.last_ok.take() {
                self.count_error(ErrorKind::Desync, op);
                self.replied -= 1;
            }
            return false;
        };
        out.last_ok = None;
        if self.measured_at(start) && now <= self.end + Duration::from_secs(60) {
            self.measured += 1;
            self.replied += 1;
            let us = now.saturating_duration_since(start).as_micros() as u64;
            self.hist.saturating_record(us.max(1));
            self.by_op[op_slot(op)].saturating_record(us.max(1));
            match outcome {
                Some(kind) => self.count_error(kind, op),
                None => self.conns[key].ext.last_ok = Some(op),
            }
        }
        true
    }

    /// Open loop: the requests scheduled in the measured window but never
    /// sent (the target fell so far behind that the run ended first)
    /// timed out; they are counted under the mix's main operation.
    pub(super) fn fail_unsent(&mut self) {
        let Some(rate) = self.cfg.rate else { return };
        let k_at = |t: Instant| (t.saturating_duration_since(self.sched_start).as_secs_f64() * rate).ceil() as u64;
        let mut last = k_at(self.end);
        if let Some(n) = self.cfg.requests {
            last = last.min(n);
        }
        let first = self.next_k.max(k_at(self.measure_from));
        let unsent = last.saturating_sub(first);
        if unsent > 0 {
            let main = (0..3).max_by_key(|&k| self.cfg.mix[k]).unwrap_or(0);
            *self.errors.entry(ErrorKind::Timeout).or_default() += unsent;
            self.op_errors[main] += unsent;
            self.measured += unsent;
        }
    }

    /// Every request still waiting on connection `key` failed, as `kind`.
    pub(super) fn fail_outstanding(&mut self, key: usize, kind: ErrorKind) {
        let waiting = std::mem::take(&mut self.conns[key].ext.started);
        for s in waiting {
            if self.measured_at(s.start) {
                self.measured += 1;
                self.count_error(kind, s.op);
            }
        }
    }

    /// Closes connection `key` (its waiting requests failed as `kind`)
    /// and opens a new one to the same target, which the loop fills once
    /// it is connected.
    fn reopen(&mut self, key: usize, kind: ErrorKind, why: &str, now: Instant) {
        self.fail_outstanding(key, kind);
        let mut old = self.conns.remove(key);
        let target = old.peer.unwrap_or(self.cfg.connect[key % self.cfg.connect.len()]);
        old.close(self.poll.registry(), why);
        // The first few said; a target that desyncs every reply would
        // otherwise write a line per reply (the count is in the report).
        if self.reconnects < 3 {
            log::warn!("bench: connection {key}: {why}; connecting again");
        } else {
            log::debug!("bench: connection {key}: {why}; connecting again");
        }
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        match Conn::connect(
            target,
            token,
            1,
            "bench",
            self.poll.registry(),
            now,
            Outstanding::default(),
        ) {
            Ok(c) => {
                entry.insert(c);
                self.reconnects += 1;
            }
            Err(e) => {
                log::warn!("bench: connect to {target}: {e}");
                self.dead += 1;
            }
        }
    }

    /// Requests unanswered for `--timeout`: failed as timeouts, their
    /// connections opened again. When the target answered nothing at all
    /// for that long, the run stops: no request of it will be answered.
    pub(super) fn check_timeouts(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        let timeout = self.cfg.timeout;
        self.next_check = now + (timeout / 8).max(Duration::from_millis(1));
        let expired: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.ext.started.front().is_some_and(|s| now >= s.sent + timeout))
            .map(|(k, _)| k)
            .collect();
        if expired.is_empty() {
            return;
        }
        if now >= self.last_reply + timeout {
            let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
            for k in keys {
                self.fail_outstanding(k, ErrorKind::Timeout);
            }
            self.stopped = Some(format!("the target answered nothing for {} ms", timeout.as_millis()));
            return;
        }
        for k in expired {
            self.reopen(k, ErrorKind::Timeout, "a request went unanswered past --timeout", now);
        }
    }

    pub(super) fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        let key = token.0;
        let Some(conn) = self.conns.get_mut(key) else { return };
        if let State::Connecting { .. } = conn.state() {
            match conn.on_connect_event(self.poll.registry()) {
                ConnectOutcome::Connected => {}
                ConnectOutcome::Pending => return,
                ConnectOutcome::Failed(e) => {
                    let to = conn.peer.map_or("?".to_string(), |a| a.to_string());
                    log::warn!("bench: connect to {to}: {e}");
                    conn.close(self.poll.registry(), "connect failed");
                    self.dead += 1;
                    return;
                }
            }
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            let (outcome, desync) = self.read_replies(key, now);
            let mut outcomes = std::mem::take(&mut self.outcomes);
            let mut in_step = true;
            for o in outcomes.drain(..) {
                if !self.on_reply(key, o, now) {
                    in_step = false;
                    break;
                }
            }
            outcomes.clear();
            self.outcomes = outcomes;
            if desync || !in_step {
                let why = if desync {
                    "a reply longer than any should be"
                } else {
                    "more replies than requests"
                };
                return self.reopen(key, ErrorKind::Desync, why, now);
            }
            if matches!(outcome, ReadOutcome::Eof | ReadOutcome::Error(_)) {
                return self.reopen(key, ErrorKind::Lost, "closed by the target", now);
            }
        }
        if self.cfg.rate.is_none() {
            self.refill_closed(key, now);
        } else if self.has_room(key) && self.free_since.is_none() {
            self.free_since = Some(now);
        }
    }

    /// Reads connection `key`'s replies into `self.outcomes`, each
    /// classified against the request it answers (wire.rs). True beside
    /// the outcome when a reply is longer than any should be (a desync).
    fn read_replies(&mut self, key: usize, now: Instant) -> (ReadOutcome, bool) {
        let conn = &mut self.conns[key];
        let outcomes = &mut self.outcomes;
        let foreign = &mut self.foreign;
        let (proto, keys, preloaded) = (self.cfg.protocol, self.cfg.batch, self.cfg.preload);
        let mut desync = false;
        let read = conn.read_pass(&mut self.scratch, read_limit(MAX_REPLY), usize::MAX, now, |c| loop {
            let want = c.ext.started.get(outcomes.len()).map_or(Op::Get, |s| s.op);
            let want = Expect {
                op: want,
                keys,
                preloaded,
            };
            let (len, total, err) = if proto == Protocol::Line {
                match c.next_message(MAX_REPLY) {
                    Frame::Complete { body, total } => (body, total, super::wire::line_error(&c.input.data()[..body])),
                    Frame::Oversize(_) => {
                        desync = true;
                        return false;
                    }
                    Frame::Incomplete => return true,
                }
            } else {
                match super::wire::reply(proto, c.input.data(), want) {
                    Some((len, err)) => (len, len, err),
                    None if c.input.len() > MAX_REPLY => {
                        desync = true;
                        return false;
                    }
                    None => return true,
                }
            };
            if err == Some(ErrorKind::Foreign) && foreign.is_none() {
                *foreign = Some(super::wire::foreign_message(proto, &c.input.data()[..len]));
            }
            outcomes.push(err);
            if proto == Protocol::Line {
                c.consume(total);
            } else {
                c.input.consume(total);
            }
        });
        (read, desync)
    }
}

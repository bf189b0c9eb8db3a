//! Reading: the read pass every node uses (edge-triggered rules: read until
//! WouldBlock), handing whole messages to the node through the framer,
//! and the pause timer that ends a bare message.

use super::{BarePause, Conn, ConnEvent, ReadOutcome, State, KEEP_IDLE_BYTES, READ_CHUNK};
use crate::buffer::Buffer;
use crate::framing::Frame;
use crate::trace_event;
use log::debug;
use std::io::{self, Read};
use std::time::{Duration, Instant};

impl<X> Conn<X> {
    /// Lends the node's scratch buffer as `input` when `input` holds
    /// nothing, so a connection owns read memory only while a message is
    /// half received.
    fn borrow_scratch(&mut self, scratch: &mut Buffer) {
        if !self.borrowed && self.input.is_empty() && scratch.capacity() > self.input.capacity() {
            std::mem::swap(&mut self.input, scratch);
            self.borrowed = true;
        }
    }

    /// Gives the scratch buffer back, keeping a copy of any partial message.
    fn return_scratch(&mut self, scratch: &mut Buffer) {
        if !self.borrowed {
            self.input.release(KEEP_IDLE_BYTES);
            return;
        }
        self.borrowed = false;
        std::mem::swap(&mut self.input, scratch);
        if !scratch.is_empty() {
            self.input.extend(scratch.data());
            scratch.clear();
        }
    }

    /// Reads until WouldBlock, EOF, an error, or `input` holds `limit`
    /// bytes (`Full`). Retries on `Interrupted`.
    fn fill(&mut self, limit: usize, now: Instant) -> (usize, ReadOutcome) {
        let mut total = 0;
        let outcome = loop {
            let room = limit.saturating_sub(self.input.len());
            if room == 0 {
                break ReadOutcome::Full;
            }
            let space = self.input.space(room.min(READ_CHUNK));
            let want = space.len().min(room);
            match self.sock.read(&mut space[..want]) {
                Ok(0) => break ReadOutcome::Eof,
                Ok(n) => {
                    self.input.fill(n);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::WouldBlock,
                Err(e) => break ReadOutcome::Error(e),
            }
        };
        if total > 0 {
            self.last_bytes = now;
        }
        trace_event!(
            self.role,
            self.token,
            "READABLE",
            "read={total} then {}",
            outcome.name()
        );
        (total, outcome)
    }

    /// Reads and drops what the peer sends (a `Lingering` connection's
    /// unanswered requests), until WouldBlock, EOF, an error, or
    /// `max_rounds` chunks (`Yielded`: fairness, come back without an
    /// edge). Returns the bytes dropped, the input buffer's included.
    pub fn discard_input(&mut self, scratch: &mut Buffer, max_rounds: usize) -> (usize, ReadOutcome) {
        let mut dropped = self.input.len();
        self.input.clear();
        let space = scratch.space(READ_CHUNK);
        let mut rounds = 0;
        let outcome = loop {
            if rounds == max_rounds {
                break ReadOutcome::Yielded;
            }
            match self.sock.read(space) {
                Ok(0) => break ReadOutcome::Eof,
                Ok(n) => {
                    dropped += n;
                    rounds += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break ReadOutcome::WouldBlock,
                Err(e) => break ReadOutcome::Error(e),
            }
        };
        trace_event!(
            self.role,
            self.token,
            "READABLE",
            "read={dropped} dropped (closing) then {}",
            outcome.name()
        );
        if matches!(outcome, ReadOutcome::Eof) {
            // Already done sending (Lingering): both directions are shut
            // now, and the owner closes; no state to move to but Closed.
            trace_event!(self.role, self.token, "PEER_FIN", "read returned 0: peer closed too");
        }
        (dropped, outcome)
    }

    /// One read pass, the one every node uses: read until WouldBlock (the
    /// edge is consumed), handing the input to `handle` after every read so
    /// complete messages are taken as they arrive and the buffer stays
    /// bounded by `limit`. Ends early when `handle` returns false or reading
    /// pauses (`Stopped`), or after `max_rounds` full buffers (`Yielded`:
    /// fairness, come back without an edge). EOF ends a bare message (it is
    /// handed over once more) and moves the connection to `ReadClosed`.
    pub fn read_pass(
        &mut self,
        scratch: &mut Buffer,
        limit: usize,
        max_rounds: usize,
        now: Instant,
        mut handle: impl FnMut(&mut Self) -> bool,
    ) -> ReadOutcome {
        self.borrow_scratch(scratch);
        let mut rounds = 0;
        let outcome = loop {
            if !self.reading() {
                break ReadOutcome::Stopped;
            }
            let (_, outcome) = self.fill(limit, now);
            if matches!(outcome, ReadOutcome::Eof) && self.framer.waits_for_pause(&self.input) {
                // FIN ends a bare message as surely as a pause.
                self.framer.end_burst();
            }
            if !handle(self) {
                break match outcome {
                    ReadOutcome::Eof | ReadOutcome::Error(_) => outcome,
                    _ => ReadOutcome::Stopped,
                };
            }
            match outcome {
                ReadOutcome::Full => {
                    rounds += 1;
                    if rounds >= max_rounds {
                        trace_event!(self.role, self.token, "YIELD", "{rounds} full reads: later");
                        break ReadOutcome::Yielded;
                    }
                }
                other => break other,
            }
        };
        self.return_scratch(scratch);
        if matches!(outcome, ReadOutcome::Eof) {
            trace_event!(self.role, self.token, "PEER_FIN", "read returned 0: peer half-closed");
            if let Err(e) = self.transition(ConnEvent::PeerFin, "peer sent FIN") {
                return ReadOutcome::Error(e);
            }
        }
        outcome
    }

    /// The next whole message in `input` (see [`crate::framing::Framer::next`]); a framing
    /// decision is logged and traced.
    pub fn next_message(&mut self, max: usize) -> Frame {
        let frame = self.framer.next(&mut self.input, max);
        if let Some((to, why)) = self.framer.take_decision() {
            if crate::trace::enabled() {
                trace_event!(self.role, self.token, "FRAMING", "{to:?} ({why})");
            } else {
                debug!(
                    "{} tok={}: framing {to:?} ({why})",
                    self.role,
                    crate::trace::TokenName(self.token)
                );
            }
        }
        frame
    }

    /// Drops a handled message from the front of `input`.
    pub fn consume(&mut self, total: usize) {
        self.framer.consume(&mut self.input, total);
    }

    /// Ends the message just encoded into `output` with this connection's
    /// terminator.
    #[inline]
    pub fn end_message(&mut self) {
        self.output.extend(self.framer.framing().terminator());
    }

    /// When a pause timer should fire for this connection, if one is
    /// needed now and not already set (bare or undecided framing with a
    /// message begun). Marks it set.
    pub fn bare_timer_due(&mut self, idle: Duration) -> Option<Instant> {
        if self.bare_at.is_some() || self.state != State::Open || !self.framer.waits_for_pause(&self.input) {
            return None;
        }
        self.bare_at = Some(self.last_bytes + idle);
        self.bare_at
    }

    /// When the pause timer set for this connection is due, if one is set
    /// (to cancel it when the connection closes).
    pub fn bare_deadline(&self) -> Option<Instant> {
        self.bare_at
    }

    /// The pause timer fired: has the peer been quiet for `idle`? If so the
    /// buffered bytes are one message (the framer is told).
    pub fn bare_timer_fired(&mut self, now: Instant, idle: Duration) -> BarePause {
        self.bare_at = None;
        if !self.framer.waits_for_pause(&self.input) {
            return BarePause::Nothing;
        }
        let due = self.last_bytes + idle;
        if now < due {
            self.bare_at = Some(due);
            return BarePause::Rearm(due);
        }
        self.framer.end_burst();
        BarePause::Ended
    }
}

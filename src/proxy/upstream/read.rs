//! Reading the upstream: every whole reply is paired with the head of the
//! in-flight FIFO, checked to be its answer ([`UpReq::check_reply`]), and
//! handed on as an event.

use super::*;
use crate::proto::{Op, Problem, Reply};

impl UpReq {
    /// Whether `r` can be this request's reply: the same operation, a code
    /// that is an answer, and for a success the same indices (and for a PUT
    /// the same values) as sent, where the reply names them (a naive server
    /// may answer only `CODE=200`). `Err` says why not: the connection is
    /// out of step and must be reset.
    pub fn check_reply(&self, r: &Reply) -> Result<(), String> {
        let expect = self.kind.op();
        if r.op.is_some_and(|op| op != expect) {
            return Err(format!(
                "a {} reply to a {expect} request",
                r.op.map(|o| o.name()).unwrap_or("?")
            ));
        }
        if !r.is_answer() {
            return Err(format!("CODE={} is not an answer", r.code));
        }
        if !r.is_ok() {
            return Ok(());
        }
        let names = |ind: &[i64], data: Option<&[i64]>| {
            (!r.has_ind || r.ind == ind) && data.is_none_or(|d| !r.has_data || r.data == d)
        };
        match &self.kind {
            UpKind::Fetch(ind) if r.data.len() != ind.len() || !names(ind, None) => {
                Err(format!("a GET reply for other indices than {}", short(ind)))
            }
            UpKind::Put(ind, data) if !names(ind, Some(data)) => {
                Err(format!("a PUT reply for another write than {}", short(ind)))
            }
            UpKind::Ping if r.data.len() != 1 || !names(&[0], None) => {
                Err("a GET reply for other indices than [0]".into())
            }
            UpKind::Ack(seq) if r.seq.is_some_and(|s| s != *seq) => {
                Err(format!("an ACK reply for SEQ other than {seq}"))
            }
            _ => Ok(()),
        }
    }
}

/// A list for a log line: its first few items.
fn short(v: &[i64]) -> String {
    let head: Vec<String> = v.iter().take(8).map(|i| i.to_string()).collect();
    let more = if v.len() > 8 { ",..." } else { "" };
    format!("[{}{more}]", head.join(","))
}

/// Why reading stopped before the socket was drained.
enum Stop {
    /// The outbox is at its bound: go on once the node has taken it.
    Full,
    /// The connection is out of step: reset it.
    Broken(String),
}

impl Upstream {
    /// One read pass: reads, and pairs every whole reply with the head of
    /// the queue, recording it in the outbox; then the end of the pass
    /// (the ACK of the invalidations applied, a close, a bare pause).
    pub(super) fn read(&mut self, now: Instant) {
        // The connection and the scratch buffer are lent out of `self` for
        // the pass, so that pairing can use the rest of it.
        let Some(mut conn) = self.conn.take() else { return };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut stop = None;
        let outcome = match self.paused.take() {
            // Reading stopped at the outbox's bound after the connection
            // ended: only its input is left to take.
            Some(Some(ended)) => {
                self.take_replies(&mut conn, now, &mut stop);
                ended
            }
            _ => conn.read_pass(&mut scratch, read_limit(MAX_UPSTREAM_REPLY), usize::MAX, now, |c| {
                self.take_replies(c, now, &mut stop)
            }),
        };
        (self.scratch, self.conn) = (scratch, Some(conn));
        if self.framing == Framing::Bare && self.sent == 0 && !self.inflight.is_empty() {
            // A bare server gets the next request only once it answered.
            self.write_next_bare(0);
        }
        match stop {
            Some(Stop::Broken(why)) => return self.reset_live(code::BAD_GATEWAY, &why, now),
            Some(Stop::Full) => {
                let ended = matches!(outcome, ReadOutcome::Eof | ReadOutcome::Error(_));
                self.paused = Some(ended.then_some(outcome));
                return;
            }
            None => {}
        }
        self.pass_ended(outcome, now);
    }

    /// Acknowledges the invalidations the node has applied (every one
    /// taken from the outbox): one ACK for all of them, written at the next
    /// flush. The node calls it after taking the events, so the ACK never
    /// leaves before the cache has dropped what it confirms.
    pub fn acknowledge(&mut self, now: Instant) {
        if self.line.applied > self.line.acked && self.out.is_empty() && self.connected() {
            self.line.acked = self.line.applied;
            self.send(UpReq::own(UpKind::Ack(self.line.applied), now), now);
        }
    }

    /// Takes every whole reply in `c`'s input: false stops the pass (`stop`
    /// says why).
    fn take_replies(&mut self, c: &mut Conn<()>, now: Instant, stop: &mut Option<Stop>) -> bool {
        loop {
            if self.out.is_full() {
                *stop = Some(Stop::Full);
                return false;
            }
            let (body, total) = match c.next_message(MAX_UPSTREAM_REPLY) {
                Frame::Complete { body, total } => (body, total),
                Frame::Incomplete => return true,
                Frame::Oversize(_) => {
                    *stop = Some(Stop::Broken("upstream reply too long".into()));
                    return false;
                }
            };
            let reply = self.out.slot();
            let parsed = reply.parse(&c.input.data()[..body]);
            trace_event!(
                self.role,
                UPSTREAM,
                "DECODED",
                "{} ({total} bytes)",
                String::from_utf8_lossy(&c.input.data()[..body])
            );
            c.consume(total);
            if let Err(why) = self.take_reply(parsed, now) {
                *stop = Some(Stop::Broken(format!("upstream out of step: {why}")));
                return false;
            }
        }
    }

    /// Takes the reply just parsed into the outbox's slot: an unasked
    /// invalidation, or the answer to the head of the queue. `Err` says why
    /// it is neither.
    fn take_reply(&mut self, parsed: Result<(), Problem>, now: Instant) -> Result<(), String> {
        let reply = self.out.slot();
        if parsed.is_ok() && reply.op == Some(Op::Inv) {
            // Unasked, in order with the replies: applied in its turn.
            return match reply.seq {
                Some(seq) if seq > self.line.applied => {
                    self.line.applied = seq;
                    self.out.invalidated();
                    Ok(())
                }
                _ => Err("an INV without a new SEQ".into()),
            };
        }
        if let Err(p) = parsed {
            return Err(format!("unreadable reply ({p})"));
        }
        // The oldest request on the wire is what it answers: a reply while
        // none is (a fetch may be queued, not yet written) answers nothing.
        let shareable = match self.inflight.front().filter(|_| self.sent > 0) {
            Some(head) => {
                head.check_reply(reply)?;
                matches!(&head.kind, UpKind::Fetch(ind) if 21 * ind.len() <= self.batch_max)
            }
            None => return Err("a reply with no request on the wire".into()),
        };
        if shareable && reply.code == code::TOO_LARGE {
            // A fetch within the batch bound refused as too long: the
            // server's --max-message-bytes is below the bound, and each
            // read's fetch goes alone from now on (the reads waiting on
            // this one, and on any grown fetch already sent, get the 413).
            warn!(
                "proxy upstream {}: a batched GET was refused as too long: batching is off; give the proxy an --upstream-batch-bytes under the server's --max-message-bytes",
                self.addr
            );
            self.batch_max = 0;
        }
        if reply.is_ok() {
            // Indices the server answered: from now on they may be batched.
            let most = self.inflight.front().and_then(|r| r.kind.indices().iter().max());
            self.known = self.known.max(most.copied().unwrap_or(-1));
        }
        if reply.code == code::UNAVAILABLE {
            // A 503 is what a server at its connection limit says before
            // it closes: the backoff keeps growing.
            self.line.refused = true;
        } else {
            // The server answers: it works.
            self.line.replies += 1;
            self.backoff.answered();
        }
        self.line.last_io = now;
        self.sent = self.sent.saturating_sub(1);
        self.answered_head();
        Ok(())
    }

    /// The head of the FIFO is answered by the reply in the outbox's slot.
    fn answered_head(&mut self) {
        if let Some(req) = self.inflight.pop_front() {
            self.inflight_bytes = self.inflight_bytes.saturating_sub(req.kind.wire_bytes());
            self.out.answered(req);
        }
    }

    /// The end of a read pass: a close by the server (an idle close is
    /// reconnected at once, and may teach its idle policy), an error, or a
    /// bare reply waiting for its pause.
    fn pass_ended(&mut self, outcome: ReadOutcome, now: Instant) {
        match outcome {
            ReadOutcome::Eof => {
                let close = Close {
                    quiet: now.saturating_duration_since(self.line.last_io),
                    open_for: now.saturating_duration_since(self.line.opened),
                    replies: self.line.replies,
                    refused: self.line.refused,
                    idle: self.inflight.is_empty(),
                };
                let (idle_close, learned) = self.idle.closed(close);
                if let Some(k) = learned {
                    info!(
                        "proxy upstream {}: closed after {} ms of silence; keepalive every {} ms",
                        self.addr,
                        close.quiet.as_millis(),
                        k.as_millis()
                    );
                }
                self.reset(code::BAD_GATEWAY, "upstream connection lost", now);
                if idle_close && !self.stopping {
                    self.connect(now);
                }
            }
            ReadOutcome::Error(e) => {
                let lvl = if is_peer_gone(&e) { "lost" } else { "failed" };
                self.reset(code::BAD_GATEWAY, &format!("upstream connection {lvl}: {e}"), now);
            }
            _ => {
                if let Some(at) = self.conn.as_mut().and_then(|c| c.bare_timer_due(self.bare_idle)) {
                    self.timers.add(at, UpTimer::BareIdle, UPSTREAM.0, self.gen);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Op;
    use crate::proxy::pending::Waiter;

    fn req(kind: UpKind) -> UpReq {
        UpReq {
            kind,
            seq: 0,
            waiter: Waiter { key: 0, gen: 1, seq: 0 },
            op: Op::Get,
            queued: Instant::now(),
        }
    }

    #[test]
    fn a_reply_must_match_the_head() {
        let mut r = Reply::default();
        let fetch = req(UpKind::Fetch(vec![3, 4]));
        r.parse(b"OP=GET;IND=3,4;DATA=1,2;CODE=200").unwrap();
        assert!(fetch.check_reply(&r).is_ok());
        r.parse(b"OP=GET;IND=4,3;DATA=1,2;CODE=200").unwrap();
        assert!(fetch.check_reply(&r).is_err(), "other indices");
        r.parse(b"OP=GET;DATA=1;CODE=200").unwrap();
        assert!(fetch.check_reply(&r).is_err(), "too few values");
        r.parse(b"OP=PUT;IND=3;DATA=1;CODE=200").unwrap();
        assert!(fetch.check_reply(&r).is_err(), "another operation");
        r.parse(b"OP=GET;CODE=400;MSG=no").unwrap();
        assert!(fetch.check_reply(&r).is_ok(), "an error is an answer");
        r.parse(b"OP=CLR;CODE=200").unwrap();
        assert!(req(UpKind::Clr).check_reply(&r).is_ok());
        let put = req(UpKind::Put(vec![1], vec![5]));
        r.parse(b"OP=PUT;IND=1;DATA=5;CODE=200").unwrap();
        assert!(put.check_reply(&r).is_ok());
        r.parse(b"CODE=200").unwrap();
        assert!(put.check_reply(&r).is_ok(), "a naive server's bare success");
        r.parse(b"OP=PUT;IND=3;DATA=777;CODE=200").unwrap();
        assert!(put.check_reply(&r).is_err(), "another write's ack");
        r.parse(b"OP=PUT;IND=1;DATA=6;CODE=200").unwrap();
        assert!(put.check_reply(&r).is_err(), "another value");
        for code in [0, 100, 204, 302, 600] {
            r.parse(format!("OP=PUT;CODE={code}").as_bytes()).unwrap();
            assert!(put.check_reply(&r).is_err(), "CODE={code}");
        }
        assert!(r.parse(b"OP=PUT;CODE=400;CODE=200").is_err(), "two codes");
    }

    #[test]
    fn a_keepalive_and_an_ack_take_only_their_own_answers() {
        let mut r = Reply::default();
        let ping = req(UpKind::Ping);
        for ok in ["OP=GET;IND=0;DATA=7;CODE=200", "OP=GET;DATA=7;CODE=200"] {
            r.parse(ok.as_bytes()).unwrap();
            assert!(ping.check_reply(&r).is_ok(), "{ok}");
        }
        for bad in [
            "OP=GET;DATA=7,8;CODE=200",
            "OP=GET;IND=0,1;DATA=7,8;CODE=200",
            "OP=GET;IND=1;DATA=7;CODE=200",
            "OP=GET;CODE=200",
        ] {
            r.parse(bad.as_bytes()).unwrap();
            assert!(ping.check_reply(&r).is_err(), "{bad}");
        }
        let ack = req(UpKind::Ack(3));
        r.parse(b"OP=ACK;SEQ=3;CODE=200").unwrap();
        assert!(ack.check_reply(&r).is_ok());
        r.parse(b"OP=ACK;CODE=200").unwrap();
        assert!(ack.check_reply(&r).is_ok(), "a bare success");
        r.parse(b"OP=ACK;SEQ=2;CODE=200").unwrap();
        assert!(ack.check_reply(&r).is_err(), "another ACK's answer");
    }

    #[test]
    fn a_long_list_is_cut_for_the_log() {
        assert_eq!(short(&[]), "[]");
        assert_eq!(short(&[3, -4]), "[3,-4]");
        assert_eq!(short(&[0, 1, 2, 3, 4, 5, 6, 7]), "[0,1,2,3,4,5,6,7]");
        assert_eq!(short(&[0, 1, 2, 3, 4, 5, 6, 7, 8]), "[0,1,2,3,4,5,6,7,...]");
    }
}

//! Reading the upstream: every whole reply is paired with the head of the
//! in-flight FIFO, checked to be its answer ([`UpReq::check_reply`]), and
//! handed on as an event.

use super::*;
use crate::proto::{Op, Reply};

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

impl Upstream {
    /// Reads and pairs every whole reply with the head of the queue.
    pub(super) fn read(&mut self, now: Instant, sink: &mut impl FnMut(UpEvent)) {
        let Some(conn) = self.conn.as_mut() else { return };
        let mut broken: Option<String> = None;
        let applied = &mut self.applied;
        let secret = self.secret.as_ref();
        let inflight_bytes = &mut self.inflight_bytes;
        let role = self.role;
        let to_announce = &mut self.announce;
        let (inflight, sent, replies, refused, reply, backoff, last_io, last_wait) = (
            &mut self.inflight,
            &mut self.sent,
            &mut self.replies,
            &mut self.refused,
            &mut self.reply,
            &mut self.backoff,
            &mut self.last_io,
            &mut self.last_wait,
        );
        let outcome = conn.read_pass(
            &mut self.scratch,
            read_limit(MAX_UPSTREAM_REPLY),
            usize::MAX,
            now,
            |c| loop {
                let (body, total) = match c.next_message(MAX_UPSTREAM_REPLY) {
                    Frame::Complete { body, total } => (body, total),
                    Frame::Incomplete => return true,
                    Frame::Oversize(_) => {
                        broken = Some("upstream reply too long".into());
                        return false;
                    }
                };
                let parsed = reply.parse(&c.input.data()[..body]);
                trace_event!(
                    role,
                    UPSTREAM,
                    "DECODED",
                    "{}",
                    String::from_utf8_lossy(&c.input.data()[..body])
                );
                c.consume(total);
                if parsed.is_ok() && reply.op == Some(Op::Inv) {
                    // Unasked, in order with the replies: apply it now.
                    match reply.seq {
                        Some(seq) if seq > *applied => {
                            *applied = seq;
                            sink(UpEvent::Invalidated(reply));
                            continue;
                        }
                        _ => {
                            broken = Some("upstream out of step: an INV without a new SEQ".into());
                            return false;
                        }
                    }
                }
                let paired = match (parsed, inflight.front()) {
                    (Err(p), _) => Err(format!("unreadable reply ({p})")),
                    (Ok(()), None) => Err("a reply with no request in flight".into()),
                    (Ok(()), Some(head)) => head.check_reply(reply),
                };
                if let Err(why) = paired {
                    broken = Some(format!("upstream out of step: {why}"));
                    return false;
                }
                let Some(req) = inflight.pop_front() else { return false };
                *sent = sent.saturating_sub(1);
                *inflight_bytes = inflight_bytes.saturating_sub(req.kind.wire_bytes());
                if reply.code != code::UNAVAILABLE {
                    // The server answers: it works. (A 503 is what a server
                    // at its connection limit says before it closes: the
                    // backoff keeps growing.)
                    *replies += 1;
                    *backoff = BACKOFF_MIN;
                    *last_wait = Duration::ZERO;
                } else {
                    *refused = true;
                }
                *last_io = now;
                if *sent == 0 {
                    // A bare server gets the next request only now.
                    if let Some(next) = inflight.front() {
                        write_request(c, &next.kind, secret);
                        super::announce(to_announce, next);
                        *sent = 1;
                    }
                }
                sink(UpEvent::Answered(req, reply));
            },
        );
        if let Some(why) = broken {
            return self.reset_live(code::BAD_GATEWAY, &why, now, sink);
        }
        if self.applied > self.acked && self.connected() {
            // One ACK for every invalidation this pass applied.
            self.acked = self.applied;
            self.send(UpReq::own(UpKind::Ack(self.applied), now), now);
        }
        match outcome {
            ReadOutcome::Eof => {
                // A server that closes a connection with nothing in flight,
                // after answering (many naive servers close after each
                // reply) or after a quiet spell (an idle timeout), is
                // working: reconnect at once, so no client sees a 503. One
                // that closes at once, unasked, or after saying 503 (it is
                // refusing, however slowly it closes) is retried with backoff.
                let quiet = now.saturating_duration_since(self.last_io);
                let idle_close = self.inflight.is_empty()
                    && !self.refused
                    && (self.replies > 0 || now.saturating_duration_since(self.opened) >= IDLE_CLOSE_MIN);
                if idle_close && quiet >= LEARN_IDLE_MIN {
                    // Learn the server's idle policy: from now on, never
                    // stay quiet for more than a third of what it allowed.
                    let k = (quiet / 3).max(KEEPALIVE_MIN);
                    // The latest close is the policy now (it may have
                    // changed, or the last one was not an idle close).
                    self.keepalive = Some(k);
                    info!(
                        "proxy upstream {}: closed after {} ms of silence; keepalive every {} ms",
                        self.addr,
                        quiet.as_millis(),
                        k.as_millis()
                    );
                }
                self.reset(code::BAD_GATEWAY, "upstream connection lost", now, sink);
                if idle_close && !self.stopping {
                    self.connect(now);
                }
            }
            ReadOutcome::Error(e) => {
                let lvl = if is_peer_gone(&e) { "lost" } else { "failed" };
                self.reset(code::BAD_GATEWAY, &format!("upstream connection {lvl}: {e}"), now, sink);
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

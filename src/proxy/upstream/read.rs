//! Reading the upstream: every whole reply is paired with the head of the
//! in-flight FIFO, checked to be its answer, and handed on as an event.

use super::*;

impl Upstream {
    /// Reads and pairs every whole reply with the head of the queue.
    pub(super) fn read(&mut self, now: Instant, sink: &mut impl FnMut(UpEvent)) {
        let Some(conn) = self.conn.as_mut() else { return };
        let mut broken: Option<String> = None;
        let (inflight, sent, replies, reply, backoff, last_io, last_wait) = (
            &mut self.inflight,
            &mut self.sent,
            &mut self.replies,
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
                    "upstream",
                    UPSTREAM,
                    c.peer,
                    "DECODED",
                    "{}",
                    String::from_utf8_lossy(&c.input.data()[..body])
                );
                c.consume(total);
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
                *replies += 1;
                *backoff = BACKOFF_MIN; // the server answers: it works
                *last_wait = Duration::ZERO;
                *last_io = now;
                if *sent == 0 {
                    // A bare server gets the next request only now.
                    if let Some(next) = inflight.front() {
                        write_request(c, &next.kind);
                        *sent = 1;
                    }
                }
                sink(UpEvent::Answered(req, reply));
            },
        );
        if let Some(why) = broken {
            return self.reset_live(code::BAD_GATEWAY, &why, now, sink);
        }
        match outcome {
            ReadOutcome::Eof => {
                // A server that closes a connection with nothing in flight,
                // after answering (many naive servers close after each
                // reply) or after a quiet spell (an idle timeout), is
                // working: reconnect at once, so no client sees a 503. One
                // that closes at once, unasked, is retried with backoff.
                let quiet = now.saturating_duration_since(self.last_io);
                let idle_close = self.inflight.is_empty()
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

//! A LEASE answered: a grant (with the history it names, which decides a
//! resume), a refusal (ask again later), or a server without leases; and
//! the lease's arithmetic on the proxy's clock.

use super::*;

impl Lease {
    /// The first LEASE of a connection, or a retry, answered.
    pub(super) fn answered(
        &mut self,
        first: bool,
        reply: &Reply,
        sent: Instant,
        cached: bool,
        now: Instant,
    ) -> (State, Next) {
        let Some(ms) = lease_ms(reply) else {
            let (to, next) = self.refused_or_alone(reply, now);
            // A cache kept from an earlier connection is not the server's
            // business any more: under Alone it could be another server's.
            let next = match next {
                Next::Stay if first && cached => Next::Clear("the server grants no lease"),
                next => next,
            };
            return (to, next);
        };
        let length = Duration::from_millis(ms);
        let seen = reply.id.map(|id| History {
            id,
            seq: reply.seq.unwrap_or(0),
            sum: reply.sum,
        });
        let before = std::mem::replace(&mut self.known, seen);
        self.refusal = None;
        self.refusal_logged = None;
        self.warned_alone = false;
        let until = end(sent, length);
        match seen {
            Some(history) if first && cached && before == seen => {
                (State::Resuming { length, until }, Next::Resume(history))
            }
            _ => (
                State::Granted {
                    length,
                    until,
                    renewing: false,
                },
                clear_if(cached, "the server's table is another, or was written since"),
            ),
        }
    }

    /// The answer to a renewal: the lease runs from its send; a server
    /// that granted and now will not (restarted behind the same
    /// connection? a proxy in between?) leaves nothing cached to trust.
    pub(super) fn renewal_answered(
        &mut self,
        until: Instant,
        reply: &Reply,
        sent: Instant,
        now: Instant,
    ) -> (State, Next) {
        match lease_ms(reply) {
            Some(ms) => {
                let length = Duration::from_millis(ms);
                let until = until.max(end(sent, length));
                let renewed = State::Granted {
                    length,
                    until,
                    renewing: false,
                };
                (renewed, Next::Stay)
            }
            None => self.refused_or_alone(reply, now),
        }
    }

    /// A LEASE answer that grants none: a refusal (ask again later) or a
    /// server without leases (alone).
    pub(super) fn refused_or_alone(&mut self, reply: &Reply, now: Instant) -> (State, Next) {
        let refusal = match reply.code {
            code::FORBIDDEN => Some(Refusal::NotTrusted),
            c if c >= 500 => Some(Refusal::NoRoom),
            _ => None,
        };
        match refusal {
            Some(r) => {
                self.refusals += 1;
                self.refusal = Some(r);
                self.refusal_msg.clone_from(&reply.msg);
                (State::Refused { retry: now + RETRY }, Next::Clear("no lease granted"))
            }
            None => (State::Alone, Next::Stay),
        }
    }
}

/// The answer to a resuming LEASE: granted either way; the cache is kept
/// only if the server says so (no write since, and it tracks every index).
pub(super) fn resumed(length: Duration, until: Instant, reply: &Reply, sent: Instant) -> (State, Next) {
    let until = until.max(end(sent, length));
    let granted = State::Granted {
        length,
        until,
        renewing: false,
    };
    if reply.is_ok() && reply.keep == Some(true) {
        (granted, Next::Kept)
    } else {
        (
            granted,
            Next::Clear("written since, or the server would not track it again"),
        )
    }
}

/// The lease a reply grants, if it grants one.
pub(super) fn lease_ms(reply: &Reply) -> Option<u64> {
    // A lease over a day is a broken server: take a day.
    reply
        .ms
        .filter(|&ms| reply.is_ok() && ms > 0)
        .map(|ms| ms.min(MAX_LEASE_MS))
}

/// Where a lease granted to a request sent at `sent` ends on the proxy's
/// clock: 2% shorter, since two hosts' clocks may tick at slightly
/// different rates (parts per million in practice).
pub(super) fn end(sent: Instant, length: Duration) -> Instant {
    sent + length - length / 50
}

/// When a quiet lease is renewed: a third of it after the send that
/// renewed it last.
pub(super) fn renew_at(until: Instant, length: Duration) -> Instant {
    let sent = until - (length - length / 50);
    sent + (length / 3).max(Duration::from_millis(1))
}

pub(super) fn clear_if(cached: bool, why: &'static str) -> Next {
    if cached {
        Next::Clear(why)
    } else {
        Next::Stay
    }
}

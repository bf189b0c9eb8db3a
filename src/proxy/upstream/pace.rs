//! The upstream's pace, decided without sockets or a clock of its own:
//! how long to wait before a reconnect ([`Backoff`]), and the server's
//! idle policy learned from its closes, with the keepalive that honours it
//! ([`IdlePolicy`]). Every call takes the time it is about, so the tests
//! run in virtual time.

use std::time::{Duration, Instant};

/// Reconnect backoff: first wait, and the cap it doubles up to.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A server that closes a connection it has kept this long (or after
/// answering), with nothing in flight, closed it for being idle.
const IDLE_CLOSE_MIN: Duration = Duration::from_millis(20);
/// A close after at least this much silence teaches the proxy the
/// server's idle policy (a shorter one is more likely a crash or a restart
/// than a policy worth pinging for).
/// (Half a second: a proxy holding a lease renews it every third of the
/// lease, so a server that stops or restarts closes connections that have
/// been quiet for less; taking such a close for an idle policy would make
/// the proxy ping many times a second for good.)
const LEARN_IDLE_MIN: Duration = Duration::from_millis(500);
/// The shortest keepalive interval the proxy learns.
const KEEPALIVE_MIN: Duration = Duration::from_millis(30);

/// How long to wait before the next reconnect.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    /// The wait last scheduled (zero once the server has answered since).
    last: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_MIN,
            last: Duration::ZERO,
        }
    }
}

impl Backoff {
    /// The wait before the reconnect being scheduled; the next one doubles,
    /// up to [`BACKOFF_MAX`].
    pub fn wait(&mut self) -> Duration {
        let wait = self.next;
        self.last = wait;
        self.next = (wait * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        wait
    }

    /// The server answered (a 503 is not an answer: a server at its
    /// connection limit says it before it closes): start again from the
    /// shortest wait.
    pub fn answered(&mut self) {
        self.next = BACKOFF_MIN;
        self.last = Duration::ZERO;
    }

    /// The wait last scheduled, zero once the server has answered since.
    pub fn last(&self) -> Duration {
        self.last
    }
}

/// How a connection the server closed ended.
#[derive(Debug, Clone, Copy)]
pub struct Close {
    /// How long the connection had carried nothing.
    pub quiet: Duration,
    /// How long it had been open.
    pub open_for: Duration,
    /// Replies received on it (503s not counted).
    pub replies: u64,
    /// The server said 503 on it: it was refusing.
    pub refused: bool,
    /// Nothing was in flight.
    pub idle: bool,
}

/// The server's idle policy, as learned: how long the connection may stay
/// quiet before the proxy asks the server something.
#[derive(Debug, Default)]
pub struct IdlePolicy {
    keepalive: Option<Duration>,
}

/// What the keepalive timer does now.
#[derive(Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Send a ping, and check again at this time.
    Ping(Instant),
    /// Not due: check again at this time.
    Check(Instant),
}

impl IdlePolicy {
    /// The longest the connection may stay quiet, once learned.
    pub fn limit(&self) -> Option<Duration> {
        self.keepalive
    }

    /// A close by the server. A server that closes a connection with
    /// nothing in flight, after answering (many naive servers close after
    /// each reply) or after a quiet spell (an idle timeout), is working:
    /// true means reconnect at once, so no client sees a 503. One that
    /// closes at once, unasked, or after saying 503 (it is refusing,
    /// however slowly it closes) is retried with backoff. A close after a
    /// long silence teaches the policy: from then on, never stay quiet for
    /// more than a third of what the server allowed (the latest close is
    /// the policy: it may have changed). Returns the interval learned, if
    /// this close taught one, beside the verdict.
    pub fn closed(&mut self, c: Close) -> (bool, Option<Duration>) {
        let idle_close = c.idle && !c.refused && (c.replies > 0 || c.open_for >= IDLE_CLOSE_MIN);
        let mut learned = None;
        if idle_close && c.quiet >= LEARN_IDLE_MIN {
            let k = (c.quiet / 3).max(KEEPALIVE_MIN);
            self.keepalive = Some(k);
            learned = Some(k);
        }
        (idle_close, learned)
    }

    /// The keepalive timer fired at `now`; the connection last carried
    /// something at `last_io`, and `idle` says nothing is in flight. `None`
    /// when no policy is learned.
    pub fn keepalive(&self, last_io: Instant, idle: bool, now: Instant) -> Option<KeepAlive> {
        let k = self.keepalive?;
        let due = last_io + k;
        Some(if now >= due && idle {
            KeepAlive::Ping(now + k)
        } else {
            // Not quiet long enough, or waiting on a reply (which is I/O
            // to come): look again when it could be due, and not in a spin.
            KeepAlive::Check(due.max(now + k / 4))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_backoff_doubles_to_its_cap_and_restarts_on_an_answer() {
        let mut b = Backoff::default();
        assert_eq!(b.last(), Duration::ZERO);
        let waits: Vec<u128> = (0..8).map(|_| b.wait().as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.last(), ms(2000));
        b.answered();
        assert_eq!(b.last(), Duration::ZERO);
        assert_eq!(b.wait(), ms(50));
    }

    fn close(quiet: u64, open_for: u64, replies: u64) -> Close {
        Close {
            quiet: ms(quiet),
            open_for: ms(open_for),
            replies,
            refused: false,
            idle: true,
        }
    }

    #[test]
    fn a_close_after_a_long_silence_teaches_the_policy() {
        let mut p = IdlePolicy::default();
        assert_eq!(p.limit(), None);
        assert_eq!(p.closed(close(900, 5000, 3)), (true, Some(ms(300))));
        assert_eq!(p.limit(), Some(ms(300)));
        // The latest idle close is the policy.
        assert_eq!(p.closed(close(3000, 9000, 0)), (true, Some(ms(1000))));
        assert_eq!(p.limit(), Some(ms(1000)));
        // The shortest silence that teaches is half a second.
        let mut p = IdlePolicy::default();
        assert_eq!(p.closed(close(500, 600, 1)).1, Some(ms(500) / 3));
        p.keepalive = None;
        assert_eq!(p.closed(close(60, 600, 1)).1, None, "too short to learn");
    }

    #[test]
    fn a_close_that_is_not_idle_teaches_nothing_and_backs_off() {
        let mut p = IdlePolicy::default();
        // At once, unasked: a refusal or a crash.
        assert_eq!(p.closed(close(5, 5, 0)), (false, None));
        // With requests in flight.
        assert_eq!(
            p.closed(Close {
                idle: false,
                ..close(900, 5000, 3)
            }),
            (false, None)
        );
        // After saying 503.
        assert_eq!(
            p.closed(Close {
                refused: true,
                ..close(900, 5000, 3)
            }),
            (false, None)
        );
        assert_eq!(p.limit(), None);
        // After answering, even at once: a server that closes after every
        // reply works.
        assert_eq!(p.closed(close(1, 2, 1)), (true, None));
        // Kept open a while, unasked: an idle close too.
        assert_eq!(p.closed(close(20, 20, 0)), (true, None));
    }

    #[test]
    fn the_keepalive_pings_only_when_quiet_and_idle() {
        let t0 = Instant::now();
        let mut p = IdlePolicy::default();
        assert_eq!(p.keepalive(t0, true, t0 + ms(10_000)), None, "no policy, no ping");
        p.closed(close(1200, 5000, 1)); // every 400 ms
        assert_eq!(p.keepalive(t0, true, t0 + ms(400)), Some(KeepAlive::Ping(t0 + ms(800))));
        assert_eq!(
            p.keepalive(t0, true, t0 + ms(100)),
            Some(KeepAlive::Check(t0 + ms(400)))
        );
        // Due but waiting on a reply: check again a quarter later.
        assert_eq!(
            p.keepalive(t0, false, t0 + ms(500)),
            Some(KeepAlive::Check(t0 + ms(600)))
        );
        // Just checked: never sooner than a quarter of the interval.
        assert_eq!(
            p.keepalive(t0, true, t0 + ms(390)),
            Some(KeepAlive::Check(t0 + ms(490)))
        );
    }
}

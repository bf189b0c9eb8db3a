//! The proxy's half of coherence (docs/coherence.md): may the cache be
//! read now? Pure bookkeeping on the proxy's own clock.
//!
//! A coherent server grants a lease with every answer: for `L` ms from
//! when it answered. The proxy counts it from when it *sent* the request
//! (earlier), and a little shorter, so its lease always ends before the
//! server's: once the server stops waiting for this proxy (it vanished, or
//! froze), the proxy has already stopped serving from its cache.
//!
//! ```text
//!   proxy sends ──────────── server answers ──────── proxy reads answer
//!   t_send                   t_grant                  (lease until t_send + 0.98 L)
//!   │◄──────────────── proxy's lease ──────────────►│
//!                            │◄──────────────── server's lease ──────────────►│
//! ```

use std::time::{Duration, Instant};

/// The longest lease taken from a server (a day).
pub const MAX_LEASE_MS: u64 = 86_400_000;

/// How the cache may be used for the request at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The upstream grants no leases (a bare or older server): the proxy
    /// keeps the single-proxy guarantee (docs/architecture.md).
    Alone,
    /// Leased: cached entries are the server's values, except those with
    /// a write of ours in flight (the server may have applied it already,
    /// and others may have read it).
    Shared,
    /// No valid lease (not granted yet, or run out): the cache is not
    /// read, and no fetch in flight is joined.
    Lapsed,
}

/// What the proxy knows of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Connected, LEASE not answered yet.
    Asking,
    /// The server grants none.
    Refused,
    /// Leases of this length.
    Granted(Duration),
}

/// The proxy's lease.
#[derive(Debug)]
pub struct Lease {
    /// The upstream speaks line framing: LEASE is asked at every connect.
    asks: bool,
    state: State,
    until: Option<Instant>,
    /// Requests that found the lease run out (STS `LEASE_LAPSES`).
    pub lapses: u64,
    /// Invalidations applied (STS `INV_RECV`).
    pub invalidations: u64,
}

impl Lease {
    /// A proxy whose upstream speaks line framing asks for a lease at every
    /// connect; a bare one never does (`asks` false).
    pub fn new(asks: bool) -> Lease {
        Lease {
            asks,
            state: if asks { State::Asking } else { State::Refused },
            until: None,
            lapses: 0,
            invalidations: 0,
        }
    }

    /// A new connection to the server (maybe a new server): nothing
    /// granted on it yet.
    pub fn connected(&mut self) {
        if self.asks {
            self.state = State::Asking;
        }
        self.until = None;
    }

    /// The connection to the server is gone: nothing read from the cache
    /// until a new one grants a lease. (The server keeps what it sent
    /// blocked until this lease runs out, but a read that mixes a cached
    /// value with one fetched on the next connection could straddle that
    /// moment.)
    pub fn lost(&mut self) {
        if matches!(self.state, State::Granted(_)) {
            self.state = State::Asking;
            self.until = None;
        }
    }

    /// The server answered LEASE: with a lease of `ms`, or refused it
    /// (`None`). Returns true when this changes the mode.
    pub fn answered(&mut self, ms: Option<u64>, sent: Instant) -> bool {
        let before = self.state;
        self.state = match ms {
            // A lease over a day is a broken server: take a day.
            Some(ms) => State::Granted(Duration::from_millis(ms.min(MAX_LEASE_MS))),
            None => State::Refused,
        };
        self.renewed(sent);
        before != self.state
    }

    /// The server answered a request sent at `sent`: the lease runs from
    /// then.
    pub fn renewed(&mut self, sent: Instant) {
        if let State::Granted(l) = self.state {
            // 2% shorter: two hosts' clocks may tick at slightly different
            // rates (parts per million in practice).
            let end = sent + l - l / 50;
            self.until = Some(self.until.map_or(end, |u| u.max(end)));
        }
    }

    /// The mode for a request handled now: the clock is read only when a
    /// lease is held (a proxy without leases pays nothing per request).
    pub fn mode_now(&mut self) -> Mode {
        match self.state {
            State::Refused => Mode::Alone,
            State::Asking => Mode::Lapsed,
            State::Granted(_) => self.mode(Instant::now()),
        }
    }

    /// The mode for a request handled at `now`.
    pub fn mode(&mut self, now: Instant) -> Mode {
        match (self.state, self.until) {
            (State::Refused, _) => Mode::Alone,
            (State::Granted(_), Some(until)) if now < until => Mode::Shared,
            (State::Granted(_), Some(_)) => {
                self.lapses += 1;
                Mode::Lapsed
            }
            _ => Mode::Lapsed,
        }
    }

    /// The lease length, when one is granted.
    pub fn length(&self) -> Option<Duration> {
        match self.state {
            State::Granted(l) => Some(l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_runs_from_the_send_and_a_little_shorter() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        assert_eq!(l.mode(t0), Mode::Lapsed, "nothing granted yet");
        assert!(l.answered(Some(1000), t0));
        assert_eq!(l.mode(t0 + Duration::from_millis(979)), Mode::Shared);
        assert_eq!(
            l.mode(t0 + Duration::from_millis(980)),
            Mode::Lapsed,
            "0.98 L from the send"
        );
        assert_eq!(l.lapses, 1);
        // An answer to an older request does not shorten it.
        l.renewed(t0 + Duration::from_millis(500));
        l.renewed(t0 + Duration::from_millis(100));
        assert_eq!(l.mode(t0 + Duration::from_millis(1400)), Mode::Shared);
        assert_eq!(l.mode(t0 + Duration::from_millis(1480)), Mode::Lapsed);
        l.connected();
        assert_eq!(l.mode(t0), Mode::Lapsed, "a new connection starts without a lease");
        l.answered(Some(1000), t0);
        l.lost();
        assert_eq!(l.mode(t0), Mode::Lapsed, "a lost connection voids it");
        l.answered(Some(u64::MAX), t0);
        assert_eq!(
            l.length(),
            Some(Duration::from_millis(MAX_LEASE_MS)),
            "a broken MS is capped"
        );
    }

    #[test]
    fn a_server_without_leases_leaves_the_proxy_alone() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        assert!(l.answered(None, t0));
        assert_eq!(l.mode(t0 + Duration::from_secs(100)), Mode::Alone);
        l.connected();
        assert_eq!(l.mode(t0), Mode::Lapsed, "a new server is asked again");
        assert_eq!(Lease::new(false).mode(t0), Mode::Alone, "a bare upstream never asks");
        assert_eq!(Lease::new(false).mode_now(), Mode::Alone);
        let mut asking = Lease::new(true);
        assert_eq!(asking.mode_now(), Mode::Lapsed);
        asking.answered(Some(60_000), Instant::now());
        assert_eq!(asking.mode_now(), Mode::Shared);
    }
}

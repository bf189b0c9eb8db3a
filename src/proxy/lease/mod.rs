//! The proxy's half of coherence (docs/coherence.md): its session with the
//! server, as one state machine — may the cache be read now, may what is
//! fetched be kept, and what to ask the server next. Pure bookkeeping on
//! the proxy's own clock: every change goes through [`Lease::on`].
//!
//! ```text
//!            connected                 LEASE 200 (same table, cache kept)
//!   Down ─────────────► Asking ───────────────────────────────► Resuming
//!    ▲                   │  │  LEASE 200                           │ KEEP=0/1
//!    │ lost (but Alone)  │  └──────────────► Granted ◄─────────────┘
//!    │ (from any)        │ 503 / 403          │   ▲ any answer renews;
//!    │                   ▼                    │   │ quiet for L/3: LEASE
//!    │               Refused ── retry timer ──┘   └──
//!    │               (→ Asking)
//!    │                   LEASE 400 / MS=0
//!    └────────────── Asking ─────────────────► Alone (the server grants none)
//! ```
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
//!
//! The cache holds only what the server tracks for this proxy: a value is
//! kept only when its reply came after a granted LEASE on the same
//! connection (one ordered connection: the server read that LEASE first).
//! Refused, it keeps nothing, so a later grant never finds old values the
//! server does not know it holds.

mod answer;

use crate::proto::{code, History, Reply};
use crate::proxy::pending::UpKind;
use answer::{clear_if, end, renew_at, resumed};
use std::time::{Duration, Instant};

/// The longest lease taken from a server (a day).
pub const MAX_LEASE_MS: u64 = 86_400_000;
/// How long a refused proxy waits before it asks again, busy or not.
pub const RETRY: Duration = Duration::from_secs(1);

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
    /// No valid lease (not granted yet, refused, or run out): the cache is
    /// not read, and no fetch in flight is joined.
    Lapsed,
}

/// Where the session with the server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// A bare upstream: no coherence, ever.
    Bare,
    /// No connection (connecting, or lost).
    Down,
    /// A LEASE is out on this connection (the first, or a retry), not
    /// answered yet. `first`: the first of the connection (its answer
    /// decides what becomes of a cache kept from an earlier one).
    Asking {
        /// The first LEASE of the connection.
        first: bool,
    },
    /// Granted on a server whose table and write count are the ones the
    /// cache came from: a resuming LEASE is out, and its `KEEP` decides
    /// whether the cache stays. Not read meanwhile; what is fetched is
    /// kept (the server tracks this connection).
    Resuming {
        /// The lease length.
        length: Duration,
        /// Until when it runs.
        until: Instant,
    },
    /// Leases of `length`, running until `until`. `renewing`: a LEASE
    /// asked to renew it is out.
    Granted {
        /// The lease length.
        length: Duration,
        /// Until when it runs.
        until: Instant,
        /// A renewing LEASE is out.
        renewing: bool,
    },
    /// The server refused a lease (no room, or not a trusted peer): the
    /// cache is empty and not read, nothing fetched is kept, and LEASE is
    /// asked again at `retry`.
    Refused {
        /// When to ask again.
        retry: Instant,
    },
    /// The server grants no leases (`--lease-ms 0`, an older server):
    /// the single-proxy guarantee.
    Alone,
}

impl State {
    /// The name STS shows (`LEASE_STATE`).
    pub fn name(&self) -> &'static str {
        match self {
            State::Bare => "bare",
            State::Down => "down",
            State::Asking { .. } => "asking",
            State::Resuming { .. } => "resuming",
            State::Granted { .. } => "granted",
            State::Refused { .. } => "refused",
            State::Alone => "alone",
        }
    }
}

/// What moves the session.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A new connection to the server (maybe a new server); its first
    /// LEASE is queued first on it. `cached`: the cache holds entries.
    Connected {
        /// The cache holds entries.
        cached: bool,
    },
    /// The connection is gone.
    Lost,
    /// The server answered a LEASE (`resume`: the resuming one) sent at
    /// `sent`.
    Answer {
        /// The resuming LEASE's answer.
        resume: bool,
        /// The reply.
        reply: &'a Reply,
        /// When its request was sent.
        sent: Instant,
        /// The cache holds entries.
        cached: bool,
    },
    /// Any other answer, to a request sent at `sent`: the lease runs from
    /// then.
    Renewed {
        /// When its request was sent.
        sent: Instant,
    },
    /// Time passes: a refused proxy's retry, a quiet lease's renewal.
    Tick,
}

/// What the proxy does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing.
    Stay,
    /// Send this own request (a LEASE: a retry or a renewal).
    Send(UpKind),
    /// Ask the server to track the cache's entries again: a resuming
    /// LEASE naming this history, and the cached indices.
    Resume(History),
    /// Empty the cache, for this reason (logged).
    Clear(&'static str),
    /// The resume kept the cache (logged).
    Kept,
}

/// A move the session does not have: a bug, reported in release builds
/// too (the session then goes to a state that reads nothing cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Illegal {
    /// The state it happened in.
    pub state: &'static str,
    /// The event, described.
    pub event: String,
}

impl std::fmt::Display for Illegal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no move from {} on {}", self.state, self.event)
    }
}

/// Why a LEASE answer refused: a server with no room (503), or one that
/// does not count this proxy as a trusted peer (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 503: too many proxies hold leases.
    NoRoom,
    /// 403: the peer secret is missing or wrong.
    NotTrusted,
}

/// The proxy's session with the server.
#[derive(Debug)]
pub struct Lease {
    state: State,
    /// The history the cache came from (the table, its write count and
    /// history sum), as the last granted LEASE answer gave it.
    known: Option<History>,
    /// The last refusal, until a grant, and the server's words for it.
    pub refusal: Option<Refusal>,
    /// The `MSG` of the last refusal.
    pub refusal_msg: String,
    /// The refusal last logged (said once per change, not every retry).
    pub refusal_logged: Option<Refusal>,
    /// The upstream grants no leases, said once (until a grant).
    pub warned_alone: bool,
    /// Requests that found the lease run out (STS `LEASE_LAPSES`).
    pub lapses: u64,
    /// Invalidations applied (STS `INV_RECV`).
    pub invalidations: u64,
    /// LEASE answers that refused one (STS `LEASE_REFUSED`).
    pub refusals: u64,
}

impl Lease {
    /// A session; a bare upstream (`asks` false) never asks for a lease.
    pub fn new(asks: bool) -> Lease {
        Lease {
            state: if asks { State::Down } else { State::Bare },
            known: None,
            refusal: None,
            refusal_msg: String::new(),
            refusal_logged: None,
            warned_alone: false,
            lapses: 0,
            invalidations: 0,
            refusals: 0,
        }
    }

    /// The state now.
    pub fn state(&self) -> State {
        self.state
    }

    /// The one transition function: where `event` at `now` leads, and what
    /// to do next. A move the diagram does not have is an [`Illegal`].
    pub fn on(&mut self, event: Event, now: Instant) -> Result<Next, Illegal> {
        use State::*;
        let illegal = |s: State, e: &Event| Illegal {
            state: s.name(),
            event: format!("{e:?}"),
        };
        let (to, next) = match (self.state, event) {
            // A bare upstream has no session; its cache starts over at
            // every connect (it may be a new server).
            (Bare, Event::Connected { cached }) => (Bare, clear_if(cached, "on (re)connect")),
            (Bare, Event::Lost | Event::Tick) => (Bare, Next::Stay),
            (s @ Bare, e @ Event::Answer { .. }) => return Err(illegal(s, &e)),

            // A cache can outlive its connection only if a LEASE answer
            // told which table it came from (the resume decides).
            (_, Event::Connected { cached }) => {
                let next = if cached && self.known.is_none() {
                    Next::Clear("on (re)connect")
                } else {
                    Next::Stay
                };
                (Asking { first: true }, next)
            }
            // Without leases the cache never depended on the connection:
            // hits go on while the server is away (the single-proxy
            // guarantee); with them, nothing is read until a new grant.
            (Alone, Event::Lost) => (Alone, Next::Stay),
            (_, Event::Lost) => (Down, Next::Stay),

            (
                Asking { first },
                Event::Answer {
                    resume: false,
                    reply,
                    sent,
                    cached,
                },
            ) => self.answered(first, reply, sent, cached, now),
            (
                Resuming { length, until },
                Event::Answer {
                    resume: true,
                    reply,
                    sent,
                    ..
                },
            ) => resumed(length, until, reply, sent),
            (
                Granted {
                    until, renewing: true, ..
                },
                Event::Answer {
                    resume: false,
                    reply,
                    sent,
                    ..
                },
            ) => self.renewal_answered(until, reply, sent, now),
            (s, e @ Event::Answer { .. }) => return Err(illegal(s, &e)),

            (_, Event::Renewed { sent }) => {
                self.renewed(sent);
                return Ok(Next::Stay);
            }

            // Asked again on a schedule, busy or not.
            (Refused { retry }, Event::Tick) if now >= retry => (Asking { first: false }, Next::Send(UpKind::Lease)),
            // Quiet for a third of the lease: renew it (any answer would).
            (
                Granted {
                    length,
                    until,
                    renewing: false,
                },
                Event::Tick,
            ) if now >= renew_at(until, length) => (
                Granted {
                    length,
                    until,
                    renewing: true,
                },
                Next::Send(UpKind::Lease),
            ),
            (s, Event::Tick) => (s, Next::Stay),
        };
        self.state = to;
        Ok(next)
    }

    /// [`Event::Renewed`], the move of every answer: it only moves the
    /// end of a lease that runs (granted, or resuming), never the state's
    /// kind, so it needs none of [`Lease::on`]'s bookkeeping and the proxy
    /// calls it directly on its hot path.
    pub fn renewed(&mut self, sent: Instant) {
        if let State::Granted { length, until, .. } | State::Resuming { length, until } = &mut self.state {
            *until = (*until).max(end(sent, *length));
        }
    }

    /// The mode for a request handled now, `clock` read only when a lease
    /// is held (a proxy without leases pays nothing per request). The node
    /// passes the real clock (`Instant::now`), not its loop's time: a time
    /// read before the request was would let a lease that ran out since
    /// still be taken as held.
    pub fn mode_at(&mut self, clock: impl FnOnce() -> Instant) -> Mode {
        match self.state {
            State::Granted { .. } => self.mode(clock()),
            State::Bare | State::Alone => Mode::Alone,
            State::Down | State::Asking { .. } | State::Resuming { .. } | State::Refused { .. } => Mode::Lapsed,
        }
    }

    /// The mode for a request handled at `now`.
    pub fn mode(&mut self, now: Instant) -> Mode {
        match self.state {
            State::Bare | State::Alone => Mode::Alone,
            State::Granted { until, .. } if now < until => Mode::Shared,
            State::Granted { .. } => {
                self.lapses += 1;
                Mode::Lapsed
            }
            State::Down | State::Asking { .. } | State::Resuming { .. } | State::Refused { .. } => Mode::Lapsed,
        }
    }

    /// Whether a value answered now may be kept in the cache: only when
    /// the server tracks this connection (granted, or resuming after a
    /// grant), or when nobody tracks anything (alone, bare).
    pub fn keeps(&self) -> bool {
        matches!(
            self.state,
            State::Granted { .. } | State::Resuming { .. } | State::Alone | State::Bare
        )
    }

    /// The lease length, when one is granted (a resume's is taken once
    /// it is answered).
    pub fn length(&self) -> Option<Duration> {
        match self.state {
            State::Granted { length, .. } => Some(length),
            _ => None,
        }
    }

    /// When [`Event::Tick`] next has something to do: a refused proxy's
    /// retry, or a quiet lease's renewal.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Refused { retry } => Some(retry),
            State::Granted {
                length,
                until,
                renewing: false,
            } => Some(renew_at(until, length)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(s: &str) -> Reply {
        let mut r = Reply::default();
        r.parse(s.as_bytes()).unwrap();
        r
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn answer(l: &mut Lease, r: &str, sent: Instant, cached: bool) -> Next {
        let r = reply(r);
        l.on(
            Event::Answer {
                resume: false,
                reply: &r,
                sent,
                cached,
            },
            sent,
        )
        .unwrap()
    }

    #[test]
    fn the_lease_runs_from_the_send_and_a_little_shorter() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        assert_eq!(l.mode(t0), Mode::Lapsed, "nothing granted yet");
        l.on(Event::Connected { cached: false }, t0).unwrap();
        assert!(!l.keeps(), "asking: nothing fetched is kept");
        assert_eq!(answer(&mut l, "OP=LEASE;MS=1000;CODE=200", t0, false), Next::Stay);
        assert!(l.keeps());
        assert_eq!(l.mode(t0 + ms(979)), Mode::Shared);
        assert_eq!(l.mode(t0 + ms(980)), Mode::Lapsed, "0.98 L from the send");
        assert_eq!(l.lapses, 1);
        // An answer to an older request does not shorten it.
        l.on(Event::Renewed { sent: t0 + ms(500) }, t0).unwrap();
        l.on(Event::Renewed { sent: t0 + ms(100) }, t0).unwrap();
        assert_eq!(l.mode(t0 + ms(1400)), Mode::Shared);
        assert_eq!(l.mode(t0 + ms(1480)), Mode::Lapsed);
        l.on(Event::Lost, t0).unwrap();
        assert_eq!(l.mode(t0), Mode::Lapsed, "a lost connection voids it");
        assert_eq!(l.state(), State::Down);
        l.on(Event::Connected { cached: false }, t0).unwrap();
        answer(&mut l, "OP=LEASE;MS=9223372036854775807;CODE=200", t0, false);
        assert_eq!(l.length(), Some(ms(MAX_LEASE_MS)), "a broken MS is capped");
    }

    #[test]
    fn only_a_success_with_a_positive_ms_grants() {
        let t0 = Instant::now();
        for (r, state) in [
            ("OP=LEASE;MS=5;CODE=400;MSG=no", "alone"),
            ("OP=LEASE;MS=0;CODE=200", "alone"),
            ("OP=LEASE;MS=1;CODE=200", "granted"),
        ] {
            let mut l = Lease::new(true);
            l.on(Event::Connected { cached: false }, t0).unwrap();
            answer(&mut l, r, t0, false);
            assert_eq!(l.state().name(), state, "{r}");
        }
        let mut l = Lease::new(true);
        l.on(Event::Connected { cached: false }, t0).unwrap();
        answer(&mut l, "OP=LEASE;MS=60000;CODE=200", t0, false);
        assert_eq!(l.mode_at(|| t0 + ms(58_799)), Mode::Shared, "2% short of the lease");
        assert_eq!(l.mode_at(|| t0 + ms(58_800)), Mode::Lapsed, "2% short of the lease");
    }

    #[test]
    fn a_cache_from_an_earlier_connection_goes_when_the_server_grants_none() {
        let t0 = Instant::now();
        let r = reply("OP=LEASE;CODE=400;MSG=unknown OP LEASE");
        for (first, cached, next) in [
            (true, true, Next::Clear("the server grants no lease")),
            (true, false, Next::Stay),
            (false, true, Next::Stay), // a retry: nothing cached predates it
        ] {
            let mut l = Lease::new(true);
            l.state = State::Asking { first };
            let e = Event::Answer {
                resume: false,
                reply: &r,
                sent: t0,
                cached,
            };
            assert_eq!(l.on(e, t0).unwrap(), next, "first {first}, cached {cached}");
            assert_eq!(l.state(), State::Alone);
        }
    }

    #[test]
    fn a_quiet_lease_is_renewed_at_a_third_and_once() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        l.on(Event::Connected { cached: false }, t0).unwrap();
        answer(&mut l, "OP=LEASE;MS=900;CODE=200", t0, false);
        assert_eq!(l.next_deadline(), Some(t0 + ms(300)));
        assert_eq!(l.on(Event::Tick, t0 + ms(299)).unwrap(), Next::Stay);
        assert_eq!(l.on(Event::Tick, t0 + ms(300)).unwrap(), Next::Send(UpKind::Lease));
        assert_eq!(l.next_deadline(), None, "one renewal out at a time");
        assert_eq!(l.on(Event::Tick, t0 + ms(800)).unwrap(), Next::Stay);
        assert_eq!(
            answer(&mut l, "OP=LEASE;MS=900;CODE=200", t0 + ms(300), false),
            Next::Stay
        );
        assert_eq!(l.mode(t0 + ms(1180)), Mode::Shared);
        assert_eq!(l.next_deadline(), Some(t0 + ms(600)));
        // Busy: every answer pushes the renewal back.
        l.on(Event::Renewed { sent: t0 + ms(500) }, t0).unwrap();
        assert_eq!(l.next_deadline(), Some(t0 + ms(800)));
    }

    #[test]
    fn a_refused_proxy_keeps_nothing_and_asks_again_busy_or_not() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        l.on(Event::Connected { cached: false }, t0).unwrap();
        let next = answer(&mut l, "OP=LEASE;CODE=503;MSG=too many proxies hold leases", t0, false);
        assert_eq!(next, Next::Clear("no lease granted"));
        assert_eq!(l.state(), State::Refused { retry: t0 + RETRY });
        assert_eq!((l.mode(t0), l.keeps()), (Mode::Lapsed, false));
        assert_eq!(l.refusal, Some(Refusal::NoRoom));
        // Answers to other requests change nothing; the timer asks again.
        l.on(Event::Renewed { sent: t0 }, t0).unwrap();
        assert_eq!(l.next_deadline(), Some(t0 + RETRY));
        assert_eq!(l.on(Event::Tick, t0 + ms(999)).unwrap(), Next::Stay);
        assert_eq!(l.on(Event::Tick, t0 + RETRY).unwrap(), Next::Send(UpKind::Lease));
        assert_eq!(l.state(), State::Asking { first: false });
        assert!(!l.keeps(), "a reply sent before the retry is not tracked");
        // Not trusted: refused the same way.
        answer(&mut l, "OP=LEASE;CODE=403;MSG=not a trusted peer", t0 + RETRY, false);
        assert_eq!(l.refusal, Some(Refusal::NotTrusted));
        l.on(Event::Tick, t0 + RETRY * 2).unwrap();
        // Granted at last: kept from now on.
        assert_eq!(
            answer(
                &mut l,
                "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;CODE=200",
                t0 + RETRY * 2,
                false
            ),
            Next::Stay
        );
        assert!(l.keeps() && l.refusal.is_none());
        assert_eq!(l.refusals, 2);
    }

    #[test]
    fn a_server_without_leases_leaves_the_proxy_alone() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        l.on(Event::Connected { cached: false }, t0).unwrap();
        answer(&mut l, "OP=LEASE;CODE=400;MSG=LEASE is not served here", t0, false);
        assert_eq!(l.mode(t0 + Duration::from_secs(100)), Mode::Alone);
        assert!(l.keeps());
        assert_eq!(l.next_deadline(), None);
        l.on(Event::Connected { cached: true }, t0).unwrap();
        assert_eq!(l.mode(t0), Mode::Lapsed, "a new server is asked again");
        let mut bare = Lease::new(false);
        assert_eq!(bare.mode_at(|| unreachable!("no lease, no clock")), Mode::Alone);
        assert_eq!(
            bare.on(Event::Connected { cached: true }, t0).unwrap(),
            Next::Clear("on (re)connect")
        );
        let r = reply("OP=LEASE;MS=5;CODE=200");
        let e = Event::Answer {
            resume: false,
            reply: &r,
            sent: t0,
            cached: false,
        };
        assert!(bare.on(e, t0).is_err(), "a bare upstream is never asked");
        assert_eq!(bare.state(), State::Bare);
    }

    #[test]
    fn a_cache_is_kept_across_a_reconnect_only_if_the_server_says_so() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        assert_eq!(
            l.on(Event::Connected { cached: true }, t0).unwrap(),
            Next::Clear("on (re)connect")
        );
        answer(&mut l, "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;CODE=200", t0, false);
        l.on(Event::Lost, t0).unwrap();
        assert_eq!(l.on(Event::Connected { cached: true }, t0).unwrap(), Next::Stay);
        // Same table and count: resume; the cache is not read meanwhile.
        let next = answer(&mut l, "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;CODE=200", t0, true);
        let history = History {
            id: 0xab,
            seq: 4,
            sum: None,
        };
        assert_eq!(next, Next::Resume(history));
        assert_eq!((l.mode(t0), l.keeps()), (Mode::Lapsed, true));
        let keep = reply("OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;KEEP=1;CODE=200");
        let e = Event::Answer {
            resume: true,
            reply: &keep,
            sent: t0,
            cached: true,
        };
        assert_eq!(l.on(e, t0).unwrap(), Next::Kept);
        assert_eq!(l.mode(t0), Mode::Shared);
        // The same table and count, but another history (a durable table
        // rewound and written again): cleared.
        l.on(Event::Lost, t0).unwrap();
        l.on(Event::Connected { cached: true }, t0).unwrap();
        answer(
            &mut l,
            "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;SUM=1;CODE=200",
            t0,
            true,
        );
        l.on(Event::Lost, t0).unwrap();
        l.on(Event::Connected { cached: true }, t0).unwrap();
        let next = answer(
            &mut l,
            "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=4;SUM=2;CODE=200",
            t0,
            true,
        );
        assert_eq!(next, Next::Clear("the server's table is another, or was written since"));
        // Another table: cleared.
        l.on(Event::Lost, t0).unwrap();
        l.on(Event::Connected { cached: true }, t0).unwrap();
        let next = answer(&mut l, "OP=LEASE;MS=1000;ID=00000000000000ac;SEQ=4;CODE=200", t0, true);
        assert_eq!(next, Next::Clear("the server's table is another, or was written since"));
        // Refused after a reconnect: the old cache goes too.
        l.on(Event::Lost, t0).unwrap();
        l.on(Event::Connected { cached: true }, t0).unwrap();
        let next = answer(&mut l, "OP=LEASE;CODE=503;MSG=no room", t0, true);
        assert_eq!(next, Next::Clear("no lease granted"));
        // Resume answered with KEEP=0.
        l.on(Event::Tick, t0 + RETRY).unwrap();
        answer(&mut l, "OP=LEASE;MS=1000;ID=00000000000000ac;SEQ=4;CODE=200", t0, false);
        l.on(Event::Lost, t0).unwrap();
        l.on(Event::Connected { cached: true }, t0).unwrap();
        answer(&mut l, "OP=LEASE;MS=1000;ID=00000000000000ac;SEQ=4;CODE=200", t0, true);
        let no = reply("OP=LEASE;MS=1000;KEEP=0;CODE=200");
        let e = Event::Answer {
            resume: true,
            reply: &no,
            sent: t0,
            cached: true,
        };
        assert!(matches!(l.on(e, t0).unwrap(), Next::Clear(_)));
        assert!(matches!(l.state(), State::Granted { .. }));
    }

    #[test]
    fn an_answer_out_of_turn_is_an_error_in_every_build() {
        let t0 = Instant::now();
        let mut l = Lease::new(true);
        let r = reply("OP=LEASE;MS=1000;CODE=200");
        let e = Event::Answer {
            resume: false,
            reply: &r,
            sent: t0,
            cached: false,
        };
        let err = l.on(e, t0).unwrap_err();
        assert_eq!(err.state, "down");
        assert!(err.to_string().starts_with("no move from down on Answer"));
        assert_eq!(l.state(), State::Down, "nothing changed");
    }
}

//! The run's loop, one pass at a time: the open loop's send pass, whether
//! the run is over, how long to sleep, and the events that wake it. The
//! state the open loop keeps between passes is one struct, [`OpenPace`].

use super::load::Bench;
use super::pacer::{self, next_pass, Pacer};
use super::report;
use super::INTERRUPTED;
use crate::reactor::poll as poll_retry;
use crate::reactor::signals::Signals;
use mio::Events;
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

/// The longest the loop sleeps with nothing scheduled: timeouts are
/// checked at least this often.
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// What the open loop keeps between passes.
struct OpenPace {
    /// The timerfd that wakes send passes (`None`: polled in milliseconds).
    pacer: Option<Pacer>,
    /// Whether the pacer is armed (it is set once per wakeup, not per
    /// reply), and for when.
    armed: bool,
    armed_for: Instant,
    /// Whether this pass sends what has fallen due. With a pacer only its
    /// wakeups (and a due send polled for) do: a reply's wakeup sending the
    /// one request due by then would cost a write, and the server's wakeup,
    /// per request. Without one, every pass sends.
    send_now: bool,
    /// The planned time of the last send pass, and of the pass about to
    /// run (the pacer's or a polled one; `None` for any other pass,
    /// planned now).
    last_plan: Instant,
    pass_plan: Option<Instant>,
    /// The last send pass found every pipeline full: the next reply that
    /// frees room sends, and no timer is armed meanwhile.
    stalled: bool,
}

impl OpenPace {
    fn new(b: &Bench, start: Instant) -> OpenPace {
        let pacer = match b.cfg.rate {
            Some(_) => match Pacer::new(b.poll.registry()) {
                Ok(p) => Some(p),
                Err(e) => {
                    log::warn!("bench: no timerfd ({e}): the open loop polls in milliseconds and spins below");
                    None
                }
            },
            None => None,
        };
        OpenPace {
            pacer,
            armed: false,
            armed_for: start,
            send_now: true,
            last_plan: start,
            pass_plan: None,
            stalled: false,
        }
    }
}

/// The progress line, on a terminal only.
struct Progress {
    on: bool,
    last: Instant,
    count: u64,
}

impl Progress {
    fn new(b: &Bench, start: Instant) -> Progress {
        let on = b.cfg.progress && io::stderr().is_terminal() && io::stdout().is_terminal();
        if on {
            eprintln!("{}", report::header(&b.cfg));
        }
        Progress {
            on,
            last: start,
            count: 0,
        }
    }

    /// Once a second: the rate since the last line, and the p99 so far.
    fn tick(&mut self, b: &Bench, start: Instant, now: Instant) {
        if !self.on || now.duration_since(self.last) < Duration::from_secs(1) {
            return;
        }
        let rate = (b.answered - self.count) as f64 / now.duration_since(self.last).as_secs_f64();
        let t = now.saturating_duration_since(start).as_secs();
        if now < b.measure_from {
            eprint!("\r  {t:>3}s  {rate:>10.0} req/s  (warm-up, not measured)      ");
        } else {
            let p99 = b.hist.value_at_quantile(0.99);
            eprint!("\r  {t:>3}s  {rate:>10.0} req/s  p99 {p99} us                  ");
        }
        self.last = now;
        self.count = b.answered;
    }

    fn end(&self) {
        if self.on {
            eprintln!();
        }
    }
}

impl Bench {
    /// Runs passes from `start` until the end, a stop, or (`-n`) every
    /// request sent and answered.
    pub(super) fn drive(&mut self, start: Instant, events: &mut Events, signals: &mut Signals) -> io::Result<()> {
        let mut pace = OpenPace::new(self, start);
        let mut progress = Progress::new(self, start);
        let mut ended_at = None;
        loop {
            let now = Instant::now();
            self.send_pass(&mut pace, now)?;
            if self.over(now, &mut ended_at) {
                break;
            }
            let timeout = self.sleep_for(&mut pace, now)?;
            poll_retry(&mut self.poll, events, Some(timeout))?;
            let now = Instant::now();
            self.take_events(events, signals, &mut pace, now);
            self.flush_all()?;
            progress.tick(self, start, now);
        }
        progress.end();
        Ok(())
    }

    /// The open loop's send pass, when this pass sends. Past the end (a
    /// generator descheduled across it), whatever was scheduled before the
    /// end still goes out, late and timed from its schedule, before the run
    /// may stop.
    fn send_pass(&mut self, pace: &mut OpenPace, now: Instant) -> io::Result<()> {
        if let Some(rate) = self.cfg.rate {
            let room_again = pace.stalled && self.free_since.is_some();
            if pace.send_now || pace.pacer.is_none() || now >= self.end || room_again {
                self.send_due(now, rate);
                self.flush_all()?;
                pace.last_plan = pace.pass_plan.take().unwrap_or(now);
                pace.stalled = self.free_since.is_none();
            }
        }
        pace.send_now = false;
        Ok(())
    }

    /// Whether the run is over: stopped, `-n` done, every connection
    /// lost, or past the end with nothing outstanding. Past the end,
    /// replies (and the open loop's requests scheduled before it) get one
    /// timeout from when the loop first saw the end (`ended_at`): a
    /// generator descheduled across its end still sends what was due, and
    /// no run drains a backlog for longer. What is left then timed out.
    fn over(&mut self, now: Instant, ended_at: &mut Option<Instant>) -> bool {
        self.check_timeouts(now);
        if self.stopped.is_some() || (!self.may_send() && self.outstanding() == 0) {
            self.end = self.end.min(now);
            return true;
        }
        if now >= self.end {
            let seen = *ended_at.get_or_insert(now);
            if self.outstanding() == 0 || now >= seen + self.cfg.timeout {
                return true;
            }
        }
        if self.dead == self.cfg.connections {
            self.stopped = Some("every connection was lost, and the target takes no new ones".into());
            self.end = self.end.min(now);
            return true;
        }
        false
    }

    /// How long to sleep: until the next scheduled send or a reply. epoll
    /// counts in milliseconds, so the send's time is a timerfd armed to the
    /// microsecond (pacer.rs): the generator sleeps instead of spinning.
    /// The next send pass comes at least the send interval after the last
    /// one's plan ([`next_pass`]), so at high rates a pass carries a batch.
    /// Only a pass due within a few microseconds is polled for without
    /// sleeping; without a timerfd, the last sub-millisecond stretch is.
    fn sleep_for(&mut self, pace: &mut OpenPace, now: Instant) -> io::Result<Duration> {
        let Some(rate) = self.cfg.rate else {
            return Ok(IDLE_WAKE);
        };
        // Nothing to send until a reply comes (every pipeline full, or all
        // `-n` requests sent), or past the end: no timer.
        if pace.stalled || !self.may_send() || now >= self.end {
            return Ok(IDLE_WAKE);
        }
        let next = self.sched_start + Duration::from_secs_f64(self.next_k as f64 / rate);
        let wake = next_pass(next, pace.last_plan, self.cfg.send_interval);
        let wait = wake.saturating_duration_since(now);
        Ok(match pace.pacer.as_mut() {
            Some(_) if wait <= pacer::SPIN => {
                pace.send_now = true;
                pace.pass_plan = Some(wake);
                Duration::ZERO
            }
            Some(p) => {
                // Armed once per wakeup, not on every reply.
                if !pace.armed {
                    p.arm(wait)?;
                    pace.armed_for = wake;
                    pace.armed = true;
                }
                IDLE_WAKE
            }
            None => Duration::from_millis(wait.as_millis() as u64),
        })
    }

    /// What woke the loop: Ctrl-C, the pacer, or connections.
    fn take_events(&mut self, events: &Events, signals: &mut Signals, pace: &mut OpenPace, now: Instant) {
        for ev in events.iter() {
            if ev.token() == crate::reactor::SIGNALS {
                if signals.pending() {
                    self.stopped = Some(INTERRUPTED.into());
                }
            } else if ev.token() == pacer::PACER {
                if let Some(p) = pace.pacer.as_mut() {
                    p.fired();
                }
                pace.armed = false;
                pace.send_now = true;
                pace.pass_plan = Some(pace.armed_for);
            } else {
                self.ready(ev.token(), ev, now);
            }
        }
    }
}

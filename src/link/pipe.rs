//! One direction of a link connection: the bytes read from one side, held
//! until the link's shape lets them go to the other. Pure code, time
//! passed in.
//!
//! ```text
//!   take(bytes, now) ──> [ held bytes | release marks ] ──> ready(now) ──> write ──> gave(n, now)
//!                         bounded by `cap`: a full pipe stops the reading side
//! ```
//!
//! Each read's bytes get a release time, `now + delay + jitter`, never
//! earlier than the previous read's (so jitter never reorders the bytes of
//! one direction). Bandwidth paces what leaves (each write pushes the next
//! one back by its size over the rate); slicing cuts writes into small
//! pieces with a gap between them; a limit closes the connection after so
//! many bytes. Two standing faults: `Hold` (a blackhole: nothing leaves,
//! and once `cap` is held the reading side stops) and `Drop` (bytes are
//! read and thrown away, a silent one-way cut). A FIN read on the source
//! side is held behind the bytes before it and released after them.

use crate::buffer::Buffer;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A standing fault on one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Bytes pass (shaped).
    #[default]
    None,
    /// Nothing passes; bytes are held up to the pipe's bound (blackhole).
    Hold,
    /// Bytes are read and dropped (a one-way cut: the other way works).
    Drop,
}

/// How one direction is shaped, changed at run time by the control
/// connection. Zero means off for every field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Added to every byte's trip.
    pub delay: Duration,
    /// Up to this much more, at random (never reordering).
    pub jitter: Duration,
    /// Bytes per second (0: unlimited).
    pub bandwidth: u64,
    /// Largest write, in bytes (0: no slicing).
    pub slice: usize,
    /// Pause after each slice.
    pub slice_gap: Duration,
    /// Bytes this direction carries before the link closes the
    /// connection (0: no limit).
    pub limit: u64,
    /// The standing fault.
    pub fault: Fault,
}

/// The largest write when only bandwidth limits it: 10 ms of the rate, so
/// a slow link does not release a burst.
fn bandwidth_chunk(bandwidth: u64) -> usize {
    (bandwidth / 100).max(1).min(usize::MAX as u64) as usize
}

/// One direction's held bytes.
#[derive(Debug)]
pub struct Pipe {
    held: Buffer,
    /// (release time, bytes taken in up to and including this read).
    marks: VecDeque<(Instant, u64)>,
    /// Bytes taken in, given out, dropped, ever.
    taken: u64,
    given: u64,
    dropped: u64,
    /// The release time of the last read (jitter never goes below it).
    last_release: Option<Instant>,
    /// No write before this (bandwidth pacing, slice gaps).
    next_send: Option<Instant>,
    /// A FIN read from the source, released at this time after the bytes
    /// before it.
    fin: Option<Instant>,
    cap: usize,
    rng: u64,
}

impl Pipe {
    /// An empty pipe holding at most `cap` bytes; `seed` drives its jitter.
    pub fn new(cap: usize, seed: u64) -> Pipe {
        Pipe {
            held: Buffer::new(),
            marks: VecDeque::new(),
            taken: 0,
            given: 0,
            dropped: 0,
            last_release: None,
            next_send: None,
            fin: None,
            cap,
            rng: seed | 1,
        }
    }

    /// Bytes the source may read now: none once `cap` is held (the source
    /// stops reading: backpressure), or after its FIN; any amount while
    /// the direction drops.
    pub fn room(&self, shape: &Shape) -> usize {
        if self.fin.is_some() {
            0
        } else if shape.fault == Fault::Drop {
            self.cap
        } else {
            self.cap.saturating_sub(self.held.len())
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Bytes given out, and dropped, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.given, self.dropped)
    }

    fn release_at(&mut self, now: Instant, shape: &Shape) -> Instant {
        let jitter = if shape.jitter.is_zero() {
            Duration::ZERO
        } else {
            // xorshift: a cheap, seeded spread of the jitter.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            Duration::from_nanos(self.rng % (shape.jitter.as_nanos() as u64 + 1))
        };
        let at = now + shape.delay + jitter;
        let at = self.last_release.map_or(at, |last| at.max(last));
        self.last_release = Some(at);
        at
    }

    /// Takes bytes read from the source (at most [`Pipe::room`]).
    pub fn take(&mut self, bytes: &[u8], now: Instant, shape: &Shape) {
        if bytes.is_empty() {
            return;
        }
        if shape.fault == Fault::Drop {
            self.dropped += bytes.len() as u64;
            return;
        }
        let at = self.release_at(now, shape);
        self.held.extend(bytes);
        self.taken += bytes.len() as u64;
        self.marks.push_back((at, self.taken));
    }

    /// The source sent FIN: it goes after the bytes held.
    pub fn take_fin(&mut self, now: Instant, shape: &Shape) {
        if self.fin.is_none() {
            self.fin = Some(self.release_at(now, shape));
        }
    }

    /// The bytes that may be written now (empty: none yet).
    pub fn ready(&self, now: Instant, shape: &Shape) -> &[u8] {
        if shape.fault == Fault::Hold || self.next_send.is_some_and(|t| now < t) {
            return &[];
        }
        // Released: up to the last mark that is due.
        let due = self
            .marks
            .iter()
            .take_while(|(at, _)| *at <= now)
            .last()
            .map_or(self.given, |&(_, upto)| upto);
        let mut n = (due - self.given) as usize;
        if shape.slice > 0 {
            n = n.min(shape.slice);
        }
        if shape.bandwidth > 0 {
            n = n.min(bandwidth_chunk(shape.bandwidth));
        }
        if shape.limit > 0 {
            n = n.min(shape.limit.saturating_sub(self.given) as usize);
        }
        &self.held.data()[..n.min(self.held.len())]
    }

    /// `n` bytes of [`Pipe::ready`] were written.
    pub fn gave(&mut self, n: usize, now: Instant, shape: &Shape) {
        let n = n.min(self.held.len());
        if n == 0 {
            return;
        }
        self.held.consume(n);
        self.given += n as u64;
        while self.marks.front().is_some_and(|&(_, upto)| upto <= self.given) {
            self.marks.pop_front();
        }
        let mut next = now;
        if shape.bandwidth > 0 {
            let start = self.next_send.map_or(now, |t| t.max(now));
            next = start + Duration::from_nanos((n as u128 * 1_000_000_000 / shape.bandwidth as u128) as u64);
        }
        if shape.slice > 0 {
            next = next.max(now + shape.slice_gap);
        }
        self.next_send = (next > now).then_some(next);
        if self.held.is_empty() {
            self.held.release(4096);
        }
    }

    /// True when the limit is reached: the link closes the connection.
    pub fn limit_reached(&self, shape: &Shape) -> bool {
        shape.limit > 0 && self.given >= shape.limit
    }

    /// True when the FIN may go now: it was read, everything before it
    /// was given, and its time has come.
    pub fn fin_due(&self, now: Instant, shape: &Shape) -> bool {
        shape.fault != Fault::Hold && self.held.is_empty() && self.fin.is_some_and(|at| at <= now)
    }

    /// When something held becomes ready (a timer to set), if not now and
    /// not never.
    pub fn next_due(&self, now: Instant, shape: &Shape) -> Option<Instant> {
        if shape.fault == Fault::Hold {
            return None;
        }
        let first = if self.held.is_empty() {
            self.fin?
        } else {
            self.marks.front()?.0
        };
        let at = self.next_send.map_or(first, |t| t.max(first));
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bytes_wait_their_delay_then_go_in_order() {
        let t0 = Instant::now();
        let shape = Shape {
            delay: ms(10),
            ..Shape::default()
        };
        let mut p = Pipe::new(100, 1);
        p.take(b"abc", t0, &shape);
        p.take(b"de", t0 + ms(3), &shape);
        assert_eq!(p.ready(t0 + ms(9), &shape), b"");
        assert_eq!(p.next_due(t0 + ms(9), &shape), Some(t0 + ms(10)));
        assert_eq!(p.ready(t0 + ms(10), &shape), b"abc");
        assert_eq!(p.ready(t0 + ms(13), &shape), b"abcde");
        p.gave(4, t0 + ms(13), &shape);
        assert_eq!(p.ready(t0 + ms(13), &shape), b"e");
        p.gave(1, t0 + ms(13), &shape);
        assert_eq!((p.held(), p.counts()), (0, (5, 0)));
        assert_eq!(p.next_due(t0 + ms(13), &shape), None);
    }

    #[test]
    fn jitter_draws_each_read_a_spread_within_its_bound() {
        let t0 = Instant::now();
        let shape = Shape {
            delay: ms(5),
            jitter: ms(20),
            ..Shape::default()
        };
        let mut p = Pipe::new(1 << 20, 7);
        let mut offsets = std::collections::HashSet::new();
        for i in 0..200u64 {
            // Reads far apart: no release is held back by the one before.
            let now = t0 + ms(100 * i);
            let at = p.release_at(now, &shape).duration_since(now);
            assert!(at >= ms(5) && at <= ms(25), "{at:?}");
            offsets.insert(at.as_micros());
        }
        assert!(offsets.len() > 150, "{} distinct draws of 200", offsets.len());
        // No jitter: exactly the delay.
        let mut p = Pipe::new(100, 7);
        let at = p.release_at(
            t0,
            &Shape {
                delay: ms(5),
                ..Shape::default()
            },
        );
        assert_eq!(at.duration_since(t0), ms(5));
    }

    #[test]
    fn only_released_bytes_are_ready_after_a_partial_write() {
        let t0 = Instant::now();
        let shape = Shape {
            delay: ms(10),
            ..Shape::default()
        };
        let mut p = Pipe::new(100, 1);
        p.take(b"abc", t0, &shape);
        p.take(b"de", t0 + ms(5), &shape);
        assert_eq!(p.held(), 5);
        p.gave(2, t0 + ms(10), &shape);
        assert_eq!(p.held(), 3);
        assert!(!p.limit_reached(&shape), "no limit set: none reached");
        assert_eq!(p.ready(t0 + ms(10), &shape), b"c", "de is not released yet");
        assert_eq!(p.ready(t0 + ms(15), &shape), b"cde");
    }

    #[test]
    fn jitter_spreads_but_never_reorders() {
        let t0 = Instant::now();
        let shape = Shape {
            delay: ms(5),
            jitter: ms(20),
            ..Shape::default()
        };
        let mut p = Pipe::new(1 << 20, 7);
        let mut last = t0;
        let mut spread = std::collections::HashSet::new();
        for i in 0..200u64 {
            let now = t0 + Duration::from_micros(i * 100);
            p.take(&[i as u8], now, &shape);
            let at = p.marks.back().unwrap().0;
            assert!(at >= last, "read {i} released before the one before it");
            assert!(at >= now + ms(5) && at <= now + ms(25) || at == last);
            spread.insert(at.duration_since(now).as_micros() / 1000);
            last = at;
        }
        assert!(spread.len() >= 3, "jitter varies: {spread:?}");
        // Bytes come out in the order they went in.
        let end = last;
        let out: Vec<u8> = p.ready(end, &shape).to_vec();
        assert_eq!(out, (0..200u64).map(|i| i as u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_pipe_stops_its_reader_and_a_blackhole_holds_everything() {
        let t0 = Instant::now();
        let hold = Shape {
            fault: Fault::Hold,
            ..Shape::default()
        };
        let mut p = Pipe::new(10, 1);
        assert_eq!(p.room(&hold), 10);
        p.take(b"0123456789", t0, &hold);
        assert_eq!(p.room(&hold), 0, "full: the reader stops");
        assert_eq!(p.ready(t0 + ms(1000), &hold), b"");
        assert_eq!(p.next_due(t0, &hold), None, "no timer while held");
        // Healed: everything held goes, in order.
        let open = Shape::default();
        assert_eq!(p.ready(t0 + ms(1000), &open), b"0123456789");
    }

    #[test]
    fn a_dropping_direction_reads_and_forgets() {
        let t0 = Instant::now();
        let drop = Shape {
            fault: Fault::Drop,
            ..Shape::default()
        };
        let mut p = Pipe::new(10, 1);
        p.take(b"01234567890123456789", t0, &drop);
        assert_eq!((p.held(), p.counts(), p.room(&drop)), (0, (0, 20), 10));
        assert_eq!(p.ready(t0, &Shape::default()), b"");
    }

    #[test]
    fn bandwidth_paces_and_slices_cut_writes() {
        let t0 = Instant::now();
        // 1000 bytes/s: 10 bytes a write, the next 10 ms later.
        let slow = Shape {
            bandwidth: 1000,
            ..Shape::default()
        };
        let mut p = Pipe::new(1000, 1);
        p.take(&[b'x'; 25], t0, &slow);
        assert_eq!(p.ready(t0, &slow).len(), 10);
        p.gave(10, t0, &slow);
        assert_eq!(p.ready(t0 + ms(9), &slow), b"");
        assert_eq!(p.next_due(t0 + ms(9), &slow), Some(t0 + ms(10)));
        assert_eq!(p.ready(t0 + ms(10), &slow).len(), 10);
        let sliced = Shape {
            slice: 3,
            slice_gap: ms(1),
            ..Shape::default()
        };
        let mut p = Pipe::new(1000, 1);
        p.take(b"abcdefg", t0, &sliced);
        assert_eq!(p.ready(t0, &sliced), b"abc");
        p.gave(3, t0, &sliced);
        assert_eq!(p.ready(t0, &sliced), b"", "a gap after each slice");
        assert_eq!(p.ready(t0 + ms(1), &sliced), b"def");
    }

    #[test]
    fn a_limit_stops_at_its_byte_and_a_fin_goes_after_the_bytes() {
        let t0 = Instant::now();
        let lim = Shape {
            limit: 4,
            ..Shape::default()
        };
        let mut p = Pipe::new(100, 1);
        p.take(b"abcdef", t0, &lim);
        assert_eq!(p.ready(t0, &lim), b"abcd");
        assert!(!p.limit_reached(&lim));
        p.gave(4, t0, &lim);
        assert!(p.limit_reached(&lim));
        assert_eq!(p.ready(t0, &lim), b"");
        // FIN: held behind the bytes, and the reader stops.
        let delay = Shape {
            delay: ms(5),
            ..Shape::default()
        };
        let mut p = Pipe::new(100, 1);
        p.take(b"xy", t0, &delay);
        p.take_fin(t0 + ms(1), &delay);
        assert_eq!(p.room(&delay), 0);
        assert!(!p.fin_due(t0 + ms(6), &delay), "bytes first");
        p.gave(2, t0 + ms(6), &delay);
        assert!(p.fin_due(t0 + ms(6), &delay));
        assert!(
            !p.fin_due(
                t0 + ms(6),
                &Shape {
                    fault: Fault::Hold,
                    ..delay
                }
            ),
            "a blackhole holds the FIN too"
        );
    }
}

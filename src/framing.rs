//! Framing: where one message ends in a stream of bytes. Pure code over a
//! [`Buffer`], no sockets, so every rule is unit-tested byte by byte.
//!
//! Two framings (docs/protocol.md, "Two framings"):
//! - **line**: each message ends with `\n` (a `\r` before it is dropped);
//! - **bare**: a message is a burst of bytes followed by a pause (or FIN),
//!   the way a student's `send("OP=GET;IND=1")` arrives; replies then carry
//!   no terminator.
//!
//! A listening node starts each connection in `Detect`: a newline makes it
//! a line connection for good, a pause before any newline a bare one.
//!
//! [`Framer::next`] answers `Complete { body, total } | Incomplete |
//! Oversize`, like mini-redis's `check` before `parse`: it allocates
//! nothing, never closes anything, and `Incomplete` only means "wait for
//! more bytes". Blank lines are skipped; the rest of an oversize message is
//! discarded here, so the caller answers one 413 and carries on.

use crate::buffer::Buffer;
use crate::proto::{is_blank, peek_op, Op};

/// How messages are delimited on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not known yet: decided by the first message (listening side only).
    Detect,
    /// Each message ends with `\n`.
    Line,
    /// Each message is a burst of bytes followed by a pause; replies carry
    /// no terminator.
    Bare,
}

impl Framing {
    /// What ends a message sent on a connection of this framing: the one
    /// place that knows "a newline, unless bare".
    #[inline]
    pub fn terminator(self) -> &'static [u8] {
        match self {
            Framing::Bare => b"",
            Framing::Line | Framing::Detect => b"\n",
        }
    }
}

/// What [`Framer::next`] found at the front of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message: its body is `input.data()[..body]`; hand `total`
    /// to [`Framer::consume`] once it is handled.
    Complete {
        /// Body length (no terminator).
        body: usize,
        /// Bytes to consume, terminator included.
        total: usize,
    },
    /// Nothing whole yet: wait for more bytes (or, bare, for a pause).
    Incomplete,
    /// A message over the limit, already discarded (and the rest of it will
    /// be): answer it with a 413. Carries its OP when its start named one.
    Oversize(Option<Op>),
}

/// What [`check_line`] found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum LineScan {
    /// One whole line: body `buf[..body]` (no `\r\n`), `total` to consume.
    Line {
        /// Length of the body.
        body: usize,
        /// Bytes to consume, terminator included.
        total: usize,
    },
    /// No newline yet and still within the limit.
    Incomplete,
    /// The body is over the limit. With `Some(total)` the line ended within
    /// the buffer and `total` bytes are to be skipped; with `None` every
    /// buffered byte is to be skipped, and so is the rest of the line.
    Oversize(Option<usize>),
}

/// Finds the first line in `buf`. `from` is how much of `buf` is already
/// known to hold no newline (so a message arriving a byte at a time is
/// scanned once, not once per byte). `max` bounds the body.
pub fn check_line(buf: &[u8], from: usize, max: usize) -> LineScan {
    let from = from.min(buf.len());
    match buf[from..].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let nl = from + i;
            let body = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
            if body > max {
                LineScan::Oversize(Some(nl + 1))
            } else {
                LineScan::Line { body, total: nl + 1 }
            }
        }
        // One byte of slack: a `\r` may still come before the newline.
        None if buf.len() > max + 1 => LineScan::Oversize(None),
        None => LineScan::Incomplete,
    }
}

/// One connection's framing state.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    /// How many bytes of the input are known to hold no newline.
    scanned: usize,
    /// Discarding the rest of an oversize message (until a newline, or for
    /// bare framing until the peer pauses).
    skipping: bool,
    /// Bare framing: the peer paused (or closed), so the bytes buffered
    /// are one whole message.
    burst_done: bool,
    /// `Detect` was settled by the last call (for the trace).
    decided: Option<(Framing, &'static str)>,
}

impl Framer {
    /// A framer in `framing` (`Detect` on the listening side).
    pub fn new(framing: Framing) -> Framer {
        Framer {
            framing,
            scanned: 0,
            skipping: false,
            burst_done: false,
            decided: None,
        }
    }

    /// The framing now.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Sets the framing (a client told its server is bare).
    pub fn set_framing(&mut self, framing: Framing) {
        self.framing = framing;
    }

    /// The `Detect` decision taken by the last [`Framer::next`], and why.
    pub fn take_decision(&mut self) -> Option<(Framing, &'static str)> {
        self.decided.take()
    }

    /// The peer paused (or sent FIN): for bare framing, what is buffered is
    /// one whole message.
    pub fn end_burst(&mut self) {
        self.burst_done = true;
    }

    /// Whether a pause would end a message now: bare (or undecided) framing
    /// with bytes buffered. The connection arms its bare timer on this.
    pub fn waits_for_pause(&self, input: &Buffer) -> bool {
        self.framing != Framing::Line && !input.is_empty()
    }

    /// Finds the next whole message in `input`, skipping blank lines and
    /// discarding oversize ones (`max` bounds a body).
    pub fn next(&mut self, input: &mut Buffer, max: usize) -> Frame {
        match self.framing {
            Framing::Line => self.next_line(input, max),
            Framing::Detect => {
                if input.data().contains(&b'\n') || input.len() > max + 1 {
                    self.decide(Framing::Line, "a newline ends the first message");
                    self.next_line(input, max)
                } else if self.burst_done {
                    self.decide(Framing::Bare, "the peer paused before any newline");
                    self.next_bare(input, max)
                } else {
                    Frame::Incomplete
                }
            }
            Framing::Bare => self.next_bare(input, max),
        }
    }

    /// Drops a handled message from the front of `input`.
    pub fn consume(&mut self, input: &mut Buffer, total: usize) {
        input.consume(total);
        self.scanned = 0;
    }

    fn decide(&mut self, to: Framing, why: &'static str) {
        self.framing = to;
        self.decided = Some((to, why));
    }

    /// Bare framing: the whole burst is the message.
    fn next_bare(&mut self, input: &mut Buffer, max: usize) -> Frame {
        let done = std::mem::take(&mut self.burst_done);
        if self.skipping {
            // The rest of an oversize burst: dropped until the peer pauses.
            input.clear();
            self.skipping = !done;
            return Frame::Incomplete;
        }
        if input.len() > max {
            let op = peek_op(input.data());
            input.clear();
            self.skipping = !done;
            return Frame::Oversize(op);
        }
        if !done || input.is_empty() {
            return Frame::Incomplete;
        }
        if is_blank(input.data()) {
            input.clear();
            return Frame::Incomplete;
        }
        let n = input.len();
        Frame::Complete { body: n, total: n }
    }

    /// Line framing: skips blank lines and the rest of an oversize line.
    fn next_line(&mut self, input: &mut Buffer, max: usize) -> Frame {
        loop {
            if self.skipping {
                match input.data().iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        input.consume(i + 1);
                        self.skipping = false;
                    }
                    None => {
                        input.clear();
                        return Frame::Incomplete;
                    }
                }
            }
            match check_line(input.data(), self.scanned, max) {
                LineScan::Line { body, total } => {
                    if is_blank(&input.data()[..body]) {
                        self.consume(input, total);
                        continue;
                    }
                    return Frame::Complete { body, total };
                }
                LineScan::Incomplete => {
                    self.scanned = input.len();
                    return Frame::Incomplete;
                }
                LineScan::Oversize(end) => {
                    let op = peek_op(input.data());
                    match end {
                        Some(total) => self.consume(input, total),
                        None => {
                            input.clear();
                            self.scanned = 0;
                            self.skipping = true;
                        }
                    }
                    return Frame::Oversize(op);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(b: &[u8]) -> Buffer {
        let mut x = Buffer::new();
        x.extend(b);
        x
    }

    /// Feeds `bytes` one at a time and collects the bodies framed.
    fn byte_by_byte(f: &mut Framer, bytes: &[u8], max: usize) -> Vec<String> {
        let mut input = Buffer::new();
        let mut out = Vec::new();
        for &b in bytes {
            input.push(b);
            loop {
                match f.next(&mut input, max) {
                    Frame::Complete { body, total } => {
                        out.push(String::from_utf8_lossy(&input.data()[..body]).into_owned());
                        f.consume(&mut input, total);
                    }
                    Frame::Oversize(op) => out.push(format!("413 {op:?}")),
                    Frame::Incomplete => break,
                }
            }
        }
        out
    }

    #[test]
    fn check_line_every_prefix_and_pipelined() {
        let msg = b"OP=GET;IND=1\r\n";
        for i in 0..msg.len() {
            assert_eq!(check_line(&msg[..i], 0, 100), LineScan::Incomplete, "prefix {i}");
        }
        assert_eq!(check_line(msg, 0, 100), LineScan::Line { body: 12, total: 14 });
        let two = b"OP=CLR\nOP=GET;IND=1\nOP=GE";
        assert_eq!(check_line(two, 0, 100), LineScan::Line { body: 6, total: 7 });
        assert_eq!(check_line(&two[7..], 0, 100), LineScan::Line { body: 12, total: 13 });
        assert_eq!(check_line(&two[20..], 0, 100), LineScan::Incomplete);
        // `from` skips what was scanned before.
        assert_eq!(check_line(b"abc\n", 3, 100), LineScan::Line { body: 3, total: 4 });
    }

    #[test]
    fn a_framer_told_its_peer_is_bare_stops_waiting_for_newlines() {
        let mut f = Framer::new(Framing::Line);
        f.set_framing(Framing::Bare);
        assert_eq!(f.framing(), Framing::Bare);
        let mut input = Buffer::new();
        input.extend(b"OP=GET;IND=1");
        assert!(
            f.waits_for_pause(&input),
            "a bare message ends with a pause, not a newline"
        );
    }

    #[test]
    fn only_a_bare_or_undecided_framer_with_input_waits_for_a_pause() {
        let mut input = Buffer::new();
        assert!(!Framer::new(Framing::Bare).waits_for_pause(&input), "nothing to end");
        input.extend(b"OP=GET");
        assert!(
            !Framer::new(Framing::Line).waits_for_pause(&input),
            "a line ends with its newline"
        );
        assert!(Framer::new(Framing::Detect).waits_for_pause(&input));
    }

    #[test]
    fn detection_gives_up_waiting_for_a_newline_one_byte_past_the_bound() {
        // max 10: 11 bytes may still be a 10-byte body and its `\r`.
        let mut f = Framer::new(Framing::Detect);
        let mut input = Buffer::new();
        input.extend(b"OP=GET;IND");
        input.extend(b"=");
        assert_eq!(f.next(&mut input, 10), Frame::Incomplete);
        assert_eq!(f.framing(), Framing::Detect);
        input.extend(b"1");
        assert!(matches!(f.next(&mut input, 10), Frame::Oversize(_)));
        assert_eq!(f.framing(), Framing::Line);
    }

    #[test]
    fn a_bare_burst_of_exactly_the_bound_is_a_message_and_one_more_is_not() {
        let mut f = Framer::new(Framing::Bare);
        let mut input = Buffer::new();
        input.extend(b"OP=CLR;;;;");
        f.end_burst();
        assert_eq!(f.next(&mut input, 10), Frame::Complete { body: 10, total: 10 });
        f.consume(&mut input, 10);
        // Eleven bytes: refused, and the rest of that burst is dropped
        // until the pause; the next burst is a message again.
        input.extend(b"OP=CLR;;;;;");
        assert!(matches!(f.next(&mut input, 10), Frame::Oversize(_)));
        input.extend(b"more of it");
        assert_eq!(f.next(&mut input, 10), Frame::Incomplete);
        assert!(input.is_empty(), "dropped");
        // Its last bytes look like a message, but they end the same burst.
        input.extend(b"OP=CLR");
        f.end_burst();
        assert_eq!(f.next(&mut input, 10), Frame::Incomplete, "still the oversize burst");
        assert!(input.is_empty());
        input.extend(b"OP=CLR");
        f.end_burst();
        assert_eq!(f.next(&mut input, 10), Frame::Complete { body: 6, total: 6 });
    }

    #[test]
    fn check_line_oversize() {
        assert_eq!(check_line(b"12345\n", 0, 4), LineScan::Oversize(Some(6)));
        assert_eq!(check_line(b"1234\r\n", 0, 4), LineScan::Line { body: 4, total: 6 });
        assert_eq!(check_line(b"1234\r", 0, 4), LineScan::Incomplete);
        assert_eq!(check_line(b"123456", 0, 4), LineScan::Oversize(None));
    }

    #[test]
    fn line_framing_byte_by_byte_skips_blanks() {
        let mut f = Framer::new(Framing::Line);
        let got = byte_by_byte(&mut f, b"OP=CLR\n\n  \r\nOP=GET;IND=1\r\nOP=GE", 100);
        assert_eq!(got, ["OP=CLR", "OP=GET;IND=1"]);
    }

    #[test]
    fn an_oversize_line_is_one_413_and_the_next_line_survives() {
        let mut f = Framer::new(Framing::Line);
        let mut msg = b"OP=PUT;IND=".to_vec();
        msg.extend(std::iter::repeat_n(b'1', 50));
        msg.extend(b"\nOP=DMP\n");
        assert_eq!(byte_by_byte(&mut f, &msg, 20), ["413 Some(Put)", "OP=DMP"]);
        // All at once: the same.
        let mut f = Framer::new(Framing::Line);
        let mut input = buf(&msg);
        assert_eq!(f.next(&mut input, 20), Frame::Oversize(Some(Op::Put)));
        assert_eq!(f.next(&mut input, 20), Frame::Complete { body: 6, total: 7 });
    }

    #[test]
    fn bare_framing_ends_a_message_at_a_pause() {
        let mut f = Framer::new(Framing::Bare);
        let mut input = buf(b"OP=GET;IND=1");
        assert_eq!(f.next(&mut input, 100), Frame::Incomplete, "no pause yet");
        f.end_burst();
        assert_eq!(f.next(&mut input, 100), Frame::Complete { body: 12, total: 12 });
        f.consume(&mut input, 12);
        // A blank burst is nothing.
        input.extend(b"  ");
        f.end_burst();
        assert_eq!(f.next(&mut input, 100), Frame::Incomplete);
        assert!(input.is_empty());
    }

    #[test]
    fn bare_oversize_discards_until_the_pause() {
        let mut f = Framer::new(Framing::Bare);
        let mut input = buf(b"OP=GET;IND=1,2,3,4,5");
        assert_eq!(f.next(&mut input, 10), Frame::Oversize(Some(Op::Get)));
        input.extend(b"more of the same burst");
        assert_eq!(f.next(&mut input, 10), Frame::Incomplete);
        assert!(input.is_empty(), "the rest of the burst is dropped");
        f.end_burst();
        assert_eq!(f.next(&mut input, 10), Frame::Incomplete);
        input.extend(b"OP=CLR");
        f.end_burst();
        assert_eq!(f.next(&mut input, 10), Frame::Complete { body: 6, total: 6 });
    }

    #[test]
    fn detect_settles_on_the_first_message() {
        let mut f = Framer::new(Framing::Detect);
        let mut input = buf(b"OP=GET;IND=1");
        assert_eq!(f.next(&mut input, 100), Frame::Incomplete);
        assert_eq!(f.take_decision(), None);
        input.extend(b"\n");
        assert_eq!(f.next(&mut input, 100), Frame::Complete { body: 12, total: 13 });
        assert_eq!(f.framing(), Framing::Line);
        assert!(f.take_decision().is_some());

        let mut f = Framer::new(Framing::Detect);
        let mut input = buf(b"OP=GET;IND=1");
        assert!(f.waits_for_pause(&input));
        f.end_burst();
        assert_eq!(f.next(&mut input, 100), Frame::Complete { body: 12, total: 12 });
        assert_eq!(f.framing(), Framing::Bare);
        // Too long for any message, and no newline: it was a line peer.
        let mut f = Framer::new(Framing::Detect);
        let mut input = buf(&[b'x'; 30]);
        assert_eq!(f.next(&mut input, 10), Frame::Oversize(None));
        assert_eq!(f.framing(), Framing::Line);
    }

    #[test]
    fn terminators() {
        assert_eq!(Framing::Line.terminator(), b"\n");
        assert_eq!(Framing::Bare.terminator(), b"");
    }
}

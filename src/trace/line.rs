//! One trace line: printing it (aligned columns) and parsing it back, so
//! recorded traces can be merged, checked and drawn. Pure code.
//!
//! ```text
//!    4410223.571 proxy   0   READABLE       read=15 then WouldBlock
//!    ^ time, us      ^ node  ^ conn ^ event       ^ detail
//! ```

use std::fmt;

/// Width of the time column (microseconds since boot fit in 10 digits
/// for 115 days; wider times just push the columns right).
const TIME_WIDTH: usize = 14;

/// A trace line being printed (borrowed parts; `detail` formatted lazily).
pub struct Line<'a, C: fmt::Display, D: fmt::Display> {
    /// Stamp, in nanoseconds (see [`crate::trace::now`]).
    pub at: u64,
    /// The node: `server`, `proxy`, `client`, `bench`...
    pub node: &'a str,
    /// The connection's label.
    pub conn: C,
    /// The event name (docs/socket-states.md).
    pub event: &'a str,
    /// What happened.
    pub detail: D,
}

impl<C: fmt::Display, D: fmt::Display> fmt::Display for Line<'_, C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = format!("{}.{:03}", self.at / 1000, self.at % 1000);
        let head = format!(
            "{time:>TIME_WIDTH$} {:<7} {:<3} {:<14}",
            self.node, self.conn, self.event
        );
        let detail = self.detail.to_string();
        if detail.is_empty() {
            f.write_str(head.trim_end())
        } else {
            write!(f, "{head} {detail}")
        }
    }
}

/// A parsed trace line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stamp, in nanoseconds.
    pub at: u64,
    /// The node.
    pub node: String,
    /// The connection's label.
    pub conn: String,
    /// The event name.
    pub event: String,
    /// What happened (may be empty).
    pub detail: String,
}

impl Event {
    /// An event from its parts.
    pub fn new(at: u64, node: &str, conn: &str, event: &str, detail: &str) -> Event {
        Event {
            at,
            node: node.into(),
            conn: conn.into(),
            event: event.into(),
            detail: detail.into(),
        }
    }

    /// Parses a trace line; `None` for any other line (a log line, the
    /// demo's narrative), so mixed output can be read as it is.
    pub fn parse(line: &str) -> Option<Event> {
        let line = line.trim_start();
        let (time, rest) = line.split_once(' ')?;
        let (us, ns) = time.split_once('.')?;
        if ns.len() != 3 {
            return None;
        }
        let at = us
            .parse::<u64>()
            .ok()?
            .checked_mul(1000)?
            .checked_add(ns.parse().ok()?)?;
        let mut words = rest.trim_start().splitn(2, ' ');
        let node = words.next()?;
        let rest = words.next()?.trim_start();
        let (conn, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let rest = rest.trim_start();
        let (event, detail) = rest.split_once(' ').unwrap_or((rest, ""));
        let plausible =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plausible(node) || !plausible(conn) || !plausible(event) || !event.bytes().all(|b| !b.is_ascii_lowercase())
        {
            return None;
        }
        Some(Event {
            at,
            node: node.to_string(),
            conn: conn.to_string(),
            event: event.to_string(),
            detail: detail.trim_start().to_string(),
        })
    }

    /// The line again, with its stamp shifted back by `origin`
    /// nanoseconds (the demo prints times from its start).
    pub fn display_from(&self, origin: u64) -> impl fmt::Display + '_ {
        Line {
            at: self.at.saturating_sub(origin),
            node: &self.node,
            conn: &self.conn,
            event: &self.event,
            detail: &self.detail,
        }
    }

    /// A `DECODED` line's message, without the frame's size the nodes
    /// append (` (15 bytes)`); any other line's detail.
    pub fn message(&self) -> &str {
        match self.frame_split() {
            Some((msg, _)) => msg,
            None => &self.detail,
        }
    }

    /// The bytes a `DECODED` message took from the input buffer: the whole
    /// frame, terminator included.
    pub fn frame_bytes(&self) -> Option<usize> {
        self.frame_split().map(|(_, n)| n)
    }

    fn frame_split(&self) -> Option<(&str, usize)> {
        if self.event != "DECODED" {
            return None;
        }
        let (msg, tail) = self.detail.rsplit_once(" (")?;
        let n = tail.strip_suffix(" bytes)")?.parse().ok()?;
        Some((msg, n))
    }

    /// `N bytes to write` in a line that queued output: the output
    /// buffer's size after it.
    pub fn to_write(&self) -> Option<usize> {
        let head = self
            .detail
            .strip_suffix(" bytes to write)")
            .or_else(|| self.detail.strip_suffix(" bytes to write"))?;
        head.rsplit([' ', '(']).next()?.parse().ok()
    }

    /// `read=N` / `wrote=N` of a READABLE / WRITABLE line.
    pub fn bytes(&self) -> Option<usize> {
        let key = match self.event.as_str() {
            "READABLE" => "read=",
            "WRITABLE" => "wrote=",
            _ => return None,
        };
        self.detail.strip_prefix(key)?.split(' ').next()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_prints_in_columns_and_parses_back() {
        let line = Line {
            at: 4_410_223_571_042,
            node: "proxy",
            conn: "0",
            event: "READABLE",
            detail: "read=15 then WouldBlock",
        }
        .to_string();
        assert_eq!(
            line,
            "4410223571.042 proxy   0   READABLE       read=15 then WouldBlock"
        );
        let e = Event::parse(&line).unwrap();
        assert_eq!(e.at, 4_410_223_571_042);
        assert_eq!(
            (e.node.as_str(), e.conn.as_str(), e.event.as_str()),
            ("proxy", "0", "READABLE")
        );
        assert_eq!(e.detail, "read=15 then WouldBlock");
        assert_eq!(e.bytes(), Some(15));
        assert_eq!(e.display_from(0).to_string(), line);
    }

    #[test]
    fn a_line_without_detail_has_no_trailing_spaces() {
        let line = Line {
            at: 1500,
            node: "server",
            conn: "L",
            event: "LISTEN",
            detail: "",
        }
        .to_string();
        assert_eq!(line, "         1.500 server  L   LISTEN");
        let e = Event::parse(&line).unwrap();
        assert_eq!((e.event.as_str(), e.detail.as_str()), ("LISTEN", ""));
    }

    #[test]
    fn decoded_lines_say_their_frame_and_queueing_lines_their_output() {
        let e = Event::new(1, "proxy", "0", "DECODED", "OP=GET;IND=1,2 (15 bytes)");
        assert_eq!((e.message(), e.frame_bytes()), ("OP=GET;IND=1,2", Some(15)));
        // A message that itself ends in parentheses keeps them.
        let e = Event::new(
            1,
            "client",
            "C",
            "DECODED",
            "OP=GET;CODE=413;MSG=x (9 bytes) (40 bytes)",
        );
        assert_eq!(
            (e.message(), e.frame_bytes()),
            ("OP=GET;CODE=413;MSG=x (9 bytes)", Some(40))
        );
        // An older trace without the size: the detail as it is.
        let e = Event::new(1, "proxy", "0", "DECODED", "OP=CLR");
        assert_eq!((e.message(), e.frame_bytes()), ("OP=CLR", None));
        let e = Event::new(1, "proxy", "0", "READABLE", "read=3 (x) (4 bytes)");
        assert_eq!((e.message(), e.frame_bytes()), ("read=3 (x) (4 bytes)", None));
        for (detail, n) in [
            ("reply queued, 35 bytes to write", Some(35)),
            ("PUT applied after 116 us: reply queued, 30 bytes to write", Some(30)),
            ("OP=INV;SEQ=1;IND=3 (19 bytes to write)", Some(19)),
            ("GET (fetch) for client 0: 15 bytes to write", Some(15)),
            ("reply waits for the upstream or an earlier reply", None),
        ] {
            assert_eq!(Event::new(1, "s", "0", "QUEUED", detail).to_write(), n, "{detail}");
        }
    }

    #[test]
    fn names_may_hold_dashes_and_underscores_events_only_capitals() {
        for ok in [
            "1.000 client-b C QUEUED x",
            "1.000 proxy_2 0 CONNECT_START",
            "1.000 a-b_c 12 X-Y_Z",
        ] {
            assert!(Event::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.000 client C Queued x",
            "1.000 cl!ent C QUEUED x",
            "1.000 client C! QUEUED x",
            "1.000 client C QUE.UED x",
            "1.000 client C",
        ] {
            assert!(Event::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn other_lines_are_not_events() {
        for line in [
            "",
            "== GET 1 2: a miss",
            "    client -> proxy   OP=GET;IND=1,2",
            "2026-11-26T12:00:00Z WARN [tablecache] proxy: upstream gone",
            "12.5 proxy 0 READABLE read=1",
            "12.500 proxy 0 readable read=1",
        ] {
            assert_eq!(Event::parse(line), None, "{line:?}");
        }
        assert_eq!(
            Event::parse("1.000 proxy U WRITABLE wrote=9 left=0").unwrap().bytes(),
            Some(9)
        );
    }
}

//! The link's control requests: one line each, in the project's
//! `KEY=VALUE;` style (docs/protocol.md, "The link's control
//! connection"). Pure code: parsing and answering; the node applies them.
//!
//! ```text
//!   OP=SET;DIR=UP;DELAY_MS=20;JITTER_MS=5     shape a direction (UP: client → upstream)
//!   OP=FAULT;KIND=HOLD;DIR=BOTH               a blackhole (partition), until healed
//!   OP=FAULT;KIND=DROP;DIR=DOWN               drop one direction silently (half-open)
//!   OP=FAULT;KIND=RESET                       reset every connection now, both sides
//!   OP=FAULT;KIND=NONE;DIR=BOTH               heal
//!   OP=STS                                    counters
//! ```

use super::pipe::{Fault, Shape};
use std::time::Duration;

/// Which way: `UP` is client → upstream (requests), `DOWN` upstream →
/// client (replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
    /// Both.
    Both,
}

impl Dir {
    /// True if this covers direction `i` (0: up, 1: down).
    pub fn covers(self, i: usize) -> bool {
        matches!((self, i), (Dir::Both, _) | (Dir::Up, 0) | (Dir::Down, 1))
    }
}

/// A parsed control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Change the shape of `dir`: only the fields given change.
    Set(Dir, Change),
    /// A standing fault on `dir` (`Fault::None` heals it).
    Fault(Dir, Fault),
    /// Reset every connection now (RST to both sides).
    Reset,
    /// Report the counters.
    Sts,
}

/// The fields an `OP=SET` names (absent: unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// DELAY_MS.
    pub delay: Option<Duration>,
    /// JITTER_MS.
    pub jitter: Option<Duration>,
    /// BANDWIDTH (bytes per second).
    pub bandwidth: Option<u64>,
    /// SLICE (bytes).
    pub slice: Option<usize>,
    /// SLICE_US.
    pub slice_gap: Option<Duration>,
    /// LIMIT (bytes).
    pub limit: Option<u64>,
}

impl Change {
    /// `shape` with these fields changed.
    pub fn apply(&self, shape: &mut Shape) {
        if let Some(d) = self.delay {
            shape.delay = d;
        }
        if let Some(j) = self.jitter {
            shape.jitter = j;
        }
        if let Some(b) = self.bandwidth {
            shape.bandwidth = b;
        }
        if let Some(s) = self.slice {
            shape.slice = s;
        }
        if let Some(g) = self.slice_gap {
            shape.slice_gap = g;
        }
        if let Some(l) = self.limit {
            shape.limit = l;
        }
    }
}

/// The longest control line, and the largest delay or jitter (a day: a
/// typo of a few zeros should not hold bytes for years).
pub const MAX_LINE: usize = 512;
const MAX_MS: u64 = 86_400_000;

fn number(key: &str, v: &str, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!("{key}={v}: at most {max}")),
        Err(_) => Err(format!("{key}={v}: not a number")),
    }
}

/// Parses one control line (without its newline).
pub fn parse(line: &str) -> Result<Control, String> {
    if line.len() > MAX_LINE {
        return Err(format!("a control line is at most {MAX_LINE} bytes"));
    }
    let mut op = None;
    let mut dir = Dir::Both;
    let mut kind = None;
    let mut change = Change::default();
    for field in line.trim().split(';').filter(|f| !f.is_empty()) {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| format!("{field:?}: not KEY=VALUE"))?;
        let ms = |v: &str| number(k, v, MAX_MS).map(Duration::from_millis);
        match k {
            "OP" => op = Some(v),
            "DIR" => {
                dir = match v {
                    "UP" => Dir::Up,
                    "DOWN" => Dir::Down,
                    "BOTH" => Dir::Both,
                    _ => return Err(format!("DIR={v}: UP, DOWN or BOTH")),
                }
            }
            "KIND" => kind = Some(v),
            "DELAY_MS" => change.delay = Some(ms(v)?),
            "JITTER_MS" => change.jitter = Some(ms(v)?),
            "DELAY_US" => change.delay = Some(Duration::from_micros(number(k, v, MAX_MS * 1000)?)),
            "JITTER_US" => change.jitter = Some(Duration::from_micros(number(k, v, MAX_MS * 1000)?)),
            "BANDWIDTH" => change.bandwidth = Some(number(k, v, u64::MAX)?),
            "SLICE" => change.slice = Some(number(k, v, 1 << 20)? as usize),
            "SLICE_US" => change.slice_gap = Some(Duration::from_micros(number(k, v, MAX_MS * 1000)?)),
            "LIMIT" => change.limit = Some(number(k, v, u64::MAX)?),
            _ => return Err(format!("unknown field {k}")),
        }
    }
    match (op, kind) {
        (Some("SET"), None) if change != Change::default() => Ok(Control::Set(dir, change)),
        (Some("SET"), None) => Err("OP=SET changes nothing".into()),
        (Some("FAULT"), Some(kind)) if change == Change::default() => match kind {
            "HOLD" => Ok(Control::Fault(dir, Fault::Hold)),
            "DROP" => Ok(Control::Fault(dir, Fault::Drop)),
            "NONE" => Ok(Control::Fault(dir, Fault::None)),
            "RESET" => Ok(Control::Reset),
            _ => Err(format!("KIND={kind}: HOLD, DROP, RESET or NONE")),
        },
        (Some("FAULT"), _) => Err("OP=FAULT takes KIND (and DIR) only".into()),
        (Some("STS"), None) if change == Change::default() => Ok(Control::Sts),
        (Some("STS"), _) => Err("OP=STS takes no fields".into()),
        (Some(op), _) => Err(format!("OP={op}: not a control request here (SET, FAULT, STS)")),
        (None, _) => Err("no OP".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_into_what_they_change() {
        assert_eq!(
            parse("OP=SET;DIR=UP;DELAY_MS=20;JITTER_MS=5"),
            Ok(Control::Set(
                Dir::Up,
                Change {
                    delay: Some(Duration::from_millis(20)),
                    jitter: Some(Duration::from_millis(5)),
                    ..Change::default()
                }
            ))
        );
        assert_eq!(
            parse("OP=SET;BANDWIDTH=1000;SLICE=8;SLICE_US=500;LIMIT=9"),
            Ok(Control::Set(
                Dir::Both,
                Change {
                    bandwidth: Some(1000),
                    slice: Some(8),
                    slice_gap: Some(Duration::from_micros(500)),
                    limit: Some(9),
                    ..Change::default()
                }
            ))
        );
        assert_eq!(
            parse("OP=FAULT;KIND=HOLD;DIR=BOTH"),
            Ok(Control::Fault(Dir::Both, Fault::Hold))
        );
        assert_eq!(
            parse("OP=FAULT;KIND=DROP;DIR=DOWN;"),
            Ok(Control::Fault(Dir::Down, Fault::Drop))
        );
        assert_eq!(parse("OP=FAULT;KIND=NONE"), Ok(Control::Fault(Dir::Both, Fault::None)));
        assert_eq!(parse("OP=FAULT;KIND=RESET"), Ok(Control::Reset));
        assert_eq!(parse("OP=STS\r"), Ok(Control::Sts));
    }

    #[test]
    fn delays_may_be_given_in_microseconds() {
        let Ok(Control::Set(Dir::Both, c)) = parse("OP=SET;DELAY_US=100;JITTER_US=50") else {
            panic!("not a SET")
        };
        assert_eq!(
            (c.delay, c.jitter),
            (Some(Duration::from_micros(100)), Some(Duration::from_micros(50)))
        );
    }

    #[test]
    fn bounds_are_inclusive() {
        let line = format!("OP=STS;{}", ";".repeat(MAX_LINE - 7));
        assert_eq!(line.len(), MAX_LINE);
        assert_eq!(parse(&line), Ok(Control::Sts), "a line of exactly 512 bytes");
        assert!(parse(&format!("{line};")).is_err());
        let day_us = 86_400_000_000u64;
        for key in ["DELAY_US", "JITTER_US", "SLICE_US"] {
            assert!(parse(&format!("OP=SET;{key}={day_us}")).is_ok(), "{key} up to a day");
            assert!(
                parse(&format!("OP=SET;{key}={}", day_us + 1)).is_err(),
                "{key} past a day"
            );
        }
        assert!(parse("OP=SET;DELAY_MS=86400000").is_ok() && parse("OP=SET;DELAY_MS=86400001").is_err());
    }

    #[test]
    fn mistakes_are_named() {
        for (line, says) in [
            ("", "no OP"),
            ("OP=GET;IND=1", "unknown field IND"),
            ("OP=GET", "not a control request"),
            ("OP=SET", "changes nothing"),
            ("OP=SET;DELAY_MS=x", "not a number"),
            ("OP=SET;DELAY_MS=99999999999", "at most"),
            ("OP=SET;DIR=LEFT;DELAY_MS=1", "UP, DOWN or BOTH"),
            ("OP=FAULT;KIND=FIRE", "HOLD, DROP"),
            ("OP=FAULT", "KIND"),
            ("OP=FAULT;KIND=HOLD;DELAY_MS=1", "KIND"),
            ("OP=STS;DELAY_MS=1", "takes no fields"),
            ("DELAY_MS", "not KEY=VALUE"),
        ] {
            let e = parse(line).unwrap_err();
            assert!(e.contains(says), "{line:?}: {e}");
        }
        assert!(parse(&"OP=STS;".repeat(100)).unwrap_err().contains("at most 512"));
    }

    #[test]
    fn a_change_touches_only_its_fields() {
        let mut s = Shape {
            delay: Duration::from_millis(3),
            bandwidth: 10,
            fault: Fault::Hold,
            ..Shape::default()
        };
        Change {
            jitter: Some(Duration::from_millis(1)),
            ..Change::default()
        }
        .apply(&mut s);
        assert_eq!(
            (s.delay, s.jitter, s.bandwidth, s.fault),
            (Duration::from_millis(3), Duration::from_millis(1), 10, Fault::Hold)
        );
        assert!(Dir::Both.covers(0) && Dir::Both.covers(1) && Dir::Up.covers(0) && !Dir::Up.covers(1));
        assert!(Dir::Down.covers(1) && !Dir::Down.covers(0));
    }
}

//! What the generator says on the wire: tablecache's line protocol, RESP
//! (Redis, Valkey, KeyDB, twemproxy) or memcached's text protocol — the
//! same schedule, the same keys, measured the same way. GET and PUT of
//! index `i` become GET and SET of the key `key:<i>`. Pure code: a
//! request into a buffer, and where a reply ends (and whether it is an
//! error) in the bytes read.

use crate::buffer::Buffer;
use crate::proto::{encode_request, Op};
use std::fmt::Write as _;

/// The protocol a bench speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// tablecache's `OP=GET;IND=..` lines.
    #[default]
    Line,
    /// Redis's RESP: `GET key:1`, `SET key:1 v`; several keys: MGET, MSET.
    Resp,
    /// memcached's text protocol: `get key:1`, `set key:1 0 0 n`.
    Memcache,
}

impl Protocol {
    /// Its name (`--protocol`, reports).
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Line => "line",
            Protocol::Resp => "resp",
            Protocol::Memcache => "memcache",
        }
    }

    /// Why a run's settings cannot be spoken in this protocol, if so.
    pub fn cannot(&self, mix: [u32; 3], batch: usize) -> Option<String> {
        match self {
            Protocol::Line => None,
            _ if mix[2] > 0 => Some(format!(
                "ADD has no {} equivalent: use a mix of get and put",
                self.name()
            )),
            Protocol::Memcache if mix[1] > 0 && batch > 1 => {
                Some("memcached sets one key per command: use --batch 1 with puts".into())
            }
            _ => None,
        }
    }
}

/// Reused text space for encoding (no allocation per request once warm).
#[derive(Debug, Default)]
pub struct Encoder {
    scratch: String,
}

impl Encoder {
    /// Encodes one request (with its terminator) into `out`.
    pub fn encode(&mut self, proto: Protocol, out: &mut Buffer, op: Op, ind: &[i64], data: &[i64]) {
        match proto {
            Protocol::Line => {
                encode_request(out, op, ind, data);
                out.push(b'\n');
            }
            Protocol::Resp => {
                let (cmd, args) = match (op, ind.len()) {
                    (Op::Put, 1) => ("SET", 3),
                    (Op::Put, n) => ("MSET", 1 + 2 * n),
                    (_, 1) => ("GET", 2),
                    (_, n) => ("MGET", 1 + n),
                };
                self.scratch.clear();
                let _ = write!(self.scratch, "*{args}\r\n${}\r\n{cmd}\r\n", cmd.len());
                for (k, &i) in ind.iter().enumerate() {
                    let klen = 4 + digits(i);
                    let _ = write!(self.scratch, "${klen}\r\nkey:{i}\r\n");
                    if op == Op::Put {
                        let v = data.get(k).copied().unwrap_or(0);
                        let _ = write!(self.scratch, "${}\r\n{v}\r\n", digits(v));
                    }
                }
                out.extend(self.scratch.as_bytes());
            }
            Protocol::Memcache => {
                self.scratch.clear();
                if op == Op::Put {
                    for (k, &i) in ind.iter().enumerate() {
                        let v = data.get(k).copied().unwrap_or(0);
                        let _ = write!(self.scratch, "set key:{i} 0 0 {}\r\n{v}\r\n", digits(v));
                    }
                } else {
                    self.scratch.push_str("get");
                    for &i in ind {
                        let _ = write!(self.scratch, " key:{i}");
                    }
                    self.scratch.push_str("\r\n");
                }
                out.extend(self.scratch.as_bytes());
            }
        }
    }
}

/// Characters of `n` in decimal.
fn digits(n: i64) -> usize {
    let mut len = if n < 0 { 2 } else { 1 };
    let mut m = n.unsigned_abs() / 10;
    while m > 0 {
        len += 1;
        m /= 10;
    }
    len
}

/// A whole reply at the front of `b`: its length, and whether it is an
/// error. `None` while it is incomplete.
pub fn reply(proto: Protocol, b: &[u8]) -> Option<(usize, bool)> {
    match proto {
        Protocol::Line => {
            let end = b.iter().position(|&c| c == b'\n')? + 1;
            let body = b[..end].strip_suffix(b"\n").unwrap_or(&b[..end]);
            let ok = !body.windows(5).any(|w| w == b"CODE=") || body.windows(8).any(|w| w == b"CODE=200");
            Some((end, !ok))
        }
        Protocol::Resp => resp(b, 0),
        Protocol::Memcache => memcache(b),
    }
}

/// The line starting at `at`: (its content without CRLF, the offset after
/// it).
fn line(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..n], at + n + 2))
}

fn number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// One RESP value at `at`: where it ends, and whether it is an error.
fn resp(b: &[u8], at: usize) -> Option<(usize, bool)> {
    let (head, next) = line(b, at)?;
    match head.first()? {
        b'+' | b':' => Some((next, false)),
        b'-' => Some((next, true)),
        b'$' => match number(&head[1..])? {
            n if n < 0 => Some((next, false)), // nil: a key not set
            n => {
                // A length no buffer holds is the store's error, not ours
                // to overflow on.
                let Some(end) = usize::try_from(n)
                    .ok()
                    .and_then(|n| next.checked_add(n)?.checked_add(2))
                else {
                    return Some((b.len(), true));
                };
                (b.len() >= end).then_some((end, false))
            }
        },
        b'*' => {
            let mut end = next;
            let mut err = false;
            for _ in 0..number(&head[1..])?.max(0) {
                let (e, bad) = resp(b, end)?;
                end = e;
                err |= bad;
            }
            Some((end, err))
        }
        _ => Some((next, true)), // not RESP: count it as an error
    }
}

/// One memcached reply: `STORED`, an error line, or `VALUE ...` blocks up
/// to `END`.
fn memcache(b: &[u8]) -> Option<(usize, bool)> {
    let mut at = 0;
    loop {
        let (l, next) = line(b, at)?;
        if l == b"END" {
            return Some((next, false));
        }
        if let Some(v) = l.strip_prefix(b"VALUE ") {
            let bytes = number(v.rsplit(|&c| c == b' ').next()?)?;
            let Some(end) = usize::try_from(bytes)
                .ok()
                .and_then(|n| next.checked_add(n)?.checked_add(2))
            else {
                return Some((b.len(), true)); // a length that cannot be
            };
            if b.len() < end {
                return None;
            }
            at = end;
            continue;
        }
        let ok = l == b"STORED";
        return Some((next, !ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(p: Protocol, op: Op, ind: &[i64], data: &[i64]) -> String {
        let mut b = Buffer::new();
        Encoder::default().encode(p, &mut b, op, ind, data);
        String::from_utf8(b.data().to_vec()).unwrap()
    }

    #[test]
    fn requests_in_each_protocol() {
        assert_eq!(enc(Protocol::Line, Op::Get, &[1, 2], &[]), "OP=GET;IND=1,2\n");
        assert_eq!(
            enc(Protocol::Resp, Op::Get, &[12], &[]),
            "*2\r\n$3\r\nGET\r\n$6\r\nkey:12\r\n"
        );
        assert_eq!(
            enc(Protocol::Resp, Op::Put, &[3], &[-45]),
            "*3\r\n$3\r\nSET\r\n$5\r\nkey:3\r\n$3\r\n-45\r\n"
        );
        assert_eq!(
            enc(Protocol::Resp, Op::Get, &[1, 2], &[]),
            "*3\r\n$4\r\nMGET\r\n$5\r\nkey:1\r\n$5\r\nkey:2\r\n"
        );
        assert_eq!(enc(Protocol::Memcache, Op::Get, &[1, 22], &[]), "get key:1 key:22\r\n");
        assert_eq!(
            enc(Protocol::Memcache, Op::Put, &[7], &[100]),
            "set key:7 0 0 3\r\n100\r\n"
        );
        assert_eq!(
            (digits(0), digits(9), digits(10), digits(-1), digits(i64::MIN)),
            (1, 1, 2, 2, 20)
        );
    }

    #[test]
    fn replies_end_where_they_end() {
        let r = |p, s: &str| reply(p, s.as_bytes());
        assert_eq!(r(Protocol::Line, "OP=GET;IND=1;DATA=5;CODE=200\nOP"), Some((29, false)));
        assert_eq!(r(Protocol::Line, "OP=GET;CODE=400;MSG=x\n"), Some((22, true)));
        assert_eq!(r(Protocol::Line, "OP=GET;IND=1;DATA=5"), None);
        assert_eq!(r(Protocol::Resp, "+OK\r\n"), Some((5, false)));
        assert_eq!(r(Protocol::Resp, "-ERR wrong\r\n+OK"), Some((12, true)));
        assert_eq!(r(Protocol::Resp, "$-1\r\n"), Some((5, false)));
        assert_eq!(r(Protocol::Resp, "$3\r\nabc\r\n"), Some((9, false)));
        assert_eq!(r(Protocol::Resp, "$3\r\nab"), None);
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n$-1\r\n"), Some((16, false)));
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n"), None);
        assert_eq!(r(Protocol::Memcache, "STORED\r\n"), Some((8, false)));
        assert_eq!(
            r(Protocol::Memcache, "SERVER_ERROR out of memory\r\n"),
            Some((28, true))
        );
        assert_eq!(r(Protocol::Memcache, "END\r\n"), Some((5, false)));
        assert_eq!(
            r(Protocol::Memcache, "VALUE key:1 0 2\r\n42\r\nEND\r\n"),
            Some((26, false))
        );
        assert_eq!(r(Protocol::Memcache, "VALUE key:1 0 2\r\n42\r\n"), None);
        assert_eq!(r(Protocol::Memcache, "VALUE key:1 0 2\r\n4"), None);
    }

    #[test]
    fn hostile_lengths_are_errors_not_overflows() {
        let r = |p, s: &str| reply(p, s.as_bytes());
        // A length this long is only ever incomplete (the read limit ends
        // the connection), never an overflow.
        let huge = format!("${}\r\nab", i64::MAX);
        assert_eq!(r(Protocol::Resp, &huge), None);
        assert_eq!(r(Protocol::Resp, "$-7\r\n"), Some((5, false)));
        let neg = "VALUE k 0 -5\r\nxx\r\nEND\r\n";
        assert_eq!(r(Protocol::Memcache, neg), Some((neg.len(), true)));
        let big = format!("VALUE k 0 {}\r\n", i64::MAX);
        assert_eq!(r(Protocol::Memcache, &big), None);
        assert_eq!(r(Protocol::Resp, "*9223372036854775807\r\n+OK\r\n"), None);
    }

    #[test]
    fn add_and_multi_key_sets_are_refused_where_they_cannot_be_said() {
        assert!(Protocol::Resp.cannot([80, 15, 5], 1).is_some());
        assert!(Protocol::Resp.cannot([80, 20, 0], 4).is_none());
        assert!(Protocol::Memcache.cannot([80, 20, 0], 2).is_some());
        assert!(Protocol::Memcache.cannot([100, 0, 0], 2).is_none());
        assert!(Protocol::Line.cannot([1, 1, 1], 9).is_none());
    }
}

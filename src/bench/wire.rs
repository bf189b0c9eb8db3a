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

    /// What it is, in words.
    pub fn describe(&self) -> &'static str {
        match self {
            Protocol::Line => "tablecache's line protocol",
            Protocol::Resp => "Redis's RESP",
            Protocol::Memcache => "memcached's text protocol",
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

/// Why a request counts as failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// A line-protocol reply whose CODE is not 200.
    Code(u16),
    /// A reply that is not of the protocol spoken (no CODE in a line, no
    /// RESP type byte, no memcached reply word).
    Foreign,
    /// RESP's `-ERR …`.
    Resp,
    /// A RESP reply of another type than the command's (an integer to a
    /// GET, a bulk string to a SET).
    WrongType,
    /// memcached's `ERROR`, `CLIENT_ERROR …`, `SERVER_ERROR …`,
    /// `NOT_STORED`.
    Memcache,
    /// No value for a key `--preload` set.
    Miss,
    /// No reply within `--timeout`.
    Timeout,
    /// More replies than requests, or a reply longer than any should be:
    /// the connection's replies no longer match its requests.
    Desync,
    /// The connection closed with the request unanswered.
    Lost,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Code(c) => write!(f, "{c}"),
            ErrorKind::Foreign => f.write_str("foreign"),
            ErrorKind::Resp => f.write_str("resp-error"),
            ErrorKind::WrongType => f.write_str("wrong-type"),
            ErrorKind::Memcache => f.write_str("memcache-error"),
            ErrorKind::Miss => f.write_str("miss"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Desync => f.write_str("desync"),
            ErrorKind::Lost => f.write_str("lost"),
        }
    }
}

/// What the request a reply answers asked for: the reply's expected
/// shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// GET (or ADD) reads values; PUT stores them.
    pub op: Op,
    /// Keys in the request.
    pub keys: usize,
    /// Every key was set before the run: a missing value is an error.
    pub preloaded: bool,
}

/// A whole reply at the front of `b`: its length, and the error it is, if
/// any. `None` while it is incomplete.
pub fn reply(proto: Protocol, b: &[u8], want: Expect) -> Option<(usize, Option<ErrorKind>)> {
    match proto {
        Protocol::Line => {
            let end = b.iter().position(|&c| c == b'\n')? + 1;
            let body = b[..end].strip_suffix(b"\n").unwrap_or(&b[..end]);
            Some((end, line_error(body.strip_suffix(b"\r").unwrap_or(body))))
        }
        Protocol::Resp => {
            let (end, err) = resp(b, 0)?;
            Some((end, err.or_else(|| resp_shape(&b[..end], want))))
        }
        Protocol::Memcache => memcache(b, want),
    }
}

/// A line-protocol reply's error: its CODE if not 200, or `Foreign`
/// without one. The CODE is the first field named so (a MSG after it may
/// say anything).
pub fn line_error(body: &[u8]) -> Option<ErrorKind> {
    let field = (0..body.len()).find(|&k| body[k..].starts_with(b"CODE=") && (k == 0 || body[k - 1] == b';'));
    let Some(at) = field else {
        return Some(ErrorKind::Foreign);
    };
    let digits = &body[at + 5..];
    let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    match std::str::from_utf8(&digits[..n])
        .ok()
        .and_then(|d| d.parse::<u16>().ok())
    {
        Some(200) => None,
        Some(c) => Some(ErrorKind::Code(c)),
        None => Some(ErrorKind::Foreign),
    }
}

/// Which protocol `b` (a reply that was not of the one spoken) looks
/// like, to name it to the user.
pub fn guess(b: &[u8]) -> Option<Protocol> {
    let starts = |p: &[u8]| b.starts_with(p);
    if b.windows(5).any(|w| w == b"CODE=") {
        Some(Protocol::Line)
    } else if ["ERROR", "CLIENT_ERROR", "SERVER_ERROR", "VALUE ", "END\r", "STORED"]
        .iter()
        .any(|p| starts(p.as_bytes()))
    {
        Some(Protocol::Memcache)
    } else if matches!(b.first(), Some(b'+' | b'-' | b':' | b'$' | b'*')) {
        Some(Protocol::Resp)
    } else {
        None
    }
}

/// What to tell the user when the target answered `sample` in another
/// protocol than the one `spoken`.
pub fn foreign_message(spoken: Protocol, sample: &[u8]) -> String {
    let text = String::from_utf8_lossy(&sample[..sample.len().min(60)]);
    let shown = text.trim_end();
    match guess(sample) {
        Some(p) if p != spoken => format!(
            "the target answered {shown:?}, which looks like {}: try --protocol {}",
            p.describe(),
            p.name()
        ),
        _ => format!("the target answered {shown:?}, which is not {}", spoken.describe()),
    }
}

/// The line starting at `at`: (its content without its CRLF, the offset
/// after it). A bare LF ends a line too: no RESP or memcached reply has
/// one outside a length-counted value, and another protocol's line
/// (tablecache's) must end here, to be named, not waited on forever.
fn line(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = b.get(at..)?;
    let n = rest.iter().position(|&c| c == b'\n')?;
    let content = &rest[..n];
    Some((content.strip_suffix(b"\r").unwrap_or(content), at + n + 1))
}

fn number(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// One RESP value at `at`: where it ends, and the error it carries.
fn resp(b: &[u8], at: usize) -> Option<(usize, Option<ErrorKind>)> {
    let (head, next) = line(b, at)?;
    match head.first()? {
        b'+' | b':' => Some((next, None)),
        b'-' => Some((next, Some(ErrorKind::Resp))),
        b'$' => match number(&head[1..])? {
            n if n < 0 => Some((next, None)), // nil: a key not set
            n => {
                // A length no buffer holds is the store's error, not ours
                // to overflow on.
                let Some(end) = usize::try_from(n)
                    .ok()
                    .and_then(|n| next.checked_add(n)?.checked_add(2))
                else {
                    return Some((b.len(), Some(ErrorKind::Desync)));
                };
                (b.len() >= end).then_some((end, None))
            }
        },
        b'*' => {
            let mut end = next;
            let mut err = None;
            for _ in 0..number(&head[1..])?.max(0) {
                let (e, bad) = resp(b, end)?;
                end = e;
                err = err.or(bad);
            }
            Some((end, err))
        }
        _ => Some((next, Some(ErrorKind::Foreign))),
    }
}

/// A whole, error-free RESP reply checked against its command: SET and
/// MSET answer `+OK`, GET a bulk string, MGET an array of as many; a nil
/// for a preloaded key is a miss.
fn resp_shape(r: &[u8], want: Expect) -> Option<ErrorKind> {
    let nil = |v: &[u8]| v.starts_with(b"$-");
    match (want.op, want.keys, r.first()) {
        (Op::Put, _, Some(b'+')) => None,
        (Op::Put, _, _) => Some(ErrorKind::WrongType),
        (_, 1, Some(b'$')) if want.preloaded && nil(r) => Some(ErrorKind::Miss),
        (_, 1, Some(b'$')) => None,
        (_, n, Some(b'*')) if n > 1 => {
            // Elements after the header line; a nil is exactly "$-1".
            let misses = r.windows(5).filter(|w| w == b"\n$-1\r").count();
            (want.preloaded && misses > 0).then_some(ErrorKind::Miss)
        }
        _ => Some(ErrorKind::WrongType),
    }
}

/// One memcached reply: `STORED`, an error line, or `VALUE ...` blocks up
/// to `END` (fewer blocks than keys asked: misses).
fn memcache(b: &[u8], want: Expect) -> Option<(usize, Option<ErrorKind>)> {
    let mut at = 0;
    let mut values = 0;
    loop {
        let (l, next) = line(b, at)?;
        if l == b"END" {
            let miss = want.preloaded && values < want.keys;
            let err = match want.op {
                Op::Put => Some(ErrorKind::Foreign),
                _ => miss.then_some(ErrorKind::Miss),
            };
            return Some((next, err));
        }
        if let Some(v) = l.strip_prefix(b"VALUE ") {
            let bytes = number(v.rsplit(|&c| c == b' ').next()?)?;
            let Some(end) = usize::try_from(bytes)
                .ok()
                .and_then(|n| next.checked_add(n)?.checked_add(2))
            else {
                return Some((b.len(), Some(ErrorKind::Desync))); // a length that cannot be
            };
            if b.len() < end {
                return None;
            }
            values += 1;
            at = end;
            continue;
        }
        let err = if l == b"STORED" {
            (want.op != Op::Put).then_some(ErrorKind::Foreign)
        } else if [&b"ERROR"[..], b"CLIENT_ERROR", b"SERVER_ERROR", b"NOT_STORED"]
            .iter()
            .any(|p| l.starts_with(p))
        {
            Some(ErrorKind::Memcache)
        } else {
            Some(ErrorKind::Foreign)
        };
        return Some((next, err));
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
        assert_eq!(
            enc(Protocol::Resp, Op::Put, &[1, 2], &[3, 4]),
            "*5\r\n$4\r\nMSET\r\n$5\r\nkey:1\r\n$1\r\n3\r\n$5\r\nkey:2\r\n$1\r\n4\r\n"
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

    const GET: Expect = Expect {
        op: Op::Get,
        keys: 1,
        preloaded: false,
    };
    const PUT: Expect = Expect { op: Op::Put, ..GET };

    #[test]
    fn replies_end_where_they_end() {
        let r = |p, s: &str, want| reply(p, s.as_bytes(), want);
        assert_eq!(
            r(Protocol::Line, "OP=GET;IND=1;DATA=5;CODE=200\nOP", GET),
            Some((29, None))
        );
        assert_eq!(r(Protocol::Line, "OP=GET;IND=1;DATA=5", GET), None);
        assert_eq!(r(Protocol::Resp, "+OK\r\n", PUT), Some((5, None)));
        assert_eq!(r(Protocol::Resp, "$-1\r\n", GET), Some((5, None)));
        assert_eq!(r(Protocol::Resp, "$3\r\nabc\r\n", GET), Some((9, None)));
        assert_eq!(r(Protocol::Resp, "$3\r\nab", GET), None);
        let two = Expect { keys: 2, ..GET };
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n$-1\r\n", two), Some((16, None)));
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n", two), None);
        assert_eq!(r(Protocol::Memcache, "STORED\r\n", PUT), Some((8, None)));
        assert_eq!(r(Protocol::Memcache, "END\r\n", GET), Some((5, None)));
        assert_eq!(
            r(Protocol::Memcache, "VALUE key:1 0 2\r\n42\r\nEND\r\n", GET),
            Some((26, None))
        );
        assert_eq!(r(Protocol::Memcache, "VALUE key:1 0 2\r\n42\r\n", GET), None);
        assert_eq!(r(Protocol::Memcache, "VALUE key:1 0 2\r\n4", GET), None);
    }

    #[test]
    fn errors_are_classified_per_protocol() {
        let r = |p, s: &str, want| reply(p, s.as_bytes(), want).map(|(_, e)| e);
        use ErrorKind::*;
        // The line protocol: the first CODE field decides; none is foreign.
        assert_eq!(r(Protocol::Line, "OP=GET;CODE=400;MSG=x\n", GET), Some(Some(Code(400))));
        assert_eq!(
            r(Protocol::Line, "OP=GET;CODE=503;MSG=CODE=200\n", GET),
            Some(Some(Code(503)))
        );
        assert_eq!(r(Protocol::Line, "CODE=200\r\n", GET), Some(None));
        assert_eq!(r(Protocol::Line, "-ERR unknown command\r\n", GET), Some(Some(Foreign)));
        assert_eq!(r(Protocol::Line, "ERROR\r\n", GET), Some(Some(Foreign)));
        assert_eq!(r(Protocol::Line, "OP=GET;XCODE=200\n", GET), Some(Some(Foreign)));
        // RESP: -ERR, the wrong type for the command, a nil for a
        // preloaded key, another protocol.
        assert_eq!(r(Protocol::Resp, "-ERR wrong\r\n+OK", PUT), Some(Some(Resp)));
        assert_eq!(r(Protocol::Resp, ":1\r\n", GET), Some(Some(WrongType)));
        assert_eq!(r(Protocol::Resp, "$2\r\nOK\r\n", PUT), Some(Some(WrongType)));
        let pre = Expect { preloaded: true, ..GET };
        assert_eq!(r(Protocol::Resp, "$-1\r\n", pre), Some(Some(Miss)));
        let pre2 = Expect { keys: 2, ..pre };
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n$-1\r\n", pre2), Some(Some(Miss)));
        assert_eq!(r(Protocol::Resp, "*2\r\n$1\r\na\r\n$1\r\nb\r\n", pre2), Some(None));
        assert_eq!(r(Protocol::Resp, "OP=GET;CODE=400\r\n", GET), Some(Some(Foreign)));
        // tablecache's own lines end in a bare LF: still a line, named.
        assert_eq!(
            reply(Protocol::Resp, b"OP=GET;CODE=400\nOP", GET),
            Some((16, Some(Foreign)))
        );
        assert_eq!(
            reply(Protocol::Memcache, b"OP=GET;CODE=400\n", GET),
            Some((16, Some(Foreign)))
        );
        // memcached: its error words, a miss when preloaded.
        for e in ["ERROR", "CLIENT_ERROR bad", "SERVER_ERROR out of memory", "NOT_STORED"] {
            assert_eq!(
                r(Protocol::Memcache, &format!("{e}\r\n"), PUT),
                Some(Some(Memcache)),
                "{e}"
            );
        }
        assert_eq!(r(Protocol::Memcache, "END\r\n", pre), Some(Some(Miss)));
        assert_eq!(
            r(Protocol::Memcache, "VALUE key:1 0 1\r\n4\r\nEND\r\n", pre),
            Some(None)
        );
        assert_eq!(r(Protocol::Memcache, "END\r\n", PUT), Some(Some(Foreign)));
        assert_eq!(r(Protocol::Memcache, "STORED\r\n", GET), Some(Some(Foreign)));
        assert_eq!(
            r(Protocol::Memcache, "VALUE key:1 0 2\r\n42\r\nEND\r\n", pre),
            Some(None)
        );
        assert_eq!(
            r(Protocol::Memcache, "VALUE key:1 0 1\r\n4\r\nEND\r\n", pre2),
            Some(Some(Miss))
        );
        assert_eq!(r(Protocol::Memcache, "OP=GET;CODE=200\r\n", GET), Some(Some(Foreign)));
        // An empty value is a value, not a nil; an array to a GET of one
        // key is the wrong type.
        assert_eq!(r(Protocol::Resp, "$0\r\n\r\n", pre), Some(None));
        assert_eq!(r(Protocol::Resp, "*1\r\n$1\r\na\r\n", GET), Some(Some(WrongType)));
        // What the user is told.
        let m = foreign_message(Protocol::Line, b"-ERR unknown command 'OP=GET'");
        assert!(
            m.contains("-ERR unknown command") && m.contains("Redis's RESP: try --protocol resp"),
            "{m}"
        );
        let m = foreign_message(Protocol::Resp, b"HTTP/1.1 400 Bad Request");
        assert!(
            m.contains("HTTP/1.1 400") && m.contains("which is not Redis's RESP"),
            "{m}"
        );
        // A reply that looks like the protocol spoken, yet was foreign.
        let m = foreign_message(Protocol::Line, b"OP=GET;XCODE=1");
        assert!(m.ends_with("which is not tablecache's line protocol"), "{m}");
        // Naming the protocol a foreign reply looks like.
        assert_eq!(guess(b"-ERR unknown command"), Some(Protocol::Resp));
        assert_eq!(guess(b"ERROR"), Some(Protocol::Memcache));
        assert_eq!(guess(b"OP=GET;CODE=400"), Some(Protocol::Line));
        assert_eq!(guess(b"HTTP/1.1 400"), None);
        assert_eq!(Code(503).to_string(), "503");
        assert_eq!(Desync.to_string(), "desync");
    }

    #[test]
    fn hostile_lengths_are_errors_not_overflows() {
        let r = |p, s: &str| reply(p, s.as_bytes(), GET);
        // A length this long is only ever incomplete (the read limit ends
        // the connection), never an overflow.
        let huge = format!("${}\r\nab", i64::MAX);
        assert_eq!(r(Protocol::Resp, &huge), None);
        assert_eq!(r(Protocol::Resp, "$-7\r\n"), Some((5, None)));
        let neg = "VALUE k 0 -5\r\nxx\r\nEND\r\n";
        assert_eq!(r(Protocol::Memcache, neg), Some((neg.len(), Some(ErrorKind::Desync))));
        let big = format!("VALUE k 0 {}\r\n", i64::MAX);
        assert_eq!(r(Protocol::Memcache, &big), None);
        assert_eq!(r(Protocol::Resp, "*9223372036854775807\r\n+OK\r\n"), None);
    }

    #[test]
    fn add_and_multi_key_sets_are_refused_where_they_cannot_be_said() {
        assert!(Protocol::Resp.cannot([80, 15, 5], 1).is_some());
        assert!(Protocol::Resp.cannot([80, 20, 0], 4).is_none());
        assert!(Protocol::Memcache.cannot([80, 20, 0], 2).is_some());
        assert!(Protocol::Memcache.cannot([80, 20, 0], 1).is_none());
        assert!(Protocol::Memcache.cannot([100, 0, 0], 1).is_none());
        assert_eq!(
            [Protocol::Line.name(), Protocol::Resp.name(), Protocol::Memcache.name()],
            ["line", "resp", "memcache"]
        );
        assert!(Protocol::Resp.describe().contains("RESP") && Protocol::Memcache.describe().contains("memcached"));
        assert!(Protocol::Memcache.cannot([100, 0, 0], 2).is_none());
        assert!(Protocol::Line.cannot([1, 1, 1], 9).is_none());
    }
}

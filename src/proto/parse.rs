//! Parsing one message body: a request ([`Request::parse`]) or a reply
//! ([`Reply::parse`]), into caller-owned structs reused from message to
//! message (no allocation per message once warm).

use super::{code, encode_request, Op, Problem};
use crate::buffer::Buffer;

/// True if a body holds nothing but blanks (such lines are ignored).
pub fn is_blank(body: &[u8]) -> bool {
    body.iter().all(|b| b.is_ascii_whitespace())
}

/// The OP of a message that may be cut short, if its first field names one
/// (used to echo OP in a 413 reply).
pub fn peek_op(buf: &[u8]) -> Option<Op> {
    let end = buf.iter().position(|&b| b == b';').unwrap_or(buf.len());
    let (k, v) = split_field(&buf[..end])?;
    if k.eq_ignore_ascii_case(b"OP") {
        Op::from_bytes(v)
    } else {
        None
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

fn split_field(field: &[u8]) -> Option<(&[u8], &[u8])> {
    let eq = field.iter().position(|&b| b == b'=')?;
    Some((trim(&field[..eq]), trim(&field[eq + 1..])))
}

/// Iterates the `KEY=VALUE` fields of a body; a trailing `;` is allowed.
fn fields(body: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), Problem>> {
    let body = match body {
        [rest @ .., b';'] => rest,
        _ => body,
    };
    body.split(|&b| b == b';').map(|f| {
        if trim(f).is_empty() {
            Err(Problem::EmptyField)
        } else {
            split_field(f).ok_or(Problem::NoEquals)
        }
    })
}

/// Parses one decimal i64 (optional sign, blanks around allowed).
fn parse_i64(item: &[u8], field: &'static str) -> Result<i64, Problem> {
    let item = trim(item);
    let (neg, digits) = match item {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, item),
    };
    if item.is_empty() {
        return Err(Problem::EmptyNumber(field));
    }
    if digits.is_empty() {
        return Err(Problem::NotNumber(field));
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(Problem::NotNumber(field));
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_sub((d - b'0') as i64))
            .ok_or(Problem::NumberTooBig(field))?;
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg().ok_or(Problem::NumberTooBig(field))
    }
}

/// Parses a SEQ: a number from 0 to i64::MAX.
fn parse_seq(v: &[u8]) -> Result<u64, Problem> {
    let n = parse_i64(v, "SEQ")?;
    u64::try_from(n).map_err(|_| Problem::NotNumber("SEQ"))
}

/// Parses a table's identity (ID) or a history sum (SUM): 16 hex digits
/// at most.
fn parse_hex(v: &[u8], field: &'static str) -> Result<u64, Problem> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 16)
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or(Problem::NotNumber(field))
}

/// Parses a comma-separated list into `out` (cleared first).
fn parse_list(value: &[u8], field: &'static str, out: &mut Vec<i64>) -> Result<(), Problem> {
    out.clear();
    for item in value.split(|&b| b == b',') {
        out.push(parse_i64(item, field)?);
    }
    Ok(())
}

/// A parsed request. Reused from message to message: `parse` overwrites it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// IND, in the order given (empty for CLR, STS, DMP).
    pub ind: Vec<i64>,
    /// DATA, in the order given (PUT only).
    pub data: Vec<i64>,
    /// SEQ (ACK; and a resuming LEASE: the last write the proxy knew of).
    pub seq: u64,
    /// ID (a resuming LEASE: the table the proxy's cache came from).
    pub id: Option<u64>,
    /// SUM (a resuming LEASE: the history sum the proxy last heard, from a
    /// durable server).
    pub sum: Option<u64>,
    /// KEY (a LEASE: the peer secret, docs/coherence.md "Trust").
    pub key: Option<crate::peer::Secret>,
}

/// Which fields a request named (an empty list still counts as named).
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ind: bool,
    data: bool,
    seq: bool,
    id: bool,
    sum: bool,
    key: bool,
}

impl Request {
    /// A request built from parts (for clients and tests).
    pub fn new(op: Op, ind: &[i64], data: &[i64]) -> Request {
        Request {
            op,
            ind: ind.to_vec(),
            data: data.to_vec(),
            seq: 0,
            id: None,
            sum: None,
            key: None,
        }
    }

    /// Parses one message body into `self`. On error, `Err` says why and
    /// `self.op` is the operation if one was recognised, to echo it.
    pub fn parse(&mut self, body: &[u8]) -> Result<(), (Option<Op>, Problem)> {
        if self.parse_plain_read(body) {
            return Ok(());
        }
        self.parse_general(body)
    }

    /// Parses any body: every field, in any order and case, with blanks,
    /// signs and every error the protocol names.
    pub(super) fn parse_general(&mut self, body: &[u8]) -> Result<(), (Option<Op>, Problem)> {
        self.ind.clear();
        self.data.clear();
        self.seq = 0;
        self.id = None;
        self.sum = None;
        self.key = None;
        let mut op = None;
        let mut seen = Seen::default();
        let mut first_problem = None;
        if std::str::from_utf8(body).is_err() {
            first_problem = Some(Problem::NotUtf8);
        }
        // One pass over the fields; OP is looked for even after a problem so
        // that the error reply can echo it.
        for f in fields(body) {
            let res = f.and_then(|(k, v)| self.field(k, v, &mut op, &mut seen));
            if let Err(p) = res {
                first_problem.get_or_insert(p);
            }
        }
        if let Some(p) = first_problem {
            return Err((op, p));
        }
        let op = op.ok_or((None, Problem::NoOp))?;
        self.op = op;
        self.check(op, seen).map_err(|p| (Some(op), p))
    }

    /// Takes one field; a field given twice is an error.
    #[inline]
    fn field(&mut self, k: &[u8], v: &[u8], op: &mut Option<Op>, seen: &mut Seen) -> Result<(), Problem> {
        let is = |name: &[u8]| k.eq_ignore_ascii_case(name);
        let once = |seen: &mut bool, name| match std::mem::replace(seen, true) {
            true => Err(Problem::RepeatedField(name)),
            false => Ok(()),
        };
        if is(b"OP") {
            if op.is_some() {
                return Err(Problem::RepeatedField("OP"));
            }
            *op = Some(Op::from_bytes(v).ok_or_else(|| Problem::UnknownOp(printable(v)))?);
            Ok(())
        } else if is(b"IND") {
            once(&mut seen.ind, "IND")?;
            parse_list(v, "IND", &mut self.ind)
        } else if is(b"DATA") {
            once(&mut seen.data, "DATA")?;
            parse_list(v, "DATA", &mut self.data)
        } else if is(b"SEQ") {
            once(&mut seen.seq, "SEQ")?;
            parse_seq(v).map(|n| self.seq = n)
        } else if is(b"ID") {
            once(&mut seen.id, "ID")?;
            parse_hex(v, "ID").map(|n| self.id = Some(n))
        } else if is(b"SUM") {
            once(&mut seen.sum, "SUM")?;
            parse_hex(v, "SUM").map(|n| self.sum = Some(n))
        } else if is(b"KEY") {
            once(&mut seen.key, "KEY")?;
            self.key = Some(crate::peer::Secret::from_wire(v));
            Ok(())
        } else {
            Err(Problem::UnknownField(printable(k)))
        }
    }

    /// What each operation needs and allows, once every field is taken.
    fn check(&self, op: Op, seen: Seen) -> Result<(), Problem> {
        match op {
            Op::Get | Op::Add | Op::Put if !seen.ind => Err(Problem::MissingInd),
            Op::Put if !seen.data => Err(Problem::MissingData),
            Op::Put if self.ind.len() != self.data.len() => Err(Problem::LengthMismatch {
                ind: self.ind.len(),
                data: self.data.len(),
            }),
            Op::Inv => Err(Problem::ServerOnly(op)),
            Op::Ack if !seen.seq => Err(Problem::MissingSeq),
            _ if self.key.is_some() && op != Op::Lease => Err(Problem::NotAllowed("KEY", op)),
            _ if self.sum.is_some() && (op != Op::Lease || self.id.is_none()) => Err(Problem::NotAllowed("SUM", op)),
            // A resuming LEASE names the table, the last write it knew of,
            // and the indices it still holds (docs/durability.md).
            Op::Lease if self.id.is_some() && !seen.seq => Err(Problem::MissingSeq),
            Op::Lease if self.id.is_some() && !seen.ind => Err(Problem::MissingInd),
            Op::Lease if self.id.is_some() && seen.data => Err(Problem::NotAllowed("DATA", op)),
            Op::Lease if self.id.is_some() => Ok(()),
            _ if self.id.is_some() => Err(Problem::NotAllowed("ID", op)),
            _ if seen.seq && op != Op::Ack => Err(Problem::NotAllowed("SEQ", op)),
            Op::Get | Op::Add if seen.data => Err(Problem::NotAllowed("DATA", op)),
            Op::Clr | Op::Sts | Op::Dmp | Op::Lease | Op::Ack if seen.ind => Err(Problem::NotAllowed("IND", op)),
            Op::Clr | Op::Sts | Op::Dmp | Op::Lease | Op::Ack if seen.data => Err(Problem::NotAllowed("DATA", op)),
            _ => Ok(()),
        }
    }

    /// Appends this request's body (no terminator) to `out`.
    pub fn encode(&self, out: &mut Buffer) {
        encode_request(out, self.op, &self.ind, &self.data);
    }
}

/// Makes a peer's bytes safe to echo in MSG: printable ASCII only, short.
pub(super) fn printable(b: &[u8]) -> String {
    b.iter()
        .take(32)
        .map(|&c| {
            if c.is_ascii_graphic() && c != b';' {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// A parsed reply, as a client or the proxy sees it. Reused like `Request`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reply {
    /// OP, if the reply names one.
    pub op: Option<Op>,
    /// IND, if any.
    pub ind: Vec<i64>,
    /// DATA, if any.
    pub data: Vec<i64>,
    /// CODE; a reply without CODE counts as 200 (naive servers omit it).
    pub code: u16,
    /// MSG, if any.
    pub msg: String,
    /// Whether IND was present.
    pub has_ind: bool,
    /// Whether DATA was present.
    pub has_data: bool,
    /// SEQ, if present (an INV's number, an ACK's echo).
    pub seq: Option<u64>,
    /// NOCACHE: indices of a GET reply the proxy must not keep (a write
    /// to them is waiting at the server).
    pub nocache: Vec<i64>,
    /// MS: a LEASE reply's lease length in milliseconds.
    pub ms: Option<u64>,
    /// ID: a LEASE reply's table identity.
    pub id: Option<u64>,
    /// SUM: a LEASE reply's history sum (a durable server's).
    pub sum: Option<u64>,
    /// KEEP: a resuming LEASE's answer (1: the cache may be kept).
    pub keep: Option<bool>,
}

impl Reply {
    /// Parses a reply body. Unknown fields are skipped (STS replies carry
    /// many), so a newer node's reply still parses; a known field given
    /// twice is an error (which of two CODEs would be the answer?).
    pub fn parse(&mut self, body: &[u8]) -> Result<(), Problem> {
        self.op = None;
        self.ind.clear();
        self.data.clear();
        self.code = code::OK;
        self.msg.clear();
        self.has_ind = false;
        self.has_data = false;
        self.seq = None;
        self.nocache.clear();
        self.ms = None;
        self.id = None;
        self.sum = None;
        self.keep = None;
        let (mut has_code, mut has_msg, mut has_nocache) = (false, false, false);
        // Only MSG is text: the rest is ASCII digits and names, checked as
        // bytes, so the whole body is not run through a UTF-8 check on
        // every reply (the proxy's miss path parses one per fetch it sends).
        let once = |seen: &mut bool, name: &'static str| {
            if std::mem::replace(seen, true) {
                Err(Problem::RepeatedField(name))
            } else {
                Ok(())
            }
        };
        for f in fields(body) {
            let (k, v) = f?;
            if k.eq_ignore_ascii_case(b"OP") {
                if self.op.is_some() {
                    return Err(Problem::RepeatedField("OP"));
                }
                self.op = Some(Op::from_bytes(v).ok_or_else(|| Problem::UnknownOp(printable(v)))?);
            } else if k.eq_ignore_ascii_case(b"IND") {
                once(&mut self.has_ind, "IND")?;
                parse_list(v, "IND", &mut self.ind)?;
            } else if k.eq_ignore_ascii_case(b"DATA") {
                once(&mut self.has_data, "DATA")?;
                parse_list(v, "DATA", &mut self.data)?;
            } else if k.eq_ignore_ascii_case(b"CODE") {
                once(&mut has_code, "CODE")?;
                let c = parse_i64(v, "CODE")?;
                self.code = u16::try_from(c).map_err(|_| Problem::NumberTooBig("CODE"))?;
            } else if k.eq_ignore_ascii_case(b"MSG") {
                once(&mut has_msg, "MSG")?;
                self.msg.push_str(std::str::from_utf8(v).map_err(|_| Problem::NotUtf8)?);
            } else if k.eq_ignore_ascii_case(b"SEQ") {
                if self.seq.replace(parse_seq(v)?).is_some() {
                    return Err(Problem::RepeatedField("SEQ"));
                }
            } else if k.eq_ignore_ascii_case(b"NOCACHE") {
                once(&mut has_nocache, "NOCACHE")?;
                parse_list(v, "NOCACHE", &mut self.nocache)?;
            } else if k.eq_ignore_ascii_case(b"MS") {
                let ms = u64::try_from(parse_i64(v, "MS")?).map_err(|_| Problem::NotNumber("MS"))?;
                if self.ms.replace(ms).is_some() {
                    return Err(Problem::RepeatedField("MS"));
                }
            } else if k.eq_ignore_ascii_case(b"ID") {
                if self.id.replace(parse_hex(v, "ID")?).is_some() {
                    return Err(Problem::RepeatedField("ID"));
                }
            } else if k.eq_ignore_ascii_case(b"SUM") {
                if self.sum.replace(parse_hex(v, "SUM")?).is_some() {
                    return Err(Problem::RepeatedField("SUM"));
                }
            } else if k.eq_ignore_ascii_case(b"KEEP") && self.keep.replace(parse_i64(v, "KEEP")? == 1).is_some() {
                return Err(Problem::RepeatedField("KEEP"));
            }
        }
        Ok(())
    }

    /// True when CODE is one a node answers with: 200, or an error
    /// (400-599). Anything else (0, 100, 204...) is not an answer.
    pub fn is_answer(&self) -> bool {
        self.code == code::OK || (400..600).contains(&self.code)
    }

    /// True for CODE=200.
    pub fn is_ok(&self) -> bool {
        self.code == code::OK
    }
}

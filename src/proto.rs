//! The wire protocol, as pure functions over bytes: parsing
//! (`Request::parse`, `Reply::parse`) and encoding (`encode_*`).
//! Nothing here does I/O, so every rule is unit-tested without sockets.
//! docs/protocol.md is the prose version of this file.
//!
//! A message is `KEY=VALUE` fields separated by `;`:
//!
//! ```text
//! OP=GET;IND=1,2                        request
//! OP=GET;IND=1,2;DATA=10,-3;CODE=200    reply
//! OP=GET;CODE=400;MSG=index 12 out of range 0..9
//! ```
//!
//! Framing (where a message ends) is `framing.rs`'s business; this module
//! only ever sees one whole message body, without its terminator.
//!
//! Hot-path rule: parsing fills caller-owned, reused `Vec`s and encoding
//! appends to the caller's output buffer, so a steady stream of requests
//! allocates nothing.

use crate::buffer::Buffer;
use std::fmt;

/// What a node writes to a connection it accepts only to refuse, at its
/// `--max-connections` limit (the one line written outside any service).
pub const TOO_MANY_CONNECTIONS: &[u8] = b"CODE=503;MSG=too many connections\n";

/// Default bound on one message's body, in bytes (`--max-message-bytes`).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 65536;

/// The operations. STS and DMP are tablecache's own additions (counters and
/// a dump of the table or cache); the other four are the seed protocol's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Op {
    /// Read entries.
    #[default]
    Get,
    /// Write entries.
    Put,
    /// Set every entry to 0.
    Clr,
    /// Sum entries.
    Add,
    /// Counters of the node.
    Sts,
    /// The node's table (server) or cache in eviction order (proxy).
    Dmp,
}

impl Op {
    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Clr => "CLR",
            Op::Add => "ADD",
            Op::Sts => "STS",
            Op::Dmp => "DMP",
        }
    }

    /// Parses a name, ignoring ASCII case.
    pub fn from_bytes(b: &[u8]) -> Option<Op> {
        const ALL: [Op; 6] = [Op::Get, Op::Put, Op::Clr, Op::Add, Op::Sts, Op::Dmp];
        ALL.into_iter().find(|op| op.name().as_bytes().eq_ignore_ascii_case(b))
    }

    /// True for the operations that change the table.
    pub fn is_write(self) -> bool {
        matches!(self, Op::Put | Op::Clr)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Status codes.
pub mod code {
    /// Success.
    pub const OK: u16 = 200;
    /// The request broke a rule of the protocol or of the table.
    pub const BAD_REQUEST: u16 = 400;
    /// The message was longer than `--max-message-bytes`.
    pub const TOO_LARGE: u16 = 413;
    /// The proxy's upstream failed while the request was in flight, or
    /// answered something that does not match the request.
    pub const BAD_GATEWAY: u16 = 502;
    /// The node cannot take the request now (upstream down, queue full,
    /// connection limit reached).
    pub const UNAVAILABLE: u16 = 503;
    /// The proxy's upstream did not answer within `--upstream-timeout-ms`.
    pub const GATEWAY_TIMEOUT: u16 = 504;
}

/// Why a message was refused; its `Display` is the `MSG` field, so it never
/// contains `;` or a newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The body is not UTF-8.
    NotUtf8,
    /// A field has no `=`.
    NoEquals,
    /// `;;` or a field made only of blanks.
    EmptyField,
    /// A key other than the ones the operation takes.
    UnknownField(String),
    /// A key given twice.
    RepeatedField(&'static str),
    /// No OP field.
    NoOp,
    /// An OP that is not one of the six.
    UnknownOp(String),
    /// GET, PUT or ADD without IND.
    MissingInd,
    /// PUT without DATA.
    MissingData,
    /// A field the operation does not take (IND on CLR, DATA on GET...).
    NotAllowed(&'static str, Op),
    /// An empty item in a list (`IND=1,,2` or `IND=`).
    EmptyNumber(&'static str),
    /// An item that is not a decimal integer.
    NotNumber(&'static str),
    /// An item beyond the range of i64.
    NumberTooBig(&'static str),
    /// IND and DATA of a PUT have different lengths.
    LengthMismatch {
        /// Items in IND.
        ind: usize,
        /// Items in DATA.
        data: usize,
    },
    /// An index outside the table.
    OutOfRange {
        /// The index asked for.
        index: i64,
        /// The table's size.
        size: usize,
    },
    /// The sum of an ADD does not fit in i64.
    AddOverflow,
    /// The body is longer than the limit.
    TooLong(usize),
}

impl Problem {
    /// The status code this problem is answered with.
    pub fn code(&self) -> u16 {
        match self {
            Problem::TooLong(_) => code::TOO_LARGE,
            _ => code::BAD_REQUEST,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::NotUtf8 => write!(f, "message is not UTF-8"),
            Problem::NoEquals => write!(f, "field without ="),
            Problem::EmptyField => write!(f, "empty field"),
            Problem::UnknownField(k) => write!(f, "unknown field {k}"),
            Problem::RepeatedField(k) => write!(f, "repeated field {k}"),
            Problem::NoOp => write!(f, "missing OP"),
            Problem::UnknownOp(op) => write!(f, "unknown OP {op}"),
            Problem::MissingInd => write!(f, "missing IND"),
            Problem::MissingData => write!(f, "missing DATA"),
            Problem::NotAllowed(k, op) => write!(f, "{op} takes no {k}"),
            Problem::EmptyNumber(k) => write!(f, "empty number in {k}"),
            Problem::NotNumber(k) => write!(f, "not a number in {k}"),
            Problem::NumberTooBig(k) => write!(f, "number over i64 in {k}"),
            Problem::LengthMismatch { ind, data } => {
                write!(f, "IND has {ind} items but DATA has {data}")
            }
            Problem::OutOfRange { index, size } => {
                write!(f, "index {index} out of range 0..{}", size.saturating_sub(1))
            }
            Problem::AddOverflow => write!(f, "ADD overflow"),
            Problem::TooLong(max) => write!(f, "message over {max} bytes"),
        }
    }
}

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
}

impl Request {
    /// A request built from parts (for clients and tests).
    pub fn new(op: Op, ind: &[i64], data: &[i64]) -> Request {
        Request {
            op,
            ind: ind.to_vec(),
            data: data.to_vec(),
        }
    }

    /// Parses one message body into `self`. On error, `Err` says why and
    /// `self.op` is the operation if one was recognised, to echo it.
    pub fn parse(&mut self, body: &[u8]) -> Result<(), (Option<Op>, Problem)> {
        self.ind.clear();
        self.data.clear();
        let mut op = None;
        let (mut seen_ind, mut seen_data) = (false, false);
        let mut first_problem = None;
        if std::str::from_utf8(body).is_err() {
            first_problem = Some(Problem::NotUtf8);
        }
        // One pass over the fields; OP is looked for even after a problem so
        // that the error reply can echo it.
        for f in fields(body) {
            let (k, v) = match f {
                Ok(kv) => kv,
                Err(p) => {
                    first_problem.get_or_insert(p);
                    continue;
                }
            };
            let res = if k.eq_ignore_ascii_case(b"OP") {
                if op.is_some() {
                    Err(Problem::RepeatedField("OP"))
                } else {
                    match Op::from_bytes(v) {
                        Some(o) => {
                            op = Some(o);
                            Ok(())
                        }
                        None => Err(Problem::UnknownOp(printable(v))),
                    }
                }
            } else if k.eq_ignore_ascii_case(b"IND") {
                if std::mem::replace(&mut seen_ind, true) {
                    Err(Problem::RepeatedField("IND"))
                } else {
                    parse_list(v, "IND", &mut self.ind)
                }
            } else if k.eq_ignore_ascii_case(b"DATA") {
                if std::mem::replace(&mut seen_data, true) {
                    Err(Problem::RepeatedField("DATA"))
                } else {
                    parse_list(v, "DATA", &mut self.data)
                }
            } else {
                Err(Problem::UnknownField(printable(k)))
            };
            if let Err(p) = res {
                first_problem.get_or_insert(p);
            }
        }
        if let Some(p) = first_problem {
            return Err((op, p));
        }
        let op = op.ok_or((None, Problem::NoOp))?;
        self.op = op;
        let fail = |p| Err((Some(op), p));
        match op {
            Op::Get | Op::Add | Op::Put if !seen_ind => fail(Problem::MissingInd),
            Op::Put if !seen_data => fail(Problem::MissingData),
            Op::Put if self.ind.len() != self.data.len() => fail(Problem::LengthMismatch {
                ind: self.ind.len(),
                data: self.data.len(),
            }),
            Op::Get | Op::Add if seen_data => fail(Problem::NotAllowed("DATA", op)),
            Op::Clr | Op::Sts | Op::Dmp if seen_ind => fail(Problem::NotAllowed("IND", op)),
            Op::Clr | Op::Sts | Op::Dmp if seen_data => fail(Problem::NotAllowed("DATA", op)),
            _ => Ok(()),
        }
    }

    /// Appends this request's body (no terminator) to `out`.
    pub fn encode(&self, out: &mut Buffer) {
        encode_request(out, self.op, &self.ind, &self.data);
    }
}

/// Makes a peer's bytes safe to echo in MSG: printable ASCII only, short.
fn printable(b: &[u8]) -> String {
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
    /// Whether IND and DATA were present.
    pub has_ind: bool,
    /// Whether DATA was present.
    pub has_data: bool,
}

impl Reply {
    /// Parses a reply body. Unknown fields are skipped (STS replies carry
    /// many), so a newer node's reply still parses.
    pub fn parse(&mut self, body: &[u8]) -> Result<(), Problem> {
        self.op = None;
        self.ind.clear();
        self.data.clear();
        self.code = code::OK;
        self.msg.clear();
        self.has_ind = false;
        self.has_data = false;
        let text = std::str::from_utf8(body).map_err(|_| Problem::NotUtf8)?;
        for f in fields(text.as_bytes()) {
            let (k, v) = f?;
            if k.eq_ignore_ascii_case(b"OP") {
                self.op = Some(Op::from_bytes(v).ok_or_else(|| Problem::UnknownOp(printable(v)))?);
            } else if k.eq_ignore_ascii_case(b"IND") {
                self.has_ind = true;
                parse_list(v, "IND", &mut self.ind)?;
            } else if k.eq_ignore_ascii_case(b"DATA") {
                self.has_data = true;
                parse_list(v, "DATA", &mut self.data)?;
            } else if k.eq_ignore_ascii_case(b"CODE") {
                let c = parse_i64(v, "CODE")?;
                self.code = u16::try_from(c).map_err(|_| Problem::NumberTooBig("CODE"))?;
            } else if k.eq_ignore_ascii_case(b"MSG") {
                // Valid UTF-8: the whole body was checked above.
                self.msg.push_str(std::str::from_utf8(v).unwrap_or("?"));
            }
        }
        Ok(())
    }

    /// True for CODE=200.
    pub fn is_ok(&self) -> bool {
        self.code == code::OK
    }
}

/// Appends the decimal form of `v`; no allocation (unlike `format!`).
#[inline]
pub fn put_i64(out: &mut Buffer, v: i64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend(&tmp[i..]);
}

/// Appends a comma-separated list of numbers: the one encoder of every
/// IND and DATA list (requests, replies, STS, DMP).
#[inline]
pub fn put_list(out: &mut Buffer, items: impl IntoIterator<Item = i64>) {
    for (i, v) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_i64(out, v);
    }
}

/// Appends `;KEY=` and the list.
fn put_field_list(out: &mut Buffer, key: &[u8], items: &[i64]) {
    out.extend(key);
    put_list(out, items.iter().copied());
}

/// Appends a request body: `OP=..[;IND=..][;DATA=..]` (lists omitted when
/// empty).
pub fn encode_request(out: &mut Buffer, op: Op, ind: &[i64], data: &[i64]) {
    out.extend(b"OP=");
    out.extend(op.name().as_bytes());
    if !ind.is_empty() {
        put_field_list(out, b";IND=", ind);
    }
    if !data.is_empty() {
        put_field_list(out, b";DATA=", data);
    }
}

/// Appends a success reply body: the request's form plus `CODE=200`.
pub fn encode_ok(out: &mut Buffer, op: Op, ind: &[i64], data: &[i64]) {
    encode_request(out, op, ind, data);
    out.extend(b";CODE=200");
}

/// Appends an error reply body: `[OP=..;]CODE=..;MSG=..`.
pub fn encode_error(out: &mut Buffer, op: Option<Op>, code: u16, msg: &dyn fmt::Display) {
    if let Some(op) = op {
        out.extend(b"OP=");
        out.extend(op.name().as_bytes());
        out.push(b';');
    }
    out.extend(b"CODE=");
    put_i64(out, code as i64);
    let before = out.len();
    out.extend(b";MSG=");
    let start = out.len();
    let _ = std::io::Write::write_fmt(&mut BufWriter(out), format_args!("{msg}"));
    if out.len() == start {
        // No message (a naive upstream may give none): no MSG field.
        out.truncate(before);
    }
    sanitize_tail(out, start.min(out.len()));
}

/// `KEY=VALUE;` pairs for STS replies.
pub fn encode_field(out: &mut Buffer, key: &str, value: &dyn fmt::Display) {
    out.push(b';');
    out.extend(key.as_bytes());
    out.push(b'=');
    let start = out.len();
    let _ = std::io::Write::write_fmt(&mut BufWriter(out), format_args!("{value}"));
    sanitize_tail(out, start);
}

/// MSG and field values must not break framing: `;`, `\r` and `\n` become
/// blanks (an upstream's MSG is passed on through here too).
fn sanitize_tail(out: &mut Buffer, start: usize) {
    for b in &mut out.data_mut()[start..] {
        if matches!(*b, b';' | b'\n' | b'\r') {
            *b = b' ';
        }
    }
}

/// `io::Write` over a `Buffer`, for `write!` of Display values.
struct BufWriter<'a>(&'a mut Buffer);

impl std::io::Write for BufWriter<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Request, (Option<Op>, Problem)> {
        let mut r = Request::default();
        r.parse(s.as_bytes()).map(|_| r)
    }

    fn body(f: impl FnOnce(&mut Buffer)) -> String {
        let mut b = Buffer::new();
        f(&mut b);
        String::from_utf8(b.data().to_vec()).unwrap()
    }

    #[test]
    fn parses_the_seed_examples() {
        assert_eq!(req("OP=GET;IND=1,2").unwrap(), Request::new(Op::Get, &[1, 2], &[]));
        assert_eq!(
            req("OP=PUT;IND=1,2;DATA=10,-3").unwrap(),
            Request::new(Op::Put, &[1, 2], &[10, -3])
        );
        assert_eq!(req("OP=CLR").unwrap(), Request::new(Op::Clr, &[], &[]));
        assert_eq!(req("OP=ADD;IND=0,4,7").unwrap(), Request::new(Op::Add, &[0, 4, 7], &[]));
        assert_eq!(req("OP=GET;IND=1;").unwrap().ind, vec![1], "trailing ; allowed");
        assert_eq!(req("op=get; IND = 3 , 4 ").unwrap().ind, vec![3, 4]);
        assert_eq!(req("OP=STS").unwrap().op, Op::Sts);
        assert_eq!(req("OP=DMP").unwrap().op, Op::Dmp);
    }

    #[test]
    fn each_problem_has_its_kind_and_echoes_op() {
        let p = |s: &str| req(s).unwrap_err();
        assert_eq!(p(""), (None, Problem::EmptyField));
        assert_eq!(p("IND=1"), (None, Problem::NoOp));
        assert_eq!(p("OP=MUL;IND=1"), (None, Problem::UnknownOp("MUL".into())));
        assert_eq!(p("OP=GET"), (Some(Op::Get), Problem::MissingInd));
        assert_eq!(p("OP=GET;IND="), (Some(Op::Get), Problem::EmptyNumber("IND")));
        assert_eq!(p("OP=GET;IND=1,,2"), (Some(Op::Get), Problem::EmptyNumber("IND")));
        assert_eq!(p("OP=GET;IND=x"), (Some(Op::Get), Problem::NotNumber("IND")));
        assert_eq!(p("OP=GET;IND=-"), (Some(Op::Get), Problem::NotNumber("IND")));
        assert_eq!(
            p("OP=GET;IND=9223372036854775808"),
            (Some(Op::Get), Problem::NumberTooBig("IND"))
        );
        assert_eq!(
            p("OP=PUT;IND=1;DATA=-9223372036854775809"),
            (Some(Op::Put), Problem::NumberTooBig("DATA"))
        );
        assert_eq!(
            req("OP=PUT;IND=1;DATA=-9223372036854775808").unwrap().data,
            vec![i64::MIN]
        );
        assert_eq!(
            p("OP=PUT;IND=1,2;DATA=1"),
            (Some(Op::Put), Problem::LengthMismatch { ind: 2, data: 1 })
        );
        assert_eq!(p("OP=PUT;IND=1"), (Some(Op::Put), Problem::MissingData));
        assert_eq!(p("OP=GET;IND=1;IND=2"), (Some(Op::Get), Problem::RepeatedField("IND")));
        assert_eq!(p("OP=GET;OP=GET;IND=1"), (Some(Op::Get), Problem::RepeatedField("OP")));
        assert_eq!(
            p("OP=GET;IND=1;FOO=2"),
            (Some(Op::Get), Problem::UnknownField("FOO".into()))
        );
        assert_eq!(
            p("OP=GET;IND=1;DATA=2"),
            (Some(Op::Get), Problem::NotAllowed("DATA", Op::Get))
        );
        assert_eq!(p("OP=CLR;IND=1"), (Some(Op::Clr), Problem::NotAllowed("IND", Op::Clr)));
        assert_eq!(p("OP=GET;;IND=1"), (Some(Op::Get), Problem::EmptyField));
        assert_eq!(p("OP=GET;IND"), (Some(Op::Get), Problem::NoEquals));
        assert_eq!(p("OP=GET;IND=\u{e9}"), (Some(Op::Get), Problem::NotNumber("IND")));
        let mut r = Request::default();
        assert_eq!(
            r.parse(b"OP=GET;IND=\xff").unwrap_err(),
            (Some(Op::Get), Problem::NotUtf8)
        );
    }

    #[test]
    fn messages_never_hold_separators() {
        for p in [
            Problem::UnknownField(printable(b"A;B\nC")),
            Problem::OutOfRange { index: 12, size: 10 },
        ] {
            let s = p.to_string();
            assert!(!s.contains(';') && !s.contains('\n'), "{s}");
        }
        let s = body(|b| encode_error(b, None, 502, &"upstream said a;b\nc"));
        assert_eq!(s, "CODE=502;MSG=upstream said a b c");
    }

    #[test]
    fn encodes_replies_in_the_documented_form() {
        assert_eq!(
            body(|b| encode_ok(b, Op::Get, &[1, 2], &[10, -3])),
            "OP=GET;IND=1,2;DATA=10,-3;CODE=200"
        );
        assert_eq!(body(|b| encode_ok(b, Op::Clr, &[], &[])), "OP=CLR;CODE=200");
        assert_eq!(
            body(|b| encode_ok(b, Op::Add, &[0, 4, 7], &[15])),
            "OP=ADD;IND=0,4,7;DATA=15;CODE=200"
        );
        assert_eq!(
            body(|b| encode_error(b, Some(Op::Get), 400, &Problem::OutOfRange { index: 12, size: 10 })),
            "OP=GET;CODE=400;MSG=index 12 out of range 0..9"
        );
        assert_eq!(body(|b| put_i64(b, i64::MIN)), "-9223372036854775808");
        assert_eq!(body(|b| put_i64(b, 0)), "0");
    }

    #[test]
    fn reply_parse_round_trips() {
        let mut r = Reply::default();
        r.parse(b"OP=GET;IND=1,2;DATA=10,-3;CODE=200").unwrap();
        assert_eq!(
            (r.op, r.ind.clone(), r.data.clone(), r.code),
            (Some(Op::Get), vec![1, 2], vec![10, -3], 200)
        );
        r.parse(b"OP=GET;CODE=400;MSG=index 12 out of range 0..9").unwrap();
        assert_eq!((r.code, r.msg.as_str()), (400, "index 12 out of range 0..9"));
        r.parse(b"OP=GET;IND=1;DATA=5").unwrap();
        assert!(r.is_ok(), "a reply without CODE counts as success");
        r.parse(b"OP=STS;ROLE=server;REQS=4;CODE=200").unwrap();
        assert_eq!(r.op, Some(Op::Sts));
    }

    #[test]
    fn peek_op_names_the_op_of_a_cut_message() {
        assert_eq!(peek_op(b"OP=PUT;IND=1,2,3"), Some(Op::Put));
        assert_eq!(peek_op(b"IND=1"), None);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut r = Request::default();
            let _ = r.parse(&bytes);
            let mut rep = Reply::default();
            let _ = rep.parse(&bytes);
            let _ = crate::framing::check_line(&bytes, 0, 64);
            let _ = peek_op(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(
            base in prop::sample::select(vec!["OP=GET;IND=1,2", "OP=PUT;IND=1,2;DATA=10,-3", "OP=CLR", "OP=ADD;IND=0,4,7"]),
            pos in 0usize..40, byte in any::<u8>())
        {
            let mut b = base.as_bytes().to_vec();
            let p = pos % (b.len() + 1);
            b.insert(p, byte);
            let mut r = Request::default();
            let _ = r.parse(&b);
        }

        #[test]
        fn encode_then_parse_is_identity(
            op in prop::sample::select(vec![Op::Get, Op::Add, Op::Put]),
            ind in proptest::collection::vec(any::<i64>(), 1..20))
        {
            let data: Vec<i64> = if op == Op::Put { ind.iter().map(|v| v.wrapping_mul(7)).collect() } else { vec![] };
            let mut out = Buffer::new();
            encode_request(&mut out, op, &ind, &data);
            let mut r = Request::default();
            r.parse(out.data()).unwrap();
            prop_assert_eq!(r, Request::new(op, &ind, &data));
        }
    }
}

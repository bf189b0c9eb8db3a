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

mod encode;
mod fast;
mod parse;

pub use encode::{
    encode_ack, encode_error, encode_field, encode_get_reply, encode_get_reply_nocache, encode_inv, encode_lease_grant,
    encode_lease_request, encode_ok, encode_read_reply, encode_request, put_i64, put_list,
};
pub use parse::{is_blank, peek_op, Reply, Request};

/// Which history a table is at, as a LEASE answer gives it and a resuming
/// LEASE gives it back (docs/durability.md, "Proxies across a server
/// restart"): a proxy keeps its cache across a reconnect only if all
/// three are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// The table's identity (`ID`): chosen when it was created.
    pub id: u64,
    /// Its write count (`SEQ`).
    pub seq: u64,
    /// The history sum after that write (`SUM`): a durable table's; a
    /// table in memory has none (its identity is new at every start).
    pub sum: Option<u64>,
}

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
    /// A proxy asks the server for a lease (and renews it): from then on
    /// the server tracks what it sends that proxy (docs/coherence.md).
    Lease,
    /// A proxy confirms it applied the server's invalidations up to `SEQ`.
    Ack,
    /// Sent by the server only, unasked: a proxy must drop the listed
    /// entries (every entry, without `IND`).
    Inv,
}

impl Op {
    /// Every operation, in declaration order (`op as usize` indexes it).
    pub const ALL: [Op; 9] = [
        Op::Get,
        Op::Put,
        Op::Clr,
        Op::Add,
        Op::Sts,
        Op::Dmp,
        Op::Lease,
        Op::Ack,
        Op::Inv,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Clr => "CLR",
            Op::Add => "ADD",
            Op::Sts => "STS",
            Op::Dmp => "DMP",
            Op::Lease => "LEASE",
            Op::Ack => "ACK",
            Op::Inv => "INV",
        }
    }

    /// Parses a name, ignoring ASCII case.
    pub fn from_bytes(b: &[u8]) -> Option<Op> {
        Op::ALL
            .into_iter()
            .find(|op| op.name().as_bytes().eq_ignore_ascii_case(b))
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
    /// A coherence request (LEASE, ACK) from a connection that is not a
    /// trusted peer (docs/coherence.md, "Trust"): it is served as an
    /// ordinary client.
    pub const FORBIDDEN: u16 = 403;
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
    /// An OP that is not one of the nine.
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
    /// ACK without SEQ.
    MissingSeq,
    /// An OP a client may not send (INV is the server's).
    ServerOnly(Op),
    /// ACK from a connection that holds no lease.
    NoLease,
    /// LEASE from a connection that is not a trusted peer: it did not
    /// present the secret (or, without one, it is not on loopback).
    NotPeer(&'static str),
    /// ACK of an invalidation never sent.
    AckAhead(u64),
    /// An operation this node does not serve (a proxy grants no leases).
    NotServed(Op),
    /// LEASE over bare framing (invalidations could not be told apart).
    LeaseNeedsLines,
    /// LEASE when the server already tracks its most proxies.
    TooManyProxies,
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
            Problem::TooManyProxies => code::UNAVAILABLE,
            Problem::NotPeer(_) | Problem::NoLease => code::FORBIDDEN,
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
            Problem::UnknownField(k) if k.is_empty() => write!(f, "field with no name"),
            Problem::UnknownField(k) => write!(f, "unknown field {k}"),
            Problem::RepeatedField(k) => write!(f, "repeated field {k}"),
            Problem::NoOp => write!(f, "missing OP"),
            Problem::UnknownOp(op) if op.is_empty() => write!(f, "empty OP"),
            Problem::UnknownOp(op) => write!(f, "unknown OP {op}"),
            Problem::MissingInd => write!(f, "missing IND"),
            Problem::MissingData => write!(f, "missing DATA"),
            Problem::MissingSeq => write!(f, "missing SEQ"),
            Problem::ServerOnly(op) => write!(f, "{op} is sent by the server only"),
            Problem::NoLease => write!(f, "ACK from a connection that holds no lease"),
            Problem::NotPeer(why) => write!(f, "not a trusted peer: {why}"),
            Problem::AckAhead(n) => write!(f, "ACK of SEQ {n}, which was never sent"),
            Problem::NotServed(op) => write!(f, "{op} is not served here"),
            Problem::LeaseNeedsLines => write!(f, "LEASE needs line framing"),
            Problem::TooManyProxies => write!(f, "too many proxies hold leases"),
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
#[cfg(test)]
mod tests {
    use super::parse::printable;
    use super::*;
    use crate::buffer::Buffer;

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
    fn the_common_reads_take_the_fast_parse_and_the_rest_the_general_one() {
        let mut r = Request::default();
        for fast in ["OP=GET;IND=1,22,333;", "OP=ADD;IND=7", "OP=GET;IND=999999999999999999;"] {
            assert!(r.parse_plain_read(fast.as_bytes()), "{fast}");
        }
        assert_eq!((r.op, &r.ind[..]), (Op::Get, &[999_999_999_999_999_999][..]));
        for general in [
            "OP=GET;IND=1;DATA=2;",
            "OP=GET;IND=1,,2;",
            "OP=GET;IND=;",
            "OP=GET;IND=1;;",
            "OP=GET;IND=-1;",
            "OP=GET;IND=1000000000000000000;",
            "op=GET;IND=1;",
            "OP=PUT;IND=1;DATA=2;",
            "OP=GET;IND=1 ;",
        ] {
            assert!(!r.parse_plain_read(general.as_bytes()), "{general}");
        }
        // The general parse still answers what the fast one leaves.
        assert_eq!(req("OP=GET;IND=1,,2;").unwrap_err().1, Problem::EmptyNumber("IND"));
        assert_eq!(
            req("OP=GET;IND=1000000000000000000;").unwrap().ind,
            [1_000_000_000_000_000_000]
        );
    }

    #[test]
    fn only_put_and_clr_change_the_table_and_ops_print_their_names() {
        for op in Op::ALL {
            assert_eq!(op.is_write(), matches!(op, Op::Put | Op::Clr), "{op:?}");
            assert_eq!(op.to_string(), op.name());
        }
        assert_eq!(format!("[{}]", Op::Get), "[GET]");
    }

    #[test]
    fn each_problem_has_its_status_code() {
        assert_eq!(Problem::TooLong(10).code(), code::TOO_LARGE);
        assert_eq!(Problem::TooManyProxies.code(), code::UNAVAILABLE);
        assert_eq!(Problem::NoLease.code(), code::FORBIDDEN);
        assert_eq!(Problem::NotPeer("wrong KEY").code(), code::FORBIDDEN);
        assert_eq!(
            Problem::NotPeer("wrong KEY").to_string(),
            "not a trusted peer: wrong KEY"
        );
        for p in [Problem::NoOp, Problem::AddOverflow, Problem::UnknownField("X".into())] {
            assert_eq!(p.code(), code::BAD_REQUEST, "{p:?}");
        }
    }

    #[test]
    fn a_plus_sign_is_allowed_alone_it_is_not_a_number() {
        assert_eq!(req("OP=GET;IND=+1,-2,3").unwrap().ind, vec![1, -2, 3]);
        assert_eq!(req("OP=GET;IND=+").unwrap_err().1, Problem::NotNumber("IND"));
    }

    #[test]
    fn only_a_lease_carries_the_peer_secret() {
        let r = req("OP=LEASE;KEY=0123456789abcdef==").unwrap();
        assert_eq!(r.key, Some(crate::peer::Secret::from_wire(b"0123456789abcdef==")));
        assert_eq!(format!("{r:?}").matches("0123456789").count(), 0, "never in Debug");
        assert!(req("OP=LEASE;ID=00ff;SEQ=5;IND=1;KEY=k").unwrap().key.is_some());
        assert_eq!(req("OP=LEASE").unwrap().key, None);
        assert_eq!(
            req("OP=GET;IND=1;KEY=k").unwrap_err().1,
            Problem::NotAllowed("KEY", Op::Get)
        );
        assert_eq!(
            req("OP=ACK;SEQ=1;KEY=k").unwrap_err().1,
            Problem::NotAllowed("KEY", Op::Ack)
        );
        assert_eq!(
            req("OP=LEASE;KEY=a;KEY=b").unwrap_err().1,
            Problem::RepeatedField("KEY")
        );
    }

    #[test]
    fn a_resuming_lease_names_the_table_the_last_write_and_the_indices() {
        let r = req("OP=LEASE;ID=00ff;SEQ=5;IND=1,2").unwrap();
        assert_eq!((r.op, r.id, r.seq, r.ind), (Op::Lease, Some(255), 5, vec![1, 2]));
        assert_eq!(
            req("OP=LEASE;ID=ffffffffffffffff;SEQ=0;IND=0").unwrap().id,
            Some(u64::MAX)
        );
        let p = |s: &str| req(s).unwrap_err().1;
        assert_eq!(p("OP=LEASE;ID=ff;IND=1"), Problem::MissingSeq);
        assert_eq!(p("OP=LEASE;ID=ff;SEQ=1"), Problem::MissingInd);
        assert_eq!(
            p("OP=LEASE;ID=ff;SEQ=1;IND=1;DATA=2"),
            Problem::NotAllowed("DATA", Op::Lease)
        );
        // An ID is 1 to 16 hex digits.
        for bad in ["", "0000000000000000f", "10000000000000000", "xyz", "-1"] {
            assert_eq!(
                p(&format!("OP=LEASE;ID={bad};SEQ=1;IND=1")),
                Problem::NotNumber("ID"),
                "{bad:?}"
            );
        }
        assert_eq!(p("OP=GET;IND=1;ID=ff"), Problem::NotAllowed("ID", Op::Get));
        // A plain LEASE (a first one) takes none of them.
        assert_eq!(req("OP=LEASE").unwrap().id, None);
        // The history sum of a durable server: with an ID only, once.
        let r = req("OP=LEASE;ID=1;SEQ=5;SUM=abcdef0123456789;IND=1").unwrap();
        assert_eq!((r.id, r.sum), (Some(1), Some(0xabcd_ef01_2345_6789)));
        assert_eq!(req("OP=LEASE;ID=1;SEQ=5;IND=1").unwrap().sum, None);
        assert_eq!(p("OP=LEASE;SUM=1"), Problem::NotAllowed("SUM", Op::Lease));
        assert_eq!(p("OP=GET;IND=1;SUM=1"), Problem::NotAllowed("SUM", Op::Get));
        assert_eq!(p("OP=LEASE;ID=1;SEQ=5;SUM=x;IND=1"), Problem::NotNumber("SUM"));
        assert_eq!(
            p("OP=LEASE;ID=1;SEQ=5;SUM=1;SUM=2;IND=1"),
            Problem::RepeatedField("SUM")
        );
        let mut reply = Reply::default();
        reply.parse(b"OP=LEASE;MS=100;ID=ff;SEQ=3;SUM=7;CODE=200").unwrap();
        assert_eq!((reply.id, reply.seq, reply.sum), (Some(255), Some(3), Some(7)));
        assert!(reply.parse(b"OP=LEASE;SUM=1;SUM=2;CODE=200").is_err());
    }

    #[test]
    fn fields_an_operation_does_not_take_are_named() {
        let p = |s: &str| req(s).unwrap_err().1;
        assert_eq!(p("OP=GET;IND=1;DATA=2"), Problem::NotAllowed("DATA", Op::Get));
        assert_eq!(p("OP=ADD;IND=1;DATA=2"), Problem::NotAllowed("DATA", Op::Add));
        // Without ID, a LEASE is a first one: IND is named first.
        assert_eq!(p("OP=LEASE;IND=1;DATA=2"), Problem::NotAllowed("IND", Op::Lease));
        assert_eq!(p("OP=CLR;DATA=2"), Problem::NotAllowed("DATA", Op::Clr));
        assert_eq!(p("OP=STS;DATA=2"), Problem::NotAllowed("DATA", Op::Sts));
    }

    #[test]
    fn a_request_encodes_as_it_parses() {
        let mut b = Buffer::new();
        Request::new(Op::Put, &[1, 2], &[3, -4]).encode(&mut b);
        assert_eq!(b.data(), b"OP=PUT;IND=1,2;DATA=3,-4");
        assert_eq!(
            req("OP=PUT;IND=1,2;DATA=3,-4").unwrap(),
            Request::new(Op::Put, &[1, 2], &[3, -4])
        );
    }

    #[test]
    fn keep_is_one_or_not() {
        let mut r = Reply::default();
        r.parse(b"OP=LEASE;KEEP=1;CODE=200").unwrap();
        assert_eq!(r.keep, Some(true));
        r.parse(b"OP=LEASE;KEEP=0;CODE=200").unwrap();
        assert_eq!(r.keep, Some(false));
        assert!(r.parse(b"OP=LEASE;KEEP=1;KEEP=1;CODE=200").is_err());
    }

    #[test]
    fn an_empty_name_is_said_so() {
        assert_eq!(Problem::UnknownField(String::new()).to_string(), "field with no name");
        assert_eq!(Problem::UnknownField("XY".into()).to_string(), "unknown field XY");
        assert_eq!(Problem::UnknownOp(String::new()).to_string(), "empty OP");
        assert_eq!(Problem::UnknownOp("FOO".into()).to_string(), "unknown OP FOO");
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
    fn an_empty_op_or_key_is_named_as_such() {
        let msg = |s: &str| req(s).unwrap_err().1.to_string();
        assert_eq!(msg("OP="), "empty OP");
        assert_eq!(msg("=GET"), "field with no name");
        assert_eq!(msg("OP=GET;=1"), "field with no name");
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
    fn coherence_messages_parse_and_are_checked() {
        let r = req("OP=LEASE").unwrap();
        assert_eq!((r.op, r.seq), (Op::Lease, 0));
        let r = req("OP=ACK;SEQ=12").unwrap();
        assert_eq!((r.op, r.seq), (Op::Ack, 12));
        let p = |s: &str| req(s).unwrap_err();
        assert_eq!(p("OP=ACK"), (Some(Op::Ack), Problem::MissingSeq));
        assert_eq!(p("OP=ACK;SEQ=-1"), (Some(Op::Ack), Problem::NotNumber("SEQ")));
        assert_eq!(
            p("OP=GET;IND=1;SEQ=2"),
            (Some(Op::Get), Problem::NotAllowed("SEQ", Op::Get))
        );
        assert_eq!(
            p("OP=LEASE;IND=1"),
            (Some(Op::Lease), Problem::NotAllowed("IND", Op::Lease))
        );
        assert_eq!(p("OP=INV;SEQ=1;IND=1"), (Some(Op::Inv), Problem::ServerOnly(Op::Inv)));
        assert_eq!(p("OP=ACK;SEQ=1;SEQ=2"), (Some(Op::Ack), Problem::RepeatedField("SEQ")));
        let mut r = Reply::default();
        r.parse(b"OP=INV;SEQ=3;IND=1,2").unwrap();
        assert_eq!(
            (r.op, r.seq, r.ind.clone(), r.has_ind),
            (Some(Op::Inv), Some(3), vec![1, 2], true)
        );
        r.parse(b"OP=INV;SEQ=4").unwrap();
        assert!(!r.has_ind, "an INV without IND means every entry");
        r.parse(b"OP=GET;IND=1,2;DATA=5,6;NOCACHE=2;CODE=200").unwrap();
        assert_eq!(r.nocache, [2]);
        r.parse(b"OP=LEASE;MS=1000;CODE=200").unwrap();
        assert_eq!(r.ms, Some(1000));
        assert!(r.parse(b"OP=GET;NOCACHE=1;NOCACHE=2").is_err());
        assert!(r.parse(b"OP=INV;SEQ=1;SEQ=2").is_err());
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
    use crate::buffer::Buffer;
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
        fn replies_round_trip_through_encode_and_parse(
            ind in proptest::collection::vec(any::<i64>(), 1..20),
            code in prop::sample::select(vec![200u16, 400, 413, 502, 503, 504]),
        ) {
            let data: Vec<i64> = ind.iter().map(|v| v.wrapping_add(1)).collect();
            let mut out = Buffer::new();
            if code == 200 {
                encode_ok(&mut out, Op::Put, &ind, &data);
            } else {
                encode_error(&mut out, Some(Op::Put), code, &"went; wrong\n");
            }
            let mut r = Reply::default();
            r.parse(out.data()).unwrap();
            prop_assert_eq!(r.op, Some(Op::Put));
            prop_assert_eq!(r.code, code);
            if code == 200 {
                prop_assert_eq!((r.ind.clone(), r.data.clone()), (ind, data));
            } else {
                prop_assert_eq!(r.msg.as_str(), "went  wrong", "separators never reach MSG");
            }
        }

        #[test]
        fn the_fast_read_parse_agrees_with_the_general_one(
            head in prop::sample::select(vec!["OP=GET;IND=", "OP=ADD;IND=", "OP=get;IND=", "OP=PUT;IND=", "OP=GET;IND", "OP=GET; IND="]),
            list in "[0-9,;+ -]{0,12}|[0-9]{1,20}(,[0-9]{1,20}){0,3};?",
        ) {
            let body = format!("{head}{list}");
            // Every field set, as a request before it would have left them.
            let mut fast = Request {
                op: Op::Put,
                ind: vec![9],
                data: vec![8],
                seq: 5,
                id: Some(1),
                sum: Some(2),
                key: Some(crate::peer::Secret::from_wire(b"k")),
            };
            if fast.parse_plain_read(body.as_bytes()) {
                let mut general = Request::default();
                prop_assert_eq!(general.parse_general(body.as_bytes()), Ok(()), "{}", body);
                prop_assert_eq!(fast, general, "{}", body);
            }
        }

        #[test]
        fn an_error_names_the_field_that_is_wrong(
            field in prop::sample::select(vec!["IND", "DATA"]),
            junk in "[a-z]{1,5}",
        ) {
            let body = if field == "IND" {
                format!("OP=PUT;IND=1,{junk};DATA=1,2")
            } else {
                format!("OP=PUT;IND=1,2;DATA=1,{junk}")
            };
            let mut r = Request::default();
            let (op, p) = r.parse(body.as_bytes()).unwrap_err();
            prop_assert_eq!(op, Some(Op::Put));
            prop_assert_eq!(p.clone(), Problem::NotNumber(if field == "IND" { "IND" } else { "DATA" }));
            prop_assert!(p.to_string().ends_with(field), "{}", p);
        }

        #[test]
        fn a_pipeline_split_anywhere_frames_the_same_messages(
            msgs in proptest::collection::vec(
                prop::sample::select(vec!["OP=GET;IND=1,2", "OP=PUT;IND=3;DATA=-4", "OP=CLR", "OP=ADD;IND=0,9"]), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            // However the bytes arrive (one split point: two reads), the
            // framer finds the same messages in the same order.
            let wire: Vec<u8> = msgs.iter().flat_map(|m| format!("{m}\n").into_bytes()).collect();
            let at = cut.index(wire.len() + 1);
            let mut framer = crate::framing::Framer::new(crate::framing::Framing::Line);
            let mut input = Buffer::new();
            let mut got = Vec::new();
            for chunk in [&wire[..at], &wire[at..]] {
                input.extend(chunk);
                while let crate::framing::Frame::Complete { body, total } = framer.next(&mut input, 64) {
                    got.push(String::from_utf8(input.data()[..body].to_vec()).unwrap());
                    framer.consume(&mut input, total);
                }
            }
            prop_assert_eq!(got, msgs.iter().map(|m| m.to_string()).collect::<Vec<_>>());
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

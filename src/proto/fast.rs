//! The common read parsed in one pass over its bytes: `OP=GET;IND=1,2,3;`
//! (or `ADD`) as the client library and the bench write it. The general
//! parser (`parse.rs`) takes every body; this one takes only that shape,
//! and says so, leaving anything else to it.

use super::{Op, Request};

impl Request {
    /// The common read in one pass over its bytes: `OP=GET;IND=1,2,3;` (or
    /// `ADD`), exactly as the client library and the bench write it —
    /// upper-case names, no blanks, only digits and single commas in IND,
    /// at most 18 digits a number (so no overflow is possible), the last
    /// `;` optional. False for anything else, and `self` is then left for
    /// `Request::parse_general`, which takes every body; the two agree on
    /// every body this one takes (a property test holds them to it).
    pub(super) fn parse_plain_read(&mut self, body: &[u8]) -> bool {
        let (op, list) = match body {
            [b'O', b'P', b'=', b'G', b'E', b'T', b';', b'I', b'N', b'D', b'=', rest @ ..] => (Op::Get, rest),
            [b'O', b'P', b'=', b'A', b'D', b'D', b';', b'I', b'N', b'D', b'=', rest @ ..] => (Op::Add, rest),
            _ => return false,
        };
        let list = match list {
            [rest @ .., b';'] => rest,
            _ => list,
        };
        self.ind.clear();
        let (mut v, mut digits) = (0i64, 0u32);
        for &b in list {
            match b {
                b'0'..=b'9' if digits < 18 => {
                    v = v * 10 + i64::from(b - b'0');
                    digits += 1;
                }
                b',' if digits > 0 => {
                    self.ind.push(v);
                    (v, digits) = (0, 0);
                }
                _ => return false,
            }
        }
        if digits == 0 {
            return false;
        }
        self.ind.push(v);
        self.op = op;
        self.data.clear();
        self.seq = 0;
        self.id = None;
        self.sum = None;
        self.key = None;
        true
    }
}

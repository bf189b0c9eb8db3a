//! Encoding messages: appends to the caller's output buffer, never
//! allocates (numbers are formatted by hand, not with `format!`).

use super::{History, Op};
use crate::buffer::Buffer;
use std::fmt;

/// Appends the decimal form of `v`; no allocation (unlike `format!`).
/// The digits are written straight into the buffer's free space, last
/// first, once their count is known: no copy through a scratch array (a
/// call to `memcpy` per number, on the proxy's every reply).
#[inline]
pub fn put_i64(out: &mut Buffer, v: i64) {
    let mut n = v.unsigned_abs();
    let sign = usize::from(v < 0);
    let len = sign + n.checked_ilog10().map_or(1, |l| l as usize + 1);
    let room = &mut out.space(len)[..len];
    for d in room[sign..].iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
    if sign == 1 {
        room[0] = b'-';
    }
    out.fill(len);
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

/// Appends the success reply of a GET: the indices asked and their
/// `values`, in the order asked (the server's table and the proxy's
/// cache answer with the same bytes).
pub fn encode_get_reply(out: &mut Buffer, ind: &[i64], values: impl IntoIterator<Item = i64>) {
    encode_get_reply_nocache(out, ind, values, &[]);
}

/// Appends a GET's success reply to a lease holder: as
/// [`encode_get_reply`], and `NOCACHE` naming the indices it must not keep
/// (a write to them waits), when there are any.
pub fn encode_get_reply_nocache(out: &mut Buffer, ind: &[i64], values: impl IntoIterator<Item = i64>, nocache: &[i64]) {
    encode_request(out, Op::Get, ind, &[]);
    out.extend(b";DATA=");
    put_list(out, values);
    if !nocache.is_empty() {
        put_field_list(out, b";NOCACHE=", nocache);
    }
    out.extend(b";CODE=200");
}

/// Appends a LEASE request: a first one (`resume: None`), or one that
/// resumes a history with the cached indices `ind`; `key` is the peer
/// secret, if the proxy has one.
pub fn encode_lease_request(out: &mut Buffer, ind: &[i64], resume: Option<&History>, key: Option<&[u8]>) {
    encode_request(out, Op::Lease, ind, &[]);
    if let Some(h) = resume {
        put_history(out, h);
    }
    if let Some(key) = key {
        out.extend(b";KEY=");
        out.extend(key);
    }
}

/// Appends a LEASE grant: its length, the table's history, and for a
/// resume whether the cache may be kept.
pub fn encode_lease_grant(out: &mut Buffer, ms: u64, history: &History, keep: Option<bool>) {
    out.extend(b"OP=LEASE;MS=");
    put_i64(out, ms as i64);
    put_history(out, history);
    if let Some(keep) = keep {
        out.extend(b";KEEP=");
        put_i64(out, i64::from(keep));
    }
    out.extend(b";CODE=200");
}

/// `;ID=..;SEQ=..[;SUM=..]`, ID and SUM in 16 hex digits.
fn put_history(out: &mut Buffer, h: &History) {
    encode_field(out, "ID", &format_args!("{:016x}", h.id));
    encode_field(out, "SEQ", &h.seq);
    if let Some(sum) = h.sum {
        encode_field(out, "SUM", &format_args!("{sum:016x}"));
    }
}

/// Appends an invalidation, `OP=INV;SEQ=..`, of `ind` (of every index
/// without IND).
pub fn encode_inv(out: &mut Buffer, seq: u64, ind: Option<&[i64]>) {
    out.extend(b"OP=INV");
    encode_field(out, "SEQ", &seq);
    if let Some(ind) = ind {
        put_field_list(out, b";IND=", ind);
    }
}

/// Appends an ACK of invalidations up to `seq` (the proxy's request), or
/// its answer with `ok`.
pub fn encode_ack(out: &mut Buffer, seq: u64, ok: bool) {
    out.extend(b"OP=ACK");
    encode_field(out, "SEQ", &seq);
    if ok {
        out.extend(b";CODE=200");
    }
}

/// Encodes the success reply of a GET (the values in the order asked) or
/// an ADD (`sum`).
pub fn encode_read_reply(out: &mut Buffer, op: Op, ind: &[i64], vals: &[Option<i64>], sum: i64) {
    if op == Op::Add {
        return encode_ok(out, Op::Add, ind, &[sum]);
    }
    encode_get_reply(out, ind, vals.iter().map(|v| v.unwrap_or(0)));
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

    fn text(f: impl FnOnce(&mut Buffer)) -> String {
        let mut b = Buffer::new();
        f(&mut b);
        String::from_utf8(b.data().to_vec()).unwrap()
    }

    #[test]
    fn numbers_are_written_as_rust_writes_them_at_every_length() {
        let mut edges = vec![0, i64::MIN, i64::MAX, i64::MIN + 1];
        let mut p: i64 = 1;
        for _ in 0..19 {
            edges.extend([p - 1, p, p + 1, -(p - 1), -p, -(p + 1)]);
            p = p.saturating_mul(10);
        }
        for v in edges {
            // After other bytes, in a buffer that must grow: the digits
            // land after them, and nothing else moves.
            let mut b = Buffer::with_capacity(3);
            b.extend(b"x=");
            put_i64(&mut b, v);
            b.push(b';');
            assert_eq!(std::str::from_utf8(b.data()).unwrap(), format!("x={v};"));
        }
    }

    #[test]
    fn every_message_of_the_coherence_protocol_has_its_exact_bytes() {
        let h = History {
            id: 0xab,
            seq: 7,
            sum: Some(0xcd),
        };
        assert_eq!(text(|b| encode_lease_request(b, &[], None, None)), "OP=LEASE");
        assert_eq!(
            text(|b| encode_lease_request(b, &[3, 4], Some(&h), Some(b"s3cret"))),
            "OP=LEASE;IND=3,4;ID=00000000000000ab;SEQ=7;SUM=00000000000000cd;KEY=s3cret"
        );
        let no_sum = History { sum: None, ..h };
        assert_eq!(
            text(|b| encode_lease_grant(b, 1000, &no_sum, None)),
            "OP=LEASE;MS=1000;ID=00000000000000ab;SEQ=7;CODE=200"
        );
        assert_eq!(
            text(|b| encode_lease_grant(b, 5, &h, Some(true))),
            "OP=LEASE;MS=5;ID=00000000000000ab;SEQ=7;SUM=00000000000000cd;KEEP=1;CODE=200"
        );
        assert!(text(|b| encode_lease_grant(b, 5, &h, Some(false))).contains(";KEEP=0;"));
        assert_eq!(text(|b| encode_ack(b, 9, false)), "OP=ACK;SEQ=9");
        assert_eq!(text(|b| encode_ack(b, 9, true)), "OP=ACK;SEQ=9;CODE=200");
        assert_eq!(text(|b| encode_inv(b, 4, Some(&[1, -2]))), "OP=INV;SEQ=4;IND=1,-2");
        assert_eq!(text(|b| encode_inv(b, 4, None)), "OP=INV;SEQ=4");
    }

    #[test]
    fn reads_are_encoded_as_asked() {
        assert_eq!(
            text(|b| encode_get_reply_nocache(b, &[1, 2], [10, 20], &[2])),
            "OP=GET;IND=1,2;DATA=10,20;NOCACHE=2;CODE=200"
        );
        assert_eq!(
            text(|b| encode_get_reply(b, &[1], [10])),
            "OP=GET;IND=1;DATA=10;CODE=200"
        );
        let vals = [Some(4), None, Some(-1)];
        assert_eq!(
            text(|b| encode_read_reply(b, Op::Get, &[1, 2, 3], &vals, 0)),
            "OP=GET;IND=1,2,3;DATA=4,0,-1;CODE=200"
        );
        assert_eq!(
            text(|b| encode_read_reply(b, Op::Add, &[1, 2, 3], &vals, 3)),
            "OP=ADD;IND=1,2,3;DATA=3;CODE=200"
        );
    }
}

//! The server's authoritative table: `size` i64 entries, all 0 at start,
//! and the semantics of each operation on it. Pure code: a request in, a
//! reply body out.

use crate::buffer::Buffer;
use crate::proto::{encode_ok, Op, Problem, Request};

/// The table of integers the server holds.
#[derive(Debug, Clone)]
pub struct Table {
    vals: Vec<i64>,
}

/// The most entries a table may have (`--size`): 2^32, 32 GiB of values.
pub const MAX_SIZE: usize = 1 << 32;

impl Table {
    /// A table of `size` zeros.
    pub fn new(size: usize) -> Table {
        Table { vals: vec![0; size] }
    }

    /// A table of `size` zeros, or an error when the memory cannot be had
    /// (instead of aborting the process).
    pub fn try_new(size: usize) -> Result<Table, std::collections::TryReserveError> {
        let mut vals = Vec::new();
        vals.try_reserve_exact(size)?;
        vals.resize(size, 0);
        Ok(Table { vals })
    }

    /// A table holding `vals` (recovered from disk).
    pub fn from_values(vals: Vec<i64>) -> Table {
        Table { vals }
    }

    /// Number of entries.
    pub fn size(&self) -> usize {
        self.vals.len()
    }

    /// All entries, index order.
    pub fn values(&self) -> &[i64] {
        &self.vals
    }

    fn slot(&self, index: i64) -> Result<usize, Problem> {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < self.vals.len())
            .ok_or(Problem::OutOfRange {
                index,
                size: self.vals.len(),
            })
    }

    fn check_all(&self, ind: &[i64]) -> Result<(), Problem> {
        ind.iter().try_for_each(|&i| self.slot(i).map(|_| ()))
    }

    /// Sums the entries at `ind` with overflow checking. Every index is
    /// checked first, as GET and PUT do: an index out of range is the
    /// answer whatever the values, so a proxy that fetches part of an ADD
    /// gives the same answer as the server.
    pub fn sum(&self, ind: &[i64]) -> Result<i64, Problem> {
        self.check_all(ind)?;
        ind.iter().try_fold(0i64, |acc, &i| {
            acc.checked_add(self.vals[self.slot(i)?]).ok_or(Problem::AddOverflow)
        })
    }

    /// Checks a request against the table without applying it (every
    /// index in range).
    pub fn check(&self, req: &Request) -> Result<(), Problem> {
        self.check_all(&req.ind)
    }

    /// Applies a GET, PUT, CLR or ADD and appends its success reply body to
    /// `out`. A request is all or nothing: on `Err` nothing changed and
    /// nothing was appended. STS and DMP are the node's business, not the
    /// table's, and are refused here.
    pub fn execute(&mut self, req: &Request, out: &mut Buffer) -> Result<(), Problem> {
        match req.op {
            Op::Get => {
                self.check_all(&req.ind)?;
                let vals = &self.vals;
                crate::proto::encode_get_reply(out, &req.ind, req.ind.iter().map(|&i| vals[i as usize]));
            }
            Op::Put => {
                self.check_all(&req.ind)?;
                // In order, so a repeated index keeps its last value.
                for (&i, &v) in req.ind.iter().zip(&req.data) {
                    self.vals[i as usize] = v;
                }
                encode_ok(out, Op::Put, &req.ind, &req.data);
            }
            Op::Clr => {
                self.vals.fill(0);
                encode_ok(out, Op::Clr, &[], &[]);
            }
            Op::Add => {
                let s = self.sum(&req.ind)?;
                encode_ok(out, Op::Add, &req.ind, &[s]);
            }
            Op::Sts | Op::Dmp | Op::Lease | Op::Ack | Op::Inv => {
                return Err(Problem::UnknownOp(req.op.name().to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Table, op: Op, ind: &[i64], data: &[i64]) -> Result<String, Problem> {
        let mut out = Buffer::new();
        t.execute(&Request::new(op, ind, data), &mut out)?;
        Ok(String::from_utf8(out.data().to_vec()).unwrap())
    }

    #[test]
    fn operations_follow_the_protocol() {
        let mut t = Table::new(10);
        assert_eq!(
            run(&mut t, Op::Put, &[1, 2], &[10, -3]).unwrap(),
            "OP=PUT;IND=1,2;DATA=10,-3;CODE=200"
        );
        assert_eq!(
            run(&mut t, Op::Get, &[2, 1, 2], &[]).unwrap(),
            "OP=GET;IND=2,1,2;DATA=-3,10,-3;CODE=200",
            "request order, repeats included"
        );
        assert_eq!(
            run(&mut t, Op::Add, &[0, 1, 2], &[]).unwrap(),
            "OP=ADD;IND=0,1,2;DATA=7;CODE=200"
        );
        run(&mut t, Op::Put, &[3, 3], &[1, 2]).unwrap();
        assert_eq!(t.values()[3], 2, "a repeated index keeps the last value");
        assert_eq!(run(&mut t, Op::Clr, &[], &[]).unwrap(), "OP=CLR;CODE=200");
        assert!(t.values().iter().all(|&v| v == 0));
    }

    #[test]
    fn errors_change_nothing() {
        let mut t = Table::new(10);
        assert_eq!(
            run(&mut t, Op::Put, &[1, 12], &[5, 5]),
            Err(Problem::OutOfRange { index: 12, size: 10 })
        );
        assert_eq!(t.values()[1], 0, "PUT is all or nothing");
        assert_eq!(
            run(&mut t, Op::Get, &[-1], &[]),
            Err(Problem::OutOfRange { index: -1, size: 10 })
        );
        run(&mut t, Op::Put, &[0, 1], &[i64::MAX, 1]).unwrap();
        assert_eq!(run(&mut t, Op::Add, &[0, 1], &[]), Err(Problem::AddOverflow));
        run(&mut t, Op::Put, &[1], &[i64::MIN]).unwrap();
        assert_eq!(
            run(&mut t, Op::Add, &[0, 1], &[]).unwrap(),
            "OP=ADD;IND=0,1;DATA=-1;CODE=200"
        );
    }

    #[test]
    fn a_million_entries() {
        let mut t = Table::new(1_000_000);
        run(&mut t, Op::Put, &[999_999], &[42]).unwrap();
        assert_eq!(
            run(&mut t, Op::Get, &[999_999], &[]).unwrap(),
            "OP=GET;IND=999999;DATA=42;CODE=200"
        );
        assert!(run(&mut t, Op::Get, &[1_000_000], &[]).is_err());
    }

    #[test]
    fn size_and_check_say_what_the_table_takes() {
        let t = Table::new(7);
        assert_eq!(t.size(), 7);
        assert!(t.check(&Request::new(Op::Put, &[0, 6], &[1, 2])).is_ok());
        assert_eq!(
            t.check(&Request::new(Op::Put, &[0, 7], &[1, 2])),
            Err(Problem::OutOfRange { index: 7, size: 7 })
        );
        assert_eq!(
            t.check(&Request::new(Op::Get, &[-1], &[])),
            Err(Problem::OutOfRange { index: -1, size: 7 })
        );
    }
}

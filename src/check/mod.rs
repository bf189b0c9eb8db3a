//! Histories of operations on the table, and their checks: is there one
//! order of them that explains every result (linearizability, over the
//! whole table, each connection's requests in the order sent:
//! [`linear`]), and did any read miss a write acknowledged before it was
//! sent ([`lost`]). Pure code; `tablecache check` and the soak use it.
//!
//! A history is JSON lines, one operation each (docs/testing.md, "Soak"):
//!
//! ```text
//! {"client":3,"conn":12,"seq":4,"op":"PUT","ind":[1,2],"data":[3000017,3000018],"call":10421,"ret":10877,"outcome":"ok"}
//! {"client":0,"conn":1,"seq":9,"op":"GET","ind":[1],"call":10500,"ret":10910,"outcome":"ok","values":[3000017]}
//! {"client":5,"conn":40,"seq":0,"op":"PUT","ind":[4],"data":[5000001],"call":11000,"outcome":"unknown"}
//! ```
//!
//! Times are microseconds from the run's start. `outcome` is `ok` (the
//! reply said 200; `values` holds what a GET read or an ADD summed),
//! `error` (an error reply: it may or may not have taken effect), or
//! `unknown` (the connection died first: it may have taken effect at any
//! time after its call, or never). Every PUT writes values no other PUT
//! writes, so each read traces to the write it saw.

#[cfg(test)]
mod check_tests;
pub mod linear;
pub mod lost;
mod search;

use serde_json::{json, Value};

/// An operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read these indices.
    Get(Vec<usize>),
    /// Write these values to these indices.
    Put(Vec<usize>, Vec<i64>),
    /// Read the sum of these indices.
    Add(Vec<usize>),
    /// Set every entry to 0.
    Clr,
}

impl Op {
    /// True for the operations that change the table.
    pub fn writes(&self) -> bool {
        matches!(self, Op::Put(..) | Op::Clr)
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered 200: the values read (GET), the sum (ADD), nothing else.
    Ok(Vec<i64>),
    /// Answered with an error: may or may not have taken effect.
    Error,
    /// No answer (the connection died): may have taken effect, or not.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Which client (a thread of the run) sent it.
    pub client: u64,
    /// Which connection: a client that reconnects gets a new one.
    pub conn: u64,
    /// Its place in its connection's order.
    pub seq: u64,
    /// What it asked.
    pub op: Op,
    /// Sent, microseconds from the start.
    pub call: u64,
    /// Answered (`None`: never, for `Unknown`).
    pub ret: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Record {
    /// Its JSON line.
    pub fn to_json(&self) -> String {
        let (name, ind, data) = match &self.op {
            Op::Get(i) => ("GET", i.clone(), None),
            Op::Put(i, d) => ("PUT", i.clone(), Some(d.clone())),
            Op::Add(i) => ("ADD", i.clone(), None),
            Op::Clr => ("CLR", Vec::new(), None),
        };
        let mut v = json!({
            "client": self.client, "conn": self.conn, "seq": self.seq, "op": name, "ind": ind,
            "call": self.call,
        });
        if let Some(d) = data {
            v["data"] = json!(d);
        }
        if let Some(r) = self.ret {
            v["ret"] = json!(r);
        }
        match &self.outcome {
            Outcome::Ok(values) => {
                v["outcome"] = json!("ok");
                if matches!(self.op, Op::Get(_) | Op::Add(_)) {
                    v["values"] = json!(values);
                }
            }
            Outcome::Error => v["outcome"] = json!("error"),
            Outcome::Unknown => v["outcome"] = json!("unknown"),
        }
        v.to_string()
    }

    /// Reads one JSON line.
    pub fn from_json(line: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let num = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("no {k}"));
        let list = |k: &str| -> Result<Vec<i64>, String> {
            match v.get(k) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_i64().ok_or_else(|| format!("{k}: not integers")))
                    .collect(),
                Some(_) => Err(format!("{k}: not a list")),
            }
        };
        let ind: Vec<usize> = list("ind")?
            .into_iter()
            .map(|i| usize::try_from(i).map_err(|_| "ind: negative".to_string()))
            .collect::<Result<_, _>>()?;
        let op = match v.get("op").and_then(Value::as_str) {
            Some("GET") => Op::Get(ind),
            Some("ADD") => Op::Add(ind),
            Some("CLR") => Op::Clr,
            Some("PUT") => {
                let data = list("data")?;
                if data.len() != ind.len() {
                    return Err("PUT: as many data as ind".into());
                }
                Op::Put(ind, data)
            }
            other => return Err(format!("op {other:?}")),
        };
        let outcome = match v.get("outcome").and_then(Value::as_str) {
            Some("ok") => Outcome::Ok(list("values")?),
            Some("error") => Outcome::Error,
            Some("unknown") => Outcome::Unknown,
            other => return Err(format!("outcome {other:?}")),
        };
        let ret = v.get("ret").and_then(Value::as_u64);
        if ret.is_none() && outcome != Outcome::Unknown {
            return Err("an answered operation needs ret".into());
        }
        Ok(Record {
            client: num("client")?,
            conn: num("conn")?,
            seq: num("seq")?,
            op,
            call: num("call")?,
            ret,
            outcome,
        })
    }

    /// One line for a person: `c3/12#4 10421..10877 PUT 1=3000017 -> ok`.
    pub fn describe(&self) -> String {
        let list = |v: &[usize]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let op = match &self.op {
            Op::Get(i) => format!("GET {}", list(i)),
            Op::Add(i) => format!("ADD {}", list(i)),
            Op::Clr => "CLR".into(),
            Op::Put(i, d) => format!(
                "PUT {}",
                i.iter()
                    .zip(d)
                    .map(|(i, d)| format!("{i}={d}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        let out = match &self.outcome {
            Outcome::Ok(v) if v.is_empty() => "ok".to_string(),
            Outcome::Ok(v) => format!("{v:?}"),
            Outcome::Error => "error".into(),
            Outcome::Unknown => "unknown".into(),
        };
        let ret = self.ret.map_or("?".to_string(), |r| r.to_string());
        format!(
            "c{}/{}#{} {}..{} {op} -> {out}",
            self.client, self.conn, self.seq, self.call, ret
        )
    }
}

/// Reads a history: one record a line; blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| Record::from_json(l).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_go_to_json_and_back() {
        let rs = [
            Record {
                client: 3,
                conn: 12,
                seq: 4,
                op: Op::Put(vec![1, 2], vec![3000017, -5]),
                call: 10421,
                ret: Some(10877),
                outcome: Outcome::Ok(vec![]),
            },
            Record {
                client: 0,
                conn: 1,
                seq: 9,
                op: Op::Get(vec![1]),
                call: 10500,
                ret: Some(10910),
                outcome: Outcome::Ok(vec![3000017]),
            },
            Record {
                client: 5,
                conn: 40,
                seq: 0,
                op: Op::Clr,
                call: 11000,
                ret: None,
                outcome: Outcome::Unknown,
            },
            Record {
                client: 5,
                conn: 41,
                seq: 0,
                op: Op::Add(vec![0, 9]),
                call: 11000,
                ret: Some(12000),
                outcome: Outcome::Error,
            },
        ];
        let text: String = rs.iter().map(|r| r.to_json() + "\n").collect();
        assert_eq!(parse_history(&text).unwrap(), rs);
        assert_eq!(rs[0].describe(), "c3/12#4 10421..10877 PUT 1=3000017 2=-5 -> ok");
        assert_eq!(rs[2].describe(), "c5/40#0 11000..? CLR -> unknown");
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (line, says) in [
            ("{", "not JSON"),
            (
                r#"{"client":1,"conn":1,"seq":0,"op":"GET","ind":[1],"call":1,"outcome":"ok"}"#,
                "needs ret",
            ),
            (
                r#"{"client":1,"conn":1,"seq":0,"op":"PUT","ind":[1],"call":1,"ret":2,"outcome":"ok"}"#,
                "as many data",
            ),
            (
                r#"{"client":1,"conn":1,"seq":0,"op":"MUL","call":1,"ret":2,"outcome":"ok"}"#,
                "op",
            ),
            (
                r#"{"client":1,"conn":1,"seq":0,"op":"GET","ind":[-1],"call":1,"ret":2,"outcome":"ok"}"#,
                "negative",
            ),
            (
                r#"{"conn":1,"seq":0,"op":"CLR","call":1,"ret":2,"outcome":"ok"}"#,
                "no client",
            ),
        ] {
            let e = Record::from_json(line).unwrap_err();
            assert!(e.contains(says), "{line}: {e}");
        }
        assert!(parse_history("\n\n{}\n").unwrap_err().starts_with("line 3"));
    }
}

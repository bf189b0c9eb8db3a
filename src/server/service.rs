//! The server's [`Service`]: each request applied to the table and
//! answered at once — or, for a write that must wait for invalidations
//! (`leases.rs`), parked with its connection's later requests queued
//! behind it — plus STS and DMP. The node around it is `mod.rs`.

use super::backlog::{Backlog, Entry, UNTRUSTED_BACKLOGS_MAX_BYTES};
use super::leases::{HolderId, Leases, Parked};
use super::DUMP_MAX;
use crate::buffer::Buffer;
use crate::conn::Conn;
use crate::framing::Framing;
use crate::frontend::{FrontInfo, Service};
use crate::peer::Secret;
use crate::proto::{encode_error, encode_field, encode_request, put_list, Op, Problem, Request};
use crate::store::Store;
use crate::table::Table;
use crate::trace_event;
use log::{debug, warn};
use std::time::Instant;

/// Per-operation counters.
#[derive(Debug, Default, Clone)]
struct Counters {
    ops: [u64; Op::ALL.len()],
    errors: std::collections::BTreeMap<u16, u64>,
}

/// What the server keeps per connection.
#[derive(Debug, Default)]
pub struct ServerConn {
    /// Set once the peer asked for a lease: it is a proxy.
    holder: Option<HolderId>,
    /// A write of this connection waits for invalidations.
    parked: bool,
    /// A refused LEASE of this connection was logged (once is enough: a
    /// refused proxy asks again every second).
    refusal_logged: bool,
    /// What arrived behind the parked write, in order: it takes effect
    /// after the write. An ACK takes effect at once (the proxy applied
    /// those invalidations before sending it, and another write may be
    /// waiting for it: reading it late could deadlock two proxies' writes);
    /// only its reply waits here. Once the write is applied, it is run as
    /// the output has room (never past the output limit).
    behind: Backlog,
    /// What of `behind` is counted in the server-wide budget of
    /// connections that hold no lease (all of it, or nothing once a proxy).
    counted: usize,
}

/// The table and the service that applies requests to it.
pub(super) struct Core {
    table: Table,
    req: Request,
    counters: Counters,
    /// Which proxy may hold what, and the writes waiting on them.
    pub(super) leases: Leases,
    nocache: Vec<i64>,
    /// The log, with `--data-dir` (docs/durability.md).
    pub(super) store: Option<Store>,
    /// Connections whose replies wait for this pass's log commit.
    pub(super) held: Vec<(usize, u64)>,
    /// The table's identity and the seq of its last write: from the store,
    /// or for a table in memory, fresh at start and counted here.
    data_id: u64,
    mem_seq: u64,
    /// The peer secret (`--peer-secret-file`); without one, only loopback
    /// peers may hold leases.
    secret: Option<Secret>,
    /// Output a connection's backlog is run into at most (the frontend's
    /// `max_pending_output`).
    max_output: usize,
    /// A backlog entry being run.
    entry: Vec<u8>,
    /// Bytes the backlogs of connections holding no lease allocate together.
    untrusted_backlog: usize,
}

impl Service for Core {
    type Ext = ServerConn;

    fn on_message(&mut self, conn: &mut Conn<ServerConn>, body: usize, front: &FrontInfo, now: Instant) {
        let parsed = self.req.parse(&conn.input.data()[..body]);
        // The pass's clock may be older than this message: a proxy's
        // lease runs from when it sent the request, and an invalidation's
        // deadline from when it is sent, so those read the clock now (a
        // direct client's read needs no clock at all).
        let holder = conn.ext.holder;
        let now = if holder.is_some() || (parsed.is_ok() && self.req.op.is_write()) {
            now.max(Instant::now())
        } else {
            now
        };
        if let Some(id) = holder {
            self.leases.granted(id, now); // whatever the reply, it renews
        }
        if let Err((op, p)) = parsed {
            return self.reject(conn, op, &p);
        }
        self.counters.ops[self.req.op as usize] += 1;
        if conn.ext.parked || !conn.ext.behind.is_empty() {
            return self.queue_behind(conn, body, now);
        }
        self.run(conn, front, now);
    }

    fn reject(&mut self, conn: &mut Conn<ServerConn>, op: Option<Op>, problem: &Problem) {
        *self.counters.errors.entry(problem.code()).or_default() += 1;
        if let Some(id) = conn.ext.holder {
            self.leases.granted(id, Instant::now()); // a reply like any other
        }
        if conn.ext.parked || !conn.ext.behind.is_empty() {
            let mut b = Buffer::new();
            encode_error(&mut b, op, problem.code(), problem);
            self.push_behind(conn, Entry::Reply, b.data());
            return;
        }
        encode_error(&mut conn.output, op, problem.code(), problem);
        conn.end_message();
    }

    fn owes(&self, conn: &Conn<ServerConn>) -> bool {
        // Otherwise every reply is in the output at once.
        conn.ext.parked || !conn.ext.behind.is_empty()
    }

    fn congested(&self, conn: &Conn<ServerConn>) -> bool {
        let b = &conn.ext.behind;
        b.full()
            || (conn.ext.holder.is_none() && !b.is_empty() && self.untrusted_backlog >= UNTRUSTED_BACKLOGS_MAX_BYTES)
    }

    fn catch_up(&mut self, conn: &mut Conn<ServerConn>, front: &FrontInfo, now: Instant) -> bool {
        self.run_backlog(conn, front, now)
    }

    fn hold(&mut self, conn: &Conn<ServerConn>) -> bool {
        if self.store.as_ref().is_some_and(Store::has_pending) {
            self.held.push((conn.token.0, conn.gen));
            return true;
        }
        false
    }

    fn on_close(&mut self, conn: &mut Conn<ServerConn>) {
        self.untrusted_backlog -= std::mem::take(&mut conn.ext.counted);
        if conn.ext.parked {
            self.leases.drop_parked(conn.token.0, conn.gen);
        }
        if let Some(id) = conn.ext.holder.take() {
            self.leases.left(id);
        }
    }
}

impl Core {
    /// A service over `table`, granting leases as `leases` says, logging
    /// writes to `store` if there is one.
    pub(super) fn new(
        table: Table,
        leases: Leases,
        store: Option<Store>,
        secret: Option<Secret>,
        max_output: usize,
    ) -> Core {
        Core {
            table,
            req: Request::default(),
            counters: Counters::default(),
            leases,
            nocache: Vec::new(),
            data_id: store.as_ref().map_or_else(crate::store::memory_data_id, Store::data_id),
            store,
            held: Vec::new(),
            mem_seq: 0,
            secret,
            max_output,
            entry: Vec::new(),
            untrusted_backlog: 0,
        }
    }

    /// Queues `body` behind the connection's parked write.
    fn push_behind(&mut self, conn: &mut Conn<ServerConn>, kind: Entry, body: &[u8]) {
        conn.ext.behind.push(kind, body);
        self.recount(conn);
    }

    /// Brings the server-wide count of untrusted backlogs up to date with
    /// this connection's (which changes as it queues and runs, and as it
    /// becomes a proxy).
    fn recount(&mut self, conn: &mut Conn<ServerConn>) {
        let now = if conn.ext.holder.is_none() {
            conn.ext.behind.allocated()
        } else {
            0
        };
        self.untrusted_backlog = self.untrusted_backlog - conn.ext.counted + now;
        conn.ext.counted = now;
    }

    /// The seq of the last write applied.
    pub(super) fn write_seq(&self) -> u64 {
        self.store.as_ref().map_or(self.mem_seq, Store::seq)
    }

    /// The history sum after it: a durable table's only. A table in memory
    /// has a new identity at every start and never rewinds within one, so
    /// its identity and write count already name its history.
    fn history_sum(&self) -> Option<u64> {
        self.store.as_ref().map(Store::sum)
    }

    /// Ends the loop pass for the log: writes (and, as configured, syncs)
    /// the pass's records. The held replies may go once this returns Ok.
    pub(super) fn commit(&mut self, now: Instant) -> std::io::Result<()> {
        match self.store.as_mut() {
            Some(store) => store.commit(self.table.values(), now),
            None => Ok(()),
        }
    }

    /// Answers the request in `self.req` (reply and terminator), or parks
    /// it (a write that must wait).
    fn run(&mut self, conn: &mut Conn<ServerConn>, front: &FrontInfo, now: Instant) {
        if let Err(p) = self.answer(conn, front, now) {
            return self.reject(conn, Some(self.req.op), &p);
        }
        if !conn.ext.parked {
            conn.end_message();
        }
    }

    /// A request arrived behind the connection's parked write (or behind
    /// requests still queued after it): it waits its turn, as the bytes it
    /// came as; an ACK takes effect now and only its reply waits.
    fn queue_behind(&mut self, conn: &mut Conn<ServerConn>, body: usize, now: Instant) {
        if self.req.op != Op::Ack {
            conn.ext.behind.push(Entry::Request, &conn.input.data()[..body]);
            self.recount(conn);
            return;
        }
        let mut b = Buffer::new();
        match self.ack(conn.ext.holder, &mut b, now) {
            Ok(()) => self.push_behind(conn, Entry::Reply, b.data()),
            Err(p) => self.reject(conn, Some(Op::Ack), &p),
        }
    }

    /// Runs what queued behind an applied write, in order, while the
    /// output has room and no write parks again; true if it ran any.
    fn run_backlog(&mut self, conn: &mut Conn<ServerConn>, front: &FrontInfo, now: Instant) -> bool {
        let mut ran = false;
        while !conn.ext.parked && conn.output.len() < self.max_output {
            let mut entry = std::mem::take(&mut self.entry);
            let Some(kind) = conn.ext.behind.pop(&mut entry) else {
                self.entry = entry;
                break;
            };
            match kind {
                Entry::Reply => {
                    conn.output.extend(&entry);
                    conn.end_message();
                }
                // It parsed when it arrived, so it parses now (a failure
                // would be answered in its turn all the same).
                Entry::Request => match self.req.parse(&entry) {
                    Ok(()) => self.run(conn, front, now),
                    Err((op, p)) => self.reject(conn, op, &p),
                },
            }
            self.entry = entry;
            ran = true;
        }
        self.recount(conn);
        ran
    }

    /// Applies an ACK of the request's SEQ and encodes its reply.
    fn ack(&mut self, holder: Option<HolderId>, out: &mut Buffer, now: Instant) -> Result<(), Problem> {
        let id = holder.ok_or(Problem::NoLease)?;
        self.leases.ack(id, self.req.seq)?;
        self.leases.granted(id, now);
        out.extend(b"OP=ACK");
        encode_field(out, "SEQ", &self.req.seq);
        out.extend(b";CODE=200");
        Ok(())
    }

    /// Answers the parsed request into the connection's output (without
    /// the terminator), or parks it (a write that must wait).
    fn answer(&mut self, conn: &mut Conn<ServerConn>, front: &FrontInfo, now: Instant) -> Result<(), Problem> {
        let holder = conn.ext.holder;
        let out = &mut conn.output;
        match self.req.op {
            Op::Sts => self.encode_stats(out, front),
            Op::Dmp => self.encode_dump(out),
            Op::Lease => {
                if self.leases.lease().is_zero() {
                    return Err(Problem::NotServed(Op::Lease)); // --lease-ms 0
                }
                if conn.framer.framing() != Framing::Line {
                    return Err(Problem::LeaseNeedsLines);
                }
                // Only a trusted peer may hold a lease: anyone else could
                // make every write to what it reads wait (docs/coherence.md,
                // "Trust"). It stays an ordinary client.
                let trusted = conn.ext.holder.is_some()
                    || match &self.secret {
                        Some(s) => self.req.key.as_ref().is_some_and(|k| s.matches(k)),
                        None => crate::peer::loopback(conn.peer),
                    };
                if !trusted {
                    let why = match (&self.secret, &self.req.key) {
                        (Some(_), None) => "LEASE needs KEY, the peer secret",
                        (Some(_), Some(_)) => "wrong KEY",
                        (None, _) => "without --peer-secret-file only loopback peers hold leases",
                    };
                    self.leases.stats.refused += 1;
                    if !std::mem::replace(&mut conn.ext.refusal_logged, true) {
                        let peer = conn.peer.map_or("?".to_string(), |p| p.to_string());
                        warn!(
                            "server tok={} peer={peer}: LEASE refused, not a trusted peer: {why}",
                            conn.token.0
                        );
                    }
                    return Err(Problem::NotPeer(why));
                }
                let id = match conn.ext.holder {
                    Some(id) => id,
                    None => match self.leases.join(conn.token.0, conn.gen, now) {
                        Some(id) => id,
                        None => {
                            self.leases.stats.refused += 1;
                            return Err(Problem::TooManyProxies);
                        }
                    },
                };
                conn.ext.holder = Some(id);
                // A proxy back from a lost connection may keep its cache
                // if it came from this table's history (the same identity,
                // write count and history sum: no write since it last
                // heard them, and no rewind to an earlier write written
                // again), and no write waits on what it holds: it is then
                // tracked as holding it again.
                let (seq, sum) = (self.write_seq(), self.history_sum());
                let keep = self.req.id.map(|asked| {
                    let size = self.table.size() as i64;
                    let same = asked == self.data_id
                        && self.req.seq == seq
                        && self.req.sum == sum
                        && self.req.ind.iter().all(|&i| (0..size).contains(&i));
                    if same {
                        self.leases.register(id, &self.req.ind, &mut self.nocache, now);
                    }
                    same && self.nocache.is_empty()
                });
                out.extend(b"OP=LEASE");
                encode_field(out, "MS", &self.leases.lease().as_millis());
                encode_field(out, "ID", &format_args!("{:016x}", self.data_id));
                encode_field(out, "SEQ", &seq);
                if let Some(sum) = sum {
                    encode_field(out, "SUM", &format_args!("{sum:016x}"));
                }
                if let Some(keep) = keep {
                    encode_field(out, "KEEP", &u8::from(keep));
                }
                out.extend(b";CODE=200");
            }
            Op::Ack => self.ack(holder, out, now)?,
            Op::Inv => return Err(Problem::ServerOnly(Op::Inv)),
            Op::Get if holder.is_some() => {
                let id = holder.unwrap_or_default();
                self.table.check(&self.req)?;
                self.leases.register(id, &self.req.ind, &mut self.nocache, now);
                let vals = self.table.values();
                encode_request(out, Op::Get, &self.req.ind, &[]);
                out.extend(b";DATA=");
                put_list(out, self.req.ind.iter().map(|&i| vals[i as usize]));
                if !self.nocache.is_empty() {
                    out.extend(b";NOCACHE=");
                    put_list(out, self.nocache.iter().copied());
                }
                out.extend(b";CODE=200");
            }
            Op::Put | Op::Clr => {
                self.table.check(&self.req)?;
                if let Some(waits) = self.leases.write_must_wait(holder, &self.req, now) {
                    self.leases.park(conn.token.0, conn.gen, &self.req, waits, now);
                    conn.ext.parked = true;
                    trace_event!(
                        conn.role,
                        conn.token,
                        "WAIT",
                        "{} waits for proxies to confirm invalidations",
                        self.req.op
                    );
                    return Ok(());
                }
                self.apply(conn, now)?;
            }
            Op::Get | Op::Add => {
                self.table.execute(&self.req, out)?;
                if let Some(id) = holder {
                    self.leases.granted(id, now);
                }
            }
        }
        Ok(())
    }

    /// Applies the write in `self.req` and encodes its reply.
    fn apply(&mut self, conn: &mut Conn<ServerConn>, now: Instant) -> Result<(), Problem> {
        self.table.execute(&self.req, &mut conn.output)?;
        // Applied: its record goes to the log with this pass's others, and
        // its reply waits for that commit (`hold`).
        match (self.store.as_mut(), self.req.op) {
            (Some(store), Op::Clr) => store.log_clr(),
            (Some(store), _) => store.log_put(&self.req.ind, &self.req.data),
            (None, _) => self.mem_seq += 1,
        }
        if let Some(id) = conn.ext.holder {
            self.leases.granted(id, now);
        }
        log_table(&self.table);
        Ok(())
    }

    /// A parked write may go: applied and answered now, then what queued
    /// behind it, in order, until another write parks or the output is
    /// full (the rest runs as the peer reads: [`Service::catch_up`]).
    pub(super) fn release(&mut self, conn: &mut Conn<ServerConn>, p: Parked, front: &FrontInfo, now: Instant) {
        conn.ext.parked = false;
        let arrived = p.arrived;
        self.req = p.req;
        match self.apply(conn, now) {
            Ok(()) => conn.end_message(),
            Err(problem) => self.reject(conn, Some(self.req.op), &problem),
        }
        trace_event!(
            conn.role,
            conn.token,
            "QUEUED",
            "{} applied after {} us: reply queued, {} bytes to write",
            self.req.op,
            now.saturating_duration_since(arrived).as_micros(),
            conn.output.len()
        );
        self.run_backlog(conn, front, now);
    }

    fn encode_stats(&self, out: &mut Buffer, front: &FrontInfo) {
        out.extend(b"OP=STS");
        encode_field(out, "ROLE", &"server");
        encode_field(out, "SIZE", &self.table.size());
        front.encode_conn_fields(out);
        for op in [Op::Get, Op::Put, Op::Clr, Op::Add, Op::Sts, Op::Dmp] {
            encode_field(out, op.name(), &self.counters.ops[op as usize]);
        }
        for (c, n) in &self.counters.errors {
            encode_field(out, &format!("ERR{c}"), n);
        }
        self.leases.encode_stats(out);
        encode_field(out, "DATA_ID", &format_args!("{:016x}", self.data_id));
        encode_field(out, "WRITE_SEQ", &self.write_seq());
        if let Some(store) = &self.store {
            store.encode_stats(out);
        }
        front.encode_loop_fields(out);
        out.extend(b";CODE=200");
    }

    /// The whole table when it is small; otherwise its non-zero entries.
    fn encode_dump(&self, out: &mut Buffer) {
        let vals = self.table.values();
        let sparse = vals.len() > DUMP_MAX;
        // The listed entries: all of a small table, else the first
        // DUMP_MAX non-zero ones.
        let listed = || {
            vals.iter()
                .enumerate()
                .filter(move |(_, &v)| !sparse || v != 0)
                .take(DUMP_MAX)
                .map(|(i, &v)| (i as i64, v))
        };
        out.extend(b"OP=DMP");
        encode_field(out, "SIZE", &vals.len());
        if sparse {
            encode_field(out, "SPARSE", &1);
        }
        if listed().next().is_some() {
            out.extend(b";IND=");
            put_list(out, listed().map(|(i, _)| i));
            out.extend(b";DATA=");
            put_list(out, listed().map(|(_, v)| v));
        }
        out.extend(b";CODE=200");
    }
}

/// Logs the table after a change, at `debug` (the seed's programs print it
/// on every change; at the default level a log line per request would cost
/// more than the request): every entry of a small table, only its size for
/// a big one, so the cost never depends on the table's size.
fn log_table(t: &Table) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let v = t.values();
    if v.len() <= 32 {
        let cells: Vec<String> = v.iter().enumerate().map(|(i, x)| format!("{i}:{x}")).collect();
        debug!("server table [{}]", cells.join(" "));
    } else {
        debug!("server table: {} entries (DMP shows them)", v.len());
    }
}

//! The server's [`Service`]: each request applied to the table and
//! answered at once — or, for a write that must wait for invalidations
//! (`leases.rs`), parked with its connection's later requests queued
//! behind it — plus STS and DMP. The node around it is `mod.rs`.

use super::backlog::{Backlog, Entry, UNTRUSTED_BACKLOGS_MAX_BYTES};
use super::leases::{HolderId, Leases, Parked};
use crate::buffer::Buffer;
use crate::conn::Conn;
use crate::frontend::{FrontInfo, Service};
use crate::peer::Secret;
use crate::proto::{encode_error, encode_get_reply_nocache, Op, Problem, Request};
use crate::store::Store;
use crate::table::Table;
use crate::trace_event;
use log::debug;
use std::time::Instant;

/// Per-operation counters.
#[derive(Debug, Default, Clone)]
pub(super) struct OpCounters {
    pub(super) ops: [u64; Op::ALL.len()],
    pub(super) errors: std::collections::BTreeMap<u16, u64>,
}

/// What the server keeps per connection.
#[derive(Debug, Default)]
pub struct ServerConn {
    /// Set once the peer asked for a lease: it is a proxy.
    pub(super) holder: Option<HolderId>,
    /// A write of this connection waits for invalidations.
    parked: bool,
    /// A refused LEASE of this connection was logged (once is enough: a
    /// refused proxy asks again every second).
    pub(super) refusal_logged: bool,
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
pub(super) struct ServerCore {
    pub(super) table: Table,
    pub(super) req: Request,
    pub(super) counters: OpCounters,
    /// Which proxy may hold what, and the writes waiting on them.
    pub(super) leases: Leases,
    pub(super) nocache: Vec<i64>,
    /// The log, with `--data-dir` (docs/durability.md).
    pub(super) store: Option<Store>,
    /// Connections whose replies wait for this pass's log commit.
    pub(super) held: Vec<(usize, u64)>,
    /// The table's identity and the seq of its last write: from the store,
    /// or for a table in memory, fresh at start and counted here.
    pub(super) data_id: u64,
    mem_seq: u64,
    /// The peer secret (`--peer-secret-file`); without one, only loopback
    /// peers may hold leases.
    pub(super) secret: Option<Secret>,
    /// Output a connection's backlog is run into at most (the frontend's
    /// `max_pending_output`).
    max_output: usize,
    /// A backlog entry being run.
    entry: Vec<u8>,
    /// Bytes the backlogs of connections holding no lease allocate together.
    untrusted_backlog: usize,
}

impl Service for ServerCore {
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

    fn pending_note(&self) -> &'static str {
        "reply waits until proxies confirm invalidations (for this write or one before it)"
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

impl ServerCore {
    /// A service over `table`, granting leases as `leases` says, logging
    /// writes to `store` if there is one.
    pub(super) fn new(
        table: Table,
        leases: Leases,
        store: Option<Store>,
        secret: Option<Secret>,
        max_output: usize,
    ) -> ServerCore {
        ServerCore {
            table,
            req: Request::default(),
            counters: OpCounters::default(),
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
    pub(super) fn history_sum(&self) -> Option<u64> {
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

    /// Answers the parsed request into the connection's output (without
    /// the terminator), or parks it (a write that must wait).
    fn answer(&mut self, conn: &mut Conn<ServerConn>, front: &FrontInfo, now: Instant) -> Result<(), Problem> {
        let holder = conn.ext.holder;
        let out = &mut conn.output;
        match self.req.op {
            Op::Sts => self.encode_stats(out, front),
            Op::Dmp => self.encode_dump(out),
            Op::Lease => self.lease(conn, now)?,
            Op::Ack => self.ack(holder, out, now)?,
            Op::Inv => return Err(Problem::ServerOnly(Op::Inv)),
            Op::Get if holder.is_some() => {
                let id = holder.unwrap_or_default();
                self.table.check(&self.req)?;
                self.leases.register(id, &self.req.ind, &mut self.nocache, now);
                let vals = self.table.values();
                let values = self.req.ind.iter().map(|&i| vals[i as usize]);
                encode_get_reply_nocache(out, &self.req.ind, values, &self.nocache);
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
        log_table(&self.table, conn);
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
}

/// Logs the table after a change, at `debug` (the seed's programs print it
/// on every change; at the default level a log line per request would cost
/// more than the request): every entry of a small table, only its size for
/// a big one, so the cost never depends on the table's size. The trace
/// gets a `TABLE` line on the connection whose write changed it (what the
/// demo's player shows as the table).
fn log_table(t: &Table, conn: &Conn<ServerConn>) {
    if !log::log_enabled!(log::Level::Debug) && !crate::trace::enabled() {
        return;
    }
    let v = t.values();
    match crate::trace::small_cells(v.len(), v.iter().enumerate().map(|(i, &x)| (i as i64, x))) {
        Some(cells) => {
            trace_event!(conn.role, conn.token, "TABLE", "{cells}");
            debug!("server table [{cells}]")
        }
        None => debug!("server table: {} entries (DMP shows them)", v.len()),
    }
}

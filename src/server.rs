//! The table server: a [`Frontend`] whose service applies each request to
//! the [`Table`] and answers at once, so replies leave in request order by
//! construction.
//!
//! Run it: `tablecache server --listen 127.0.0.1:8080 --size 10`.

use crate::conn::Conn;
use crate::frontend::{reply_problem, FrontInfo, Frontend, Limits, Service};
use crate::proto::{code, encode_field, encode_request, put_i64, Op, Request};
use crate::reactor::{Bound, LoopStats, Node, Reactor};
use crate::table::Table;
use log::info;
use mio::event::Event;
use mio::Token;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// Entries a DMP reply lists at most.
pub const DUMP_MAX: usize = 1024;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Entries in the table.
    pub size: usize,
    /// Limits on peers.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            size: 10,
            limits: Limits::default(),
        }
    }
}

/// Per-operation counters.
#[derive(Debug, Default, Clone)]
struct Counters {
    ops: [u64; 6],
    errors: std::collections::BTreeMap<u16, u64>,
}

/// The table and the service that applies requests to it.
struct Core {
    table: Table,
    req: Request,
    counters: Counters,
}

impl Service for Core {
    type Ext = ();

    fn on_message(&mut self, conn: &mut Conn<()>, body: usize, front: &FrontInfo, _now: Instant) {
        let out = &mut conn.output;
        match self.req.parse(&conn.input.data()[..body]) {
            Err((op, p)) => {
                self.on_error_reply(p.code());
                reply_problem(conn, op, &p);
                return;
            }
            Ok(()) => {
                self.counters.ops[self.req.op as usize] += 1;
                match self.req.op {
                    Op::Sts => self.encode_stats(out, front),
                    Op::Dmp => self.encode_dump(out),
                    _ => {
                        if let Err(p) = self.table.execute(&self.req, out) {
                            self.on_error_reply(p.code());
                            reply_problem(conn, Some(self.req.op), &p);
                            return;
                        }
                        if self.req.op.is_write() {
                            log_table(&self.table);
                        }
                    }
                }
            }
        }
        conn.end_message();
    }

    fn on_error_reply(&mut self, code: u16) {
        *self.counters.errors.entry(code).or_default() += 1;
    }

    fn owes(&self, _conn: &Conn<()>) -> bool {
        false // every reply is written into the output at once
    }

    fn on_close(&mut self, _conn: &mut Conn<()>) {}
}

impl Core {
    fn encode_stats(&self, out: &mut crate::buffer::Buffer, front: &FrontInfo) {
        let s = front.stats;
        out.extend(b"OP=STS");
        encode_field(out, "ROLE", &"server");
        encode_field(out, "SIZE", &self.table.size());
        encode_field(out, "CONNS", &front.connections);
        encode_field(out, "ACCEPTED", &s.accepted);
        encode_field(out, "REJECTED", &s.rejected);
        encode_field(out, "IDLE_CLOSED", &s.idle_closed);
        encode_field(out, "PAUSED", &s.paused);
        encode_field(out, "REQS", &s.messages);
        for op in [Op::Get, Op::Put, Op::Clr, Op::Add, Op::Sts, Op::Dmp] {
            encode_field(out, op.name(), &self.counters.ops[op as usize]);
        }
        for (c, n) in &self.counters.errors {
            encode_field(out, &format!("ERR{c}"), n);
        }
        encode_field(out, "WAKEUPS", &s.reactor.wakeups);
        encode_field(out, "EVENTS", &s.reactor.events);
        encode_field(out, "FULL_BATCHES", &s.reactor.full_batches);
        encode_field(out, "BUSY_US", &s.reactor.busy_us);
        out.extend(b";CODE=200");
    }

    /// The whole table when it is small; otherwise its non-zero entries.
    fn encode_dump(&self, out: &mut crate::buffer::Buffer) {
        let vals = self.table.values();
        let (ind, data): (Vec<i64>, Vec<i64>) = if vals.len() <= DUMP_MAX {
            vals.iter().enumerate().map(|(i, &v)| (i as i64, v)).unzip()
        } else {
            vals.iter()
                .enumerate()
                .filter(|(_, &v)| v != 0)
                .take(DUMP_MAX)
                .map(|(i, &v)| (i as i64, v))
                .unzip()
        };
        encode_request(out, Op::Dmp, &[], &[]);
        encode_field(out, "SIZE", &vals.len());
        if vals.len() > DUMP_MAX {
            encode_field(out, "SPARSE", &1);
        }
        if !ind.is_empty() {
            out.extend(b";IND=");
            join(out, &ind);
            out.extend(b";DATA=");
            join(out, &data);
        }
        out.extend(b";CODE=");
        put_i64(out, code::OK as i64);
    }
}

fn join(out: &mut crate::buffer::Buffer, v: &[i64]) {
    for (i, &x) in v.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_i64(out, x);
    }
}

/// Logs the table after a change (the seed's programs print it too):
/// every entry for a small table, a summary for a big one.
fn log_table(t: &Table) {
    if !log::log_enabled!(log::Level::Info) {
        return;
    }
    let v = t.values();
    if v.len() <= 32 {
        let cells: Vec<String> = v.iter().enumerate().map(|(i, x)| format!("{i}:{x}")).collect();
        info!("server table [{}]", cells.join(" "));
    } else {
        let nz = v.iter().filter(|&&x| x != 0).count();
        info!("server table: {} entries, {nz} non-zero", v.len());
    }
}

/// The server's node: its listening side and its table.
pub struct ServerNode {
    front: Frontend<()>,
    core: Core,
}

impl Node for ServerNode {
    fn ready(&mut self, token: Token, event: &Event, now: Instant) {
        self.front.ready(&mut self.core, token, event, now);
    }
    fn tick(&mut self, now: Instant) -> Option<Instant> {
        self.front.tick(&mut self.core, now)
    }
    fn stop(&mut self, now: Instant) {
        info!("server stopping: {} connections to finish", self.front.conns.len());
        self.front.stop(&mut self.core, now);
    }
    fn done(&self) -> bool {
        self.front.finished()
    }
    fn loop_stats(&mut self) -> &mut LoopStats {
        &mut self.front.stats.reactor
    }
}

/// A bound server, ready to run: `Server::bind(cfg)?.spawn()?`, or `.run()`.
pub type Server = Bound<ServerNode>;

impl Server {
    /// Binds the listener (so the address is known before running).
    pub fn bind(cfg: ServerConfig) -> io::Result<Server> {
        let reactor = Reactor::new()?;
        let front = Frontend::bind(cfg.listen, "server", cfg.limits, reactor.registry())?;
        let addr = front.local_addr();
        info!("server listening on {addr} with {} entries", cfg.size);
        let node = ServerNode {
            front,
            core: Core {
                table: Table::new(cfg.size),
                req: Request::default(),
                counters: Counters::default(),
            },
        };
        Ok(Bound::new(reactor, node, addr, "server"))
    }
}

//! The table server: a [`Frontend`] whose service applies each request to
//! the [`Table`] and answers at once, so replies leave in request order by
//! construction.
//!
//! Run it: `tablecache server --listen 127.0.0.1:8080 --size 10`.

use crate::buffer::Buffer;
use crate::conn::Conn;
use crate::frontend::{FrontInfo, Frontend, Limits, Service};
use crate::proto::{encode_error, encode_field, put_list, Op, Problem, Request};
use crate::reactor::{Bound, LoopStats, Node, Reactor};
use crate::table::Table;
use log::{debug, info};
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
        if let Err((op, p)) = self.req.parse(&conn.input.data()[..body]) {
            return self.reject(conn, op, &p);
        }
        let out = &mut conn.output;
        self.counters.ops[self.req.op as usize] += 1;
        match self.req.op {
            Op::Sts => self.encode_stats(out, front),
            Op::Dmp => self.encode_dump(out),
            _ => {
                if let Err(p) = self.table.execute(&self.req, out) {
                    return self.reject(conn, Some(self.req.op), &p);
                }
                if self.req.op.is_write() {
                    log_table(&self.table);
                }
            }
        }
        conn.end_message();
    }

    fn reject(&mut self, conn: &mut Conn<()>, op: Option<Op>, problem: &Problem) {
        *self.counters.errors.entry(problem.code()).or_default() += 1;
        encode_error(&mut conn.output, op, problem.code(), problem);
        conn.end_message();
    }

    fn owes(&self, _conn: &Conn<()>) -> bool {
        false // every reply is written into the output at once
    }

    fn on_close(&mut self, _conn: &mut Conn<()>) {}
}

impl Core {
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
                table: Table::try_new(cfg.size).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!("cannot allocate a table of {} entries: {e}", cfg.size),
                    )
                })?,
                req: Request::default(),
                counters: Counters::default(),
            },
        };
        Ok(Bound::new(reactor, node, addr, "server"))
    }
}

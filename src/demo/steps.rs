//! The demo's steps: what each asks and of whom, how a step runs and
//! ends (the bookkeeping `DMP`s, and the link's STS, after which every
//! node has logged what the step made it do), and the tables printed
//! after it.

use super::show::Show;
use super::{BOOKKEEPING, DEMO_CAPACITY, PATIENCE};
use crate::client::{render, Client};
use crate::proto::{Op, Request};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// The demo's own connections: tables, and the barrier ending each step.
pub(super) struct Bookkeeping {
    server: Client,
    proxy: Client,
    proxy2: Option<Client>,
    /// The link's control connection (its STS is the link's barrier).
    link: Option<Client>,
}

impl Bookkeeping {
    pub(super) fn connect(
        show: &mut Show,
        server: SocketAddr,
        proxy: SocketAddr,
        proxy2: Option<SocketAddr>,
        link: Option<SocketAddr>,
    ) -> io::Result<Self> {
        let open = |show: &mut Show, addr: SocketAddr| -> io::Result<Client> {
            let c = Client::connect_named(addr, PATIENCE, BOOKKEEPING)?;
            show.quiet_addrs.insert((c.local_addr()?.to_string(), addr.to_string()));
            Ok(c)
        };
        Ok(Bookkeeping {
            server: open(show, server)?,
            proxy: open(show, proxy)?,
            proxy2: proxy2.map(|a| open(show, a)).transpose()?,
            link: link.map(|a| open(show, a)).transpose()?,
        })
    }

    /// A `DMP` through every node: once each has answered, each has
    /// logged all it did before. Returns the server's table and the
    /// first proxy's cache.
    pub(super) fn barrier(&mut self) -> io::Result<(String, String)> {
        let s = self.server.request_raw(b"OP=DMP")?;
        let p = self.proxy.request_raw(b"OP=DMP")?;
        if let Some(p2) = self.proxy2.as_mut() {
            p2.request_raw(b"OP=DMP")?;
        }
        // The link logs a write after its syscall returns: its answer to
        // STS comes from a later turn of its loop, so by then it has.
        if let Some(l) = self.link.as_mut() {
            l.request_raw(b"OP=STS")?;
        }
        Ok((render(Op::Dmp, &s).1, render(Op::Dmp, &p).1))
    }
}

/// Prints the tables as the step's notes.
pub(super) fn tables(show: &mut Show, (server, proxy): (String, String)) {
    show.note(format!("server table: {server}"));
    show.note(format!("proxy cache (oldest first, capacity {DEMO_CAPACITY}): {proxy}"));
}

pub(super) fn step_via(
    client: &mut Client,
    show: &mut Show,
    book: &mut Bookkeeping,
    title: &str,
    req: Request,
) -> io::Result<bool> {
    show.step(title);
    let mut body = crate::buffer::Buffer::new();
    req.encode(&mut body);
    let reply = client.request_raw(body.data())?;
    let dumps = book.barrier()?;
    show.flush(true);
    let (ok, shown) = render(req.op, &reply);
    crate::outln!("    {} shows: {shown}", client.name());
    tables(show, dumps);
    Ok(ok)
}

/// The scripted steps: a title, the request, whether it should succeed.
pub(super) fn script() -> Vec<(&'static str, Request, bool)> {
    let r = Request::new;
    vec![
        (
            "PUT 1=10 2=20 3=30 4=40: write-through (the server first; nothing cached yet, so nothing inserted)",
            r(Op::Put, &[1, 2, 3, 4], &[10, 20, 30, 40]),
            true,
        ),
        (
            "GET 1 2: a miss, both fetched in one request, then cached",
            r(Op::Get, &[1, 2], &[]),
            true,
        ),
        (
            "GET 2 1: a hit, answered by the proxy alone",
            r(Op::Get, &[2, 1], &[]),
            true,
        ),
        (
            "GET 3 4: 3 fills the cache; 4 overwrites the oldest entry (1): FIFO eviction",
            r(Op::Get, &[3, 4], &[]),
            true,
        ),
        (
            "ADD 1 3 4: 3 and 4 are hits, 1 is a miss; the proxy sums",
            r(Op::Add, &[1, 3, 4], &[]),
            true,
        ),
        (
            "PUT 3=33 through a second proxy: the first proxy holds 3, so the server sends it OP=INV and applies the PUT only after its OP=ACK",
            r(Op::Put, &[3], &[33]),
            true,
        ),
        (
            "GET 3: a miss now; the first proxy fetches 33",
            r(Op::Get, &[3], &[]),
            true,
        ),
        (
            "PUT 4=44: write-through; the cached 4 is updated in place once the server said 200",
            r(Op::Put, &[4], &[44]),
            true,
        ),
        (
            "CLR: forwarded; on success the cache is emptied",
            r(Op::Clr, &[], &[]),
            true,
        ),
        (
            "GET 12: an error from the server, passed on unchanged",
            r(Op::Get, &[12], &[]),
            false,
        ),
    ]
}

/// The one-way delay of the link in front of the second proxy's server.
pub(super) const SLOW_LINK: Duration = Duration::from_millis(20);

/// The steps through the slow link, by client2: a title, its requests
/// (sent in one write).
pub(super) fn slow_steps() -> Vec<(&'static str, Vec<Request>)> {
    let r = Request::new;
    vec![
        (
            "GET 6 by client2: a miss through the second proxy, whose server is 20 ms away through a link (tablecache link): the reply waits in its pending queue for the round trip",
            vec![r(Op::Get, &[6], &[])],
        ),
        (
            "client2 pipelines GET 7 (a miss) and GET 6 (a hit) in one write: the hit is ready at once, but its reply waits behind the miss's (each connection's replies go in order), then both leave",
            vec![r(Op::Get, &[7], &[]), r(Op::Get, &[6], &[])],
        ),
    ]
}

/// One step of requests sent in one write; true if every reply was a 200.
pub(super) fn step_pipelined(
    client: &mut Client,
    show: &mut Show,
    book: &mut Bookkeeping,
    title: &str,
    reqs: &[Request],
) -> io::Result<bool> {
    show.step(title);
    let bodies: Vec<crate::buffer::Buffer> = reqs
        .iter()
        .map(|req| {
            let mut b = crate::buffer::Buffer::new();
            req.encode(&mut b);
            b
        })
        .collect();
    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.data()).collect();
    let replies = client.pipeline(&refs)?;
    let dumps = book.barrier()?;
    show.flush(true);
    let mut all_ok = true;
    for (req, reply) in reqs.iter().zip(&replies) {
        let (ok, shown) = render(req.op, reply);
        crate::outln!("    {} shows: {shown}", client.name());
        all_ok &= ok;
    }
    tables(show, dumps);
    Ok(all_ok)
}

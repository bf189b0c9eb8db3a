//! `tablecache demo`: a server, a proxy and a client in one process, each
//! node on its own thread with its own reactor, playing a short scenario
//! that shows a miss, a hit, a FIFO eviction, a write-through PUT, an ADD
//! over hits and misses, a write through a second proxy invalidating the
//! first one's copy, a CLR and an error. Every message is printed per hop
//! as it crosses a socket, and both tables after each step.
//!
//! Run it: `cargo run --release -- demo` (or `demo --interactive` for a
//! prompt connected to the proxy, with the same per-hop printing).
//!
//! The per-hop lines come from the nodes' own trace events (`DECODED`,
//! logged as each message is decoded), picked up by a small logger, so
//! what is printed is what the sockets carried, in the order it happened.

use crate::client::{render, repl, Client};
use crate::proto::{Op, Request};
use crate::proxy::{Proxy, ProxyConfig};
use crate::server::{Server, ServerConfig};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Cache capacity in the demo: small, so eviction shows early.
pub const DEMO_CAPACITY: usize = 3;

static SHOW_WIRE: AtomicBool = AtomicBool::new(false);
static INTERACTIVE: AtomicBool = AtomicBool::new(false);

/// The second proxy's address on its connection to the server, learnt
/// from its trace, so the server's lines from it are labelled `proxy2`.
static PROXY2_PEER: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Prints the wire messages and cache changes from the nodes' log stream;
/// with `all`, every trace event too (one process, so one clock).
struct WireLogger {
    all: bool,
}

impl log::Log for WireLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.target().starts_with("tablecache")
    }

    fn log(&self, record: &log::Record) {
        let line = record.args().to_string();
        if record.target() == crate::trace::TARGET && line.contains(" upstream2 ") && line.contains(" CONNECTED local ")
        {
            // The second proxy's end of its server connection: the server's
            // lines from that peer are the second proxy's messages.
            if let Some(local) = line.rsplit(' ').next() {
                if let Ok(mut p) = PROXY2_PEER.lock() {
                    *p = local.to_string();
                }
            }
        }
        if !SHOW_WIRE.load(Ordering::Relaxed) {
            return;
        }
        if record.target() == crate::trace::TARGET {
            // "<us>us <role> tok=<t> <peer> <EVENT> <details>"
            let mut parts = line.split_whitespace();
            let (_, role, _, peer, event) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next());
            if self.all {
                crate::outln!("      {line}");
            }
            if event != Some("DECODED") {
                let _ = io::stdout().flush();
                return;
            }
            let msg: Vec<&str> = parts.collect();
            let from_proxy2 = PROXY2_PEER
                .lock()
                .is_ok_and(|p| !p.is_empty() && peer == Some(p.as_str()));
            let hop = match role {
                Some("proxy") => "client -> proxy ",
                Some("server") if from_proxy2 => "proxy2 -> server",
                Some("server") => "proxy  -> server",
                Some("upstream") => "server -> proxy ",
                Some("proxy2") => "client -> proxy2",
                Some("upstream2") => "server -> proxy2",
                // The client's own reply, in the interactive demo (the
                // scripted steps print it themselves).
                Some("client") if INTERACTIVE.load(Ordering::Relaxed) => "proxy  -> client",
                _ => return,
            };
            crate::outln!("    {hop}  {}", msg.join(" "));
        } else if record.level() <= log::Level::Debug && (line.contains("evicted") || line.contains("invalidated")) {
            crate::outln!("    ({line})");
        }
        let _ = io::stdout().flush();
    }

    fn flush(&self) {}
}

fn step(client: &mut Client, title: &str, req: Request) -> io::Result<bool> {
    step_via(client, "proxy ", title, req)
}

fn step_via(client: &mut Client, proxy: &str, title: &str, req: Request) -> io::Result<bool> {
    crate::outln!("\n== {title}");
    let mut body = crate::buffer::Buffer::new();
    req.encode(&mut body);
    let text = String::from_utf8_lossy(body.data()).into_owned();
    SHOW_WIRE.store(true, Ordering::SeqCst);
    let reply = client.request_raw(text.as_bytes())?;
    SHOW_WIRE.store(false, Ordering::SeqCst);
    crate::outln!("    {proxy} -> client  {reply}");
    let (ok, shown) = render(req.op, &reply);
    crate::outln!("    client shows: {shown}");
    Ok(ok)
}

/// Waits until the proxy behind `c` holds a lease (its STS says so).
fn wait_for_lease(c: &mut Client) -> io::Result<()> {
    for _ in 0..500 {
        let sts = c.request_raw(b"OP=STS")?;
        if !sts.contains("LEASE_MS=0;") && sts.contains("LEASE_MS=") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, "the proxy got no lease"))
}

fn tables(server: &mut Client, proxy: &mut Client) -> io::Result<()> {
    let s = server.request_raw(b"OP=DMP")?;
    let p = proxy.request_raw(b"OP=DMP")?;
    crate::outln!("    server table: {}", render(Op::Dmp, &s).1);
    crate::outln!(
        "    proxy cache (oldest first, capacity {DEMO_CAPACITY}): {}",
        render(Op::Dmp, &p).1
    );
    Ok(())
}

/// Runs the demo; returns the exit code.
pub fn run(interactive: bool, trace: bool) -> io::Result<u8> {
    let _ = log::set_boxed_logger(Box::new(WireLogger { all: trace }))
        .map(|()| log::set_max_level(log::LevelFilter::Trace));
    // With --trace, the setup shows too: listeners, connects.
    SHOW_WIRE.store(trace, Ordering::SeqCst);
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    // A fresh system: no earlier server could have granted leases, so
    // writes need not wait out a grace period. A long lease: no renewal
    // happens during the demo (every printed line is the scenario's).
    let server = Server::bind(ServerConfig {
        listen: any,
        size: 10,
        grace: Duration::ZERO,
        lease: Duration::from_secs(60),
        ..Default::default()
    })?
    .spawn()?;
    let proxy = Proxy::bind(ProxyConfig {
        listen: any,
        upstream: server.addr(),
        capacity: DEMO_CAPACITY,
        ..Default::default()
    })?
    .spawn()?;
    crate::outln!(
        "tablecache demo: server on {} (10 entries), proxy on {} (FIFO cache of {DEMO_CAPACITY}), client connected to the proxy",
        server.addr(),
        proxy.addr()
    );
    let timeout = Duration::from_secs(5);
    let mut client = Client::connect(proxy.addr(), timeout)?;
    SHOW_WIRE.store(false, Ordering::SeqCst);
    if interactive {
        // The proxy's lease first: the prompt's hops are then the user's.
        wait_for_lease(&mut client)?;
        crate::outln!(
            "each message is printed per hop as it crosses a socket; type `help` for commands, `quit` to leave"
        );
        SHOW_WIRE.store(true, Ordering::SeqCst);
        INTERACTIVE.store(true, Ordering::SeqCst);
        let code = repl(&mut client, false);
        SHOW_WIRE.store(false, Ordering::SeqCst);
        proxy.stop()?;
        server.stop()?;
        return Ok(code);
    }
    // A second proxy in front of the same server, for the coherence step.
    let proxy2 = Proxy::bind(ProxyConfig {
        listen: any,
        upstream: server.addr(),
        capacity: DEMO_CAPACITY,
        trace_names: ("proxy2", "upstream2"),
        ..Default::default()
    })?
    .spawn()?;
    crate::outln!(
        "a second proxy on {}, in front of the same server, with its own client (proxy2)",
        proxy2.addr()
    );
    let mut client2 = Client::connect(proxy2.addr(), timeout)?;
    let mut to_server = Client::connect(server.addr(), timeout)?;
    let mut to_proxy = Client::connect(proxy.addr(), timeout)?;
    for c in [&mut to_proxy, &mut client2] {
        // Both proxies hold their lease before the scenario starts.
        wait_for_lease(c)?;
    }
    let r = Request::new;
    let script: Vec<(&str, Request, bool)> = vec![
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
    ];
    for (title, req, want_ok) in script {
        let ok = if title.contains("second proxy") {
            step_via(&mut client2, "proxy2", title, req)?
        } else {
            step(&mut client, title, req)?
        };
        if ok != want_ok {
            eprintln!("demo: unexpected result in step {title:?}");
            return Ok(1);
        }
        tables(&mut to_server, &mut to_proxy)?;
    }
    crate::outln!("\ndone: run `tablecache demo --interactive` to type your own commands, or add --trace to any node to see every socket event");
    drop((to_server, to_proxy, client, client2));
    proxy2.stop()?;
    proxy.stop()?;
    server.stop()?;
    Ok(0)
}

//! `tablecache demo`: a server, a proxy and a client in one process, each
//! node on its own thread with its own reactor, playing a short scenario
//! that shows a miss, a hit, a FIFO eviction, a write-through PUT, an ADD
//! over hits and misses, a write through a second proxy invalidating the
//! first one's copy, a CLR, an error, a miss and a pipeline through a
//! slow link (the second proxy reaches the server through a
//! `tablecache link` adding 20 ms each way), and the client closing. Every
//! message is printed per hop as it crosses a socket, and both tables
//! after each step.
//!
//! Run it: `cargo run --release -- demo` (`--trace` for every socket
//! event, `--svg FILE` for the sequence diagram, `--interactive` for a
//! prompt connected to the proxy).
//!
//! **Causal order, the same every run.** The nodes' trace events are
//! collected (not printed as logged) and, at the end of each step,
//! printed merged by stamp: a write is stamped before its syscall and a
//! read after, so every read comes after the write that sent its bytes
//! (src/trace/mod.rs). A step ends when the client has its reply and each
//! node has answered a bookkeeping `DMP`: a node's loop runs one thing at
//! a time, so by then it has logged everything the step made it do. The
//! bookkeeping (the `DMP`s that print the tables, the lease waits) runs on
//! connections of its own whose events are left out, and every wait is
//! for an event, so each run has the same connections, tokens and lines
//! apart from times and ports.

mod show;
mod steps;

use crate::client::{repl, Client};
use crate::proxy::{Proxy, ProxyConfig};
use crate::server::{Server, ServerConfig};
use crate::trace::diagram::{Diagram, Pairs};
use crate::trace::merge::Merger;
use show::{await_accept, await_lease, Collector, Show};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;
use steps::{script, slow_steps, step_pipelined, step_via, tables, Bookkeeping, SLOW_LINK};

/// Cache capacity in the demo: small, so eviction shows early.
pub const DEMO_CAPACITY: usize = 3;

/// The node name of the demo's own bookkeeping connections (left out).
const BOOKKEEPING: &str = "demo";

/// How long the demo waits for any one thing before giving up.
const PATIENCE: Duration = Duration::from_secs(10);

/// What the demo was asked for.
#[derive(Debug, Default, Clone)]
pub struct DemoOptions {
    /// A prompt instead of the scenario.
    pub interactive: bool,
    /// Print every socket event.
    pub trace: bool,
    /// Write the sequence diagram of the scenario here.
    pub svg: Option<String>,
    /// Draw only this step (1 = the first after the setup).
    pub svg_step: Option<usize>,
    /// Write the step-through player of the scenario here.
    pub html: Option<String>,
}

/// Runs the demo; returns the exit code.
pub fn run(opts: &DemoOptions) -> io::Result<u8> {
    if let Some(n) = opts.svg_step.filter(|&n| n >= step_count()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the demo has no step {n} (its steps are 0 to {})", step_count() - 1),
        ));
    }
    if log::set_boxed_logger(Box::new(Collector)).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    let show = Show {
        trace: opts.trace,
        origin: crate::trace::now(),
        shown: Vec::new(),
        steps: Vec::new(),
        pairs: Pairs::default(),
        merger: Merger::default(),
        quiet_addrs: HashSet::new(),
        quiet: HashSet::new(),
    };
    let sys = System::start()?;
    // One thing at a time, each awaited: the same order every run.
    await_lease("proxy")?;
    let client = Client::connect(sys.proxy.addr(), PATIENCE)?;
    await_accept("proxy", &client)?;
    if opts.interactive {
        interactive(show, client, sys)
    } else {
        scripted(opts, show, client, sys)
    }
}

/// The server and the first proxy, and where the server's log lives.
struct System {
    server: crate::NodeHandle,
    proxy: crate::NodeHandle,
    data_dir: std::path::PathBuf,
    /// Removes the directory on every way out: the end, an error, a
    /// closed stdout.
    _cleanup: RemoveOnDrop,
}

impl System {
    /// A durable server, in a directory of its own (each write's reply
    /// waits for its log record to reach the disk: APPEND, FSYNC), and a
    /// proxy in front of it.
    fn start() -> io::Result<System> {
        let data_dir = std::env::temp_dir().join(format!("tablecache-demo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        crate::out::remove_at_exit(&data_dir);
        let cleanup = RemoveOnDrop(data_dir.clone());
        let store = crate::store::StoreConfig {
            dir: data_dir.clone(),
            fsync: crate::store::Fsync::Always,
            snapshot_bytes: 0,
            resize: false,
        };
        // A fresh system: no earlier server could have granted leases, so
        // writes need not wait out a grace period. A long lease: no renewal
        // happens during the demo (every printed line is the scenario's).
        let server = Server::bind(ServerConfig {
            listen: any(),
            size: 10,
            grace: Duration::ZERO,
            lease: Duration::from_secs(60),
            store: Some(store),
            ..Default::default()
        })?
        .spawn()?;
        let proxy = Proxy::bind(proxy_config(server.addr(), "proxy"))?.spawn()?;
        crate::outln!(
            "tablecache demo: server on {} (10 entries, logged to {}), proxy on {} (FIFO cache of {DEMO_CAPACITY}), client connected to the proxy",
            server.addr(),
            data_dir.display(),
            proxy.addr()
        );
        Ok(System {
            server,
            proxy,
            data_dir,
            _cleanup: cleanup,
        })
    }

    fn stop(self) -> io::Result<()> {
        self.proxy.stop()?;
        self.server.stop()?;
        let _ = std::fs::remove_dir_all(&self.data_dir);
        Ok(())
    }
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().expect("literal address")
}

/// A demo proxy in front of `server`, named `name` in the trace.
fn proxy_config(server: SocketAddr, name: &'static str) -> ProxyConfig {
    ProxyConfig {
        listen: any(),
        upstream: server,
        capacity: DEMO_CAPACITY,
        trace_name: name,
        ..Default::default()
    }
}

/// `--interactive`: the user's own commands, each hop printed.
fn interactive(mut show: Show, mut client: Client, sys: System) -> io::Result<u8> {
    let mut book = Bookkeeping::connect(&mut show, sys.server.addr(), sys.proxy.addr(), None, None)?;
    book.barrier()?;
    // The prompt's hops are the user's: the setup shows only traced.
    let print = show.trace;
    show.flush(print);
    crate::outln!("each message is printed per hop as it crosses a socket; type `help` for commands, `quit` to leave");
    // The prompt's thread alone runs the hook: it owns both.
    let (mut show, mut book) = (show, book);
    client.set_on_reply(Box::new(move || {
        let _ = book.barrier();
        show.flush(true);
    }));
    let code = repl(&mut client, false);
    drop(client);
    sys.stop()?;
    Ok(code)
}

/// The scripted run: a second proxy and its client, the steps, the close.
fn scripted(opts: &DemoOptions, mut show: Show, mut client: Client, sys: System) -> io::Result<u8> {
    // A second proxy in front of the same server, for the coherence step,
    // reaching it through a slow link (20 ms each way) for the last steps.
    let slow = crate::link::pipe::Shape {
        delay: SLOW_LINK,
        ..Default::default()
    };
    // (Its control listener is the bookkeeping's, not part of the tour.)
    show.quiet.insert(("link".to_string(), "KL".to_string()));
    let (link, link_control) = crate::link::LinkNode::bind(crate::link::LinkConfig {
        listen: any(),
        upstream: sys.server.addr(),
        control: Some(any()),
        shapes: [slow, slow],
        buffer_bytes: 64 * 1024,
        max_connections: 16,
        seed: 1,
    })?;
    let link = link.spawn()?;
    let link_control = link_control.ok_or_else(|| io::Error::other("the link has no control address"))?;
    let proxy2 = Proxy::bind(proxy_config(link.addr(), "proxy2"))?.spawn()?;
    await_lease("proxy2")?;
    let mut client2 = Client::connect_named(proxy2.addr(), PATIENCE, "client2")?;
    await_accept("proxy2", &client2)?;
    crate::outln!(
        "a second proxy on {}, in front of the same server through a link that adds {} ms each way ({}), with its own client (client2)",
        proxy2.addr(),
        SLOW_LINK.as_millis(),
        link.addr()
    );
    crate::outln!(
        "(both proxies are on loopback: the server grants them leases without --peer-secret-file; docs/coherence.md, \"Trust\")"
    );
    let mut book = Bookkeeping::connect(
        &mut show,
        sys.server.addr(),
        sys.proxy.addr(),
        Some(proxy2.addr()),
        Some(link_control),
    )?;
    show.step("setup: listeners, the proxies' connections to the server and their leases, the clients' connections");
    book.barrier()?;
    show.flush(true);
    for (title, req, want_ok) in script() {
        let who = if title.contains("second proxy") {
            &mut client2
        } else {
            &mut client
        };
        if step_via(who, &mut show, &mut book, title, req)? != want_ok {
            eprintln!("demo: unexpected result in step {title:?}");
            return Ok(1);
        }
    }
    for (title, reqs) in slow_steps() {
        if !step_pipelined(&mut client2, &mut show, &mut book, title, &reqs)? {
            eprintln!("demo: unexpected result in step {title:?}");
            return Ok(1);
        }
    }
    show.step(
        "the client closes: shutdown(SHUT_WR) sends FIN; the proxy reads 0 (PEER_FIN), owes nothing, closes; the client reads 0 and closes",
    );
    client.finish()?;
    let dumps = book.barrier()?;
    show.flush(true);
    tables(&mut show, dumps);
    crate::outln!("\ndone: run `tablecache demo --interactive` to type your own commands, `--html FILE` to step through every event in a browser, `--svg FILE` for the picture, or add --trace to any node to see every socket event");
    if let Some(path) = &opts.svg {
        write_svg(&show, path, opts.svg_step)?;
    }
    if let Some(path) = &opts.html {
        let d = Diagram::ordered(show.shown.clone(), show.steps.clone());
        std::fs::write(path, crate::trace::html::render(&d, "tablecache demo, event by event"))?;
    }
    drop((client2, book));
    proxy2.stop()?;
    link.stop()?;
    sys.stop()?;
    Ok(0)
}

/// A directory removed when this is dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How many steps `--step` can name: the setup (0), the scripted ones,
/// those through the slow link, the close.
pub fn step_count() -> usize {
    script().len() + slow_steps().len() + 2
}

/// Draws the scenario (or one step of it) to `path`.
fn write_svg(show: &Show, path: &str, step: Option<usize>) -> io::Result<()> {
    let d = Diagram::ordered(show.shown.clone(), show.steps.clone());
    let (range, title) = match step {
        None => (None, "tablecache demo: every socket, every message".to_string()),
        Some(n) => {
            // Step 0 is the setup.
            let s = d
                .steps
                .get(n)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("the demo has no step {n}")))?;
            let end = d.steps.get(n + 1).map_or(d.events.len(), |t| t.first);
            (Some(s.first..end), format!("tablecache demo, step {n}: {}", s.title))
        }
    };
    std::fs::write(path, crate::trace::svg::render(&d, range, &title))
}

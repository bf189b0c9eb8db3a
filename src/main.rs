//! The `tablecache` binary: one subcommand per program.
//!
//! Run it: `cargo run --release -- server`, `... -- proxy`, `... -- client get 1 2`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tablecache::cli::{self, opt, switch, CliError, Flag, Parsed};
use tablecache::client::{parse_command, repl, run_command, Client, Step, COMMANDS_HELP};
use tablecache::frontend::Limits;
use tablecache::proxy::{Proxy, ProxyConfig};
use tablecache::reactor::{Bound, Node};
use tablecache::server::{Server, ServerConfig};

const TOP_HELP: &str = "\
tablecache: a table server, a caching proxy and a client over a small text protocol

usage: tablecache <command> [options]

commands:
  server   hold the table (default 127.0.0.1:8080, 10 entries)
  proxy    cache part of the table in front of a server (default 127.0.0.1:8081)
  client   send commands to a proxy or server (one-shot, or line by line from stdin)
  bench    measure throughput and latency
  demo     start all three nodes and play a short scenario

`tablecache <command> --help` lists each command's options.";

const LOG_FLAGS: [Flag; 2] = [
    opt(
        "log-level",
        "LEVEL",
        "error, warn, info, debug, trace or off (default info)",
    ),
    switch("trace", "log every socket event (same as --log-level trace)"),
];

const LIMIT_FLAGS: [Flag; 4] = [
    opt("max-connections", "N", "connections served at once (default 10000)"),
    opt(
        "idle-timeout-ms",
        "MS",
        "close a connection with no whole message for this long (default 300000)",
    ),
    opt(
        "max-message-bytes",
        "N",
        "longest message accepted, else 413 (default 65536)",
    ),
    opt(
        "bare-idle-ms",
        "MS",
        "silence that ends a bare (unterminated) message (default 15)",
    ),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("{TOP_HELP}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "server" => cmd_server(rest),
        "client" => cmd_client(rest),
        "proxy" => cmd_proxy(rest),
        "bench" => cmd_bench(rest),
        "demo" => cmd_demo(rest),
        "help" | "--help" | "-h" => {
            tablecache::outln!("{TOP_HELP}");
            Ok(ExitCode::SUCCESS)
        }
        "--version" | "-V" => {
            tablecache::outln!("tablecache {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}\n\n{TOP_HELP}"))),
    };
    match result {
        Ok(code) => code,
        Err(CliError::Help(text)) => {
            tablecache::outln!("{text}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(msg)) => {
            eprintln!("tablecache {cmd}: {msg}");
            ExitCode::from(2)
        }
    }
}

fn flags(groups: &[&[Flag]]) -> Vec<Flag> {
    groups
        .iter()
        .flat_map(|g| g.iter())
        .map(|f| Flag {
            name: f.name,
            value: f.value,
            help: f.help,
        })
        .collect()
}

fn addr(p: &Parsed, name: &str, default: &str) -> Result<SocketAddr, CliError> {
    let v = p.raw(name).unwrap_or(default);
    v.parse()
        .map_err(|_| CliError::Usage(format!("bad value for --{name}: {v:?} (want IP:PORT)")))
}

/// A comma-separated list of addresses.
fn addrs(p: &Parsed, name: &str, default: &str) -> Result<Vec<SocketAddr>, CliError> {
    let v = p.raw(name).unwrap_or(default);
    v.split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| CliError::Usage(format!("bad value for --{name}: {a:?} (want IP:PORT[,IP:PORT..])")))
        })
        .collect()
}

fn limits(p: &Parsed) -> Result<Limits, CliError> {
    let d = Limits::default();
    Ok(Limits {
        max_connections: p.get_min("max-connections", d.max_connections, 1)?,
        idle_timeout: Duration::from_millis(p.get_min("idle-timeout-ms", d.idle_timeout.as_millis() as u64, 1)?),
        max_message_bytes: p.get_min("max-message-bytes", d.max_message_bytes, 16)?,
        bare_idle: Duration::from_millis(p.get_min("bare-idle-ms", d.bare_idle.as_millis() as u64, 1)?),
        ..d
    })
}

/// `--size`, between 1 and `Table::MAX_SIZE`.
fn table_size(p: &cli::Parsed) -> Result<usize, CliError> {
    let size = p.get_min("size", 10usize, 1)?;
    if size > tablecache::table::MAX_SIZE {
        return Err(CliError::Usage(format!(
            "--size must be at most {} (got {size})",
            tablecache::table::MAX_SIZE
        )));
    }
    Ok(size)
}

/// Prints the bound address the way scripts and tests wait for it.
fn announce(addr: SocketAddr) {
    tablecache::outln!("listening on {addr}");
    let _ = io::stdout().flush();
}

fn cmd_server(args: &[String]) -> Result<ExitCode, CliError> {
    let fl = flags(&[
        &[
            opt(
                "listen",
                "ADDR",
                "address to listen on (default 127.0.0.1:8080; port 0 picks one)",
            ),
            opt("size", "N", "entries in the table (default 10)"),
            opt(
                "lease-ms",
                "MS",
                "lease granted to each proxy: a write waits at most this long for a frozen one; 0 grants none (default 1000)",
            ),
            opt(
                "grace-ms",
                "MS",
                "after start, writes wait this long for leases an earlier run may have granted (default: the lease)",
            ),
        ],
        &LIMIT_FLAGS,
        &LOG_FLAGS,
    ]);
    let p = cli::parse(
        args,
        "tablecache server [options]",
        "Holds the table and answers requests.",
        &fl,
        false,
    )?;
    let lease = p.get_min("lease-ms", tablecache::server::DEFAULT_LEASE.as_millis() as u64, 0)?;
    let grace = p.get_min("grace-ms", lease, 0)?;
    const DAY_MS: u64 = 86_400_000;
    if lease > DAY_MS || grace > DAY_MS {
        return Err(CliError::Usage(format!(
            "--lease-ms and --grace-ms must be at most {DAY_MS} (a day)"
        )));
    }
    let cfg = ServerConfig {
        listen: addr(&p, "listen", "127.0.0.1:8080")?,
        size: table_size(&p)?,
        limits: limits(&p)?,
        lease: Duration::from_millis(lease),
        grace: Duration::from_millis(grace),
    };
    tablecache::trace::init_logging(cli::log_level(&p)?);
    let listen = cfg.listen;
    serve("server", listen, Server::bind(cfg))
}

fn cmd_proxy(args: &[String]) -> Result<ExitCode, CliError> {
    let fl = flags(&[
        &[
            opt(
                "listen",
                "ADDR",
                "address clients connect to (default 127.0.0.1:8081; port 0 picks one)",
            ),
            opt("upstream", "ADDR", "the server (default 127.0.0.1:8080)"),
            opt(
                "capacity",
                "N",
                "cache entries at most; the oldest inserted is overwritten (default 5)",
            ),
            opt(
                "upstream-timeout-ms",
                "MS",
                "answer 504 if the server takes longer (default 5000)",
            ),
            opt(
                "upstream-framing",
                "line|bare",
                "line (default), or bare for a naive server: no terminator, one request at a time",
            ),
        ],
        &LIMIT_FLAGS,
        &LOG_FLAGS,
    ]);
    let p = cli::parse(
        args,
        "tablecache proxy [options]",
        "Caches part of the table in front of a server; writes go through to it.",
        &fl,
        false,
    )?;
    let cfg = ProxyConfig {
        listen: addr(&p, "listen", "127.0.0.1:8081")?,
        upstream: addr(&p, "upstream", "127.0.0.1:8080")?,
        capacity: p.get("capacity", 5usize)?,
        upstream_timeout: Duration::from_millis(p.get_min("upstream-timeout-ms", 5000u64, 1)?),
        limits: limits(&p)?,
        upstream_framing: match p.raw("upstream-framing").unwrap_or("line") {
            "line" => tablecache::framing::Framing::Line,
            "bare" => tablecache::framing::Framing::Bare,
            v => {
                return Err(CliError::Usage(format!(
                    "bad value for --upstream-framing: {v:?} (line or bare)"
                )))
            }
        },
        ..Default::default()
    };
    tablecache::trace::init_logging(cli::log_level(&p)?);
    let listen = cfg.listen;
    serve("proxy", listen, Proxy::bind(cfg))
}

fn cmd_bench(args: &[String]) -> Result<ExitCode, CliError> {
    use tablecache::bench::{self, BenchConfig};
    let fl = flags(&[
        &[
            opt(
                "connect",
                "ADDR[,ADDR..]",
                "the proxy or server (default 127.0.0.1:8081); several: connections spread over them in turn",
            ),
            opt(
                "rate",
                "R",
                "open loop: R requests per second, latency from the scheduled time (default: closed loop)",
            ),
            opt("duration", "SECS", "measured time (default 10)"),
            opt("warmup", "SECS", "time before measuring, excluded (default 1)"),
            opt("connections", "C", "connections (default 1)"),
            opt("pipeline", "D", "requests outstanding per connection (default 1)"),
            opt("keys", "N", "indices 0..N are used (default 10)"),
            opt(
                "mix",
                "SPEC",
                "operation weights, e.g. get=80,put=15,add=5 (default get=100)",
            ),
            opt("batch", "K", "indices per request (default 1)"),
            opt("dist", "D", "uniform or zipf:S (default uniform)"),
            opt("seed", "N", "seed of the random choices (default fixed)"),
            switch("json", "end with one JSON line of the results"),
        ],
        &LOG_FLAGS,
    ]);
    let p = cli::parse(
        args,
        "tablecache bench [options]",
        "Measures throughput and latency of a proxy or server (HDR histogram, coordinated-omission corrected in open loop).",
        &fl,
        false,
    )?;
    let d = BenchConfig::default();
    let secs = |name: &str, default: f64, min: f64| -> Result<Duration, CliError> {
        let v: f64 = p.get(name, default)?;
        if !(v >= min && v.is_finite()) {
            return Err(CliError::Usage(format!("--{name} must be at least {min}")));
        }
        Ok(Duration::from_secs_f64(v))
    };
    let rate = match p.raw("rate") {
        None => None,
        Some(_) => {
            let r: f64 = p.get("rate", 0.0)?;
            if !(r > 0.0 && r.is_finite()) {
                return Err(CliError::Usage("--rate must be above 0".into()));
            }
            Some(r)
        }
    };
    let cfg = BenchConfig {
        connect: addrs(&p, "connect", "127.0.0.1:8081")?,
        rate,
        duration: secs("duration", 10.0, 0.1)?,
        warmup: secs("warmup", 1.0, 0.0)?,
        connections: p.get_min("connections", d.connections, 1)?,
        pipeline: p.get_min("pipeline", d.pipeline, 1)?,
        keys: p.get_min("keys", d.keys, 1)?,
        mix: match p.raw("mix") {
            Some(m) => bench::parse_mix(m).map_err(CliError::Usage)?,
            None => d.mix,
        },
        batch: p.get_min("batch", d.batch, 1)?,
        dist: match p.raw("dist") {
            Some(v) => bench::parse_dist(v).map_err(CliError::Usage)?,
            None => d.dist,
        },
        progress: !p.has("json"),
        seed: p.get("seed", d.seed)?,
    };
    let level = if p.has("log-level") || p.has("trace") {
        cli::log_level(&p)?
    } else {
        log::LevelFilter::Warn
    };
    tablecache::trace::init_logging(level);
    match bench::run(cfg.clone()) {
        Ok(report) => {
            bench::print(&cfg, &report, p.has("json"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("tablecache bench: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn cmd_demo(args: &[String]) -> Result<ExitCode, CliError> {
    let fl = [
        switch(
            "interactive",
            "leave me at a client prompt connected to the proxy instead of the scenario",
        ),
        switch(
            "trace",
            "also print every socket event of the three nodes, on one clock",
        ),
    ];
    let p = cli::parse(
        args,
        "tablecache demo [--interactive] [--trace]",
        "Starts a server, a proxy and a client in one process and shows each message per hop and the tables after each step.",
        &fl,
        false,
    )?;
    match tablecache::demo::run(p.has("interactive"), p.has("trace")) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("tablecache demo: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Runs a bound node in this thread until a signal stops it: prints
/// `listening on ADDR` first, exits 0 after a graceful stop.
fn serve<N: Node + Send + 'static>(
    name: &str,
    listen: SocketAddr,
    bound: io::Result<Bound<N>>,
) -> Result<ExitCode, CliError> {
    let mut node = match bound {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tablecache {name}: cannot listen on {listen}: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Err(e) = node.handle_signals() {
        log::warn!("signals: {e}");
    }
    announce(node.local_addr());
    match node.run() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("tablecache {name}: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn cmd_client(args: &[String]) -> Result<ExitCode, CliError> {
    let fl = flags(&[
        &[
            opt("connect", "ADDR", "the proxy or server (default 127.0.0.1:8081)"),
            switch("timing", "print each round-trip time"),
            opt(
                "timeout-ms",
                "MS",
                "give up on a connect or reply after this long (default 5000)",
            ),
            opt(
                "framing",
                "line|bare",
                "line: messages end with \\n (default); bare: no terminator, replies end with a pause",
            ),
            opt("bare-idle-ms", "MS", "the pause that ends a bare reply (default 15)"),
        ],
        &LOG_FLAGS,
    ]);
    let usage = "tablecache client [options] [COMMAND ...]";
    let about = format!("Sends one command and prints its result, or reads commands from stdin.\n\n{COMMANDS_HELP}");
    let p = cli::parse(args, usage, &about, &fl, true)?;
    let target = addr(&p, "connect", "127.0.0.1:8081")?;
    let timeout = Duration::from_millis(p.get_min("timeout-ms", 5000u64, 1)?);
    let bare = match p.raw("framing").unwrap_or("line") {
        "line" => false,
        "bare" => true,
        v => {
            return Err(CliError::Usage(format!(
                "bad value for --framing: {v:?} (line or bare)"
            )))
        }
    };
    let bare_idle = Duration::from_millis(p.get_min("bare-idle-ms", 15u64, 1)?);
    let timing = p.has("timing");
    let one_shot = if p.positional.is_empty() {
        None
    } else {
        let words: Vec<&str> = p.positional.iter().map(|s| s.as_str()).collect();
        Some(parse_command(&words).map_err(CliError::Usage)?)
    };
    let level = if p.has("log-level") || p.has("trace") {
        cli::log_level(&p)?
    } else {
        log::LevelFilter::Warn
    };
    tablecache::trace::init_logging(level);

    let mut client = match Client::connect(target, timeout) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tablecache client: cannot connect to {target}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if bare {
        client.set_bare(bare_idle);
    }
    if let Some(cmd) = one_shot {
        return Ok(match run_command(&mut client, &cmd, timing) {
            Step::Ok => ExitCode::SUCCESS,
            Step::ErrorReply => ExitCode::from(1),
            Step::Lost(e) => {
                eprintln!("tablecache client: {e}");
                ExitCode::from(2)
            }
            Step::Quit => ExitCode::SUCCESS,
        });
    }
    Ok(ExitCode::from(repl(&mut client, timing)))
}

//! The `tablecache` binary: one subcommand per program. The command line
//! is declared in `tablecache::cli` (clap); this file runs what it asks.
//!
//! Run it: `cargo run --release -- server`, `... -- proxy`, `... -- client get 1 2`.

mod fault_tools;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use tablecache::cli::{BenchArgs, Cli, ClientArgs, Cmd, FramingArg};
use tablecache::client::{parse_command, repl, run_command, Client, Step};
use tablecache::proxy::Proxy;
use tablecache::reactor::{Bound, Node};
use tablecache::server::Server;

fn main() -> ExitCode {
    // clap prints help and usage errors itself: help and --version exit 0,
    // a usage error exits 2.
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Server(a) => {
            tablecache::trace::init_logging(a.log.level(log::LevelFilter::Info));
            let cfg = a.config();
            serve("server", cfg.listen, Server::bind(cfg))
        }
        Cmd::Proxy(a) => {
            tablecache::trace::init_logging(a.log.level(log::LevelFilter::Info));
            let cfg = a.config();
            serve("proxy", cfg.listen, Proxy::bind(cfg))
        }
        Cmd::Link(a) => fault_tools::cmd_link(a),
        Cmd::Soak(a) => fault_tools::cmd_soak(a),
        Cmd::Check(a) => fault_tools::cmd_check(a),
        Cmd::Client(a) => cmd_client(a),
        Cmd::Bench(a) => cmd_bench(*a),
        Cmd::TraceView(a) => cmd_trace_view(a),
        Cmd::Demo(a) => match tablecache::demo::run(&tablecache::demo::DemoOptions {
            interactive: a.interactive,
            trace: a.trace,
            svg: a.svg,
            svg_step: a.step,
            html: a.html,
        }) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("tablecache demo: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Sim(a) => {
            let trace = match a.trace() {
                Ok(t) => t,
                Err(msg) => return usage("sim", &msg),
            };
            let caps = if a.capacities.is_empty() {
                tablecache::sim::default_capacities(&trace)
            } else {
                a.capacities.clone()
            };
            let rows = tablecache::sim::run(&trace, &caps);
            if let Some(path) = &a.svg {
                if let Err(e) = std::fs::write(path, tablecache::sim::svg(&rows, &a.title())) {
                    eprintln!("tablecache sim: cannot write {}: {e}", path.display());
                    return ExitCode::from(1);
                }
            }
            if a.json {
                tablecache::outln!("{}", tablecache::sim::json(&rows));
            } else {
                tablecache::outln!("miss ratio over {} requests (min: Bélády's optimum)", trace.len());
                tablecache::out!("{}", tablecache::sim::table(&rows));
            }
            ExitCode::SUCCESS
        }
        Cmd::Repair { dir } => match tablecache::store::repair(&dir) {
            Ok(said) => {
                for line in said {
                    tablecache::outln!("tablecache repair: {line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tablecache repair: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::Completions { shell } => {
            // Into memory first: the generator panics on a write error,
            // and a closed stdout (`| head -1`) must end it quietly.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "tablecache", &mut script);
            tablecache::out!("{}", String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
    }
}

/// A usage error found after parsing (a value clap cannot check alone):
/// said like clap says its own, exit 2.
fn usage(cmd: &str, msg: &str) -> ExitCode {
    eprintln!("error: {msg}\n\nFor more information, try 'tablecache {cmd} --help'.");
    ExitCode::from(2)
}

/// Prints the bound address the way scripts and tests wait for it.
fn announce(addr: SocketAddr) {
    tablecache::outln!("listening on {addr}");
    let _ = io::stdout().flush();
}

fn cmd_bench(a: BenchArgs) -> ExitCode {
    if let Some(tablecache::cli::BenchSub::Plot { files, out, title, .. }) = &a.sub {
        return cmd_plot(files, out.as_deref(), title);
    }
    let cfg = match a.config() {
        Ok(c) => c,
        Err(msg) => return usage("bench", &msg),
    };
    tablecache::trace::init_logging(a.log.level(log::LevelFilter::Warn));
    let report = match tablecache::bench::run(cfg.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tablecache bench: {e}");
            return ExitCode::from(2);
        }
    };
    // The report first: a file that cannot be written loses nothing else.
    if a.quiet {
        tablecache::bench::print_quiet(&report);
    } else {
        tablecache::bench::print(&cfg, &report, a.json);
    }
    let files_ok = write_bench_files(&a, &cfg, &report);
    match bench_verdict(&report, a.max_error_rate) {
        Some(why) => {
            eprintln!("tablecache bench: {why}");
            ExitCode::from(1)
        }
        None if !files_ok => ExitCode::from(1),
        None => ExitCode::SUCCESS,
    }
}

/// Why a finished run fails, if it does: a target of another protocol
/// (none of its numbers mean what they seem to), a run stopped by its
/// target or one that measured nothing, failures past `--max-error-rate`
/// (as a test would).
fn bench_verdict(report: &tablecache::bench::Report, max_error_rate: f64) -> Option<String> {
    let interrupted = report.stopped.as_deref() == Some(tablecache::bench::INTERRUPTED);
    if let Some(what) = &report.foreign {
        return Some(what.clone());
    }
    match &report.stopped {
        Some(why) if !interrupted => return Some(format!("stopped: {why}")),
        _ => {}
    }
    if report.requests == 0 {
        return Some("nothing was measured".into());
    }
    (report.error_count() > 0 && report.error_rate() > max_error_rate).then(|| {
        format!(
            "{} of {} requests failed (over --max-error-rate {max_error_rate})",
            report.error_count(),
            report.requests
        )
    })
}

/// Writes the files a run was asked for (`--record`, `--svg`,
/// `--hdr-out`, `--json-out`), each on its own: false if one could not be.
fn write_bench_files(a: &BenchArgs, cfg: &tablecache::bench::BenchConfig, report: &tablecache::bench::Report) -> bool {
    let mut ok = true;
    let mut write = |path: &std::path::Path, text: String| {
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("tablecache bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    };
    if let Some(path) = &a.record {
        write(path, report.recorded.iter().map(|k| format!("{k}\n")).collect());
    }
    if let Some(path) = &a.svg {
        let hdr = tablecache::bench::hdr_text(&report.histogram);
        match tablecache::bench::plot::parse_hdr(&tablecache::bench::report_title(cfg), &hdr) {
            Ok(c) => write(
                path,
                tablecache::bench::plot::svg("tablecache bench: latency by percentile", &[c]),
            ),
            Err(_) => eprintln!(
                "tablecache bench: no latency to draw in {} (no request was answered)",
                path.display()
            ),
        }
    }
    if let Some(path) = &a.hdr_out {
        write(path, tablecache::bench::hdr_text(&report.histogram));
    }
    if let Some(path) = &a.json_out {
        write(path, format!("{}\n", tablecache::bench::json(cfg, report)));
    }
    ok
}

/// `tablecache bench plot`: the distributions of `files` overlaid.
fn cmd_plot(files: &[std::path::PathBuf], out: Option<&std::path::Path>, title: &str) -> ExitCode {
    let mut curves = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map_or_else(|| f.display().to_string(), |n| n.to_string_lossy().into_owned());
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tablecache bench plot: {}: {e}", f.display());
                return ExitCode::from(1);
            }
        };
        match tablecache::bench::plot::parse_hdr(&name, &text) {
            Ok(c) => curves.push(c),
            Err(e) => {
                eprintln!("tablecache bench plot: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let svg = tablecache::bench::plot::svg(title, &curves);
    match out {
        Some(path) => {
            if let Err(e) = std::fs::write(path, svg) {
                eprintln!("tablecache bench plot: {}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
        None => tablecache::out!("{svg}"),
    }
    ExitCode::SUCCESS
}

/// Runs a bound node in this thread until a signal stops it: prints
/// `listening on ADDR` first, exits 0 after a graceful stop.
fn serve<N: Node + Send + 'static>(name: &str, listen: SocketAddr, bound: io::Result<Bound<N>>) -> ExitCode {
    let mut node = match bound {
        Ok(n) => n,
        Err(e) => {
            // A listener's error says where; the data directory's names
            // its file.
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::InvalidInput {
                eprintln!("tablecache {name}: {e}");
            } else {
                eprintln!("tablecache {name}: cannot start on {listen}: {e}");
            }
            return ExitCode::from(1);
        }
    };
    if let Err(e) = node.handle_signals() {
        log::warn!("signals: {e}");
    }
    announce(node.local_addr());
    match node.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tablecache {name}: {e}");
            ExitCode::from(1)
        }
    }
}

fn cmd_client(a: ClientArgs) -> ExitCode {
    let target = match a.target.addrs() {
        Ok(t) if t.len() == 1 => t[0],
        Ok(_) => return usage("client", "the client talks to one node: --connect takes one address"),
        Err(msg) => return usage("client", &msg),
    };
    let one_shot = if a.command.is_empty() {
        None
    } else {
        let words: Vec<&str> = a.command.iter().map(|s| s.as_str()).collect();
        match parse_command(&words) {
            Ok(c) => Some(c),
            Err(msg) => return usage("client", &msg),
        }
    };
    tablecache::trace::init_logging(a.log.level(log::LevelFilter::Warn));
    // The name lives as long as the process (the trace takes `&'static str`).
    let name: &'static str = Box::leak(a.name.into_boxed_str());
    let mut client = match Client::connect_named(target, Duration::from_millis(a.timeout_ms), name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tablecache client: cannot connect to {target}: {e}");
            return ExitCode::from(2);
        }
    };
    if a.framing == FramingArg::Bare {
        client.set_bare(Duration::from_millis(a.bare_idle_ms));
    }
    if let Some(cmd) = one_shot {
        return match run_command(&mut client, &cmd, a.timing) {
            Step::Ok | Step::Quit => ExitCode::SUCCESS,
            Step::ErrorReply => ExitCode::from(1),
            Step::Lost(e) => {
                eprintln!("tablecache client: {e}");
                ExitCode::from(2)
            }
        };
    }
    ExitCode::from(repl(&mut client, a.timing))
}

/// `tablecache trace-view`: trace lines on stdin, an SVG out (the player
/// with `--html`; with `--check`, the reads that came before their
/// writes).
fn cmd_trace_view(a: tablecache::cli::TraceViewArgs) -> ExitCode {
    use std::io::Read;
    use tablecache::trace::diagram::Diagram;
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("tablecache trace-view: reading stdin: {e}");
        return ExitCode::from(1);
    }
    let d = Diagram::parse(&text);
    if d.events.is_empty() {
        eprintln!("tablecache trace-view: no trace lines on stdin (run a node or the demo with --trace)");
        return ExitCode::from(1);
    }
    if a.check {
        let bad = d.violations();
        for v in &bad {
            tablecache::outln!("{v}");
        }
        return ExitCode::from(u8::from(!bad.is_empty()));
    }
    let range = match a.step {
        None => None,
        Some(n) => match d.steps.get(n) {
            Some(s) => Some(s.first..d.steps.get(n + 1).map_or(d.events.len(), |t| t.first)),
            None => {
                return usage(
                    "trace-view",
                    &format!("the trace has {} steps, no step {n}", d.steps.len()),
                )
            }
        },
    };
    let page = if a.html {
        tablecache::trace::html::render(&d, &a.title)
    } else {
        tablecache::trace::svg::render(&d, range, &a.title)
    };
    match a.out {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, page) {
                eprintln!("tablecache trace-view: {path}: {e}");
                return ExitCode::from(1);
            }
        }
        None => tablecache::out!("{page}"),
    }
    ExitCode::SUCCESS
}

//! The command line, declared with clap: one struct per subcommand, flag
//! groups shared by flattening, and the conversions into each node's
//! settings. `main.rs` only dispatches. This file holds the command and
//! the shared groups; `nodes.rs` the server's and the proxy's flags,
//! `bench.rs` the bench's, `tools.rs` the client's, the simulator's, the
//! demo's and the trace viewer's.
//!
//! The habits it keeps from redis-cli and redis-benchmark: flags anywhere
//! (`client get 1 --timing`), `-h HOST -p PORT` for the target, and on
//! `bench` `-c` connections, `-P` pipeline, `-n` requests, `-q` quiet.
//! Usage errors exit 2, `--help` and `--version` exit 0.

use crate::bench::{parse_dist, parse_mix, BenchConfig, Dist};
use crate::framing::Framing;
use crate::frontend::Limits;
use crate::proxy::ProxyConfig;
use crate::server::{ServerConfig, DEFAULT_LEASE};
use clap::builder::TypedValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

/// A day, in milliseconds: the longest lease or grace.
const DAY_MS: u64 = 86_400_000;

/// tablecache: a table server, a caching proxy and a client over a small
/// text protocol.
#[derive(Debug, Parser)]
#[command(name = "tablecache", version, propagate_version = true)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Hold the table (default 127.0.0.1:8080, 10 entries).
    Server(ServerArgs),
    /// Cache part of the table in front of a server (default 127.0.0.1:8081).
    Proxy(ProxyArgs),
    /// Pass connections on to an upstream through a shaped path: delay,
    /// jitter, bandwidth, and faults set at run time (default
    /// 127.0.0.1:8082 to 127.0.0.1:8080).
    Link(LinkArgs),
    /// Send commands to a proxy or server: one from the arguments, or line
    /// by line from a prompt or a pipe.
    Client(ClientArgs),
    /// Measure throughput and latency.
    Bench(Box<BenchArgs>),
    /// Start all three nodes and play a short scenario.
    Demo(DemoArgs),
    /// Draw trace lines (from --trace or `demo --trace`, merged with
    /// `sort -n` if from several processes) read on stdin as an SVG
    /// sequence diagram.
    TraceView(TraceViewArgs),
    /// Run the system under faults for a while, record every operation,
    /// and check the history (docs/testing.md, "Soak").
    Soak(SoakArgs),
    /// Check a recorded history: linearizable over the whole table, each
    /// connection in order, no acknowledged write lost.
    Check(CheckArgs),
    /// Replay a key trace through every eviction policy and Bélády's MIN,
    /// offline: miss ratios per policy per capacity.
    Sim(SimArgs),
    /// Cut a damaged data directory's log where it stops being readable,
    /// keeping a copy of what is cut and saying which writes are lost
    /// (the server refuses to start on such damage and names this).
    Repair {
        /// The server's --data-dir (no server may be running on it).
        dir: std::path::PathBuf,
    },
    /// Print a completion script for a shell
    /// (e.g. `tablecache completions bash > /etc/bash_completion.d/tablecache`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Logging, shared by every node.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// How much to log (to stderr) [default: info for the nodes, warn for
    /// the client and the bench].
    #[arg(long, value_name = "LEVEL",
          value_parser = clap::builder::PossibleValuesParser::new(["error", "warn", "info", "debug", "trace", "off"])
              .map(|s| s.parse::<log::LevelFilter>().unwrap_or(log::LevelFilter::Info)))]
    pub log_level: Option<log::LevelFilter>,
    /// Log every socket event (same as --log-level trace).
    #[arg(long)]
    pub trace: bool,
}

impl LogArgs {
    /// The level asked for, or `default`.
    pub fn level(&self, default: log::LevelFilter) -> log::LevelFilter {
        if self.trace {
            log::LevelFilter::Trace
        } else {
            self.log_level.unwrap_or(default)
        }
    }
}

/// The limits a listening node enforces.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Connections served at once (lowered at start to fit the open-file
    /// limit, `ulimit -n`, less 32 descriptors the node keeps; logged).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
    /// Close a connection with no whole message for this long.
    #[arg(long, value_name = "MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Longest message accepted, else 413.
    #[arg(long, value_name = "N", default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(16..))]
    pub max_message_bytes: u64,
    /// Silence that ends a bare (unterminated) message.
    #[arg(long, value_name = "MS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub bare_idle_ms: u64,
    /// On SIGINT/SIGTERM, how long to wait for owed replies (a proxy: for
    /// its server's answers) before closing what is still open.
    #[arg(long, value_name = "MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub stop_timeout_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections as usize,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_message_bytes: self.max_message_bytes as usize,
            bare_idle: Duration::from_millis(self.bare_idle_ms),
            stop_timeout: Duration::from_millis(self.stop_timeout_ms),
            ..Limits::default()
        }
    }
}

/// How a peer frames messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FramingArg {
    /// Messages end with a newline.
    Line,
    /// No terminator: a message ends with a pause (naive peers).
    Bare,
}

/// The target of the client or the bench: `--connect`, or redis-cli's
/// `-h HOST` / `-p PORT` (either alone keeps the other from the default).
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The proxy or server; the bench takes several, comma-separated, and
    /// spreads its connections over them in turn.
    #[arg(long, value_name = "ADDR[,ADDR..]", default_value = "127.0.0.1:8081",
          conflicts_with_all = ["host", "port"])]
    pub connect: String,
    /// Host of the target, like redis-cli (with -p; instead of --connect).
    #[arg(short = 'h', long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Port of the target, like redis-cli (with -h; instead of --connect).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

impl TargetArgs {
    /// The addresses to connect to.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        if self.host.is_some() || self.port.is_some() {
            let host = self.host.as_deref().unwrap_or("127.0.0.1");
            let port = self.port.unwrap_or(8081);
            let spec = format!("{host}:{port}");
            return std::net::ToSocketAddrs::to_socket_addrs(&spec)
                .map_err(|e| format!("cannot resolve {spec}: {e}"))?
                .next()
                .map(|a| vec![a])
                .ok_or_else(|| format!("{spec} resolves to nothing"));
        }
        self.connect
            .split(',')
            .map(|a| {
                a.trim()
                    .parse()
                    .map_err(|_| format!("bad value for --connect: {a:?} (want IP:PORT[,IP:PORT..])"))
            })
            .collect()
    }
}

mod bench;
mod nodes;
mod tools;

pub use bench::{BenchArgs, BenchSub, ProtocolArg, MAX_KEYS};
pub use nodes::{FsyncArg, LinkArgs, ProxyArgs, ServerArgs};
pub use tools::{CheckArgs, ClientArgs, DemoArgs, SimArgs, SoakArgs, TraceViewArgs};

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tablecache").chain(args.iter().copied()))
    }

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_go_anywhere_and_redis_short_flags_work() {
        let Cmd::Client(c) = parse(&["client", "get", "1", "2", "--timing", "-p", "9000"])
            .unwrap()
            .cmd
        else {
            panic!()
        };
        assert_eq!(c.command, ["get", "1", "2"]);
        assert!(c.timing);
        assert_eq!(c.target.addrs().unwrap(), ["127.0.0.1:9000".parse().unwrap()]);
        let Cmd::Client(c) = parse(&["client", "get", "-1"]).unwrap().cmd else {
            panic!()
        };
        assert_eq!(c.command, ["get", "-1"], "a negative number is an argument");
        let Cmd::Bench(b) = parse(&["bench", "-c", "4", "-P", "16", "-n", "1000", "-q", "-h", "127.0.0.2"])
            .unwrap()
            .cmd
        else {
            panic!()
        };
        let cfg = b.config().unwrap();
        assert_eq!((cfg.connections, cfg.pipeline, cfg.requests), (4, 16, Some(1000)));
        assert_eq!(cfg.connect, ["127.0.0.2:8081".parse().unwrap()]);
        assert!(!cfg.progress && b.quiet);
        assert_eq!(cfg.warmup, Duration::ZERO, "-n measures every request");
        let Cmd::Server(s) = parse(&["server", "--lease-ms", "0"]).unwrap().cmd else {
            panic!()
        };
        assert_eq!(s.config().grace, Duration::ZERO, "the grace follows the lease");
    }

    #[test]
    fn mistakes_are_usage_errors_with_suggestions() {
        let e = parse(&["serve"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("server"), "{e}");
        let e = parse(&["server", "--lisen", "x"]).unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
        assert!(parse(&["server", "--size", "0"]).is_err());
        assert!(
            parse(&["bench", "--connect", "127.0.0.1:1", "-p", "2"]).is_err(),
            "one way to name the target"
        );
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }
}

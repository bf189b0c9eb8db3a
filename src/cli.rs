//! The command line, declared with clap: one struct per subcommand, flag
//! groups shared by flattening, and the conversions into each node's
//! settings. `main.rs` only dispatches.
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
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections as usize,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_message_bytes: self.max_message_bytes as usize,
            bare_idle: Duration::from_millis(self.bare_idle_ms),
            ..Limits::default()
        }
    }
}

/// `tablecache server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Entries in the table.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=crate::table::MAX_SIZE as u64))]
    pub size: u64,
    /// Lease granted to each proxy: a write waits at most about this long
    /// for a frozen one; 0 grants none (docs/coherence.md).
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_LEASE.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=DAY_MS))]
    pub lease_ms: u64,
    /// After start, writes wait this long for leases an earlier run may
    /// have granted [default: the lease].
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=DAY_MS))]
    pub grace_ms: Option<u64>,
    /// Keep the table in DIR: every write is logged before it is
    /// acknowledged, and the table survives a restart (docs/durability.md).
    /// Without it the table lives in memory only.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<std::path::PathBuf>,
    /// When a logged write reaches the disk: before its acknowledgement
    /// (always), at most --fsync-interval-ms later (batch), or when the OS
    /// writes it back (never).
    #[arg(long, value_enum, default_value_t = FsyncArg::Always, requires = "data_dir")]
    pub fsync: FsyncArg,
    /// With --fsync batch: the longest a written record waits for its sync.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "data_dir",
          value_parser = clap::value_parser!(u64).range(1..=DAY_MS))]
    pub fsync_interval_ms: u64,
    /// Take a snapshot (and start a new log segment) when the log passes
    /// this many bytes [default: the larger of 16 MiB and twice the table].
    #[arg(long, value_name = "BYTES", requires = "data_dir", value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_bytes: Option<u64>,
    /// Start even though DIR holds a table of another --size (it is cut
    /// or zero-extended).
    #[arg(long, requires = "data_dir")]
    pub resize: bool,
    /// Only connections that present the secret in FILE (the proxies',
    /// the same file) may hold leases; without it, only loopback peers may
    /// (docs/coherence.md, "Trust"). The secret: the file's content less
    /// surrounding whitespace, at least 16 printable ASCII characters, no
    /// space or ';' (e.g. `head -c 24 /dev/urandom | base64 > FILE`).
    #[arg(long, value_name = "FILE")]
    pub peer_secret_file: Option<std::path::PathBuf>,
    /// Proxies holding a lease at once; more are answered 503 and ask
    /// again every second.
    #[arg(long, value_name = "N", default_value_t = crate::server::leases::MAX_PROXIES as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_proxies: u64,
    /// Indices tracked per proxy; past it, its oldest are invalidated
    /// (it drops them from its cache). All proxies together: at most 2^20
    /// (then the same rule, for the proxy asking for more).
    #[arg(long, value_name = "N", default_value_t = crate::server::leases::MAX_TRACKED_PER_PROXY as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::server::leases::MAX_TRACKED as u64))]
    pub max_tracked: u64,
    /// Limits on peers.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

/// What `bench` does besides running.
#[derive(Debug, Subcommand)]
pub enum BenchSub {
    /// Overlay latency distributions saved with --hdr-out (or any
    /// HdrHistogram percentile-distribution file) in one SVG.
    Plot {
        /// Print help.
        #[arg(short = 'h', long, action = ArgAction::Help)]
        help: Option<bool>,
        /// The distribution files; each is a curve, named after its file.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Where to write the SVG [default: stdout].
        #[arg(short = 'o', long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// The picture's title.
        #[arg(long, default_value = "latency by percentile")]
        title: String,
    },
}

/// `bench --protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// tablecache's OP=GET;IND=.. lines.
    Line,
    /// Redis's RESP.
    Resp,
    /// memcached's text protocol.
    Memcache,
}

/// `--fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FsyncArg {
    /// fdatasync before acknowledging (one per loop pass: group commit).
    Always,
    /// fdatasync at most every --fsync-interval-ms.
    Batch,
    /// Leave it to the OS.
    Never,
}

impl ServerArgs {
    /// The server's settings.
    pub fn config(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen,
            size: self.size as usize,
            limits: self.limits.limits(),
            lease: Duration::from_millis(self.lease_ms),
            grace: Duration::from_millis(self.grace_ms.unwrap_or(self.lease_ms)),
            store: self.data_dir.as_ref().map(|dir| crate::store::StoreConfig {
                dir: dir.clone(),
                fsync: match self.fsync {
                    FsyncArg::Always => crate::store::Fsync::Always,
                    FsyncArg::Batch => crate::store::Fsync::Batch(Duration::from_millis(self.fsync_interval_ms)),
                    FsyncArg::Never => crate::store::Fsync::Never,
                },
                snapshot_bytes: self.snapshot_bytes.unwrap_or(0),
                resize: self.resize,
            }),
            peer_secret_file: self.peer_secret_file.clone(),
            max_proxies: self.max_proxies as usize,
            max_tracked: self.max_tracked as usize,
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

/// `tablecache proxy`.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address clients connect to (port 0 picks one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// The server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub upstream: SocketAddr,
    /// Cache entries at most.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub capacity: usize,
    /// Which entry a new one overwrites when the cache is full: fifo (the
    /// oldest inserted), lru, clock, sieve or s3fifo (docs/caching.md).
    #[arg(long, value_name = "POLICY", default_value = "fifo",
          value_parser = clap::builder::PossibleValuesParser::new(crate::cache::POLICIES))]
    pub policy: String,
    /// Answer 504 if the server takes longer (keep it above the server's
    /// lease and grace, which a write may wait for).
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_timeout_ms: u64,
    /// line, or bare for a naive server (no terminator, one request at a time).
    #[arg(long, value_name = "FRAMING", default_value = "line")]
    pub upstream_framing: FramingArg,
    /// The secret to present to the server (the same file as its
    /// --peer-secret-file) to hold a lease; see `server --help`.
    #[arg(long, value_name = "FILE")]
    pub peer_secret_file: Option<std::path::PathBuf>,
    /// Limits on peers.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl ProxyArgs {
    /// The proxy's settings.
    pub fn config(&self) -> ProxyConfig {
        ProxyConfig {
            listen: self.listen,
            upstream: self.upstream,
            capacity: self.capacity,
            policy: crate::cache::POLICIES
                .into_iter()
                .find(|&p| p == self.policy)
                .unwrap_or("fifo"),
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms),
            limits: self.limits.limits(),
            upstream_framing: match self.upstream_framing {
                FramingArg::Line => Framing::Line,
                FramingArg::Bare => Framing::Bare,
            },
            peer_secret_file: self.peer_secret_file.clone(),
            ..ProxyConfig::default()
        }
    }
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

/// `tablecache client`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true, after_help = crate::client::COMMANDS_HELP,
          mut_arg("connect", |a| a.value_name("ADDR").help("The proxy or server")))]
pub struct ClientArgs {
    /// Where to connect.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Print each round-trip time.
    #[arg(long)]
    pub timing: bool,
    /// Give up on a connect or reply after this long.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// line: messages end with \n; bare: no terminator, replies end with a pause.
    #[arg(long, value_name = "FRAMING", default_value = "line")]
    pub framing: FramingArg,
    /// The pause that ends a bare reply.
    #[arg(long, value_name = "MS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub bare_idle_ms: u64,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
    /// One command (`get 1 2`, `put 1=10`, `OP=GET;IND=1`...); without one,
    /// commands are read line by line. The exit status is 0, or 1 if the
    /// (last) command got an error reply, or 2 when the node cannot be
    /// reached.
    #[arg(value_name = "COMMAND", allow_negative_numbers = true)]
    pub command: Vec<String>,
}

/// `tablecache bench`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true, args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// `bench plot`: draw saved distributions instead of running.
    #[command(subcommand)]
    pub sub: Option<BenchSub>,
    /// Where to connect.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Open loop: R requests per second, latency from the scheduled time
    /// [default: closed loop].
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Measured time: 500ms, 2s, 1m, or seconds.
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = crate::units::parse_duration)]
    pub duration: Duration,
    /// Time before measuring, excluded (500ms, 2s, or seconds) [default:
    /// 1s; 0 with -n].
    #[arg(long, value_name = "TIME", value_parser = crate::units::parse_duration)]
    pub warmup: Option<Duration>,
    /// A request unanswered this many milliseconds is an error (kind
    /// `timeout`): its connection is closed and opened again.
    #[arg(long, value_name = "MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub timeout: u64,
    /// Connections.
    #[arg(short = 'c', long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub connections: u64,
    /// Requests outstanding per connection.
    #[arg(short = 'P', long, value_name = "D", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub pipeline: u64,
    /// Send this many requests, then stop (instead of --duration); every
    /// one is measured.
    #[arg(short = 'n', long = "requests", value_name = "N", conflicts_with = "duration",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Indices 0..N are used.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Operation weights, e.g. get=80,put=15,add=5.
    #[arg(long, value_name = "SPEC", default_value = "get=100", value_parser = parse_mix)]
    pub mix: [u32; 3],
    /// Indices per request.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// uniform or zipf:S (the generator `tablecache sim` uses).
    #[arg(long, alias = "distribution", value_name = "D", default_value = "uniform", value_parser = parse_dist)]
    pub dist: Dist,
    /// Write every index read (GET, ADD), one a line in the order
    /// requested, to FILE: a trace for `tablecache sim --trace FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    /// Seed of the random choices [default: fixed].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// The protocol to speak: tablecache's (line), Redis's (resp: Redis,
    /// Valkey, KeyDB, twemproxy) or memcached's text protocol (memcache).
    /// GET and PUT of index i become GET and SET of key:i.
    #[arg(long, value_enum, default_value_t = ProtocolArg::Line)]
    pub protocol: ProtocolArg,
    /// Set every key (0..--keys) before the run, so GETs find values.
    #[arg(long)]
    pub preload: bool,
    /// Open loop: send passes at least this many microseconds apart. At
    /// higher rates the requests due meanwhile leave together, each up to
    /// this late (counted in its latency); lower it for finer latency at
    /// more generator CPU.
    #[arg(long, value_name = "US", default_value_t = crate::bench::DEFAULT_SEND_INTERVAL.as_micros() as u64,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub send_interval_us: u64,
    /// Print the results as one JSON line alone on stdout (the report goes
    /// to stderr).
    #[arg(long)]
    pub json: bool,
    /// Draw this run's latency distribution (latency against percentile)
    /// as an SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Write the latency distribution to FILE, in HdrHistogram's
    /// percentile-distribution text format (milliseconds), for its plotter.
    #[arg(long, value_name = "FILE")]
    pub hdr_out: Option<std::path::PathBuf>,
    /// Also write the JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<std::path::PathBuf>,
    /// Exit 1 when more than this share of requests failed (0.01: 1%; 0:
    /// any failure fails the run).
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    pub max_error_rate: f64,
    /// Quiet: only one line of results (throughput and percentiles).
    #[arg(short = 'q', long, conflicts_with = "json")]
    pub quiet: bool,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl BenchArgs {
    /// The run's settings.
    pub fn config(&self) -> Result<BenchConfig, String> {
        let d = BenchConfig::default();
        self.bounds()?;
        let rate = match self.rate {
            // Bounded both ways: a schedule of one request a day at most,
            // and a count of requests that fits in the schedule's clock.
            Some(r) if !((1.0 / 86_400.0..=1e9).contains(&r)) => {
                return Err("--rate must be between 1/86400 and 1e9 requests a second".into())
            }
            r => r,
        };
        let (duration, warmup) = match self.requests {
            // -n: the count ends the run; a day is only a backstop.
            Some(_) => (Duration::from_secs(86_400), self.warmup.unwrap_or_default()),
            None if self.duration < Duration::from_millis(100) => {
                return Err("--duration must be at least 100ms".into())
            }
            None => (self.duration, self.warmup.unwrap_or(Duration::from_secs(1))),
        };
        Ok(BenchConfig {
            connect: self.target.addrs()?,
            rate,
            duration,
            warmup,
            connections: self.connections as usize,
            pipeline: self.pipeline as usize,
            keys: self.keys,
            mix: self.mix,
            batch: self.batch as usize,
            dist: self.dist.clone(),
            progress: !self.json && !self.quiet,
            seed: self.seed.unwrap_or(d.seed),
            requests: self.requests,
            record: self.record.is_some(),
            protocol: match self.protocol {
                ProtocolArg::Line => crate::bench::Protocol::Line,
                ProtocolArg::Resp => crate::bench::Protocol::Resp,
                ProtocolArg::Memcache => crate::bench::Protocol::Memcache,
            },
            preload: self.preload,
            send_interval: Duration::from_micros(self.send_interval_us),
            timeout: Duration::from_millis(self.timeout),
        })
    }

    /// Counts checked before anything is allocated: indices are `i64` and
    /// no table holds more than [`MAX_KEYS`]; a Zipf draw keeps 8 bytes a
    /// key, and `--record` 8 bytes a request.
    fn bounds(&self) -> Result<(), String> {
        if self.keys > MAX_KEYS {
            return Err(format!(
                "--keys {} is more than any table holds: at most {MAX_KEYS} (a table of 8 TiB)",
                self.keys
            ));
        }
        let free = crate::units::available_memory();
        if let Dist::Zipf(_) = self.dist {
            crate::units::fits("--keys (with --dist zipf)", self.keys, 8, free)?;
        }
        if let (Some(n), Some(_)) = (self.requests, &self.record) {
            crate::units::fits("--requests (with --record)", n, 8, free)?;
        }
        Ok(())
    }
}

/// The most keys a bench or a simulation draws from: 2^40 (a table of
/// them would take 8 TiB).
pub const MAX_KEYS: u64 = 1 << 40;

/// `tablecache sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// A trace file: one index a line, or protocol lines (GET and ADD
    /// indices, in order); `-` reads stdin. Without it, a trace is
    /// generated (--keys, --requests, --zipf, --seed).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// Generated trace: indices 0..N.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// Generated trace: its length.
    #[arg(long, value_name = "M", default_value_t = 200_000)]
    pub requests: usize,
    /// Generated trace: Zipf exponent (0 for uniform).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub zipf: f64,
    /// Generated trace: seed (the bench's default, so a bench run and a
    /// simulation draw alike).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Cache sizes to try, comma-separated [default: 1% of the distinct
    /// keys up to all of them, doubling].
    #[arg(long, value_name = "C[,C..]", value_delimiter = ',')]
    pub capacities: Vec<usize>,
    /// Generated trace: mix in scans, this share of the requests (runs of
    /// 100 indices read once, beyond --keys).
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub scan: f64,
    /// One JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the miss-ratio curves into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

impl SimArgs {
    /// A title for the curves: what the trace is.
    pub fn title(&self) -> String {
        match &self.trace {
            Some(path) => format!("miss ratio, trace {path}"),
            None if self.scan > 0.0 => format!(
                "miss ratio, Zipf {} over {} keys, {} requests, {:.0}% scans",
                self.zipf,
                self.keys,
                self.requests,
                self.scan * 100.0
            ),
            None => format!(
                "miss ratio, Zipf {} over {} keys, {} requests",
                self.zipf, self.keys, self.requests
            ),
        }
    }

    /// The trace asked for.
    pub fn trace(&self) -> Result<Vec<i64>, String> {
        match self.trace.as_deref() {
            Some(path) => {
                let text = if path == "-" {
                    std::io::read_to_string(std::io::stdin()).map_err(|e| format!("stdin: {e}"))?
                } else {
                    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?
                };
                crate::sim::parse_trace(&text).map_err(|e| format!("{path}: {e}"))
            }
            None => {
                if !(self.zipf >= 0.0 && self.zipf.is_finite()) {
                    return Err("--zipf must be 0 or more".into());
                }
                let dist = if self.zipf == 0.0 {
                    Dist::Uniform
                } else {
                    Dist::Zipf(self.zipf)
                };
                if !(0.0..1.0).contains(&self.scan) {
                    return Err("--scan must be from 0 up to (not including) 1".into());
                }
                // Before allocating: a Zipf draw keeps 8 bytes a key, the
                // trace 8 a request (and the simulation as much again).
                if self.keys > MAX_KEYS {
                    return Err(format!(
                        "--keys {} is more than any table holds: at most {MAX_KEYS}",
                        self.keys
                    ));
                }
                let free = crate::units::available_memory();
                if dist != Dist::Uniform {
                    crate::units::fits("--keys (with --zipf)", self.keys, 8, free)?;
                }
                crate::units::fits("--requests", self.requests as u64, 16, free)?;
                let seed = self.seed.unwrap_or(BenchConfig::default().seed);
                let t = crate::sim::generate(self.keys, self.requests, &dist, seed);
                Ok(if self.scan > 0.0 {
                    crate::sim::with_scans(&t, self.keys, self.scan, seed)
                } else {
                    t
                })
            }
        }
    }
}

/// `tablecache demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave me at a client prompt connected to the proxy instead of the
    /// scenario (each message still printed per hop).
    #[arg(long)]
    pub interactive: bool,
    /// Also print every socket event of the nodes, merged in causal order.
    #[arg(long)]
    pub trace: bool,
    /// Write the scenario as an SVG sequence diagram to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "interactive")]
    pub svg: Option<String>,
    /// With --svg, draw only step N (0 is the setup, 2 the GET miss).
    #[arg(long, value_name = "N", requires = "svg")]
    pub step: Option<usize>,
}

/// `tablecache trace-view`.
#[derive(Debug, Args)]
pub struct TraceViewArgs {
    /// Write the SVG here instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<String>,
    /// Draw only step N of a demo's output (0 is the setup).
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// The diagram's title.
    #[arg(long, default_value = "tablecache trace")]
    pub title: String,
    /// Only check the order: print every read that came before the write
    /// that sent its bytes, exit 1 if there is one.
    #[arg(long)]
    pub check: bool,
}

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

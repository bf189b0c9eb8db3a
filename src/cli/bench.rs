//! The flags of `tablecache bench` (and `bench plot`), their bounds, and
//! their conversion into a [`BenchConfig`].

use super::*;

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
        if self.requests.is_some() && self.warmup.is_some_and(|w| !w.is_zero()) {
            return Err("-n measures every request it sends: it takes no --warmup".into());
        }
        if !(0.0..=1.0).contains(&self.max_error_rate) {
            return Err("--max-error-rate is a share of the requests, from 0 to 1".into());
        }
        // A connection is a descriptor: more than the process may open
        // would fail half-way (and a slab that size would not fit).
        let fds = crate::frontend::fds::open_file_limit().unwrap_or(1 << 20);
        if self.connections > fds.saturating_sub(16) {
            return Err(format!(
                "-c {} is more connections than this process may open ({fds} descriptors: `ulimit -n`)",
                self.connections
            ));
        }
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

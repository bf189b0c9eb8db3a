//! The flags of the nodes, `server` and `proxy`, and their conversion
//! into each node's settings.

use super::*;

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
    /// Misses of one loop pass go to the server as one GET, up to this many
    /// bytes of indices (0: one GET per miss). Keep it under the server's
    /// --max-message-bytes.
    #[arg(long, value_name = "N", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    pub upstream_batch_bytes: u64,
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
            upstream_batch_bytes: self.upstream_batch_bytes as usize,
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

/// Milliseconds, fractions allowed (`0.1`), up to a day.
fn millis(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(ms) if (0.0..=DAY_MS as f64).contains(&ms) => Ok(Duration::from_secs_f64(ms / 1000.0)),
        _ => Err(format!("{s}: milliseconds from 0 to a day (0.1 is 100 us)")),
    }
}

/// `tablecache link`.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Where clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
    /// Where each connection is passed on (a server or a proxy).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub upstream: SocketAddr,
    /// Where the control connection listens (docs/protocol.md): change
    /// delays and faults at run time. None without it.
    #[arg(long, value_name = "ADDR")]
    pub control: Option<SocketAddr>,
    /// One-way delay added to every byte, in milliseconds (0.1 is 100
    /// us): one value for both directions, or UP,DOWN (UP: client to
    /// upstream). A round trip through the link takes both.
    #[arg(long, value_name = "MS[,MS]", value_delimiter = ',', num_args = 1..=2, default_value = "0",
          value_parser = millis)]
    pub delay_ms: Vec<Duration>,
    /// Up to this much more, at random; bytes of one direction are never
    /// reordered (one value, or UP,DOWN).
    #[arg(long, value_name = "MS[,MS]", value_delimiter = ',', num_args = 1..=2, default_value = "0",
          value_parser = millis)]
    pub jitter_ms: Vec<Duration>,
    /// Bytes per second each way, 0 for no limit (one value, or UP,DOWN).
    #[arg(long, value_name = "BPS[,BPS]", value_delimiter = ',', num_args = 1..=2, default_value = "0")]
    pub bandwidth: Vec<u64>,
    /// Bytes held per direction of a connection at most; a full direction
    /// stops reading its sender.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=64 << 20))]
    pub buffer_bytes: u64,
    /// Connections through the link at once; more are closed at accept.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seeds the jitter (the same seed, the same spread).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Logging.
    #[command(flatten)]
    pub log: LogArgs,
}

impl LinkArgs {
    /// The link's settings.
    pub fn config(&self) -> crate::link::LinkConfig {
        use crate::link::pipe::Shape;
        fn pick<T: Copy + Default>(v: &[T], d: usize) -> T {
            v.get(d).or(v.first()).copied().unwrap_or_default()
        }
        let shape = |d: usize| Shape {
            delay: pick(&self.delay_ms, d),
            jitter: pick(&self.jitter_ms, d),
            bandwidth: pick(&self.bandwidth, d),
            ..Shape::default()
        };
        crate::link::LinkConfig {
            listen: self.listen,
            upstream: self.upstream,
            control: self.control,
            shapes: [shape(0), shape(1)],
            buffer_bytes: self.buffer_bytes as usize,
            max_connections: self.max_connections as usize,
            seed: self.seed,
        }
    }
}

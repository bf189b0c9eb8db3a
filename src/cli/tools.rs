//! The flags of the tools: `client`, `sim`, `demo` and `trace-view`.

use super::*;

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
    /// The node name on this client's trace lines: give clients that run
    /// at the same time names of their own (`client-a`, `client-b`), so
    /// their merged traces keep them apart.
    #[arg(long, value_name = "NAME", default_value = "client", value_parser = node_name)]
    pub name: String,
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

/// A trace line's node name: letters, digits, `-` and `_`, as
/// `trace-view` reads them back.
fn node_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("a name is 1 to 32 letters, digits, '-' or '_'".into())
    }
}

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
    /// Write the scenario as a page that plays it event by event (every
    /// socket's state and buffers, the tables) to FILE: open it in a
    /// browser; `#event=N` in its URL opens it at event N.
    #[arg(long, value_name = "FILE", conflicts_with = "interactive")]
    pub html: Option<String>,
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
    /// Write the step-through player (one HTML page) instead of the SVG.
    #[arg(long, conflicts_with_all = ["step", "check"])]
    pub html: bool,
}

/// `tablecache soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Operations, all clients together.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ops: u64,
    /// Seeds the clients' operations and the fault schedule.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Proxies, each behind its own link to the server.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=16))]
    pub proxies: u64,
    /// Client threads (one in four talks to the server directly).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub clients: u64,
    /// Faults over the run [default: one per 200 operations].
    #[arg(long, value_name = "N")]
    pub faults: Option<u64>,
    /// Entries in the table.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub size: u64,
    /// Where the data, the logs and the history go [default:
    /// target/soak-SEED].
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// The checker's budget of moves; a history it cannot decide within
    /// it fails the soak.
    #[arg(long, value_name = "N", default_value_t = 2_000_000_000)]
    pub budget: u64,
}

/// `tablecache check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A history: JSON lines, one operation each (docs/testing.md).
    pub history: std::path::PathBuf,
    /// Entries in the table the history ran on.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub size: u64,
    /// The checker's budget of moves.
    #[arg(long, value_name = "N", default_value_t = 2_000_000_000)]
    pub budget: u64,
}

//! `tablecache soak`: a long run under faults, every operation recorded
//! and the history checked (docs/testing.md, "Soak").
//!
//! ```text
//!   clients ──> proxy 0 ──> link 0 ──┐
//!   clients ──> proxy 1 ──> link 1 ──┼──> server (--data-dir, kill -9 and restarted)
//!   clients ──> proxy 2 ──> link 2 ──┤
//!   clients ─────────────────────────┘   (direct)
//! ```
//!
//! Faults come one at a time from the seed's schedule, spread over the
//! run: the server killed (-9) and restarted on its data, a proxy frozen
//! (SIGSTOP) and thawed, a link blackholed (a partition) or cut one way,
//! its delay raised, its connections reset. Then everything heals, one
//! last read of the whole table goes to the server, and the history is
//! checked: linearizable over the whole table, each connection in order
//! ([`crate::check::linear`]), and no acknowledged write lost
//! ([`crate::check::lost`]).

pub mod client;
pub mod nodes;

use crate::check::{linear, lost, Op, Outcome, Record};
use client::{Rng, Shared};
use nodes::{control, Proc, CONT, STOP};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a soak is asked for.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Operations, all clients together.
    pub ops: u64,
    /// Seeds the clients and the fault schedule.
    pub seed: u64,
    /// Proxies (each behind its own link).
    pub proxies: usize,
    /// Client threads (one in four talks to the server directly).
    pub clients: usize,
    /// Faults to inject over the run.
    pub faults: u64,
    /// Entries in the table.
    pub size: usize,
    /// Where the data, logs and the history go.
    pub out: PathBuf,
    /// The checker's budget of moves.
    pub budget: u64,
}

/// The kinds of fault, in the schedule's draw.
const KINDS: &[&str] = &[
    "kill-server",
    "freeze-proxy",
    "partition",
    "one-way-drop",
    "delay-spike",
    "reset",
];

/// What the run did and what the check found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Operations recorded, by outcome.
    pub ok: u64,
    /// Answered with an error.
    pub errors: u64,
    /// Never answered.
    pub unknown: u64,
    /// Faults done, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// The check's verdict.
    pub verdict: Option<linear::Verdict>,
    /// Moves the check took.
    pub steps: u64,
    /// Reads that missed an acknowledged write.
    pub lost: usize,
    /// Wall time of the run and of the check.
    pub run: Duration,
    /// Wall time of the check.
    pub check: Duration,
}

struct System {
    server: Proc,
    server_listen: String,
    links: Vec<Proc>,
    proxies: Vec<Proc>,
    data: PathBuf,
    logs: PathBuf,
    size: usize,
}

impl System {
    fn start(opts: &SoakOptions) -> io::Result<System> {
        let (data, logs) = nodes::folder(&opts.out)?;
        let server = Proc::start(
            &nodes::server_args("127.0.0.1:0", &data, opts.size),
            &logs.join("server.log"),
        )?;
        let server_listen = server.addr.to_string();
        let mut links = Vec::new();
        let mut proxies = Vec::new();
        for p in 0..opts.proxies {
            let link = Proc::start(
                &args(&[
                    "link",
                    "--listen",
                    "127.0.0.1:0",
                    "--upstream",
                    &server_listen,
                    "--control",
                    "127.0.0.1:0",
                    "--log-level",
                    "warn",
                ]),
                &logs.join(format!("link{p}.log")),
            )?;
            let proxy = Proc::start(
                &args(&[
                    "proxy",
                    "--listen",
                    "127.0.0.1:0",
                    "--upstream",
                    &link.addr.to_string(),
                    "--log-level",
                    "warn",
                ]),
                &logs.join(format!("proxy{p}.log")),
            )?;
            links.push(link);
            proxies.push(proxy);
        }
        Ok(System {
            server,
            server_listen,
            links,
            proxies,
            data,
            logs,
            size: opts.size,
        })
    }

    /// Where client `c` sends: one in four to the server, the rest to
    /// the proxies in turn.
    fn target(&self, c: usize) -> SocketAddr {
        if self.proxies.is_empty() || c % 4 == 3 {
            self.server.addr
        } else {
            self.proxies[c % self.proxies.len()].addr
        }
    }

    /// One fault, held for `hold`, then healed.
    fn fault(&mut self, kind: &str, pick: usize, hold: Duration) -> io::Result<()> {
        let link = |s: &Self| {
            s.links[pick % s.links.len()]
                .control
                .ok_or_else(|| io::Error::other("no control"))
        };
        match kind {
            "kill-server" => {
                self.server.kill9();
                std::thread::sleep(hold);
                let log = self.logs.join("server.log");
                self.server = Proc::start(&nodes::server_args(&self.server_listen, &self.data, self.size), &log)?;
            }
            "freeze-proxy" => {
                let pid = self.proxies[pick % self.proxies.len()].pid();
                nodes::signal(pid, STOP)?;
                std::thread::sleep(hold);
                nodes::signal(pid, CONT)?;
            }
            "partition" | "one-way-drop" | "delay-spike" => {
                let c = link(self)?;
                let cut = match kind {
                    "partition" => "OP=FAULT;KIND=HOLD;DIR=BOTH",
                    "one-way-drop" if pick.is_multiple_of(2) => "OP=FAULT;KIND=DROP;DIR=UP",
                    "one-way-drop" => "OP=FAULT;KIND=DROP;DIR=DOWN",
                    _ => "OP=SET;DIR=BOTH;DELAY_MS=40;JITTER_MS=20",
                };
                control(c, cut)?;
                std::thread::sleep(hold);
                let heal = if kind == "delay-spike" {
                    "OP=SET;DIR=BOTH;DELAY_MS=0;JITTER_MS=0"
                } else {
                    "OP=FAULT;KIND=NONE;DIR=BOTH"
                };
                control(c, heal)?;
            }
            _ => {
                control(link(self)?, "OP=FAULT;KIND=RESET")?;
            }
        }
        Ok(())
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs the soak; prints what it does to stdout and returns the summary.
pub fn run(opts: &SoakOptions) -> io::Result<Summary> {
    let started = Instant::now();
    let mut sys = System::start(opts)?;
    crate::outln!(
        "soak: {} operations, seed {}, {} clients, {} proxies behind links, server {} (data in {})",
        opts.ops,
        opts.seed,
        opts.clients,
        opts.proxies,
        sys.server.addr,
        sys.data.display()
    );
    let shared = Arc::new(Shared {
        base: Instant::now(),
        left: AtomicI64::new(opts.ops as i64),
        answered: AtomicU64::new(0),
        next_conn: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let threads: Vec<_> = (0..opts.clients)
        .map(|c| {
            let (target, shared) = (sys.target(c), shared.clone());
            let seed = opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((c as u64 + 1) * 7919);
            let depth = 1 + c % 3;
            let size = opts.size;
            std::thread::spawn(move || client::run(c as u64, target, seed, depth, size, &shared))
        })
        .collect();
    // Faults: one at a time, spread evenly over the operations answered.
    let mut rng = Rng(opts.seed ^ 0xFA17);
    let mut summary = Summary::default();
    let every = (opts.ops / opts.faults.max(1)).max(1);
    let mut done = 0u64;
    while done < opts.faults && shared.left.load(Ordering::Relaxed) > 0 {
        if shared.answered.load(Ordering::Relaxed) < (done + 1) * every * 3 / 5 {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        }
        let mut kind = KINDS[rng.below(KINDS.len() as u64) as usize];
        if sys.proxies.is_empty() && kind != "kill-server" {
            kind = "kill-server";
        }
        let hold = Duration::from_millis(10 + rng.below(150));
        let pick = rng.below(64) as usize;
        if let Err(e) = sys.fault(kind, pick, hold) {
            shared.abort.store(true, Ordering::Relaxed);
            return Err(io::Error::other(format!("fault {kind}: {e}")));
        }
        *summary.faults.entry(kind).or_default() += 1;
        done += 1;
    }
    let mut history: Vec<Record> = threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect();
    // Healed: one last read of everything, straight from the server.
    history.push(final_read(&sys, &shared)?);
    summary.run = started.elapsed();
    write_history(&opts.out, &history)?;
    for r in &history {
        match r.outcome {
            Outcome::Ok(_) => summary.ok += 1,
            Outcome::Error => summary.errors += 1,
            Outcome::Unknown => summary.unknown += 1,
        }
    }
    let t = Instant::now();
    let report = linear::check(&history, opts.size, opts.budget);
    summary.steps = report.steps;
    summary.lost = lost::lost_writes(&history).len();
    summary.check = t.elapsed();
    if let linear::Verdict::Violation { stuck, window } = &report.verdict {
        crate::outln!("NOT LINEARIZABLE: no order places {}", history[*stuck].describe());
        for &i in window {
            crate::outln!("  {}", history[i].describe());
        }
    }
    for (r, w) in lost::lost_writes(&history).into_iter().take(10) {
        crate::outln!("LOST: {} missed {}", history[r].describe(), history[w].describe());
    }
    summary.verdict = Some(report.verdict);
    drop(sys);
    Ok(summary)
}

/// Reads the whole table from the server directly, retrying while it
/// restarts; recorded as the history's last operation.
fn final_read(sys: &System, shared: &Shared) -> io::Result<Record> {
    use std::io::{BufRead, BufReader};
    let ind: Vec<usize> = (0..sys.size).collect();
    let list = ind.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let call = shared.base.elapsed().as_micros() as u64;
        let attempt = (|| -> io::Result<String> {
            let mut s = std::net::TcpStream::connect_timeout(&sys.server.addr, Duration::from_secs(2))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(format!("OP=GET;IND={list}\n").as_bytes())?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
            Ok(line)
        })();
        if let Ok(line) = attempt {
            let vals: Option<Vec<i64>> = line
                .trim()
                .split(';')
                .find_map(|f| f.strip_prefix("DATA="))
                .and_then(|d| d.split(',').map(|v| v.parse().ok()).collect());
            if let (Some(vals), true) = (vals, line.contains("CODE=200")) {
                return Ok(Record {
                    client: u64::MAX,
                    conn: shared.next_conn.fetch_add(1, Ordering::Relaxed),
                    seq: 0,
                    op: Op::Get(ind),
                    call,
                    ret: Some(shared.base.elapsed().as_micros() as u64),
                    outcome: Outcome::Ok(vals),
                });
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("the server did not answer the final read"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_history(out: &std::path::Path, h: &[Record]) -> io::Result<()> {
    let mut f = io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    for r in h {
        writeln!(f, "{}", r.to_json())?;
    }
    f.flush()
}

impl Summary {
    /// The report a person reads (and docs/testing.md records).
    pub fn render(&self, opts: &SoakOptions) -> String {
        let faults: u64 = self.faults.values().sum();
        let kinds = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = match &self.verdict {
            Some(linear::Verdict::Linearizable) => "linearizable: 0 violations".to_string(),
            Some(linear::Verdict::Violation { .. }) => "NOT linearizable: 1 violation (shown above)".to_string(),
            Some(linear::Verdict::Undecided) => "UNDECIDED within the checker's budget (not a pass)".to_string(),
            None => "not checked".to_string(),
        };
        format!(
            "ops {} (ok {}, error {}, unknown {}), seed {}, proxies {}\nfaults {faults}: {kinds}\n{verdict}; lost acknowledged writes {}\nrun {:.1} s, check {:.1} s ({} moves)\nhistory: {}",
            self.ok + self.errors + self.unknown,
            self.ok,
            self.errors,
            self.unknown,
            opts.seed,
            opts.proxies,
            self.lost,
            self.run.as_secs_f64(),
            self.check.as_secs_f64(),
            self.steps,
            opts.out.join("history.jsonl").display()
        )
    }

    /// True when the run passed: linearizable, nothing lost.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.verdict == Some(linear::Verdict::Linearizable)
    }
}

//! What the demo shows, and how it waits: the nodes' trace events
//! collected from every thread (`Collector`), printed at the end of each
//! step merged in causal order with a hop line per message (`Show`), and
//! waits for an event rather than for time (`await_event`).

use super::{BOOKKEEPING, PATIENCE};
use crate::client::Client;
use crate::trace::diagram::{Lane, Pairs, Step};
use crate::trace::line::Event;
use crate::trace::merge::Merger;
use std::collections::HashSet;
use std::io;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Trace events as the nodes log them, from every thread.
pub(super) static LOGGED: Mutex<Vec<Event>> = Mutex::new(Vec::new());
pub(super) static ARRIVED: Condvar = Condvar::new();

/// Collects the nodes' trace events; other records at warn or worse go
/// to stderr.
pub(super) struct Collector;

impl log::Log for Collector {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.target() == crate::trace::TARGET || meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if record.target() != crate::trace::TARGET {
            if record.level() <= log::Level::Warn {
                eprintln!("{} {}", record.level(), record.args());
            }
            return;
        }
        if let Some(e) = Event::parse(&record.args().to_string()) {
            if let Ok(mut v) = LOGGED.lock() {
                v.push(e);
                ARRIVED.notify_all();
            }
        }
    }

    fn flush(&self) {}
}

/// The events printed so far, what is left out, and how it prints.
pub(super) struct Show {
    pub(super) trace: bool,
    /// Clock origin for printed times (the demo's start).
    pub(super) origin: u64,
    /// Every event shown, in order, with the steps (for `--svg`).
    pub(super) shown: Vec<Event>,
    pub(super) steps: Vec<Step>,
    pub(super) pairs: Pairs,
    pub(super) merger: Merger,
    /// The bookkeeping connections (their local and peer addresses), and
    /// the lanes that are their other ends.
    pub(super) quiet_addrs: HashSet<(String, String)>,
    pub(super) quiet: HashSet<Lane>,
}

impl Show {
    /// Starts a titled step (its events follow).
    pub(super) fn step(&mut self, title: &str) {
        crate::outln!("\n== {title}");
        self.steps.push(Step {
            first: self.shown.len(),
            title: title.to_string(),
            notes: Vec::new(),
        });
    }

    /// Takes every event logged so far and prints it in stamp order:
    /// the trace line with `--trace`, and a hop line for each message
    /// (nothing with `print` false: the interactive demo's setup).
    pub(super) fn flush(&mut self, print: bool) {
        let mut batch = match LOGGED.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(_) => return,
        };
        // Stable: one thread's events with equal stamps keep their order.
        batch.sort_by_key(|e| e.at);
        let mut mine = Vec::with_capacity(batch.len());
        for e in batch {
            // The connection is known by both its addresses: the kernel
            // reuses a local port for connections to other places.
            let ends = e.detail.strip_prefix("local ").and_then(|d| d.split_once(", peer "));
            if e.event == "ACCEPT"
                && ends.is_some_and(|(b, a)| self.quiet_addrs.contains(&(a.to_string(), b.to_string())))
            {
                self.quiet.insert((e.node.clone(), e.conn.clone()));
            }
            if e.node != BOOKKEEPING && !self.quiet.contains(&(e.node.clone(), e.conn.clone())) {
                mine.push(e);
            }
        }
        // The clients and the bookkeeping are the demo's main thread.
        let thread = |node: &str| match node {
            "client" | "client2" | BOOKKEEPING => "main".to_string(),
            n => n.to_string(),
        };
        for e in self.merger.merge(mine, thread) {
            self.pairs.observe(&e);
            if !print {
                continue;
            }
            if self.trace {
                crate::outln!("      {}", e.display_from(self.origin));
            }
            let from = || {
                let me = (e.node.clone(), e.conn.clone());
                self.pairs.peer(&me).map_or("?".to_string(), |p| p.0.clone())
            };
            match e.event.as_str() {
                "DECODED" => crate::outln!("    {:<7} -> {:<7} {}", from(), e.node, e.message()),
                "PEER_FIN" => crate::outln!("    {:<7} -> {:<7} FIN (read returned 0)", from(), e.node),
                "EVICT" | "INVALIDATE" if !self.trace => crate::outln!("    ({} {})", e.node, e.detail),
                "FSYNC" if !self.trace => {
                    crate::outln!("    ({} log: the write is on disk before its reply leaves)", e.node)
                }
                _ => {}
            }
            self.shown.push(e);
        }
    }

    /// Prints a note of the current step (the tables).
    pub(super) fn note(&mut self, line: String) {
        crate::outln!("    {line}");
        if let Some(s) = self.steps.last_mut() {
            s.notes.push(line);
        }
    }
}

/// Waits until a logged event (not yet printed) matches `want`.
pub(super) fn await_event(what: &str, want: impl Fn(&Event) -> bool) -> io::Result<()> {
    let deadline = Instant::now() + PATIENCE;
    let mut v = LOGGED.lock().map_err(|_| io::Error::other("trace lock poisoned"))?;
    loop {
        if v.iter().any(&want) {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the demo waited for {what}"),
            ));
        }
        v = ARRIVED
            .wait_timeout(v, left)
            .map_err(|_| io::Error::other("trace lock poisoned"))?
            .0;
    }
}

/// Waits until `node`'s upstream has decoded the server's lease.
pub(super) fn await_lease(node: &'static str) -> io::Result<()> {
    await_event("a lease", |e| {
        e.node == node && e.conn == "U" && e.event == "DECODED" && e.detail.starts_with("OP=LEASE")
    })
}

/// Waits until `node` has accepted the connection from `c`.
pub(super) fn await_accept(node: &'static str, c: &Client) -> io::Result<()> {
    let from = c.local_addr()?.to_string();
    await_event("an accept", |e| {
        e.node == node && e.event == "ACCEPT" && e.detail.rsplit(' ').next() == Some(from.as_str())
    })
}

//! The `--trace` event stream: one line per socket event, in one format on
//! every node and in the demo, stamped from one system-wide clock.
//!
//! ```text
//!    4410223.571 proxy   0   READABLE       read=15 then WouldBlock
//! ```
//!
//! Columns: time (microseconds, with nanoseconds, on `CLOCK_MONOTONIC`,
//! the clock every process on the host shares), node, connection
//! (`L` listener, `U` the proxy's upstream, `D` an upstream connection
//! being drained, `C` the client's one connection, a number for a slab
//! key), event, detail. docs/socket-states.md lists the events.
//!
//! **Causal order by construction.** A write's stamp is taken *before*
//! its `write(2)` is issued ([`trace_event_at!`] with [`now`] read ahead),
//! a read's *after* its `read(2)` returned, so the write that delivered
//! bytes always stamps earlier than the read that received them, whatever
//! thread or process logs first. Sorting lines by their first column
//! therefore gives an order in which every effect follows its cause: the
//! demo merges its three nodes' events that way, and traces of separate
//! processes merge with `sort -n` (docs/socket-states.md).
//!
//! [`line`] parses and prints a line, [`diagram`] pairs the sockets and
//! matches reads to writes, [`merge`] puts a trace in one causal order,
//! [`svg`] draws it.

pub mod diagram;
pub mod emitters;
pub mod html;
pub mod lanes;
pub mod line;
pub mod merge;
pub mod place;
pub mod replay;
pub mod svg;

use std::io::Write;

/// Log target of the trace events.
pub const TARGET: &str = "tablecache::trace";

/// Nanoseconds on `CLOCK_MONOTONIC`: system-wide, so lines of separate
/// processes on one host compare.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn now() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_MONOTONIC: i32 = 1;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on
    // 64-bit Linux), and CLOCK_MONOTONIC always exists, so the call only
    // writes `ts`. std's `Instant` reads the same clock but does not
    // expose its value, and the value is what lets processes merge.
    let r = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
    if r != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds since the process started (elsewhere: lines of one process
/// still order causally; separate processes do not merge).
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn now() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// [`now`] when tracing is on, else 0 (no clock read on the fast path).
#[inline]
pub fn stamp() -> u64 {
    if enabled() {
        now()
    } else {
        0
    }
}

/// True when trace events are being logged (checked before formatting, so
/// tracing costs one branch per event when off).
#[inline]
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Trace)
}

/// Logs one trace event stamped now: `trace_event!(node, token, "EVENT",
/// "fmt", args..)`. For a write, read the clock before the syscall and use
/// [`trace_event_at!`].
#[macro_export]
macro_rules! trace_event {
    ($node:expr, $tok:expr, $event:expr) => {
        $crate::trace_event!($node, $tok, $event, "")
    };
    ($node:expr, $tok:expr, $event:expr, $($arg:tt)+) => {
        if $crate::trace::enabled() {
            $crate::trace_event_at!($crate::trace::now(), $node, $tok, $event, $($arg)+)
        }
    };
}

/// Logs one trace event with the stamp `at` (from [`now`]).
#[macro_export]
macro_rules! trace_event_at {
    ($at:expr, $node:expr, $tok:expr, $event:expr, $($arg:tt)+) => {
        if $crate::trace::enabled() {
            log::trace!(
                target: $crate::trace::TARGET,
                "{}",
                $crate::trace::line::Line {
                    at: $at,
                    node: $node,
                    conn: $crate::trace::TokenName($tok),
                    event: $event,
                    detail: format_args!($($arg)+),
                }
            );
        }
    };
}

/// Displays a token the way the docs name them: slab keys as numbers, the
/// reserved tokens by name.
pub struct TokenName(pub mio::Token);

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::reactor::{
            CLIENT, CONTROL_LISTENER, DISK, DRAINING, LINK_CONTROL, LINK_UPSTREAM, LISTENER, SIGNALS, UPSTREAM, WAKER,
        };
        let name = match self.0 {
            CONTROL_LISTENER => "KL",
            LISTENER => "L",
            UPSTREAM => "U",
            CLIENT => "C",
            DRAINING => "D",
            WAKER => "W",
            SIGNALS => "S",
            DISK => "F",
            mio::Token(n) if (LINK_UPSTREAM..usize::MAX - 64).contains(&n) => {
                return f.pad(&format!("U{}", n - LINK_UPSTREAM))
            }
            mio::Token(n) if (LINK_CONTROL..LINK_UPSTREAM).contains(&n) => {
                return f.pad(&format!("K{}", n - LINK_CONTROL))
            }
            mio::Token(n) => return f.pad(&n.to_string()),
        };
        f.pad(name)
    }
}

/// A node's logger: trace events go to stderr as bare lines (the one
/// format, so they line up and merge); everything else goes through
/// `simple_logger`'s formatting.
struct NodeLogger {
    inner: simple_logger::SimpleLogger,
}

impl log::Log for NodeLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        self.inner.enabled(meta)
    }

    fn log(&self, record: &log::Record) {
        if record.target() == TARGET {
            if self.enabled(record.metadata()) {
                let _ = writeln!(std::io::stderr().lock(), "{}", record.args());
            }
        } else {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// The entries of a table or cache as `index:value` cells for a debug
/// log line, when there are at most 32 of them (`len`); `None` for more,
/// so a log line's cost never depends on the table's size (the seed's
/// programs print the whole table on every change).
pub fn small_cells(len: usize, cells: impl Iterator<Item = (i64, i64)>) -> Option<String> {
    (len <= 32).then(|| cells.map(|(i, v)| format!("{i}:{v}")).collect::<Vec<_>>().join(" "))
}

/// Sets up logging to stderr at `level` (`trace` turns on the event
/// stream). Safe to call more than once: later calls are ignored.
pub fn init_logging(level: log::LevelFilter) {
    let inner = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .with_module_level("tablecache", level);
    let max = inner.max_level();
    if log::set_boxed_logger(Box::new(NodeLogger { inner })).is_ok() {
        log::set_max_level(max);
    }
}

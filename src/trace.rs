//! The `--trace` event stream and logger setup.
//!
//! Every socket event a student cares about is logged by the `trace_event!`
//! macro at `trace` level under the target `tablecache::trace`, in one
//! stable format (docs/socket-states.md lists the event names):
//!
//! ```text
//! TRACE [tablecache::trace]       1234us proxy    tok=0     127.0.0.1:40122  READABLE read=14
//! ```
//!
//! The timestamp is microseconds on a monotonic clock since the process
//! started, taken when the line is logged (after the syscall), so lines
//! from the three nodes of `tablecache demo` share one clock; two nodes'
//! lines a few microseconds apart can come out in either order.

use std::sync::OnceLock;
use std::time::Instant;

/// Log target of the trace events.
pub const TARGET: &str = "tablecache::trace";

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the process started (monotonic).
pub fn micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Microseconds from process start to `t`.
pub fn micros_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_micros() as u64
}

/// True when trace events are being logged (checked before formatting, so
/// tracing costs one branch per event when off).
#[inline]
pub fn enabled() -> bool {
    log::log_enabled!(target: TARGET, log::Level::Trace)
}

/// Logs one trace event: `trace_event!(role, token, peer, "EVENT", "fmt", args..)`.
#[macro_export]
macro_rules! trace_event {
    ($role:expr, $tok:expr, $peer:expr, $event:expr) => {
        $crate::trace_event!($role, $tok, $peer, $event, "")
    };
    ($role:expr, $tok:expr, $peer:expr, $event:expr, $($arg:tt)+) => {
        if $crate::trace::enabled() {
            log::trace!(
                target: $crate::trace::TARGET,
                "{:>10}us {:<8} tok={:<5} {:<21} {} {}",
                $crate::trace::micros(),
                $role,
                $crate::trace::TokenName($tok),
                $crate::trace::PeerName(&$peer),
                $event,
                format_args!($($arg)+)
            );
        }
    };
}

/// Displays a token the way the docs name them: slab keys as numbers, the
/// reserved tokens by name.
pub struct TokenName(pub mio::Token);

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::reactor::{CLIENT, DRAINING, LISTENER, SIGNALS, UPSTREAM, WAKER};
        let name = match self.0 {
            LISTENER => "L",
            UPSTREAM => "U",
            CLIENT => "C",
            DRAINING => "D",
            WAKER => "W",
            SIGNALS => "S",
            mio::Token(n) => return f.pad(&n.to_string()),
        };
        f.pad(name)
    }
}

/// Displays an optional peer address (`-` when there is none yet).
pub struct PeerName<'a>(pub &'a Option<std::net::SocketAddr>);

impl std::fmt::Display for PeerName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => f.pad(&a.to_string()),
            None => f.pad("-"),
        }
    }
}

/// Sets up logging to stderr at `level` (`trace` turns on the event
/// stream). Safe to call more than once: later calls are ignored.
pub fn init_logging(level: log::LevelFilter) {
    let _ = epoch();
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn)
        .with_module_level("tablecache", level)
        .init();
}

//! tablecache: a table server, a caching proxy and a client that speak a
//! small text protocol over TCP (`OP=GET;IND=1,2`), each node a hand-written
//! nonblocking reactor on `mio`.
//!
//! # Layout
//!
//! Pure code, no I/O:
//! - [`framing`]: where a message ends (line, bare, detect), byte by byte.
//! - [`proto`]: one message: parsing and encoding requests and replies.
//! - [`table`]: the server's table and what each operation does to it.
//! - [`peer`]: the peer secret: who may hold a lease.
//! - [`cache`]: the proxy's cache and its eviction policy (FIFO).
//! - [`buffer`]: the byte buffer behind every connection.
//! - [`store`]: the durable table's files (`record`: the formats, pure)
//!   and recovery.
//!
//! The reactor pieces:
//! - [`reactor`]: the poll loop, reserved tokens, timers, stop handle,
//!   signals.
//! - [`conn`]: one connection's state machine and buffers, and the one
//!   I/O path per verb: connect, read pass, flush, bare pause timer.
//! - [`frontend`]: the listening side shared by server and proxy (accept,
//!   limits, the read → message → reply pump, backpressure, idle
//!   timeouts, graceful stop) and the [`frontend::Service`] trait.
//!
//! The nodes:
//! - [`server`]: the table server.
//! - [`proxy`]: the caching proxy, in rooms: `service` (handlers),
//!   `decide` (hit or fetch), `pending` (reply slots, requests in flight),
//!   `reads` (reads waiting on fetches; coalescing), `upstream` (the
//!   server connection), `stats` (STS, DMP).
//! - [`client`]: the command-line client.
//! - [`bench`](mod@bench): the load generator and latency meter.
//! - [`demo`]: all three nodes in one process, playing a scenario.
//!
//! And [`cli`] for argument parsing, [`trace`] for the `--trace` stream
//! (its lines, their causal merge and the SVG sequence diagram),
//! [`out`](mod@out) for writing to stdout like a Unix tool (a closed pipe ends quietly).
//! docs/architecture.md draws how they fit together and follows a GET miss
//! through them, file by file.
#![deny(missing_docs)]

pub mod bench;
pub mod buffer;
pub mod cache;
pub mod check;
pub mod cli;
pub mod client;
pub mod conn;
pub mod demo;
pub mod framing;
pub mod frontend;
pub mod link;
pub mod out;
pub mod peer;
pub mod proto;
pub mod proxy;
pub mod reactor;
pub mod server;
pub mod sim;
pub mod soak;
pub mod store;
pub mod table;
pub mod trace;
pub mod units;

pub use reactor::NodeHandle;

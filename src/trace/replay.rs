//! A trace replayed event by event: each socket's state and the bytes in
//! its input and output buffers, and each node's table or cache, as of
//! every event. What the demo's player shows; pure code.
//!
//! Everything comes from the trace lines themselves (docs/socket-states.md,
//! "Buffers in the trace"):
//!
//! | line | input buffer | output buffer |
//! |---|---|---|
//! | `READABLE read=N` | + N | |
//! | `READABLE read=N dropped` | 0 (read and dropped) | |
//! | `DECODED ... (N bytes)` | − N (the frame, terminator included) | |
//! | `QUEUED`/`SEND ... N bytes to write` | | = N |
//! | `WRITABLE wrote=N left=M` | | = M |
//! | `CLOSE` | 0 | 0 |
//!
//! States are those of docs/socket-states.md, from `LISTEN`, `ACCEPT`,
//! `CONNECT_START`, `STATE Old -> New`, `CONNECT_FAILED` and `CLOSE`.
//! Tables are the last `TABLE` (server) or `CACHE` (proxy) line of each
//! node.

use super::diagram::{lane, Diagram, Lane};
use super::line::Event;
use std::collections::HashMap;

/// The state a socket is in after `event` (`detail` for `STATE`), by the
/// names of docs/socket-states.md; `None` when the event changes none.
pub fn state_after(event: &str, detail: &str) -> Option<String> {
    match event {
        "LISTEN" => Some("Listening".into()),
        "CONNECT_START" => Some("Connecting".into()),
        "ACCEPT" => Some("Open".into()),
        "CONNECT_FAILED" | "CLOSE" => Some("Closed".into()),
        "STATE" => {
            let to = detail.split_once("-> ")?.1;
            Some(to.split([' ', '(']).next()?.to_string())
        }
        _ => None,
    }
}

/// One socket as of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Socket {
    /// Its state; `None` before its first state (not created yet, or a
    /// listener between `SOCKET` and `LISTEN`, or the log file).
    pub state: Option<String>,
    /// Bytes read and not yet taken as messages.
    pub input: usize,
    /// Bytes queued and not yet written.
    pub output: usize,
}

/// The whole picture as of every event.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The lanes, in drawing order.
    pub lanes: Vec<Lane>,
    /// Per event, per lane: the socket after the event.
    pub sockets: Vec<Vec<Socket>>,
    /// Each `TABLE`/`CACHE` line: (event index, node, contents).
    pub tables: Vec<(usize, String, String)>,
}

impl Replay {
    /// Replays `d`'s events in order.
    pub fn new(d: &Diagram) -> Replay {
        let lanes = d.lanes();
        let index: HashMap<&Lane, usize> = lanes.iter().enumerate().map(|(i, l)| (l, i)).collect();
        let mut now = vec![Socket::default(); lanes.len()];
        let mut sockets = Vec::with_capacity(d.events.len());
        let mut tables = Vec::new();
        for (k, e) in d.events.iter().enumerate() {
            if let Some(&i) = index.get(&lane(e)) {
                apply(&mut now[i], e);
            }
            if matches!(e.event.as_str(), "TABLE" | "CACHE") {
                tables.push((k, e.node.clone(), e.detail.clone()));
            }
            sockets.push(now.clone());
        }
        Replay { lanes, sockets, tables }
    }
}

/// One event's effect on its socket.
fn apply(s: &mut Socket, e: &Event) {
    if let Some(state) = state_after(&e.event, &e.detail) {
        s.state = Some(state);
    }
    match e.event.as_str() {
        "READABLE" if e.detail.contains(" dropped") => s.input = 0,
        // A link reads straight into its pipe: the bytes show as the
        // other socket's output (its QUEUED line), not as input here.
        "READABLE" if e.detail.contains("(to the pipe)") => {}
        "READABLE" => s.input += e.bytes().unwrap_or(0),
        "DECODED" => s.input = s.input.saturating_sub(e.frame_bytes().unwrap_or(0)),
        "WRITABLE" => {
            if let Some(left) = e.detail.split(' ').find_map(|w| w.strip_prefix("left=")) {
                s.output = left.parse().unwrap_or(s.output);
            }
        }
        "CLOSE" => (s.input, s.output) = (0, 0),
        _ => {
            if let Some(n) = e.to_write() {
                s.output = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_come_from_the_events() {
        assert_eq!(
            state_after("STATE", "Open -> ReadClosed (peer sent FIN)").as_deref(),
            Some("ReadClosed")
        );
        assert_eq!(state_after("STATE", "ReadClosed -> Closed").as_deref(), Some("Closed"));
        assert_eq!(state_after("ACCEPT", "local x, peer y").as_deref(), Some("Open"));
        assert_eq!(state_after("CLOSE", "idle").as_deref(), Some("Closed"));
        assert_eq!(state_after("READABLE", "read=1"), None);
    }

    #[test]
    fn buffers_follow_reads_messages_queues_and_writes() {
        let text = "\
         1.000 server  L   LISTEN         listening
         2.000 proxy   U   CONNECT_START  connect() in progress (EINPROGRESS)
         3.000 server  0   ACCEPT         local 127.0.0.1:8080, peer 127.0.0.1:5000
         4.000 proxy   U   CONNECTED      local 127.0.0.1:5000, peer 127.0.0.1:8080
         5.000 proxy   U   STATE          Connecting -> Open (connect completed)
         6.000 proxy   U   SEND           GET (fetch) for client 0: 28 bytes to write
         7.000 proxy   U   WRITABLE       wrote=20 left=8 (partial write, WouldBlock)
         8.000 server  0   READABLE       read=20 then WouldBlock
         9.000 server  0   DECODED        OP=GET;IND=1 (13 bytes)
        10.000 server  0   QUEUED         reply queued, 30 bytes to write
        11.000 server  0   TABLE          0:0 1:5
        12.000 proxy   U   WRITABLE       wrote=8 left=0
        12.500 server  0   READABLE       read=9 (to the pipe) then WouldBlock
        13.000 server  0   READABLE       read=0 dropped (closing) then EOF
        14.000 server  0   CLOSE          done
";
        let d = Diagram::parse(text);
        let r = Replay::new(&d);
        let names: Vec<String> = r.lanes.iter().map(|(n, c)| format!("{n} {c}")).collect();
        assert_eq!(names, ["proxy U", "server L", "server 0"]);
        let at = |k: usize, lane: usize| {
            let s = &r.sockets[k][lane];
            (s.state.as_deref().unwrap_or("-").to_string(), s.input, s.output)
        };
        assert_eq!(at(0, 1), ("Listening".into(), 0, 0));
        assert_eq!(at(0, 0), ("-".into(), 0, 0), "not created yet");
        assert_eq!(at(1, 0), ("Connecting".into(), 0, 0));
        assert_eq!(at(5, 0), ("Open".into(), 0, 28));
        assert_eq!(at(6, 0), ("Open".into(), 0, 8), "a partial write leaves 8");
        assert_eq!(at(7, 2), ("Open".into(), 20, 0));
        assert_eq!(at(8, 2), ("Open".into(), 7, 0), "13 of 20 taken as a message");
        assert_eq!(at(9, 2), ("Open".into(), 7, 30));
        assert_eq!(at(11, 0), ("Open".into(), 0, 0));
        assert_eq!(
            at(12, 2),
            ("Open".into(), 7, 30),
            "a link's read goes to its pipe, not its input"
        );
        assert_eq!(at(13, 2), ("Open".into(), 0, 30), "dropped input");
        assert_eq!(at(14, 2), ("Closed".into(), 0, 0));
        assert_eq!(r.tables, [(10, "server".to_string(), "0:0 1:5".to_string())]);
    }
}

//! From trace events to a sequence diagram's parts: which sockets are the
//! two ends of one connection, and which write delivered the bytes each
//! read received. Pure code; [`super::svg`] draws the result.
//!
//! Ends are paired by address: a connecting socket's `CONNECTED local A,
//! peer B` and an accepted one's `ACCEPT new connection from A` are the
//! two ends of one connection. Bytes are matched by counting: the k-th
//! byte a socket reads is the k-th byte its peer wrote, so a read that
//! brings the reader's total to `n` was delivered by the earliest write
//! that brought the writer's total to `n` or more. In a trace ordered by
//! stamp (writes stamped before the syscall, reads after) that write
//! always comes first; if it does not, the trace is not causal, and
//! [`Diagram::violations`] says where.

use super::line::Event;
use std::collections::HashMap;

/// One socket: a node's connection (`proxy`, `0`).
pub type Lane = (String, String);

/// A message (or a FIN) from a write on one lane to the read on its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrow {
    /// Index of the write (or `SHUTDOWN`/`CLOSE` for a FIN) in the events.
    pub from: usize,
    /// Index of the read that received it.
    pub to: usize,
    /// The messages the read completed (`DECODED`), or `FIN`.
    pub label: String,
}

/// A titled part of a trace (a demo step), with notes shown after it (the
/// table and cache contents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Index of its first event.
    pub first: usize,
    /// What the step does.
    pub title: String,
    /// Shown beside the diagram at the step's end.
    pub notes: Vec<String>,
}

/// Events in stamp order, with their steps, ready to draw.
#[derive(Debug, Clone, Default)]
pub struct Diagram {
    /// The events, ordered by stamp.
    pub events: Vec<Event>,
    /// Steps, by first event.
    pub steps: Vec<Step>,
}

/// Which socket is at the other end of which, learned from the events.
#[derive(Debug, Default, Clone)]
pub struct Pairs {
    /// Sockets seen at one end, by the connection's (connecting side's
    /// address, accepting side's address): one TCP connection, whatever
    /// ports the kernel reuses for other destinations.
    ends: HashMap<(String, String), Lane>,
    peer: HashMap<Lane, Lane>,
}

/// The connection of a `CONNECTED` or `ACCEPT` line (`local A, peer B`),
/// as (connecting side's address, accepting side's address).
fn connection(e: &Event) -> Option<(String, String)> {
    let rest = e.detail.strip_prefix("local ")?;
    let (local, peer) = rest.split_once(", peer ")?;
    let peer = peer.split(' ').next()?;
    match e.event.as_str() {
        "CONNECTED" => Some((local.to_string(), peer.to_string())),
        "ACCEPT" => Some((peer.to_string(), local.to_string())),
        _ => None,
    }
}

pub(super) fn lane(e: &Event) -> Lane {
    (e.node.clone(), e.conn.clone())
}

impl Pairs {
    /// Learns from one event (call in stamp order).
    pub fn observe(&mut self, e: &Event) {
        let Some(key) = connection(e) else { return };
        let me = lane(e);
        match self.ends.get(&key) {
            Some(other) if *other != me => {
                let other = other.clone();
                self.peer.insert(me.clone(), other.clone());
                self.peer.insert(other, me.clone());
            }
            _ => {}
        }
        self.ends.insert(key, me);
    }

    /// The other end of `lane`, once both ends were seen.
    pub fn peer(&self, lane: &Lane) -> Option<&Lane> {
        self.peer.get(lane)
    }
}

impl Diagram {
    /// Orders `events` by stamp (stable: one thread's events with equal
    /// stamps keep their logging order).
    pub fn new(mut events: Vec<Event>, steps: Vec<Step>) -> Diagram {
        events.sort_by_key(|e| e.at);
        Diagram::ordered(events, steps)
    }

    /// Keeps `events` in the order given (the demo's causal merge), each
    /// connection on its own lane ([`super::lanes::split_reused`]).
    pub fn ordered(mut events: Vec<Event>, steps: Vec<Step>) -> Diagram {
        super::lanes::split_reused(&mut events);
        Diagram { events, steps }
    }

    /// Reads a trace: every line that parses as an event, plus the demo's
    /// narrative (`== title` starts a step; its indented `server table:`
    /// and `proxy cache ...:` lines become the step's notes).
    pub fn parse(text: &str) -> Diagram {
        let mut events = Vec::new();
        let mut steps: Vec<Step> = Vec::new();
        for line in text.lines() {
            if let Some(e) = Event::parse(line) {
                events.push(e);
            } else if let Some(title) = line.strip_prefix("== ") {
                steps.push(Step {
                    first: events.len(),
                    title: title.to_string(),
                    notes: Vec::new(),
                });
            } else if let (Some(step), t) = (steps.last_mut(), line.trim_start()) {
                if t.starts_with("server table:") || t.starts_with("proxy cache") {
                    step.notes.push(t.to_string());
                }
            }
        }
        // The demo prints each step's events already merged; a trace of
        // separate processes is merged here (steps then keep their
        // positions, which only the demo's output has).
        if events.windows(2).any(|w| w[0].at > w[1].at) {
            events.sort_by_key(|e| e.at);
        }
        Diagram::ordered(events, steps)
    }

    /// The peer pairing after all events.
    pub fn pairs(&self) -> Pairs {
        let mut p = Pairs::default();
        self.events.iter().for_each(|e| p.observe(e));
        p
    }

    /// One arrow per read that received bytes (labelled with the messages
    /// it completed) and per FIN received, plus the reads whose bytes no
    /// earlier write on the peer had sent (empty for a causal trace).
    pub fn arrows(&self) -> (Vec<Arrow>, Vec<String>) {
        let mut pairs = Pairs::default();
        // Per lane: its writes as (event index, total written after it),
        // its total read, and its last SHUTDOWN or CLOSE.
        let mut writes: HashMap<Lane, Vec<(usize, usize)>> = HashMap::new();
        let mut read: HashMap<Lane, usize> = HashMap::new();
        let mut fin: HashMap<Lane, usize> = HashMap::new();
        let mut arrows = Vec::new();
        let mut bad = Vec::new();
        for (k, e) in self.events.iter().enumerate() {
            pairs.observe(e);
            let me = lane(e);
            match (e.event.as_str(), e.bytes()) {
                ("WRITABLE", Some(n)) if n > 0 => {
                    let w = writes.entry(me).or_default();
                    let total = w.last().map_or(0, |&(_, t)| t) + n;
                    w.push((k, total));
                }
                ("SHUTDOWN" | "CLOSE", _) => {
                    fin.insert(me, k);
                }
                ("READABLE", Some(n)) => {
                    let Some(peer) = pairs.peer(&me).cloned() else {
                        continue; // a socket whose other end is not traced
                    };
                    if n > 0 {
                        let total = read.entry(me.clone()).or_default();
                        *total += n;
                        let from = writes
                            .get(&peer)
                            .and_then(|w| w.iter().find(|&&(_, t)| t >= *total))
                            .map(|&(i, _)| i);
                        // A node that does not decode (the link) passes bytes.
                        let label = match self.decoded_after(k) {
                            l if l.is_empty() => format!("{n} bytes"),
                            l => l,
                        };
                        match from {
                            Some(from) => arrows.push(Arrow { from, to: k, label }),
                            None => bad.push(format!(
                                "{} {} read {} bytes in all, but {} {} had written {} before",
                                me.0,
                                me.1,
                                total,
                                peer.0,
                                peer.1,
                                writes.get(&peer).and_then(|w| w.last()).map_or(0, |&(_, t)| t)
                            )),
                        }
                    }
                    if e.detail.ends_with("EOF") {
                        match fin.get(&peer) {
                            Some(&from) => arrows.push(Arrow {
                                from,
                                to: k,
                                label: "FIN".to_string(),
                            }),
                            None => bad.push(format!(
                                "{} {} read EOF before {} {} closed",
                                me.0, me.1, peer.0, peer.1
                            )),
                        }
                    }
                }
                _ => {}
            }
        }
        (arrows, bad)
    }

    /// Every read whose bytes were not yet written, or whose EOF was not
    /// yet sent, when it happened (empty for a causal trace).
    pub fn violations(&self) -> Vec<String> {
        self.arrows().1
    }

    /// The messages lane `k`'s socket decoded after read `k`, up to its
    /// next read.
    fn decoded_after(&self, k: usize) -> String {
        let me = (&self.events[k].node, &self.events[k].conn);
        let mut msgs = Vec::new();
        for e in &self.events[k + 1..] {
            if (&e.node, &e.conn) != me {
                continue;
            }
            match e.event.as_str() {
                "DECODED" => msgs.push(e.message()),
                "READABLE" => break,
                _ => {}
            }
        }
        msgs.join(" | ")
    }

    /// The lanes, in drawing order: laid out like the network
    /// ([`super::lanes`]).
    pub fn lanes(&self) -> Vec<Lane> {
        super::lanes::order(&self.events, &self.pairs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::trace::line::Event;

    fn ev(at: u64, node: &str, conn: &str, event: &str, detail: &str) -> Event {
        Event::new(at, node, conn, event, detail)
    }

    /// A client and a server: connect, one request, one reply, FIN both ways.
    fn exchange() -> Vec<Event> {
        vec![
            ev(1, "client", "C", "CONNECT_START", ""),
            ev(2, "server", "0", "ACCEPT", "local 127.0.0.1:8080, peer 127.0.0.1:5000"),
            ev(
                3,
                "client",
                "C",
                "CONNECTED",
                "local 127.0.0.1:5000, peer 127.0.0.1:8080",
            ),
            ev(4, "client", "C", "WRITABLE", "wrote=9 left=0"),
            ev(5, "server", "0", "READABLE", "read=9 then WouldBlock"),
            ev(6, "server", "0", "DECODED", "OP=GET;IND=1"),
            ev(7, "server", "0", "WRITABLE", "wrote=5 left=0"),
            ev(8, "server", "0", "WRITABLE", "wrote=20 left=0"),
            ev(9, "client", "C", "READABLE", "read=25 then WouldBlock"),
            ev(10, "client", "C", "DECODED", "OP=GET;IND=1;DATA=0;CODE=200"),
            ev(11, "client", "C", "SHUTDOWN", ""),
            ev(12, "server", "0", "READABLE", "read=0 then EOF"),
            ev(13, "server", "0", "CLOSE", "peer half-closed, all replies sent"),
            ev(14, "client", "C", "READABLE", "read=0 then EOF"),
        ]
    }

    #[test]
    fn the_two_ends_of_a_connection_pair_by_address() {
        let d = Diagram::new(exchange(), vec![]);
        let p = d.pairs();
        assert_eq!(
            p.peer(&("client".into(), "C".into())),
            Some(&("server".into(), "0".into()))
        );
        assert_eq!(
            p.peer(&("server".into(), "0".into())),
            Some(&("client".into(), "C".into()))
        );
        assert_eq!(p.peer(&("server".into(), "L".into())), None);
    }

    #[test]
    fn each_read_gets_an_arrow_from_the_write_that_completed_it() {
        let d = Diagram::new(exchange(), vec![]);
        let (arrows, bad) = d.arrows();
        assert_eq!(bad, Vec::<String>::new());
        let got: Vec<(usize, usize, &str)> = arrows.iter().map(|a| (a.from, a.to, a.label.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (3, 4, "OP=GET;IND=1"),
                // 25 bytes: the second write completed them.
                (7, 8, "OP=GET;IND=1;DATA=0;CODE=200"),
                (10, 11, "FIN"),
                (12, 13, "FIN"),
            ]
        );
    }

    #[test]
    fn a_read_before_its_write_is_a_violation() {
        let mut events = exchange();
        // The reply read stamped before the second write was issued.
        events[8].at = 7;
        events[7].at = 8;
        let d = Diagram::new(events, vec![]);
        let bad = d.violations();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].starts_with("client C read 25 bytes"), "{bad:?}");
        // And an EOF read before the peer's FIN.
        let mut events = exchange();
        events[13].at = 11;
        events[12].at = 13;
        events[11].at = 12;
        assert!(Diagram::new(events, vec![])
            .violations()
            .iter()
            .any(|v| v.contains("read EOF")));
    }

    #[test]
    fn lanes_put_each_client_beside_its_node() {
        let mut events = exchange();
        events.insert(0, ev(0, "server", "L", "LISTEN", "listening"));
        let d = Diagram::new(events, vec![]);
        let names: Vec<String> = d.lanes().iter().map(|(n, c)| format!("{n} {c}")).collect();
        assert_eq!(names, ["client C", "server L", "server 0"]);
    }

    #[test]
    fn the_demo_narrative_becomes_steps_with_notes() {
        let text = "\
banner line
== GET 1: a miss
       0.004 client  C   WRITABLE       wrote=13 left=0
    client  -> proxy   OP=GET;IND=1
    server table: 0:0 1:0
    proxy cache (oldest first, capacity 3): 1:0
== next
";
        let d = Diagram::parse(text);
        assert_eq!(d.events.len(), 1);
        assert_eq!(d.steps.len(), 2);
        assert_eq!(d.steps[0].title, "GET 1: a miss");
        assert_eq!(d.steps[0].first, 0);
        assert_eq!(
            d.steps[0].notes,
            ["server table: 0:0 1:0", "proxy cache (oldest first, capacity 3): 1:0"]
        );
        assert_eq!(d.steps[1].first, 1);
    }
}

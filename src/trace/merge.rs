//! One causal order for a trace, the same every run: what the demo
//! prints. Pure code.

use super::diagram::{lane, Lane, Pairs};
use super::line::Event;
use std::collections::HashMap;

/// Puts trace events in one causal order that is the same every run.
///
/// Stamp order is causal, but not unique: while one node writes, the
/// node reading it and a third may run at the same moment, and which of
/// their lines stamps first changes from run to run. The merger orders
/// the happens-before graph instead (each thread's events in program
/// order; each read after the write that delivered its bytes; an EOF
/// after the peer's FIN; an accept after the connect that caused it) and
/// breaks ties by a fixed rule: the thread that ran last goes on while it
/// can; otherwise the thread woken by the latest message goes next (as
/// if every node shared one CPU). Same graph, same lines. State carries
/// over between batches (pairs, byte counts), so a trace can be merged
/// step by step.
#[derive(Debug, Default)]
pub struct Merger {
    pairs: Pairs,
    /// Per lane: bytes written, with the global position of each write;
    /// bytes read.
    written: HashMap<Lane, Vec<(usize, usize)>>,
    read: HashMap<Lane, usize>,
    /// Per lane: position of its last SHUTDOWN/CLOSE.
    fin: HashMap<Lane, usize>,
    /// Events emitted so far.
    emitted: usize,
    /// The thread that emitted last.
    last: Option<String>,
}

impl Merger {
    /// Orders `batch` (events logged since the last call) after what was
    /// merged before. `thread` names the thread a node runs on (nodes
    /// driven by one thread must share one name).
    pub fn merge(&mut self, mut batch: Vec<Event>, thread: impl Fn(&str) -> String) -> Vec<Event> {
        batch.sort_by_key(|e| e.at);
        // The pairs this batch will reveal: a read on a socket whose peer
        // is known only later in the batch waits for it.
        let mut future = self.pairs.clone();
        batch.iter().for_each(|e| future.observe(e));
        // Connects that start in this batch: their accepts wait for them.
        let mut starting: std::collections::HashSet<Lane> =
            batch.iter().filter(|e| e.event == "CONNECT_START").map(lane).collect();
        // Program order: one queue per thread.
        let mut order: Vec<String> = Vec::new();
        let mut queues: HashMap<String, std::collections::VecDeque<Event>> = HashMap::new();
        for e in batch {
            let t = thread(&e.node);
            if !queues.contains_key(&t) {
                order.push(t.clone());
            }
            queues.entry(t).or_default().push_back(e);
        }
        let mut out = Vec::new();
        loop {
            // Each thread's next event: can it go now, and since when?
            let mut best: Option<(usize, Option<usize>)> = None; // (thread index, woken at)
            let mut any = false;
            for (ti, t) in order.iter().enumerate() {
                let Some(e) = queues.get(t).and_then(|q| q.front()) else {
                    continue;
                };
                any = true;
                let Some(woken) = self.ready(e, &future, &starting) else {
                    continue;
                };
                if self.last.as_deref() == Some(t.as_str()) {
                    best = Some((ti, Some(usize::MAX)));
                    break;
                }
                if best.is_none_or(|(_, w)| woken > w) {
                    best = Some((ti, woken));
                }
            }
            if !any {
                break;
            }
            // Nothing ready: a write the trace lacks (a socket whose peer
            // is not traced, a lost line). Go on in stamp order.
            let ti = match best {
                Some((ti, _)) => ti,
                None => (0..order.len())
                    .filter(|&i| queues.get(&order[i]).is_some_and(|q| !q.is_empty()))
                    .min_by_key(|&i| queues[&order[i]].front().map_or(u64::MAX, |e| e.at))
                    .unwrap_or(0),
            };
            let t = order[ti].clone();
            let Some(e) = queues.get_mut(&t).and_then(|q| q.pop_front()) else {
                break;
            };
            if e.event == "CONNECT_START" {
                starting.remove(&lane(&e));
            }
            self.emit(&e);
            self.last = Some(t);
            out.push(e);
        }
        out
    }

    /// `None` if `e` waits for an event not emitted yet; else the
    /// position of the latest event it waited for (`None` inside if it
    /// waits for none).
    fn ready(&self, e: &Event, future: &Pairs, starting: &std::collections::HashSet<Lane>) -> Option<Option<usize>> {
        let me = lane(e);
        match (e.event.as_str(), e.bytes()) {
            ("READABLE", Some(n)) => {
                let Some(peer) = self.pairs.peer(&me).or(future.peer(&me)) else {
                    return Some(None); // its peer is not traced
                };
                let mut woken = None;
                if n > 0 {
                    let want = self.read.get(&me).copied().unwrap_or(0) + n;
                    let w = self.written.get(peer)?.iter().find(|&&(_, t)| t >= want)?;
                    woken = Some(w.0);
                }
                if e.detail.ends_with("EOF") {
                    woken = woken.max(Some(*self.fin.get(peer)?));
                }
                Some(woken)
            }
            ("ACCEPT", _) => {
                // After the connect that caused it, if that socket is
                // traced (its CONNECTED line, here or earlier, names it).
                match future.peer(&me) {
                    Some(l) if starting.contains(l) => None,
                    Some(_) => Some(None),
                    None => Some(None),
                }
            }
            _ => Some(None),
        }
    }

    fn emit(&mut self, e: &Event) {
        let me = lane(e);
        self.pairs.observe(e);
        let at = self.emitted;
        self.emitted += 1;
        match (e.event.as_str(), e.bytes()) {
            ("WRITABLE", Some(n)) if n > 0 => {
                let w = self.written.entry(me).or_default();
                let total = w.last().map_or(0, |&(_, t)| t) + n;
                w.push((at, total));
            }
            ("READABLE", Some(n)) => *self.read.entry(me).or_default() += n,
            ("SHUTDOWN" | "CLOSE", _) => {
                self.fin.insert(me, at);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::diagram::Diagram;

    fn ev(at: u64, node: &str, conn: &str, event: &str, detail: &str) -> Event {
        Event::new(at, node, conn, event, detail)
    }

    fn names(v: &[Event]) -> Vec<String> {
        v.iter().map(|e| format!("{} {} {}", e.node, e.conn, e.event)).collect()
    }

    /// A server answers two sockets one after the other while the first
    /// reader already reads: two stampings of the same run.
    fn run(read_at: u64) -> Vec<Event> {
        vec![
            ev(1, "a", "U", "CONNECTED", "local 1.1.1.1:1, peer 9.9.9.9:9"),
            ev(2, "server", "0", "ACCEPT", "local 9.9.9.9:9, peer 1.1.1.1:1"),
            ev(3, "b", "U", "CONNECTED", "local 1.1.1.1:2, peer 9.9.9.9:9"),
            ev(4, "server", "1", "ACCEPT", "local 9.9.9.9:9, peer 1.1.1.1:2"),
            ev(10, "server", "0", "WRITABLE", "wrote=5 left=0"),
            ev(12, "server", "1", "QUEUED", "reply"),
            ev(14, "server", "1", "WRITABLE", "wrote=7 left=0"),
            ev(read_at, "a", "U", "READABLE", "read=5 then WouldBlock"),
            ev(20, "b", "U", "READABLE", "read=7 then WouldBlock"),
        ]
    }

    #[test]
    fn concurrent_lines_merge_the_same_whatever_their_stamps() {
        let plain = |n: &str| n.to_string();
        let early = Merger::default().merge(run(11), plain);
        let late = Merger::default().merge(run(16), plain);
        assert_eq!(names(&early), names(&late));
        // The server runs on until it has nothing more; then a thread woken
        // by a message goes before one that waited for nothing.
        assert_eq!(
            names(&late)[3..],
            [
                "server 0 WRITABLE",
                "server 1 QUEUED",
                "server 1 WRITABLE",
                "a U READABLE",
                "b U CONNECTED",
                "b U READABLE"
            ]
        );
        // And it stays causal.
        let d = Diagram {
            events: late,
            steps: vec![],
        };
        assert!(d.violations().is_empty());
    }

    #[test]
    fn a_read_waits_for_its_write_even_if_stamped_first() {
        // A lost-clock case: the read stamped before the write.
        let mut events = run(16);
        events[7].at = 5;
        let merged = Merger::default().merge(events, |n: &str| n.to_string());
        let pos = |s: &str| names(&merged).iter().position(|x| x == s).unwrap();
        assert!(pos("server 0 WRITABLE") < pos("a U READABLE"));
    }

    #[test]
    fn an_accept_comes_after_the_connect_that_caused_it() {
        // The accepting node ran first (stamped earlier) and goes on
        // running; its accept still waits for the connect's start.
        let events = vec![
            ev(1, "server", "0", "QUEUED", "something before"),
            ev(2, "server", "1", "ACCEPT", "local 9.9.9.9:9, peer 1.1.1.1:2"),
            ev(3, "b", "U", "CONNECT_START", ""),
            ev(4, "b", "U", "CONNECTED", "local 1.1.1.1:2, peer 9.9.9.9:9"),
        ];
        let merged = Merger::default().merge(events, |n: &str| n.to_string());
        assert_eq!(
            names(&merged),
            [
                "server 0 QUEUED",
                "b U CONNECT_START",
                "b U CONNECTED",
                "server 1 ACCEPT"
            ]
        );
    }

    /// Two rounds on one connection and a polite close, with stamps that
    /// lie: the second request's read, and both EOFs, stamped before what
    /// caused them; and the accept stamped before the connect.
    fn two_rounds_and_a_close() -> Vec<Event> {
        vec![
            ev(0, "server", "0", "ACCEPT", "local 9.9.9.9:9, peer 1.1.1.1:1"),
            ev(1, "client", "C", "CONNECT_START", ""),
            ev(3, "client", "C", "CONNECTED", "local 1.1.1.1:1, peer 9.9.9.9:9"),
            ev(10, "client", "C", "WRITABLE", "wrote=5 left=0"),
            ev(11, "server", "0", "READABLE", "read=5 then WouldBlock"),
            ev(12, "server", "0", "WRITABLE", "wrote=7 left=0"),
            ev(13, "client", "C", "READABLE", "read=7 then WouldBlock"),
            ev(15, "server", "0", "READABLE", "read=5 then WouldBlock"),
            ev(20, "client", "C", "WRITABLE", "wrote=5 left=0"),
            ev(22, "server", "0", "WRITABLE", "wrote=7 left=0"),
            ev(23, "client", "C", "READABLE", "read=7 then WouldBlock"),
            ev(30, "client", "C", "SHUTDOWN", ""),
            ev(31, "client", "C", "READABLE", "read=0 then EOF"),
            ev(40, "server", "0", "READABLE", "read=0 then EOF"),
            ev(41, "server", "0", "CLOSE", "peer half-closed"),
        ]
    }

    #[test]
    fn reads_wait_for_their_bytes_and_eofs_for_their_fin_across_rounds() {
        let merged = Merger::default().merge(two_rounds_and_a_close(), |n: &str| n.to_string());
        assert_eq!(merged.len(), 15);
        let d = Diagram {
            events: merged.clone(),
            steps: vec![],
        };
        assert_eq!(d.violations(), Vec::<String>::new(), "{:?}", names(&merged));
        let pos = |at: u64| merged.iter().position(|e| e.at == at).unwrap();
        assert!(pos(1) < pos(0), "the accept after the connect started");
        assert!(pos(20) < pos(15), "the second read after the second write");
        assert!(pos(30) < pos(40) && pos(41) < pos(31), "each EOF after its FIN");
    }

    #[test]
    fn a_missing_write_loses_no_event() {
        // The server's first reply line is lost: the client's read can
        // never be explained, and the merge goes on in stamp order.
        let mut events = two_rounds_and_a_close();
        events.remove(5);
        let merged = Merger::default().merge(events, |n: &str| n.to_string());
        assert_eq!(merged.len(), 14);
    }

    #[test]
    fn state_carries_over_between_batches() {
        let mut m = Merger::default();
        let mut events = run(16);
        let second = events.split_off(4);
        let first = m.merge(events, |n: &str| n.to_string());
        assert_eq!(first.len(), 4);
        let rest = m.merge(second, |n: &str| n.to_string());
        // The latest message wakes first.
        assert_eq!(names(&rest)[3..], ["b U READABLE", "a U READABLE"]);
    }
}

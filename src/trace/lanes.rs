//! Which lanes a picture of a trace has, and in what order: laid out like
//! the network, so an arrow crosses only the lanes of the two nodes it
//! joins. Pure code; [`super::svg`] and [`super::html`] draw in this order.
//!
//! ```text
//!   client | proxy L 0 U | server L 0 1 F | proxy2 U 0 L | client2
//! ```
//!
//! A node's *parent* is the node its outgoing socket (`U`, `D`, `C`: the
//! ones that connect) reaches; a node with no traced parent is a root (the
//! server, or a proxy whose server is not traced). Each root sits between
//! its children: the first half of them to its left, the rest to its
//! right, and each child's own children further out on the same side.
//! Inside a node, the sockets facing its parent are on the parent's side.
//!
//! A slab key (or the client's `C`) used again for a new connection after
//! the first one closed is a new socket, so it gets a lane of its own:
//! [`split_reused`] names the second `C.2`, the third `C.3`, and so on.

use super::diagram::{lane, Lane, Pairs};
use super::line::Event;
use std::collections::{HashMap, HashSet};

/// True for the sockets that connect out (the node's side of a connection
/// it opened): the proxy's upstream (and one draining), a client's socket.
pub fn outgoing(conn: &str) -> bool {
    matches!(base(conn), "U" | "D" | "C")
}

/// A lane's connection label without its `.N` reuse suffix.
pub fn base(conn: &str) -> &str {
    conn.split_once('.').map_or(conn, |(b, _)| b)
}

/// What a lane's header says under its node name.
pub fn role(conn: &str) -> String {
    match base(conn) {
        "L" => "listener".into(),
        "U" => "upstream (to the server)".into(),
        "D" => "old upstream, draining".into(),
        "C" => "its socket".into(),
        "F" => "its log file (not a socket)".into(),
        "KL" => "control listener".into(),
        n if n.starts_with('U') => format!("upstream for connection {}", &n[1..]),
        n => format!("accepted connection {n}"),
    }
}

/// Renames the events of a connection that reuses a closed one's label
/// (`0` again after `0` closed), so each connection has its own lane.
pub fn split_reused(events: &mut [Event]) {
    // Per label: how many connections it had, and whether the current one
    // closed.
    let mut seen: HashMap<Lane, (usize, bool)> = HashMap::new();
    for e in events.iter_mut() {
        let key = lane(e);
        let opens = matches!(e.event.as_str(), "SOCKET" | "CONNECT_START" | "ACCEPT");
        let entry = seen.entry(key).or_insert((1, false));
        if opens && entry.1 {
            *entry = (entry.0 + 1, false);
        }
        if e.event == "CLOSE" {
            entry.1 = true;
        }
        if entry.0 > 1 {
            e.conn = format!("{}.{}", e.conn, entry.0);
        }
    }
}

/// Which side of its parent a node sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Root,
    Left,
    Right,
}

/// The lanes of `events` in drawing order (see the module's doc).
pub fn order(events: &[Event], pairs: &Pairs) -> Vec<Lane> {
    // Nodes and their lanes, in order of appearance.
    let mut nodes: Vec<&str> = Vec::new();
    let mut lanes_of: HashMap<&str, Vec<Lane>> = HashMap::new();
    for e in events {
        let mine = lanes_of.entry(&e.node).or_default();
        if mine.is_empty() {
            nodes.push(&e.node);
        }
        let l = lane(e);
        if !mine.contains(&l) {
            mine.push(l);
        }
    }
    // Sockets that connect out: by their label, or by the connect they
    // traced (a link's `U0`).
    let connects: HashSet<Lane> = events
        .iter()
        .filter(|e| e.event == "CONNECT_START" || outgoing(&e.conn))
        .map(lane)
        .collect();
    // Each node's parent: the peer of its first traced outgoing socket.
    let parent = |n: &str| -> Option<String> {
        lanes_of[n]
            .iter()
            .filter(|l| connects.contains(l))
            .find_map(|l| pairs.peer(l))
            .map(|p| p.0.clone())
            .filter(|p| p != n)
    };
    let parents: HashMap<&str, Option<String>> = nodes.iter().map(|&n| (n, parent(n))).collect();
    let children = |n: &str| -> Vec<&str> {
        nodes
            .iter()
            .copied()
            .filter(|&c| parents[c].as_deref() == Some(n))
            .collect()
    };
    // Lay each tree out from its root; a node seen twice (a cycle) once.
    let mut placed: Vec<(&str, Side)> = Vec::new();
    let mut done: HashSet<&str> = HashSet::new();
    let roots: Vec<&str> = nodes.iter().copied().filter(|&n| parents[n].is_none()).collect();
    for root in roots.into_iter().chain(nodes.iter().copied()) {
        if done.contains(root) {
            continue;
        }
        done.insert(root);
        let kids: Vec<&str> = children(root).into_iter().filter(|c| !done.contains(c)).collect();
        let (left, right) = kids.split_at(kids.len().div_ceil(2));
        let mut row = Vec::new();
        for &c in left {
            let mut sub = Vec::new();
            place(c, Side::Left, &children, &mut done, &mut sub);
            sub.extend(row);
            row = sub;
        }
        row.push((root, Side::Root));
        for &c in right {
            place(c, Side::Right, &children, &mut done, &mut row);
        }
        placed.extend(row);
    }
    let column: HashMap<String, usize> = placed
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.to_string(), i))
        .collect();
    placed
        .iter()
        .flat_map(|&(n, side)| within(&lanes_of[n], side, pairs, &column, &connects))
        .collect()
}

/// Appends `n` and its subtree on `side` of their root: nearest first on
/// the right, nearest last on the left.
fn place<'a>(
    n: &'a str,
    side: Side,
    children: &dyn Fn(&str) -> Vec<&'a str>,
    done: &mut HashSet<&'a str>,
    out: &mut Vec<(&'a str, Side)>,
) {
    if !done.insert(n) {
        return;
    }
    let mut sub = vec![(n, side)];
    for c in children(n) {
        let mut deeper = Vec::new();
        place(c, side, children, done, &mut deeper);
        match side {
            Side::Left => {
                deeper.extend(sub);
                sub = deeper;
            }
            _ => sub.extend(deeper),
        }
    }
    out.extend(sub);
}

/// One node's lanes in order for `side`: listener, accepted sockets by
/// key, others (the log file), and the outgoing sockets on the parent's
/// side (mirrored for a node right of its parent).
fn within(
    mine: &[Lane],
    side: Side,
    pairs: &Pairs,
    column: &HashMap<String, usize>,
    connects: &HashSet<Lane>,
) -> Vec<Lane> {
    let key = |l: &Lane| -> (u8, usize, u64, u64) {
        let (b, reuse) = match l.1.split_once('.') {
            Some((b, r)) => (b, r.parse().unwrap_or(0)),
            None => (l.1.as_str(), 0),
        };
        // Accepted sockets: in the order of their peers' columns, so a
        // root's left peers come before its right ones.
        let peer_at = pairs
            .peer(l)
            .and_then(|p| column.get(&p.0))
            .copied()
            .unwrap_or(usize::MAX);
        match b {
            "L" => (0, 0, 0, reuse),
            "U" | "D" | "C" => (3, 0, u64::from(b != "U"), reuse),
            // Another connecting socket (a link's `U0`): by its number.
            _ if connects.contains(l) => (
                3,
                1,
                b.trim_start_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0),
                reuse,
            ),
            "F" => (2, 0, 0, reuse),
            n => match n.parse::<u64>() {
                Ok(k) => (1, peer_at, k, reuse),
                Err(_) => (2, 0, 0, reuse),
            },
        }
    };
    let mut v = mine.to_vec();
    v.sort_by_key(key);
    if side == Side::Right {
        v.reverse();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(node: &str, conn: &str, event: &str, detail: &str) -> Event {
        Event::new(0, node, conn, event, detail)
    }

    /// `node conn` connects from port `from` to the node `to` listens on
    /// (`to_node to_conn` accepts).
    fn link(out: &mut Vec<Event>, (node, conn): (&str, &str), (to_node, to_conn): (&str, &str), from: u16, port: u16) {
        out.push(ev(node, conn, "CONNECT_START", ""));
        let (a, b) = (format!("127.0.0.1:{from}"), format!("127.0.0.1:{port}"));
        out.push(ev(to_node, to_conn, "ACCEPT", &format!("local {b}, peer {a}")));
        out.push(ev(node, conn, "CONNECTED", &format!("local {a}, peer {b}")));
    }

    fn names(lanes: &[Lane]) -> Vec<String> {
        lanes.iter().map(|(n, c)| format!("{n} {c}")).collect()
    }

    /// The demo's network: two proxies in front of one server, a client
    /// each, the server's log file.
    #[test]
    fn the_demo_is_laid_out_like_its_network() {
        let mut e = vec![ev("server", "L", "LISTEN", ""), ev("proxy", "L", "LISTEN", "")];
        link(&mut e, ("proxy", "U"), ("server", "0"), 5001, 9000);
        link(&mut e, ("client", "C"), ("proxy", "0"), 5002, 9001);
        e.push(ev("proxy2", "L", "LISTEN", ""));
        link(&mut e, ("proxy2", "U"), ("server", "1"), 5003, 9000);
        link(&mut e, ("client2", "C"), ("proxy2", "0"), 5004, 9002);
        e.push(ev("server", "F", "APPEND", "1 record"));
        let mut pairs = Pairs::default();
        e.iter().for_each(|x| pairs.observe(x));
        assert_eq!(
            names(&order(&e, &pairs)),
            [
                "client C",
                "proxy L",
                "proxy 0",
                "proxy U",
                "server L",
                "server 0",
                "server 1",
                "server F",
                "proxy2 U",
                "proxy2 0",
                "proxy2 L",
                "client2 C"
            ]
        );
    }

    #[test]
    fn each_lane_says_what_socket_it_is() {
        for (conn, says) in [
            ("L", "listener"),
            ("U", "upstream (to the server)"),
            ("D", "old upstream, draining"),
            ("C", "its socket"),
            ("C.2", "its socket"),
            ("F", "its log file (not a socket)"),
            ("KL", "control listener"),
            ("U0", "upstream for connection 0"),
            ("3", "accepted connection 3"),
        ] {
            assert_eq!(role(conn), says, "{conn}");
        }
        assert!(outgoing("U") && outgoing("D.2") && outgoing("C") && !outgoing("0") && !outgoing("L"));
    }

    #[test]
    fn a_link_sits_between_the_proxy_and_the_server() {
        let mut e = vec![
            ev("server", "L", "LISTEN", ""),
            ev("link", "L", "LISTEN", ""),
            ev("link", "KL", "LISTEN", ""),
        ];
        link(&mut e, ("proxy", "U"), ("link", "0"), 5001, 9001);
        link(&mut e, ("link", "U0"), ("server", "0"), 5002, 9000);
        link(&mut e, ("client", "C"), ("proxy", "0"), 5003, 9002);
        let mut pairs = Pairs::default();
        e.iter().for_each(|x| pairs.observe(x));
        assert_eq!(
            names(&order(&e, &pairs)),
            ["client C", "proxy 0", "proxy U", "link L", "link 0", "link KL", "link U0", "server L", "server 0"]
        );
    }

    #[test]
    fn a_proxy_without_its_server_is_a_root_with_clients_both_sides() {
        let mut e = vec![ev("proxy", "L", "LISTEN", ""), ev("proxy", "U", "CONNECT_START", "")];
        link(&mut e, ("a", "C"), ("proxy", "0"), 5001, 9000);
        link(&mut e, ("b", "C"), ("proxy", "1"), 5002, 9000);
        let mut pairs = Pairs::default();
        e.iter().for_each(|x| pairs.observe(x));
        assert_eq!(
            names(&order(&e, &pairs)),
            ["a C", "proxy L", "proxy 0", "proxy 1", "proxy U", "b C"]
        );
    }

    #[test]
    fn retries_stay_on_their_lane_and_the_upstream_comes_before_the_old_one() {
        let mut e = vec![ev("server", "L", "LISTEN", "")];
        e.push(ev("proxy", "U", "CONNECT_START", ""));
        e.push(ev("proxy", "U", "CONNECT_FAILED", "refused"));
        link(&mut e, ("proxy", "D"), ("server", "0"), 5001, 9000);
        link(&mut e, ("proxy", "U"), ("server", "1"), 5002, 9000);
        split_reused(&mut e);
        assert!(
            e.iter().all(|x| !x.conn.contains('.')),
            "a failed connect is retried on the same lane"
        );
        let mut pairs = Pairs::default();
        e.iter().for_each(|x| pairs.observe(x));
        assert_eq!(
            names(&order(&e, &pairs)),
            ["proxy U", "proxy D", "server L", "server 0", "server 1"]
        );
    }

    #[test]
    fn a_reused_label_after_a_close_is_a_new_lane() {
        let mut e = Vec::new();
        for port in [5001, 5002] {
            link(&mut e, ("client", "C"), ("server", "0"), port, 9000);
            e.push(ev("client", "C", "CLOSE", ""));
            e.push(ev("server", "0", "CLOSE", ""));
        }
        split_reused(&mut e);
        let mut pairs = Pairs::default();
        e.iter().for_each(|x| pairs.observe(x));
        assert_eq!(e[5].conn, "C.2");
        assert_eq!(e[6].conn, "0.2");
        assert_eq!(
            pairs.peer(&("client".into(), "C.2".into())),
            Some(&("server".into(), "0.2".into()))
        );
        assert_eq!(
            names(&order(&e, &pairs)),
            ["client C", "client C.2", "server 0", "server 0.2"]
        );
    }
}

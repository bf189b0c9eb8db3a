//! Which function of the code logs each kind of trace line, so the demo's
//! player can show, beside every event, where to read what it did. Pure
//! code; a test reads the source tree and checks this table against every
//! `trace_event!` call in it, so a moved or renamed function shows up as a
//! failure, not as a stale name.

use super::line::Event;

/// What, besides its event name, tells the lines of two call sites apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// The event comes from this call site only.
    Always,
    /// The node's name starts with this (`client`, `client2`).
    Node(&'static str),
    /// The connection is this one (`U`, `L`).
    Conn(&'static str),
    /// The detail contains this.
    Detail(&'static str),
    /// The node's name starts with the first, and the connection is the
    /// second.
    NodeConn(&'static str, &'static str),
}

/// A call site that logs `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitter {
    /// The event name.
    pub event: &'static str,
    /// How its lines are told from another site's with the same event.
    pub when: When,
    /// `Type::method`, or `module::function` for a free function.
    pub function: &'static str,
    /// The file, from the crate's root.
    pub file: &'static str,
}

const fn at(event: &'static str, when: When, function: &'static str, file: &'static str) -> Emitter {
    Emitter {
        event,
        when,
        function,
        file,
    }
}

use When::{Always, Conn, Detail, Node, NodeConn};

/// Every call site, the more specific first for a shared event name.
pub const EMITTERS: &[Emitter] = &[
    // The link (src/link/): its own sockets, traced under the node `link`.
    at("LISTEN", Conn("KL"), "Controls::bind", "src/link/ctl.rs"),
    at("LISTEN", Node("link"), "LinkNode::bind", "src/link/mod.rs"),
    at("ACCEPT", Node("link"), "LinkNode::accept", "src/link/mod.rs"),
    at("REJECT", Node("link"), "LinkNode::accept", "src/link/mod.rs"),
    at("CONNECT_START", Node("link"), "LinkNode::accept", "src/link/mod.rs"),
    at(
        "CONNECT_FAILED",
        Detail("failed at once"),
        "LinkNode::accept",
        "src/link/mod.rs",
    ),
    at("CONNECT_FAILED", Node("link"), "Pair::on_connect", "src/link/pair.rs"),
    at("CONNECTED", Node("link"), "Pair::on_connect", "src/link/pair.rs"),
    at("STATE", Node("link"), "Pair::on_connect", "src/link/pair.rs"),
    at("READABLE", Node("link"), "Pair::read", "src/link/pair.rs"),
    at("QUEUED", Node("link"), "Pair::read", "src/link/pair.rs"),
    at("PEER_FIN", Node("link"), "Pair::read", "src/link/pair.rs"),
    at("WRITABLE", Node("link"), "Pair::write", "src/link/pair.rs"),
    at("SHUTDOWN", Node("link"), "Pair::write", "src/link/pair.rs"),
    at("CLOSE", NodeConn("link", "L"), "LinkNode::stop", "src/link/mod.rs"),
    at("CLOSE", Node("link"), "Pair::close", "src/link/pair.rs"),
    // The nodes built on the frontend, the client and the bench.
    at("SOCKET", Always, "Frontend::bind", "src/frontend/mod.rs"),
    at("BIND", Always, "Frontend::bind", "src/frontend/mod.rs"),
    at("LISTEN", Always, "Frontend::bind", "src/frontend/mod.rs"),
    at("ACCEPT", Always, "Frontend::accept", "src/frontend/mod.rs"),
    at("REJECT", Always, "Frontend::accept", "src/frontend/mod.rs"),
    at("ERROR", Always, "Frontend::ready", "src/frontend/pump.rs"),
    at("CONNECT_START", Always, "Conn::connect", "src/conn/connect.rs"),
    at("CONNECTED", Always, "Conn::on_connect_event", "src/conn/connect.rs"),
    at(
        "CONNECT_FAILED",
        Always,
        "Conn::on_connect_event",
        "src/conn/connect.rs",
    ),
    at("STATE", Always, "Conn::transition", "src/conn/mod.rs"),
    at("CLOSE", Conn("L"), "Frontend::stop", "src/frontend/timers.rs"),
    at("CLOSE", Always, "Conn::close", "src/conn/mod.rs"),
    at("SHUTDOWN", Always, "Conn::linger", "src/conn/mod.rs"),
    at("WRITABLE", Always, "Conn::flush", "src/conn/mod.rs"),
    at("READABLE", Detail("dropped"), "Conn::discard_input", "src/conn/read.rs"),
    at("READABLE", Always, "Conn::fill", "src/conn/read.rs"),
    at(
        "PEER_FIN",
        Detail("closed too"),
        "Conn::discard_input",
        "src/conn/read.rs",
    ),
    at("PEER_FIN", Always, "Conn::read_pass", "src/conn/read.rs"),
    at("YIELD", Always, "Conn::read_pass", "src/conn/read.rs"),
    at("FRAMING", Always, "Conn::next_message", "src/conn/read.rs"),
    at("DECODED", Node("client"), "client::take_reply", "src/client/mod.rs"),
    at(
        "DECODED",
        Conn("U"),
        "Upstream::take_replies",
        "src/proxy/upstream/read.rs",
    ),
    at("DECODED", Always, "pump::process", "src/frontend/pump.rs"),
    at("QUEUED", Node("client"), "Client::send_output", "src/client/mod.rs"),
    at(
        "QUEUED",
        Detail("the server answered"),
        "ProxyNode::deliver",
        "src/proxy/mod.rs",
    ),
    at(
        "QUEUED",
        Detail("applied after"),
        "ServerCore::release",
        "src/server/service.rs",
    ),
    at("QUEUED", Detail("OP=INV"), "ServerNode::settle", "src/server/mod.rs"),
    at("QUEUED", Always, "pump::process", "src/frontend/pump.rs"),
    at("PENDING", Always, "pump::process", "src/frontend/pump.rs"),
    at("PAUSE", Always, "pump::process", "src/frontend/pump.rs"),
    at("RESUME", Always, "Frontend::after_io", "src/frontend/pump.rs"),
    at("SEND", Always, "Upstream::write_out", "src/proxy/upstream/send.rs"),
    at("EVICT", Always, "ProxyCore::apply_ok", "src/proxy/answers.rs"),
    at("INVALIDATE", Always, "ProxyCore::invalidated", "src/proxy/answers.rs"),
    at("CACHE", Always, "answers::log_cache", "src/proxy/answers.rs"),
    at("WAIT", Always, "ServerCore::answer", "src/server/service.rs"),
    at("TABLE", Always, "service::log_table", "src/server/service.rs"),
    at("APPEND", Always, "Store::commit", "src/store/mod.rs"),
    at("FSYNC", Always, "Store::sync", "src/store/mod.rs"),
    at("SNAPSHOT", Always, "Store::start_snapshot", "src/store/mod.rs"),
];

/// The call site that logged `e`, if its event is one of the code's.
pub fn emitter(e: &Event) -> Option<&'static Emitter> {
    EMITTERS.iter().find(|m| {
        m.event == e.event
            && match m.when {
                Always => true,
                Node(prefix) => e.node.starts_with(prefix),
                Conn(c) => super::lanes::base(&e.conn) == c,
                Detail(s) => e.detail.contains(s),
                NodeConn(n, c) => e.node.starts_with(n) && super::lanes::base(&e.conn) == c,
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The calls of `trace_event!`/`trace_event_at!` in one file's code
    /// (tests left out): (event, enclosing function, as `Type::method` or
    /// `module::function`).
    fn calls(path: &str, src: &str) -> Vec<(String, String)> {
        let code = src.split("#[cfg(test)]").next().unwrap_or(src);
        let module = path.trim_end_matches(".rs").trim_end_matches("/mod");
        let module = module.rsplit('/').next().unwrap_or(module);
        let mut out = Vec::new();
        let (mut function, mut owner) = (String::new(), String::new());
        for line in code.lines() {
            let t = line.trim_start();
            let indent = line.len() - t.len();
            if indent == 0 && t.starts_with("impl") {
                // `impl X`, `impl<S> X<S>`, `impl T for X`: the type.
                let head = t.split(" for ").last().unwrap_or(t).trim_end_matches(" {");
                let head = head.strip_prefix("impl").unwrap_or(head);
                let head = if head.starts_with('<') {
                    head.split_once("> ").map_or(head, |x| x.1)
                } else {
                    head
                };
                owner = head.trim().split(['<', ' ']).next().unwrap_or("").to_string();
            } else if indent == 0 && (line == "}" || t.starts_with("fn ") || t.starts_with("pub")) {
                owner.clear();
            }
            let t = t
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub ");
            if let Some(rest) = t.strip_prefix("fn ") {
                let name = rest.split(['(', '<']).next().unwrap_or("");
                function = if owner.is_empty() || indent == 0 {
                    format!("{module}::{name}")
                } else {
                    format!("{owner}::{name}")
                };
            }
            if t.contains("trace_event!(") || t.contains("trace_event_at!(") {
                out.push((String::new(), function.clone()));
            }
            if let Some(last) = out.last_mut() {
                if last.0.is_empty() {
                    if let Some(ev) = t
                        .split('"')
                        .skip(1)
                        .step_by(2)
                        .find(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
                    {
                        last.0 = ev.to_string();
                    }
                }
            }
        }
        out
    }

    fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_table_names_every_call_site_in_the_code() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut paths = Vec::new();
        files(&root.join("src"), &mut paths);
        let mut found = BTreeSet::new();
        for p in paths {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            if rel == "src/trace/mod.rs" {
                continue; // the macros themselves
            }
            let src = std::fs::read_to_string(&p).unwrap();
            for (event, function) in calls(&rel, &src) {
                assert!(
                    !event.is_empty(),
                    "{rel}: a trace call in {function} without an event name"
                );
                found.insert((event, function, rel.clone()));
            }
        }
        let table: BTreeSet<(String, String, String)> = EMITTERS
            .iter()
            .map(|m| (m.event.to_string(), m.function.to_string(), m.file.to_string()))
            .collect();
        let missing: Vec<_> = found.difference(&table).collect();
        let stale: Vec<_> = table.difference(&found).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "not in the table: {missing:#?}\nnot in the code: {stale:#?}"
        );
    }

    #[test]
    fn lines_of_shared_events_find_their_own_site() {
        let ev = |node: &str, conn: &str, event: &str, detail: &str| Event::new(0, node, conn, event, detail);
        let f = |e: Event| emitter(&e).map(|m| m.function);
        assert_eq!(
            f(ev("client2", "C", "DECODED", "OP=GET;CODE=200 (16 bytes)")),
            Some("client::take_reply")
        );
        assert_eq!(
            f(ev("proxy", "U", "DECODED", "OP=GET;IND=1;DATA=1;CODE=200 (30 bytes)")),
            Some("Upstream::take_replies")
        );
        assert_eq!(
            f(ev("proxy", "0", "DECODED", "OP=GET;IND=1 (13 bytes)")),
            Some("pump::process")
        );
        assert_eq!(
            f(ev(
                "server",
                "1",
                "QUEUED",
                "PUT applied after 9 us: reply queued, 30 bytes to write"
            )),
            Some("ServerCore::release")
        );
        assert_eq!(
            f(ev("server", "0", "QUEUED", "OP=INV;SEQ=1;IND=3 (19 bytes to write)")),
            Some("ServerNode::settle")
        );
        assert_eq!(
            f(ev(
                "proxy",
                "0",
                "QUEUED",
                "reply queued (the server answered), 35 bytes to write"
            )),
            Some("ProxyNode::deliver")
        );
        assert_eq!(
            f(ev("server", "0", "QUEUED", "reply queued, 35 bytes to write")),
            Some("pump::process")
        );
        assert_eq!(
            f(ev("proxy", "L", "CLOSE", "listener closed (stopping)")),
            Some("Frontend::stop")
        );
        assert_eq!(f(ev("proxy", "0.2", "CLOSE", "idle")), Some("Conn::close"));
        assert_eq!(
            f(ev("client", "C", "READABLE", "read=0 dropped (closing) then EOF")),
            Some("Conn::discard_input")
        );
        assert_eq!(
            f(ev("proxy", "0", "READABLE", "read=15 then WouldBlock")),
            Some("Conn::fill")
        );
        assert_eq!(f(ev("x", "0", "NOT_AN_EVENT", "")), None);
    }
}

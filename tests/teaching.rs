//! The teaching features: the `--trace` event stream of a GET miss through
//! the proxy, and `tablecache demo`.

mod common;
use common::*;
use std::collections::HashMap;
use std::process::{Command, Stdio};

/// Starts a node from the binary with `--trace`, its stderr in a file.
fn traced(args: &[&str], log: &std::path::Path) -> Proc {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--trace");
    spawn_command_logged(cmd, log)
}

/// One trace line, split into its columns: time (ns), node, connection,
/// event, detail. Written here from the format docs/socket-states.md
/// gives, not with the library's parser, so the two check each other.
#[derive(Debug, Clone)]
struct Line {
    at: u64,
    node: String,
    conn: String,
    event: String,
    detail: String,
}

fn parse_line(line: &str) -> Option<Line> {
    let mut f = line.split_whitespace();
    let time = f.next()?;
    let (us, ns) = time.split_once('.')?;
    let at = us.parse::<u64>().ok()? * 1000 + ns.parse::<u64>().ok()?;
    let (node, conn, event) = (f.next()?, f.next()?, f.next()?);
    if !event.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return None;
    }
    Some(Line {
        at,
        node: node.into(),
        conn: conn.into(),
        event: event.into(),
        detail: f.collect::<Vec<_>>().join(" "),
    })
}

fn trace_lines(text: &str) -> Vec<Line> {
    text.lines().filter_map(parse_line).collect()
}

/// Trace events per (node, connection), in order: (EVENT, details).
fn events(log: &str) -> HashMap<(String, String), Vec<(String, String)>> {
    let mut by_conn: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for l in trace_lines(log) {
        by_conn.entry((l.node, l.conn)).or_default().push((l.event, l.detail));
    }
    by_conn
}

/// The number after `key` in a detail (`read=15 ...` -> 15).
fn count(detail: &str, key: &str) -> usize {
    detail
        .strip_prefix(key)
        .and_then(|d| d.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Checks that every read of n bytes is preceded, in `lines` order, by
/// writes of the other end that delivered those bytes (the k-th byte a
/// socket reads is the k-th its peer wrote), and every EOF by the peer's
/// FIN (`SHUTDOWN` or `CLOSE`). With `by_stamp`, "preceded" is by
/// timestamp instead of by position. Returns the faults.
fn causal_faults(lines: &[Line], by_stamp: bool) -> Vec<String> {
    // Pair the two ends of each connection: CONNECTED says `local A, peer
    // B`, the ACCEPT at the other end `local B, peer A`.
    let mut by_addr: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut peer: HashMap<(String, String), (String, String)> = HashMap::new();
    for l in lines {
        let me = (l.node.clone(), l.conn.clone());
        let ends = l.detail.strip_prefix("local ").and_then(|d| d.split_once(", peer "));
        let key = match (l.event.as_str(), ends) {
            ("CONNECTED", Some((a, b))) => Some((a.to_string(), b.to_string())),
            ("ACCEPT", Some((b, a))) => Some((a.to_string(), b.to_string())),
            _ => None,
        };
        if let Some(k) = key {
            if let Some(other) = by_addr.insert(k, me.clone()) {
                peer.insert(me.clone(), other.clone());
                peer.insert(other, me);
            }
        }
    }
    let mut faults = Vec::new();
    let mut read_total: HashMap<(String, String), usize> = HashMap::new();
    for (k, l) in lines.iter().enumerate() {
        if l.event != "READABLE" {
            continue;
        }
        let me = (l.node.clone(), l.conn.clone());
        let Some(p) = peer.get(&me) else { continue };
        let before = |e: &Line, j: usize| if by_stamp { e.at < l.at } else { j < k };
        let n = count(&l.detail, "read=");
        let total = read_total.entry(me.clone()).or_default();
        *total += n;
        let written: usize = lines
            .iter()
            .enumerate()
            .filter(|(j, e)| (&e.node, &e.conn) == (&p.0, &p.1) && e.event == "WRITABLE" && before(e, *j))
            .map(|(_, e)| count(&e.detail, "wrote="))
            .sum();
        if written < *total {
            faults.push(format!(
                "{me:?} had read {total} bytes, {p:?} had written {written}: {}",
                l.detail
            ));
        }
        if l.detail.ends_with("EOF") {
            let fin = lines.iter().enumerate().any(|(j, e)| {
                (&e.node, &e.conn) == (&p.0, &p.1) && matches!(e.event.as_str(), "SHUTDOWN" | "CLOSE") && before(e, j)
            });
            if !fin {
                faults.push(format!("{me:?} read EOF before {p:?} sent FIN"));
            }
        }
    }
    faults
}

/// Asserts `want` occurs in `got` in this order (other events may come between).
fn in_order(got: &[(String, String)], want: &[&str], what: &str) {
    let mut it = got.iter();
    for w in want {
        assert!(
            it.any(|(e, _)| e == w),
            "{what}: {w} missing or out of order in {:?}",
            got.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>()
        );
    }
}

#[test]
fn trace_of_a_get_miss_through_the_proxy() {
    let dir_tmp = TempDir::new("trace");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let (slog, plog, clog) = (dir.join("server.log"), dir.join("proxy.log"), dir.join("client.log"));
    let server = traced(&["server", "--listen", "127.0.0.1:0"], &slog);
    let proxy = traced(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &server.addr], &plog);
    let out = Command::new(BIN)
        .args(["client", "--trace", "--connect", &proxy.addr, "get", "1", "2"])
        .stderr(std::fs::File::create(&clog).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1=0 2=0\n");
    // Stop both gracefully so every event is written.
    proxy.signal("TERM");
    server.signal("TERM");
    for p in [proxy, server] {
        let mut p = p;
        p.child.wait().unwrap();
    }
    let p = events(&std::fs::read_to_string(&plog).unwrap());
    let s = events(&std::fs::read_to_string(&slog).unwrap());
    let c = events(&std::fs::read_to_string(&clog).unwrap());
    let key = |r: &str, t: &str| (r.to_string(), t.to_string());

    in_order(
        &p[&key("proxy", "L")],
        &["SOCKET", "BIND", "LISTEN", "CLOSE"],
        "proxy listener",
    );
    in_order(
        &p[&key("proxy", "U")],
        &[
            "CONNECT_START",
            "CONNECTED",
            "STATE",
            "SEND",
            "WRITABLE",
            "READABLE",
            "DECODED",
        ],
        "proxy upstream",
    );
    let client_side = &p[&key("proxy", "0")];
    in_order(
        client_side,
        &[
            "ACCEPT", "READABLE", "DECODED", "PENDING", "WRITABLE", "PEER_FIN", "STATE", "CLOSE",
        ],
        "proxy's client connection",
    );
    assert!(client_side
        .iter()
        .any(|(e, d)| e == "STATE" && d.starts_with("Open -> ReadClosed")));
    assert!(client_side
        .iter()
        .any(|(e, d)| e == "DECODED" && d == "OP=GET;IND=1,2 (15 bytes)"));
    let up = &p[&key("proxy", "U")];
    assert!(up
        .iter()
        .any(|(e, d)| e == "STATE" && d.starts_with("Connecting -> Open")));
    assert!(up
        .iter()
        .any(|(e, d)| e == "DECODED" && d == "OP=GET;IND=1,2;DATA=0,0;CODE=200 (33 bytes)"));

    in_order(
        &s[&key("server", "L")],
        &["SOCKET", "BIND", "LISTEN"],
        "server listener",
    );
    in_order(
        &s[&key("server", "0")],
        &["ACCEPT", "READABLE", "DECODED", "QUEUED", "WRITABLE"],
        "server's connection from the proxy",
    );
    in_order(
        &c[&key("client", "C")],
        &["CONNECT_START", "CONNECTED", "STATE", "WRITABLE", "READABLE"],
        "client",
    );
    // Every READABLE says how many bytes and how the pass ended.
    for evs in p.values().chain(s.values()) {
        for (e, d) in evs {
            if e == "READABLE" {
                assert!(d.starts_with("read="), "{d}");
            }
        }
    }
    // One line per event, one format: a state change is printed once (no
    // debug line beside the trace line), no Rust debug text, and every
    // line of the three logs is a trace line or a plain log line.
    let texts: Vec<String> = [&slog, &plog, &clog]
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert_eq!(texts[1].matches("Connecting -> Open").count(), 1, "{}", texts[1]);
    for t in &texts {
        assert!(!t.contains("Some(") && !t.contains("[tablecache::trace]"), "{t}");
    }
    // The three processes share one clock: merged with `sort -n`, as
    // docs/socket-states.md says, every read follows the write that sent
    // its bytes.
    let all = dir.join("all.log");
    std::fs::write(&all, texts.concat()).unwrap();
    let sorted = Command::new("sort").args(["-n", "-s"]).arg(&all).output().unwrap();
    let merged = trace_lines(&String::from_utf8_lossy(&sorted.stdout));
    assert!(merged.len() > 30, "{} lines", merged.len());
    let faults = causal_faults(&merged, false);
    assert!(faults.is_empty(), "{faults:#?}");
    // And the ends of each connection were all traced (the check had
    // reads to check): client-proxy and proxy-server.
    assert!(merged.iter().any(|l| l.node == "client" && l.event == "CLOSE"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_trace_is_causal_and_the_same_every_run() {
    let mut first: Option<Vec<String>> = None;
    for run in 0..100 {
        let text = demo(&[]);
        let lines = trace_lines(&text);
        assert!(lines.len() > 150, "run {run}: {} trace lines", lines.len());
        // Printed order and stamps both put every read after its write.
        for by_stamp in [false, true] {
            let faults = causal_faults(&lines, by_stamp);
            assert!(faults.is_empty(), "run {run} (by stamp: {by_stamp}): {faults:#?}");
        }
        let seq: Vec<String> = lines
            .iter()
            .map(|l| format!("{} {} {}", l.node, l.conn, l.event))
            .collect();
        match &first {
            None => {
                // The close is shown: FIN each way, half-close, CLOSE.
                for ev in [
                    "client C SHUTDOWN",
                    "proxy 0 PEER_FIN",
                    "proxy 0 CLOSE",
                    "client C PEER_FIN",
                    "client C CLOSE",
                ] {
                    assert!(seq.iter().any(|s| s == ev), "no {ev}");
                }
                // No bookkeeping connection shows: one accepted connection
                // per proxy, two on the server (the proxies).
                let conns = |node: &str| {
                    let mut c: Vec<&str> = lines
                        .iter()
                        .filter(|l| l.node == node && l.event == "ACCEPT")
                        .map(|l| l.conn.as_str())
                        .collect();
                    c.dedup();
                    c.len()
                };
                assert_eq!((conns("proxy"), conns("proxy2"), conns("server")), (1, 1, 2));
                first = Some(seq);
            }
            Some(f) => {
                let at = f
                    .iter()
                    .zip(&seq)
                    .position(|(a, b)| a != b)
                    .unwrap_or(f.len().min(seq.len()));
                assert!(
                    f == &seq,
                    "run {run} differs from run 0 at line {at}: {:?} vs {:?}; run {run}'s trace:\n{text}",
                    f.get(at),
                    seq.get(at)
                );
            }
        }
    }
}

/// `class="NAME"` occurrences in an SVG.
fn class_count(svg: &str, name: &str) -> usize {
    svg.matches(&format!("class=\"{name}\"")).count()
}

#[test]
fn the_demo_draws_its_sequence_diagram() {
    let dir_tmp = TempDir::new("svg");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo.svg");
    let text = demo(&["--svg", file.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&file).unwrap();
    let lines = trace_lines(&text);
    // One arrow per read that brought bytes (its label the messages it
    // completed: two for a pipeline read at once, none for the link,
    // which passes bytes on) and per FIN.
    let messages = lines.iter().filter(|l| l.event == "DECODED").count();
    let fins = lines.iter().filter(|l| l.event == "PEER_FIN").count();
    let reads = |link: bool| {
        lines
            .iter()
            .filter(|l| l.event == "READABLE" && count(&l.detail, "read=") > 0 && (l.node == "link") == link)
            .count()
    };
    assert_eq!(
        messages,
        reads(false) + 2,
        "one message a read, but for the pipelined two, read at once twice"
    );
    assert!(
        reads(true) >= 8,
        "the link passes the LEASE, the PUT of 3, GET 6 and GET 7, each way: {}",
        reads(true)
    );
    assert_eq!(class_count(&svg, "arrow"), reads(false) + reads(true) + fins);
    // One lane per socket.
    let mut sockets: Vec<(String, String)> = lines.iter().map(|l| (l.node.clone(), l.conn.clone())).collect();
    sockets.sort();
    sockets.dedup();
    assert_eq!(class_count(&svg, "lane"), sockets.len());
    // The states drawn are those of docs/socket-states.md, and all of the
    // connection's are shown.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/socket-states.md")).unwrap();
    for state in ["Listening", "Connecting", "Open", "ReadClosed", "Closed"] {
        assert!(svg.contains(&format!("data-state=\"{state}\"")), "{state} not drawn");
        assert!(doc.contains(state), "{state} not in the docs");
    }
    // Self-contained: no script, no link out.
    assert!(!svg.contains("<script") && !svg.contains("href"));
    assert_eq!(svg.matches("http").count(), 1, "only the xmlns");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_walkthrough_picture_is_what_the_demo_draws_now() {
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/walkthrough-get-miss.svg");
    let dir_tmp = TempDir::new("svg2");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("step2.svg");
    demo(&["--svg", file.to_str().unwrap(), "--step", "2"]);
    let now = std::fs::read_to_string(&file).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(now.contains("GET 1 2: a miss"));
    assert!(now.contains(">OP=GET;IND=1,2;DATA=10,20;CODE=200</text>"));
    assert_eq!(
        class_count(&now, "arrow"),
        4,
        "client → proxy → server → proxy → client"
    );
    assert!(
        std::fs::read_to_string(committed).is_ok_and(|c| c == now),
        "docs/walkthrough-get-miss.svg is not what the demo draws now; regenerate it with\n  cargo run --release -- demo --svg docs/walkthrough-get-miss.svg --step 2"
    );
}

#[test]
fn trace_view_draws_and_checks_a_recorded_trace() {
    use std::io::Write;
    let text = demo(&[]);
    let run = |input: &str, args: &[&str]| {
        let mut child = Command::new(BIN)
            .arg("trace-view")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&text, &["--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = run(&text, &["--step", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let svg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(class_count(&svg, "arrow"), 4);
    // A read stamped before the write that sent its bytes is caught.
    let lines: Vec<&str> = text.lines().collect();
    let read = lines
        .iter()
        .position(|l| l.contains(" server  0   READABLE ") && l.contains("read=15"))
        .unwrap();
    let write_at = trace_lines(lines[read - 8..read].join("\n").as_str())
        .iter()
        .rfind(|l| l.event == "WRITABLE")
        .map(|l| l.at)
        .unwrap();
    let forged = format!("{}.{:03}", (write_at - 1) / 1000, (write_at - 1) % 1000);
    let mut bad: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let old = bad[read].split_whitespace().next().unwrap().to_string();
    bad[read] = bad[read].replacen(&old, &forged, 1);
    let out = run(&bad.join("\n"), &["--check"]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.starts_with("server 0 read ") && said.contains("bytes in all, but proxy U had written"),
        "{said}"
    );
    // Not a trace at all: a clear error.
    let out = run("hello\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no trace lines"));
}

#[test]
fn the_demo_plays_every_step_and_exits_0() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for must in [
        "== GET 1 2: a miss",
        "    proxy   -> server  OP=GET;IND=1,2\n",
        "== GET 2 1: a hit",
        "(proxy cache: 4 in, 1:10 out)",
        "== PUT 4=44",
        "== ADD 1 3 4",
        "    proxy   -> server  OP=GET;IND=1\n",
        "== CLR",
        "client shows: error 400: index 12 out of range 0..9",
        "== PUT 3=33 through a second proxy",
        "    client2 -> proxy2  OP=PUT;IND=3;DATA=33\n",
        "    client  -> proxy   FIN (read returned 0)\n",
        "    (server log: the write is on disk before its reply leaves)\n",
        "    proxy   -> client  FIN (read returned 0)\n",
        "proxy cache (oldest first, capacity 3): 4:40 1:10\n",
        "== GET 3: a miss now",
        "proxy cache (oldest first, capacity 3): 4:44 1:10 3:33",
    ] {
        assert!(text.contains(must), "demo output lacks {must:?}:\n{text}");
    }
    // The second proxy's write: the first proxy drops 3 and confirms
    // before the server acknowledges the write (each line is caused by the
    // one before it, so they print in this order).
    let inv = text.split("== PUT 3=33").nth(1).unwrap().split("==").next().unwrap();
    let at = |line: &str| inv.find(line).unwrap_or_else(|| panic!("no {line:?} in:\n{inv}"));
    assert!(at("server  -> proxy   OP=INV;SEQ=1;IND=3\n") < at("proxy   -> server  OP=ACK;SEQ=1\n"));
    // (The second proxy reaches the server through the link: the link
    // passes bytes on, and the hop lines name it.)
    assert!(at("proxy   -> server  OP=ACK;SEQ=1\n") < at("link    -> proxy2  OP=PUT;IND=3;DATA=33;CODE=200\n"));
    // The hit step goes nowhere near the server.
    let hit = text.split("== GET 2 1").nth(1).unwrap().split("==").next().unwrap();
    assert!(!hit.contains("proxy   -> server"), "{hit}");
    // Through the slow link: the pipelined hit's reply leaves after the
    // miss's, which crossed the link both ways first.
    let piped = text
        .split("== client2 pipelines")
        .nth(1)
        .unwrap()
        .split("==")
        .next()
        .unwrap();
    let at = |line: &str| piped.find(line).unwrap_or_else(|| panic!("no {line:?} in:\n{piped}"));
    assert!(at("link    -> server  OP=GET;IND=7\n") < at("proxy2  -> client2 OP=GET;IND=7;DATA=0;CODE=200\n"));
    assert!(
        at("proxy2  -> client2 OP=GET;IND=7;DATA=0;CODE=200\n")
            < at("proxy2  -> client2 OP=GET;IND=6;DATA=0;CODE=200\n")
    );
    assert!(
        !piped.contains("link    -> server  OP=GET;IND=6"),
        "the hit is not fetched:\n{piped}"
    );
}

#[test]
fn the_demo_piped_into_head_ends_quietly() {
    // `tablecache demo | head -3`: the reader goes away after three lines.
    let mut child = Command::new(BIN)
        .arg("demo")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..3 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    }
    drop(out);
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    // Its data directory went with it.
    let dir = std::env::temp_dir().join(format!("tablecache-demo-{}", child.id()));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn the_interactive_demo_prints_every_hop_the_reply_included() {
    let mut child = Command::new(BIN)
        .args(["demo", "--interactive"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"get 1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for hop in [
        "client  -> proxy   OP=GET;IND=1\n",
        "proxy   -> server  OP=GET;IND=1\n",
        "server  -> proxy   OP=GET;IND=1;DATA=0;CODE=200\n",
        "proxy   -> client  OP=GET;IND=1;DATA=0;CODE=200\n",
    ] {
        assert!(text.contains(hop), "no {hop:?} in:\n{text}");
    }
}

/// Spawns `args` with stdout a pipe whose reader is already gone; the
/// exit status and stderr.
fn with_stdout_closed(args: &[&str], stdin: &[u8]) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.code(), err)
}

#[test]
fn a_closed_stdout_ends_the_client_and_the_bench_quietly() {
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0"]);
    let lines = "get 1\n".repeat(2000);
    let (code, err) = with_stdout_closed(&["client", "--connect", &server.addr], lines.as_bytes());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(0), "client: {err}");
    let (code, err) = with_stdout_closed(&["bench", "--connect", &server.addr, "-n", "200", "--json"], b"");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(0), "bench: {err}");
}

/// A demo line without its time column (times change every run).
fn untimed(line: &str) -> String {
    match parse_line(line) {
        Some(l) => format!("{} {} {} {}", l.node, l.conn, l.event, l.detail),
        None => line.trim_end().to_string(),
    }
}

#[test]
fn the_walkthrough_quotes_the_demo_line_for_line() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/walkthrough.md")).unwrap();
    let quote: Vec<String> = doc
        .split("```text\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap()
        .lines()
        .map(untimed)
        .collect();
    assert!(quote[0].starts_with("== GET 1 2"), "{quote:?}");
    let text = demo(&[]);
    let step: Vec<String> = text
        .lines()
        .skip_while(|l| !l.starts_with("== GET 1 2"))
        .take(quote.len())
        .map(untimed)
        .collect();
    assert_eq!(quote, step);
    // And the example line of docs/socket-states.md is in the format.
    let states = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/socket-states.md")).unwrap();
    let example = states.split("```text\n").nth(1).unwrap().lines().next().unwrap();
    let l = parse_line(example).unwrap();
    assert_eq!(
        (l.node.as_str(), l.conn.as_str(), l.event.as_str()),
        ("proxy", "0", "READABLE")
    );
}

#[test]
fn a_proxys_trace_names_the_entries_an_invalidation_drops() {
    let dir_tmp = TempDir::new("trace-inv");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let plog = dir.join("proxy.log");
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--grace-ms",
        "0",
        "--lease-ms",
        "60000",
        "--log-level",
        "warn",
    ]);
    let mut proxy = traced(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &server.addr], &plog);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    assert_eq!(c.ask("OP=GET;IND=1,2,3"), "OP=GET;IND=1,2,3;DATA=0,0,0;CODE=200");
    // A write straight to the server: acknowledged only once the proxy
    // has dropped the entries.
    let mut direct = Peer::connect(server.addr.parse().unwrap());
    assert_eq!(
        direct.ask("OP=PUT;IND=1,2;DATA=5,6"),
        "OP=PUT;IND=1,2;DATA=5,6;CODE=200"
    );
    proxy.signal("TERM");
    proxy.child.wait().unwrap();
    let lines = trace_lines(&std::fs::read_to_string(&plog).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let inv: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l.event == "INVALIDATE")
        .map(|l| (l.node.as_str(), l.detail.as_str()))
        .collect();
    assert_eq!(inv, [("proxy", "cache: 1,2 dropped (another writer)")]);
}

#[test]
fn the_trace_says_which_misses_went_as_one_get() {
    let dir_tmp = TempDir::new("trace-batch");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let plog = dir.join("proxy.log");
    let server = spawn_node(&server_args(&[]));
    let proxy = traced(&["proxy", "--listen", "127.0.0.1:0", "--upstream", &server.addr], &plog);
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    // Indices the server has answered are batched: 9 makes 0..=9 known.
    assert_eq!(c.ask("OP=GET;IND=9"), "OP=GET;IND=9;DATA=0;CODE=200");
    c.send(b"OP=GET;IND=3\nOP=GET;IND=4\n");
    assert_eq!(c.line(), "OP=GET;IND=3;DATA=0;CODE=200");
    assert_eq!(c.line(), "OP=GET;IND=4;DATA=0;CODE=200");
    proxy.signal("TERM");
    let mut proxy = proxy;
    proxy.child.wait().unwrap();
    let p = events(&std::fs::read_to_string(&plog).unwrap());
    let up = &p[&("proxy".to_string(), "U".to_string())];
    let sent: Vec<&String> = up.iter().filter(|(e, _)| e == "SEND").map(|(_, d)| d).collect();
    assert!(
        sent.iter()
            .any(|d| d.starts_with("GET of 2 fetches in one, for client")),
        "{sent:?}"
    );
    assert!(up
        .iter()
        .any(|(e, d)| e == "DECODED" && d == "OP=GET;IND=3,4;DATA=0,0;CODE=200 (33 bytes)"));
}

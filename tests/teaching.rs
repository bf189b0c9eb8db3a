//! The teaching features: the `--trace` event stream of a GET miss through
//! the proxy, and `tablecache demo`.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts a node from the binary with `--trace`, its stderr in a file.
fn traced(args: &[&str], log: &std::path::Path) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap().to_string();
    Proc { child, addr }
}

/// Trace events per (role, token), in order: (EVENT, details).
fn events(log: &str) -> HashMap<(String, String), Vec<(String, String)>> {
    let mut by_conn: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("[tablecache::trace] ") else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let (ts, role, tok, _peer, event) = (f.next(), f.next(), f.next(), f.next(), f.next());
        assert!(ts.unwrap().ends_with("us"), "timestamp first: {line}");
        let details: Vec<&str> = f.collect();
        by_conn
            .entry((role.unwrap().to_string(), tok.unwrap().to_string()))
            .or_default()
            .push((event.unwrap().to_string(), details.join(" ")));
    }
    by_conn
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
    let dir = std::env::temp_dir().join(format!("tablecache-trace-{}", std::process::id()));
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
        &p[&key("proxy", "tok=L")],
        &["SOCKET", "BIND", "LISTEN", "CLOSE"],
        "proxy listener",
    );
    in_order(
        &p[&key("upstream", "tok=U")],
        &[
            "CONNECT_START",
            "CONNECTED",
            "STATE",
            "QUEUED",
            "WRITABLE",
            "READABLE",
            "DECODED",
        ],
        "proxy upstream",
    );
    let client_side = &p[&key("proxy", "tok=0")];
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
    assert!(client_side.iter().any(|(e, d)| e == "DECODED" && d == "OP=GET;IND=1,2"));
    let up = &p[&key("upstream", "tok=U")];
    assert!(up
        .iter()
        .any(|(e, d)| e == "STATE" && d.starts_with("Connecting -> Open")));
    assert!(up
        .iter()
        .any(|(e, d)| e == "DECODED" && d == "OP=GET;IND=1,2;DATA=0,0;CODE=200"));

    in_order(
        &s[&key("server", "tok=L")],
        &["SOCKET", "BIND", "LISTEN"],
        "server listener",
    );
    in_order(
        &s[&key("server", "tok=0")],
        &["ACCEPT", "READABLE", "DECODED", "QUEUED", "WRITABLE"],
        "server's connection from the proxy",
    );
    in_order(
        &c[&key("client", "tok=C")],
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_demo_plays_every_step_and_exits_0() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for must in [
        "== GET 1 2: a miss",
        "    proxy  -> server  OP=GET;IND=1,2\n",
        "== GET 2 1: a hit",
        "evicted (oldest)",
        "== PUT 4=44",
        "== ADD 1 3 4",
        "    proxy  -> server  OP=GET;IND=1\n",
        "== CLR",
        "client shows: error 400: index 12 out of range 0..9",
        "== PUT 3=33 through a second proxy",
        "    client -> proxy2  OP=PUT;IND=3;DATA=33\n",
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
    assert!(at("server -> proxy   OP=INV;SEQ=1;IND=3\n") < at("proxy  -> server  OP=ACK;SEQ=1\n"));
    assert!(at("proxy  -> server  OP=ACK;SEQ=1\n") < at("server -> proxy2  OP=PUT;IND=3;DATA=33;CODE=200\n"));
    // The hit step goes nowhere near the server.
    let hit = text.split("== GET 2 1").nth(1).unwrap().split("==").next().unwrap();
    assert!(!hit.contains("proxy  -> server"), "{hit}");
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
        "client -> proxy   OP=GET;IND=1\n",
        "proxy  -> server  OP=GET;IND=1\n",
        "server -> proxy   OP=GET;IND=1;DATA=0;CODE=200\n",
        "proxy  -> client  OP=GET;IND=1;DATA=0;CODE=200\n",
    ] {
        assert!(text.contains(hop), "no {hop:?} in:\n{text}");
    }
}

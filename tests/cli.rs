//! The built binary: `listening on ADDR`, the client's one-shot and piped
//! modes and exit codes, usage errors, and SIGTERM.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

fn client(addr: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["client", "--connect", addr])
        .args(args)
        .output()
        .expect("run client");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn one_shot_commands_and_exit_codes() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0"]);
    let a = srv.addr.as_str();
    assert_eq!(client(a, &["put", "1=10", "2=-3"]), (0, "ok\n".into()));
    assert_eq!(client(a, &["get", "1", "2"]), (0, "1=10 2=-3\n".into()));
    assert_eq!(client(a, &["add", "1", "2", "3"]), (0, "7\n".into()));
    assert_eq!(
        client(a, &["raw", "OP=GET;IND=1"]),
        (0, "OP=GET;IND=1;DATA=10;CODE=200\n".into())
    );
    assert_eq!(
        client(a, &["get", "12"]),
        (1, "error 400: index 12 out of range 0..9\n".into()),
        "an error reply exits 1"
    );
    assert_eq!(client(a, &["clr"]), (0, "ok\n".into()));
    let (code, stats) = client(a, &["stats"]);
    assert_eq!(code, 0);
    assert!(stats.contains("ROLE=server\n"), "{stats}");
    assert_eq!(client(a, &["dump"]).1, "0:0 1:0 2:0 3:0 4:0 5:0 6:0 7:0 8:0 9:0\n");
}

#[test]
fn piped_commands_one_result_per_line() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0"]);
    let mut child = Command::new(BIN)
        .args(["client", "--connect", &srv.addr, "--timing"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"put 0=5 9=6\n\n# a comment\nget 0 9\nadd 0 9\nget 10\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("ok  ("), "{text}");
    assert!(lines[1].starts_with("0=5 9=6  ("), "{text}");
    assert!(lines[2].starts_with("11  ("), "{text}");
    assert!(lines[3].starts_with("error 400:"), "{text}");
    assert!(lines[0].ends_with(" us)"), "--timing prints the round trip: {text}");
    assert!(!text.contains("tablecache>"), "no prompt when piped");
    assert_eq!(out.status.code(), Some(1), "an error reply among the commands exits 1");
}

#[test]
fn cannot_connect_exits_2() {
    // A port that was free a moment ago: bind, read it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _) = client(&format!("127.0.0.1:{port}"), &["get", "1"]);
    assert_eq!(code, 2);
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    for args in [
        &["server", "--nope"][..],
        &["server", "--size", "x"],
        &["server", "--size", "0"],
        &["server", "--size", "100000000000"],
        &["server", "--listen", "nowhere"],
        &["client", "--timeout-ms"],
        &["client", "get"],
        &["client", "--framing", "morse", "get", "1"],
        &["frobnicate"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    for args in [&["server", "--help"][..], &["client", "--help"], &["--help"]] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("usage"), "{args:?}");
    }
}

#[test]
fn a_million_entry_server_from_the_binary() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0", "--size", "1000000"]);
    assert_eq!(client(&srv.addr, &["put", "999999=3"]).0, 0);
    assert_eq!(client(&srv.addr, &["get", "999999"]), (0, "999999=3\n".into()));
}

#[test]
fn sigterm_stops_the_server_with_exit_0() {
    let mut srv = spawn_node(&["server", "--listen", "127.0.0.1:0"]);
    let mut p = Peer::connect(srv.addr.parse().unwrap());
    assert_eq!(p.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let mut status = None;
    wait_until("server exits after SIGTERM", || {
        status = srv.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(p.closed_by_peer());
}

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
    // Bound but never listening, and kept bound: nobody can take it.
    let (addr, mut holder) = dead_addr();
    let (code, _) = client(&addr.to_string(), &["get", "1"]);
    let _ = holder.kill();
    let _ = holder.wait();
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
        &["bench", "--rate", "0"],
        &["bench", "--rate", "1e-20"],
        &["bench", "--rate", "1e20"],
        &["bench", "--send-interval-us", "1000001"],
        &["frobnicate"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    for args in [
        &["server", "--help"][..],
        &["client", "--help"],
        &["bench", "plot", "--help"],
        &["trace-view", "--help"],
        &["--help"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(text.contains("usage"), "{args:?}");
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
    assert!(signal(srv.pid(), "TERM"));
    let mut status = None;
    wait_until("server exits after SIGTERM", || {
        status = srv.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    assert!(p.closed_by_peer());
}

/// Runs the binary with `args` and `stdin`; returns (status, stdout).
fn run(args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn flags_go_after_the_command_and_redis_short_flags_name_the_target() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"]);
    let port = srv.addr.rsplit(':').next().unwrap();
    let (code, out) = run(&["client", "get", "1", "--timing", "-h", "127.0.0.1", "-p", port], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("1=0  (") && out.trim_end().ends_with(" us)"), "{out}");
    let (code, out) = run(&["client", "put", "1=-3", "--port", port], "");
    assert_eq!(
        (code, out.as_str()),
        (0, "ok\n"),
        "negative values are values, not flags"
    );
    // redis-benchmark's -c -P -n -q: a fixed count, one line of results.
    let (code, out) = run(
        &[
            "bench",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-c",
            "2",
            "-P",
            "4",
            "-n",
            "500",
            "-q",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(" 500 requests, 0 errors"), "{out}");
    let sts = Peer::connect(srv.addr.parse().unwrap()).ask("OP=STS");
    assert_eq!(
        field(&sts, "GET").as_deref(),
        Some("501"),
        "500 from the bench, 1 from the client: {sts}"
    );
    // Old spellings and one target only.
    assert_eq!(
        run(&["client", "--connect", &srv.addr, "-p", port, "get", "1"], "").0,
        2
    );
}

#[test]
fn a_line_that_starts_with_op_is_sent_as_is_typed_or_piped() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"]);
    let a = srv.addr.as_str();
    assert_eq!(
        run(&["client", "--connect", a, "OP=GET;IND=1"], ""),
        (0, "OP=GET;IND=1;DATA=0;CODE=200\n".into())
    );
    assert_eq!(
        run(&["client", "--connect", a], "op=get;ind=1\nOP=GET;IND=12\n"),
        (
            1,
            "OP=GET;IND=1;DATA=0;CODE=200\nOP=GET;CODE=400;MSG=index 12 out of range 0..9\n".into()
        )
    );
}

#[test]
fn the_exit_status_is_the_last_commands() {
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"]);
    let a = srv.addr.as_str();
    assert_eq!(
        run(&["client", "--connect", a], "get 12\nget 1\nquit\n").0,
        0,
        "an error, then a success"
    );
    assert_eq!(run(&["client", "--connect", a], "get 1\nget 12\nquit\n").0, 1);
    assert_eq!(
        run(&["client", "--connect", a], "get 1\nfrobnicate\n").0,
        1,
        "not understood"
    );
    assert_eq!(run(&["client", "--connect", a], "get 12\n").0, 1);
}

#[test]
fn completions_are_generated_for_bash() {
    let (code, out) = run(&["completions", "bash"], "");
    assert_eq!(code, 0);
    assert!(out.contains("_tablecache()") && out.contains("complete -F"), "{out}");
    for word in ["server", "proxy", "client", "bench", "demo", "--lease-ms", "--pipeline"] {
        assert!(out.contains(word), "{word} in the completions");
    }
    assert_eq!(run(&["completions", "tcsh"], "").0, 2);
}

#[test]
fn the_prompt_edits_lines_keeps_history_and_ends_on_ctrl_d() {
    // A pseudo-terminal, driven from Python's pty module: the prompt only
    // edits lines when it sees a terminal.
    let srv = spawn_node(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"]);
    let home_tmp = TempDir::new("home");
    let home = home_tmp.0.clone();
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("python3")
        .arg("tests/peers/pty_prompt.py")
        .args([BIN, &srv.addr])
        .env("HOME", &home)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("EXIT 0"), "Ctrl-D ends with status 0: {text}");
    assert!(
        text.contains("1=7"),
        "a line edited (Ctrl-C cleared one, Backspace fixed another): {text}"
    );
    let history = std::fs::read_to_string(home.join(".tablecache_history")).unwrap();
    assert!(history.contains("put 1=7"), "{history}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn the_prompt_survives_an_idle_close_and_a_proxy_restart() {
    // A proxy that closes idle connections after 300 ms, then is
    // restarted on its address, then is down when a command runs: the
    // prompt connects again, says so, lives through the command that
    // found no node, and the reads are answered
    // (tests/peers/pty_reconnect.py).
    let srv = spawn_node(&server_args(&[]));
    let home = TempDir::new("home");
    let out = Command::new("python3")
        .arg("tests/peers/pty_reconnect.py")
        .args([BIN, &srv.addr])
        .env("HOME", &home.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("gave up"), "{text}");
    assert!(text.contains("EXIT 0"), "the prompt lived to Ctrl-D: {text}");
    let answers = text.lines().filter(|l| l.trim() == "1=5").count();
    assert_eq!(answers, 3, "every read answered once the proxy was up: {text}");
    assert_eq!(
        text.matches("connected again").count(),
        3,
        "and said so each time: {text}"
    );
    assert!(
        text.contains("Connection refused"),
        "the command that found it down said so: {text}"
    );
}

/// What a node logs while it starts (its stderr up to its kill).
fn startup_log(args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("listening on "), "{line}");
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_up_says_what_a_user_must_know() {
    // A bare upstream grants no leases: the proxy warns that it must be
    // the only path for writes. A line upstream gets no such warning.
    let bare = startup_log(&[
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:9",
        "--upstream-framing",
        "bare",
    ]);
    assert!(bare.contains("a bare upstream grants no leases"), "{bare}");
    let line = startup_log(&["proxy", "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"]);
    assert!(!line.contains("grants no leases"), "{line}");
    // A server with a grace period says writes wait for it; without, not.
    let grace = startup_log(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "700"]);
    assert!(grace.contains("writes wait 700 ms for leases"), "{grace}");
    let none = startup_log(&["server", "--listen", "127.0.0.1:0", "--grace-ms", "0"]);
    assert!(!none.contains("writes wait"), "{none}");
}

#[test]
fn at_debug_the_server_logs_its_table_after_each_change() {
    // As the programs it grew from print theirs: every cell of a small
    // table, only the size of a big one (the cost must not grow with it).
    for (size, expect) in [
        ("10", "server table [0:0 1:0 2:0 3:5 4:0"),
        ("33", "server table: 33 entries"),
    ] {
        let mut child = Command::new(BIN)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--size",
                size,
                "--log-level",
                "debug",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let addr: std::net::SocketAddr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
        let mut p = Peer::connect(addr);
        assert_eq!(p.ask("OP=PUT;IND=3;DATA=5"), "OP=PUT;IND=3;DATA=5;CODE=200");
        let _ = child.kill();
        let log = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
        assert!(log.contains(expect), "size {size}: {log}");
    }
}

#[test]
fn a_proxy_warns_when_it_fails_requests_and_not_when_an_idle_server_closes() {
    // At the default level an operator sees what clients lost, and no
    // noise for a server that closes an idle connection.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = l.local_addr().unwrap().to_string();
    let mut child = Command::new(BIN)
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up,
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let addr: std::net::SocketAddr = line.trim().strip_prefix("listening on ").unwrap().parse().unwrap();
    let accept = || {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(patience())).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut r, &mut first).unwrap();
        assert_eq!(first, "OP=LEASE\n");
        (r, s)
    };
    // Answered, then closed with nothing in flight: an idle close.
    let (r, mut s) = accept();
    s.write_all(b"OP=LEASE;CODE=400;MSG=unknown OP LEASE\n").unwrap();
    let mut c = Peer::connect(addr);
    wait_until("the proxy connected", || {
        field(&c.ask("OP=STS"), "UPSTREAM").as_deref() == Some("up")
    });
    drop((r, s));
    // The proxy reconnects at once; this time a request is lost.
    let (mut r, mut s) = accept();
    s.write_all(b"OP=LEASE;CODE=400;MSG=unknown OP LEASE\n").unwrap();
    c.send(b"OP=GET;IND=1\n");
    let mut get = String::new();
    std::io::BufRead::read_line(&mut r, &mut get).unwrap();
    assert_eq!(get, "OP=GET;IND=1\n");
    drop((r, s));
    assert!(c.line().starts_with("OP=GET;CODE=502;"));
    // And again, closed with only the proxy's own LEASE unanswered: no
    // client request failed, and the log does not say one did.
    let (r, s) = accept();
    drop((r, s));
    wait_until("the proxy saw the close", || {
        field(&c.ask("OP=STS"), "UP_RESETS").and_then(|n| n.parse::<u64>().ok()) >= Some(2)
    });
    let _ = child.kill();
    let log = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert!(log.contains("failing 1 client requests in flight with 502"), "{log}");
    assert!(!log.contains("failing 0"), "{log}");
    let upstream = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("proxy::upstream]"));
    assert_eq!(upstream.count(), 1, "one warning for the connection: {log}");
    // Both connections were refused a lease: said once, not at every
    // reconnect.
    assert_eq!(log.matches("grants no leases").count(), 1, "{log}");
}

#[test]
fn at_debug_the_proxy_logs_its_cache_after_each_change_and_each_client_that_leaves_owed() {
    // Every entry of a small cache, oldest first (as the server prints its
    // table), only the size of a big one; and a client that closes while
    // a reply is still owed to it.
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--size",
        "100",
        "--log-level",
        "warn",
    ]);
    let log_path_tmp = TempDir::new("proxy-debug");
    let log_path = log_path_tmp.join("proxy-debug.log");
    let proxy = spawn_node_logging(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &server.addr,
            "--capacity",
            "64",
            "--upstream-timeout-ms",
            "600000",
            "--log-level",
            "debug",
        ],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap();
    let addr: std::net::SocketAddr = proxy.addr.parse().unwrap();
    let mut c = Peer::connect(addr);
    assert_eq!(c.ask("OP=GET;IND=7"), "OP=GET;IND=7;DATA=0;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=3"), "OP=GET;IND=3;DATA=0;CODE=200");
    let list = |ind: std::ops::Range<i64>| ind.map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    // To 32 entries, the most that are listed; then to 40.
    assert!(c.ask(&format!("OP=GET;IND={}", list(0..32))).ends_with(";CODE=200"));
    assert!(c.ask(&format!("OP=GET;IND={}", list(0..40))).ends_with(";CODE=200"));
    // A client that leaves before its reply: the server is frozen.
    let misses = |c: &mut Peer| field(&c.ask("OP=STS"), "MISSES").unwrap();
    let before = misses(&mut c);
    server.signal("STOP");
    let mut gone = Peer::connect(addr);
    gone.send(b"OP=STS\nOP=GET;IND=50\n");
    wait_until("the proxy sent the fetch", || misses(&mut c) != before);
    // Closed with the STS reply unread: the kernel resets the connection
    // (a FIN alone would leave the proxy waiting to send the reply).
    gone.stream.peek(&mut [0u8; 1]).unwrap();
    drop(gone);
    wait_until("the proxy logged the close", || {
        log().contains("closed with 1 replies owed")
    });
    server.signal("CONT");
    drop(c); // owed nothing: not logged
    let mut probe = Peer::connect(addr);
    wait_until("the other clients are gone", || {
        field(&probe.ask("OP=STS"), "CONNS").as_deref() == Some("1")
    });
    drop(proxy);
    let log = log();
    let _ = std::fs::remove_file(&log_path);
    assert!(log.contains("proxy cache [7:0 3:0] (oldest first, 2/64)"), "{log}");
    assert!(log.contains(" 30:0 31:0] (oldest first, 32/64)"), "{log}");
    assert!(log.contains("proxy cache: 40/64 entries (DMP shows them)"), "{log}");
    assert!(!log.contains("closed with 0"), "{log}");
}

/// What is in `dir` (names), sorted.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn nodes_and_the_demo_leave_the_temp_folder_as_they_found_it() {
    // Each with a temp folder of its own (TMPDIR), looked at after.
    let tmp = TempDir::new("tmpdir");
    let node = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args).env("TMPDIR", &tmp.0).stderr(std::process::Stdio::null());
        spawn_command(cmd)
    };
    let server = node(&server_args(&[]));
    let proxy = node(&proxy_args(&server.addr, &[]));
    let mut c = Peer::connect(proxy.addr.parse().unwrap());
    wait_leased(&mut c);
    assert!(c.ask("OP=PUT;IND=1;DATA=5").ends_with("CODE=200"));
    drop(c);
    for p in [&proxy, &server] {
        p.signal("TERM");
    }
    let (mut proxy, mut server) = (proxy, server);
    proxy.child.wait().unwrap();
    server.child.wait().unwrap();
    assert_eq!(listing(&tmp), Vec::<String>::new(), "after a server and a proxy");
    // The demo keeps its table in the temp folder while it runs.
    let demo = |args: &[&str]| {
        Command::new(BIN)
            .arg("demo")
            .args(args)
            .env("TMPDIR", &tmp.0)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = demo(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(listing(&tmp), Vec::<String>::new(), "after the demo");
    // A step it does not have: said before anything runs.
    let svg = tmp.join("x.svg");
    let out = demo(&["--svg", svg.to_str().unwrap(), "--step", "99"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no step 99"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(listing(&tmp), Vec::<String>::new(), "after a demo with a bad step");
}

#[test]
fn a_closed_stdout_ends_completions_quietly_and_the_client_takes_one_address() {
    for shell in ["bash", "fish", "zsh"] {
        // The generator's own status, with its stdout closed early.
        let mut child = Command::new(BIN)
            .args(["completions", shell])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // closed before it writes
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(BIN)
        .args(["client", "--connect", "127.0.0.1:1,127.0.0.1:2", "get", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one address"));
}

//! `tablecache bench` against targets that misbehave or speak another
//! protocol: every such run ends, reports errors of the right kind and
//! exits non-zero. The targets are scripted in-process (a thread per
//! connection answering each line it reads); the bench is the binary.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A target that answers each line it reads with `answer(line)` (maybe
/// nothing), on every connection.
fn target(answer: fn(&str) -> Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve(s, answer));
        }
    });
    addr
}

fn serve(s: TcpStream, answer: fn(&str) -> Vec<u8>) {
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let reply = answer(line.trim_end());
                if !reply.is_empty() && w.write_all(&reply).is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs the bench binary with `args`, waiting at most patience() for it
/// (a run that does not end fails the test).
fn bench(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, args)
}

fn finish(mut child: Child, what: &[&str]) -> Output {
    let deadline = Instant::now() + patience();
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench {what:?} did not end within {:?}", patience());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Everything it printed.
fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The JSON line of a `--json` run.
fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| panic!("no JSON: {}", said(out)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn errors_of(v: &serde_json::Value, kind: &str) -> u64 {
    v["errors_by_kind"][kind].as_u64().unwrap_or(0)
}

#[test]
fn a_silent_target_times_out_and_every_run_ends() {
    let addr = target(|_| vec![]).to_string();
    // Nothing answered within the timeout: the run stops there, saying so.
    let out = bench(&["--connect", &addr, "-n", "100", "-c", "4", "--timeout", "300", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let v = json(&out);
    assert_eq!(errors_of(&v, "timeout"), 4, "one a connection: {v}");
    assert!(
        v["stopped"].as_str().is_some_and(|s| s.contains("answered nothing")),
        "{v}"
    );
    // A timed run ends within its duration and a timeout.
    let t0 = Instant::now();
    let out = bench(&[
        "--connect",
        &addr,
        "--duration",
        "1s",
        "--warmup",
        "0",
        "--timeout",
        "300",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(errors_of(&json(&out), "timeout") > 0, "{}", said(&out));
    assert!(t0.elapsed() < patience() / 2, "took {:?}", t0.elapsed());
}

#[test]
fn a_redis_spoken_to_in_the_line_protocol_is_named() {
    // What Redis answers a line it does not know.
    let addr = target(|l| format!("-ERR unknown command '{l}', with args beginning with: \r\n").into_bytes());
    let out = bench(&["--connect", &addr.to_string(), "-n", "50"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("--protocol resp"), "{}", said(&out));
}

#[test]
fn a_resp_error_and_a_memcached_error_are_errors_of_their_kind() {
    let resp = target(|l| {
        if l.starts_with('*') {
            b"-ERR no\r\n".to_vec()
        } else {
            vec![]
        }
    });
    let out = bench(&[
        "--connect",
        &resp.to_string(),
        "-n",
        "40",
        "--protocol",
        "resp",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert_eq!(errors_of(&json(&out), "resp-error"), 40, "{}", said(&out));

    let memcached = target(|_| b"ERROR\r\n".to_vec());
    let out = bench(&[
        "--connect",
        &memcached.to_string(),
        "-n",
        "40",
        "--protocol",
        "memcache",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert_eq!(errors_of(&json(&out), "memcache-error"), 40, "{}", said(&out));
    // And in the line protocol, memcached is named.
    let out = bench(&["--connect", &memcached.to_string(), "-n", "40"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("--protocol memcache"), "{}", said(&out));
}

#[test]
fn more_replies_than_requests_and_a_line_too_long_are_desync() {
    let three = target(|_| b"OP=GET;IND=1;DATA=0;CODE=200\n".repeat(3));
    let out = bench(&["--connect", &three.to_string(), "-n", "30", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(errors_of(&json(&out), "desync") > 0, "{}", said(&out));

    // 20 MB without a newline.
    let long = target(|_| vec![b'x'; 20 << 20]);
    let out = bench(&["--connect", &long.to_string(), "-n", "5", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(errors_of(&json(&out), "desync") > 0, "{}", said(&out));
}

#[test]
fn sigint_ends_a_run_with_a_summary_of_what_was_measured() {
    let server = spawn_node(&server_args(&[]));
    let child = Command::new(BIN)
        .args(["bench", "--connect", &server.addr, "--duration", "10s", "--warmup", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Requests are flowing once the server has answered some.
    wait_until("the bench sends", || {
        field(&Peer::connect(server.addr.parse().unwrap()).ask("OP=STS"), "REQS")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 100)
    });
    assert!(signal(child.id(), "INT"));
    let out = finish(child, &["--duration", "10s"]);
    let text = said(&out);
    assert!(text.contains("interrupted"), "{text}");
    let n: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("requests"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(n > 0, "{text}");
}

#[test]
fn durations_take_units() {
    let server = spawn_node(&server_args(&[]));
    let out = bench(&[
        "--connect",
        &server.addr,
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    let out = bench(&["--connect", &server.addr, "--duration", "2 fortnights"]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
}

#[test]
fn counts_that_memory_cannot_hold_are_usage_errors() {
    let server = spawn_node(&server_args(&[]));
    for keys in ["9223372036854775807", "18446744073709551615"] {
        let out = bench(&["--connect", &server.addr, "-n", "10", "--keys", keys]);
        assert_eq!(out.status.code(), Some(2), "--keys {keys}: {}", said(&out));
        assert!(!said(&out).contains("panicked"), "{}", said(&out));
    }
    let out = bench(&[
        "--connect",
        &server.addr,
        "-n",
        "10",
        "--keys",
        "100000000000",
        "--dist",
        "zipf:1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--keys"), "{}", said(&out));
    let out = Command::new(BIN)
        .args(["sim", "--keys", "100000000000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
    assert!(said(&out).contains("--keys"), "{}", said(&out));
}

#[test]
fn a_run_that_measured_nothing_or_lost_its_target_fails() {
    // Silent through the warm-up: stopped before anything was measured.
    let silent = target(|_| vec![]).to_string();
    let out = bench(&["--connect", &silent, "--duration", "3s", "--timeout", "300"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    // A target that answers three requests, then closes and stops
    // listening: every connection lost.
    // (Two connections: the bench's probe of a proxy's counters, then its
    // own; three replies between them.)
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let budget = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(3));
        let mut served = Vec::new();
        for _ in 0..2 {
            let (s, _) = l.accept().unwrap();
            let budget = budget.clone();
            served.push(std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    line.clear();
                    if budget.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return;
                    }
                    let _ = w.write_all(b"OP=GET;IND=0;DATA=0;CODE=200\n");
                }
            }));
        }
        drop(l);
        for t in served {
            let _ = t.join();
        }
    });
    let out = bench(&["--connect", &addr, "-n", "100", "--timeout", "500"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    // Settings that could measure nothing, or never fail: usage errors.
    let server = spawn_node(&server_args(&[]));
    for bad in [
        &["-n", "10", "--warmup", "1s"][..],
        &["-n", "10", "--max-error-rate", "2"],
        &["-n", "10", "--max-error-rate", "nan"],
        &["-n", "10", "-c", "100000000"],
    ] {
        let mut args = vec!["--connect", &server.addr];
        args.extend_from_slice(bad);
        let out = bench(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", said(&out));
        assert!(!said(&out).contains("panicked"), "{}", said(&out));
    }
}

#[test]
fn errors_never_outnumber_requests_and_a_line_server_spoken_to_in_resp_is_named() {
    let three = target(|_| b"OP=GET;IND=1;DATA=0;CODE=200\n".repeat(3));
    let out = bench(&["--connect", &three.to_string(), "-n", "50", "-P", "4", "--json"]);
    let v = json(&out);
    assert!(v["errors"].as_u64() <= v["requests"].as_u64(), "{v}");
    assert!(errors_of(&v, "desync") > 0, "{v}");
    // tablecache's server answers RESP's lines with its own, ending in a
    // bare newline: named, not a timeout.
    let server = spawn_node(&server_args(&[]));
    let out = bench(&["--connect", &server.addr, "-n", "20", "--protocol", "resp", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("--protocol line"), "{}", said(&out));
    assert_eq!(errors_of(&json(&out), "timeout"), 0, "{}", said(&out));
}

#[test]
fn an_open_loop_against_a_desyncing_target_ends_near_its_end() {
    let long = target(|_| vec![b'x'; 2 << 20]);
    let t0 = Instant::now();
    let out = bench(&[
        "--connect",
        &long.to_string(),
        "-c",
        "8",
        "-P",
        "4",
        "--rate",
        "5000",
        "--duration",
        "1s",
        "--warmup",
        "0",
        "--timeout",
        "500",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    // The end, a timeout, and the machine's slack; far from the 26-38 s
    // the drain once took.
    assert!(t0.elapsed() < Duration::from_secs(8), "took {:?}", t0.elapsed());
    let v = json(&out);
    assert!(v["generator_cpu"].as_f64().unwrap_or(0.0) <= 1.05, "one thread: {v}");
}

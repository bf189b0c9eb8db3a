//! `tablecache bench`: the rate it is asked for, a stall showing in the
//! high percentiles, and the JSON summary.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

use tablecache::bench::{run, BenchConfig};

#[test]
fn open_loop_holds_the_requested_rate() {
    let server = start_server(10);
    let cfg = BenchConfig {
        connect: vec![server.addr()],
        rate: Some(2000.0),
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(200),
        connections: 4,
        pipeline: 64,
        mix: [80, 15, 5],
        ..Default::default()
    };
    let r = run(cfg).unwrap();
    // Requests are scheduled at fixed times; every one scheduled in the
    // measured window is sent and answered.
    let want = 4000.0;
    assert!(
        (r.requests as f64 - want).abs() / want < 0.03,
        "{} requests, want about {want}",
        r.requests
    );
    assert_eq!(r.error_count(), 0);
    // The rate is the point: 10% either way is far outside what the
    // schedule allows (its requests are counted above), and still inside
    // what a loaded machine's late tail can add to the elapsed time.
    assert!((r.throughput() - 2000.0).abs() / 2000.0 < 0.10, "{}", r.throughput());
}

#[test]
fn a_frozen_target_shows_in_the_high_percentiles() {
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let addr = server.addr.parse().unwrap();
    let pid = server.pid();
    let freezer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        assert!(signal(pid, "STOP"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(signal(pid, "CONT"));
    });
    let r = run(BenchConfig {
        connect: vec![addr],
        rate: Some(500.0),
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(200),
        connections: 2,
        pipeline: 1000,
        ..Default::default()
    })
    .unwrap();
    freezer.join().unwrap();
    let [p50, _, p99, _, _, max] = r.latency_us;
    // The request scheduled as the freeze began waited for all of it.
    assert!(max >= 250_000, "max {max} us should include the 300 ms freeze");
    assert!(
        p99 >= 100_000,
        "p99 {p99} us should show the freeze (15% of requests were scheduled in it)"
    );
    assert!(p50 < max, "most requests did not wait");
    assert_eq!(r.requests, 1000);
}

#[test]
fn a_generator_paused_across_the_end_still_sends_what_was_due_before_it() {
    // Open loop, 100 req/s for 1 s. The generator is stopped just after
    // its first requests, for 2 s: when it runs again its end is past (by
    // more than the 300 ms it waits for late replies), and nearly all its
    // requests are due. Each is still sent, late and timed from its
    // schedule, answered and counted: the measured window is exactly what
    // the rate promised.
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let bench = Command::new(BIN)
        .args(["bench", "--connect", &server.addr, "--rate", "100", "--duration", "1"])
        .args(["--warmup", "0", "-c", "1", "-P", "200", "--timeout", "300", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Stopped once it has sent its first requests (well before its end),
    // for 2 s: past its end and the 300 ms it waits for late replies.
    let mut p = Peer::connect(server.addr.parse().unwrap());
    wait_until("the bench has sent requests", || {
        field(&p.ask("OP=STS"), "GET").is_some_and(|n| n != "0")
    });
    assert!(signal(bench.id(), "STOP"));
    std::thread::sleep(Duration::from_millis(2000));
    assert!(signal(bench.id(), "CONT"));
    let out = bench.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["requests"].as_u64(), Some(100), "{v}");
    assert!(
        v["latency_us"]["max"].as_u64().unwrap() >= 1_500_000,
        "the late ones waited for the pause: {v}"
    );
}

#[test]
fn json_summary_parses_and_percentiles_do_not_decrease() {
    let (_server, proxy) = spawn_server_and_proxy(&[]);
    let out = Command::new(BIN)
        .args(["bench", "--connect", &proxy.addr, "--duration", "1", "--warmup", "0.2"])
        .args([
            "--connections",
            "4",
            "--pipeline",
            "4",
            "--keys",
            "10",
            "--dist",
            "zipf:0.99",
        ])
        .args(["--mix", "get=80,put=15,add=5", "--batch", "2", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    // Alone on stdout: one line, JSON (the report went to stderr).
    assert_eq!(text.lines().count(), 1, "{text}");
    let last = text.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).expect("the line is JSON");
    assert!(v["requests"].as_u64().unwrap() > 0);
    assert_eq!(v["errors"].as_u64(), Some(0), "{last}");
    assert!(v["throughput"].as_f64().unwrap() > 0.0);
    let l = &v["latency_us"];
    let ps: Vec<u64> = ["p50", "p90", "p99", "p999", "p9999", "max"]
        .iter()
        .map(|k| l[k].as_u64().unwrap())
        .collect();
    assert!(ps.windows(2).all(|w| w[0] <= w[1]), "{ps:?}");
    // Checked against the proxy's own counters (only the bench used it):
    // the hit ratio is the proxy's, and no more replies were counted than
    // the proxy answered.
    let hit = v["hit_ratio"].as_f64().expect("a proxy target reports its hit ratio");
    let sts = Peer::connect(proxy.addr.parse().unwrap()).ask("OP=STS");
    let n = |k: &str| field(&sts, k).unwrap().parse::<f64>().unwrap();
    let (hits, misses) = (n("HITS"), n("MISSES"));
    assert!(hits > 0.0 && misses > 0.0, "{sts}");
    assert!(
        (hit - hits / (hits + misses)).abs() < 1e-3,
        "bench {hit} vs proxy {sts}"
    );
    assert!(v["requests"].as_f64().unwrap() <= n("REQS"), "{last} vs {sts}");
    // Upstream GETs per fetch, the proxy's own ratio too (batched: at
    // most one).
    let per_fetch = v["up_gets_per_fetch"].as_f64().expect("reported for a proxy");
    let want = n("UP_FETCH_GETS") / n("UP_FETCHES");
    assert!((per_fetch - want).abs() < 1e-3 && per_fetch <= 1.0, "{last} vs {sts}");
    // The generator's CPU per reply: its cost, reported with its share.
    let us = v["generator_us_per_reply"].as_f64().expect("said beside the CPU share");
    assert!(us > 0.0 && us < 1e6, "{last}");
    assert_eq!(v["connections"].as_u64(), Some(4));
    assert_eq!(v["mode"].as_str(), Some("closed"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latency us"), "the human report on stderr: {err}");
}

#[test]
fn the_send_interval_is_honoured_and_counted_in_the_latency() {
    // 1000 req/s with passes at least 20 ms apart: each pass carries the
    // requests of the last 20 ms, so the typical request waited about
    // 10 ms for its pass — and that wait is in its latency, timed from its
    // schedule, not hidden. A pass never runs before its plan, so this
    // bound holds however slow the machine is.
    let server = start_server(10);
    let out = Command::new(BIN)
        .args([
            "bench",
            "--connect",
            &server.addr().to_string(),
            "--rate",
            "1000",
            "-n",
            "400",
        ])
        .args(["--send-interval-us", "20000", "--json", "--log-level", "warn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("JSON");
    assert_eq!(v["requests"].as_u64(), Some(400), "{text}");
    assert_eq!(v["send_interval_us"].as_u64(), Some(20000), "{text}");
    let p50 = v["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 >= 8000, "p50 {p50} us: requests left before their pass");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("send passes >= 20000 us apart"), "{err}");
}

#[test]
fn failed_requests_fail_the_run_unless_allowed() {
    // Keys past the table's end: every request gets a 400.
    let server = spawn_node(&[
        "server",
        "--listen",
        "127.0.0.1:0",
        "--size",
        "10",
        "--log-level",
        "warn",
    ]);
    let dir_tmp = TempDir::new("bench-json");
    let dir = dir_tmp.0.clone();
    let json_out = dir.join("run.json");
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["bench", "--connect", &server.addr, "-n", "200", "--keys", "20"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--json-out", json_out.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("ERRORS") && report.contains("400: "), "{report}");
    let v: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&json_out).unwrap().trim()).unwrap();
    let (n, errors) = (v["requests"].as_u64().unwrap(), v["errors"].as_u64().unwrap());
    assert_eq!(n, 200);
    assert!(
        errors > 50 && errors < 150,
        "about half of 20 keys are past 10: {errors}"
    );
    // Allowed up to 60%: exit 0; up to 10%: exit 1.
    assert_eq!(run(&["--max-error-rate", "0.6"]).status.code(), Some(0));
    assert_eq!(run(&["--max-error-rate", "0.1", "-q"]).status.code(), Some(1));
    let _ = std::fs::remove_file(&json_out);
}

#[test]
fn a_run_spreads_over_several_proxies_and_sums_their_counters() {
    let (server, a) = spawn_server_and_proxy(&[]);
    let b = spawn_node(&proxy_args(&server.addr, &[]));
    let targets = format!("{},{}", a.addr, b.addr);
    let out = Command::new(BIN)
        .args(["bench", "--connect", &targets, "--duration", "1", "--warmup", "0.2"])
        .args([
            "--connections",
            "4",
            "--pipeline",
            "2",
            "--mix",
            "get=90,put=10",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(v["errors"].as_u64(), Some(0), "{text}");
    assert_eq!(v["target"].as_str(), Some(targets.as_str()));
    let (mut hits, mut misses) = (0.0, 0.0);
    for p in [&a, &b] {
        let sts = Peer::connect(p.addr.parse().unwrap()).ask("OP=STS");
        let n = |k: &str| field(&sts, k).unwrap().parse::<f64>().unwrap();
        assert!(n("REQS") > 100.0, "both proxies served the run: {sts}");
        assert!(n("INV_RECV") > 0.0, "each saw the other's writes: {sts}");
        (hits, misses) = (hits + n("HITS"), misses + n("MISSES"));
    }
    let hit = v["hit_ratio"].as_f64().unwrap();
    assert!(
        (hit - hits / (hits + misses)).abs() < 1e-3,
        "bench {hit} vs proxies {hits}/{misses}"
    );
}

/// A small in-test store speaking RESP or memcached's text protocol:
/// counts GETs and SETs by key and answers them (SET of the value `666`
/// is refused, to see errors counted).
fn fake_store(memcache: bool) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<(u64, u64)>>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let counts = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let c2 = counts.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let counts = c2.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut line = String::new();
                let mut read = |r: &mut BufReader<std::net::TcpStream>| {
                    line.clear();
                    r.read_line(&mut line)
                        .ok()
                        .filter(|&n| n > 0)
                        .map(|_| line.trim_end().to_string())
                };
                while let Some(first) = read(&mut r) {
                    let words: Vec<String> = if memcache {
                        first.split(' ').map(|w| w.to_string()).collect()
                    } else {
                        // *N, then $len + word N times.
                        let n: usize = first[1..].parse().unwrap();
                        (0..n)
                            .map(|_| {
                                read(&mut r);
                                read(&mut r).unwrap()
                            })
                            .collect()
                    };
                    let reply: String = match (memcache, words[0].to_ascii_lowercase().as_str()) {
                        (true, "set") => {
                            let v = read(&mut r).unwrap();
                            counts.lock().unwrap().1 += 1;
                            if v == "666" {
                                "SERVER_ERROR no\r\n".into()
                            } else {
                                "STORED\r\n".into()
                            }
                        }
                        (true, "get") => {
                            counts.lock().unwrap().0 += 1;
                            format!("VALUE {} 0 1\r\n7\r\nEND\r\n", words[1])
                        }
                        (false, "set") => {
                            counts.lock().unwrap().1 += 1;
                            if words[2] == "666" {
                                "-ERR no\r\n".into()
                            } else {
                                "+OK\r\n".into()
                            }
                        }
                        (false, "get") => {
                            counts.lock().unwrap().0 += 1;
                            "$1\r\n7\r\n".into()
                        }
                        _ => "-ERR unknown\r\n".into(),
                    };
                    if w.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, counts)
}

#[test]
fn the_same_generator_speaks_resp_and_memcache() {
    for memcache in [false, true] {
        let (addr, counts) = fake_store(memcache);
        let protocol = if memcache {
            tablecache::bench::Protocol::Memcache
        } else {
            tablecache::bench::Protocol::Resp
        };
        let r = run(BenchConfig {
            connect: vec![addr],
            duration: Duration::from_secs(3600),
            warmup: Duration::ZERO,
            requests: Some(400),
            connections: 4,
            pipeline: 8,
            keys: 50,
            mix: [50, 50, 0],
            protocol,
            preload: true,
            ..Default::default()
        })
        .unwrap();
        let (gets, sets) = *counts.lock().unwrap();
        // Every request measured is one the store answered; the preload
        // set all 50 keys first.
        assert_eq!(r.requests, 400, "memcache: {memcache}");
        assert_eq!(gets + sets, 400 + 50, "memcache: {memcache}");
        assert!(gets > 100 && sets > 100 + 50, "{gets} gets, {sets} sets");
        assert_eq!(r.error_count(), 0);
        let [p50, _, p99, _, _, max] = r.latency_us;
        assert!(p50 <= p99 && p99 <= max && p50 > 0);
    }
    // A store refusing a preload write (the value 666, key 666) stops the run.
    let (addr, _) = fake_store(false);
    let e = run(BenchConfig {
        connect: vec![addr],
        keys: 700,
        protocol: tablecache::bench::Protocol::Resp,
        preload: true,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("refused a write: -ERR no"), "{e}");
    // ADD cannot be said in RESP: refused before anything is sent.
    let (addr, counts) = fake_store(false);
    let e = run(BenchConfig {
        connect: vec![addr],
        mix: [80, 15, 5],
        protocol: tablecache::bench::Protocol::Resp,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("ADD"), "{e}");
    assert_eq!(*counts.lock().unwrap(), (0, 0));
}

#[test]
fn per_operation_rows_and_the_hdr_distribution_add_up() {
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let hdr_tmp = TempDir::new("bench");
    let hdr = hdr_tmp.join("bench.hgrm");
    let out = Command::new(BIN)
        .args([
            "bench",
            "--connect",
            &server.addr,
            "-n",
            "500",
            "-c",
            "2",
            "--mix",
            "get=70,put=30",
        ])
        .args(["--hdr-out", hdr.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let op = |name: &str, k: &str| v["by_op"][name][k].as_u64().unwrap();
    assert_eq!(op("get", "requests") + op("put", "requests"), 500);
    assert!(v["by_op"]["add"].is_null(), "only the operations of the mix");
    // The server counted the same PUTs.
    let sts = Peer::connect(server.addr.parse().unwrap()).ask("OP=STS");
    assert_eq!(
        field(&sts, "PUT").unwrap().parse::<u64>().unwrap(),
        op("put", "requests"),
        "{sts}"
    );
    assert!(op("get", "p50") <= op("get", "p99") && op("get", "p99") <= op("get", "max"));
    // HdrHistogram's text format: a header, rows of (value, percentile,
    // total count, 1/(1-p)) rising to 500 at percentile 1, and a footer.
    let text = std::fs::read_to_string(&hdr).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{text}"
    );
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 10);
    assert!(rows
        .windows(2)
        .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1] && w[0][2] <= w[1][2]));
    let last = rows.last().unwrap();
    assert_eq!((last[1], last[2], last.len()), (1.0, 500.0, 3));
    assert!(
        (last[0] * 1000.0 - v["latency_us"]["max"].as_f64().unwrap()).abs() <= 1.0,
        "max, in ms"
    );
    assert!(text.contains("Total count    =          500]"), "{text}");
    let _ = std::fs::remove_file(&hdr);
}

#[test]
fn bench_plot_overlays_saved_distributions() {
    let server = spawn_node(&["server", "--listen", "127.0.0.1:0", "--log-level", "warn"]);
    let dir_tmp = TempDir::new("plot");
    let dir = dir_tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    for (name, c) in [("one.hgrm", "1"), ("eight.hgrm", "8")] {
        let mut args = vec!["bench", "--connect", &server.addr, "-n", "300", "-c", c, "-q"];
        let (h, s) = (path(name), path(&format!("{name}.svg")));
        args.extend(["--hdr-out", &h, "--svg", &s]);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let own = std::fs::read_to_string(&s).unwrap();
        assert_eq!(own.matches("class=\"curve\"").count(), 1, "bench --svg draws its run");
    }
    let out = Command::new(BIN)
        .args([
            "bench",
            "plot",
            &path("one.hgrm"),
            &path("eight.hgrm"),
            "-o",
            &path("both.svg"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(path("both.svg")).unwrap();
    assert_eq!(svg.matches("class=\"curve\"").count(), 2);
    assert!(svg.contains(">one.hgrm</text>") && svg.contains(">eight.hgrm</text>"));
    // A file that is not a distribution is refused, by name.
    std::fs::write(path("bad.hgrm"), "hello\n").unwrap();
    let out = Command::new(BIN)
        .args(["bench", "plot", &path("bad.hgrm")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.hgrm: no percentile rows"));
    let _ = std::fs::remove_dir_all(&dir);
}

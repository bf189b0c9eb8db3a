//! The eviction policies live: one client's trace through a proxy with
//! each policy counts exactly the hits `tablecache sim` predicts for that
//! trace and capacity, and DMP lists the cache in the policy's order.

mod common;
use common::*;
use std::time::Duration;

use tablecache::bench::Dist;
use tablecache::cache::{by_name, POLICIES};
use tablecache::proxy::ProxyConfig;
use tablecache::server::ServerConfig;

#[test]
fn a_live_proxy_counts_the_hits_the_simulation_predicts() {
    // A server with a long lease: the proxy never loses it mid-trace (a
    // lapsed lease would turn a hit into a fetch).
    let server = server_node(ServerConfig {
        size: 300,
        lease: Duration::from_secs(600),
        ..Default::default()
    });
    let trace = tablecache::sim::generate(300, 3000, &Dist::Zipf(0.9), 42);
    for policy in POLICIES {
        let proxy = proxy_node(ProxyConfig {
            policy,
            ..proxy_to(server.addr(), 30)
        });
        let mut c = Peer::connect(proxy.addr());
        wait_until("the proxy holds a lease", || {
            field(&c.ask("OP=STS"), "LEASE_MS").is_some_and(|v| v != "0")
        });
        for &k in &trace {
            let r = c.ask(&format!("OP=GET;IND={k}"));
            assert!(r.ends_with("CODE=200"), "{r}");
        }
        let sts = c.ask("OP=STS");
        let hits: u64 = field(&sts, "HITS").unwrap().parse().unwrap();
        let mut sim = by_name(policy, 30).unwrap();
        let predicted = trace.len() as u64 - tablecache::sim::replay(&mut *sim, &trace);
        assert_eq!(hits, predicted, "{policy}: live hits vs simulated");
        assert_eq!(field(&sts, "POLICY").as_deref(), Some(policy));
        // DMP: the cache in the policy's eviction order, as simulated.
        let want: Vec<String> = sim.entries().iter().map(|(i, _)| i.to_string()).collect();
        let dmp = c.ask("OP=DMP");
        assert_eq!(field(&dmp, "IND").unwrap(), want.join(","), "{policy}");
    }
}

#[test]
fn the_binary_takes_a_policy_and_refuses_an_unknown_one() {
    let (_s, p) = spawn_server_and_proxy(&["--policy", "sieve"]);
    let sts = Peer::connect(p.addr.parse().unwrap()).ask("OP=STS");
    assert_eq!(field(&sts, "POLICY").as_deref(), Some("sieve"));
    let out = std::process::Command::new(BIN)
        .args(["proxy", "--policy", "random"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s3fifo"),
        "lists the policies"
    );
}

#[test]
fn sim_records_and_replays_a_bench_trace() {
    let (_s, p) = spawn_server_and_proxy(&["--capacity", "4", "--policy", "lru"]);
    let file_tmp = TempDir::new("trace");
    let file = file_tmp.join("trace.txt");
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            "--connect",
            &p.addr,
            "-n",
            "500",
            "--keys",
            "10",
            "--distribution",
            "zipf:1.0",
            "-q",
        ])
        .arg("--record")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = std::fs::read_to_string(&file).unwrap();
    assert_eq!(trace.lines().count(), 500, "one index a request");
    // A GET-only run draws exactly the keys sim generates from the same
    // seed: a live run and a simulation can be compared without a record.
    let generated = tablecache::sim::generate(
        10,
        500,
        &Dist::Zipf(1.0),
        tablecache::bench::BenchConfig::default().seed,
    );
    let recorded: Vec<i64> = trace.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(recorded, generated);
    // The live proxy's hits over the run are what sim says for that trace.
    let sts = Peer::connect(p.addr.parse().unwrap()).ask("OP=STS");
    let hits: u64 = field(&sts, "HITS").unwrap().parse().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["sim", "--capacities", "4", "--json", "--trace"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lru = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "lru")
        .unwrap();
    assert_eq!(lru["requests"].as_u64(), Some(500));
    assert_eq!(500 - lru["misses"].as_u64().unwrap(), hits, "sim {lru} vs proxy {sts}");
    let min = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy"] == "min")
        .unwrap();
    assert!(min["misses"].as_u64() <= lru["misses"].as_u64());
    let _ = std::fs::remove_file(&file);
}

//! The soak, small enough for every run: 10,000 operations through three
//! proxies (each behind a link) and straight to the server, about fifty
//! faults, every operation recorded and the history checked. And the
//! `check` command on histories with a planted fault.

mod common;
use common::*;
use std::process::Command;

#[test]
fn ten_thousand_operations_under_fifty_faults_stay_linearizable() {
    let dir = TempDir::new("soak");
    let out = Command::new(BIN)
        .args([
            "soak",
            "--ops",
            "10000",
            "--faults",
            "50",
            "--proxies",
            "3",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&dir.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("linearizable: 0 violations; lost acknowledged writes 0"),
        "{text}"
    );
    let faults: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("faults "))
        .and_then(|l| l.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(faults >= 40, "{faults} faults: {text}");
    // Every kind of fault was done at least once.
    for kind in [
        "kill-server",
        "freeze-proxy",
        "partition",
        "one-way-drop",
        "delay-spike",
        "reset",
    ] {
        assert!(text.contains(kind), "no {kind}: {text}");
    }
    // The history is there, one operation a line, and checks again.
    let history = dir.join("history.jsonl");
    assert!(std::fs::read_to_string(&history).unwrap().lines().count() > 10_000);
    let again = Command::new(BIN).arg("check").arg(&history).output().unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn check_finds_a_planted_stale_read_and_a_lost_write() {
    let dir = TempDir::new("check");
    let write = |name: &str, lines: &[&str]| {
        let p = dir.join(name);
        std::fs::write(&p, lines.join("\n")).unwrap();
        p
    };
    let good = write(
        "good.jsonl",
        &[
            r#"{"client":0,"conn":0,"seq":0,"op":"PUT","ind":[1],"data":[5],"call":0,"ret":10,"outcome":"ok"}"#,
            r#"{"client":1,"conn":1,"seq":0,"op":"GET","ind":[1],"call":20,"ret":30,"outcome":"ok","values":[5]}"#,
        ],
    );
    let stale = write(
        "stale.jsonl",
        &[
            r#"{"client":0,"conn":0,"seq":0,"op":"PUT","ind":[1],"data":[5],"call":0,"ret":10,"outcome":"ok"}"#,
            r#"{"client":0,"conn":0,"seq":1,"op":"PUT","ind":[1],"data":[6],"call":11,"ret":15,"outcome":"ok"}"#,
            r#"{"client":1,"conn":1,"seq":0,"op":"GET","ind":[1],"call":20,"ret":30,"outcome":"ok","values":[5]}"#,
        ],
    );
    let run = |p: &std::path::Path| {
        let o = Command::new(BIN).arg("check").arg(p).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string())
    };
    let (code, text) = run(&good);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("linearizable; 0 lost acknowledged writes"), "{text}");
    let (code, text) = run(&stale);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("NOT linearizable") && text.contains("1 lost acknowledged writes"),
        "{text}"
    );
    assert!(
        text.contains("LOST: c1/1#0 20..30 GET 1 -> [5] missed c0/0#1 11..15 PUT 1=6 -> ok"),
        "{text}"
    );
    let bad = write("bad.jsonl", &["{nope"]);
    assert_eq!(run(&bad).0, Some(2));
}

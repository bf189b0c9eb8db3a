//! The table server over loopback: every protocol example, framing edge
//! cases, pipelining, errors, limits, many clients, half-close.

mod common;
use common::*;
use std::io::Write;
use std::net::Shutdown;

#[test]
fn seed_examples_round_trip() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    assert_eq!(p.ask("OP=PUT;IND=1,2;DATA=10,-3"), "OP=PUT;IND=1,2;DATA=10,-3;CODE=200");
    assert_eq!(p.ask("OP=GET;IND=1,2"), "OP=GET;IND=1,2;DATA=10,-3;CODE=200");
    assert_eq!(
        p.ask("OP=PUT;IND=0,4,7;DATA=1,2,3"),
        "OP=PUT;IND=0,4,7;DATA=1,2,3;CODE=200"
    );
    assert_eq!(p.ask("OP=ADD;IND=0,4,7"), "OP=ADD;IND=0,4,7;DATA=6;CODE=200");
    assert_eq!(p.ask("OP=CLR"), "OP=CLR;CODE=200");
    assert_eq!(p.ask("OP=GET;IND=1,2,1"), "OP=GET;IND=1,2,1;DATA=0,0,0;CODE=200");
    assert_eq!(p.ask("OP=GET;CODE=1"), "OP=GET;CODE=400;MSG=unknown field CODE");
    assert_eq!(p.ask("OP=GET;IND=12"), "OP=GET;CODE=400;MSG=index 12 out of range 0..9");
    node.stop().unwrap();
}

#[test]
fn trailing_semicolon_crlf_and_blank_lines() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    p.send(b"\n\r\nOP=PUT;IND=3;DATA=9;\r\n\n");
    assert_eq!(p.line(), "OP=PUT;IND=3;DATA=9;CODE=200");
    assert_eq!(
        p.ask("OP=ADD;IND=3,3,3,3,3,3,3"),
        "OP=ADD;IND=3,3,3,3,3,3,3;DATA=63;CODE=200"
    );
}

#[test]
fn a_message_one_byte_at_a_time() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    // A first whole line makes this a line connection for good (a pause
    // inside a first message could otherwise read as bare framing).
    assert_eq!(p.ask("OP=GET;IND=5"), "OP=GET;IND=5;DATA=0;CODE=200");
    for b in b"OP=PUT;IND=5;DATA=-77\n" {
        p.send(&[*b]);
        p.stream.flush().unwrap();
    }
    assert_eq!(p.line(), "OP=PUT;IND=5;DATA=-77;CODE=200");
    assert_eq!(p.ask("OP=GET;IND=5"), "OP=GET;IND=5;DATA=-77;CODE=200");
}

#[test]
fn two_and_a_half_messages_in_one_write() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    p.send(b"OP=PUT;IND=1;DATA=1\nOP=GET;IND=1\nOP=GET;I");
    assert_eq!(p.line(), "OP=PUT;IND=1;DATA=1;CODE=200");
    assert_eq!(p.line(), "OP=GET;IND=1;DATA=1;CODE=200");
    p.send(b"ND=1,0\n");
    assert_eq!(p.line(), "OP=GET;IND=1,0;DATA=1,0;CODE=200");
}

#[test]
fn a_500_deep_pipeline_is_answered_in_order() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    let mut batch = String::new();
    for i in 0..500 {
        batch.push_str(&format!("OP=PUT;IND={};DATA={i}\nOP=GET;IND={}\n", i % 10, i % 10));
    }
    p.send(batch.as_bytes());
    for i in 0..500 {
        assert_eq!(p.line(), format!("OP=PUT;IND={};DATA={i};CODE=200", i % 10));
        assert_eq!(p.line(), format!("OP=GET;IND={};DATA={i};CODE=200", i % 10));
    }
}

#[test]
fn every_bad_request_gets_400_and_the_connection_lives_on() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    let cases = [
        ("IND=1", "CODE=400;MSG=missing OP"),
        ("OP=MUL;IND=1", "CODE=400;MSG=unknown OP MUL"),
        ("OP=GET", "OP=GET;CODE=400;MSG=missing IND"),
        ("OP=ADD;IND=", "OP=ADD;CODE=400;MSG=empty number in IND"),
        ("OP=GET;IND=1,,2", "OP=GET;CODE=400;MSG=empty number in IND"),
        ("OP=GET;IND=one", "OP=GET;CODE=400;MSG=not a number in IND"),
        ("OP=GET;IND=10", "OP=GET;CODE=400;MSG=index 10 out of range 0..9"),
        ("OP=GET;IND=-1", "OP=GET;CODE=400;MSG=index -1 out of range 0..9"),
        (
            "OP=PUT;IND=1,2;DATA=5",
            "OP=PUT;CODE=400;MSG=IND has 2 items but DATA has 1",
        ),
        (
            "OP=PUT;IND=1;DATA=9223372036854775808",
            "OP=PUT;CODE=400;MSG=number over i64 in DATA",
        ),
        ("OP=GET;IND=1;IND=2", "OP=GET;CODE=400;MSG=repeated field IND"),
        ("OP=GET;IND=1;X=2", "OP=GET;CODE=400;MSG=unknown field X"),
        ("OP=CLR;IND=1", "OP=CLR;CODE=400;MSG=CLR takes no IND"),
        ("OP=GET;IND=1;;", "OP=GET;CODE=400;MSG=empty field"),
        ("garbage", "CODE=400;MSG=field without ="),
    ];
    for (req, want) in cases {
        assert_eq!(p.ask(req), want, "request {req:?}");
        assert_eq!(p.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200", "after {req:?}");
    }
    p.send(b"OP=GET;IND=\xff\xfe\n");
    assert_eq!(p.line(), "OP=GET;CODE=400;MSG=message is not UTF-8");
    // ADD overflow.
    p.ask("OP=PUT;IND=0,1;DATA=9223372036854775807,1");
    assert_eq!(p.ask("OP=ADD;IND=0,1"), "OP=ADD;CODE=400;MSG=ADD overflow");
    assert_eq!(p.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=1;CODE=200");
}

#[test]
fn an_oversize_message_gets_413_and_the_rest_of_its_line_is_skipped() {
    let limits = tablecache::frontend::Limits {
        max_message_bytes: 100,
        ..Default::default()
    };
    let node = start_server_with(10, limits);
    let mut p = Peer::connect(node.addr());
    let long = format!("OP=PUT;IND={}", "1,".repeat(5000));
    p.send(long.as_bytes());
    assert_eq!(p.line(), "OP=PUT;CODE=413;MSG=message over 100 bytes");
    // The rest of that line, arriving later, is skipped, not parsed.
    p.send(b"1,1,1;DATA=5\nOP=GET;IND=1\n");
    assert_eq!(p.line(), "OP=GET;IND=1;DATA=0;CODE=200");
    // A whole oversize line in one go.
    p.send(format!("{long}\nOP=GET;IND=2\n").as_bytes());
    assert_eq!(p.line(), "OP=PUT;CODE=413;MSG=message over 100 bytes");
    assert_eq!(p.line(), "OP=GET;IND=2;DATA=0;CODE=200");
}

#[test]
fn a_request_then_half_close_is_answered_before_closing() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    p.send(b"OP=PUT;IND=4;DATA=44\nOP=GET;IND=4\n");
    p.stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(p.line(), "OP=PUT;IND=4;DATA=44;CODE=200");
    assert_eq!(p.line(), "OP=GET;IND=4;DATA=44;CODE=200");
    assert!(p.closed_by_peer(), "the server closes after answering");
}

#[test]
fn a_thousand_concurrent_clients() {
    let node = start_server(10);
    let mut peers: Vec<Peer> = (0..1000).map(|_| Peer::connect(node.addr())).collect();
    // Every connection is open at once; each sends before any reads.
    for (i, p) in peers.iter_mut().enumerate() {
        p.send(format!("OP=ADD;IND={},{}\n", i % 10, (i + 1) % 10).as_bytes());
    }
    for (i, p) in peers.iter_mut().enumerate() {
        assert_eq!(
            p.line(),
            format!("OP=ADD;IND={},{};DATA=0;CODE=200", i % 10, (i + 1) % 10)
        );
    }
    let sts = peers[0].ask("OP=STS");
    assert_eq!(field(&sts, "CONNS").as_deref(), Some("1000"), "{sts}");
    drop(peers);
    node.stop().unwrap();
}

#[test]
fn stats_and_dump() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    p.ask("OP=PUT;IND=2;DATA=5");
    p.ask("OP=GET;IND=99");
    let sts = p.ask("OP=STS");
    assert_eq!(field(&sts, "ROLE").as_deref(), Some("server"));
    assert_eq!(field(&sts, "PUT").as_deref(), Some("1"));
    assert_eq!(field(&sts, "ERR400").as_deref(), Some("1"));
    assert!(sts.ends_with(";CODE=200"), "{sts}");
    assert_eq!(
        p.ask("OP=DMP"),
        "OP=DMP;SIZE=10;IND=0,1,2,3,4,5,6,7,8,9;DATA=0,0,5,0,0,0,0,0,0,0;CODE=200"
    );
}

#[test]
fn a_big_table() {
    let node = start_server(1_000_000);
    let mut p = Peer::connect(node.addr());
    assert_eq!(p.ask("OP=PUT;IND=999999;DATA=7"), "OP=PUT;IND=999999;DATA=7;CODE=200");
    assert_eq!(p.ask("OP=GET;IND=999999,0"), "OP=GET;IND=999999,0;DATA=7,0;CODE=200");
    assert_eq!(
        p.ask("OP=GET;IND=1000000"),
        "OP=GET;CODE=400;MSG=index 1000000 out of range 0..999999"
    );
    assert_eq!(
        p.ask("OP=DMP"),
        "OP=DMP;SIZE=1000000;SPARSE=1;IND=999999;DATA=7;CODE=200"
    );
}

#[test]
fn a_dump_lists_every_entry_of_a_table_of_1024_and_only_the_set_ones_above() {
    for (size, sparse) in [(1024, false), (1025, true)] {
        let node = start_server(size);
        let mut p = Peer::connect(node.addr());
        assert!(p.ask("OP=PUT;IND=5;DATA=7").ends_with("CODE=200"));
        let dmp = p.ask("OP=DMP");
        assert_eq!(
            field(&dmp, "SPARSE").is_some(),
            sparse,
            "{size}: {}",
            &dmp[..dmp.len().min(60)]
        );
        let listed = field(&dmp, "IND").unwrap().split(',').count();
        assert_eq!(listed, if sparse { 1 } else { 1024 }, "{size}");
    }
}

#[test]
fn stop_closes_connections_and_returns() {
    let node = start_server(10);
    let mut p = Peer::connect(node.addr());
    assert_eq!(p.ask("OP=GET;IND=0"), "OP=GET;IND=0;DATA=0;CODE=200");
    node.stop().unwrap();
    assert!(p.closed_by_peer());
}

#[test]
fn closed_connections_leave_no_timers_behind() {
    let server = start_server(10);
    for _ in 0..2000 {
        let mut p = Peer::connect(server.addr());
        assert!(p.ask("OP=GET;IND=1").ends_with("CODE=200"));
    }
    let mut p = Peer::connect(server.addr());
    let mut sts = String::new();
    wait_until("every other connection is closed", || {
        sts = p.ask("OP=STS");
        field(&sts, "CONNS").as_deref() == Some("1")
    });
    let timers: usize = field(&sts, "TIMERS").unwrap().parse().unwrap();
    assert!(
        timers <= 2,
        "{timers} timers left after 2,000 connections came and went"
    );
}

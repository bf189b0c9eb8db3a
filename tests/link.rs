//! `tablecache link`: each shape and fault does what docs/protocol.md says,
//! seen from both ends: a test's own upstream (a plain listener) or a real
//! server behind the link, and a client in front of it.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use tablecache::link::pipe::Shape;
use tablecache::link::{LinkConfig, LinkNode};
use tablecache::reactor::NodeHandle;

/// A link in front of `upstream`, shaped `shape` both ways, with its
/// control address.
fn link(upstream: SocketAddr, shape: Shape, buffer: usize) -> (NodeHandle, SocketAddr) {
    let (bound, control) = LinkNode::bind(LinkConfig {
        listen: any_addr(),
        upstream,
        control: Some(any_addr()),
        shapes: [shape, shape],
        buffer_bytes: buffer,
        max_connections: 64,
        seed: 7,
    })
    .unwrap();
    (bound.spawn().unwrap(), control.unwrap())
}

/// A test's upstream: accepts one connection through the link.
fn upstream() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn accept(l: &TcpListener) -> TcpStream {
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    s
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    s.read_exact(&mut v).unwrap();
    v
}

fn sts(control: &mut Peer, key: &str) -> u64 {
    field(&control.ask("OP=STS"), key).unwrap().parse().unwrap()
}

#[test]
fn bytes_pass_both_ways_after_their_delay() {
    let server = start_server(10);
    let (l, control) = link(
        server.addr(),
        Shape {
            delay: Duration::from_millis(30),
            ..Shape::default()
        },
        64 * 1024,
    );
    let mut p = Peer::connect(l.addr());
    assert_eq!(p.ask("OP=PUT;IND=1;DATA=7"), "OP=PUT;IND=1;DATA=7;CODE=200");
    let t = Instant::now();
    assert_eq!(p.ask("OP=GET;IND=1"), "OP=GET;IND=1;DATA=7;CODE=200");
    // 30 ms each way: a round trip cannot take less than 60.
    assert!(t.elapsed() >= Duration::from_millis(60), "{:?}", t.elapsed());
    let mut c = Peer::connect(control);
    assert!(sts(&mut c, "UP_BYTES") > 0 && sts(&mut c, "DOWN_BYTES") > 0);
    assert_eq!(sts(&mut c, "CONNS"), 1);
}

#[test]
fn jitter_never_reorders_the_bytes_of_a_direction() {
    let server = start_server(10);
    let (l, _c) = link(
        server.addr(),
        Shape {
            jitter: Duration::from_millis(3),
            ..Shape::default()
        },
        64 * 1024,
    );
    let mut p = Peer::connect(l.addr());
    // Many requests in flight at once, each read a different jitter: the
    // replies must come back whole and in order.
    let mut batch = String::new();
    for i in 0..300 {
        batch.push_str(&format!("OP=PUT;IND={};DATA={i}\n", i % 10));
    }
    p.send(batch.as_bytes());
    for i in 0..300 {
        assert_eq!(p.line(), format!("OP=PUT;IND={};DATA={i};CODE=200", i % 10));
    }
}

#[test]
fn a_blackhole_holds_everything_until_healed() {
    let (up, ua) = upstream();
    let (l, control) = link(ua, Shape::default(), 64 * 1024);
    let mut c = Peer::connect(control);
    assert_eq!(
        c.ask("OP=FAULT;KIND=HOLD;DIR=BOTH"),
        "OP=FAULT;KIND=HOLD;DIR=BOTH;CODE=200"
    );
    let mut cl = client(l.addr());
    let mut server = accept(&up);
    cl.write_all(b"hello\n").unwrap();
    wait_until("the link holds the 6 bytes", || sts(&mut c, "UP_HELD") == 6);
    server.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 16];
    let got = server.read(&mut buf);
    assert!(got.is_err(), "nothing passes a blackhole: {got:?}");
    assert_eq!(
        c.ask("OP=FAULT;KIND=NONE;DIR=BOTH"),
        "OP=FAULT;KIND=NONE;DIR=BOTH;CODE=200"
    );
    server.set_read_timeout(Some(patience())).unwrap();
    assert_eq!(read_n(&mut server, 6), b"hello\n");
}

#[test]
fn a_one_way_drop_leaves_the_other_way_working() {
    let server = start_server(10);
    let (l, control) = link(server.addr(), Shape::default(), 64 * 1024);
    let mut c = Peer::connect(control);
    assert_eq!(
        c.ask("OP=FAULT;KIND=DROP;DIR=DOWN"),
        "OP=FAULT;KIND=DROP;DIR=DOWN;CODE=200"
    );
    let mut p = client(l.addr());
    p.write_all(b"OP=PUT;IND=3;DATA=33\n").unwrap();
    // The request got through: the server has it.
    let mut direct = Peer::connect(server.addr());
    wait_until("the PUT reached the server", || {
        direct.ask("OP=GET;IND=3") == "OP=GET;IND=3;DATA=33;CODE=200"
    });
    // Its reply did not come back, and was counted as dropped.
    wait_until("the reply was dropped", || sts(&mut c, "DOWN_DROPPED") > 0);
    p.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 64];
    assert!(p.read(&mut buf).is_err(), "no reply comes back");
}

#[test]
fn a_reset_resets_both_sides() {
    let (up, ua) = upstream();
    let (l, control) = link(ua, Shape::default(), 64 * 1024);
    let mut cl = client(l.addr());
    let mut server = accept(&up);
    cl.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut server, 1), b"x");
    let mut c = Peer::connect(control);
    assert_eq!(c.ask("OP=FAULT;KIND=RESET"), "OP=FAULT;KIND=RESET;CONNS=1;CODE=200");
    for (who, s) in [("client", &mut cl), ("upstream", &mut server)] {
        let mut buf = [0u8; 8];
        let e = s.read(&mut buf);
        assert!(
            matches!(&e, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{who} reads {e:?}, not a reset"
        );
    }
    assert_eq!(sts(&mut c, "RESETS"), 1);
}

#[test]
fn slices_arrive_in_small_pieces_and_a_limit_closes_after_its_bytes() {
    let (up, ua) = upstream();
    let (l, control) = link(ua, Shape::default(), 64 * 1024);
    let mut c = Peer::connect(control);
    assert_eq!(c.ask("OP=SET;DIR=UP;SLICE=3;SLICE_US=3000"), "OP=SET;CODE=200");
    let mut cl = client(l.addr());
    let mut server = accept(&up);
    cl.write_all(b"OP=GET;IND=1\n").unwrap();
    let mut got = Vec::new();
    while got.len() < 13 {
        let mut buf = [0u8; 64];
        let n = server.read(&mut buf).unwrap();
        assert!(n > 0 && n <= 3, "a read of {n} bytes through 3-byte slices");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"OP=GET;IND=1\n");
    // A limit: 10 more bytes pass, then both sides are reset.
    assert_eq!(c.ask("OP=SET;DIR=UP;SLICE=0;LIMIT=23"), "OP=SET;CODE=200");
    cl.write_all(b"0123456789abcdef").unwrap();
    let mut rest = Vec::new();
    let end = loop {
        let mut buf = [0u8; 64];
        match server.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => break e.kind().to_string(),
        }
    };
    assert_eq!(rest, b"0123456789", "then {end}");
}

#[test]
fn a_half_close_passes_and_replies_still_come_back() {
    let (up, ua) = upstream();
    let (l, _c) = link(
        ua,
        Shape {
            delay: Duration::from_millis(5),
            ..Shape::default()
        },
        64 * 1024,
    );
    let mut cl = client(l.addr());
    let mut server = accept(&up);
    cl.write_all(b"last request\n").unwrap();
    cl.shutdown(std::net::Shutdown::Write).unwrap();
    // The upstream reads the bytes, then EOF: the FIN came after them.
    assert_eq!(read_n(&mut server, 13), b"last request\n");
    let mut buf = [0u8; 8];
    assert_eq!(server.read(&mut buf).unwrap(), 0);
    // It still answers, then closes; the client gets both.
    server.write_all(b"answer\n").unwrap();
    drop(server);
    assert_eq!(read_n(&mut cl, 7), b"answer\n");
    assert_eq!(cl.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_blackholed_link_holds_no_more_than_its_buffer() {
    let (up, ua) = upstream();
    let cap = 16 * 1024;
    let (l, control) = link(ua, Shape::default(), cap);
    let mut c = Peer::connect(control);
    c.ask("OP=FAULT;KIND=HOLD;DIR=UP");
    let mut cl = client(l.addr());
    let _server = accept(&up);
    cl.set_nonblocking(true).unwrap();
    // Write until the client's own socket is full: the link stopped
    // reading at its bound, so the bytes back up into the kernel.
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    let deadline = Instant::now() + patience();
    loop {
        match cl.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Full now; once the link has read all it will, stop.
                if sts(&mut c, "UP_HELD") as usize == cap {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the client's socket never filled ({sent} bytes sent)"
        );
        assert!(
            sent < 256 << 20,
            "256 MiB went into a blackhole: the link does not push back"
        );
    }
    assert!(sent > cap, "{sent}");
    assert_eq!(sts(&mut c, "UP_HELD") as usize, cap, "held at most --buffer-bytes");
}

#[test]
fn control_mistakes_are_answered_and_a_long_line_closes() {
    let (_up, ua) = upstream();
    let (_l, control) = link(ua, Shape::default(), 64 * 1024);
    let mut c = Peer::connect(control);
    let r = c.ask("OP=SET;DIR=SIDEWAYS;DELAY_MS=1");
    assert!(r.starts_with("OP=ERR;CODE=400;MSG=DIR=SIDEWAYS"), "{r}");
    let r = c.ask("OP=GET;IND=1");
    assert!(r.contains("CODE=400"), "{r}");
    c.send(&vec![b'A'; 4096]);
    assert!(c.line().contains("at most 512 bytes"));
    assert!(c.closed_by_peer());
}

//! Bare (unterminated) framing, with small Python programs written in the
//! naive style (tests/peers/): one send() per message, one recv(1024) per
//! reply, no terminators, a server that accepts once.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tablecache::framing::Framing;
use tablecache::proxy::ProxyConfig;

const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");

fn naive_client(addr: &str, msgs: &[&str]) -> Vec<String> {
    let out = Command::new("python3")
        .arg(format!("{PEERS}/naive_client.py"))
        .arg(addr)
        .args(msgs)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "naive client failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.to_string())
        .collect()
}

struct NaiveServer {
    child: Child,
    addr: String,
}

impl NaiveServer {
    fn start(args: &[&str]) -> NaiveServer {
        let mut child = Command::new("python3")
            .arg(format!("{PEERS}/naive_server.py"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        NaiveServer {
            child,
            addr: format!("127.0.0.1:{}", port.trim()),
        }
    }
}

impl Drop for NaiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy_framed(upstream: &str, framing: Framing) -> tablecache::NodeHandle {
    proxy_node(ProxyConfig {
        upstream_framing: framing,
        ..proxy_to(upstream.parse().unwrap(), 5)
    })
}

#[test]
fn a_naive_client_against_the_server() {
    let server = start_server(10);
    let got = naive_client(
        &server.addr().to_string(),
        &[
            "OP=PUT;IND=1,2;DATA=10,-3",
            "OP=GET;IND=1,2",
            "OP=ADD;IND=1,2",
            "OP=GET;IND=12",
            "OP=CLR",
        ],
    );
    assert_eq!(
        got,
        [
            "OP=PUT;IND=1,2;DATA=10,-3;CODE=200",
            "OP=GET;IND=1,2;DATA=10,-3;CODE=200",
            "OP=ADD;IND=1,2;DATA=7;CODE=200",
            "OP=GET;CODE=400;MSG=index 12 out of range 0..9",
            "OP=CLR;CODE=200",
        ]
    );
}

#[test]
fn a_naive_client_against_the_proxy() {
    let server = start_server(10);
    let proxy = proxy_framed(&server.addr().to_string(), Framing::Line);
    let got = naive_client(
        &proxy.addr().to_string(),
        &["OP=PUT;IND=3;DATA=33", "OP=GET;IND=3,4", "OP=GET;IND=3"],
    );
    assert_eq!(
        got,
        [
            "OP=PUT;IND=3;DATA=33;CODE=200",
            "OP=GET;IND=3,4;DATA=33,0;CODE=200",
            "OP=GET;IND=3;DATA=33;CODE=200"
        ]
    );
    // A line client on the same proxy is unaffected.
    let mut line = Peer::connect(proxy.addr());
    assert_eq!(line.ask("OP=GET;IND=3"), "OP=GET;IND=3;DATA=33;CODE=200");
}

#[test]
fn the_proxy_in_front_of_a_naive_server_sends_one_request_at_a_time() {
    let log_tmp = TempDir::new("naive");
    let log = log_tmp.join("naive.log");
    let _ = std::fs::remove_file(&log);
    let naive = NaiveServer::start(&["--log", log.to_str().unwrap()]);
    let proxy = proxy_framed(&naive.addr, Framing::Bare);
    let mut a = Peer::connect(proxy.addr());
    let mut b = Peer::connect(proxy.addr());
    // Pipelined and concurrent: the proxy must queue and serialise them.
    a.send(b"OP=PUT;IND=1,2;DATA=10,20\nOP=GET;IND=1,2,3\nOP=GET;IND=4\n");
    b.send(b"OP=ADD;IND=5,6\nOP=CLR\n");
    assert_eq!(a.line(), "OP=PUT;IND=1,2;DATA=10,20;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=1,2,3;DATA=10,20,0;CODE=200");
    assert_eq!(a.line(), "OP=GET;IND=4;DATA=0;CODE=200");
    assert_eq!(b.line(), "OP=ADD;IND=5,6;DATA=0;CODE=200");
    assert_eq!(b.line(), "OP=CLR;CODE=200");
    // Every message reached the naive server on its own.
    let seen = std::fs::read_to_string(&log).unwrap();
    for line in seen.lines() {
        assert_eq!(line.matches("OP=").count(), 1, "two messages in one recv: {line:?}");
    }
    assert_eq!(seen.lines().count(), 5, "{seen}");
    let _ = std::fs::remove_file(&log);
    // One GET on the wire per fetch: a naive server is never sent a batch.
    let sts = a.ask("OP=STS");
    assert_eq!(field(&sts, "UP_FETCHES").as_deref(), Some("3"), "{sts}");
    assert_eq!(field(&sts, "UP_FETCH_GETS").as_deref(), Some("3"), "{sts}");
}

#[test]
fn a_naive_servers_error_codes_pass_through_and_a_missing_code_is_success() {
    let naive = NaiveServer::start(&["--no-code"]);
    let proxy = proxy_framed(&naive.addr, Framing::Bare);
    let mut c = Peer::connect(proxy.addr());
    assert_eq!(c.ask("OP=PUT;IND=1;DATA=5"), "OP=PUT;IND=1;DATA=5;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=1,2"), "OP=GET;IND=1,2;DATA=5,0;CODE=200");
    assert_eq!(c.ask("OP=GET;IND=7"), "OP=GET;CODE=404;MSG=no such entry");
    assert_eq!(c.ask("OP=PUT;IND=9;DATA=1"), "OP=PUT;CODE=500");
    assert_eq!(
        c.ask("OP=GET;IND=1"),
        "OP=GET;IND=1;DATA=5;CODE=200",
        "a hit: the refused PUT changed nothing"
    );
    assert_eq!(c.ask("OP=DMP"), "OP=DMP;CAPACITY=5;IND=1,2;DATA=5,0;CODE=200");
}

#[test]
fn the_bare_client_against_a_naive_server() {
    let naive = NaiveServer::start(&[]);
    let out = Command::new(BIN)
        .args(["client", "--framing", "bare", "--connect", &naive.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"put 1=4 2=5\nadd 1 2\nget 7\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n9\nerror 404: no such entry\n"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_line_peer_whose_message_arrives_in_pieces_stays_in_line_mode() {
    let server = start_server(10);
    let mut p = Peer::connect(server.addr());
    // The first message ends with a newline: a line connection for good.
    p.send(b"OP=PUT;IND=1;DATA=8\n");
    assert_eq!(p.line(), "OP=PUT;IND=1;DATA=8;CODE=200");
    // Later messages may pause far longer than the bare window mid-line.
    for piece in [&b"OP=GET;"[..], b"IND=", b"1,", b"1"] {
        p.send(piece);
        std::thread::sleep(Duration::from_millis(60));
    }
    p.send(b"\n");
    assert_eq!(p.line(), "OP=GET;IND=1,1;DATA=8,8;CODE=200");
    let sts = p.ask("OP=STS");
    assert_eq!(field(&sts, "ERR400"), None, "no piece was taken as a message: {sts}");
}

#[test]
fn a_bare_message_ended_by_fin_is_answered_at_once() {
    use std::io::{Read, Write};
    let server = start_server(10);
    let mut s = std::net::TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(patience())).unwrap();
    s.write_all(b"OP=ADD;IND=1,2").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "OP=ADD;IND=1,2;DATA=0;CODE=200", "no terminator, then close");
}

#[test]
fn a_bare_server_that_closes_an_idle_connection_is_kept_busy_from_then_on() {
    // A naive server that closes connections quiet for half a second or
    // more: asked nothing, the proxy learns the policy from the close and
    // pings the next connection when it has been quiet for a third of the
    // silence the server allowed.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = proxy_framed(&l.local_addr().unwrap().to_string(), Framing::Bare);
    let (first, _) = l.accept().unwrap();
    // The silence counts from when the proxy saw its connect complete.
    let mut c = Peer::connect(proxy.addr());
    wait_until("the proxy connected", || {
        field(&c.ask("OP=STS"), "UPSTREAM").as_deref() == Some("up")
    });
    std::thread::sleep(Duration::from_millis(700));
    drop(first);
    let (mut next, _) = l.accept().unwrap();
    next.set_read_timeout(Some(patience())).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut next, &mut buf).expect("a keepalive before the patience ran out");
    assert_eq!(&buf[..n], b"OP=GET;IND=0", "the keepalive: a read of index 0");
}

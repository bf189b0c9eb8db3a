//! A proxy and a server, warm, allocate nothing per request: misses (the
//! proxy fetches each index from the server), hits, and writes through.
//! Counted with a global allocator over every thread of this test binary,
//! which runs this one test alone: the nodes' threads, and a client of raw
//! sockets and a fixed buffer that allocates nothing itself.

mod common;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tablecache::server::ServerConfig;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Sends `msg` and reads one reply line into `buf`; the reply's length.
fn ask(s: &mut TcpStream, msg: &[u8], buf: &mut [u8; 8192]) -> usize {
    s.write_all(msg).unwrap();
    let mut n = 0;
    loop {
        let r = s.read(&mut buf[n..]).unwrap();
        assert!(r > 0, "closed");
        n += r;
        if buf[..n].ends_with(b"\n") {
            return n;
        }
    }
}

/// `OP=<op>;IND=<k>...` into a fixed buffer (no allocation).
fn message<'a>(out: &'a mut [u8; 64], op: &str, k: u64, put: bool) -> &'a [u8] {
    let mut w: &mut [u8] = &mut out[..];
    if put {
        writeln!(w, "OP=PUT;IND={k};DATA={k}").unwrap();
    } else {
        writeln!(w, "OP={op};IND={k}").unwrap();
    }
    let left = w.len();
    &out[..64 - left]
}

#[test]
fn warm_nodes_allocate_nothing_per_request() {
    let server = server_node(ServerConfig {
        size: 100_000,
        ..Default::default()
    });
    let proxy = proxy_node(proxy_to(server.addr(), 5));
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_nodelay(true).unwrap();
    let (mut buf, mut msg) = ([0u8; 8192], [0u8; 64]);
    // Wait for the lease (STS says so), then warm every path up.
    for _ in 0..1000 {
        let n = ask(&mut s, b"OP=STS\n", &mut buf);
        if !String::from_utf8_lossy(&buf[..n]).contains("LEASE_MS=0;") {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Per kind of request: 300 of them, after two warm-up rounds. A miss
    // is a GET of a key not cached (1000 keys through 5 entries), a hit a
    // GET of the key just fetched, then a write through and an ADD.
    let kinds: [(&str, &str, bool); 4] = [
        ("miss", "GET", false),
        ("hit", "GET", false),
        ("write", "", true),
        ("add", "ADD", false),
    ];
    let mut counted = vec![0usize; 4];
    for round in 0..3u64 {
        for k in 0..300 {
            let key = round * 1000 + k;
            for (j, &(_, op, put)) in kinds.iter().enumerate() {
                let m = message(&mut msg, op, key, put);
                let before = ALLOCS.load(Ordering::SeqCst);
                let n = ask(&mut s, m, &mut buf);
                let after = ALLOCS.load(Ordering::SeqCst);
                assert!(
                    buf[..n].ends_with(b"CODE=200\n"),
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
                if round == 2 {
                    counted[j] += after - before;
                }
            }
        }
    }
    // Pipelined misses: 16 GETs in one write, which grow one fetch (the
    // server has answered every key below 2300 by now), 50 times a round.
    let mut pipelined = 0;
    let mut batch = [0u8; 1024];
    for round in 0..3u64 {
        for b in 0..50u64 {
            let mut w: &mut [u8] = &mut batch[..];
            for j in 0..16u64 {
                writeln!(w, "OP=GET;IND={}", (round * 800 + b * 16 + j) % 2000).unwrap();
            }
            let len = 1024 - w.len();
            let before = ALLOCS.load(Ordering::SeqCst);
            s.write_all(&batch[..len]).unwrap();
            let mut n = 0;
            while buf[..n].iter().filter(|&&c| c == b'\n').count() < 16 {
                let r = s.read(&mut buf[n..]).unwrap();
                assert!(r > 0, "closed");
                n += r;
            }
            let after = ALLOCS.load(Ordering::SeqCst);
            let ok = buf[..n]
                .split(|&c| c == b'\n')
                .filter(|l| l.ends_with(b"CODE=200"))
                .count();
            assert_eq!(ok, 16, "{}", String::from_utf8_lossy(&buf[..n]));
            if round == 2 {
                pipelined += after - before;
            }
        }
    }
    counted.push(pipelined);
    let names = ["miss", "hit", "write", "add", "16 pipelined misses"];
    let report: Vec<String> = names
        .iter()
        .zip(&counted)
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    // Nothing per request; a few for a map or a buffer growing once more.
    assert!(
        counted.iter().all(|&n| n <= 3),
        "allocations over 300 requests of each kind: {}",
        report.join(", ")
    );
    drop(s);
    proxy.stop().unwrap();
    server.stop().unwrap();
}

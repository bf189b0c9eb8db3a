//! The hot path allocates nothing: once its buffers are warm, parsing a
//! request into the reused `Request`, applying it to the table and
//! encoding the reply into the reused output buffer makes no heap
//! allocation, and neither does a cache hit through the proxy's codec
//! path. Counted with a global allocator that counts the allocations of
//! the thread that asked for counting (the test harness's own threads may
//! allocate meanwhile, and must not count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tablecache::buffer::Buffer;
use tablecache::cache::{Fifo, Policy};
use tablecache::framing::{check_line, LineScan};
use tablecache::proto::{encode_ok, Request};
use tablecache::table::Table;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised: reading it never allocates (inside the allocator).
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn count() {
    if COUNTING.with(|c| c.get()) {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_steady_stream_of_requests_allocates_nothing() {
    let input: &[u8] = b"OP=PUT;IND=1,2;DATA=10,-3\nOP=GET;IND=1,2,3\nOP=ADD;IND=0,4,7\nOP=CLR\n";
    let mut table = Table::new(10);
    let mut req = Request::default();
    let mut out = Buffer::with_capacity(4096);
    let mut cache = Fifo::new(5);
    cache.insert(1, 10);
    cache.insert(2, 20);
    let mut run = |rounds: usize| {
        for _ in 0..rounds {
            let mut rest = input;
            while let LineScan::Line { body, total } = check_line(rest, 0, 65536) {
                req.parse(&rest[..body]).unwrap();
                table.execute(&req, &mut out).unwrap();
                out.push(b'\n');
                // The proxy's hit path: look up, encode the values.
                let hits: [i64; 2] = [cache.get(1).unwrap_or(0), cache.get(2).unwrap_or(0)];
                encode_ok(&mut out, req.op, &req.ind, &hits[..req.ind.len().min(2)]);
                rest = &rest[total..];
            }
            out.clear(); // as a flush that wrote everything would
        }
    };
    run(10); // warm: the reused Vecs reach their size
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    run(10_000);
    let after = ALLOCS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(false));
    assert_eq!(after - before, 0, "{} allocations in 40,000 requests", after - before);
}

#[test]
fn every_policy_hits_misses_and_evicts_without_allocating_once_warm() {
    // A cache of 50 over 500 keys, read in a skewed order: hits, misses
    // and evictions (and, for S3-FIFO, ghost hits) all happen.
    let keys: Vec<i64> = (0..20_000u64).map(|i| ((i * 7919) % 997 % 500) as i64).collect();
    for name in tablecache::cache::POLICIES {
        let mut cache = tablecache::cache::by_name(name, 50).unwrap();
        let pass = |cache: &mut dyn Policy| {
            for &k in &keys {
                if cache.get(k).is_none() {
                    cache.insert(k, k);
                }
            }
        };
        pass(&mut *cache); // warm: slots, maps and queues reach their size
        pass(&mut *cache);
        COUNTING.with(|c| c.set(true));
        let before = ALLOCS.load(Ordering::SeqCst);
        pass(&mut *cache);
        let after = ALLOCS.load(Ordering::SeqCst);
        COUNTING.with(|c| c.set(false));
        assert_eq!(
            after - before,
            0,
            "{name}: {} allocations in 20,000 requests",
            after - before
        );
    }
}

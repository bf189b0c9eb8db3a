//! The proxy's two introspection replies: STS (its counters, the cache,
//! the session, the upstream) and DMP (the cache in eviction order).

use crate::buffer::Buffer;
use crate::cache::Policy;
use crate::frontend::FrontInfo;
use crate::proto::{encode_field, put_list};
use crate::proxy::core::ProxyCore;
use crate::proxy::upstream::Upstream;

/// Entries of HIT_IND / MISS_IND, and of a DMP reply, at most.
const LIST_MAX: usize = 1024;

/// The STS reply.
pub fn encode_stats(out: &mut Buffer, core: &ProxyCore, up: &Upstream, front: &FrontInfo) {
    let c = &core.counters;
    out.extend(b"OP=STS");
    encode_field(out, "ROLE", &"proxy");
    encode_field(out, "POLICY", &core.cache.name());
    encode_field(out, "CAPACITY", &core.cache.capacity());
    encode_field(out, "CACHED", &core.cache.len());
    front.encode_conn_fields(out);
    encode_field(out, "HITS", &c.hits);
    encode_field(out, "MISSES", &c.misses);
    encode_field(out, "EVICTIONS", &c.evictions);
    encode_field(out, "COALESCED", &core.reads.coalesced);
    encode_field(out, "READS_WAITING", &core.reads.len());
    encode_field(out, "UPSTREAM", &if up.connected() { "up" } else { "down" });
    encode_field(out, "UP_REQS", &up.stats.requests);
    encode_field(out, "UP_FETCHES", &up.stats.fetches);
    encode_field(out, "UP_FETCH_GETS", &up.stats.fetch_gets);
    encode_field(out, "UP_INFLIGHT", &up.in_flight());
    encode_field(out, "UP_RESETS", &up.stats.resets);
    encode_field(out, "UP_BACKOFF_MS", &up.last_wait().as_millis());
    encode_field(out, "UP_DRAINING", &u8::from(up.draining()));
    // Coherence: the lease granted (0: none, the single-proxy guarantee).
    let lease = core.lease.length().map_or(0, |l| l.as_millis());
    encode_field(out, "LEASE_MS", &lease);
    encode_field(out, "INV_RECV", &core.lease.invalidations);
    encode_field(out, "LEASE_LAPSES", &core.lease.lapses);
    encode_field(out, "LEASE_STATE", &core.lease.state().name());
    encode_field(out, "LEASE_REFUSED", &core.lease.refusals);
    for (code, n) in &c.errors {
        encode_field(out, &format!("ERR{code}"), n);
    }
    // In index order: sorted here, not kept sorted per request.
    let sorted = c.per_index();
    let list = |out: &mut Buffer, key: &[u8], pick: fn(&(u64, u64)) -> u64| {
        out.extend(key);
        let mut first = true;
        for (i, v) in sorted.iter().filter(|(_, v)| pick(v) > 0).take(LIST_MAX) {
            if !first {
                out.push(b',');
            }
            first = false;
            put_list(out, [*i]);
            out.push(b':');
            put_list(out, [pick(v) as i64]);
        }
    };
    list(out, b";HIT_IND=", |v| v.0);
    list(out, b";MISS_IND=", |v| v.1);
    front.encode_loop_fields(out);
    out.extend(b";CODE=200");
}

/// The DMP reply: the cache in eviction order (next to be evicted first),
/// at most LIST_MAX entries.
pub fn encode_dump(out: &mut Buffer, cache: &dyn Policy) {
    let entries = cache.entries();
    let shown = &entries[..entries.len().min(LIST_MAX)];
    out.extend(b"OP=DMP");
    encode_field(out, "CAPACITY", &cache.capacity());
    if !shown.is_empty() {
        out.extend(b";IND=");
        put_list(out, shown.iter().map(|e| e.0));
        out.extend(b";DATA=");
        put_list(out, shown.iter().map(|e| e.1));
    }
    out.extend(b";CODE=200");
}

//! The checks on hand-made histories (planted faults found, good ones
//! passed) and on long generated ones.

use super::linear::{check, Verdict};
use super::lost::lost_writes;
use super::{Op, Outcome, Record};

/// `conn`'s `seq`-th operation, sent at `call`, answered at `ret`.
fn rec(conn: u64, seq: u64, op: Op, call: u64, ret: Option<u64>, outcome: Outcome) -> Record {
    Record {
        client: conn,
        conn,
        seq,
        op,
        call,
        ret,
        outcome,
    }
}

fn put(conn: u64, seq: u64, i: usize, v: i64, call: u64, ret: u64) -> Record {
    rec(
        conn,
        seq,
        Op::Put(vec![i], vec![v]),
        call,
        Some(ret),
        Outcome::Ok(vec![]),
    )
}

fn get(conn: u64, seq: u64, i: usize, v: i64, call: u64, ret: u64) -> Record {
    rec(conn, seq, Op::Get(vec![i]), call, Some(ret), Outcome::Ok(vec![v]))
}

fn ok(h: &[Record]) -> bool {
    check(h, 4, 1_000_000).verdict == Verdict::Linearizable
}

#[test]
fn good_histories_pass() {
    // Sequential.
    assert!(ok(&[put(1, 0, 0, 5, 0, 10), get(2, 0, 0, 5, 20, 30)]));
    // Concurrent: the read may see either side of the write.
    assert!(ok(&[put(1, 0, 0, 5, 0, 100), get(2, 0, 0, 0, 10, 20)]));
    assert!(ok(&[put(1, 0, 0, 5, 0, 100), get(2, 0, 0, 5, 10, 20)]));
    // Two readers see the write in the same order.
    assert!(ok(&[
        put(1, 0, 0, 5, 0, 100),
        get(2, 0, 0, 5, 10, 20),
        get(3, 0, 0, 5, 30, 40),
    ]));
    // An unknown write that took effect, and one that did not.
    assert!(ok(&[
        rec(1, 0, Op::Put(vec![1], vec![7]), 0, None, Outcome::Unknown),
        get(2, 0, 1, 7, 50, 60),
    ]));
    assert!(ok(&[
        rec(1, 0, Op::Put(vec![1], vec![7]), 0, None, Outcome::Unknown),
        get(2, 0, 1, 0, 50, 60),
    ]));
    // An error write, then the same connection goes on.
    assert!(ok(&[
        rec(1, 0, Op::Put(vec![1], vec![7]), 0, Some(5), Outcome::Error),
        get(1, 1, 1, 7, 10, 20),
    ]));
    // ADD and CLR, and a multi-index GET.
    assert!(ok(&[
        rec(1, 0, Op::Put(vec![0, 1], vec![3, 4]), 0, Some(10), Outcome::Ok(vec![])),
        rec(1, 1, Op::Add(vec![0, 1]), 11, Some(20), Outcome::Ok(vec![7])),
        rec(1, 2, Op::Clr, 21, Some(30), Outcome::Ok(vec![])),
        rec(2, 0, Op::Get(vec![0, 1]), 31, Some(40), Outcome::Ok(vec![0, 0])),
    ]));
    // A failed read explains nothing and is left out.
    assert!(ok(&[rec(1, 0, Op::Get(vec![0]), 0, Some(5), Outcome::Error)]));
}

#[test]
fn a_planted_stale_read_is_found() {
    // The write was answered before the read was sent; the read saw the
    // old value.
    let h = [put(1, 0, 2, 9, 0, 10), get(2, 0, 2, 0, 20, 30)];
    // The search cannot place the PUT without hiding what the read saw.
    let r = check(&h, 4, 1_000_000);
    assert_eq!(
        r.verdict,
        Verdict::Violation {
            stuck: 0,
            window: vec![0, 1]
        },
        "{r:?}"
    );
    assert_eq!(lost_writes(&h), [(1, 0)]);
}

#[test]
fn a_planted_lost_write_is_found() {
    // Two acknowledged writes; a later read sees the first: the second
    // was lost (as a crash that forgot it would show).
    let h = [
        put(1, 0, 3, 100, 0, 10),
        put(1, 1, 3, 101, 20, 30),
        get(2, 0, 3, 100, 40, 50),
    ];
    assert!(matches!(check(&h, 4, 1_000_000).verdict, Verdict::Violation { ref window, .. } if window.contains(&2)));
    assert_eq!(lost_writes(&h), [(2, 1)]);
    // Concurrent with the read, it is not lost.
    let h = [
        put(1, 0, 3, 100, 0, 10),
        put(1, 1, 3, 101, 20, 60),
        get(2, 0, 3, 100, 40, 50),
    ];
    assert!(ok(&h));
    assert!(lost_writes(&h).is_empty());
}

#[test]
fn a_connection_reads_its_own_earlier_write() {
    // Pipelined on one connection: the GET was sent after the PUT, so it
    // takes effect after it, however the times overlap.
    let h = [put(1, 0, 0, 5, 0, 100), get(1, 1, 0, 0, 1, 101)];
    assert!(!ok(&h));
    let h = [put(1, 0, 0, 5, 0, 100), get(1, 1, 0, 5, 1, 101)];
    assert!(ok(&h));
}

#[test]
fn a_torn_read_is_found() {
    // GET 0,1 sees the new 0 and the old 1 of one PUT of both.
    let h = [
        rec(1, 0, Op::Put(vec![0, 1], vec![7, 8]), 0, Some(100), Outcome::Ok(vec![])),
        rec(2, 0, Op::Get(vec![0, 1]), 10, Some(20), Outcome::Ok(vec![7, 0])),
    ];
    assert!(!ok(&h));
}

#[test]
fn a_read_of_a_value_nobody_wrote_is_found() {
    assert!(!ok(&[get(1, 0, 0, 42, 0, 10)]));
    // Summed wrong.
    let h = [
        put(1, 0, 0, 2, 0, 10),
        rec(1, 1, Op::Add(vec![0, 0]), 11, Some(20), Outcome::Ok(vec![5])),
    ];
    assert!(!ok(&h));
}

#[test]
fn a_budget_too_small_is_undecided_not_a_pass() {
    // Twenty writers, each reading its own write back, in any order; then
    // a sum no order gives: every order must be tried to say so.
    let mut h = Vec::new();
    for k in 0..20 {
        h.push(put(k, 0, 0, 1000 + k as i64, 0, 1000));
        h.push(get(k, 1, 0, 1000 + k as i64, 1, 1000));
    }
    h.push(rec(99, 0, Op::Add(vec![0, 1]), 2000, Some(2001), Outcome::Ok(vec![1])));
    assert_eq!(check(&h, 4, 100).verdict, Verdict::Undecided);
}

/// A run simulated in virtual time: `clients` connections, each with up
/// to `depth` requests in flight, against a table that applies each at a
/// random instant inside its interval (so the history is linearizable by
/// construction), some outcomes turned unknown.
fn simulated(clients: u64, ops: usize, depth: usize, seed: u64) -> Vec<Record> {
    let mut x = seed | 1;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut table = [0i64; 4];
    // Pending per connection: (record, effect time) in order.
    let mut out: Vec<Record> = Vec::new();
    let mut t = 0u64;
    let mut seq = vec![0u64; clients as usize];
    let mut serial = 0i64;
    let mut live: Vec<Vec<usize>> = vec![Vec::new(); clients as usize];
    while out.len() < ops {
        t += 1 + rnd(3);
        let c = rnd(clients) as usize;
        if live[c].len() < depth && rnd(3) > 0 {
            // Send: the operation takes effect now (its interval is
            // [call, answer] with the answer later).
            let ind = vec![rnd(4) as usize];
            let op = match rnd(20) {
                0..=9 => Op::Get(ind),
                10..=17 => {
                    serial += 1;
                    Op::Put(ind, vec![(c as i64 + 1) * 1_000_000 + serial])
                }
                18 => Op::Get(vec![0, 1]),
                _ => Op::Add(vec![0, 1]),
            };
            let result = match &op {
                Op::Get(i) => i.iter().map(|&i| table[i]).collect(),
                Op::Add(i) => vec![i.iter().map(|&i| table[i]).sum()],
                Op::Put(i, d) => {
                    table[i[0]] = d[0];
                    vec![]
                }
                Op::Clr => vec![],
            };
            let call = t.saturating_sub(rnd(2));
            out.push(rec(c as u64, seq[c], op, call, None, Outcome::Ok(result)));
            seq[c] += 1;
            live[c].push(out.len() - 1);
        } else if !live[c].is_empty() {
            // Answer the oldest, a little after.
            let n = live[c].remove(0);
            out[n].ret = Some(t + rnd(2));
            if rnd(200) == 0 && out[n].op.writes() {
                out[n].ret = None;
                out[n].outcome = Outcome::Unknown;
            }
        }
    }
    // Whatever is left was never answered: unknown.
    for r in out.iter_mut().filter(|r| r.ret.is_none()) {
        r.outcome = Outcome::Unknown;
    }
    // Unknown reads carry no result.
    out
}

#[test]
fn long_simulated_histories_pass_in_steps_linear_in_their_length() {
    for seed in 1..=2 {
        let h = simulated(12, 8_000, 3, seed);
        let r = check(&h, 4, 5_000_000);
        assert_eq!(r.verdict, Verdict::Linearizable, "seed {seed}");
        // Reads and writes cost a step or two each; an ADD's sum cannot be
        // traced to its writes, and costs more.
        assert!(
            r.steps < 200 * h.len() as u64,
            "seed {seed}: {} steps for {} operations",
            r.steps,
            h.len()
        );
        assert!(lost_writes(&h).is_empty());
    }
}

#[test]
fn a_simulated_history_with_one_read_changed_fails() {
    let mut h = simulated(8, 5_000, 2, 9);
    // Change one answered GET late in the run to a value nobody wrote.
    let k = (h.len() * 3 / 4..h.len())
        .find(|&k| matches!((&h[k].op, &h[k].outcome), (Op::Get(_), Outcome::Ok(_))))
        .unwrap();
    h[k].outcome = Outcome::Ok(vec![-77]);
    match check(&h, 4, 5_000_000).verdict {
        Verdict::Violation { stuck, window } => {
            assert_eq!(stuck, k);
            assert!(window.contains(&k) && window.len() <= 40);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_write_may_land_after_its_connections_next_requests() {
    // Connection 1's PUT failed (502: its proxy gave up on the upstream
    // connection, which it drains); its next request, a read, saw the old
    // value; the PUT landed later, and another client read it then.
    let h = [
        rec(1, 0, Op::Put(vec![0], vec![7]), 0, Some(10), Outcome::Error),
        get(1, 1, 0, 0, 20, 30),
        get(2, 0, 0, 7, 40, 50),
    ];
    assert!(ok(&h));
}

#[test]
fn an_unseen_write_is_not_placed_over_a_zero_a_read_still_wants() {
    // Connection 1: a long PUT someone reads later, then a read of 0 at
    // index 1 queued behind it. Connection 2: a write to 1 nobody reads,
    // while the PUT is still out. A CLR much later. The write to 1 must
    // go after the read: the CLR that could bring the 0 back comes too
    // late for it.
    let h = [
        put(1, 0, 0, 5, 0, 1000),
        get(1, 1, 1, 0, 1, 1001),
        put(2, 0, 1, 42, 10, 20),
        get(3, 0, 0, 5, 2000, 2001),
        rec(3, 1, Op::Clr, 5000, Some(5001), Outcome::Ok(vec![])),
    ];
    assert!(ok(&h));
}

#[test]
fn a_failed_write_seen_after_an_acknowledged_one_is_not_a_lost_write() {
    // The failed PUT landed after the acknowledged one (a drained
    // upstream connection): the later read sees it, and nothing was lost.
    // (Found by the first million-operation soak: four such reads were
    // counted lost.)
    let h = [
        rec(1, 0, Op::Put(vec![2], vec![11]), 0, Some(10), Outcome::Error),
        put(2, 0, 2, 22, 20, 30),
        get(3, 0, 2, 11, 40, 50),
    ];
    assert!(ok(&h));
    assert!(lost_writes(&h).is_empty());
}

#[test]
fn a_clear_is_a_write_too_and_boundaries_are_strict() {
    let clr = |conn, call, ret| rec(conn, 0, Op::Clr, call, Some(ret), Outcome::Ok(vec![]));
    // A read of 0 after an acknowledged CLR: nothing lost.
    let h = [put(1, 0, 1, 5, 0, 10), clr(2, 20, 30), get(3, 0, 1, 0, 40, 50)];
    assert!(lost_writes(&h).is_empty() && ok(&h));
    // A read of the value the CLR erased: the CLR was lost.
    let h = [put(1, 0, 1, 5, 0, 10), clr(2, 20, 30), get(3, 0, 1, 5, 40, 50)];
    assert_eq!(lost_writes(&h), [(2, 1)]);
    // A CLR sent after the read was answered cannot explain its 0.
    let h = [put(1, 0, 1, 5, 0, 10), get(3, 0, 1, 0, 40, 50), clr(2, 51, 60)];
    assert_eq!(lost_writes(&h), [(1, 0)]);
    // ... but one sent before it was answered can.
    let h = [put(1, 0, 1, 5, 0, 10), get(3, 0, 1, 0, 40, 50), clr(2, 50, 60)];
    assert!(lost_writes(&h).is_empty());
    // A failed CLR may have landed late: a 0 after an acknowledged write is
    // not a lost write then.
    let h = [
        rec(2, 0, Op::Clr, 0, Some(5), Outcome::Error),
        put(1, 0, 1, 5, 10, 20),
        get(3, 0, 1, 0, 40, 50),
    ];
    assert!(lost_writes(&h).is_empty() && ok(&h));
    // A write sent the moment the seen one was answered, or answered the
    // moment the read was sent, is not strictly between them: not lost.
    let h = [put(1, 0, 1, 5, 0, 10), put(2, 0, 1, 6, 10, 20), get(3, 0, 1, 5, 30, 40)];
    assert!(lost_writes(&h).is_empty());
    let h = [put(1, 0, 1, 5, 0, 10), put(2, 0, 1, 6, 11, 30), get(3, 0, 1, 5, 30, 40)];
    assert!(lost_writes(&h).is_empty());
    let h = [put(1, 0, 1, 5, 0, 10), put(2, 0, 1, 6, 11, 29), get(3, 0, 1, 5, 30, 40)];
    assert_eq!(lost_writes(&h), [(2, 1)]);
}

#[test]
fn a_zero_read_after_a_clear_and_a_later_write_misses_that_write() {
    let clr = rec(2, 0, Op::Clr, 20, Some(30), Outcome::Ok(vec![]));
    let h = [
        put(1, 0, 1, 5, 0, 10),
        clr,
        put(1, 1, 1, 6, 40, 50),
        get(3, 0, 1, 0, 60, 70),
    ];
    assert_eq!(lost_writes(&h), [(3, 2)]);
}

//! Whether a read may join fetches in flight ([`Reads::plan`]): which of
//! its missing indices join which fetch, and which it fetches itself; and
//! what ends joining of a fetch early (a write sent, an invalidation, a
//! `413`). The rules are in `mod.rs`'s opening and docs/coherence.md
//! ("Coalescing"); this is where they are decided, for every read that
//! missed.

use super::Reads;
use crate::cache::IndexMap;
use crate::proxy::pending::{UpKind, Written};

impl Reads {
    /// Splits a read's `missing` indices into those that can join a fetch
    /// in flight (their fetches, each once, into `joined`) and those that
    /// need a new fetch (`to_fetch`). `ind` is everything the read asks;
    /// `behind` is the upstream sequence of the connection's latest request
    /// still in flight.
    ///
    /// Only fetches numbered above `join_after` may be joined (`None`: none
    /// at all): with other proxies at the server, a fetch already on the
    /// wire may have been answered before a write that is applied before
    /// the read arrives, without this proxy being told (docs/coherence.md,
    /// "Coalescing").
    ///
    /// A fetch is joined only if every index it asks is one the read asks
    /// too, or it is a fetch of indices the server has answered on this
    /// connection within the batch bound: a server refuses a request for
    /// its indices (one out of range, or too many), and a read must not
    /// inherit a refusal it would not have got alone.
    ///
    /// A read takes all its values from one fetch: two fetches are two
    /// instants at the server, and a write by someone else may fall
    /// between them unseen (the older fetch's value may have come back
    /// `NOCACHE`, untracked). So it joins one fetch at most, and if it
    /// also needs indices of its own, only `open`, the fetch those would
    /// grow; else it fetches every missing index itself.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &self,
        ind: &[i64],
        missing: &[i64],
        behind: Option<u64>,
        join_after: Option<u64>,
        open: Option<u64>,
        to_fetch: &mut Vec<i64>,
        joined: &mut Vec<u64>,
    ) {
        to_fetch.clear();
        joined.clear();
        let Some(after) = join_after else {
            // Without a lease, a fetch in flight may hold a value from
            // before a write the server has since applied without us.
            to_fetch.extend_from_slice(missing);
            return;
        };
        // The read's indices as a set, built only if some fetch is a
        // candidate and the read is big enough for scans to cost; each
        // candidate fetch's verdict, kept only for a big read (a small one
        // has few candidates to judge twice).
        let mut asked: Option<IndexMap<()>> = None;
        let mut verdicts: Option<IndexMap<bool>> = None;
        for &i in missing {
            let candidate = match self.joinable.get(&i) {
                Some(&(f, _)) if f > after && behind.is_none_or(|b| f >= b) => Some(f),
                _ => None,
            };
            let Some(f) = candidate else {
                to_fetch.push(i);
                continue;
            };
            let mut judge = || {
                let within = |j: &i64| match &mut asked {
                    Some(set) => set.contains_key(j),
                    None if ind.len() <= 16 => ind.contains(j),
                    None => asked.insert(ind.iter().map(|&k| (k, ())).collect()).contains_key(j),
                };
                let fetch = self.position(f).and_then(|p| self.fetches[p].ind.as_ref());
                fetch.is_none_or(|fi| fi.iter().all(within))
            };
            let joins = if missing.len() <= 16 {
                judge()
            } else {
                *verdicts
                    .get_or_insert_with(IndexMap::default)
                    .entry(f as i64)
                    .or_insert_with(judge)
            };
            if joins {
                joined.push(f);
            } else {
                to_fetch.push(i);
            }
        }
        joined.sort_unstable();
        joined.dedup();
        let one = match joined[..] {
            [] => true,
            [f] => to_fetch.is_empty() || Some(f) == open,
            _ => false,
        };
        if !one {
            joined.clear();
            to_fetch.clear();
            to_fetch.extend_from_slice(missing);
        }
    }

    /// A write was sent: the fetches of what it may change can no longer be
    /// joined.
    pub fn write_sent(&mut self, kind: &UpKind) {
        match kind.written() {
            Written::Indices(ind) => ind.iter().for_each(|i| {
                self.joinable.remove(i);
            }),
            Written::All => self.joinable.clear(),
            Written::Nothing => {}
        }
    }

    /// The server refused a fetch as too large: its bound is below the
    /// proxy's, and any fetch in flight of more than one index may be
    /// refused the same way. A read joining one for a part would inherit a
    /// refusal it would not have earned alone, so no fetch in flight is
    /// joined from now on; later fetches are each a read's own (the
    /// upstream stopped growing them).
    pub fn refused_too_large(&mut self) {
        self.joinable.clear();
    }

    /// The server invalidated `ind` (every index for `None`): a write by
    /// someone else is on its way, and a read arriving from now on must
    /// not get a value fetched before it.
    pub fn invalidated(&mut self, ind: Option<&[i64]>) {
        match ind {
            Some(ind) => ind.iter().for_each(|i| {
                self.joinable.remove(i);
            }),
            None => self.joinable.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::plan;
    use super::*;

    #[test]
    fn after_a_413_no_fetch_in_flight_is_joined() {
        let mut r = Reads::default();
        // #7 fetches 4 and 5, indices the server knows: a read of 4 may
        // join it for a part...
        r.fetch_sent(7, &[4, 5], true);
        assert_eq!(plan(&r, &[4], None), (vec![], vec![7]));
        // ...until a fetch is refused as too large: #7 may be too.
        r.refused_too_large();
        assert_eq!(plan(&r, &[4], None), (vec![4], vec![]));
        assert_eq!(plan(&r, &[4, 5], None), (vec![4, 5], vec![]));
    }

    #[test]
    fn a_write_sent_in_between_closes_the_fetch_to_later_reads() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4, 5], false);
        r.write_sent(&UpKind::Put(vec![4], vec![1]));
        assert_eq!(
            plan(&r, &[4, 5], None),
            (vec![4], vec![7]),
            "5 joins, 4 is fetched again"
        );
        r.write_sent(&UpKind::Clr);
        assert_eq!(plan(&r, &[5], None), (vec![5], vec![]));
    }

    #[test]
    fn a_fetch_sent_before_the_connections_own_request_cannot_be_joined() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], false);
        assert_eq!(plan(&r, &[4], Some(6)), (vec![], vec![7]));
        assert_eq!(
            plan(&r, &[4], Some(7)),
            (vec![], vec![7]),
            "its own latest request is #7"
        );
        assert_eq!(plan(&r, &[4], Some(9)), (vec![4], vec![]), "it must come after #9");
    }

    #[test]
    fn a_fetch_asking_more_than_the_read_asks_is_not_joined() {
        // #7 asks 3 and 20 (20 may be out of range: the server would refuse
        // the whole fetch); a read of 3 alone must not share that refusal.
        let mut r = Reads::default();
        r.fetch_sent(7, &[3, 20], false);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[3], &[3], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f.clone(), j.clone()), (vec![3], vec![]));
        r.plan(&[20, 3, 5], &[3, 20], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f, j), (vec![], vec![7]), "a read asking both may join");
    }

    #[test]
    fn an_invalidation_closes_the_fetches_of_its_indices_to_later_reads() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4, 5, 6], true);
        r.invalidated(Some(&[4]));
        assert_eq!(plan(&r, &[4, 5], None), (vec![4], vec![7]));
        r.invalidated(None);
        assert_eq!(plan(&r, &[5, 6], None), (vec![5, 6], vec![]));
    }

    #[test]
    fn a_read_that_fetches_joins_no_other_fetch() {
        // #7 has 5 (closed: a fetch of 20 went after it); a read of 5 and
        // 6 would take 5 from #7 and 6 from a new fetch: two instants at
        // the server. It fetches both. It may join the open fetch it
        // grows, and a read that fetches nothing joins one fetch at most.
        let mut r = Reads::default();
        r.fetch_sent(7, &[5], true);
        r.fetch_sent(8, &[20], false);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[5, 6], &[5, 6], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f.clone(), j.clone()), (vec![5, 6], vec![]));
        r.plan(&[5, 6], &[5, 6], None, Some(0), Some(7), &mut f, &mut j);
        assert_eq!((f.clone(), j.clone()), (vec![6], vec![7]), "#7 is the open fetch");
        r.fetch_sent(9, &[6], true);
        r.plan(&[5, 6], &[5, 6], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f, j), (vec![5, 6], vec![]), "two fetches in flight: neither");
    }

    #[test]
    fn only_fetches_numbered_above_the_bound_are_joined() {
        let mut r = Reads::default();
        r.fetch_sent(7, &[4], true);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[4], &[4], None, Some(7), None, &mut f, &mut j);
        assert_eq!((f.clone(), j.clone()), (vec![4], vec![]), "#7 is on the wire");
        r.plan(&[4], &[4], None, Some(6), None, &mut f, &mut j);
        assert_eq!((f, j), (vec![], vec![7]));
    }

    #[test]
    fn a_known_fetch_is_joined_for_a_part_an_unknown_one_only_whole() {
        // Every index of #7 answered before on this connection: no index
        // can get it refused, and a read of 3 alone may share it.
        let mut r = Reads::default();
        r.fetch_sent(7, &[3, 20], true);
        r.fetch_sent(8, &[4, 21], false);
        let (mut f, mut j) = (Vec::new(), Vec::new());
        r.plan(&[3], &[3], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f.clone(), j.clone()), (vec![], vec![7]));
        r.plan(&[4], &[4], None, Some(0), None, &mut f, &mut j);
        assert_eq!((f, j), (vec![4], vec![]));
    }
}

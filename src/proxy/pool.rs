//! A pool of lists given back by finished requests and reused by the next
//! ones, so that a warm miss path allocates nothing. Bounded: at most
//! `long` lists of up to 4096 entries, and more (up to `short` in all) when
//! they are short (up to 64 entries); a longer list, or one past the
//! bound, is freed. Pure data.

/// Lists of `T` kept for reuse.
#[derive(Debug)]
pub struct Pool<T> {
    lists: Vec<Vec<T>>,
    long: usize,
    short: usize,
}

/// The longest list kept, in entries.
pub const LONGEST: usize = 4096;
/// A list this short (in entries) may be kept past `long`, up to `short`.
const SHORT: usize = 64;

impl<T> Pool<T> {
    /// An empty pool keeping at most `long` lists, `short` if short ones.
    pub const fn new(long: usize, short: usize) -> Pool<T> {
        Pool {
            lists: Vec::new(),
            long,
            short,
        }
    }

    /// A list from the pool (empty), or a new one.
    pub fn take(&mut self) -> Vec<T> {
        self.lists.pop().unwrap_or_default()
    }

    /// Gives `v` back: kept, emptied, if within the bounds.
    pub fn give(&mut self, mut v: Vec<T>) {
        let (kept, cap) = (self.lists.len(), v.capacity());
        if (kept < self.long && cap <= LONGEST) || (kept < self.short && cap <= SHORT) {
            v.clear();
            self.lists.push(v);
        }
    }

    /// Lists kept now.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

impl<T: Copy> Pool<T> {
    /// A copy of `src` in a list from the pool.
    pub fn copy(&mut self, src: &[T]) -> Vec<T> {
        let mut v = self.take();
        v.extend_from_slice(src);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_kept_up_to_long_of_4096_entries_and_more_when_short() {
        let mut p: Pool<i64> = Pool::new(2, 5);
        for cap in [100, 4096, 100] {
            p.give(Vec::with_capacity(cap));
        }
        assert_eq!(p.len(), 2, "two long ones at most");
        for _ in 0..10 {
            p.give(Vec::with_capacity(64));
        }
        assert_eq!(p.len(), 5, "short ones up to five in all");
        let mut p: Pool<i64> = Pool::new(2, 5);
        p.give(Vec::with_capacity(4097));
        p.give(Vec::with_capacity(65));
        p.give(Vec::with_capacity(65));
        p.give(Vec::with_capacity(65));
        assert_eq!(p.len(), 2, "longer than 4096: freed; 65 is long");
        assert!(!p.is_empty());
    }

    #[test]
    fn a_copy_reuses_a_kept_list() {
        let mut p: Pool<i64> = Pool::new(1, 1);
        assert!(p.is_empty());
        p.give(vec![7; 50]);
        let v = p.copy(&[1, 2]);
        assert_eq!((v.as_slice(), v.capacity() >= 50), (&[1, 2][..], true));
        assert!(p.is_empty());
        assert!(p.take().is_empty());
    }
}

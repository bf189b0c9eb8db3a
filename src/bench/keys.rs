//! Which keys a run asks for: a small fast generator, and the uniform or
//! Zipf draw over `0..keys` (the same draw `tablecache sim` generates).
//! Pure code.

use super::Dist;

/// A small fast PRNG (xorshift64*): the choices only need to be spread,
/// not unpredictable.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(super) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks keys.
pub(super) struct Keys {
    pub(super) keys: u64,
    /// Zipf: cumulative probabilities of keys 0..n.
    pub(super) cdf: Option<Vec<f64>>,
}

impl Keys {
    pub(super) fn new(keys: u64, dist: &Dist) -> Keys {
        let cdf = match dist {
            Dist::Uniform => None,
            Dist::Zipf(s) => {
                let mut acc = 0.0;
                let mut v: Vec<f64> = (1..=keys)
                    .map(|k| {
                        acc += 1.0 / (k as f64).powf(*s);
                        acc
                    })
                    .collect();
                for x in &mut v {
                    *x /= acc;
                }
                Some(v)
            }
        };
        Keys { keys, cdf }
    }

    pub(super) fn pick(&self, rng: &mut Rng) -> i64 {
        match &self.cdf {
            None => (rng.next() % self.keys) as i64,
            Some(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as i64
            }
        }
    }
}

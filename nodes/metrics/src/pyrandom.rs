//! CPython's `random.Random(seed)`, reproduced bit for bit.
//!
//! lm-eval draws few-shot examples with `random.Random(1234).sample(pool, k)` and bootstrap
//! resamples with `random.Random(i).choices`, so matching its prompts and its stderrs needs the
//! same Mersenne Twister stream (`rand_mt`, seeded like CPython's `init_by_array`), the same
//! rejection sampling (`_randbelow_with_getrandbits`) and the same selection algorithms.

use rand_mt::Mt;

/// A seeded generator that draws exactly what CPython's `random.Random(seed)` draws.
#[derive(Clone, Debug)]
pub struct PyRandom {
    mt: Mt,
}

impl PyRandom {
    /// Seed like `random.Random(seed)` for a non-negative integer seed.
    pub fn new(seed: u64) -> Self {
        // CPython splits abs(seed) into 32-bit words, least significant first, and always passes
        // at least one word (seed 0 -> [0]).
        let key: Vec<u32> = if seed >> 32 == 0 {
            vec![seed as u32]
        } else {
            vec![seed as u32, (seed >> 32) as u32]
        };
        Self {
            mt: Mt::new_with_key(key),
        }
    }

    /// `random()`: 53 bits from two 32-bit draws.
    pub fn random(&mut self) -> f64 {
        let a = f64::from(self.mt.next_u32() >> 5);
        let b = f64::from(self.mt.next_u32() >> 6);
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// One index draw of `random.choices(range(n))`.
    pub fn choice_index(&mut self, n: usize) -> usize {
        (self.random() * n as f64).floor() as usize
    }

    /// `getrandbits(k)` for `1 <= k <= 32`.
    fn getrandbits(&mut self, k: u32) -> u32 {
        debug_assert!((1..=32).contains(&k));
        self.mt.next_u32() >> (32 - k)
    }

    /// `_randbelow_with_getrandbits(n)`: uniform in `0..n` by rejection on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n =
            u32::try_from(n).expect("few-shot pools larger than 2^32 documents are unsupported");
        let k = 32 - n.leading_zeros();
        let mut r = self.getrandbits(k);
        while r >= n {
            r = self.getrandbits(k);
        }
        r as usize
    }

    /// Indices that `random.Random.sample(range(n), k)` returns, in the same order.
    ///
    /// Returns `None` when `k > n` (CPython raises `ValueError`).
    pub fn sample_indices(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        // CPython picks between a pool-copy and a set-of-seen strategy by comparing list and set
        // memory footprints; the choice changes which random numbers are drawn, so mirror it.
        let mut setsize = 21usize;
        if k > 5 {
            setsize += 4usize.pow(ceil_log4(k * 3));
        }
        let mut result = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while selected.contains(&j) {
                    j = self.randbelow(n);
                }
                selected.insert(j);
                result.push(j);
            }
        }
        Some(result)
    }
}

/// `ceil(log(x, 4))` as CPython computes it (`_ceil(_log(k * 3, 4))`, floating point).
fn ceil_log4(x: usize) -> u32 {
    ((x as f64).ln() / 4f64.ln()).ceil() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_population_uses_pool_strategy_and_differs_from_set_strategy() {
        let mut a = PyRandom::new(1234);
        let got = a.sample_indices(10, 3).unwrap();
        assert_eq!(got.len(), 3);
        let mut sorted = got.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 3);
        assert!(PyRandom::new(1).sample_indices(3, 4).is_none());
    }
}

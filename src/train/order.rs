//! The order in which a run visits its training samples, as one flat `Dataset`: sample `i` of
//! the run is item `permutation_e(i mod n)` of epoch `e = i / n`, each epoch a fresh
//! pseudo-random permutation of `(seed, e)`. Resuming after `k` samples is `slice(k, ..)`: no
//! RNG state to save, and the order does not depend on threads or on where a run was cut.

use burn::data::dataset::Dataset;

/// `splitmix64`, the finaliser used as the Feistel round function.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A bijection of `0..n` keyed by `key`: a 4-round Feistel network on the smallest even number
/// of bits covering `n`, cycle-walking out-of-range values back into range.
pub fn permute(index: usize, n: usize, key: u64) -> usize {
    assert!(index < n, "index {index} out of 0..{n}");
    if n <= 1 {
        return index;
    }
    let bits = (usize::BITS - (n - 1).leading_zeros()).max(2).div_ceil(2) * 2;
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let mut x = index as u64;
    loop {
        let (mut left, mut right) = (x >> half, x & mask);
        for round in 0..4u64 {
            let f = mix(right ^ mix(key.wrapping_add(round))) & mask;
            (left, right) = (right, left ^ f);
        }
        x = (left << half) | right;
        if (x as usize) < n {
            return x as usize;
        }
    }
}

/// `samples` items drawn epoch by epoch from `inner` in shuffled order (see the module docs).
#[derive(Debug, Clone)]
pub struct EpochOrder<D> {
    inner: D,
    samples: usize,
    seed: u64,
}

impl<D: Dataset<Vec<u32>>> EpochOrder<D> {
    /// Panics if `inner` is empty.
    pub fn new(inner: D, samples: usize, seed: u64) -> Self {
        assert!(!inner.is_empty(), "cannot draw samples from an empty dataset");
        Self { inner, samples, seed }
    }

    /// The inner index of the run's sample `i`.
    pub fn source_index(&self, i: usize) -> usize {
        let n = self.inner.len();
        permute(i % n, n, mix(self.seed ^ mix((i / n) as u64)))
    }
}

impl<D: Dataset<Vec<u32>>> Dataset<Vec<u32>> for EpochOrder<D> {
    fn get(&self, index: usize) -> Option<Vec<u32>> {
        if index >= self.samples {
            return None;
        }
        self.inner.get(self.source_index(index))
    }

    fn len(&self) -> usize {
        self.samples
    }
}

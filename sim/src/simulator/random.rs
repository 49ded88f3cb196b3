//! Small helpers over the seeded generator, so that every choice of a run
//! derives from its seed in a portable way.

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

/// A number in `[low, high)`; `low` when the range is empty.
pub fn uniform(rng: &mut ChaCha8Rng, low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    low + rng.next_u64() % (high - low)
}

/// True with the given probability.
pub fn chance(rng: &mut ChaCha8Rng, probability: f64) -> bool {
    if probability <= 0.0 {
        return false;
    }
    // 53 random bits give a uniform float in [0, 1).
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit < probability
}

/// One element of a non-empty slice.
pub fn pick<T: Copy>(rng: &mut ChaCha8Rng, items: &[T]) -> T {
    items[uniform(rng, 0, items.len() as u64) as usize]
}

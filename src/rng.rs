//! Seeded random numbers drawn on the CPU, so that a seed gives the same run on every backend.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The purposes a seed is used for; each gets its own independent stream.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Train/test split.
    Split = 1,
    /// Initial distilled images.
    DistillInit = 2,
    /// Network weights and real minibatches during distillation.
    Training = 3,
    /// Evaluation networks.
    Eval = 4,
    /// Baselines (random subsets, full-data training).
    Baseline = 5,
    /// The privacy audit's samples and networks.
    Audit = 6,
    /// Member/holdout split of the training data.
    Holdout = 7,
}

/// A ChaCha8 generator for one purpose of one seed.
pub fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// `n` samples of N(0, std²) (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation(rng: &mut ChaCha8Rng, n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        idx.swap(i, j);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a = normal(&mut rng(7, Stream::Training), 1000, 1.0);
        let b = normal(&mut rng(7, Stream::Training), 1000, 1.0);
        let c = normal(&mut rng(7, Stream::Eval), 1000, 1.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / 1000.0;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / 1000.0;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var - 1.0).abs() < 0.15, "var {var}");
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = permutation(&mut rng(1, Stream::Split), 50);
        p.sort();
        assert_eq!(p, (0..50).collect::<Vec<_>>());
    }
}

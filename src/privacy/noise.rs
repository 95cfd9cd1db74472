//! The secret randomness of the private mechanism: which patients an iteration samples and the
//! Gaussian noise. A ChaCha20 stream keyed from the operating system's secure source (in the
//! browser `crypto.getRandomValues`, through `getrandom`), never from the run's seed, so that
//! nobody can replay it; the noise is drawn in f64 (Box–Muller) and rounded to f32 only when
//! added to the network's weights.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::{Error, Result};

/// A cryptographically secure random stream.
pub struct SecretRng(ChaCha20Rng);

impl SecretRng {
    /// A stream keyed by 32 bytes of the operating system's secure source.
    pub fn from_os() -> Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::Backend(format!("no secure random source for the privacy noise: {e}")))?;
        Ok(Self(ChaCha20Rng::from_seed(key)))
    }

    /// A stream from a known seed: for tests only. Known noise protects nobody.
    pub fn known(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }

    /// Uniform in (0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `q` (Poisson sampling of one patient).
    pub fn sampled(&mut self, q: f64) -> bool {
        self.uniform() < q
    }

    /// A standard normal value (Box–Muller, in f64).
    pub fn gaussian(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// `n` values of N(0, scale²), rounded to f32.
    pub fn gaussians(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (scale * self.gaussian()) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_sampling_rate() {
        let mut r = SecretRng::known(1);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.gaussian()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01 && (kurt - 3.0).abs() < 0.05, "{mean} {var} {kurt}");
        let hits = (0..n).filter(|_| r.sampled(0.1)).count() as f64 / n as f64;
        assert!((hits - 0.1).abs() < 0.003, "{hits}");
        // Two streams from the OS differ.
        let (mut a, mut b) = (SecretRng::from_os().unwrap(), SecretRng::from_os().unwrap());
        assert_ne!(a.gaussians(4, 1.0), b.gaussians(4, 1.0));
    }
}

//! The secret randomness of the private mechanism: which patients an iteration samples and the
//! noise. A ChaCha20 stream keyed from the operating system's secure source (in the browser
//! `crypto.getRandomValues`, through `getrandom`), never from the run's seed, so that nobody can
//! replay it.
//!
//! The noise is discrete: the clipped sum is rounded to a grid ([`Grid`]) and integer noise from
//! the discrete Gaussian N_Z(0, σ_g²) is added in grid units (Canonne, Kamath & Steinke 2020, "The
//! Discrete Gaussian for Differential Privacy": their exact sampler, Algorithms 1–3, in integer
//! arithmetic on the secure stream). Floating-point Gaussian noise added in f32 lets the output's
//! low-order bits depend on the input (Mironov 2012; Jin et al. 2022); here the released value is
//! a function of one integer per coordinate, the rounded sum plus the noise, and nothing else
//! ([`grid_release`]).
//!
//! Why the accountant's ε still holds: rounding moves each coordinate by at most half a step, so
//! two neighbouring sums, at most C apart before rounding, are at most C + step·√d apart after
//! it (d coordinates). The multivariate discrete Gaussian of variance σ_g² per coordinate on
//! integer inputs at L2 distance Δ has Rényi divergence at most αΔ²/(2σ_g²) of order α, the
//! continuous Gaussian's (CKS 2020, their privacy analysis of the discrete Gaussian and its
//! multivariate form), and the Poisson-subsampled mechanism's RDP at integer orders is bounded
//! by the base mechanism's RDP through Zhu & Wang 2019 ("Poisson Subsampled Rényi Differential
//! Privacy", their general upper bound at integer orders), which for the Gaussian's RDP is the
//! sampled Gaussian's formula that [`super::accountant`] computes. [`Grid::of`] makes σ_g at least σ times the
//! rounded sensitivity in grid units, so the accountant's ε at σ is an upper bound. Noise of
//! 2^24 steps or more is drawn again, so that each value is exact in f32; for σ_g ≤ 2^21 that
//! changes each value's law by at most 2·exp(−(2^24 − 1)²/(2σ_g²)) < 2^-140 in total
//! variation, far below δ. Not covered, as in other DP-SGD libraries: the f32 rounding error of
//! summing the clipped gradients, about 1e-7 of the sum's size.

use burn_tensor::{backend::Backend, Tensor};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::error::{Error, Result};

/// A cryptographically secure random stream.
pub struct SecretRng(ChaCha20Rng);

/// The grid of the discrete mechanism: the clipped sum is rounded to multiples of `step` (a
/// power of two, so that scaling by it is exact in floating point) and noise of `sigma2` steps²
/// per coordinate is added in steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grid {
    /// The grid's step, in the sum's units: a power of two.
    pub step: f64,
    /// The discrete Gaussian's variance in steps², an integer.
    pub sigma2: u64,
}

/// One network's released vector: its clipped `sum` rounded to the grid of `step`, plus `noise`
/// (in steps), times the step: step · fl(round(sum / step) + z). Dividing by a power of two is
/// exact, the rounded value is an integer held exactly in f32, and f32 addition is correctly
/// rounded, so the result is a function of the integer round(sum / step) + z alone: its low
/// bits say nothing more about the sum. Without noise (`step` 0) the sum itself.
pub fn grid_release<B: Backend>(sum: Tensor<B, 1>, noise: Tensor<B, 1>, step: f64) -> Tensor<B, 1> {
    if step == 0.0 {
        return sum + noise;
    }
    (sum.mul_scalar(1.0 / step).round() + noise).mul_scalar(step)
}

/// Noise in steps is kept below this, so that it is exact in f32.
pub const MAX_NOISE_STEPS: i64 = 1 << 24;

impl Grid {
    /// The grid for noise multiplier σ > 0 and clipping norm C over `dims` coordinates: the
    /// largest power-of-two step at most σC/2^19, and σ_g² the smallest integer with
    /// σ_g ≥ σ·(C/step + √dims), σ times the rounded sum's sensitivity in steps. So σ_g lies
    /// in [2^19, 2^20 + σ√dims): rounding costs a factor 1 + step·√dims/C ≤ 1 + σ√dims/2^19 in
    /// noise (0.5% for σ = 5 over 250,000 coordinates). `None` without noise (σ = 0), or with an
    /// infinite C or σC (tests only).
    pub fn of(noise_multiplier: f64, clip: f64, dims: usize) -> Option<Self> {
        let sd = noise_multiplier * clip;
        if !(noise_multiplier > 0.0 && sd.is_finite() && sd > 0.0) {
            return None;
        }
        let step = 2f64.powi((sd / f64::from(1u32 << 19)).log2().floor() as i32);
        let sensitivity = clip / step + (dims as f64).sqrt();
        let sigma = noise_multiplier * sensitivity;
        let sigma2 = (sigma * sigma).ceil() as u64;
        Some(Self { step, sigma2 })
    }

    /// σ_g, the noise's standard deviation in steps.
    pub fn sigma(&self) -> f64 {
        (self.sigma2 as f64).sqrt()
    }
}

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

    /// 128 random bits as 32 hex digits (an id nobody can guess or repeat).
    pub fn hex_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.0.next_u64(), self.0.next_u64())
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

    /// `n` values of N(0, scale²), rounded to f32 (for the audit's and tests' own use; the
    /// mechanism's noise is [`SecretRng::grid_noise`]).
    pub fn gaussians(&mut self, n: usize, scale: f64) -> Vec<f32> {
        (0..n).map(|_| (scale * self.gaussian()) as f32).collect()
    }

    /// `n` values of the discrete Gaussian N_Z(0, grid.sigma2), each below 2^24 in size (drawn
    /// again beyond), as f32 (exact).
    pub fn grid_noise(&mut self, n: usize, grid: &Grid) -> Vec<f32> {
        (0..n)
            .map(|_| loop {
                let z = self.discrete_gaussian(grid.sigma2);
                if z.abs() < MAX_NOISE_STEPS {
                    break z as f32;
                }
            })
            .collect()
    }

    /// Uniform in {0, …, m − 1} (m > 0), by rejection of masked random bits.
    fn below(&mut self, m: u128) -> u128 {
        if m <= 1 {
            return 0;
        }
        let bits = 128 - (m - 1).leading_zeros();
        let mask = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        loop {
            let r = if bits <= 64 { self.0.next_u64() as u128 } else { ((self.0.next_u64() as u128) << 64) | self.0.next_u64() as u128 };
            let r = r & mask;
            if r < m {
                return r;
            }
        }
    }

    /// True with probability num/den (num ≤ den, den > 0).
    fn bernoulli(&mut self, num: u128, den: u128) -> bool {
        self.below(den) < num
    }

    /// True with probability exp(−x), x = num/den ≤ 1 (CKS Algorithm 1, first part): draw
    /// Bernoulli(x/k) for k = 1, 2, … until one fails; true when that k is odd. Bernoulli(x/k)
    /// is drawn as Bernoulli(x)·Bernoulli(1/k), which has the same law and cannot overflow.
    fn bernoulli_exp1(&mut self, num: u128, den: u128) -> bool {
        let mut k: u128 = 1;
        while self.bernoulli(num, den) && self.bernoulli(1, k) {
            k += 1;
        }
        k % 2 == 1
    }

    /// True with probability exp(−num/den) for any num/den ≥ 0 (CKS Algorithm 1).
    fn bernoulli_exp(&mut self, mut num: u128, den: u128) -> bool {
        while num > den {
            if !self.bernoulli_exp1(1, 1) {
                return false;
            }
            num -= den;
        }
        self.bernoulli_exp1(num, den)
    }

    /// The discrete Laplace of scale t: P(x) ∝ exp(−|x|/t) (CKS Algorithm 2).
    fn discrete_laplace(&mut self, t: u128) -> i128 {
        loop {
            let u = loop {
                let u = self.below(t);
                if self.bernoulli_exp(u, t) {
                    break u;
                }
            };
            let mut v: u128 = 0;
            while self.bernoulli_exp1(1, 1) {
                v += 1;
            }
            let magnitude = (v * t + u) as i128;
            let negative = self.bernoulli(1, 2);
            if !(negative && magnitude == 0) {
                return if negative { -magnitude } else { magnitude };
            }
        }
    }

    /// The discrete Gaussian N_Z(0, sigma2): P(x) ∝ exp(−x²/(2·sigma2)) over the integers, exactly
    /// (CKS Algorithm 3: a discrete Laplace of scale t = ⌊√sigma2⌋ + 1, kept with probability
    /// exp(−(|x| − sigma2/t)²/(2·sigma2))). A candidate whose acceptance exponent overflows 128
    /// bits (|x| beyond 2^40 σ) is dropped: its acceptance probability is below e^-(2^70).
    pub fn discrete_gaussian(&mut self, sigma2: u64) -> i64 {
        if sigma2 == 0 {
            return 0;
        }
        let s = sigma2 as u128;
        let t = s.isqrt() + 1;
        loop {
            let x = self.discrete_laplace(t);
            // (|x| − s/t)² / (2s) = (|x|·t − s)² / (2·s·t²)
            let Some(d) = x.unsigned_abs().checked_mul(t).map(|a| a.abs_diff(s)) else { continue };
            let (Some(num), Some(den)) = (d.checked_mul(d), (2 * s).checked_mul(t * t)) else { continue };
            if self.bernoulli_exp(num, den) {
                return x as i64;
            }
        }
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

    /// P(x) ∝ exp(−x²/(2σ²)) over the integers, normalised over |x| ≤ 40σ.
    fn pmf(sigma2: f64, x: i64) -> f64 {
        let range = (40.0 * sigma2.sqrt()) as i64 + 1;
        let z: f64 = (-range..=range).map(|k| (-(k * k) as f64 / (2.0 * sigma2)).exp()).sum();
        (-(x * x) as f64 / (2.0 * sigma2)).exp() / z
    }

    #[test]
    fn the_discrete_gaussian_fits_its_law() {
        // Chi-square goodness of fit over the values within 3σ and the two tails, 100,000 draws.
        let mut r = SecretRng::known(3);
        for sigma2 in [1u64, 2, 10, 50] {
            let n = 100_000;
            let draws: Vec<i64> = (0..n).map(|_| r.discrete_gaussian(sigma2)).collect();
            let edge = (3.0 * (sigma2 as f64).sqrt()).ceil() as i64;
            let mut chi2 = 0.0;
            let mut cells = 0;
            let expected_tail: f64 = (edge + 1..=edge * 20 + 40).map(|x| pmf(sigma2 as f64, x)).sum::<f64>() * n as f64;
            for x in -edge..=edge {
                let seen = draws.iter().filter(|&&d| d == x).count() as f64;
                let expected = pmf(sigma2 as f64, x) * n as f64;
                chi2 += (seen - expected).powi(2) / expected;
                cells += 1;
            }
            for side in [1i64, -1] {
                let seen = draws.iter().filter(|&&d| d * side > edge).count() as f64;
                chi2 += (seen - expected_tail).powi(2) / expected_tail;
                cells += 1;
            }
            // The 0.999 quantile of chi-square with k − 1 degrees of freedom, k ≤ 47: below
            // k − 1 + 4.5√(2(k − 1)) (Wilson–Hilferty gives 3.1 standard deviations there).
            let dof = (cells - 1) as f64;
            assert!(chi2 < dof + 4.5 * (2.0 * dof).sqrt(), "sigma2 {sigma2}: chi2 {chi2} over {dof} degrees of freedom");
        }
        // The mechanism's size of σ_g (2^19 to 2^21): mean, variance and kurtosis.
        let sigma2 = 3u64 << 38;
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.discrete_gaussian(sigma2) as f64 / (sigma2 as f64).sqrt()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.015 && (kurt - 3.0).abs() < 0.06, "{mean} {var} {kurt}");
    }

    #[test]
    fn a_planted_bias_in_the_sampler_fails_the_fit() {
        // The same chi-square statistic on draws shifted by one in a tenth of the cases: the
        // test above would refuse such a sampler.
        let mut r = SecretRng::known(4);
        let (sigma2, n) = (10u64, 100_000);
        let draws: Vec<i64> = (0..n).map(|i| r.discrete_gaussian(sigma2) + i64::from(i % 10 == 0)).collect();
        let chi2: f64 = (-10..=10)
            .map(|x| {
                let expected = pmf(sigma2 as f64, x) * n as f64;
                (draws.iter().filter(|&&d| d == x).count() as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 > 20.0 + 4.5 * 40f64.sqrt(), "{chi2}");
    }

    #[test]
    fn the_grid_has_the_promised_scale() {
        let g = Grid::of(5.0, 10.0, 250_000).unwrap();
        assert_eq!(g.step.log2().fract(), 0.0, "a power of two");
        assert!(g.step <= 50.0 / f64::from(1u32 << 19) && g.step > 50.0 / f64::from(1u32 << 20), "{g:?}");
        // σ_g covers σ times the rounded sum's sensitivity, C/step + √d, and not much more.
        let sensitivity = 10.0 / g.step + 500.0;
        assert!(g.sigma() >= 5.0 * sensitivity && g.sigma() < 5.0 * sensitivity + 1.0, "{g:?}");
        assert!(g.sigma() < f64::from(1u32 << 21), "noise of 2^24 steps is beyond 8 sigma_g");
        assert_eq!(Grid::of(0.0, 10.0, 100), None);
        assert_eq!(Grid::of(0.0, f64::INFINITY, 100), None);
    }

    /// P(the lowest mantissa bit is set | the value is in [4, 8)) over `values`, and how many
    /// were in [4, 8).
    fn low_bit(values: &[f32]) -> (f64, usize) {
        let inside: Vec<&f32> = values.iter().filter(|v| (4.0..8.0).contains(*v)).collect();
        (inside.iter().filter(|v| v.to_bits() & 1 == 1).count() as f64 / inside.len() as f64, inside.len())
    }

    /// Releases of one coordinate whose clipped sum is `sum`, `n` times, noise σC = 3 (σ = 3,
    /// C = 1, one coordinate), on the grid, through the mechanism's own tensor code.
    fn releases(sum: f32, n: usize, rng: &mut SecretRng) -> Vec<f32> {
        type B = burn_ndarray::NdArray;
        let grid = Grid::of(3.0, 1.0, 1).unwrap();
        let dev = Default::default();
        let sums = Tensor::<B, 1>::from_data(burn_tensor::TensorData::new(vec![sum; n], [n]), &dev);
        let noise = Tensor::<B, 1>::from_data(burn_tensor::TensorData::new(rng.grid_noise(n, &grid), [n]), &dev);
        grid_release(sums, noise, grid.step).into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn the_output_s_low_bits_do_not_depend_on_the_input() {
        // The review's check (Jin et al. 2022): two sums one ulp apart; the share of outputs in
        // [4, 8) whose last mantissa bit is set must be the same for both.
        let (a, b) = (0.75f32, f32::from_bits(0.75f32.to_bits() + 1));
        let n = 200_000;
        let z = |(p, m): (f64, usize), (q, k): (f64, usize)| {
            let pooled = (p * m as f64 + q * k as f64) / (m + k) as f64;
            let se = (pooled * (1.0 - pooled) * (1.0 / m as f64 + 1.0 / k as f64)).sqrt();
            if se == 0.0 { 0.0 } else { (p - q) / se }
        };
        let mut r = SecretRng::known(5);
        let (ga, gb) = (low_bit(&releases(a, n, &mut r)), low_bit(&releases(b, n, &mut r)));
        assert!(ga.1 > 10_000 && gb.1 > 10_000, "{ga:?} {gb:?}");
        assert!(z(ga, gb).abs() < 4.0, "the grid's outputs: {ga:?} against {gb:?}");
        // The planted fault, the floating-point mechanism (f64 Gaussian rounded to f32, added in
        // f32): the same check tells the two sums apart.
        let float = |s: f32, r: &mut SecretRng| -> Vec<f32> { r.gaussians(n, 3.0).into_iter().map(|x| s + x).collect() };
        let (fa, fb) = (low_bit(&float(a, &mut r)), low_bit(&float(b, &mut r)));
        eprintln!("low bit set in [4, 8): grid {ga:?} {gb:?} (z {:.2}); float {fa:?} {fb:?} (z {:.2})", z(ga, gb), z(fa, fb));
        assert!(z(fa, fb).abs() > 4.0, "the float mechanism's low bits: {fa:?} against {fb:?}");
    }
}

//! The privacy accountant: Rényi differential privacy of the Poisson-subsampled Gaussian
//! mechanism (Mironov, Talwar & Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
//! Mechanism", integer orders, computed in log space), composed over the iterations and turned
//! into (ε, δ) with the conversion of Balle et al. 2020 ("Hypothesis testing interpretations and
//! Renyi differential privacy", Theorem 21), as Opacus and Google's dp-accounting do. Adjacency:
//! add or remove one unit (a patient). σ for a target ε is found by bisection.

use crate::error::{Error, Result};

/// The Rényi orders the accountant minimises over: every integer from 2 to 256.
pub const ORDERS: std::ops::RangeInclusive<u32> = 2..=256;

/// The accountant's name as the archive records it.
pub const NAME: &str = "RDP of the Poisson-subsampled Gaussian (Mironov, Talwar & Zhang 2019), integer orders 2-256, converted to (epsilon, delta) by Balle et al. 2020; add/remove-one-patient adjacency";

/// `ln(e^a + e^b)` without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY { hi } else { hi + (lo - hi).exp().ln_1p() }
}

/// The RDP of one step of the Gaussian mechanism with noise multiplier `sigma`, each unit
/// sampled with probability `q`, at integer order `alpha ≥ 2`:
/// `ln(Σ_k C(α,k) (1−q)^(α−k) q^k exp((k²−k)/(2σ²))) / (α−1)`.
pub fn rdp_step(q: f64, sigma: f64, alpha: u32) -> f64 {
    assert!(alpha >= 2, "integer orders from 2");
    if q <= 0.0 {
        return 0.0;
    }
    if sigma <= 0.0 {
        return f64::INFINITY;
    }
    let a = alpha as f64;
    if q >= 1.0 {
        return a / (2.0 * sigma * sigma);
    }
    let (log_q, log_1q) = (q.ln(), (-q).ln_1p());
    let mut log_binom = 0.0; // ln C(α, 0)
    let mut total = f64::NEG_INFINITY;
    for k in 0..=alpha {
        let kf = k as f64;
        let term = log_binom + (a - kf) * log_1q + kf * log_q + (kf * kf - kf) / (2.0 * sigma * sigma);
        total = log_add(total, term);
        log_binom += (a - kf).ln() - (kf + 1.0).ln();
    }
    total / (a - 1.0)
}

/// ε at `delta` after `steps` steps, and the order that gives it: the smallest over [`ORDERS`] of
/// `T·rdp(α) + ln((α−1)/α) − (ln δ + ln α)/(α−1)` (Balle et al. 2020), never below 0.
pub fn epsilon(q: f64, sigma: f64, steps: usize, delta: f64) -> (f64, u32) {
    let mut best = (f64::INFINITY, *ORDERS.start());
    if steps == 0 {
        return (0.0, best.1);
    }
    for alpha in ORDERS {
        let a = alpha as f64;
        let rdp = steps as f64 * rdp_step(q, sigma, alpha);
        let eps = rdp + ((a - 1.0) / a).ln() - (delta.ln() + a.ln()) / (a - 1.0);
        if eps < best.0 {
            best = (eps, alpha);
        }
    }
    (best.0.max(0.0), best.1)
}

/// The smallest noise multiplier σ (to a relative 1e-6) whose ε after `steps` steps at rate `q`
/// is at most `target` at `delta`. The ε of the σ returned is never above `target`.
pub fn calibrate_sigma(target: f64, delta: f64, q: f64, steps: usize) -> Result<f64> {
    if !(target.is_finite() && target > 0.0) {
        return Err(Error::Config(format!("the privacy budget epsilon = {target} must be a positive finite number")));
    }
    if !(delta > 0.0 && delta < 1.0) {
        return Err(Error::Config(format!("delta = {delta} is outside (0, 1)")));
    }
    if !(q > 0.0 && q <= 1.0) {
        return Err(Error::Config(format!("the sampling rate q = {q} is outside (0, 1]")));
    }
    let eps = |s: f64| epsilon(q, s, steps, delta).0;
    let mut hi = 1.0;
    while eps(hi) > target {
        hi *= 2.0;
        if hi > 1e6 {
            return Err(Error::Config(format!("no noise multiplier up to 1e6 reaches epsilon = {target} at delta = {delta} in {steps} steps")));
        }
    }
    let mut lo = 0.0;
    while hi - lo > 1e-6 * hi {
        let mid = 0.5 * (lo + hi);
        if eps(mid) > target { lo = mid } else { hi = mid }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_test_vectors() {
        // Order 2, one step: ln(1 + q²(e − 1)) exactly.
        let r = rdp_step(0.01, 1.0, 2);
        assert!((r - 1.718_134_2e-4).abs() < 1e-11, "{r}");
        assert!((r - (1e-4 * (std::f64::consts::E - 1.0)).ln_1p()).abs() < 1e-15);
        let (e, _) = epsilon(0.01, 1.0, 300, 1e-5);
        assert!((e - 1.48).abs() < 0.005, "{e}");
        let (e, _) = epsilon(0.01, 4.0, 10_000, 1e-5);
        assert!((e - 1.04).abs() < 0.01, "{e}");
    }

    #[test]
    fn full_sampling_is_the_gaussian_mechanism_and_bounds_hold() {
        // q = 1: α/(2σ²), the Gaussian mechanism's RDP.
        assert!((rdp_step(1.0, 2.0, 10) - 10.0 / 8.0).abs() < 1e-12);
        // Sampling only helps, more noise only helps, more steps only cost.
        assert!(rdp_step(0.1, 2.0, 10) < rdp_step(1.0, 2.0, 10));
        assert!(epsilon(0.01, 2.0, 300, 1e-5).0 < epsilon(0.01, 1.0, 300, 1e-5).0);
        assert!(epsilon(0.01, 1.0, 600, 1e-5).0 > epsilon(0.01, 1.0, 300, 1e-5).0);
        assert_eq!(epsilon(0.01, 1.0, 0, 1e-5).0, 0.0);
        assert_eq!(rdp_step(0.5, 0.0, 2), f64::INFINITY);
    }

    #[test]
    fn calibration_round_trips() {
        for (target, q, steps) in [(1.0, 0.01, 300), (8.0, 0.05, 2000), (4.0, 1.0, 50), (0.5, 0.002, 10_000)] {
            let s = calibrate_sigma(target, 1e-5, q, steps).unwrap();
            let e = epsilon(q, s, steps, 1e-5).0;
            assert!(e <= target && e > target * 0.999, "target {target}: sigma {s} gives {e}");
        }
        // The vector's σ = 1 is found back from its ε.
        let s = calibrate_sigma(epsilon(0.01, 1.0, 300, 1e-5).0, 1e-5, 0.01, 300).unwrap();
        assert!((s - 1.0).abs() < 1e-4, "{s}");
        for bad in [calibrate_sigma(0.0, 1e-5, 0.01, 10), calibrate_sigma(1.0, 1.5, 0.01, 10), calibrate_sigma(1.0, 1e-5, 0.0, 10)] {
            assert!(matches!(bad, Err(Error::Config(_))));
        }
    }
}

//! The accountant's ε over a grid of sampling rates, noise multipliers, steps and δ, one TSV line
//! each (q, σ, steps, δ, ε, order), for `bench/accountant_check.py` to set beside Google's
//! dp-accounting:
//!
//!     cargo run --release --example bench_accountant

use anondistill::privacy::accountant::epsilon;

fn main() {
    for q in [0.001, 0.01, 0.0171, 0.2175, 1.0] {
        for sigma in [0.6, 1.0, 2.0, 4.0, 11.0] {
            for steps in [1, 300, 10_000] {
                for delta in [1e-5, 1.0 / 600_000.0] {
                    let (e, order) = epsilon(q, sigma, steps, delta);
                    println!("{q}\t{sigma}\t{steps}\t{delta:e}\t{e:.17e}\t{order}");
                }
            }
        }
    }
}

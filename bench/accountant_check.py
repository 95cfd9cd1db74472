"""The accountant (src/privacy/accountant.rs) against Google's dp-accounting (PyPI), the same
RDP of the Poisson-subsampled Gaussian with add/remove-one adjacency, orders 2-256 and the
conversion of Balle et al. 2020 (dp-accounting's RdpAccountant default).

    pip install dp-accounting
    python3 bench/accountant_check.py   # runs `cargo run --release --example bench_accountant`

Prints one table row per grid point and the largest relative difference.
"""
import subprocess
import sys

import dp_accounting
from dp_accounting import rdp


def theirs(q, sigma, steps, delta):
    acc = rdp.RdpAccountant(orders=list(range(2, 257)), neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return acc.get_epsilon(delta)


def main():
    out = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "bench_accountant"], check=True, capture_output=True, text=True).stdout
    print("| q | sigma | steps | delta | epsilon (ours) | epsilon (dp-accounting) | relative difference |")
    print("|---|---|---|---|---|---|---|")
    worst = 0.0
    for line in out.splitlines():
        q, sigma, steps, delta, ours, _order = line.split("\t")
        q, sigma, steps, delta, ours = float(q), float(sigma), int(steps), float(delta), float(ours)
        ref = theirs(q, sigma, steps, delta)
        rel = abs(ours - ref) / max(abs(ref), 1e-12)
        worst = max(worst, rel)
        print(f"| {q} | {sigma} | {steps} | {delta:.3g} | {ours:.6g} | {ref:.6g} | {rel:.1e} |")
    print(f"\nlargest relative difference: {worst:.2e}")
    sys.exit(0 if worst < 1e-6 else 1)


if __name__ == "__main__":
    main()

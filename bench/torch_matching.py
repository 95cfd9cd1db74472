#!/usr/bin/env python3
"""PyTorch reference of one anondistill matching iteration (distribution matching, Zhao & Bilen,
WACV 2023), timed on the CPU; prints one JSON line. `bench_objectives` runs it beside its own
iteration on the same machine, in the same run, and prints the ratio.

The same iteration as `src/distill/matching.rs` without DSA: a freshly drawn embedding network
(`depth` blocks of 3x3 conv `width`, instance norm without a learned scale, ReLU, 2x2 average
pooling; normal weights of std sqrt(2 / fan_in), zero biases), `real` real images of each class
embedded without a graph, each class's distilled images embedded with one, the loss
sum_c |mean real embedding - mean distilled embedding|^2, its gradient with respect to the
distilled images, and their SGD step with momentum 0.5. The images are random: the time does not
depend on their values.
"""
import argparse, json, time

import torch
import torch.nn.functional as F


def draw(width, depth, gen):
    params = []
    for k in range(depth):
        cin = 1 if k == 0 else width
        w = torch.randn(width, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5
        params.append((w, torch.zeros(width)))
    return params


def embed(params, x):
    for w, b in params:
        x = F.conv2d(x, w, b, padding=1)
        x = F.instance_norm(x, eps=1e-5)
        x = F.avg_pool2d(F.relu(x), 2)
    return x.flatten(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--real", default="128,128", help="real images of each class embedded per iteration, one count a class")
    ap.add_argument("--per-class", type=int, default=10, help="distilled images of each class")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=21)
    a = ap.parse_args()
    counts = [int(n) for n in a.real.split(",")]
    classes = len(counts)
    gen = torch.Generator().manual_seed(0)
    real = [torch.randn(n, 1, a.size, a.size, generator=gen) for n in counts]
    images = torch.randn(classes * a.per_class, 1, a.size, a.size, generator=gen)
    # Image i belongs to class i mod classes, as in the engine.
    members = [torch.arange(c, images.shape[0], classes) for c in range(classes)]
    velocity = torch.zeros_like(images)

    def iteration():
        nonlocal images, velocity
        params = draw(a.width, a.depth, gen)
        with torch.no_grad():
            targets = [embed(params, x).mean(0) for x in real]
        x = images.clone().requires_grad_(True)
        loss = sum(((t - embed(params, x[idx]).mean(0)) ** 2).sum() for t, idx in zip(targets, members))
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            velocity = velocity * 0.5 + g
            images = images - velocity
        return loss.item()

    iteration()
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - t)
    times.sort()
    print(json.dumps({"median_s": times[len(times) // 2], "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()

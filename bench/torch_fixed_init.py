#!/usr/bin/env python3
"""PyTorch reference for the fixed-initialisation rows of the quality table (rows 1 and 2 of
`bench_quality`): the same algorithm written independently with torch's autograd
(`create_graph=True` through the inner steps), on the same data, so that the engine's accuracy on
these rows can be read against a reference in the same run.

Algorithm (the SsnL/dataset-distillation code with the soft-label fork's learnable labels):
LeNet (conv 6 5x5 pad 2, ReLU, max-pool, conv 16 5x5, ReLU, max-pool, fc 120, fc 84, fc C), one
fixed Xavier-normal initialisation with zero biases; `images` distilled images in one step
(N(0,1) in normalised space), one-hot labels (learnable unless --hard-labels), one learnable
learning rate per inner step (softplus of a raw value), the step replayed `epochs` times; each
outer iteration unrolls the inner SGD steps from the fixed weights, takes cross-entropy on a real
minibatch (shuffled passes, partial last batch dropped) and updates images, labels and rates
with Adam (betas 0.5/0.999), the rate halved every `decay_iterations`. The score is the test
accuracy of the fixed network after the replay with the learned rates.

    python3 bench/torch_fixed_init.py --images 10 --iterations 23200 [--hard-labels]
        [--lr-init 0.02] [--outer-lr 0.01] [--decay-iterations 2320] [--seed 0] [--curve 2320]

Prints one line per curve point and a final JSON line. Reads ../shared/data/mnist10k/.
"""
import argparse, json, math, time

import numpy as np
import torch
import torch.nn.functional as F

from torch_metastep import forward, init, lenet_params, soft_ce  # the LeNet of the meta-step reference


def lenet(w, x):
    return forward("lenet", w, x, 0)


def unroll(w0, images, labels, lrs, epochs, create_graph):
    w = [p.detach().requires_grad_() for p in w0]
    for e in range(epochs):
        loss = soft_ce(lenet(w, images), labels)
        grads = torch.autograd.grad(loss, w, create_graph=create_graph)
        w = [p - lrs[e] * g for p, g in zip(w, grads)]
    return w


def accuracy(w, x, y):
    with torch.no_grad():
        return (lenet(w, x).argmax(1) == y).float().mean().item() * 100


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/mnist10k/mnist10k.npz")
    ap.add_argument("--images", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=2320)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr-init", type=float, default=0.02)
    ap.add_argument("--outer-lr", type=float, default=0.01)
    ap.add_argument("--decay-iterations", type=int, default=2320)
    ap.add_argument("--hard-labels", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--curve", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    d = np.load(a.data)
    tx = torch.tensor(d["train_images"], dtype=torch.float32) / 255.0
    mean, std = tx.mean().item(), tx.std(unbiased=False).item()
    norm = lambda x: ((x - mean) / std).unsqueeze(1)
    train_x, train_y = norm(tx), torch.tensor(d["train_labels"].reshape(-1), dtype=torch.long)
    test_x = norm(torch.tensor(d["test_images"], dtype=torch.float32) / 255.0)
    test_y = torch.tensor(d["test_labels"].reshape(-1), dtype=torch.long)
    classes = int(train_y.max()) + 1

    gen = torch.Generator().manual_seed(a.seed)
    w0 = init(lenet_params(classes, 28), "cpu", gen)
    images = torch.randn(a.images, 1, 28, 28, generator=gen).requires_grad_()
    labels = F.one_hot(torch.arange(a.images) % classes, classes).float().requires_grad_(not a.hard_labels)
    raw = torch.full((a.epochs,), math.log(math.expm1(a.lr_init)), requires_grad=True)
    params = [images, raw] + ([] if a.hard_labels else [labels])
    opt = torch.optim.Adam(params, lr=a.outer_lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=a.decay_iterations, gamma=0.5)

    def score():
        w = unroll(w0, images.detach(), labels.detach(), F.softplus(raw).detach(), a.epochs, False)
        return accuracy(w, test_x, test_y)

    per_pass = len(train_x) // a.batch
    order, t0 = [], time.time()
    for it in range(1, a.iterations + 1):
        if not order:
            perm = torch.randperm(len(train_x), generator=gen)[: per_pass * a.batch]
            order = list(perm.split(a.batch))
        idx = order.pop(0)
        w = unroll(w0, images, labels, F.softplus(raw), a.epochs, True)
        loss = F.cross_entropy(lenet(w, train_x[idx]), train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if not math.isfinite(loss.item()):
            raise SystemExit(f"outer loss {loss.item()} at iteration {it}")
        if a.curve and it % a.curve == 0 and it < a.iterations:
            print(f"  iteration {it}: {score():.2f} % (outer lr {sched.get_last_lr()[0]:.5f}, {time.time() - t0:.0f} s)", flush=True)
    result = {
        "reference": "torch", "images": a.images, "epochs": a.epochs, "iterations": a.iterations,
        "hard_labels": a.hard_labels, "lr_init": a.lr_init, "outer_lr": a.outer_lr,
        "decay_iterations": a.decay_iterations, "seed": a.seed, "test_accuracy": round(score(), 2),
        "learned_lrs": [round(v, 4) for v in F.softplus(raw).tolist()], "seconds": round(time.time() - t0),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

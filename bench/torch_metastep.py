#!/usr/bin/env python3
"""PyTorch reference of one anondistill meta-step (the SsnL/dataset-distillation algorithm with
learnable labels and learning rates), timed on the CPU. Prints one JSON line per configuration.

Same networks as the Rust engine (LeNet: conv 6 (5x5, pad 2), max-pool, conv 16 (5x5), max-pool,
fc 120, fc 84, fc C; ConvNet: depth x [3x3 conv width, ReLU, 2x2 avg-pool], fc C), Xavier-normal
weights, zero biases, inner SGD with create_graph=True, outer cross-entropy on a real batch.
`--device cuda` runs it on the GPU (the loss's `.item()` at the end of each step waits for it).
"""
import argparse, json, resource, time

import torch
import torch.nn.functional as F


def lenet_params(classes, size):
    """LeNet's parameter shapes; the fully connected weights are (out, in), as `F.linear` takes them."""
    after = (size // 2 - 4) // 2
    return [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 16 * after * after), (120,), (84, 120), (84,), (classes, 84), (classes,)]


def convnet_params(classes, size, width, depth):
    shapes = []
    for d in range(depth):
        shapes += [(width, 1 if d == 0 else width, 3, 3), (width,)]
    after = size >> depth
    shapes += [(width * after * after, classes), (classes,)]
    return shapes


def init(shapes, device, gen=None):
    """Xavier-normal weights and zero biases, drawn in order from `gen` (torch's global generator
    if None). The spread depends on fan_in + fan_out only, so either layout of a matrix draws alike."""
    out = []
    for s in shapes:
        if len(s) == 1:
            out.append(torch.zeros(s, device=device))
        else:
            receptive = s[2] * s[3] if len(s) == 4 else 1
            fan_in, fan_out = s[1] * receptive, s[0] * receptive
            out.append(torch.empty(s, device=device).normal_(0, (2.0 / (fan_in + fan_out)) ** 0.5, generator=gen))
    return out


def soft_ce(logits, targets):
    """Cross-entropy against soft targets, averaged over the batch."""
    return -(F.log_softmax(logits, 1) * targets).sum(1).mean()


def forward(net, p, x, depth):
    if net == "lenet":
        x = F.max_pool2d(F.relu(F.conv2d(x, p[0], p[1], padding=2)), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, p[2], p[3])), 2)
        x = x.flatten(1)
        x = F.relu(F.linear(x, p[4], p[5]))
        x = F.relu(F.linear(x, p[6], p[7]))
        return F.linear(x, p[8], p[9])
    for d in range(depth):
        x = F.avg_pool2d(F.relu(F.conv2d(x, p[2 * d], p[2 * d + 1], padding=1)), 2)
    return x.flatten(1) @ p[2 * depth] + p[2 * depth + 1]


def meta_step(net, shapes, images, labels, raw_lrs, real_x, real_y, steps, epochs, per_step, depth, opt):
    params = [t.requires_grad_() for t in init(shapes, images.device)]
    lrs = F.softplus(raw_lrs)
    i = 0
    for _ in range(epochs):
        for s in range(steps):
            x = images[s * per_step:(s + 1) * per_step]
            y = labels[s * per_step:(s + 1) * per_step]
            out = forward(net, params, x, depth)
            loss = soft_ce(out, y)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            params = [p - lrs[i] * g for p, g in zip(params, grads)]
            i += 1
    loss = F.cross_entropy(forward(net, params, real_x, depth), real_y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def status_mib(key):
    """A memory figure of this process from /proc/self/status, in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--net", default="lenet")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    shapes = lenet_params(a.classes, a.size) if a.net == "lenet" else convnet_params(a.classes, a.size, a.width, a.depth)
    per_step = a.ipc * a.classes
    n = per_step * a.steps
    dev = torch.device(a.device)
    images = torch.randn(n, 1, a.size, a.size, device=dev, requires_grad=True)
    labels = F.one_hot(torch.arange(n, device=dev) % a.classes, a.classes).float().requires_grad_()
    raw_lrs = torch.full((a.steps * a.epochs,), float(torch.log(torch.expm1(torch.tensor(0.02)))), device=dev).requires_grad_()
    opt = torch.optim.Adam([images, labels, raw_lrs], lr=0.01, betas=(0.5, 0.999))
    real_x = torch.randn(a.batch, 1, a.size, a.size, device=dev)
    real_y = torch.randint(0, a.classes, (a.batch,), device=dev)
    rss_before = status_mib("VmRSS")
    args = (a.net, shapes, images, labels, raw_lrs, real_x, real_y, a.steps, a.epochs, per_step, a.depth, opt)
    meta_step(*args)  # warm-up
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        meta_step(*args)
        times.append(time.perf_counter() - t)
    times.sort()
    gpu = {}
    if dev.type == "cuda":
        gpu = {"gpu": torch.cuda.get_device_name(dev), "cuda_peak_allocated_mib": torch.cuda.max_memory_allocated(dev) / 2**20,
               "cuda_peak_reserved_mib": torch.cuda.max_memory_reserved(dev) / 2**20}
    print(json.dumps({**gpu, "device": a.device,
        "net": a.net, "batch": a.batch, "median_s": times[len(times) // 2], "min_s": times[0],
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mib": rss_before, "peak_mib": status_mib("VmHWM"),
    }))


if __name__ == "__main__":
    main()

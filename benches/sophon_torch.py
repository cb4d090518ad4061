#!/usr/bin/env python3
"""bench-small in PyTorch eager, for comparison with `sophon-workbench bench` (run by hand,
never by CI). Same configuration: cnn-small on 1x28x28, 10 classes, data in memory; one FTS step
with one environment of K inner SGD steps (lr 1e-4) on batches of 150 (130 support / 20 query),
ICE on the query part, first-order accumulation, clip 0.5, Adam alpha = 3e-4; then one NTR step
on a batch of 150 (cross-entropy, Adam beta = 5e-4). 3 warm-up iterations, then 20 timed.

Two variants:
  reference   what the reference implementation does: the K inner steps are taken on a
              functional copy whose graph stays alive until the accumulated query losses are
              back-propagated once at the end (memory grows with K);
  first-order a fresh graph per inner step, gradients accumulated as they come (flat in K).

Usage: python3 benches/sophon_torch.py [--k 10] [--iters 20] [--threads 2] [--variant both]
                                       [--device cpu|cuda]
Needs only `pip install torch` (CPU; `--device cuda` times the same loop on an NVIDIA GPU).
"""
import argparse
import copy
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class CnnSmall(nn.Module):
    def __init__(self, channels=1, size=28, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (size // 4) ** 2, 128)
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))


def ice(logits, labels):
    """-log(1 - p_y) = logsumexp(z) - logsumexp(z without y)."""
    mask = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return (torch.logsumexp(logits, 1) - torch.logsumexp(logits - mask * 1e4, 1)).mean()


def batch(images, labels, n, gen):
    idx = torch.randint(0, images.shape[0], (n,), generator=gen).to(images.device)
    return images[idx], labels[idx]


def fts_first_order(model, fts_opt, data, k, gen):
    fast = copy.deepcopy(model)
    inner = torch.optim.SGD(fast.parameters(), lr=1e-4)
    acc = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(k):
        x, y = batch(*data, 150, gen)
        inner.zero_grad()
        F.cross_entropy(fast(x[:130]), y[:130]).backward()
        inner.step()
        fast.zero_grad()
        ice(fast(x[130:]), y[130:]).backward()
        for a, p in zip(acc, fast.parameters()):
            a.add_(p.grad, alpha=1.0 / k)
    apply(model, fts_opt, acc)


def fts_reference(model, fts_opt, data, k, gen):
    """Inner steps on functional parameters; every step's graph is kept until the end."""
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    fast = dict(params)
    total = 0.0
    for _ in range(k):
        x, y = batch(*data, 150, gen)
        loss = F.cross_entropy(torch.func.functional_call(model, fast, (x[:130],)), y[:130])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=False, retain_graph=True)
        fast = {n: p - 1e-4 * g for (n, p), g in zip(fast.items(), grads)}
        total = total + ice(torch.func.functional_call(model, fast, (x[130:],)), y[130:]) / k
    grads = torch.autograd.grad(total, list(params.values()))
    apply(model, fts_opt, grads)


def apply(model, opt, grads):
    norm = torch.sqrt(sum((g * g).sum() for g in grads))
    scale = min(1.0, 0.5 / (float(norm) + 1e-12))
    for p, g in zip(model.parameters(), grads):
        p.grad = g * scale
    opt.step()


def ntr(model, opt, data, gen):
    x, y = batch(*data, 150, gen)
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss)


def run(variant, k, iters, device, warmup=3):
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    # Random stand-ins for the procedural images: the cost does not depend on the pixels.
    original = (torch.rand(1000, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (1000,)))
    restricted = (torch.rand(1000, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (1000,)))
    original = tuple(t.to(device) for t in original)
    restricted = tuple(t.to(device) for t in restricted)
    model = CnnSmall().to(device)
    fts_opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    ntr_opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    fts = fts_reference if variant == "reference" else fts_first_order
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        fts(model, fts_opt, restricted, k, gen)
        ntr(model, ntr_opt, original, gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", choices=["reference", "first-order", "both"], default="both")
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a machine with an NVIDIA GPU")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"PyTorch {torch.__version__} eager, {where}, {a.threads} threads, bench-small K = {a.k}")
    for v in ["reference", "first-order"] if a.variant == "both" else [a.variant]:
        t = run(v, a.k, a.iters, device)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"torch-{v:<12} outer iteration  median {statistics.median(t):8.1f} ms  "
            f"min {min(t):8.1f}  max {max(t):8.1f}  peak RSS {peak:.0f} MiB (process so far)"
        )


if __name__ == "__main__":
    main()

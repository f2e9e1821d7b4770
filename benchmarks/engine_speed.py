"""Training speed of nnlib against PyTorch CPU, in one process and at the same thread counts.

Times epochs of the seed report's network (784-100-10, Adam, batch 100, float32)
on 50,000 random samples of MNIST shape, the same with batch norm and dropout
p=0.5, and the LeNet-style CNN (conv 8x5x5 - pool - conv 16x5x5 - pool - affine)
on 10,000 samples.  Each figure is the best of ``--repeats`` epochs after one
warm-up epoch.  The last line is machine-readable:

    ratio_1thread=<nnlib/torch> ratio_allthreads=<nnlib/torch>

for the plain network.  Needs the benchmark extra: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnlib import Adam, CNNSpec, MLPSpec, Network, Trainer  # noqa: E402

N_SAMPLES, BATCH, LR = 50_000, 100, 1e-3


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images of MNIST shape in [0, 1] and random labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(N_SAMPLES, 784), dtype=np.uint8).astype(np.float32) / 255
    y = rng.integers(0, 10, size=N_SAMPLES).astype(np.int64)
    return x, y


def time_nnlib(x: np.ndarray, y: np.ndarray, spec: MLPSpec | CNNSpec, repeats: int) -> float:
    """Best samples/s of nnlib's Trainer.train_epoch."""
    net = Network(spec, seed=0)
    trainer = Trainer(net, Adam(LR), batch_size=BATCH, seed=0)
    trainer.train_epoch(x, y)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.train_epoch(x, y)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def torch_model(spec: MLPSpec | CNNSpec):
    """The PyTorch twin of an nnlib spec (the seed MLP, with BN/dropout, or the LeNet-style CNN)."""
    from torch import nn

    if isinstance(spec, CNNSpec):
        layers: list[nn.Module] = [nn.Unflatten(1, (1, 28, 28))]
        channels = 1
        for filters, kernel in spec.conv:
            layers += [nn.Conv2d(channels, filters, kernel), nn.ReLU(), nn.MaxPool2d(spec.pool)]
            channels = filters
        layers += [nn.Flatten(), nn.Linear(int(np.prod(spec.feature_shape())), spec.classes)]
        return nn.Sequential(*layers)
    layers = [nn.Linear(784, 100)]
    if spec.batchnorm:
        layers.append(nn.BatchNorm1d(100))
    layers.append(nn.ReLU())
    if spec.dropout:
        layers.append(nn.Dropout(spec.dropout))
    layers.append(nn.Linear(100, 10))
    return nn.Sequential(*layers)


def time_torch(x: np.ndarray, y: np.ndarray, spec: MLPSpec | CNNSpec, repeats: int) -> float:
    """Best samples/s of the same network and loop in PyTorch (Adam, shuffled minibatches)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = torch_model(spec).train()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> None:
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), BATCH):
            idx = order[start : start + BATCH]
            loss = loss_fn(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    epoch()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        epoch()
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def gemm_bound(threads: int) -> float:
    """Samples/s this network would reach if it ran only its matrix products at sgemm speed."""
    rng = np.random.default_rng(1)
    a = rng.random((BATCH, 784), dtype=np.float32)
    b = rng.random((784, 100), dtype=np.float32)
    with threadpool_limits(threads):
        for _ in range(50):
            a @ b
        t0 = time.perf_counter()
        reps = 2000
        for _ in range(reps):
            a @ b
        flops_per_s = 2 * BATCH * 784 * 100 * reps / (time.perf_counter() - t0)
    # forward x@W1, backward x.T@dH (no dx for the input), and the small 100x10 layer
    flops_per_sample = 2 * (2 * 784 * 100 + 3 * 100 * 10)
    return flops_per_s / flops_per_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per measurement (best is kept)")
    parser.add_argument("--cnn-samples", type=int, default=10_000, help="samples per timed CNN epoch")
    args = parser.parse_args()
    import torch

    all_threads = os.cpu_count() or 1
    x, y = make_data()
    blas = [(i.get("internal_api"), i.get("architecture"), i.get("version")) for i in threadpool_info()]
    print(f"numpy {np.__version__}, torch {torch.__version__}, cores {all_threads}, BLAS {blas}")
    variants = {"cnn": CNNSpec(), "bn_dropout": MLPSpec(batchnorm=True, dropout=0.5), "plain": MLPSpec()}
    ratios: dict[tuple[str, int], float] = {}
    for label, spec in variants.items():
        n = args.cnn_samples if label == "cnn" else len(x)
        for threads in (1, all_threads):
            torch.set_num_threads(threads)
            with threadpool_limits(threads):
                ours = time_nnlib(x[:n], y[:n], spec, args.repeats)
                theirs = time_torch(x[:n], y[:n], spec, args.repeats)
            ratios[label, threads] = ours / theirs
            print(
                f"{label:>10} threads={threads}: nnlib {ours:,.0f} samples/s, torch {theirs:,.0f} samples/s, "
                f"ratio {ours / theirs:.2f}"
            )
            if label == "plain":
                bound = gemm_bound(threads)
                print(
                    f"{label:>10} threads={threads}: GEMM-only bound {bound:,.0f} samples/s; "
                    f"nnlib at {ours / bound:.0%}"
                )
    print(f"ratio_1thread={ratios['plain', 1]:.2f} ratio_allthreads={ratios['plain', all_threads]:.2f}")


if __name__ == "__main__":
    main()

"""Training speed of nnlib against PyTorch CPU, in one process, at the same thread counts, interleaved.

Trains the seed report's network (784-100-10, Adam, batch 100, float32) on 50,000 random samples of
MNIST shape, the same with batch norm and dropout p=0.5, and the LeNet-style CNN (conv 8x5x5 - pool -
conv 16x5x5 - pool - affine) on ``--cnn-samples`` samples.  After one warm-up epoch on each side, every
measurement is ``--pairs`` pairs of one nnlib epoch and one PyTorch epoch run back to back (the order
alternates from pair to pair), so that both see the same machine state; the figure reported is the
median ratio over the pairs, with its spread (min-max).  The ratio of the CPU seconds both sides used
(process time) is printed beside it: on a shared machine it is less disturbed by other processes.  The CPU model
and the BLAS kernel are printed first, and the last line is machine-readable (medians):

    ratio_1thread=<nnlib/torch> ratio_allthreads=<nnlib/torch> cnn_ratio_1thread=<nnlib/torch>

``--profile`` also prints where nnlib spends one training step, per layer and operation.
Needs the benchmark extra: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnlib import Adam, CNNSpec, MLPSpec, Network, Trainer  # noqa: E402
from nnlib import layers as F  # noqa: E402

N_SAMPLES, BATCH, LR = 50_000, 100, 1e-3


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images of MNIST shape in [0, 1] and random labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(N_SAMPLES, 784), dtype=np.uint8).astype(np.float32) / 255
    y = rng.integers(0, 10, size=N_SAMPLES).astype(np.int64)
    return x, y


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_kernel() -> str:
    """The BLAS library numpy uses and the kernel it picked for this CPU (threadpoolctl)."""
    found = [
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} kernels"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    return "; ".join(found) or "unknown"


def nnlib_epoch(spec: MLPSpec | CNNSpec, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """One epoch of nnlib's Trainer on (x, y), after a warm-up epoch."""
    trainer = Trainer(Network(spec, seed=0), Adam(LR), batch_size=BATCH, seed=0)
    trainer.train_epoch(x, y)
    return lambda: trainer.train_epoch(x, y)


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


def torch_epoch(spec: MLPSpec | CNNSpec, x: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """One epoch of the same network and loop in PyTorch (Adam, shuffled minibatches), after a warm-up."""
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
    return epoch


def interleaved(ours: Callable[[], None], theirs: Callable[[], None], n: int, pairs: int) -> dict[str, list[float]]:
    """Samples/s of both sides and their ratio in each of ``pairs`` back-to-back pairs."""
    out: dict[str, list[float]] = {"nnlib": [], "torch": [], "ratio": [], "cpu_ratio": []}
    for i in range(pairs):
        speed, cpu = {}, {}
        for side in ("nnlib", "torch") if i % 2 == 0 else ("torch", "nnlib"):
            run = ours if side == "nnlib" else theirs
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            speed[side], cpu[side] = n / (time.perf_counter() - t0), time.process_time() - c0
        for side, value in speed.items():
            out[side].append(value)
        out["ratio"].append(speed["nnlib"] / speed["torch"])
        out["cpu_ratio"].append(cpu["torch"] / cpu["nnlib"])
    return out


def gemm_bound(threads: int, reps: int = 300) -> float:
    """Samples/s the seed net would reach running only its matrix products, at this machine's sgemm speed.

    The products are exactly those of one nnlib training step: x @ W1 and h @ W2 forward; h.T @ d2,
    d2 @ W2.T and x.T @ d1 backward (no input gradient for the first layer).  Best of five rounds.
    """
    rng = np.random.default_rng(1)
    x, w1 = rng.random((BATCH, 784), dtype=np.float32), rng.random((784, 100), dtype=np.float32)
    h, w2 = rng.random((BATCH, 100), dtype=np.float32), rng.random((100, 10), dtype=np.float32)
    d2, d1 = rng.random((BATCH, 10), dtype=np.float32), rng.random((BATCH, 100), dtype=np.float32)
    best = float("inf")
    with threadpool_limits(threads):
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                x @ w1
                h @ w2
                h.T @ d2
                d2 @ w2.T
                x.T @ d1
            best = min(best, (time.perf_counter() - t0) / reps)
    return BATCH / best


def profile(spec: MLPSpec | CNNSpec, x: np.ndarray, y: np.ndarray, steps: int) -> list[tuple[str, float]]:
    """Milliseconds per training step spent in each layer's forward and backward, the loss and Adam.

    CPU time of this thread (one BLAS thread), so that other processes on the machine disturb it less.
    """
    net = Network(spec, seed=0)
    opt = Adam(LR)
    spent: dict[str, float] = defaultdict(float)

    def timed(label: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.thread_time()
            result = fn(*args, **kwargs)
            spent[label] += time.thread_time() - t0
            return result

        return wrapper

    for i, layer in enumerate(net.layers):
        name = f"{i}:{getattr(layer, 'name', '') or type(layer).__name__}"
        layer.forward = timed(f"{name} forward", layer.forward)
        layer.backward = timed(f"{name} backward", layer.backward)
    loss_fn = F.softmax_cross_entropy
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    try:
        F.softmax_cross_entropy = timed("softmax cross-entropy", loss_fn)
        for _round in range(2):  # the first round warms up
            spent.clear()
            t0 = time.thread_time()
            for s in range(steps):
                idx = order[(s * BATCH) % len(x) :][:BATCH]
                t_gather = time.thread_time()
                xb, yb = x[idx], y[idx]
                spent["batch gather"] += time.thread_time() - t_gather
                _, grads = net.loss_and_grads(xb, yb, rng)
                t_opt = time.thread_time()
                opt.step(net.params, grads)
                spent["adam step"] += time.thread_time() - t_opt
            total = time.thread_time() - t0
    finally:
        F.softmax_cross_entropy = loss_fn
    rows = [(label, 1e3 * seconds / steps) for label, seconds in spent.items()]
    rows.append(("other (Python, dict updates)", 1e3 * (total - sum(spent.values())) / steps))
    rows.append(("total", 1e3 * total / steps))
    return rows


def summary(values: list[float], fmt: str) -> str:
    return f"{format(statistics.median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="interleaved nnlib/PyTorch epoch pairs (>= 5)")
    parser.add_argument("--mlp-samples", type=int, default=N_SAMPLES, help="samples per timed MLP epoch")
    parser.add_argument("--cnn-samples", type=int, default=3_000, help="samples per timed CNN epoch")
    parser.add_argument("--only", choices=("plain", "bn_dropout", "cnn"), action="append", help="run only these")
    parser.add_argument("--profile", action="store_true", help="also print nnlib's per-operation profile")
    parser.add_argument("--profile-only", action="store_true", help="print only the per-operation profile")
    args = parser.parse_args()
    if args.pairs < 5:
        parser.error("--pairs must be at least 5")
    import torch

    all_threads = os.cpu_count() or 1
    x, y = make_data()
    print(f"CPU: {cpu_model()} ({all_threads} logical cores)", flush=True)
    print(f"BLAS: {blas_kernel()}")
    print(f"numpy {np.__version__}, torch {torch.__version__} (oneDNN {torch.backends.mkldnn.is_available()})")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var):
            print(f"note: {var}={os.environ[var]} is set")
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.pairs} interleaved pairs per figure, median (min-max)")
    variants = {"plain": MLPSpec(), "bn_dropout": MLPSpec(batchnorm=True, dropout=0.5), "cnn": CNNSpec()}
    medians: dict[tuple[str, int], float] = {}
    speeds: dict[tuple[str, int], float] = {}
    for label, spec in variants.items():
        if (args.only and label not in args.only) or args.profile_only:
            continue
        n = min(args.cnn_samples if label == "cnn" else args.mlp_samples, len(x))
        for threads in sorted({1, all_threads}):
            torch.set_num_threads(threads)
            with threadpool_limits(threads):
                result = interleaved(nnlib_epoch(spec, x[:n], y[:n]), torch_epoch(spec, x[:n], y[:n]), n, args.pairs)
            medians[label, threads] = statistics.median(result["ratio"])
            speeds[label, threads] = statistics.median(result["nnlib"])
            print(
                f"{label:>10} threads={threads}: nnlib {summary(result['nnlib'], ',.0f')} samples/s, "
                f"torch {summary(result['torch'], ',.0f')} samples/s, ratio {summary(result['ratio'], '.2f')}; "
                f"CPU-seconds ratio {summary(result['cpu_ratio'], '.2f')}",
                flush=True,
            )
            if label == "plain":
                bound = gemm_bound(threads)
                print(
                    f"{label:>10} threads={threads}: GEMM-only bound {bound:,.0f} samples/s; "
                    f"nnlib at {speeds[label, threads] / bound:.0%} of it"
                )
        if all_threads > 1 and (label, 1) in speeds:
            gain = speeds[label, all_threads] / speeds[label, 1]
            print(f"{label:>10}: nnlib {all_threads} threads / 1 thread = {gain:.2f}")
    if args.profile or args.profile_only:
        with threadpool_limits(1):
            for label in [v for v in ("plain", "cnn") if not args.only or v in args.only]:
                print(f"\nnnlib per-operation profile, {label}, 1 thread, ms per step of {BATCH} samples:")
                rows = profile(variants[label], x, y, steps=200 if label == "plain" else 40)
                total = rows[-1][1]
                for name, ms in rows:
                    print(f"  {name:<34} {ms:7.3f} ms  {ms / total:6.1%}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    fmt = lambda key: f"{medians[key]:.2f}" if key in medians else "nan"  # noqa: E731
    print(f"ratio_1thread={fmt(('plain', 1))} ratio_allthreads={fmt(('plain', all_threads))} "
          f"cnn_ratio_1thread={fmt(('cnn', 1))}")  # fmt: skip


if __name__ == "__main__":
    main()

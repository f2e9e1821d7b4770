"""How fast can NumPy alone train the seed net?  nnlib against a hand-fused NumPy step and PyTorch CPU.

The hand-fused step is the seed report's network (784-100-10, ReLU, softmax cross-entropy, Adam, batch
100, float32) written as one function with every buffer allocated once: the same arithmetic as nnlib's
layers and Adam, without layers, dicts or temporaries.  No engine built on NumPy calls alone can do
much better, so ``floor / torch`` bounds ``ratio_1thread`` of ``engine_speed.py`` on this machine.
Before timing, one epoch of each from the same initial weights and the same batch order is compared
with nnlib's (they must agree).  Then ``--pairs`` rounds of one epoch of each of the three, in an order
that rotates from round to round, at one BLAS thread; medians (min-max) of the per-round ratios.
Needs the benchmark extra: ``pip install -e .[bench]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from engine_speed import BATCH, LR, blas_kernel, cpu_model, make_data, torch_epoch  # noqa: E402

from nnlib import Adam, MLPSpec, Network, Trainer  # noqa: E402


class FusedSeedNet:
    """The seed net's training step in as few NumPy calls as its arithmetic allows; parameters and
    Adam's moments live in flat buffers laid out like ``Network.flat_params``."""

    def __init__(self, net: Network, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.params = net.flat_params.copy()
        self.grads, self.m, self.v, self.tmp = (np.zeros_like(self.params) for _ in range(4))
        views: dict[str, dict[str, np.ndarray]] = {"p": {}, "g": {}}
        offset = 0
        for name, p in net.params.items():
            views["p"][name] = self.params[offset : offset + p.size].reshape(p.shape)
            views["g"][name] = self.grads[offset : offset + p.size].reshape(p.shape)
            offset += p.size
        self.p, self.g = views["p"], views["g"]
        self.hidden = np.empty((BATCH, self.p["fc1.w"].shape[1]), dtype=self.params.dtype)
        self.rows = np.arange(BATCH)
        self.ones = np.ones(self.p["fc2.w"].shape[1], dtype=self.params.dtype)
        self.keep = np.empty(self.params.shape, dtype=bool)
        self.beta1, self.beta2, self.eps, self.t = beta1, beta2, eps, 0

    def step(self, xb: np.ndarray, yb: np.ndarray) -> float:
        p, g, h = self.p, self.g, self.hidden
        n = len(xb)
        np.matmul(xb, p["fc1.w"], out=h)
        h += p["fc1.b"]
        np.maximum(h, 0, out=h)
        s = h @ p["fc2.w"]
        s += p["fc2.b"]
        s -= s.max(axis=1, keepdims=True)
        picked = s[self.rows, yb]
        np.exp(s, out=s)
        sums = s @ self.ones
        loss = float(np.sum(np.log(sums) - picked)) / n
        sums *= n
        s /= sums[:, None]
        s[self.rows, yb] -= 1.0 / n
        np.matmul(h.T, s, out=g["fc2.w"])
        s.sum(axis=0, out=g["fc2.b"])
        dh = s @ p["fc2.w"].T
        dh *= h > 0
        np.matmul(xb.T, dh, out=g["fc1.w"])
        dh.sum(axis=0, out=g["fc1.b"])
        self.t += 1
        root_c2 = math.sqrt(1.0 - self.beta2**self.t)
        step_size, eps_hat = LR * root_c2 / (1.0 - self.beta1**self.t), self.eps * root_c2
        m, v, tmp = self.m, self.v, self.tmp
        m *= self.beta1
        np.multiply(self.grads, 1.0 - self.beta1, out=tmp)
        m += tmp
        v *= self.beta2
        np.multiply(self.grads, self.grads, out=tmp)
        tmp *= 1.0 - self.beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        self.params -= tmp
        if self.t % Adam.flush_every == 0:  # nnlib's flush of subnormal moments, in the same passes
            for moment in (m, v):
                np.abs(moment, out=tmp)
                np.greater_equal(tmp, np.finfo(tmp.dtype).tiny, out=self.keep)
                np.multiply(moment, self.keep, out=moment)
        return loss


def fused_epoch(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[FusedSeedNet, Callable[[], None]]:
    """An epoch of the fused step over (x, y), shuffled as nnlib's Trainer shuffles with ``seed``."""
    model = FusedSeedNet(Network(MLPSpec(), seed=seed))
    order_rng = Trainer(Network(MLPSpec(), seed=seed), Adam(LR), seed=seed).shuffle_rng

    def epoch() -> None:
        order = order_rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            idx = order[start : start + BATCH]
            model.step(x[idx], y[idx])

    return model, epoch


def agreement(x: np.ndarray, y: np.ndarray) -> float:
    """Largest difference between nnlib's and the fused step's parameters after one epoch from the same start."""
    trainer = Trainer(Network(MLPSpec(), seed=0), Adam(LR), batch_size=BATCH, seed=0)
    trainer.train_epoch(x, y)
    model, epoch = fused_epoch(x, y)
    epoch()
    return float(np.max(np.abs(trainer.model.flat_params - model.params)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7, help="rounds of one epoch of each (>= 5)")
    parser.add_argument("--samples", type=int, default=50_000, help="samples per timed epoch")
    args = parser.parse_args()
    if args.pairs < 5:
        parser.error("--pairs must be at least 5")
    import torch

    x, y = make_data()
    x, y = x[: args.samples], y[: args.samples]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"BLAS: {blas_kernel()}")
    print(f"numpy {np.__version__}, torch {torch.__version__}; load average before: {os.getloadavg()[0]:.2f}")
    torch.set_num_threads(1)
    with threadpool_limits(1):
        diff = agreement(x, y)
        print(f"after one epoch from the same start, nnlib and the fused step differ by at most {diff:.2e}")
        if not diff < 1e-4:
            raise SystemExit("the fused step does not compute what nnlib computes")
        trainer = Trainer(Network(MLPSpec(), seed=0), Adam(LR), batch_size=BATCH, seed=0)
        sides: dict[str, Callable[[], object]] = {
            "nnlib": lambda: trainer.train_epoch(x, y),
            "fused": fused_epoch(x, y)[1],
            "torch": torch_epoch(MLPSpec(), x, y),
        }
        sides["nnlib"](), sides["fused"]()  # warm-up (torch_epoch has run one)
        speed: dict[str, list[float]] = {side: [] for side in sides}
        names = list(sides)
        for i in range(args.pairs):
            for side in names[i % 3 :] + names[: i % 3]:
                t0 = time.perf_counter()
                sides[side]()
                speed[side].append(len(x) / (time.perf_counter() - t0))
    for side, values in speed.items():
        print(f"{side:>6}: {statistics.median(values):,.0f} samples/s ({min(values):,.0f}-{max(values):,.0f})")

    def ratio(a: str, b: str) -> str:
        values = [p / q for p, q in zip(speed[a], speed[b])]
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"fused / torch = {ratio('fused', 'torch')}; nnlib / torch = {ratio('nnlib', 'torch')}; "
          f"nnlib / fused = {ratio('nnlib', 'fused')}")  # fmt: skip


if __name__ == "__main__":
    main()

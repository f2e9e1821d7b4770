"""Time the claims table (``nnstudy.claims.study_claims``) in one process and with two, on the default
config's declared claims and a synthetic paired design of the default study's size (16 seeds, both arms).

The exact sign-flip intervals of the epochs claims are nearly all of the tables job's time (432 s on the
default study, docs/performance.md); with two workers the two ends of each interval are searched at once.
Prints each run's seconds, checks that both tables are identical, and ends with one line
``claims_seconds_1=... claims_seconds_2=... ratio=...``.

    python benchmarks/claims_intervals.py --seeds 16 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from nnstudy.claims import study_claims

REPO = Path(__file__).resolve().parents[1]


def synthetic_runs(config: dict, seeds: int, seed: int = 0) -> pd.DataFrame:
    """Every grid cell of both arms with ``seeds`` seeds: accuracies near the seed report's, epochs 8-30."""
    rng = np.random.default_rng(seed)
    grid = config["grid"]
    rows = []
    for arm in config["protocol"]["arms"]:
        for optimizer in grid["optimizers"]:
            for bn in grid["batchnorm"]:
                for dropout in grid["dropout"]:
                    base_acc = 0.975 + rng.normal(0, 0.002)
                    base_epochs = int(rng.integers(8, 30))
                    for k in range(1, seeds + 1):
                        rows.append({"arm": arm, "arch": "mlp", "optimizer": optimizer, "batchnorm": bn,
                                     "dropout": float(dropout), "seed": k, "status": "ok",
                                     "best_val_acc": base_acc + rng.normal(0, 0.001),
                                     "test_acc": base_acc + rng.normal(0, 0.0015),
                                     "epochs_to_best": base_epochs + int(rng.integers(-6, 7))})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    protocol = {**config["protocol"], "arms": ["replication", "tuned"]}
    runs = synthetic_runs(config, args.seeds)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.seeds} seeds, {len(protocol['claims'])} declared claims")  # fmt: skip
    seconds: dict[int, list[float]] = {1: [], 2: []}
    tables = {}
    for _ in range(args.repeats):
        for workers in (1, 2):
            start = time.perf_counter()
            tables[workers] = study_claims(runs, protocol, workers=workers)
            seconds[workers].append(time.perf_counter() - start)
            print(f"workers={workers}: {seconds[workers][-1]:.1f} s")
    assert tables[1].to_csv() == tables[2].to_csv(), "the two tables differ"
    one, two = min(seconds[1]), min(seconds[2])
    print(f"claims_seconds_1={one:.1f} claims_seconds_2={two:.1f} ratio={one / two:.2f}")


if __name__ == "__main__":
    main()

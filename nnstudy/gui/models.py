"""Find the study's checkpoints: the best BP network and the best CNN by validation accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnlib import Network

from ..io import read_json


@dataclass
class Choice:
    key: str
    label: str
    path: Path
    val_acc: float
    test_acc: float | None


def find_models(results_dir: str | Path) -> list[Choice]:
    """Best finished run of each architecture, best first; empty when the study has not run."""
    best: dict[str, tuple[float, dict, Path]] = {}
    for result_path in sorted(Path(results_dir).glob("grid/*/seed*/result.json")):
        result = read_json(result_path)
        model = result_path.with_name("model.npz")
        if result.get("status") != "ok" or not model.exists():
            continue
        arch = result.get("arch", "mlp")
        if arch not in best or result["best_val_acc"] > best[arch][0]:
            best[arch] = (result["best_val_acc"], result, model)
    choices = []
    for arch, (val, result, model) in best.items():
        name = "BP network (MLP)" if arch == "mlp" else "CNN"
        test = result.get("test_acc")
        label = f"{name}: {result['cell']}, seed {result['seed']}, val {val:.2%}" + (
            f", test {test:.2%}" if test is not None else ""
        )
        choices.append(Choice(arch, label, model, val, test))
    return sorted(choices, key=lambda c: -c.val_acc)


def load_models(choices: list[Choice]) -> dict[str, Network]:
    return {c.key: Network.load(c.path) for c in choices}

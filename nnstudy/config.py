"""The study's configuration: checks the JSON schema cannot express, and the names derived from it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnlib.optim import OPTIMIZERS

#: names that become parts of paths: letters, digits, dot, dash, underscore, and no ".."
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SEED_LR = {"sgd": 0.02, "adam": 0.001}
#: the four IDX files of a dataset in MNIST's format (nnstudy.mnist.FILES)
FILE_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
              "t10k-labels-idx1-ubyte.gz")  # fmt: skip


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and what is allowed."""


#: the protocol's arms: ``replication`` trains every cell at the seed report's learning rates, ``tuned`` at
#: the learning rate its own search found (or the fallback table when searches are off)
ARMS = ("replication", "tuned")
ARM_PREFIX = {"replication": "rep-", "tuned": ""}


@dataclass(frozen=True)
class Cell:
    """One grid cell: arm x architecture (the BP network, or the CNN) x optimiser x batch norm x dropout."""

    optimizer: str
    batchnorm: bool
    dropout: float
    arch: str = "mlp"
    arm: str = "tuned"

    @property
    def name(self) -> str:
        prefix = ARM_PREFIX[self.arm] + ("" if self.arch == "mlp" else f"{self.arch}-")
        return f"{prefix}{self.optimizer}-bn{int(self.batchnorm)}-dp{self.dropout:g}"

    @property
    def variant(self) -> str:
        """The seed report's Table 2 label (CNN cells are labelled CNN, +BN, +DP alike)."""
        base = "BPNN" if self.arch == "mlp" else "CNN"
        suffix = {(False, False): "", (True, False): "+BN", (False, True): "+DP", (True, True): "+BN+DP"}
        return base + suffix[(self.batchnorm, self.dropout > 0)]

    @classmethod
    def parse(cls, name: str) -> Cell:
        match = re.fullmatch(r"(rep-)?(?:(cnn)-)?([a-z]+)-bn([01])-dp([0-9.]+)", name)
        if not match:
            raise ConfigError(f"not a grid cell name: {name!r} (expected e.g. adam-bn1-dp0.5, cnn-adam-bn0-dp0 "
                              "or rep-sgd-bn0-dp0)")  # fmt: skip
        arm = "replication" if match[1] else "tuned"
        return cls(match[3], match[4] == "1", float(match[5]), match[2] or "mlp", arm)


def check_name(key: str, value: str) -> str:
    """Reject names that would escape the output folders when used in a path."""
    if not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value:
        raise ConfigError(f"{key}: {value!r} is not a safe name (letters, digits, '.', '-', '_'; no '..' and no '/')")
    return value


def schema_errors(config: dict[str, Any], schema_path: str) -> list[str]:
    """Readable schema violations: the key's dotted path, what is wrong, and what is allowed."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(open(schema_path, encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(p) for p in error.path) or "(top level)"
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            extra = sorted(set(error.instance) - set(allowed))
            for key in extra:
                prefix = f"{where}." if error.path else ""
                messages.append(f"{prefix}{key}: unknown key; allowed keys here: {', '.join(allowed)}")
        elif error.validator == "enum":
            messages.append(f"{where}: {error.instance!r} is not allowed; choose one of {error.validator_value}")
        elif error.validator == "type":
            messages.append(f"{where}: {error.instance!r} should be of type {error.validator_value}")
        else:
            messages.append(f"{where}: {error.message}")
    return messages


def check_config(config: dict[str, Any]) -> None:
    """Semantic checks after schema validation; raises ConfigError naming the key."""
    check_name("study_name", config["study_name"])
    check_name("mlflow.experiment_prefix", config["mlflow"]["experiment_prefix"])
    check_output_dir(config["output_dir"])
    known = sorted(OPTIMIZERS)
    grid, search, data = config["grid"], config["search"], config["data"]
    for key in ("optimizers", "batchnorm", "dropout", "seeds"):
        if not grid[key]:
            raise ConfigError(f"grid.{key} is empty: the grid needs at least one value")
        if len(set(map(str, grid[key]))) != len(grid[key]):
            raise ConfigError(f"grid.{key} has repeated values: {grid[key]}")
    for name in grid["optimizers"]:
        if name not in OPTIMIZERS:
            raise ConfigError(f"grid.optimizers: unknown optimizer {name!r}; allowed: {known}")
    for p in grid["dropout"]:
        if not 0 <= p < 1:
            raise ConfigError(f"grid.dropout: {p} is not a drop probability in [0, 1)")
    names = [f"{p:g}" for p in grid["dropout"]]
    if len(set(names)) != len(names):
        raise ConfigError(f"grid.dropout: {grid['dropout']} name the same cell twice (a cell is named by the "
                          "value's first 6 significant digits, dp0.5); give values that differ there")  # fmt: skip
    for name, lr in grid["fallback_lr"].items():
        if name not in OPTIMIZERS:
            raise ConfigError(f"grid.fallback_lr: unknown optimizer {name!r}; allowed: {known}")
        if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"grid.fallback_lr.{name}: learning rate must be a finite number > 0, got {lr!r}")
    if not search["enabled"]:
        missing = [o for o in grid["optimizers"] if o not in grid["fallback_lr"]]
        if missing:
            raise ConfigError(f"grid.fallback_lr lacks {missing}, needed when search.enabled is false")
    for name in grid["optimizers"]:
        if search["enabled"] and name not in search["lr_range"]:
            raise ConfigError(f"search.lr_range lacks optimizer {name!r}; give [low, high]")
    for name, bounds in search["lr_range"].items():
        if name not in OPTIMIZERS:
            raise ConfigError(f"search.lr_range: unknown optimizer {name!r}; allowed: {known}")
        low, high = bounds
        if not (low > 0 and high > 0):
            raise ConfigError(f"search.lr_range.{name}: learning rates must be > 0, got [{low}, {high}]")
        if low >= high:
            raise ConfigError(f"search.lr_range.{name}: low ({low}) must be below high ({high})")
    check_cnn(config)
    check_network_size(config)
    check_protocol(config)
    check_data(data)


def check_cnn(config: dict[str, Any]) -> None:
    """The CNN's section, when it is on: its grid, its search ranges or fallback rates, its layers."""
    cnn, search = config["cnn"], config["search"]
    if cnn["enabled"]:
        for key in ("optimizers", "batchnorm", "dropout"):
            if not cnn[key]:
                raise ConfigError(f"cnn.{key} is empty: give at least one value or set cnn.enabled: false")
        for name in cnn["optimizers"]:
            if search["enabled"] and name not in cnn["lr_range"]:
                raise ConfigError(f"cnn.lr_range lacks optimizer {name!r}; give [low, high]")
            if not search["enabled"] and name not in cnn["fallback_lr"]:
                raise ConfigError(f"cnn.fallback_lr lacks {name!r}, needed when search.enabled is false")
        for name, (low, high) in cnn["lr_range"].items():
            if not 0 < low < high:
                raise ConfigError(f"cnn.lr_range.{name}: need 0 < low < high, got [{low}, {high}]")
        try:
            from nnlib import CNNSpec

            CNNSpec(conv=tuple(tuple(c) for c in cnn["conv"]), hidden=tuple(cnn["hidden"]))
        except ValueError as exc:
            raise ConfigError(f"cnn.conv: {exc}") from None


def check_output_dir(path: str) -> None:
    """A study's own folder: relative, inside the folder Snakemake runs in."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith(("/", "~")) or ".." in parts:
        raise ConfigError(
            f"output_dir: {path!r} must be a relative path inside the folder Snakemake runs in (no '..', not "
            "absolute), such as studies/fashion-mnist; to put a study elsewhere, run with --directory"
        )
    for part in parts:
        if part not in ("", ".") and not SAFE_NAME.match(part):
            raise ConfigError(f"output_dir: {part!r} is not a safe folder name (letters, digits, . _ -)")


def check_data(data: dict[str, Any]) -> None:
    """The dataset section: a dataset other than MNIST names its own files' digests, and its class names are
    distinct in every language."""
    if data["train_size"] + data["val_size"] > 60_000:
        raise ConfigError(
            f"data.train_size + data.val_size = {data['train_size'] + data['val_size']} exceeds 60000, "
            "the training images an IDX dataset of MNIST's size holds"
        )
    missing = sorted(set(FILE_NAMES) - set(data["sha256"]))
    if data["name"] != "mnist" and missing:
        raise ConfigError(
            f"data.sha256 lacks {missing}: a dataset other than MNIST (data.name: {data['name']}) must give the "
            "SHA-256 of each of its four files (sha256sum prints them)"
        )
    for lang, names in data["classes"].items():
        if len(set(names)) != len(names):
            raise ConfigError(f"data.classes.{lang} repeats a name: {names}; give each class its own")


def check_network_size(config: dict[str, Any]) -> None:
    """The BP network's size, checked before any job (nnlib's MLPSpec refuses more than MAX_PARAMS)."""
    from nnlib import MLPSpec

    try:
        MLPSpec(hidden=tuple(config["training"]["hidden"]))
    except ValueError as exc:
        raise ConfigError(f"training.hidden: {exc}; use fewer or narrower hidden layers") from None


def check_protocol(config: dict[str, Any]) -> None:
    """The replication arm needs the seed's rate for every optimizer; CNN seeds must pair with grid seeds."""
    protocol, grid, cnn = config["protocol"], config["grid"], config["cnn"]
    if "replication" in protocol["arms"]:
        optimizers = set(grid["optimizers"]) | (set(cnn["optimizers"]) if cnn["enabled"] else set())
        missing = sorted(optimizers - set(protocol["replication_lr"]))
        if missing:
            raise ConfigError(f"protocol.replication_lr lacks {missing}, needed by the replication arm")
    extra = sorted(set(cnn.get("seeds") or []) - set(grid["seeds"]))
    if extra:
        raise ConfigError(f"cnn.seeds {extra} are not in grid.seeds: each CNN seed is paired with the BP "
                          "network's run of the same seed")  # fmt: skip
    check_seed_kinds(config)
    check_claims(config)


def check_seed_kinds(config: dict[str, Any]) -> None:
    """Confirmatory (grid), search and pilot seeds are disjoint: nothing confirmed was trained to choose."""
    search, pilot = config["search"], config["protocol"].get("pilot", {})
    n_trials = max(search["n_trials"], config["cnn"]["n_trials"])
    base = search["trial_seed_base"]
    kinds = {"grid.seeds": set(config["grid"]["seeds"]), "protocol.pilot.seeds": set(pilot.get("seeds", [])),
             "search seeds (search.trial_seed_base + slot)": set(range(base, base + n_trials))}  # fmt: skip
    names = list(kinds)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(kinds[first] & kinds[second])
            if shared:
                raise ConfigError(
                    f"{first} and {second} share seeds {shared[:5]}: confirmatory, search and "
                    "pilot seeds must be disjoint; move one set (e.g. search.trial_seed_base: 1000)"
                )


def check_claims(config: dict[str, Any]) -> None:
    """Each claim has the cells its kind needs, and each of them is a cell the study trains."""
    seen: set[str] = set()
    for claim in config["protocol"]["claims"]:
        kind = claim.get("kind", "contrast")
        need = {"contrast": ("a", "b"), "interaction": ("cells",), "all_of": ("components",)}[kind]
        missing = [key for key in need if key not in claim]
        if missing:
            raise ConfigError(f"protocol.claims: {claim['id']} ({kind}) needs {missing}")
        parts = claim.get("components", [])
        for entry in [claim, *parts]:
            if entry["id"] in seen:
                raise ConfigError(f"protocol.claims: the id {entry['id']!r} is used twice; ids must be unique")
            seen.add(entry["id"])


def untestable_claims(config: dict[str, Any]) -> list[str]:
    """A line per declared claim that names a cell the study does not train (a narrower grid than the
    claims were declared for): such a claim is left out of claims.csv, and the workflow says so."""
    out = []
    for claim in config["protocol"]["claims"]:
        parts = claim.get("components", [])
        selectors = [claim.get(k) for k in ("a", "b") if k in claim] + list(claim.get("cells", {}).values())
        selectors += [part[k] for part in parts for k in ("a", "b")]
        reasons = [r for r in (missing_cell(config, s) for s in selectors) if r]
        if reasons:
            out.append(f"protocol.claims: {claim['id']} is not tested: {reasons[0]}; add it there or drop the claim")
    return out


def missing_cell(config: dict[str, Any], selector: dict[str, Any]) -> str:
    """Why the study trains no cell that ``selector`` names ("" when it does)."""
    arch = selector.get("arch", "mlp")
    section = config["cnn"] if arch == "cnn" else config["grid"]
    if arch == "cnn" and not config["cnn"]["enabled"]:
        return "it names a CNN cell, and cnn.enabled is false"
    wanted = {"optimizers": selector["optimizer"], "batchnorm": bool(selector.get("batchnorm", False)),
              "dropout": float(selector.get("dropout", 0.0))}  # fmt: skip
    for key, value in wanted.items():
        values = section[key]
        found = any(math.isclose(float(v), value) for v in values) if key == "dropout" else value in values
        if not found:
            where = "cnn" if arch == "cnn" else "grid"
            return f"it names {key} {value!r}, which {where}.{key} ({values}) lacks"
    return ""


def grid_cells(config: dict[str, Any]) -> list[Cell]:
    """For each arm of the protocol: every optimiser x batch norm x dropout cell of the BP network, then the
    CNN cells, in config order."""
    g, c = config["grid"], config["cnn"]
    cells = []
    for arm in config["protocol"]["arms"]:
        cells += [Cell(o, bool(b), float(p), "mlp", arm) for o in g["optimizers"] for b in g["batchnorm"]
                  for p in g["dropout"]]  # fmt: skip
        if c["enabled"]:
            cells += [Cell(o, bool(b), float(p), "cnn", arm) for o in c["optimizers"] for b in c["batchnorm"]
                      for p in c["dropout"]]  # fmt: skip
    return cells


def arch_seeds(config: dict[str, Any], arch: str) -> list[int]:
    """The seeds every cell of an architecture is trained with: ``grid.seeds``, or ``cnn.seeds`` for the CNN
    when given (the first seeds of the grid's, so that every CNN seed has its paired BP-network seed)."""
    seeds = config["grid"]["seeds"]
    if arch == "cnn" and config["cnn"].get("seeds"):
        seeds = config["cnn"]["seeds"]
    return [int(seed) for seed in seeds]


def cell_seeds(config: dict[str, Any], cell: Cell) -> list[int]:
    """The seeds a cell is trained with (``arch_seeds`` of its architecture)."""
    return arch_seeds(config, cell.arch)


def search_cell(config: dict[str, Any], optimizer: str, arch: str = "mlp") -> Cell:
    """The cell an optimiser-wide learning-rate search trains (the plain network by default)."""
    s = config["search"]["cell"]
    return Cell(optimizer, bool(s["batchnorm"]), float(s["dropout"]), arch)


def study_for_cell(config: dict[str, Any], cell: Cell) -> str | None:
    """Name of the Optuna study whose best learning rate the cell uses (none in the replication arm)."""
    if cell.arm == "replication":
        return None
    if config["search"]["per_cell"]:
        return f"lr-{cell.name}"
    return f"lr-{cell.optimizer}" if cell.arch == "mlp" else f"lr-{cell.arch}-{cell.optimizer}"


def study_names(config: dict[str, Any]) -> list[str]:
    """All learning-rate studies the config asks for (none when searches are off)."""
    if not config["search"]["enabled"]:
        return []
    return sorted({name for c in grid_cells(config) if (name := study_for_cell(config, c))})


def study_cell(config: dict[str, Any], study: str) -> Cell:
    """The cell a study's trials train."""
    rest = study.removeprefix("lr-")
    if "-bn" in rest:
        return Cell.parse(rest)
    arch, _, optimizer = rest.rpartition("-")
    return search_cell(config, optimizer, arch or "mlp")


def search_settings(config: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """The search options for a cell's architecture (the CNN has its own smaller budget), with the range of
    the cell's own optimizer only: adding an optimizer does not rerun the other optimizers' searches."""
    s = dict(config["search"])
    if cell.arch == "cnn":
        c = config["cnn"]
        s.update(n_trials=c["n_trials"], max_epochs=c["search_max_epochs"], lr_range=c["lr_range"])
    s["lr_range"] = {k: v for k, v in s["lr_range"].items() if k == cell.optimizer}
    return s


#: fewer validation or test images than this, and one image moves an accuracy by more than 0.1 pp
COARSE_SPLIT = 1000


def coarse_splits(config: dict[str, Any]) -> list[str]:
    """Warnings for a validation or test split so small that one image moves its accuracy by more than
    0.1 pp, the size of the differences the claims test (the study runs; its report says so too)."""
    data = config["data"]
    return [
        f"data.{key} is {data[key]}: one image moves the {split} accuracy by {100 / data[key]:.2g} pp, more than "
        f"the differences the claims test; give it {COARSE_SPLIT} images or more for conclusions"
        for key, split in (("val_size", "validation"), ("test_size", "test"))
        if key in data and int(data[key]) < COARSE_SPLIT
    ]


#: SQLite refuses a file name longer than this many bytes (SQLITE_MAX_PATHNAME), the "-wal" beside it too
SQLITE_MAX_PATH_BYTES = 512


def folder_problems(folder: str | Path, tracking_uri: str) -> list[str]:
    """What keeps a study folder from working, found before any job: a local store's path over SQLite's
    limit, or a path holding both kinds of quote (MLflow's filter strings have no escape for that)."""
    path = str(Path(folder).resolve())
    problems = []
    if "'" in path and '"' in path:
        problems.append(f"the study folder {path!r} holds both ' and \" : MLflow cannot search for runs "
                        "tagged with it. Rename a folder in the path, or set output_dir to a folder without "
                        "quotes.")  # fmt: skip
    if not tracking_uri:
        db = Path(path) / "results" / "mlflow" / "mlflow.db-wal"
        if len(str(db).encode()) > SQLITE_MAX_PATH_BYTES:
            problems.append(f"the MLflow store's path under the study folder is {len(str(db).encode())} bytes, "
                            f"over SQLite's limit of {SQLITE_MAX_PATH_BYTES} ({str(db)[:80]}...). Run the study "
                            "in a folder with a shorter path (output_dir), or set mlflow.tracking_uri to a "
                            "server.")  # fmt: skip
    return problems


def store_lost_warnings(folder: str | Path, tracking_uri: str) -> list[str]:
    """A warning when the local MLflow store is gone but earlier searches are not: the next run logs into a
    new, empty store, and the searches' finished trials (kept, not trained again) name runs it lacks."""
    results = Path(folder) / "results"
    journal = results / "search" / "optuna.journal"
    searched = (journal.is_file() and journal.stat().st_size > 0) or any((results / "search").glob("*/setup.json"))
    if tracking_uri or (results / "mlflow" / "mlflow.db").exists() or not searched:
        return []
    return [
        "results/mlflow/mlflow.db is missing but results/search/ holds earlier searches: every job that "
        "logs runs again into a new, empty MLflow store (the grid's trainings too), and the searches keep "
        "their finished trials, whose MLflow runs are gone (each search's parent run will be tagged "
        "trials_without_runs). To train and log the searches again as well, delete results/search/ too (with a "
        "search.storage other than the journal, its Optuna studies as well: optuna delete-study); to "
        "keep the old runs instead, stop now and put results/mlflow back from a copy."
    ]


def report_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the report job takes it (its parameter): the seed lists sorted, so that reordering
    them, like reordering keys, re-renders nothing; the report lists seeds in order anyway."""
    ordered = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    for section in ("grid", "cnn"):
        if isinstance(ordered.get(section), dict) and "seeds" in ordered[section]:
            ordered[section]["seeds"] = sorted(ordered[section]["seeds"])
    pilot = ordered.get("protocol", {}).get("pilot")
    if isinstance(pilot, dict) and "seeds" in pilot:
        ordered["protocol"]["pilot"] = {**pilot, "seeds": sorted(pilot["seeds"])}
    return ordered


def gradient_check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of the config the gradient check reads (``grid_cells``, ``train_options``): the networks
    without their seeds, the arms and the split options; a rule's parameter, so that an edit of any of them
    checks again and nothing else does."""
    networks = {key: {k: v for k, v in config[key].items() if k != "seeds"} for key in ("grid", "training", "cnn")}
    split = {key: config["data"][key] for key in ("split_per_seed", "split_seed") if key in config["data"]}
    return {**networks, "protocol": {"arms": list(config["protocol"]["arms"])}, "data": split}


def train_options(config: dict[str, Any], cell: Cell, for_search: bool = False) -> dict[str, Any]:
    """The training settings of one cell (only what that cell depends on, so that Snakemake reruns a
    cell exactly when its own settings change)."""
    options = dict(config["training"])
    if cell.arch == "cnn":
        c = config["cnn"]
        options.update(max_epochs=c["max_epochs"], conv=[list(v) for v in c["conv"]], hidden=list(c["hidden"]))
        options.update({key: c[key] for key in ("schedule", "schedule_gamma", "schedule_step") if key in c})
    options["arch"] = cell.arch
    if cell.optimizer != "adam":  # only Adam reads it: editing it reruns only the Adam cells
        options.pop("adam_beta2", None)
    if for_search:
        options["max_epochs"] = search_settings(config, cell)["max_epochs"]
    elif config["data"].get("split_per_seed"):  # the searches keep the base split
        options["split_per_seed"] = True
        options["split_seed"] = int(config["data"]["split_seed"])
    return options


def n_rounds(search: dict[str, Any]) -> int:
    """How many rounds a study's ``n_trials`` take in batches of ``batch_size``."""
    return -(-search["n_trials"] // search["batch_size"])


def round_slots(search: dict[str, Any], round_: int) -> range:
    """The trial slots of one round: the numbers ``round_ * batch_size`` up to the study's ``n_trials``."""
    start = round_ * search["batch_size"]
    return range(start, min(search["n_trials"], start + search["batch_size"]))


def round_parts(search: dict[str, Any], round_: int) -> int:
    """How many Snakemake jobs share a round: ``workers``, or fewer when the round has fewer slots."""
    return min(search["workers"], len(round_slots(search, round_)))


def part_slots(search: dict[str, Any], round_: int, part: int) -> list[int]:
    """The slots one job of a round trains: every ``n``-th slot, from the ``part``-th on."""
    return list(round_slots(search, round_))[part :: round_parts(search, round_)]


def fallback_lr(config: dict[str, Any], cell: Cell) -> dict[str, float]:
    """The cell's own entry of the learning-rate table it falls back on: the seed report's rates
    (``protocol.replication_lr``) in the replication arm, else ``grid.fallback_lr`` or ``cnn.fallback_lr``
    (nothing else, so editing another optimizer's rate does not rerun this cell)."""
    if cell.arm == "replication":
        table = config["protocol"]["replication_lr"]
    else:
        table = config["cnn"]["fallback_lr"] if cell.arch == "cnn" else config["grid"]["fallback_lr"]
    return {cell.optimizer: table[cell.optimizer]} if cell.optimizer in table else {}

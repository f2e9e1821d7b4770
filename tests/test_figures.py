"""The study's figures on small synthetic inputs: what they show (the mean only while all seeds run, a
continuous best-so-far line, the seed's and the chosen learning rates, the claims, the model figures' numbers),
that each is written as PNG and SVG in English and Chinese, and that every label is readable at print size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnlib import MLPSpec, Network
from nnstudy import figures, model_figures
from nnstudy.figures import (
    best_so_far,
    claims_forest,
    deep_vs_shallow,
    epochs_all_running,
    optimizer_curves,
    search_figures,
    use_language,
)
from nnstudy.model_figures import confusion_matrix, draw_model_figures, misclassified, summarise_models, weight_grid

LANGS = ("en", "zh")
READABLE_PT = 8.0  # the smallest text when the report prints a figure 16 cm wide (MIN_PRINT_PT leaves a margin)


@pytest.fixture
def drawn(monkeypatch) -> dict[str, object]:
    """Every figure handed to ``save_figure``, by file stem, with its smallest text in points at print size."""
    seen: dict[str, object] = {}
    original = figures.save_figure

    def recording(fig, stem, formats=figures.FORMATS):
        fig.smallest_pt = figures.smallest_print_pt(fig)
        seen[Path(stem).name] = fig
        return original(fig, stem, formats)

    monkeypatch.setattr(figures, "save_figure", recording)
    monkeypatch.setattr(model_figures, "save_figure", recording)
    return seen


def assert_written(paths: list[Path], names: list[str]) -> None:
    """PNG and SVG of each name, each a real image."""
    for name in names:
        for ext in ("png", "svg"):
            [path] = [p for p in paths if p.name == f"{name}.{ext}"]
            head = path.read_bytes()[:2000]
            assert head.startswith(b"\x89PNG") if ext == "png" else b"<svg" in head, path


def all_text(fig) -> str:
    import matplotlib.text

    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_visible())


# ---------------------------------------------------------------- optimizer curves


def write_result(path: Path, optimizer: str, seed: int, n_epochs: int, best_epoch: int, arm: str = "tuned") -> Path:
    rng = np.random.default_rng(seed)
    acc = np.minimum(0.99, 0.9 + 0.01 * np.arange(1, n_epochs + 1) + rng.normal(0, 0.002, n_epochs))
    history = {"epoch": list(range(1, n_epochs + 1)), "train_acc": list(acc + 0.005), "val_acc": list(acc),
               "iteration_loss": list(np.linspace(1, 0.1, 10 * n_epochs)), "best_epoch": best_epoch}  # fmt: skip
    result = {"cell": f"{optimizer}-bn0-dp0", "optimizer": optimizer, "variant": "BPNN", "seed": seed,
              "status": "ok", "arm": arm, "history": history}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


def test_the_mean_over_seeds_covers_only_the_epochs_where_every_seed_runs():
    epochs = pd.DataFrame({"seed": [1] * 5 + [2] * 3 + [3] * 7, "epoch": [*range(1, 6), *range(1, 4), *range(1, 8)]})
    np.testing.assert_array_equal(epochs_all_running(epochs), [1, 2, 3])
    assert epochs_all_running(epochs[epochs["seed"] == 3]).tolist() == list(range(1, 8))
    assert epochs_all_running(epochs.iloc[:0]).size == 0


@pytest.mark.parametrize("lang", LANGS)
def test_optimizer_curves_mark_best_epochs_and_draw_the_mean_while_all_seeds_run(tmp_path, drawn, lang):
    paths = [write_result(tmp_path / f"r{s}.json", "sgd", s, n, best) for s, n, best in ((1, 6, 3), (2, 4, 2))]
    written = optimizer_curves(paths, tmp_path / "out", lang=lang)
    assert_written(written, ["curves_sgd"])
    fig = drawn["curves_sgd"]
    ax_loss, ax_acc = fig.axes
    means = [line for line in ax_acc.lines if line.get_linewidth() > 2]  # the means are the thick lines
    assert len(means) == 2 and all(list(line.get_xdata()) == [1, 2, 3, 4] for line in means)
    assert len([line for line in ax_acc.lines if line.get_linewidth() < 1]) == 4  # a thin line per seed and split
    [stars] = ax_acc.collections[-1:]
    assert sorted(x for x, _ in stars.get_offsets()) == [2, 3]  # each run's best epoch
    assert use_language(lang)["mean_all_run"].format(split=use_language(lang)["validation"]) in all_text(fig)
    for ax in (ax_loss, ax_acc):
        assert all(float(tick).is_integer() for tick in ax.get_xticks())
    assert fig.smallest_pt >= READABLE_PT


# ---------------------------------------------------------------- searches


def write_study(folder: Path, study: str, lrs: list[float], values: list[float], states: list[str],
                best_lr: float | None) -> Path:  # fmt: skip
    folder = folder / study
    folder.mkdir(parents=True)
    n = len(lrs)
    trials = pd.DataFrame({"number": range(n), "slot": range(n), "state": states, "value": values, "lr": lrs,
                           "holds_slot": True, "best_so_far": np.nan})  # fmt: skip
    trials.to_csv(folder / "trials.csv", index=False)
    if best_lr is not None:
        arch, optimizer = ("cnn", "adam") if "cnn" in study else ("mlp", study.split("-")[1])
        best = max(v for v, s in zip(values, states, strict=True) if s == "COMPLETE")
        (folder / "best.json").write_text(json.dumps({"lr": best_lr, "best_val_acc": best, "arch": arch,
                                                      "optimizer": optimizer}))  # fmt: skip
    return folder / "trials.csv"


def test_best_so_far_is_continuous_over_pruned_trials():
    values = pd.Series([0.90, 0.80, 0.95, 0.50, 0.93])
    states = pd.Series(["COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "COMPLETE"])
    assert best_so_far(values, states).tolist() == [0.90, 0.90, 0.95, 0.95, 0.95]
    assert best_so_far(values, pd.Series(["PRUNED", *states[1:]])).isna().tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("lang", LANGS)
def test_search_figures_mark_the_seed_and_chosen_rates(tmp_path, drawn, lang):
    trials = {
        "lr-sgd-bn0-dp0": write_study(tmp_path, "lr-sgd-bn0-dp0", [0.005, 0.05, 0.3, 0.8], [0.90, 0.97, 0.6, 0.96],
                                      ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"], best_lr=0.05),
        "lr-cnn-adam-bn0-dp0": write_study(tmp_path, "lr-cnn-adam-bn0-dp0", [0.0005, 0.002, 0.006], [0.97, 0.99, 0.98],
                                           ["COMPLETE", "COMPLETE", "COMPLETE"], best_lr=0.002),
    }  # fmt: skip
    written = search_figures(trials, tmp_path / "out", lang=lang, seed_lrs={"sgd": 0.02, "adam": 0.001})
    assert_written(written, ["search_history", "lr_vs_accuracy", "search_budget"])
    t = use_language(lang)

    history = drawn["search_history"]
    [legend] = history.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [t["COMPLETE"], t["PRUNED"], t["best_so_far"]]  # no "failed": nothing failed
    for ax in history.axes[:2]:
        assert ax.get_legend() is None  # the legend is outside the panels
        [step] = ax.lines
        assert not np.isnan(step.get_ydata()).any() and len(step.get_xdata()) == len(ax.collections[0].get_offsets())\
            + (len(ax.collections[1].get_offsets()) if len(ax.collections) > 1 else 0)  # fmt: skip

    lr = drawn["lr_vs_accuracy"]
    sgd, cnn = lr.axes[:2]

    def vertical_lines(ax) -> dict[float, str]:
        return {line.get_xdata()[0]: line.get_linestyle() for line in ax.lines}

    assert vertical_lines(sgd) == {0.02: "--", 0.05: "-"}  # the seed's rate dashed, the chosen one solid
    assert vertical_lines(cnn) == {0.002: "-"}  # the seed never trained a CNN: no seed rate there
    colours = {tuple(c.get_facecolor()[0]) for c in sgd.collections[:2]}
    assert len(colours) == 2  # pruned and complete trials apart
    text = all_text(lr)
    assert t["seed_lr"] in text and t["chosen_lr"] in text
    for name, fig in drawn.items():
        assert fig.smallest_pt >= READABLE_PT, name


def test_search_figures_keep_their_old_call(tmp_path):
    """The workflow's and the report's call without the new arguments still works (best.json optional)."""
    trials = {"lr-adam-bn0-dp0": write_study(tmp_path, "lr-adam-bn0-dp0", [0.001, 0.003], [0.95, 0.96],
                                             ["COMPLETE", "FAIL"], best_lr=None)}  # fmt: skip
    assert len(search_figures(trials, tmp_path / "out", "en", ("png",))) == 3


# ---------------------------------------------------------------- deep vs shallow, claims


@pytest.mark.parametrize("lang", LANGS)
def test_deep_vs_shallow_tick_labels_apart_and_no_redundant_legend(tmp_path, drawn, lang):
    rows = [{"arm": "tuned", "arch": arch, "variant": variant, "optimizer": "adam", "status": "ok", "seed": seed,
             "test_acc": acc + 0.001 * seed, "n_params": params, "time_per_epoch": time}
            for arch, variant, acc, params, time in (("mlp", "BPNN", 0.975, 79510, 0.9), ("cnn", "CNN", 0.99, 30134, 8))
            for seed in (1, 2, 3)]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    assert_written(deep_vs_shallow(tmp_path / "runs.csv", tmp_path / "out", lang=lang), ["deep_vs_shallow"])
    fig = drawn["deep_vs_shallow"]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    for ax in fig.axes:
        assert ax.get_legend() is None  # one optimizer: named in the titles
        assert "Adam" in ax.get_title()
        left, right = (label.get_window_extent(renderer) for label in ax.get_xticklabels())
        assert left.x1 < right.x0  # the two models' labels do not run together
    assert fig.smallest_pt >= READABLE_PT


@pytest.mark.parametrize("lang", LANGS)
def test_claims_forest_signs_each_claim_toward_its_direction_with_both_intervals(tmp_path, drawn, lang):
    """A panel for accuracy and one for epochs; each claim in each arm drawn so that right of 0 is the
    claimed direction, with its unadjusted interval (thick) and its Holm-level interval (thin), coloured by
    verdict, labelled by its statement; components marked."""
    claims = pd.DataFrame({
        "arm": ["replication"] * 3 + ["tuned"] * 3, "claim": ["adam_acc", "bn_epochs", "below_bn"] * 2,
        "role": ["claim", "claim", "component"] * 2, "metric": ["test_acc", "epochs_to_best", "test_acc"] * 2,
        "direction": ["increase", "decrease", "decrease"] * 2,
        "estimate": [0.7, -4.0, -0.2, 0.05, 2.0, 0.1], "ci_low": [0.5, -6.0, -0.3, -0.1, 1.0, -0.1],
        "ci_high": [1.0, -2.0, -0.1, 0.2, 3.0, 0.3], "ci_adj_low": [0.4, -7.0, -0.4, -0.2, 0.5, -0.2],
        "ci_adj_high": [1.1, -1.0, 0.0, 0.3, 3.5, 0.4],
        "verdict": ["supported", "supported", "inconclusive", "inconclusive", "contradicted", "inconclusive"],
    })  # fmt: skip
    claims.to_csv(tmp_path / "claims.csv", index=False)
    labels = {"adam_acc": "Adam beats SGD", "bn_epochs": "BN cuts epochs", "below_bn": "below BN"}
    written = claims_forest(tmp_path / "claims.csv", tmp_path / "out", lang=lang, labels=labels)
    assert_written(written, ["claims_forest"])
    fig = drawn["claims_forest"]
    accuracy, epochs = fig.axes
    coloured = figures.VERDICT_COLOURS.values()
    spans = {ax: [tuple(line.get_xdata()) for line in ax.lines if line.get_color() in coloured]
             for ax in (accuracy, epochs)}  # fmt: skip
    assert (0.5, 1.0) in spans[accuracy] and (0.4, 1.1) in spans[accuracy]  # increase: as it is
    assert (2.0, 6.0) in spans[epochs] and (1.0, 7.0) in spans[epochs]  # decrease: mirrored, > 0 as claimed
    assert (-3.0, -1.0) in spans[epochs]  # the tuned arm's epochs, the wrong way: left of 0
    widths = {line.get_linewidth() for line in accuracy.lines if line.get_color() in figures.VERDICT_COLOURS.values()}
    assert len(widths) == 2  # thin (adjusted) and thick (unadjusted)
    colour = {tuple(line.get_xdata()): line.get_color() for line in epochs.lines}
    assert colour[(-3.0, -1.0)] == figures.VERDICT_COLOURS["contradicted"]
    ticks = [t.get_text() for t in accuracy.get_yticklabels()]
    assert ticks == ["Adam beats SGD", "└ below BN"]
    text = all_text(fig)
    assert use_language(lang)["arm_tuned"] in text and use_language(lang)["ci_adjusted"] in text
    assert fig.smallest_pt >= READABLE_PT


# ---------------------------------------------------------------- model figures


def test_confusion_matrix_counts_equal_a_direct_count():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    direct = np.zeros((10, 10), int)
    for true, predicted in zip(y, p, strict=True):
        direct[true, predicted] += 1
    np.testing.assert_array_equal(confusion_matrix(y, p), direct)
    assert confusion_matrix(y, y).trace() == 500


def test_misclassified_lists_the_first_errors():
    y, p = np.array([1, 2, 3, 4, 5, 6]), np.array([1, 7, 3, 0, 0, 6])
    assert misclassified(y, p) == [{"index": 1, "true": 2, "predicted": 7}, {"index": 3, "true": 4, "predicted": 0},
                                   {"index": 4, "true": 5, "predicted": 0}]  # fmt: skip
    assert len(misclassified(y, p, limit=2)) == 2


def test_weight_grid_scales_each_unit_to_its_own_range():
    weights = np.stack([np.linspace(-1, 1, 784), np.linspace(0, 5, 784), np.full(784, 3.0)], axis=1)
    grid = weight_grid(weights)
    assert grid.shape == (2 * 29 + 1, 2 * 29 + 1)
    unit0, unit1, unit2 = grid[1:29, 1:29], grid[1:29, 30:58], grid[30:58, 1:29]
    assert unit0.min() == unit1.min() == 0 and unit0.max() == unit1.max() == 1
    assert (unit2 == 0).all() and np.isnan(grid[30:58, 30:58]).all()  # a constant unit; an empty cell


def write_study_models(tmp_path: Path) -> tuple[Path, Path, Network, np.ndarray, np.ndarray]:
    """A results folder with one finished BP network (hidden width 12) and its prepared dataset."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 28, 28)).astype(np.uint8)
    y = rng.integers(0, 10, 60).astype(np.uint8)
    data = tmp_path / "mnist_split.npz"
    np.savez(data, x_train=x, y_train=y, x_val=x, y_val=y, x_test=x, y_test=y, digest=np.array("d" * 64))
    run = tmp_path / "results" / "grid" / "sgd-bn0-dp0" / "seed1"
    run.mkdir(parents=True)
    net = Network(MLPSpec(hidden=(12,)), seed=0)
    net.save(str(run / "model.npz"))
    (run / "result.json").write_text(json.dumps({"status": "ok", "arch": "mlp", "best_val_acc": 0.5, "test_acc": 0.1,
                                                 "cell": "sgd-bn0-dp0", "seed": 1}))  # fmt: skip
    return tmp_path / "results", data, net, x.astype(np.float32) / 255, y.astype(np.int64)


def test_model_summary_holds_the_confusion_matrix_and_misclassified_digits(tmp_path):
    results, data, net, x, y = write_study_models(tmp_path)
    summary = summarise_models(results, data, tmp_path / "model_figures.json", limit=5)
    assert json.loads((tmp_path / "model_figures.json").read_text()) == summary
    [model] = summary["models"]
    predictions = net.predict(x)
    wrong = np.flatnonzero(predictions != y)
    assert model["model"] == "mlp" and model["checkpoint"].endswith("sgd-bn0-dp0/seed1/model.npz")
    assert model["misclassified"] == [{"index": int(i), "true": int(y[i]), "predicted": int(predictions[i])}
                                      for i in wrong[:5]]  # fmt: skip
    assert model["n_misclassified"] == len(wrong) and model["test_acc"] == pytest.approx(np.mean(predictions == y))
    assert np.array(model["confusion"]).sum() == 60 and np.trace(model["confusion"]) == 60 - len(wrong)


@pytest.mark.parametrize("lang", LANGS)
def test_model_figures_in_each_language(tmp_path, drawn, lang):
    results, data, net, x, y = write_study_models(tmp_path)
    summarise_models(results, data, results / "model_figures.json")
    names = ["confusion", "misclassified", "first_layer_weights"]
    written = draw_model_figures(results / "model_figures.json", data, tmp_path / "out", lang=lang)
    assert_written(written, names)
    assert "12" in drawn["first_layer_weights"].axes[0].get_title()  # any hidden width: 12 units here
    [image] = drawn["first_layer_weights"].axes[0].images
    assert image.get_array().shape == (3 * 29 + 1, 4 * 29 + 1)  # 4 columns, 3 rows
    for name in names:
        assert drawn[name].smallest_pt >= READABLE_PT, name


@pytest.mark.parametrize("lang", LANGS)
def test_no_model_gives_a_json_without_models_and_figures_with_a_note(tmp_path, drawn, lang):
    summary = summarise_models(tmp_path, tmp_path / "no-dataset.npz", tmp_path / "model_figures.json")
    assert summary["models"] == [] and "no finished run with a checkpoint" in summary["note"]
    written = draw_model_figures(tmp_path / "model_figures.json", tmp_path / "no-dataset.npz", tmp_path, lang=lang)
    assert_written(written, ["confusion", "misclassified", "first_layer_weights"])
    for name in ("confusion", "misclassified", "first_layer_weights"):
        assert use_language(lang)["no_model"] in all_text(drawn[name])

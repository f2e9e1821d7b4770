"""Whole-network gradient checks, prediction, and checkpoints."""

import json

import numpy as np
import pytest

from nnlib import CheckpointError, CNNSpec, MLPSpec, Network, spec_from_dict
from nnlib.gradcheck import check_network_gradients


def small_batch(seed=0, n=6, d=12, classes=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


@pytest.mark.parametrize(
    "batchnorm,dropout,hidden,decay",
    [
        (False, 0.0, (9,), 0.0),
        (True, 0.0, (9,), 0.0),
        (False, 0.5, (9,), 0.0),
        (True, 0.5, (9,), 0.0),
        (True, 0.3, (8, 7), 0.1),
    ],
    ids=["plain", "bn", "dropout", "bn+dropout", "deep+decay"],
)
def test_whole_model_gradients(batchnorm, dropout, hidden, decay):
    x, y = small_batch()
    spec = MLPSpec(
        input_dim=12,
        hidden=hidden,
        classes=4,
        batchnorm=batchnorm,
        dropout=dropout,
        dtype="float64",
        weight_decay=decay,
    )
    net = Network(spec, seed=3)
    errors = check_network_gradients(net, x, y, seed=11)
    assert set(errors) == set(net.params)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("batchnorm,dropout,hidden", [(False, 0.0, ()), (True, 0.0, (6,)), (True, 0.3, (6,))],
                         ids=["cnn", "cnn+bn", "cnn+bn+dropout"])  # fmt: skip
def test_whole_cnn_gradients(batchnorm, dropout, hidden):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 14, 14)), rng.integers(0, 4, 4)
    spec = CNNSpec(input_shape=(1, 14, 14), conv=((3, 3), (4, 3)), hidden=hidden, classes=4, batchnorm=batchnorm,
                   dropout=dropout, dtype="float64")  # fmt: skip
    net = Network(spec, seed=2)
    errors = check_network_gradients(net, x, y, seed=5)
    assert set(errors) == set(net.params) and max(errors.values()) < 1e-6, errors


def test_cnn_default_spec_checkpoint_and_bad_specs(tmp_path):
    net = Network(CNNSpec(), seed=0)
    assert net.params["conv1.w"].shape == (8, 1, 5, 5) and net.params["fc1.w"].shape == (256, 10)
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    net.save(tmp_path / "cnn.npz")
    np.testing.assert_array_equal(Network.load(tmp_path / "cnn.npz").predict_proba(x), net.predict_proba(x))
    with pytest.raises(ValueError, match="not a multiple of pool size"):
        CNNSpec(conv=((8, 4),))
    with pytest.raises(ValueError, match="does not fit"):
        CNNSpec(conv=((8, 5), (16, 5), (32, 5)))


def test_gradcheck_detects_a_wrong_gradient():
    x, y = small_batch()
    net = Network(MLPSpec(input_dim=12, hidden=(9,), classes=4, dtype="float64"), seed=3)
    original = net.loss_and_grads

    def broken(*args, **kwargs):
        loss, grads = original(*args, **kwargs)
        grads["fc1.w"] = grads["fc1.w"] * 1.01
        return loss, grads

    net.loss_and_grads = broken
    assert check_network_gradients(net, x, y)["fc1.w"] > 1e-4


def test_seed_network_shape_and_dtype():
    net = Network(MLPSpec(), seed=0)
    assert [n for n in net.params] == ["fc1.w", "fc1.b", "fc2.w", "fc2.b"]
    assert net.params["fc1.w"].shape == (784, 100) and net.params["fc2.w"].shape == (100, 10)
    assert net.n_params == 784 * 100 + 100 + 100 * 10 + 10
    assert all(p.dtype == np.float32 for p in net.params.values())
    x = np.random.default_rng(0).random((5, 28, 28), dtype=np.float32)
    assert net.predict(x).shape == (5,)
    proba = net.predict_proba(x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


def test_same_seed_same_weights_and_xavier_differs():
    a, b = Network(MLPSpec(), seed=5), Network(MLPSpec(), seed=5)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    he, xavier = Network(MLPSpec(init="he"), seed=5), Network(MLPSpec(init="xavier"), seed=5)
    assert he.params["fc1.w"].std() > xavier.params["fc1.w"].std()


@pytest.mark.parametrize(
    "bad",
    [
        {"dropout": 1.0},
        {"init": "zeros"},
        {"dtype": "float16"},
        {"hidden": (0,)},
        {"classes": 1},
        {"weight_decay": -1.0},
    ],
)
def test_bad_spec_is_rejected(bad):
    with pytest.raises(ValueError):
        MLPSpec(**bad)


def test_spec_round_trip_and_unknown_keys():
    spec = MLPSpec(hidden=(50, 20), batchnorm=True, dropout=0.5)
    assert spec_from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown mlp spec keys"):
        spec_from_dict({**spec.to_dict(), "colour": "red"})
    with pytest.raises(ValueError, match="unknown network kind"):
        spec_from_dict({"kind": "transformer"})


def test_checkpoint_round_trip(tmp_path):
    net = Network(MLPSpec(hidden=(30,), batchnorm=True, dropout=0.5), seed=1)
    x, y = small_batch(n=20, d=784, classes=10)
    x = x.astype(np.float32)
    net.loss_and_grads(x, y, np.random.default_rng(0))  # moves the running statistics
    path = tmp_path / "model.npz"
    net.save(path, extra={"best_val_acc": 0.9})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]
    loaded = Network.load(path)
    assert loaded.spec == net.spec
    np.testing.assert_array_equal(loaded.predict_proba(x), net.predict_proba(x))
    np.testing.assert_array_equal(loaded.buffers["bn1.running_mean"], net.buffers["bn1.running_mean"])


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    missing = tmp_path / "missing.npz"
    with pytest.raises(CheckpointError, match="not found"):
        Network.load(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(CheckpointError, match="garbage.npz"):
        Network.load(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(CheckpointError, match="not an nnlib checkpoint"):
        Network.load(foreign)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, format=np.array("nnlib-checkpoint-v1"), spec=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError):
        Network.load(pickled)
    net = Network(MLPSpec(hidden=(8,)), seed=0)
    good = tmp_path / "good.npz"
    net.save(good)
    data = dict(np.load(good))
    data["param/fc1.w"] = data["param/fc1.w"][:10]
    np.savez(tmp_path / "wrong_shape.npz", **data)
    with pytest.raises(CheckpointError, match="fc1.w has shape"):
        Network.load(tmp_path / "wrong_shape.npz")


def test_cnn_with_a_large_pool_window_trains():
    spec = CNNSpec(conv=((4, 5),), pool=12)  # 24 x 24 feature maps pooled 12 x 12: 144 window positions
    net = Network(spec, seed=0)
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    loss, grads = net.loss_and_grads(x, np.array([1, 2, 3]))
    assert np.isfinite(loss) and set(grads) == set(net.params)
    assert net.predict(x).shape == (3,)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "mlp", "hidden": [1e9]},
        {"kind": "mlp", "hidden": [100000]},
        {"kind": "cnn", "conv": [[8, 5]], "hidden": [100000]},
    ],
    ids=["1e9", "1e5", "cnn"],
)
def test_absurd_specs_are_refused_before_allocating(tmp_path, spec):
    with pytest.raises(ValueError, match="parameters; at most"):
        spec_from_dict(spec)
    good = tmp_path / "good.npz"
    Network(MLPSpec(hidden=(8,)), seed=0).save(good)
    data = dict(np.load(good))
    data["spec"] = np.array(json.dumps(spec))
    np.savez(tmp_path / "huge.npz", **data)
    with pytest.raises(CheckpointError, match="bad network spec.*parameters; at most"):
        Network.load(tmp_path / "huge.npz")


def test_non_finite_weights_are_refused_on_load(tmp_path):
    good = tmp_path / "good.npz"
    Network(MLPSpec(hidden=(8,)), seed=0).save(good)
    for bad in (np.nan, np.inf):
        data = dict(np.load(good))
        data["param/fc1.w"][2, 3] = bad
        np.savez(tmp_path / "bad.npz", **data)
        with pytest.raises(CheckpointError, match=r"param/fc1.w holds non-finite values"):
            Network.load(tmp_path / "bad.npz")


def test_random_bytes_are_not_called_pickled_data(tmp_path):
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="not a valid .npz checkpoint") as info:
        Network.load(noise)
    assert "pickle" not in str(info.value)
    single = tmp_path / "single.npz"
    with open(single, "wb") as handle:
        np.save(handle, np.ones(3))
    with pytest.raises(CheckpointError, match="not a valid .npz checkpoint"):
        Network.load(single)


def test_cnn_scores_equal_the_nchw_layer_by_layer_reference():
    # checkpoints keep their meaning: the same parameters give the scores of the plain NCHW definition
    from nnlib import layers as F

    net = Network(CNNSpec(dtype="float64", hidden=(7,)), seed=4)
    x = np.random.default_rng(1).random((5, 28, 28))
    p = net.params
    h = x.reshape(5, 1, 28, 28)
    for i in (1, 2):
        h = F.relu_forward(F.maxpool_forward(F.conv2d_forward(h, p[f"conv{i}.w"], p[f"conv{i}.b"])[0], 2)[0])[0]
    h = F.relu_forward(h.reshape(5, -1) @ p["fc1.w"] + p["fc1.b"])[0]
    np.testing.assert_allclose(net.forward(x)[0], h @ p["fc2.w"] + p["fc2.b"], rtol=1e-12, atol=1e-12)


def test_the_study_gradient_check_names_a_broken_gradient(tmp_path, monkeypatch):
    """A wrong gradient in one parameter stops the study's gradient check with the network and parameter
    named (the file is still written, so the numbers can be read)."""
    from conftest import REPO, write_small_study
    from snakemake.utils import validate

    from nnstudy.gradcheck import GradientCheckError, check_study_gradients

    config = write_small_study(tmp_path)
    config["grid"].update(batchnorm=[False], dropout=[0.0])
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    correct = Network.loss_and_grads

    def off_by_one_percent(self, *args, **kwargs):
        loss, grads = correct(self, *args, **kwargs)
        grads["fc1.w"] = grads["fc1.w"] * 1.01
        return loss, grads

    monkeypatch.setattr(Network, "loss_and_grads", off_by_one_percent)
    with pytest.raises(GradientCheckError, match=r"BPNN \(fc1\.w: [0-9.e-]+\)"):
        check_study_gradients(config, tmp_path / "gradcheck.json")
    written = json.loads((tmp_path / "gradcheck.json").read_text())
    assert written["max_relative_error"] > 1e-3


def test_a_cnn_training_step_reuses_its_large_temporaries():
    """After a warm-up step, the layers' workspaces hold every multi-hundred-KB temporary of a CNN step.

    Freed and allocated anew each step, such blocks go back to the kernel and are page-faulted in again
    (572 faults per step, 20 % of a step, in one process on an AMD EPYC); the step's fresh arrays must
    stay small.  tracemalloc sees NumPy's data allocations.
    """
    import tracemalloc

    from nnlib import Adam

    rng = np.random.default_rng(0)
    x, y = rng.random((100, 784), dtype=np.float32), rng.integers(0, 10, 100)
    net, opt = Network(CNNSpec(), seed=0), Adam(1e-3)
    _, grads = net.loss_and_grads(x, y, rng)
    opt.step(net.params, grads)
    del grads
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        _, grads = net.loss_and_grads(x, y, rng)
        opt.step(net.params, grads)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 512 * 1024, f"a CNN step allocated {peak / 1024:.0f} KiB of new arrays at its peak"

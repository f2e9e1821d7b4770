"""Optimiser updates against values worked out by hand and the seed report's formulas."""

import numpy as np
import pytest

from nnlib import SGD, Adam, RMSprop, make_optimizer


def run(opt, w0, grads):
    params = {"w": np.array(w0, dtype=np.float64)}
    for g in grads:
        opt.step(params, {"w": np.array(g, dtype=np.float64)})
    return params["w"]


def test_sgd_by_hand():
    np.testing.assert_allclose(run(SGD(0.1), [1.0, -2.0], [[0.5, -1.0]]), [0.95, -1.9])


def test_momentum_and_nesterov_by_hand():
    # v1 = g1 = 1; w1 = 1 - 0.1*1 = 0.9; v2 = 0.9*1 + 2 = 2.9; w2 = 0.9 - 0.29 = 0.61
    np.testing.assert_allclose(run(SGD(0.1, momentum=0.9), [1.0], [[1.0], [2.0]]), [0.61])
    # nesterov: w1 = 1 - 0.1*(1 + 0.9*1) = 0.81; v2 = 2.9; w2 = 0.81 - 0.1*(2 + 0.9*2.9) = 0.349
    np.testing.assert_allclose(run(SGD(0.1, momentum=0.9, nesterov=True), [1.0], [[1.0], [2.0]]), [0.349])


def test_rmsprop_by_hand():
    # s1 = 0.1 * 4 = 0.4; w1 = 1 - 0.01 * 2 / sqrt(0.4)
    expected = 1 - 0.01 * 2 / (np.sqrt(0.4) + 1e-8)
    np.testing.assert_allclose(run(RMSprop(0.01, rho=0.9), [1.0], [[2.0]]), [expected])


def seed_report_adam(w, dw, config):
    """The seed report's Adam (section 2.2.2), verbatim apart from names."""
    config["t"] += 1
    config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
    config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * (dw**2)
    mb = config["m"] / (1 - config["beta1"] ** config["t"])
    vb = config["v"] / (1 - config["beta2"] ** config["t"])
    return w - config["learning_rate"] * mb / (np.sqrt(vb) + config["epsilon"]), config


def test_adam_first_step_by_hand():
    # bias correction makes the first step lr * g / (|g| + eps), close to lr * sign(g)
    expected = [1 - 0.001 * 0.3 / (0.3 + 1e-8), 1 + 0.001 * 5 / (5 + 1e-8)]
    np.testing.assert_allclose(run(Adam(0.001), [1.0, 1.0], [[0.3, -5.0]]), expected, rtol=1e-14)


def test_adam_matches_seed_formula_over_many_steps():
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((25, 6)) * rng.uniform(1e-4, 10, 6)
    w0 = rng.standard_normal(6)
    config = {"t": 0, "m": 0.0, "v": 0.0, "beta1": 0.9, "beta2": 0.99, "epsilon": 1e-8, "learning_rate": 0.01}
    w = w0.copy()
    for g in grads:
        w, config = seed_report_adam(w, g, config)
    ours = run(Adam(0.01, beta1=0.9, beta2=0.99, eps=1e-8), w0, grads)
    np.testing.assert_allclose(ours, w, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(1)
    grads = rng.standard_normal((6, 4))
    a = make_optimizer(name, 0.05)
    params_a = {"w": np.ones(4)}
    for g in grads[:3]:
        a.step(params_a, {"w": g})
    b = make_optimizer(name, 0.05)
    b.load_state_dict(a.state_dict())
    params_b = {"w": params_a["w"].copy()}
    for g in grads[3:]:
        a.step(params_a, {"w": g})
        b.step(params_b, {"w": g})
    np.testing.assert_array_equal(params_a["w"], params_b["w"])
    assert b.t == 6


def test_state_is_keyed_by_parameter_name():
    opt = Adam(0.001)
    opt.step({"fc1.w": np.ones(2), "fc1.b": np.ones(1)}, {"fc1.w": np.ones(2), "fc1.b": np.ones(1)})
    assert set(opt.state_dict()) == {"lr", "t", "m/fc1.w", "m/fc1.b", "v/fc1.w", "v/fc1.b"}
    with pytest.raises(ValueError, match="unknown optimiser state entry"):
        opt.load_state_dict({"lr": 0.1, "t": 1, "velocity/fc1.w": np.ones(2)})


def test_subnormal_moments_are_flushed():
    opt = Adam(0.001)
    params = {"w": np.ones(3, dtype=np.float32)}
    opt.step(params, {"w": np.ones(3, dtype=np.float32)})
    opt.slots["m"]["w"][:] = np.float32(1e-40)  # subnormal in float32
    for _ in range(opt.flush_every):
        opt.step(params, {"w": np.zeros(3, dtype=np.float32)})
    assert np.all(opt.slots["m"]["w"] == 0)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate_is_rejected(lr):
    with pytest.raises(ValueError, match="learning rate must be a finite number > 0"):
        Adam(lr)


def test_unknown_optimizer_name():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'.*choose one of"):
        make_optimizer("adamw", 0.1)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "rmsprop", "adam"])
def test_flat_buffer_update_equals_the_per_parameter_update(name):
    from nnlib import MLPSpec, Network
    from nnlib.optim import flat_buffer

    net = Network(MLPSpec(input_dim=12, hidden=(9,), classes=4, dtype="float64"), seed=0)
    separate = {k: v.copy() for k, v in net.params.items()}  # not views of one buffer: per-parameter path
    assert flat_buffer(net.params, net.params) is net.flat_params and flat_buffer(separate, separate) is None
    rng = np.random.default_rng(3)
    a, b = make_optimizer(name, 0.05), make_optimizer(name, 0.05)
    for step in range(12):
        grads = {k: rng.standard_normal(v.shape) for k, v in reversed(separate.items())}
        a.step(net.params, grads)
        b.step(separate, grads)
        if step == 5:  # a state_dict taken from the flat path continues identically in a new optimiser
            c = make_optimizer(name, 0.05)
            c.load_state_dict(a.state_dict())
            assert set(c.state_dict()) == set(b.state_dict())
            a = c
    for k in separate:
        np.testing.assert_allclose(net.params[k], separate[k], rtol=1e-13, atol=1e-15)
    for key, value in b.state_dict().items():
        np.testing.assert_allclose(a.state_dict()[key], value, rtol=1e-13, atol=1e-15)


def test_flush_subnormals_zeroes_only_subnormal_slot_values_on_the_flat_path():
    from nnlib import MLPSpec, Network

    net = Network(MLPSpec(input_dim=5, hidden=(3,), classes=2), seed=0)
    grads = {k: np.ones_like(v) for k, v in net.params.items()}
    opt = Adam(0.01)
    opt.step(net.params, grads)
    m = opt.slots["m"]["fc1.w"]
    tiny = np.finfo(np.float32).tiny
    m[0, :3] = [tiny / 4, -tiny / 2, tiny]
    opt.slots["v"]["fc2.b"][0] = tiny / 8
    before = {k: v.copy() for k, v in opt.state_dict().items()}
    opt.flush_subnormals()
    after = opt.state_dict()
    np.testing.assert_array_equal(after["m/fc1.w"][0, :3], [0.0, 0.0, tiny])
    assert after["v/fc2.b"][0] == 0.0
    before["m/fc1.w"][0, :2] = 0.0
    before["v/fc2.b"][0] = 0.0
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)

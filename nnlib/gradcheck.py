"""Centred-difference gradient checks (use float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .network import Network

Array = np.ndarray


def numerical_gradient(f: Callable[[], float], x: Array, h: float = 1e-6) -> Array:
    """d f / d x by centred differences, perturbing ``x`` in place and restoring it."""
    grad = np.zeros_like(x, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f: Callable[[], Array], x: Array, dout: Array, h: float = 1e-6) -> Array:
    """Gradient of ``sum(f() * dout)`` with respect to ``x`` for an array-valued ``f``."""
    return numerical_gradient(lambda: float(np.sum(f() * dout)), x, h)


def relative_error(a: Array, b: Array) -> float:
    """``max |a - b| / max(|a| + |b|)``, with a floor that keeps exact zeros at zero error."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-12))


def check_network_gradients(net: Network, x: Array, y: Array, seed: int = 0, h: float = 1e-6) -> dict[str, float]:
    """Relative error of every parameter's analytic gradient against centred differences.

    Dropout masks are fixed by giving every evaluation a Generator with the same seed.
    """
    if net.dtype != np.float64:
        raise ValueError("gradient checks need a float64 network")
    snapshot = {k: v.copy() for k, v in net.buffers.items()}

    def loss() -> float:
        value, _ = net.loss_and_grads(x, y, np.random.default_rng(seed))
        return value

    _, grads = net.loss_and_grads(x, y, np.random.default_rng(seed))
    errors = {name: relative_error(grads[name], numerical_gradient(loss, net.params[name], h)) for name in net.params}
    for k, v in snapshot.items():
        net.buffers[k][...] = v
    return errors

"""Layer functions in the CS231n style.

Every ``*_forward`` returns ``(out, cache)`` and every ``*_backward(dout, cache)``
returns the gradients.  The functions are pure apart from batch normalisation,
which updates its running statistics in place, and they keep the input dtype.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def affine_forward(x: Array, w: Array, b: Array | None) -> tuple[Array, tuple]:
    """``x @ w + b`` with ``x`` of shape (N, d1, ..., dk) flattened to (N, D); ``b=None`` for no bias."""
    flat = x.reshape(x.shape[0], -1)
    out = flat @ w
    if b is not None:
        out += b
    return out, (x.shape, flat, w)


def affine_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """Gradients ``(dx, dw, db)``; ``dx`` is None when ``need_dx`` is False (an input layer)."""
    x_shape, flat, w = cache
    dw = flat.T @ dout
    db = dout.sum(axis=0)
    dx = (dout @ w.T).reshape(x_shape) if need_dx else None
    return dx, dw, db


def relu_forward(x: Array) -> tuple[Array, Array]:
    """Elementwise ``max(x, 0)``; the cache is the output, whose sign is all backward needs."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: Array, cache: Array) -> Array:
    """Pass the gradient where the forward output was positive."""
    return np.where(cache > 0, dout, 0).astype(dout.dtype, copy=False)


def batchnorm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    running_mean: Array,
    running_var: Array,
    train: bool,
    momentum: float = 0.9,
    eps: float = 1e-5,
) -> tuple[Array, tuple | None]:
    """Batch normalisation over axis 0 of an (N, D) input.

    In training mode the batch statistics normalise ``x`` and the running
    averages are updated in place as ``running = momentum * running +
    (1 - momentum) * batch`` (the seed report's convention).  In test mode the
    running averages normalise ``x`` and the cache is None.
    """
    if not train:
        scale = gamma / np.sqrt(running_var + eps)
        out = (x - running_mean) * scale + beta
        return out.astype(x.dtype, copy=False), None
    mean = x.mean(axis=0)
    centred = x - mean
    var = np.mean(centred * centred, axis=0)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    out = x_hat * gamma + beta
    running_mean *= momentum
    running_mean += (1.0 - momentum) * mean
    running_var *= momentum
    running_var += (1.0 - momentum) * var
    return out, (x_hat, gamma, inv_std)


def batchnorm_backward(dout: Array, cache: tuple) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dgamma, dbeta)`` in the compact closed form."""
    x_hat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = np.sum(dout * x_hat, axis=0)
    dx_hat = dout * gamma
    dx = dx_hat * n
    dx -= dx_hat.sum(axis=0)
    dx -= x_hat * np.sum(dx_hat * x_hat, axis=0)
    dx *= inv_std / n
    return dx, dgamma, dbeta


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator, dtype: np.dtype) -> Array:
    """An inverted-dropout mask: 0 with probability ``p``, else ``1 / (1 - p)``."""
    keep = rng.random(shape, dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64) >= p
    return keep.astype(dtype) * np.asarray(1.0 / (1.0 - p), dtype=dtype)


def dropout_forward(
    x: Array, p: float, train: bool, rng: np.random.Generator | None = None, mask: Array | None = None
) -> tuple[Array, Array | None]:
    """Inverted dropout where ``p`` is the probability of DROPPING a unit.

    Kept units are scaled by ``1 / (1 - p)`` during training so that test mode is
    the identity.  Give ``rng`` to draw a mask, or ``mask`` to reuse a fixed one.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout p is the drop probability and must lie in [0, 1), got {p}")
    if not train or p == 0.0:
        return x, None
    if mask is None:
        if rng is None:
            raise ValueError("dropout_forward in training mode needs a numpy Generator or a fixed mask")
        mask = dropout_mask(x.shape, p, rng, x.dtype)
    return x * mask, mask


def dropout_backward(dout: Array, cache: Array | None) -> Array:
    """Gradient through the mask used in the forward pass (identity in test mode)."""
    return dout if cache is None else dout * cache


def softmax_cross_entropy(scores: Array, y: Array) -> tuple[float, Array]:
    """Mean softmax cross-entropy over the batch and its gradient on ``scores``.

    Stable for any finite scores: the row maximum is subtracted before ``exp``.
    """
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sums = exp.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(sums[:, 0]) - shifted[rows, y]))
    exp /= sums
    exp[rows, y] -= 1
    exp /= n
    return loss, exp

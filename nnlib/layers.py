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


def conv2d_forward(x: Array, w: Array, b: Array | None, stride: int = 1, pad: int = 0) -> tuple[Array, tuple]:
    """2-D convolution (cross-correlation) of x (N, C, H, W) with w (F, C, KH, KW): im2col and one GEMM.

    The columns are laid out kernel-offset-major, (C*KH*KW, N*OH*OW), so that building them copies
    contiguous image rows; the result is returned as an (N, F, OH, OW) view of an (F, N, OH, OW) array.
    """
    n, c, h, width = x.shape
    f, c_w, kh, kw = w.shape
    if c != c_w:
        raise ValueError(f"conv2d: input has {c} channels, weights expect {c_w}")
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    oh, ow = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: kernel {kh}x{kw} does not fit the padded input {xp.shape[2]}x{xp.shape[3]}")
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    cols = np.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3)).reshape(c * kh * kw, n * oh * ow)
    out = w.reshape(f, -1) @ cols
    if b is not None:
        out += b[:, None]
    return out.reshape(f, n, oh, ow).transpose(1, 0, 2, 3), (x.shape, xp.shape, cols, w, stride, pad)


def conv2d_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """Gradients ``(dx, dw, db)``; dx is scattered back with one vectorised add per kernel offset."""
    x_shape, xp_shape, cols, w, stride, pad = cache
    n, f, oh, ow = dout.shape
    _, c, kh, kw = w.shape
    dmat = dout.transpose(1, 0, 2, 3).reshape(f, n * oh * ow)
    dw = (dmat @ cols.T).reshape(w.shape)
    db = dmat.sum(axis=1)
    if not need_dx:
        return None, dw, db
    dcols = (w.reshape(f, -1).T @ dmat).reshape(c, kh, kw, n, oh, ow)
    dxp = np.zeros((c, n, xp_shape[2], xp_shape[3]), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride] += dcols[:, i, j]
    dx = dxp.transpose(1, 0, 2, 3)
    return (dx[:, :, pad : pad + x_shape[2], pad : pad + x_shape[3]] if pad else dx), dw, db


def maxpool_forward(x: Array, size: int = 2) -> tuple[Array, tuple]:
    """Non-overlapping max pooling (stride = size) of x (N, C, H, W); H and W must be multiples of size.

    One copy regroups x into size*size contiguous planes (one per window offset); the maximum and its
    first position are then found with contiguous elementwise passes.  The output keeps the memory
    layout of ``x`` (convolutions hand over channel-major arrays).
    """
    n, c, h, w = x.shape
    if h % size or w % size:
        raise ValueError(f"maxpool: input {h}x{w} is not a multiple of the pool size {size}")
    channel_major = x.strides[0] < x.strides[1]
    mem = x.transpose(1, 0, 2, 3) if channel_major else x
    a, b = mem.shape[:2]
    planes = np.ascontiguousarray(
        mem.reshape(a, b, h // size, size, w // size, size).transpose(3, 5, 0, 1, 2, 4)
    ).reshape(size * size, a, b, h // size, w // size)
    out = planes[0].copy()
    index = np.min_scalar_type(size * size - 1)  # uint8 up to 16 x 16 windows, wider beyond
    arg = np.zeros(out.shape, dtype=index)
    for k in range(1, size * size):
        larger = planes[k] > out  # strict, so ties keep the first position
        arg[larger] = k
        np.maximum(out, planes[k], out=out)
    if channel_major:
        out, arg = out.transpose(1, 0, 2, 3), arg.transpose(1, 0, 2, 3)
    return out, (x.shape, channel_major, arg, size)


def maxpool_backward(dout: Array, cache: tuple) -> Array:
    """Route each gradient to the (first) maximum of its window."""
    (n, c, h, w), channel_major, arg, size = cache
    if channel_major:
        dout, arg = dout.transpose(1, 0, 2, 3), arg.transpose(1, 0, 2, 3)
    a, b = arg.shape[:2]
    planes = np.stack([dout * (arg == k) for k in range(size * size)])
    dx = planes.reshape(size, size, a, b, h // size, w // size).transpose(2, 3, 4, 0, 5, 1).reshape(a, b, h, w)
    return dx.transpose(1, 0, 2, 3) if channel_major else dx

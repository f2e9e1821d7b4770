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
    return np.where(cache > 0, dout, dout.dtype.type(0))


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
    # A dozen NumPy calls on a (100, 10) array cost far more than their arithmetic, so this takes few:
    # the row sums as a product with ones (a row-wise reduction over 10 columns is slower), constant
    # arrays cached, and every step after the first in place.
    n, c = scores.shape
    rows = _constant("arange", n, np.intp)
    exp = scores - scores.max(axis=1, keepdims=True)  # the shifted scores, exponentiated in place below
    picked = exp[rows, y]
    np.exp(exp, out=exp)
    sums = exp @ _constant("ones", c, exp.dtype)
    loss = float(np.sum(np.log(sums) - picked)) / n
    sums *= n
    exp /= sums[:, None]  # the probabilities divided by n
    exp[rows, y] -= 1.0 / n
    return loss, exp


_CONSTANTS: dict[tuple, Array] = {}


def _constant(kind: str, size: int, dtype: np.dtype) -> Array:
    """A cached read-only ``np.arange(size)`` or ``np.ones(size)`` of ``dtype``."""
    key = (kind, size, np.dtype(dtype))
    arr = _CONSTANTS.get(key)
    if arr is None:
        if len(_CONSTANTS) > 64:
            _CONSTANTS.clear()
        arr = _CONSTANTS[key] = np.arange(size, dtype=dtype) if kind == "arange" else np.ones(size, dtype=dtype)
        arr.flags.writeable = False
    return arr


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


# ----------------------------------------------------------------------------- batch-last convolutions
#
# The CNN keeps its feature maps batch-last, (C, H, W, N): every copy, add and pooling pass then runs
# over contiguous stretches of at least N values, and each convolution is one GEMM whose result is
# already in that layout.  For P x P pooling after it, the convolution returns its output as
# (F, P, P, PH, PW, N), where [f, a, b, i, j, n] is output pixel (P*i + a, P*j + b): max pooling is then
# P*P - 1 elementwise maxima over contiguous blocks.  The GEMM's weight matrix is block-Toeplitz: one
# column of the im2col matrix holds a K x (K + P - 1) input patch and yields the P adjacent output
# pixels (P*i + a, P*j + 0 ... P-1), which makes the im2col and col2im copies K*P / (K + P - 1) times
# smaller for a little more arithmetic.


def scratch(work: dict | None, key: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """An uninitialised array for a temporary, reused from ``work`` (a layer's workspace dict) when given.

    Training steps allocate and free the same few multi-megabyte temporaries every step; glibc hands
    such blocks back to the kernel and page-faults them in anew each time, which cost more than all
    the convolutions' arithmetic.  A buffer taken from ``work`` is overwritten by the next call with
    the same workspace, so a cache is only valid until then (a network's training step keeps to that).
    """
    if work is None:
        return np.empty(shape, dtype=dtype)
    buf = work.get(key)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = work[key] = np.empty(shape, dtype=dtype)
    return buf


def _shapes(x_shape: tuple[int, ...], kernel: int, pool: int) -> tuple[int, int]:
    """Pooled output size (PH, PW) of a valid convolution, checking that it fits and tiles."""
    _, h, w, _ = x_shape
    oh, ow = h - kernel + 1, w - kernel + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"conv: kernel {kernel}x{kernel} does not fit the input {h}x{w}")
    if oh % pool or ow % pool:
        raise ValueError(f"conv: output {oh}x{ow} is not a multiple of the pool size {pool}")
    return oh // pool, ow // pool


def _patches(x: Array, kernel: int, pool: int) -> Array:
    """A read-only (C, K, K+P-1, P, PH, PW, N) view of x (C, H, W, N): [c, di, e, a, i, j, n] is the
    input pixel (P*i + a + di, P*j + e), under column e of the patch of output pixels (P*i + a, P*j + ...)."""
    c, _, _, n = x.shape
    ph, pw = _shapes(x.shape, kernel, pool)
    sc, sh, sw, sn = x.strides
    shape = (c, kernel, kernel + pool - 1, pool, ph, pw, n)
    return np.lib.stride_tricks.as_strided(x, shape, (sc, sh, sw, sh, pool * sh, pool * sw, sn), writeable=False)


def toeplitz_weights(w: Array, pool: int) -> Array:
    """The (P*F, C*K*(K+P-1)) block-Toeplitz matrix of w (F, C, K, K): row (b, f) is filter f shifted
    right by b columns, so that it yields output pixel b of a patch."""
    f, c, k, _ = w.shape
    t = np.zeros((pool, f, c, k, k + pool - 1), dtype=w.dtype)
    for b in range(pool):
        t[b, ..., b : b + k] = w
    return t.reshape(pool * f, -1)


def conv_blocks_forward(
    x: Array, w: Array, b: Array | None, pool: int, work: dict | None = None
) -> tuple[Array, tuple]:
    """Valid stride-1 convolution of a batch-last x (C, H, W, N) with w (F, C, K, K), bias added.

    Returns the output in pooling blocks, (F, P, P, PH, PW, N) (see above); its memory order is
    (b, f, a, i, j, n), that of the GEMM.  ``work``: a workspace for the large temporaries (``scratch``).
    """
    f, c, kernel, _ = w.shape
    if x.shape[0] != c:
        raise ValueError(f"conv: input has {x.shape[0]} channels, weights expect {c}")
    view = _patches(x, kernel, pool)
    cols = scratch(work, "cols", view.shape, x.dtype)
    np.copyto(cols, view)
    cols = cols.reshape(c * kernel * (kernel + pool - 1), -1)
    toeplitz = toeplitz_weights(w, pool)
    out = np.matmul(toeplitz, cols, out=scratch(work, "conv", (pool * f, cols.shape[1]), x.dtype))
    out = out.reshape(pool, f, *view.shape[3:])
    if b is not None:
        out += b[:, None, None, None, None]
    return out.transpose(1, 2, 0, 3, 4, 5), (x.shape, cols, w, toeplitz, pool, b is not None, work)


def _matmul_nt_chunked(a: Array, b: Array, chunk: int = 2048) -> Array:
    """``a @ b.T`` summed over the shared long axis ``chunk`` columns at a time.

    A weight gradient is a thin product over every pixel of the batch (conv1's: 30 x 16 over 28,800);
    OpenBLAS ran it in one call at half the speed of chunks of 2,048 (AMD EPYC Zen 4, 1 thread), and this
    way round (``a @ b.T`` rather than ``b @ a.T``) is the faster one too.
    """
    out = a[:, :chunk] @ b[:, :chunk].T
    for start in range(chunk, a.shape[1], chunk):
        out += a[:, start : start + chunk] @ b[:, start : start + chunk].T
    return out


def conv_blocks_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, Array, Array | None]:
    """Gradients ``(dx, dw, db)`` of ``conv_blocks_forward``; db is None without a bias.

    dx is scattered back with one strided add per patch offset, each over contiguous N-stretches.
    """
    x_shape, cols, w, toeplitz, pool, has_bias, work = cache
    f, c, kernel, _ = w.shape
    dmat = np.ascontiguousarray(dout.transpose(2, 0, 1, 3, 4, 5)).reshape(pool * f, -1)  # GEMM order
    dt = _matmul_nt_chunked(cols, dmat).T.reshape(pool, f, c, kernel, kernel + pool - 1)
    dw = dt[0, ..., :kernel].copy()
    for b in range(1, pool):
        dw += dt[b, ..., b : b + kernel]
    db = dmat.reshape(pool, f, -1).sum(axis=(0, 2)) if has_bias else None
    if not need_dx:
        return None, dw, db
    ph, pw = _shapes(x_shape, kernel, pool)
    n = x_shape[3]
    dcols = np.matmul(toeplitz.T, dmat, out=scratch(work, "dcols", (toeplitz.shape[1], dmat.shape[1]), dout.dtype))
    dcols = dcols.reshape(c, kernel, kernel + pool - 1, pool, ph, pw, n)
    # Patch column e lands on input columns P*j + e: in a copy of dx split by column phase,
    # (C, H, P, ceil(W/P), N), those are one contiguous stretch of PW*N values per row (4x fewer, longer runs).
    _, h, width, _ = x_shape
    split = scratch(work, "dx_phases", (c, h, pool, -(-width // pool), n), dout.dtype)
    split.fill(0)
    for di in range(kernel):
        for e in range(kernel + pool - 1):
            phase, shift = e % pool, e // pool
            target = split[:, di : di + pool * ph, phase, shift : shift + pw]
            target = target.reshape(c, ph, pool, pw, n).transpose(0, 2, 1, 3, 4)
            target += dcols[:, di, e]
    dx = scratch(work, "dx", x_shape, dout.dtype)
    for phase in range(pool):
        columns = dx[:, :, phase::pool]
        columns[...] = split[:, :, phase, : columns.shape[2]]
    return dx, dw, db


def block_maxpool_forward(x: Array, work: dict | None = None) -> tuple[Array, tuple]:
    """Max pooling of a convolution's output in pooling blocks: x (F, P, P, ...) -> (F, ...)."""
    pool = x.shape[1]
    out = scratch(work, "pooled", x[:, 0, 0].shape, x.dtype)
    if pool == 1:
        np.copyto(out, x[:, 0, 0])
    for k in range(1, pool * pool):
        np.maximum(x[:, 0, 0] if k == 1 else out, x[:, k // pool, k % pool], out=out)
    return out, (x, out, work)


def block_maxpool_backward(dout: Array, cache: tuple) -> Array:
    """Route each gradient to the first block (in a, b order) that holds its window's maximum."""
    x, out, work = cache
    pool = x.shape[1]
    # in x's memory order, which the convolution's backward wants
    order = np.argsort(x.strides)[::-1]
    dx = scratch(work, "dpool", tuple(np.array(x.shape)[order]), dout.dtype).transpose(np.argsort(order))
    remaining = scratch(work, "pool_remaining", dout.shape, dout.dtype)
    hit = scratch(work, "pool_hit", out.shape, np.dtype(bool))
    for k in range(pool * pool):
        block = dx[:, k // pool, k % pool]
        np.equal(x[:, k // pool, k % pool], out, out=hit)
        np.multiply(dout if k == 0 else remaining, hit, out=block)
        if k + 1 < pool * pool:  # exactly 0 where routed, unchanged elsewhere
            np.subtract(dout if k == 0 else remaining, block, out=remaining)
    return dx


def conv_pool_relu_forward(x: Array, w: Array, b: Array, pool: int, work: dict | None = None) -> tuple[Array, tuple]:
    """Convolution, P x P max pooling, bias and ReLU of a batch-last x (C, H, W, N) -> (F, PH, PW, N).

    The bias is added after pooling, and the ReLU applied after it: both commute with the maximum,
    and the pooled map is P*P times smaller.  ``work``: a workspace for the large temporaries (``scratch``).
    """
    conv, conv_cache = conv_blocks_forward(x, w, None, pool, work)
    pooled, pool_cache = block_maxpool_forward(conv, work)
    out = np.add(pooled, b[:, None, None, None], out=scratch(work, "out", pooled.shape, pooled.dtype))
    np.maximum(out, 0, out=out)
    return out, (conv_cache, pool_cache, out)


def conv_pool_relu_backward(dout: Array, cache: tuple, need_dx: bool = True) -> tuple[Array | None, Array, Array]:
    """Gradients ``(dx, dw, db)`` of ``conv_pool_relu_forward``."""
    conv_cache, pool_cache, out = cache
    work = pool_cache[2]
    alive = np.greater(out, 0, out=scratch(work, "alive", out.shape, np.dtype(bool)))
    dpooled = np.multiply(dout, alive, out=scratch(work, "dpooled", dout.shape, dout.dtype))
    db = dpooled.reshape(dpooled.shape[0], -1).sum(axis=1)
    dx, dw, _ = conv_blocks_backward(block_maxpool_backward(dpooled, pool_cache), conv_cache, need_dx)
    return dx, dw, db

"""Gradient checks (float64, centred differences) and behaviour of every layer function."""

import numpy as np
import pytest

from nnlib import layers as F
from nnlib.gradcheck import numerical_gradient, numerical_gradient_array, relative_error

TOL = 1e-6


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_affine_gradients_multidimensional_input(rng):
    x = rng.standard_normal((4, 3, 5))
    w = rng.standard_normal((15, 6))
    b = rng.standard_normal(6)
    out, cache = F.affine_forward(x, w, b)
    assert out.shape == (4, 6)
    np.testing.assert_allclose(out, x.reshape(4, -1) @ w + b)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.affine_backward(dout, cache)
    assert dx.shape == x.shape
    fwd = lambda: F.affine_forward(x, w, b)[0]  # noqa: E731
    assert relative_error(dx, numerical_gradient_array(fwd, x, dout)) < TOL
    assert relative_error(dw, numerical_gradient_array(fwd, w, dout)) < TOL
    assert relative_error(db, numerical_gradient_array(fwd, b, dout)) < TOL
    assert F.affine_backward(dout, cache, need_dx=False)[0] is None


def test_relu_gradient(rng):
    x = rng.standard_normal((6, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    out, cache = F.relu_forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    dout = rng.standard_normal(x.shape)
    dx = F.relu_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda: F.relu_forward(x)[0], x, dout)) < TOL


def test_batchnorm_gradients(rng):
    x = 3 * rng.standard_normal((8, 5)) + 2
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    mean, var = np.zeros(5), np.ones(5)
    fwd = lambda: F.batchnorm_forward(x, gamma, beta, mean.copy(), var.copy(), train=True)[0]  # noqa: E731
    out, cache = F.batchnorm_forward(x, gamma, beta, mean, var, train=True)
    dout = rng.standard_normal(out.shape)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(fwd, x, dout)) < TOL
    assert relative_error(dgamma, numerical_gradient_array(fwd, gamma, dout)) < TOL
    assert relative_error(dbeta, numerical_gradient_array(fwd, beta, dout)) < TOL


def test_batchnorm_statistics_and_test_mode(rng):
    x = 4 * rng.standard_normal((500, 3)) + np.array([1.0, -2.0, 5.0])
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])
    mean, var = np.zeros(3), np.ones(3)
    out, _ = F.batchnorm_forward(x, gamma, beta, mean, var, train=True, momentum=0.9)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), np.abs(gamma), rtol=1e-4)
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=0))
    test_out, cache = F.batchnorm_forward(x[:2], gamma, beta, mean, var, train=False)
    assert cache is None
    np.testing.assert_allclose(test_out, (x[:2] - mean) / np.sqrt(var + 1e-5) * gamma + beta)


def test_dropout_expectation_mask_and_test_mode(rng):
    x = np.ones((2000, 50))
    out, mask = F.dropout_forward(x, 0.5, train=True, rng=rng)
    dropped = np.mean(out == 0)
    assert 0.48 < dropped < 0.52
    assert abs(out.mean() - 1.0) < 0.02  # inverted dropout keeps the expected value
    assert set(np.unique(out)) == {0.0, 2.0}
    test_out, cache = F.dropout_forward(x, 0.5, train=False)
    assert test_out is x and cache is None
    dout = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(F.dropout_backward(dout, mask), dout * mask)
    with pytest.raises(ValueError, match="drop probability"):
        F.dropout_forward(x, 1.0, train=True, rng=rng)


def test_dropout_gradient_with_fixed_mask(rng):
    x = rng.standard_normal((5, 6))
    mask = F.dropout_mask(x.shape, 0.5, rng, x.dtype)
    dout = rng.standard_normal(x.shape)
    dx = F.dropout_backward(dout, F.dropout_forward(x, 0.5, True, mask=mask)[1])
    num = numerical_gradient_array(lambda: F.dropout_forward(x, 0.5, True, mask=mask)[0], x, dout)
    assert relative_error(dx, num) < TOL


def test_softmax_cross_entropy_gradient_and_stability(rng):
    scores = rng.standard_normal((7, 10))
    y = rng.integers(0, 10, 7)
    loss, dscores = F.softmax_cross_entropy(scores, y)
    assert abs(loss - np.log(10)) < 1.0
    num = numerical_gradient(lambda: F.softmax_cross_entropy(scores, y)[0], scores)
    assert relative_error(dscores, num) < TOL
    huge, _ = F.softmax_cross_entropy(np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([0, 0]))
    assert np.isfinite(huge) and abs(huge - 5e3) < 1e-6


def test_float32_is_kept(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    out, _ = F.affine_forward(x, w, np.zeros(3, np.float32))
    assert out.dtype == np.float32
    assert F.relu_forward(out)[0].dtype == np.float32
    assert F.dropout_forward(out, 0.5, True, rng=rng)[0].dtype == np.float32
    bn, _ = F.batchnorm_forward(
        out,
        np.ones(3, np.float32),
        np.zeros(3, np.float32),
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
        train=True,
    )
    assert bn.dtype == np.float32


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 1), (1, 2)])
def test_conv2d_gradients_and_reference(rng, stride, pad):
    x = rng.standard_normal((2, 3, 7, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    out, cache = F.conv2d_forward(x, w, b, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ref = np.zeros_like(out)
    for i in range(out.shape[2]):  # direct definition, loops only in the test
        for j in range(out.shape[3]):
            patch = xp[:, :, i * stride : i * stride + 3, j * stride : j * stride + 3]
            ref[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv2d_backward(dout, cache)
    fwd = lambda: F.conv2d_forward(x, w, b, stride, pad)[0]  # noqa: E731
    assert relative_error(dx, numerical_gradient_array(fwd, x, dout)) < TOL
    assert relative_error(dw, numerical_gradient_array(fwd, w, dout)) < TOL
    assert relative_error(db, numerical_gradient_array(fwd, b, dout)) < TOL


def test_maxpool_gradient_layouts_and_ties(rng):
    x = rng.standard_normal((2, 3, 6, 8))
    out, cache = F.maxpool_forward(x, 2)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 3, 2, 4, 2).max(axis=(3, 5)))
    dout = rng.standard_normal(out.shape)
    dx = F.maxpool_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda: F.maxpool_forward(x, 2)[0], x, dout)) < TOL
    channel_major = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
    out2, cache2 = F.maxpool_forward(channel_major, 2)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(F.maxpool_backward(dout, cache2), dx)
    _, tie = F.maxpool_forward(np.zeros((1, 1, 2, 2)), 2)  # a blank window: the gradient goes to one place
    np.testing.assert_array_equal(F.maxpool_backward(np.ones((1, 1, 1, 1)), tie), [[[[1.0, 0.0], [0.0, 0.0]]]])
    with pytest.raises(ValueError, match="not a multiple of the pool size"):
        F.maxpool_forward(np.zeros((1, 1, 5, 4)), 2)


def test_maxpool_large_window_argmax_does_not_overflow(rng):
    # 12 x 12 windows have 144 positions: more than an int8 arg-max can hold
    x = rng.standard_normal((2, 3, 24, 24))
    out, cache = F.maxpool_forward(x, 12)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 2, 12, 2, 12).max(axis=(3, 5)))
    dout = rng.standard_normal(out.shape)
    dx = F.maxpool_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda: F.maxpool_forward(x, 12)[0], x, dout)) < TOL


def batch_last(x):
    return np.ascontiguousarray(x.transpose(1, 2, 3, 0))


@pytest.mark.parametrize("pool", [1, 2, 3])
def test_batch_last_conv_in_pooling_blocks_matches_the_nchw_convolution(rng, pool):
    x = rng.standard_normal((3, 2, 8, 8))  # N, C, H, W
    w, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    xb = batch_last(x)
    out, cache = F.conv_blocks_forward(xb, w, b, pool)
    ref, _ = F.conv2d_forward(x, w, b)  # (N, F, 6, 6)
    s = 6 // pool
    blocks = ref.transpose(1, 2, 3, 0).reshape(4, s, pool, s, pool, 3).transpose(0, 2, 4, 1, 3, 5)
    np.testing.assert_allclose(out, blocks, rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv_blocks_backward(dout, cache)
    fwd = lambda: F.conv_blocks_forward(xb, w, b, pool)[0]  # noqa: E731
    assert relative_error(dx, numerical_gradient_array(fwd, xb, dout)) < TOL
    assert relative_error(dw, numerical_gradient_array(fwd, w, dout)) < TOL
    assert relative_error(db, numerical_gradient_array(fwd, b, dout)) < TOL
    assert F.conv_blocks_backward(dout, cache, need_dx=False)[0] is None


def test_block_maxpool_gradient_and_ties(rng):
    x = rng.standard_normal((3, 2, 2, 5, 2))
    out, cache = F.block_maxpool_forward(x)
    np.testing.assert_array_equal(out, x.max(axis=(1, 2)))
    dout = rng.standard_normal(out.shape)
    dx = F.block_maxpool_backward(dout, cache)
    assert relative_error(dx, numerical_gradient_array(lambda: F.block_maxpool_forward(x)[0], x, dout)) < TOL
    _, tie = F.block_maxpool_forward(np.zeros((1, 2, 2, 1)))  # a blank window: the gradient goes to one place
    np.testing.assert_array_equal(F.block_maxpool_backward(np.ones((1, 1)), tie), [[[[1.0], [0.0]], [[0.0], [0.0]]]])


def test_conv_pool_relu_matches_the_layer_by_layer_reference_and_gradients(rng):
    x = rng.standard_normal((3, 2, 8, 8))
    w, b = rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    xb = batch_last(x)
    out, cache = F.conv_pool_relu_forward(xb, w, b, 2)
    conv, _ = F.conv2d_forward(x, w, b)
    pooled, _ = F.maxpool_forward(conv, 2)
    np.testing.assert_allclose(out, batch_last(F.relu_forward(pooled)[0]), rtol=1e-12, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = F.conv_pool_relu_backward(dout, cache)
    fwd = lambda: F.conv_pool_relu_forward(xb, w, b, 2)[0]  # noqa: E731
    assert relative_error(dx, numerical_gradient_array(fwd, xb, dout)) < TOL
    assert relative_error(dw, numerical_gradient_array(fwd, w, dout)) < TOL
    assert relative_error(db, numerical_gradient_array(fwd, b, dout)) < TOL


def test_weight_gradient_over_more_columns_than_one_chunk_matches_the_nchw_convolution(rng):
    # 2 x 4 x 4 x 150 = 4,800 GEMM columns: two full chunks of 2,048 and a short one of 704
    pool, s, n = 2, 4, 150
    x = rng.standard_normal((n, 1, 12, 12))
    w, b = rng.standard_normal((2, 1, 5, 5)), rng.standard_normal(2)
    out, cache = F.conv_blocks_forward(batch_last(x), w, b, pool)
    assert cache[1].shape[1] == 4800
    _, ref_cache = F.conv2d_forward(x, w, b)
    dout = rng.standard_normal(out.shape)  # (F, P, P, s, s, N) -> (N, F, s*P, s*P)
    dref = dout.transpose(0, 3, 1, 4, 2, 5).reshape(2, s * pool, s * pool, n).transpose(3, 0, 1, 2)
    dx_ref, dw_ref, db_ref = F.conv2d_backward(dref, ref_cache)
    dx, dw, db = F.conv_blocks_backward(dout, cache)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-10)
    np.testing.assert_allclose(db, db_ref, rtol=1e-10)
    np.testing.assert_allclose(dx, batch_last(dx_ref), rtol=1e-10, atol=1e-12)
    a, c = rng.standard_normal((3, 10)), rng.standard_normal((4, 10))
    np.testing.assert_allclose(F._matmul_nt_chunked(a, c, chunk=3), a @ c.T, rtol=1e-12)

"""Networks built from a small spec: layers in sequence, parameters by name."""

from __future__ import annotations

import io
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from . import layers as F

Array = np.ndarray

INITS = ("he", "xavier")
DTYPES = ("float32", "float64")
#: Specs are bounded before anything is allocated, so that a crafted checkpoint or config cannot ask
#: for terabytes: at most this many trainable scalars (200 MB in float32) ...
MAX_PARAMS = 50_000_000
#: ... and at most this many activations per sample in a CNN's feature maps.
MAX_ACTIVATIONS = 5_000_000


def _dense_params(n_in: int, widths: tuple[int, ...], classes: int, bias: bool) -> int:
    """Trainable scalars of fully connected layers ``n_in -> widths... -> classes`` (BN: gamma and beta)."""
    total = 0
    for width in widths:
        total += n_in * width + 2 * width  # weight, and the bias or BN's gamma and beta
        n_in = width
    return total + n_in * classes + classes


def _check_size(spec: Any, n_params: int) -> None:
    if n_params > MAX_PARAMS:
        raise ValueError(
            f"{type(spec).__name__} has {n_params:,} parameters; at most {MAX_PARAMS:,} are allowed "
            "(nnlib.network.MAX_PARAMS)"
        )


@dataclass(frozen=True)
class TrainingOptions:
    """Options every network spec has; ``dropout`` is the probability of DROPPING a unit (0: off)."""

    classes: int = 10
    batchnorm: bool = False
    dropout: float = 0.0
    init: str = "he"
    dtype: str = "float32"
    weight_decay: float = 0.0
    bn_momentum: float = 0.9


@dataclass(frozen=True)
class MLPSpec(TrainingOptions):
    """A fully connected net: affine -> [batchnorm] -> ReLU -> [dropout] per hidden layer.

    ``dropout`` is the probability of dropping a hidden unit (0 turns dropout off).
    The seed report's network is the default: 784-100-10.
    """

    input_dim: int = 784
    hidden: tuple[int, ...] = (100,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check_common(self)
        if self.input_dim < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"MLPSpec sizes must be positive: input_dim={self.input_dim}, hidden={self.hidden}")
        _check_size(self, self.n_params())

    def n_params(self) -> int:
        """Number of trainable scalars, computed without allocating anything."""
        return _dense_params(self.input_dim, self.hidden, self.classes, True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the spec's kind."""
        return {"kind": "mlp", **asdict(self), "hidden": list(self.hidden)}


def _check_common(spec: Any) -> None:
    if spec.classes < 2:
        raise ValueError(f"classes must be at least 2, got {spec.classes}")
    if not 0.0 <= spec.dropout < 1.0:
        raise ValueError(f"dropout is the drop probability and must lie in [0, 1), got {spec.dropout}")
    if spec.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {spec.init!r}")
    if spec.dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {spec.dtype!r}")
    if spec.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {spec.weight_decay}")
    if not 0.0 <= spec.bn_momentum < 1.0:
        raise ValueError(f"bn_momentum must lie in [0, 1), got {spec.bn_momentum}")


@dataclass(frozen=True)
class CNNSpec(TrainingOptions):
    """A LeNet-style net: per entry of ``conv`` (filters, kernel), conv -> [spatial BN] -> ReLU -> max pool
    (computed as pool then ReLU, which is the same function),
    then ``hidden`` fully connected ReLU layers and the output layer; dropout (drop probability) acts on
    the flattened features and on each hidden layer."""

    input_shape: tuple[int, int, int] = (1, 28, 28)
    conv: tuple[tuple[int, int], ...] = ((8, 5), (16, 5))
    pool: int = 2
    hidden: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "conv", tuple((int(f), int(k)) for f, k in self.conv))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        _check_common(self)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"CNNSpec input_shape must be (channels, height, width), got {self.input_shape}")
        if self.pool < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"CNNSpec sizes must be positive: pool={self.pool}, hidden={self.hidden}")
        self.feature_shape()  # checks that every stage fits
        _check_size(self, self.n_params())

    def feature_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) after the last pooling stage."""
        c, h, w = self.input_shape
        activations = c * h * w
        for filters, kernel in self.conv:
            h, w = h - kernel + 1, w - kernel + 1
            if h < 1 or w < 1 or filters < 1 or kernel < 1:
                raise ValueError(f"CNNSpec: conv stage ({filters}, {kernel}) does not fit the input {self.input_shape}")
            if h % self.pool or w % self.pool:
                raise ValueError(f"CNNSpec: feature map {h}x{w} is not a multiple of pool size {self.pool}")
            activations += filters * h * w
            c, h, w = filters, h // self.pool, w // self.pool
        if activations > MAX_ACTIVATIONS:
            raise ValueError(
                f"CNNSpec has {activations:,} activations per sample; at most {MAX_ACTIVATIONS:,} are allowed "
                "(nnlib.network.MAX_ACTIVATIONS)"
            )
        return c, h, w

    def n_params(self) -> int:
        """Number of trainable scalars, computed without allocating anything."""
        total, c = 0, self.input_shape[0]
        for filters, kernel in self.conv:
            total += filters * c * kernel * kernel + filters  # weight, and the bias or (with BN) gamma and beta
            total += filters if self.batchnorm else 0
            c = filters
        return total + _dense_params(math.prod(self.feature_shape()), self.hidden, self.classes, True)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(input_shape=list(self.input_shape), conv=[list(c) for c in self.conv], hidden=list(self.hidden))
        return {"kind": "cnn", **d}

    def build_layers(self) -> list[Layer]:
        # feature maps are batch-last, (C, H, W, N), from the first convolution to the flattening
        out: list[Layer] = [ToBatchLast(self.input_shape)]
        c = self.input_shape[0]
        for i, (filters, kernel) in enumerate(self.conv, start=1):
            if self.batchnorm:
                out += [
                    Conv2D(f"conv{i}", c, filters, kernel, self.pool, bias=False),
                    SpatialBatchNorm(f"cbn{i}", filters, self.bn_momentum),
                    BlockMaxPool(),
                    ReLU(),  # = ReLU then pool (max and ReLU commute), P*P times less work
                ]
            else:
                out.append(ConvPoolReLU(f"conv{i}", c, filters, kernel, self.pool))
            c = filters
        out.append(FromBatchLast())
        n_in = int(np.prod(self.feature_shape()))
        if self.dropout > 0:
            out.append(Dropout("dropout0", self.dropout))
        for i, width in enumerate(self.hidden, start=1):
            out += [Affine(f"fc{i}", n_in, width), ReLU()]
            if self.dropout > 0:
                out.append(Dropout(f"dropout{i}", self.dropout))
            n_in = width
        out.append(Affine(f"fc{len(self.hidden) + 1}", n_in, self.classes))
        return out


SPEC_KINDS: dict[str, type] = {"mlp": MLPSpec, "cnn": CNNSpec}


def spec_from_dict(data: dict[str, Any]) -> Any:
    """Rebuild a spec from ``to_dict`` output; unknown kinds or keys raise ValueError."""
    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in SPEC_KINDS:
        raise ValueError(f"unknown network kind {kind!r}; known kinds: {sorted(SPEC_KINDS)}")
    cls = SPEC_KINDS[kind]
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown {kind} spec keys {unknown}; allowed: {sorted(allowed)}")
    return cls(**data)


# ----------------------------------------------------------------------------- layers


class Layer:
    """One step of a network; parameters live in the network's dicts, by name."""

    name = ""
    weight_names: tuple[str, ...] = ()

    def init_params(self, rng: np.random.Generator, dtype: np.dtype, init: str) -> dict[str, Array]:
        return {}

    def init_buffers(self, dtype: np.dtype) -> dict[str, Array]:
        return {}

    def forward(self, x: Array, params: dict, buffers: dict, train: bool, rng: np.random.Generator | None):
        raise NotImplementedError

    def backward(self, dout: Array, cache: Any, need_dx: bool) -> tuple[Array | None, dict[str, Array]]:
        raise NotImplementedError


def init_weight(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple, init: str, dtype) -> Array:
    """He (ReLU) or Xavier/Glorot normal initialisation."""
    std = math.sqrt(2.0 / fan_in) if init == "he" else math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(dtype)


class WeightLayer(Layer):
    """A layer with a weight ``NAME.w`` and, unless batch norm follows, a bias ``NAME.b``.

    Subclasses give the weight's shape and fans, and the forward/backward functions.
    """

    forward_fn: Any = None
    backward_fn: Any = None

    def __init__(self, name: str, shape: tuple[int, ...], fans: tuple[int, int], units: int, bias: bool) -> None:
        self.name, self.shape, self.fans, self.units = name, shape, fans, units
        self.w, self.b = f"{name}.w", (f"{name}.b" if bias else None)
        self.weight_names = (self.w,)

    def init_params(self, rng, dtype, init):
        out = {self.w: init_weight(rng, *self.fans, self.shape, init, dtype)}
        if self.b:
            out[self.b] = np.zeros(self.units, dtype=dtype)
        return out

    def forward(self, x, params, buffers, train, rng):
        return type(self).forward_fn(x, params[self.w], params[self.b] if self.b else None)

    def backward(self, dout, cache, need_dx):
        dx, dw, db = type(self).backward_fn(dout, cache, need_dx)
        return dx, ({self.w: dw, self.b: db} if self.b else {self.w: dw})


class Affine(WeightLayer):
    """Fully connected layer; ``bias=False`` where batch norm follows (its beta is the bias)."""

    forward_fn = staticmethod(F.affine_forward)
    backward_fn = staticmethod(F.affine_backward)

    def __init__(self, name: str, n_in: int, n_out: int, bias: bool = True) -> None:
        super().__init__(name, (n_in, n_out), (n_in, n_out), n_out, bias)


class ReLU(Layer):
    name = "relu"

    def forward(self, x, params, buffers, train, rng):
        return F.relu_forward(x)

    def backward(self, dout, cache, need_dx):
        return F.relu_backward(dout, cache), {}


class BatchNorm(Layer):
    def __init__(self, name: str, dim: int, momentum: float) -> None:
        self.name, self.dim, self.momentum = name, dim, momentum
        self.gamma, self.beta = f"{name}.gamma", f"{name}.beta"
        self.mean, self.var = f"{name}.running_mean", f"{name}.running_var"

    def init_params(self, rng, dtype, init):
        return {self.gamma: np.ones(self.dim, dtype=dtype), self.beta: np.zeros(self.dim, dtype=dtype)}

    def init_buffers(self, dtype):
        return {self.mean: np.zeros(self.dim, dtype=dtype), self.var: np.ones(self.dim, dtype=dtype)}

    def forward(self, x, params, buffers, train, rng):
        return F.batchnorm_forward(
            x, params[self.gamma], params[self.beta], buffers[self.mean], buffers[self.var], train, self.momentum
        )

    def backward(self, dout, cache, need_dx):
        dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
        return dx, {self.gamma: dgamma, self.beta: dbeta}


class Dropout(Layer):
    def __init__(self, name: str, p: float) -> None:
        self.name, self.p = name, p

    def forward(self, x, params, buffers, train, rng):
        return F.dropout_forward(x, self.p, train, rng)

    def backward(self, dout, cache, need_dx):
        return F.dropout_backward(dout, cache), {}


class ToBatchLast(Layer):
    """Samples (N, ...) of ``shape`` (C, H, W) to one contiguous batch-last array (C, H, W, N)."""

    name = "to_batch_last"

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.work: dict[str, Array] = {}  # the output of training steps, reused (layers.scratch)

    def forward(self, x, params, buffers, train, rng):
        flat = x.reshape(x.shape[0], -1)
        out = F.scratch(self.work if train else None, "out", flat.shape[::-1], flat.dtype)
        np.copyto(out, flat.T)
        return out.reshape(*self.shape, x.shape[0]), x.shape

    def backward(self, dout, cache, need_dx):
        return np.ascontiguousarray(dout.reshape(-1, dout.shape[-1]).T).reshape(cache), {}


class FromBatchLast(Layer):
    """Batch-last feature maps (C, H, W, N) to flat samples (N, C*H*W), features in (C, H, W) order."""

    name = "from_batch_last"

    def forward(self, x, params, buffers, train, rng):
        return np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T), x.shape

    def backward(self, dout, cache, need_dx):
        return np.ascontiguousarray(dout.T).reshape(cache), {}


class Conv2D(WeightLayer):
    """Valid (unpadded) stride-1 convolution with F filters of size k x k, on batch-last (C, H, W, N)
    maps, returning its output in pooling blocks (F, P*P, H'/P, W'/P, N) for the max pooling after it."""

    forward_fn = staticmethod(F.conv_blocks_forward)
    backward_fn = staticmethod(F.conv_blocks_backward)

    def __init__(self, name: str, channels: int, filters: int, kernel: int, pool: int, bias: bool = True) -> None:
        shape = (filters, channels, kernel, kernel)
        super().__init__(name, shape, (channels * kernel**2, filters * kernel**2), filters, bias)
        self.pool = pool
        self.work: dict[str, Array] = {}  # reused temporaries of training steps (layers.scratch)

    def forward(self, x, params, buffers, train, rng):
        work = self.work if train else None
        return type(self).forward_fn(x, params[self.w], params[self.b] if self.b else None, self.pool, work)


class ConvPoolReLU(Conv2D):
    """Convolution, max pooling, bias and ReLU in one step (networks without batch norm)."""

    forward_fn = staticmethod(F.conv_pool_relu_forward)
    backward_fn = staticmethod(F.conv_pool_relu_backward)

    def __init__(self, name: str, channels: int, filters: int, kernel: int, pool: int) -> None:
        super().__init__(name, channels, filters, kernel, pool, bias=True)


class BlockMaxPool(Layer):
    """Max pooling of a convolution's output in pooling blocks: (F, P*P, ...) -> (F, ...)."""

    name = "maxpool"

    def forward(self, x, params, buffers, train, rng):
        return F.block_maxpool_forward(x)

    def backward(self, dout, cache, need_dx):
        return F.block_maxpool_backward(dout, cache), {}


class SpatialBatchNorm(BatchNorm):
    """Batch norm per channel of a channel-first (C, ...) input, over every other axis."""

    def forward(self, x, params, buffers, train, rng):
        out, cache = super().forward(x.reshape(x.shape[0], -1).T, params, buffers, train, rng)
        return out.T.reshape(x.shape), (cache, x.shape)

    def backward(self, dout, cache, need_dx):
        inner, shape = cache
        dx, grads = super().backward(dout.reshape(shape[0], -1).T, inner, need_dx)
        return dx.T.reshape(shape), grads


def build_layers(spec: Any) -> list[Layer]:
    """The layer sequence a spec describes (the softmax loss is applied by the network)."""
    if isinstance(spec, MLPSpec):
        out: list[Layer] = []
        n_in = spec.input_dim
        for i, width in enumerate(spec.hidden, start=1):
            out.append(Affine(f"fc{i}", n_in, width, bias=not spec.batchnorm))
            if spec.batchnorm:
                out.append(BatchNorm(f"bn{i}", width, spec.bn_momentum))
            out.append(ReLU())
            if spec.dropout > 0:
                out.append(Dropout(f"dropout{i}", spec.dropout))
            n_in = width
        out.append(Affine(f"fc{len(spec.hidden) + 1}", n_in, spec.classes))
        return out
    builder = getattr(spec, "build_layers", None)
    if builder is None:
        raise TypeError(f"no layer builder for spec type {type(spec).__name__}")
    return builder()


# ----------------------------------------------------------------------------- network


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupted, or not an nnlib checkpoint."""


CHECKPOINT_FORMAT = "nnlib-checkpoint-v1"


class Network:
    """A sequence of layers ending in softmax cross-entropy.

    ``params`` (trained) and ``buffers`` (batchnorm running statistics) are dicts
    keyed by names such as ``fc1.w`` or ``bn1.running_mean``.
    """

    def __init__(self, spec: Any, seed: int | np.random.Generator = 0) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        self.layers = build_layers(spec)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.params: dict[str, Array] = {}
        self.buffers: dict[str, Array] = {}
        for layer in self.layers:
            self.params.update(layer.init_params(rng, self.dtype, spec.init))
            self.buffers.update(layer.init_buffers(self.dtype))
        # every parameter is a view of one flat buffer, which optimisers update in a few passes
        self.flat_params = np.empty(sum(p.size for p in self.params.values()), dtype=self.dtype)
        offset = 0
        for name, p in self.params.items():
            view = self.flat_params[offset : offset + p.size].reshape(p.shape)
            view[...] = p
            self.params[name] = view
            offset += p.size
        self.weight_names = [n for layer in self.layers for n in layer.weight_names]
        # backward stops at the first layer with parameters: nothing needs the gradient of the input
        self.first_trainable = next(i for i, layer in enumerate(self.layers) if layer.weight_names)

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def forward(self, x: Array, train: bool = False, rng: np.random.Generator | None = None) -> tuple[Array, list]:
        """Class scores and the layer caches."""
        caches = []
        out = x
        for layer in self.layers:
            out, cache = layer.forward(out, self.params, self.buffers, train, rng)
            caches.append(cache)
        return out, caches

    def loss_and_grads(
        self, x: Array, y: Array, rng: np.random.Generator | None = None
    ) -> tuple[float, dict[str, Array]]:
        """Training-mode loss (with L2 weight decay) and the gradient of every parameter.

        ``rng`` draws the dropout masks; passing identically seeded generators gives
        identical masks, which is how gradient checks fix them.
        """
        scores, caches = self.forward(x, train=True, rng=rng)
        loss, dout = F.softmax_cross_entropy(scores, y)
        grads: dict[str, Array] = {}
        for i in range(len(self.layers) - 1, self.first_trainable - 1, -1):
            dout, layer_grads = self.layers[i].backward(dout, caches[i], need_dx=i > self.first_trainable)
            grads.update(layer_grads)
        decay = self.spec.weight_decay
        if decay:
            for name in self.weight_names:
                w = self.params[name]
                loss += 0.5 * decay * float(np.sum(w * w))
                grads[name] += decay * w
        return loss, grads

    def predict_proba(self, x: Array, batch_size: int = 2000) -> Array:
        """Softmax class probabilities in test mode, computed in batches."""
        out = []
        for start in range(0, len(x), batch_size):
            scores, _ = self.forward(np.asarray(x[start : start + batch_size], dtype=self.dtype))
            scores = scores - scores.max(axis=1, keepdims=True)
            e = np.exp(scores)
            out.append(e / e.sum(axis=1, keepdims=True))
        return np.concatenate(out) if out else np.zeros((0, self.spec.classes), self.dtype)

    def predict(self, x: Array, batch_size: int = 2000) -> Array:
        """Predicted class of each sample."""
        out = []
        for start in range(0, len(x), batch_size):
            scores, _ = self.forward(np.asarray(x[start : start + batch_size], dtype=self.dtype))
            out.append(scores.argmax(axis=1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def evaluate(self, x: Array, y: Array, batch_size: int = 2000) -> float:
        """Accuracy in [0, 1] in test mode."""
        if len(x) == 0:
            raise ValueError("evaluate needs at least one sample")
        return float(np.mean(self.predict(x, batch_size) == y))

    # -- state and checkpoints

    def state(self) -> dict[str, Array]:
        """Copies of all parameters and buffers, keyed ``param/NAME`` and ``buffer/NAME``."""
        out = {f"param/{k}": v.copy() for k, v in self.params.items()}
        out.update({f"buffer/{k}": v.copy() for k, v in self.buffers.items()})
        return out

    def load_state(self, state: dict[str, Array]) -> None:
        """Copy ``state()`` output back in place, checking names and shapes."""
        for prefix, target in (("param/", self.params), ("buffer/", self.buffers)):
            for name, arr in target.items():
                key = prefix + name
                if key not in state:
                    raise KeyError(f"state lacks {key}")
                if state[key].shape != arr.shape:
                    raise ValueError(f"{key} has shape {state[key].shape}, expected {arr.shape}")
                arr[...] = state[key]

    def save(self, path: str, extra: dict[str, Array] | None = None) -> None:
        """Write spec, parameters and buffers to an ``.npz`` atomically (no pickle)."""
        from ._io import atomic_savez

        arrays = self.state()
        arrays["format"] = np.array(CHECKPOINT_FORMAT)
        arrays["spec"] = np.array(json.dumps(self.spec.to_dict(), sort_keys=True))
        for key, value in (extra or {}).items():
            arrays[f"extra/{key}"] = np.asarray(value)
        atomic_savez(path, arrays)

    @classmethod
    def load(cls, path: str) -> Network:
        """Read a checkpoint written by ``save``; anything else raises CheckpointError.

        The spec is bounded (MAX_PARAMS) before any parameter is allocated, and parameters or
        buffers holding NaN or infinity are refused.
        """
        from ._io import read_regular_bytes

        try:
            raw = read_regular_bytes(path)  # a FIFO or a device is refused, never read (it could block)
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint {path}: file not found") from None
        except OSError as exc:
            raise CheckpointError(f"checkpoint {path}: cannot be read ({exc})") from None
        magic = raw[:4]
        if magic != b"PK\x03\x04":  # every .npz is a zip archive; np.load would guess "pickle" for anything else
            kind = "a single .npy array" if magic == b"\x93NUM" else "not a zip archive"
            raise CheckpointError(f"checkpoint {path}: not a valid .npz checkpoint ({kind})")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except ValueError as exc:
            if "pickle" not in str(exc):
                raise CheckpointError(f"checkpoint {path}: not a valid .npz checkpoint ({exc})") from None
            raise CheckpointError(f"checkpoint {path}: contains pickled (object) data, which is refused") from None
        except Exception as exc:  # zip or npy header faults
            raise CheckpointError(f"checkpoint {path}: not a valid .npz checkpoint ({exc})") from None
        if not isinstance(arrays, dict) or str(arrays.get("format", "")) != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {path}: not an nnlib checkpoint (no format={CHECKPOINT_FORMAT!r})")
        try:
            spec = spec_from_dict(json.loads(str(arrays["spec"])))
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: bad network spec ({exc})") from None
        net = cls(spec)
        try:
            for key, value in arrays.items():
                if key.startswith(("param/", "buffer/")) and value.dtype != net.dtype:
                    raise ValueError(f"{key} has dtype {value.dtype}, expected {net.dtype}")
                if key.startswith(("param/", "buffer/")) and not np.isfinite(value).all():
                    raise ValueError(f"{key} holds non-finite values (NaN or infinity)")
            net.load_state(arrays)
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path}: {exc}") from None
        return net


def read_checkpoint_extra(path: str) -> dict[str, Array]:
    """The ``extra/*`` arrays stored beside a checkpoint's parameters."""
    with np.load(path, allow_pickle=False) as data:
        return {k[len("extra/") :]: data[k] for k in data.files if k.startswith("extra/")}

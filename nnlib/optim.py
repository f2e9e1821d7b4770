"""Optimisers as objects whose state is keyed by parameter name.

``step(params, grads)`` updates the parameter arrays in place.  ``state_dict()``
returns plain arrays (``lr``, ``t`` and per-parameter slots such as ``m/fc1.w``)
that can be stored in an ``.npz`` checkpoint and given back to
``load_state_dict``.
"""

from __future__ import annotations

import math

import numpy as np

Array = np.ndarray

#: The name under which one update covers every parameter at once (see ``flat_buffer``).
FLAT = "\0flat"


def flat_buffer(params: dict[str, Array], grads: dict[str, Array]) -> Array | None:
    """The one 1-D array that ``params`` are consecutive views of, in their order, or None; also None
    unless every parameter has a gradient.

    A Network keeps its parameters so; an optimiser then updates them all with a few passes over one
    contiguous buffer instead of a dozen small NumPy calls per parameter.
    """
    names = list(params)
    if not names or len(grads) != len(names) or any(name not in grads for name in names):
        return None
    base = params[names[0]].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    address, offset = base.__array_interface__["data"][0], 0
    for name in names:
        p = params[name]
        if p.base is not base or not p.flags.c_contiguous or p.__array_interface__["data"][0] != address + offset:
            return None
        offset += p.nbytes
    return base if offset == base.nbytes else None


class Optimizer:
    """Base class: validates the learning rate and handles the slot bookkeeping."""

    name = "optimizer"
    slot_names: tuple[str, ...] = ()
    #: every this many steps, slot values below the smallest normal float are set to 0
    #: (flush-to-zero, which NumPy cannot switch on): decaying moments of dead units
    #: otherwise turn subnormal, and subnormal arithmetic is many times slower.
    flush_every = 8

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.t = 0
        self.slots: dict[str, dict[str, Array]] = {s: {} for s in self.slot_names}
        self._scratch: dict[str, Array] = {}
        self._flat_base: Array | None = None
        self._flat_layout: list[tuple[str, tuple[int, ...]]] = []
        self._flat_slots: dict[str, Array] = {}
        self._flat_seen: tuple[Array, ...] | None = None

    @property
    def lr(self) -> float:
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{self.name}: learning rate must be a finite number > 0, got {value}")
        self._lr = value

    def _slot(self, slot: str, name: str, like: Array) -> Array:
        if name == FLAT:
            arr = self._flat_slots.get(slot)
            if arr is None:
                arr = self._flat_slots[slot] = self._gather_flat(slot, like)
            return arr
        arr = self.slots[slot].get(name)
        if arr is None:
            arr = self.slots[slot][name] = np.zeros_like(like)
        return arr

    def _gather_flat(self, slot: str, like: Array) -> Array:
        """One flat slot laid out like the flat parameters; the per-name slots become views of it."""
        flat = np.zeros_like(like)
        offset = 0
        for name, shape in self._flat_layout:
            size = math.prod(shape)
            view = flat[offset : offset + size].reshape(shape)
            old = self.slots[slot].get(name)
            if old is not None:
                view[...] = old
            self.slots[slot][name] = view
            offset += size
        return flat

    def _tmp(self, name: str, like: Array) -> Array:
        return self._buffer(name, like.shape, like.dtype)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """A scratch array kept between steps (no allocation per step)."""
        arr = self._scratch.get(name)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = self._scratch[name] = np.empty(shape, dtype=dtype)
        return arr

    def _flat_base_of(self, params: dict[str, Array], grads: dict[str, Array]) -> Array | None:
        """``flat_buffer(params, grads)``, remembered for the same parameter arrays (a training loop
        passes the same ones every step, and views cannot be moved to another buffer)."""
        seen = self._flat_seen
        if (
            seen is not None
            and len(grads) == len(seen)
            and len(params) == len(seen)
            and all(p is q for p, q in zip(params.values(), seen))
            and all(name in grads for name in params)
        ):
            return self._flat_base
        base = flat_buffer(params, grads)
        if base is None:
            self._flat_seen = None
            return None
        layout = [(name, p.shape) for name, p in params.items()]
        if self._flat_base is not base or self._flat_layout != layout:
            self._flat_base, self._flat_layout, self._flat_slots = base, layout, {}
        self._flat_seen = tuple(params.values())
        return base

    def step(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.t += 1
        self._prepare()
        base = self._flat_base_of(params, grads)
        if base is None:
            for name, grad in grads.items():
                self._update(name, params[name], grad)
        else:
            flat_grad = self._tmp(FLAT + "grad", base)
            np.concatenate([grads[name].reshape(-1) for name in params], out=flat_grad)
            self._update(FLAT, base, flat_grad)
        if self.t % self.flush_every == 0:
            self.flush_subnormals()

    def _prepare(self) -> None:
        """Per-step scalars (Adam's bias corrections); nothing by default."""

    def flush_subnormals(self) -> None:
        """Set subnormal slot values to zero: one pass over each flat slot, then any slot array that is
        not a view of one."""
        flat = list(self._flat_slots.values())
        for arr in flat:
            self._flush(arr)
        for arrays in self.slots.values():
            for arr in arrays.values():
                if arr.base is None or all(arr.base is not f for f in flat):
                    self._flush(arr)

    def _flush(self, arr: Array) -> None:
        """Multiply by (|arr| >= tiny): three branch-free passes into scratch buffers (a masked
        assignment is several times slower when the mask is scattered)."""
        flat = arr.ndim == 1 and arr.flags.c_contiguous
        mag = self._tmp("\0flush", arr) if flat else np.empty_like(arr)
        keep = self._buffer("\0flush_keep", arr.shape, np.dtype(bool)) if flat else np.empty(arr.shape, dtype=bool)
        np.abs(arr, out=mag)
        np.greater_equal(mag, np.finfo(arr.dtype).tiny, out=keep)
        np.multiply(arr, keep, out=arr)

    def _update(self, name: str, w: Array, g: Array) -> None:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, float | bool]:
        """The settings that define the update rule (for logging)."""
        return {"lr": self.lr}

    def state_dict(self) -> dict[str, Array]:
        """Learning rate, step count and every slot, as arrays."""
        out: dict[str, Array] = {"lr": np.array(self.lr), "t": np.array(self.t)}
        for slot, arrays in self.slots.items():
            out.update({f"{slot}/{name}": arr.copy() for name, arr in arrays.items()})
        return out

    def load_state_dict(self, state: dict[str, Array]) -> None:
        """Restore what ``state_dict`` returned; unknown slots raise ValueError."""
        self.lr = float(state["lr"])
        self.t = int(state["t"])
        self.slots = {s: {} for s in self.slot_names}
        self._flat_slots = {}  # gathered again from the per-name slots at the next step
        for key, arr in state.items():
            if key in ("lr", "t"):
                continue
            slot, _, name = key.partition("/")
            if slot not in self.slots or not name:
                raise ValueError(f"{self.name}: unknown optimiser state entry {key!r}")
            self.slots[slot][name] = np.array(arr, copy=True)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    Plain: ``w -= lr * g``.  With momentum ``mu``: ``v = mu * v + g`` and
    ``w -= lr * v``, or ``w -= lr * (g + mu * v)`` with Nesterov.
    """

    name = "sgd"
    slot_names = ("velocity",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"sgd: momentum must lie in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("sgd: nesterov needs momentum > 0")
        self.momentum, self.nesterov = momentum, nesterov

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, name, w, g):
        tmp = self._tmp(name, w)
        if self.momentum == 0.0:
            np.multiply(g, self.lr, out=tmp)
            w -= tmp
            return
        v = self._slot("velocity", name, w)
        v *= self.momentum
        v += g
        if self.nesterov:
            np.multiply(v, self.momentum, out=tmp)
            tmp += g
            tmp *= self.lr
        else:
            np.multiply(v, self.lr, out=tmp)
        w -= tmp


class RMSprop(Optimizer):
    """``s = rho * s + (1 - rho) * g**2``; ``w -= lr * g / (sqrt(s) + eps)``."""

    name = "rmsprop"
    slot_names = ("square_avg",)

    def __init__(self, lr: float = 0.001, rho: float = 0.99, eps: float = 1e-8) -> None:
        super().__init__(lr)
        if not 0.0 < rho < 1.0:
            raise ValueError(f"rmsprop: rho must lie in (0, 1), got {rho}")
        self.rho, self.eps = rho, eps

    def hyperparameters(self):
        return {"lr": self.lr, "rho": self.rho, "eps": self.eps}

    def _update(self, name, w, g):
        s = self._slot("square_avg", name, w)
        tmp = self._tmp(name, w)
        s *= self.rho
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.rho
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.lr
        w -= tmp


class Adam(Optimizer):
    """Adam with bias correction, as in the seed report (Kingma & Ba, 2015).

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g**2``,
    ``w -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1**t)`` and
    ``v_hat = v / (1 - b2**t)``.  The corrections are folded into two scalars,
    which is algebraically the same update with fewer passes over memory.
    """

    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"adam: {label} must lie in [0, 1), got {beta}")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def hyperparameters(self):
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _prepare(self):
        root_c2 = math.sqrt(1.0 - self.beta2**self.t)
        self._step_size = self.lr * root_c2 / (1.0 - self.beta1**self.t)
        self._eps_hat = self.eps * root_c2

    def _update(self, name, w, g):
        m = self._slot("m", name, w)
        v = self._slot("v", name, w)
        tmp = self._tmp(name, w)
        m *= self.beta1
        np.multiply(g, 1.0 - self.beta1, out=tmp)
        m += tmp
        v *= self.beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.beta2
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += self._eps_hat
        np.divide(m, tmp, out=tmp)
        tmp *= self._step_size
        w -= tmp


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": SGD,
    "nesterov": SGD,
    "rmsprop": RMSprop,
    "adam": Adam,
}


def make_optimizer(name: str, lr: float, **options: float) -> Optimizer:
    """Build an optimiser by name: sgd, momentum (0.9 unless given), nesterov, rmsprop or adam."""
    key = name.lower()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    if key in ("momentum", "nesterov"):
        options.setdefault("momentum", 0.9)
        options["nesterov"] = key == "nesterov"
    return OPTIMIZERS[key](lr=lr, **options)

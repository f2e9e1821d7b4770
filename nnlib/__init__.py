"""nnlib: a small, gradient-checked neural-network engine in NumPy.

Layers are CS231n-style functions (``forward -> (out, cache)``,
``backward(dout, cache) -> grads``); networks are built from a spec; optimisers
keep their state by parameter name; the Trainer adds early stopping,
schedules and a per-epoch callback.  Only NumPy is imported.
"""

from .network import CheckpointError, CNNSpec, MLPSpec, Network, read_checkpoint_extra, spec_from_dict
from .optim import SGD, Adam, Optimizer, RMSprop, make_optimizer
from .train import DivergenceError, History, Trainer, make_schedule

__all__ = [
    "SGD",
    "Adam",
    "CheckpointError",
    "CNNSpec",
    "DivergenceError",
    "History",
    "MLPSpec",
    "Network",
    "Optimizer",
    "RMSprop",
    "Trainer",
    "make_optimizer",
    "make_schedule",
    "read_checkpoint_extra",
    "spec_from_dict",
]
__version__ = "0.1.0"

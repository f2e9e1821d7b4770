"""An nnlib checkpoint as an MLflow pyfunc model, logged as code (MLflow's models-from-code): nothing is
pickled.  ``predict`` takes images as 784 pixels a row (or 28 x 28 each): float pixels in [0, 1], or uint8
pixels in [0, 255] (scaled here); a NumPy array, a pandas DataFrame, a list or ``{"pixels": ...}``.  It
returns the ten class probabilities of each image, float32 ``(n, 10)``."""

from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model

from nnlib import Network

PIXELS = 784


def as_pixels(model_input: Any) -> np.ndarray:
    """Any of the accepted inputs as float32 pixels in [0, 1], shape (n, 784); anything else is refused with
    what was given and what is accepted."""
    if isinstance(model_input, dict):  # a named tensor, as MLflow passes a signature's input
        model_input = model_input["pixels"]
    if hasattr(model_input, "to_numpy"):  # a pandas DataFrame or Series
        model_input = model_input.to_numpy()
    array = np.asarray(model_input)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    if array.dtype.kind not in "fiu" or array.size % PIXELS or array.ndim < 1:
        raise ValueError(
            f"expected images of {PIXELS} pixels each (rows of 784, or 28 x 28 arrays), float in [0, 1] or uint8 "
            f"in [0, 255]; got an array of shape {array.shape} and dtype {array.dtype}"
        )
    return np.ascontiguousarray(array, dtype=np.float32).reshape(-1, PIXELS)


class NnlibDigitModel(mlflow.pyfunc.PythonModel):
    """Loads the ``checkpoint`` artifact (an nnlib ``.npz``) and predicts class probabilities."""

    def load_context(self, context) -> None:
        self.net = Network.load(context.artifacts["checkpoint"])

    # the type hint tells MLflow the input is an array it passes on as it is (no warning, no schema cast)
    def predict(self, context, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        return self.net.predict_proba(as_pixels(model_input))


set_model(NnlibDigitModel())

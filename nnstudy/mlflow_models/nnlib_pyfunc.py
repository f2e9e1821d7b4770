"""An nnlib checkpoint as an MLflow pyfunc model, logged as code (MLflow's models-from-code): nothing is
pickled.  ``predict`` takes float32 pixels in [0, 1], shape (n, 784), and returns the ten class
probabilities of each row."""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model

from nnlib import Network


class NnlibDigitModel(mlflow.pyfunc.PythonModel):
    """Loads the ``checkpoint`` artifact (an nnlib ``.npz``) and predicts digit probabilities."""

    def load_context(self, context) -> None:
        self.net = Network.load(context.artifacts["checkpoint"])

    def predict(self, context, model_input, params=None) -> np.ndarray:
        if isinstance(model_input, dict):  # a named tensor, as MLflow passes a signature's input
            model_input = model_input["pixels"]
        pixels = np.asarray(model_input, dtype=np.float32).reshape(-1, 784)
        return self.net.predict_proba(pixels)


set_model(NnlibDigitModel())

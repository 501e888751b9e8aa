"""MLflow's python_function entry point for a registered export: the bundle's TorchScript program, numpy in and out.

study.tracking copies this file into the registered model (as code/bubbles_pyfunc.py), so that
`mlflow.pyfunc.load_model("models:/NAME/VERSION")` works where only torch is installed; it imports no MLflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class BundlePredictor:
    """predict(frames): (B, input_len, C_in, H, W) float32 in [0, 1] -> (B, output_len, C_out, H, W)."""

    def __init__(self, program_path: str) -> None:
        self.program = torch.jit.load(program_path, map_location="cpu")

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            return self.program(x).numpy()


def _load_pyfunc(data_path: str) -> BundlePredictor:
    """What MLflow calls with the path of the model's `data` (model.ts)."""
    return BundlePredictor(data_path)

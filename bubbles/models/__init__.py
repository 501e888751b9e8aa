"""Video-prediction models and their registry."""

from bubbles.models.registry import MODELS, build_model, check_state_shapes, parameter_count, predict_with_motion

__all__ = ["MODELS", "build_model", "check_state_shapes", "parameter_count", "predict_with_motion"]

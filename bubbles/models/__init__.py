"""Video-prediction models and their registry."""

from bubbles.models.registry import MODELS, build_model, check_state_shapes, parameter_count

__all__ = ["MODELS", "build_model", "check_state_shapes", "parameter_count"]

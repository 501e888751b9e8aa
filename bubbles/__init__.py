"""bubbles: the domain of bubble-flow video prediction (frame stores, data, models, training, metrics)."""

__version__ = "0.1.0"

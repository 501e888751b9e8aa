"""Training: the plain train() loop, its config, losses and checkpoints."""

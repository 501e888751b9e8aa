"""study: the machinery around the domain — config files, Ray Tune + Optuna sweeps, MLflow tracking, export."""

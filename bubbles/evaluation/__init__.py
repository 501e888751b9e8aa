"""Evaluation: metrics, baselines, per-lead evaluation, VMAF and figures."""

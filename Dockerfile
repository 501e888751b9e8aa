# The image deploy/rayjob.yaml runs on every pod (head, workers, the submitter): the project's pinned stack, Ray's
# dashboard (ray[default]) and the project itself, on Python 3.11.
#
#   docker build -t registry.example/bubbles-study:0.1.0 .     # the tag is the project's version (pyproject.toml)
#   docker push registry.example/bubbles-study:0.1.0           # then edit `image:` in deploy/rayjob.yaml if renamed
#
# GPU nodes: PyPI's torch==2.13.0 wheel for Linux x86-64 is the CUDA build (docs/gpu-and-cluster.md); the node's
# NVIDIA driver comes from the Kubernetes device plugin, not from the image.
# tests/test_dockerfile.py runs the RUN steps below (pip steps in a fresh venv) without Docker.
FROM python:3.11-slim-bookworm

# KubeRay's liveness/readiness probes run `wget ... | grep success` in the Ray container; its commands run /bin/bash.
RUN apt-get update && apt-get install -y --no-install-recommends wget && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
WORKDIR /app

# Dependencies first (a layer that survives edits to the code).
COPY requirements.txt pyproject.toml ./
COPY deploy/requirements-cluster.txt deploy/
RUN python -m venv /opt/venv && pip install --no-cache-dir -r deploy/requirements-cluster.txt

# The project: cli.py, bubbles/, study/, search_spaces/ under /app (the RayJob's workingDir), installed without
# touching the pinned dependencies above.
COPY . .
RUN pip install --no-cache-dir --no-deps . && pip check && bubbles-study --help > /dev/null

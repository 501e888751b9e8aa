# Set-up, main job and tests. Works from a bare Python 3.11: creates its own virtual environment in .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STORE := data/synthetic.zarr

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The main job on the embedded defaults: the smoke sweep (local Ray, sqlite MLflow under runs/) on the
# synthetic store data/synthetic.zarr, which the sweep makes if it is missing.
run: setup
	RAY_AUTH_MODE=disabled $(BIN)/python cli.py sweep search_spaces/smoke.yaml

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/step.py
	$(BIN)/python bench/data.py
	$(BIN)/python bench/baselines.py
	RAY_AUTH_MODE=disabled $(BIN)/python bench/sweep.py

clean:
	rm -rf runs mlruns data/synthetic.zarr

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

# The main job on the embedded defaults: the synthetic store (made once), then a look at it.
run: setup
	test -d $(STORE) || $(BIN)/python cli.py synth $(STORE)
	$(BIN)/python cli.py inspect $(STORE)

test: setup
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/data.py

clean:
	rm -rf runs mlruns data/synthetic.zarr

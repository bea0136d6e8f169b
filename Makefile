# hf-cmah: every target creates or updates the environment it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build that lies on this machine's disk; override for a CUDA machine (TORCH_SPEC="torch>=2.4").
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: env blender-env test quickstart lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

env: $(STAMP)

# Blender as a Python module for the renderer (bpy 5.0.1 needs exactly Python 3.11); a separate venv.
BLENDER_PYTHON ?= python3.11
BLENDER_STAMP := .venv-blender/.installed

$(BLENDER_STAMP):
	test -x .venv-blender/bin/python || $(BLENDER_PYTHON) -m venv .venv-blender
	.venv-blender/bin/python -m pip install -q "bpy==5.0.1"
	touch $(BLENDER_STAMP)

blender-env: $(BLENDER_STAMP)

test: env blender-env
	$(PY) -m pytest $(PYTEST_ARGS)

quickstart: env blender-env
	$(PY) -m hf_cmah.quickstart

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

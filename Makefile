# hf-cmah: every target creates or updates the environment it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build that lies on this machine's disk; override for a CUDA machine (TORCH_SPEC="torch>=2.4").
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: env blender-env blender-addon test quickstart lint format clean

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

# The Blender extension: built and validated (manifest, permissions, Blender's tag list) by Blender's own
# extension tool, which the bpy wheel ships; standard library, no Blender binary needed.
BLENDER_SCRIPTS := .venv-blender/lib/python3.11/site-packages/bpy/5.0/scripts
BLENDER_EXT := $(BLENDER_SCRIPTS)/addons_core/bl_pkg/cli/blender_ext.py
BLENDER_TAGS := $(BLENDER_SCRIPTS)/modules/_bpy_internal/extensions/tags.py
ADDON_SRC ?= blender_addon
ADDON_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(ADDON_SRC)/blender_manifest.toml)
DIST ?= dist
ADDON_ZIP := $(DIST)/hf_cmah_shape_search-$(ADDON_VERSION).zip

blender-addon: blender-env
	mkdir -p $(DIST)
	.venv-blender/bin/python $(BLENDER_EXT) build --source-dir $(ADDON_SRC) --output-filepath $(ADDON_ZIP) --valid-tags $(BLENDER_TAGS)
	.venv-blender/bin/python $(BLENDER_EXT) validate --valid-tags $(BLENDER_TAGS) $(ADDON_ZIP)

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

# hf-cmah: every target creates or updates the environment it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build that lies on this machine's disk; override for a CUDA machine (TORCH_SPEC="torch>=2.4").
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: env blender-env blender-addon browser test quickstart demo space lint format clean

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

# Debian's chromium drives the web page's browser test (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

browser: $(CHROMIUM)

# Two pytest workers, one test file each at a time: many tests wait on process start-up and imports
# (single-threaded), so both cores stay busy. TEST_WORKERS=0 runs every test in this one process.
TEST_WORKERS ?= 2
# OpenMP threads (torch, faiss) per worker: the cores shared out, at least 1, so two workers never run
# four spinning threads on two cores. One thread each ran the suite in 494 s against 580 s (a Zen 4, one
# run each); a CI run with the default had two workers stall 900 s each inside torch's batch_norm.
TEST_THREADS ?= $(shell n=$$(nproc); w=$(TEST_WORKERS); [ "$$w" -gt 0 ] 2>/dev/null || w=1; t=$$((n / w)); echo $$((t > 0 ? t : 1)))

test: env blender-env browser
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The web demo on the quickstart's model and index (made by `make quickstart` when missing).
QUICKSTART_OUT ?= outputs/quickstart
DEMO_PORT ?= 7860

demo: env blender-env
	test -f $(QUICKSTART_OUT)/index/manifest.json || $(PY) -m hf_cmah.quickstart --out $(QUICKSTART_OUT) $(QUICKSTART_ARGS)
	@echo "hf-cmah web demo: http://127.0.0.1:$(DEMO_PORT)/  (JSON API: /api/v1, docs: /api/docs; Ctrl-C stops it)"
	$(VENV)/bin/hf-cmah serve --model $(QUICKSTART_OUT)/train/final --index $(QUICKSTART_OUT)/index \
		--name quickstart --example $(QUICKSTART_OUT)/query.png --example $(QUICKSTART_OUT)/query-relit.png \
		--port $(DEMO_PORT)

# A deployable Hugging Face Space: spaces_demo/ plus the package; SPACE_MODEL / SPACE_INDEX go into its header.
SPACE_DIR ?= dist/space
SPACE_MODEL ?=
SPACE_INDEX ?=

space:
	rm -rf $(SPACE_DIR) && mkdir -p $(SPACE_DIR)
	cp -r spaces_demo/. hf_cmah training pyproject.toml $(SPACE_DIR)/
	find $(SPACE_DIR) -name __pycache__ -prune -exec rm -rf {} +
	test -z "$(SPACE_MODEL)" || sed -i 's|^models: \[\].*|models: [$(SPACE_MODEL)]|' $(SPACE_DIR)/README.md
	test -z "$(SPACE_INDEX)" || sed -i 's|^datasets: \[\]|datasets: [$(SPACE_INDEX)]|' $(SPACE_DIR)/README.md
	@echo "Space folder: $(SPACE_DIR) (upload it: hf upload USER/SPACE $(SPACE_DIR) . --repo-type space)"

# Meshes → training → evaluation → index → searches → $(QUICKSTART_OUT)/report.md; a rerun reuses finished steps.
# QUICKSTART_ARGS passes options on (python -m hf_cmah.quickstart --help), e.g. "--per-category 3 --steps 5".
QUICKSTART_ARGS ?=

quickstart: env blender-env
	$(PY) -m hf_cmah.quickstart --out $(QUICKSTART_OUT) $(QUICKSTART_ARGS)

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

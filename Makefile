# Quick start: `make demo` and `make test`. Both create .venv and install the core and
# every plugin under plugins/ (editable). A new plugin is a new folder under plugins/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# onnxruntime and onnxruntime-gpu share one folder: pick exactly one, by whether a GPU is there.
ORT_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
PLUGIN_ARGS := $(foreach p,$(PLUGINS),-e $(if $(findstring plugins/onnx/,$(p)),$(p:/=)[$(ORT_EXTRA)],$(p:/=)))

.PHONY: install demo test browser fashion clean

$(BIN)/atlas: pyproject.toml $(wildcard plugins/*/pyproject.toml) constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e .[test] $(PLUGIN_ARGS)
	# compile UMAP's numba code into the persistent cache once, so that every atlas build starts warm
	$(BIN)/python -m atlas_umap.compile
	touch $(BIN)/atlas

install: $(BIN)/atlas

# Debian's chromium for the browser tests (root on these machines; skipped if present).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Fashion-MNIST from Debian for the layer-health example and tests (root on these machines; skipped if present).
fashion:
	@test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }

demo: install
	$(BIN)/atlas demo

test: install browser fashion
	$(BIN)/python -m pytest -q tests plugins; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && rc=0; exit $$rc

clean:
	rm -rf $(VENV) demo-atlas atlas-out

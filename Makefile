# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then stylize the sample pair with the defaults
#   make test   set up, then run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= $(abspath ../shared)
# The pinned PyTorch; a machine whose pip index serves the CUDA wheel can ask for the CPU one:
#   make test TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.13.0
export STYLIZE_WEIGHTS_PATH ?= $(SHARED)/weights:$(SHARED)/images

.PHONY: setup demo test bench clean

$(BIN)/stylize: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/stylize

demo: setup
	$(BIN)/stylize demo -o out/demo.jpg

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python -m stylize.bench --res 1k,2k,4k --out out/bench

clean:
	rm -rf $(VENV) out

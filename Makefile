# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch: an unpinned torch pulls gigabytes of CUDA wheels. On a GPU machine use
# e.g. `make setup TORCH=torch` to let pip pick the CUDA build.
TORCH ?= torch==2.13.0
DEMO_DIR ?= demo
BIN := $(VENV)/bin

.PHONY: setup setup-llama demo test test-all bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[train,dev]" "$(TORCH)"
	touch $@

# Optional: llama.cpp's runtime, for GGUF parity runs by llama.cpp and K-quants (Q4_K_M, ...).
# It compiles llama.cpp from source: many minutes on a small machine, so CI does not do it.
setup-llama: setup
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -e ".[llama]" "$(TORCH)"

# The demo project through all five gates on the tiny local model (CPU, a few minutes).
demo: setup
	rm -rf $(DEMO_DIR)
	$(BIN)/factory demo $(DEMO_DIR)
	$(BIN)/factory -C $(DEMO_DIR) run --all
	$(BIN)/factory -C $(DEMO_DIR) status

# The default suite: unit tests plus end-to-end runs of the real CLI on the tiny model.
test: setup
	$(BIN)/python -m pytest -q

# Everything, including tests marked slow (GPU tests still need a CUDA machine).
test-all: setup
	$(BIN)/python -m pytest -q -m "not gpu"

# Each benchmark prints its figures and the ratio against the alternative it is compared with.
# (bench/plain_sft.py is the alternative training_overhead.py runs, not a benchmark itself.)
BENCHMARKS := training_overhead cli_latency format_throughput gpu_backends
bench: setup
	for b in $(BENCHMARKS); do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

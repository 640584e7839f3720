# The two commands of the README: `make demo` and `make test`. Both build .venv from scratch if needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A CPU build of torch unless a GPU is present: a bare `torch` requirement would pull several GB of CUDA wheels.
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo torch; else echo torch==2.13.0; fi)
# The package index torch comes from, e.g. https://download.pytorch.org/whl/cpu (a CPU build on any Linux) or
# .../whl/cu126; empty: pip's configured index, which on Linux serves the CUDA build (several GB).
TORCH_INDEX ?=

.PHONY: install browser icecast demo test lint kernel

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python tools/demo.py

# Headless Chromium for the gallery's browser test; without root or apt the test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the gallery's browser test will be skipped"

# Icecast for the radio's relay test; without root or apt the test is skipped.
icecast:
	@command -v icecast2 >/dev/null 2>&1 || command -v icecast >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq icecast2 >/dev/null; } || \
	  echo "icecast2 could not be installed: the radio's Icecast test will be skipped"

test: install browser icecast
	$(BIN)/ruff check src tests tools train.py render.py
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests tools train.py render.py

# The sampling library with portable flags (no -march=native) and warnings on, for developers working on
# src/soundalike/sampling/csrc; add flags with CXXFLAGS=... Sampling builds its own copy, tuned to the CPU, at
# first use (src/soundalike/sampling/compiler.py), so nothing needs this target.
KERNEL_SRC := src/soundalike/sampling/csrc
kernel: build/libsoundalike_sampling.so

build/libsoundalike_sampling.so: $(wildcard $(KERNEL_SRC)/*.h $(KERNEL_SRC)/*.cpp)
	@mkdir -p build
	$(CXX) -O3 -fPIC -std=c++17 -fno-math-errno -pthread -Wno-psabi -Wall -Wextra -shared $(CXXFLAGS) \
	  $(filter %.cpp,$^) -o $@

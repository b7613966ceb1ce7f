# The two set-up commands: `make run` and `make test`. Both create the
# virtualenv and install on first use (llama-cpp-python compiles from source:
# a few minutes, once; torch is a large wheel); later runs reuse it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test install clean

run: $(INSTALLED)
	$(BIN)/falconchat

test: $(INSTALLED)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(INSTALLED)

# torch first, pinned to the CPU build on this machine's disk: the test extra's `torch>=2.1` is then
# satisfied, where an unpinned install would download the multi-GB CUDA build.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

clean:
	rm -rf $(VENV) build dist src/*.egg-info

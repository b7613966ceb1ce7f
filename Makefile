# The two set-up commands: `make run` and `make test`. Both create the virtualenv and
# install on first use (llama-cpp-python compiles from source: a few minutes, once); later
# runs reuse it. `make run` installs only what the chat needs; `make test` adds the test
# and lint tools (and the CPU build of torch, for the transformers backend's tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.installed-runtime
TESTING := $(VENV)/.installed-test

.PHONY: run test test-fast lint format install clean survey-formats

run: $(RUNTIME)
	$(BIN)/falconchat

# Everything, including the tests that start processes, terminals and servers. CI runs this.
test: $(TESTING)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The inner loop: in-process tests only (well under a minute).
test-fast: $(TESTING)
	$(BIN)/python -m pytest -m "not process and not slow" -q $(PYTEST_ARGS)

# Issue 15, item 10: the bundled model's replies in the Falcon-style prompt and in its own
# chat template, counted on 22 fixed prompts (docs/reliability.md records the figures).
survey-formats: $(TESTING)
	PYTHONPATH=src $(BIN)/python tests/surveys/format_survey.py

lint: $(TESTING)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(TESTING)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

install: $(RUNTIME)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

# torch first, pinned to the CPU build: the test extra's `torch>=2.1` is then satisfied,
# where an unpinned install would download the multi-GB CUDA build.
$(TESTING): $(RUNTIME)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(TESTING)

clean:
	rm -rf $(VENV) build dist src/*.egg-info

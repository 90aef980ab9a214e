# Two entry points, both from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch by default (see README "Choosing a torch build" for CUDA).
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m unetseg demo

lint: venv
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest -q

bench: venv
	$(PY) bench/bench_inference.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

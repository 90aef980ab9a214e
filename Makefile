# Two entry points, both from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch by default (see README "Choosing a torch build" for CUDA).
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint format bench clean web serve-web test-web web-screenshots

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
	$(MAKE) test-web

# The web face (`python -m unetseg.web`) has its own environment: trame-slicer 2.0 pins
# slicer-core 5.11, the main one takes the newest. Its browser tests need Debian's chromium and
# libosmesa6 (`apt-get install chromium libosmesa6`; `.ci/run` installs them).
WEB_VENV ?= .venv-web
WEB_PY := $(WEB_VENV)/bin/python

$(WEB_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(WEB_VENV)
	$(WEB_PY) -m pip install -q --upgrade pip
	$(WEB_PY) -m pip install -q "$(TORCH_SPEC)"
	$(WEB_PY) -m pip install -q -e ".[web]"
	$(WEB_PY) -c "from importlib.metadata import version as v; s = v('slicer-core'); \
	assert s.startswith('5.11'), f'slicer-core {s}: trame-slicer needs 5.11'; \
	print('web face: slicer-core', s, 'trame-slicer', v('trame-slicer'))"
	touch $@

web: $(WEB_VENV)/.installed

serve-web: web
	$(WEB_PY) -m unetseg.web $(WEB_ARGS)

test-web: web
	UNETSEG_WEB_REQUIRE_BROWSER=1 $(WEB_PY) -m pytest -q Testing/web

web-screenshots: web
	UNETSEG_WEB_SCREENSHOTS=docs/images UNETSEG_WEB_REQUIRE_BROWSER=1 \
	$(WEB_PY) -m pytest -q Testing/web/test_web_browser.py

bench: venv
	$(PY) bench/bench_inference.py

clean:
	rm -rf $(VENV) $(WEB_VENV) .pytest_cache .ruff_cache

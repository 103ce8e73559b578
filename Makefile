# Two commands matter: `make serve` and `make test`. Both bootstrap .venv from scratch when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test browser bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,speed]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/python -m tickq serve

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The browser tests drive Debian's Chromium through Playwright (never Playwright's own browser
# downloads). Present: nothing to do. Missing: apt-get installs it (as root, or through sudo),
# running `apt-get update` only when the install fails without it. Where that is impossible the
# recipe says so and goes on: the browser tests then skip, or fail when CI=true.
CHROMIUM := /usr/bin/chromium
APT_INSTALL := env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

browser:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
		echo "make browser: $(CHROMIUM) is missing and there is no apt-get to install Debian's chromium; browser tests will skip (or fail with CI=true)" >&2; exit 0; \
	fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "make browser: $(CHROMIUM) is missing and installing Debian's chromium needs root (no sudo here); browser tests will skip (or fail with CI=true)" >&2; exit 0; \
	fi; \
	echo "make browser: installing Debian's chromium"; \
	$$sudo $(APT_INSTALL) || { $$sudo apt-get update && $$sudo $(APT_INSTALL); } \
		|| echo "make browser: installing chromium failed; browser tests will skip (or fail with CI=true)" >&2

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_throughput.py

lint: $(STAMP)
	$(BIN)/ruff check tickq tests benchmarks examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache tickq-data

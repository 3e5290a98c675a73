# Two commands matter: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := $(wildcard requirements/*.txt)

.PHONY: setup run test test-unit bench bench-quick browser clean-data lint-compose

setup: $(STAMP)

# Re-install only when a requirements or constraints file changes.
$(STAMP): $(REQS) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt
	@touch $(STAMP)

run: setup
	$(PY) -m localstack

# The browser test needs Debian's chromium; install it when we may (root, apt).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: run 'sudo apt-get install chromium' (the web page test needs it)"; exit 1; fi; }

test: setup browser
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration"

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-quick: setup
	@for b in bench/*.py; do echo "== $$b --quick"; $(PY) $$b --quick || exit 1; done

clean-data:
	rm -rf data/milvus

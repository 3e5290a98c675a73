# Two commands matter: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := $(filter-out requirements/ray.txt,$(wildcard requirements/*.txt))

.PHONY: setup setup-ray run test test-unit bench bench-quick tools clean-data weights

setup: $(STAMP)

# Re-install only when a requirements or constraints file changes.
$(STAMP): $(REQS) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/dev.txt -c requirements/constraints.txt
	@touch $(STAMP)

# Ray Data for `loader extract|index --engine ray` (and its tests, so `make test` runs it); `make run` and the
# services never need it.
setup-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(STAMP) requirements/ray.txt requirements/constraints.txt
	$(PY) -m pip install -q -r requirements/ray.txt -c requirements/constraints.txt
	@touch $@

run: setup
	$(PY) -m devstack

# The one step that downloads: ImageNet weights (VGG16, ResNet50, DenseNet121) into the Keras cache, checked
# against Keras's hashes. Run it on a machine with internet; copy ~/.keras/models to offline machines.
weights: setup
	$(PY) -m extractor_service fetch-weights

# Test tools from Debian: chromium (the web page test, via Playwright) and docker-compose (the compose
# file check). Installed when missing and we may (root + apt); otherwise we say what to install.
DEBS := chromium docker-compose
tools:
	@missing=""; for d in $(DEBS); do command -v $$d >/dev/null 2>&1 || missing="$$missing $$d"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt)"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing:$$missing - run 'sudo apt-get install$$missing' (the tests need them)"; exit 1; fi; fi

# REQUIRE_TOOLS=1: a missing chromium or docker-compose fails the run instead of skipping its tests.
test: setup setup-ray tools
	REQUIRE_TOOLS=1 $(PY) -m pytest

test-unit: setup
	$(PY) -m pytest -m "not integration"

bench: setup
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

bench-quick: setup
	@for b in bench/[!_]*.py; do echo "== $$b --quick"; $(PY) $$b --quick || exit 1; done

clean-data:
	rm -rf data/milvus

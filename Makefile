# Every target installs what it needs first, so each works on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE   := node_modules/.installed
SYSTEM := .venv-system-deps
# py-wacz, which checks the web archives captures make, in a venv of its own: its dependencies
# (frictionless, `multipart`) clash with the service's own.
WACZ   := .venv-wacz
WACZ_STAMP := $(WACZ)/.installed

.PHONY: run test soak check bench bench-deps docs-images deps system-deps clean

run: deps
	$(VENV)/bin/snapshotd serve

test: deps
	bash scripts/test.sh

# 1,000 captures through 2 API and 2 worker processes while workers are SIGKILLed at random.
soak: deps
	SNAPSHOTD_SOAK=1 bash scripts/test.sh tests/scale/test_soak.py

check: deps
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	PYTHONPATH=src $(VENV)/bin/lint-imports

bench: deps bench-deps
	$(PY) -m bench

# The corpus rows capture pages of python3-doc.
bench-deps:
	@bash scripts/bench-deps.sh

docs-images: deps
	$(PY) scripts/chart_examples.py docs/images
	$(PY) scripts/console_images.py docs/images

deps: system-deps $(STAMP) $(NODE) $(WACZ_STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[postgres,s3,dev]'
	touch $@

$(WACZ_STAMP): Makefile
	test -x $(WACZ)/bin/python || python3 -m venv $(WACZ)
	$(WACZ)/bin/python -m pip install -q --upgrade pip
	$(WACZ)/bin/python -m pip install -q 'wacz==0.6.0' 'cdxj-indexer==1.5.0'
	touch $@

# autoconsent (the consent rules captures use), the ReplayWeb.page viewer the console and share
# links serve, and the consent managers its tests serve.
# Install scripts stay off: nothing here needs building.
$(NODE): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $@

system-deps:
	@bash scripts/system-deps.sh

clean:
	rm -rf $(VENV) $(WACZ) data node_modules

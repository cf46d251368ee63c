# `make demo` and `make test` each create or reuse the virtualenv, install the project and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= var/demo-region
DEMO_FIRMS ?= 20000
DEMO_SEED ?= 7

.PHONY: install demo test lint bench clean browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP) browser

# Headless Chromium and a CJK font for the console's browser test (tests/test_ui.py), from Debian's packages; a no-op once
# installed. Without root or sudo it only says so: the page test then skips (and fails when CI=true).
BROWSER_PACKAGES := chromium chromium-driver fonts-wqy-zenhei
browser:
	@if [ -x /usr/bin/chromium ] && [ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "browser: no apt-get; install $(BROWSER_PACKAGES) yourself"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; \
	  else echo "browser: not root and no sudo; install $(BROWSER_PACKAGES) yourself"; exit 0; fi; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "browser: installing $(BROWSER_PACKAGES) with apt-get"; \
	  ($$SUDO apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) >/dev/null 2>&1 \
	   || ($$SUDO apt-get update -q >/dev/null \
	       && $$SUDO apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) >/dev/null)) \
	  || echo "browser: apt-get failed; the page test will skip (and fail when CI=true)"; \
	fi

demo: $(STAMP)
	test -f $(DEMO_DIR)/manifest.json || $(BIN)/indexloan demo-data --firms $(DEMO_FIRMS) --seed $(DEMO_SEED) --out $(DEMO_DIR)
	$(BIN)/indexloan ingest $(DEMO_DIR)
	$(BIN)/indexloan store stats
	$(BIN)/indexloan demo-setup
	@echo "serving on http://127.0.0.1:8000 (console at /ui, API docs at /docs); Ctrl-C stops"
	$(BIN)/indexloan serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf var .pytest_cache

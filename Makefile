# `make demo` and `make test` each create or reuse the virtualenv, install the project and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= var/demo-region
DEMO_FIRMS ?= 20000
DEMO_SEED ?= 7

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	test -f $(DEMO_DIR)/manifest.json || $(BIN)/indexloan demo-data --firms $(DEMO_FIRMS) --seed $(DEMO_SEED) --out $(DEMO_DIR)
	$(BIN)/indexloan ingest $(DEMO_DIR)
	$(BIN)/indexloan store stats
	$(BIN)/indexloan demo-setup
	@echo "serving on http://127.0.0.1:8000 (loan officer page at /, API docs at /docs); Ctrl-C stops"
	$(BIN)/indexloan serve --host 127.0.0.1 --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf var .pytest_cache

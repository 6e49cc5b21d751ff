# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dnabot demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/sync_bench.py

.PHONY: bench-ack bench-webhook
bench-ack: $(STAMP)  # ARGS="--postgres --rate 20 --duration 30" to change the run
	$(BIN)/python bench/ack_bench.py $(ARGS)

bench-webhook: $(STAMP)  # ARGS="--postgres --rounds 10"
	$(BIN)/python bench/webhook_bench.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache dnabot.db

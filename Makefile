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

test: $(STAMP) slack-types mcp lint  # Python deps, Slack's TypeScript types, the real MCP servers (npm, pinned)
	$(BIN)/python -m pytest -q

lint: $(STAMP)  # style, the import contracts (one-way flow, layers, no circles) and the type checker
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/sync_bench.py

.PHONY: bench-ack bench-webhook bench-answers
bench-answers: $(STAMP)  # ARGS="--calls 50 --skip-100k" (or --store PATH: a 10k store built before)
	$(BIN)/python bench/answer_bench.py $(ARGS)

bench-ack: $(STAMP)  # ARGS="--postgres --rate 20 --duration 30" to change the run
	$(BIN)/python bench/ack_bench.py $(ARGS)

bench-webhook: $(STAMP)  # ARGS="--postgres --rounds 10"
	$(BIN)/python bench/webhook_bench.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .import_linter_cache dnabot.db dnabot.db-* dnabot.db.*.lock demo-out tests/slack_types/node_modules agents/mcp_servers/node_modules

# Slack's own TypeScript types for tests/bot/test_slack_types.py, pinned in tests/slack_types/package-lock.json
# (needs Node >= 20 and npm); reinstalled only when the lock changes (`make -B slack-types` forces it).
.PHONY: slack-types
SLACK_TYPES := tests/slack_types
slack-types: $(SLACK_TYPES)/node_modules/.package-lock.json

$(SLACK_TYPES)/node_modules/.package-lock.json: $(SLACK_TYPES)/package.json $(SLACK_TYPES)/package-lock.json
	npm ci --prefix $(SLACK_TYPES) --ignore-scripts --no-audit --no-fund
	touch $@

# The MCP servers the bot launches with `node` (tavily-mcp, @brightdata/mcp), pinned by agents/mcp_servers'
# package-lock.json. Needs Node 20+ and npm; reinstalls only when the lockfile changes.
MCP_DIR := agents/mcp_servers
MCP_STAMP := $(MCP_DIR)/node_modules/.package-lock.json

.PHONY: mcp
mcp: $(MCP_STAMP)

$(MCP_STAMP): $(MCP_DIR)/package.json $(MCP_DIR)/package-lock.json
	npm ci --prefix $(MCP_DIR) --ignore-scripts --no-audit --no-fund
	touch $(MCP_STAMP)

# graphql-chat: `make run` serves the embedded default, `make test` runs every check.
# Both bootstrap their own virtual environments on a fresh machine with Python 3.11.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CODEGEN_VENV := .venv-codegen
PORT ?= 3000
export PORT

.PHONY: run run-distributed test services bench bench-distributed bench-live bench-live-floor lint typecheck schema schema-check client client-check browser-deps audit-deps bench bench-search clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# ariadne-codegen pins an older graphql-core than Strawberry needs: it gets its own venv.
$(CODEGEN_VENV)/bin/ariadne-codegen:
	$(PYTHON) -m venv $(CODEGEN_VENV)
	$(CODEGEN_VENV)/bin/pip install --quiet --upgrade pip
	$(CODEGEN_VENV)/bin/pip install --quiet 'ariadne-codegen==0.19.0'

run: $(BIN)/.installed
	$(BIN)/graphql-chat serve

# MariaDB, Redis, RabbitMQ and Elasticsearch on loopback (installed when missing; needs root or
# password-less sudo), and the virtual environment. Prints the variables to export; `make test`
# reads them from the same file.
SERVICES_DIR ?= /var/tmp/graphql-chat-services
export SERVICES_DIR
services: $(BIN)/.installed
	scripts/services.sh

# The distributed stack in the foreground from a fresh clone: the engines, the migrations,
# API_PROCESSES API processes and WORKERS workers with their logs; Ctrl-C stops everything.
API_PROCESSES ?= 2
WORKERS ?= 2
run-distributed: services
	API_PROCESSES=$(API_PROCESSES) WORKERS=$(WORKERS) scripts/run-distributed.sh

# ruff, and the layers of docs/architecture.md (import-linter's contracts in pyproject.toml).
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy graphql_chat workers tests bench

# schema.graphql is exported from the code; schema-check fails when the checked-in file drifts.
schema: $(BIN)/.installed
	$(BIN)/graphql-chat export-schema --output schema.graphql

schema-check: $(BIN)/.installed
	$(BIN)/graphql-chat export-schema --output $(VENV)/schema.graphql
	diff -u schema.graphql $(VENV)/schema.graphql

# The typed client in tests/client is generated from schema.graphql; client-check regenerates
# it into a scratch copy and fails when the checked-in code differs.
client: $(CODEGEN_VENV)/bin/ariadne-codegen
	$(CODEGEN_VENV)/bin/ariadne-codegen

client-check: $(CODEGEN_VENV)/bin/ariadne-codegen
	rm -rf $(VENV)/client-check && mkdir -p $(VENV)/client-check/tests/client
	cp pyproject.toml schema.graphql $(VENV)/client-check/
	cp tests/client/operations.graphql $(VENV)/client-check/tests/client/
	cd $(VENV)/client-check && ../../$(CODEGEN_VENV)/bin/ariadne-codegen >/dev/null
	diff -ru tests/client/graphql_chat_client $(VENV)/client-check/tests/client/graphql_chat_client -x __pycache__

browser-deps:
	@command -v chromium >/dev/null || scripts/install-debian-packages.sh chromium

# Node packages the tests drive the server with, pinned by their lock file: the GraphQL-over-HTTP
# server audit (graphql-http), the graphql-ws client, Apollo Client.
AUDIT_DIR := tests/audit
$(AUDIT_DIR)/node_modules/.installed: $(AUDIT_DIR)/package.json $(AUDIT_DIR)/package-lock.json
	cd $(AUDIT_DIR) && npm ci --silent --no-audit --no-fund
	touch $@

audit-deps: $(AUDIT_DIR)/node_modules/.installed

test: $(BIN)/.installed lint typecheck schema-check client-check browser-deps audit-deps services
	. $(SERVICES_DIR)/env && TEST_DATABASE_URL=$$DATABASE_URL TEST_REDIS_URL=$$REDIS_URL \
	  TEST_REDIS_CLUSTER_URL=$$REDIS_CLUSTER_URL TEST_RABBITMQ_URL=$$RABBITMQ_URL \
	  TEST_ELASTICSEARCH_URL=$$ELASTICSEARCH_URL DATABASE_URL= REDIS_URL= RABBITMQ_URL= \
	  ELASTICSEARCH_URL= $(BIN)/pytest -q --durations=10

# wrk (closed loop) comes from Debian; vegeta (open loop) is a Go module, built into .venv/bin.
$(BIN)/vegeta: $(BIN)/.installed
	GOBIN=$(abspath $(BIN)) go install github.com/tsenart/vegeta/v12@v12.13.0

bench: $(BIN)/.installed $(BIN)/vegeta
	@command -v wrk >/dev/null || scripts/install-debian-packages.sh wrk
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python bench/load.py

# Search at two sizes, on both backends (Elasticsearch from `make services`).
bench-search: $(BIN)/.installed services
	$(BIN)/python -m bench.search --messages 100000 --big-chat 10000
	$(BIN)/python -m bench.search --messages 1000000 --big-chat 100000

bench-distributed: $(BIN)/.installed $(BIN)/vegeta services
	@command -v wrk >/dev/null || scripts/install-debian-packages.sh wrk
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m bench.distributed

# Subscriptions: held connections, memory per connection, fan-out latency (distributed mode).
$(BIN)/subscribers: bench/subscribers/main.go bench/subscribers/go.mod $(BIN)/.installed
	cd bench/subscribers && go build -o $(abspath $(BIN))/subscribers .

bench-live: $(BIN)/.installed $(BIN)/vegeta $(BIN)/subscribers services
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m bench.live

# The floor under bench-live: a bare ASGI process that only sends the frames (no engines).
bench-live-floor: $(BIN)/.installed $(BIN)/vegeta $(BIN)/subscribers
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m bench.live_floor

clean:
	rm -rf $(VENV) $(CODEGEN_VENV) build *.egg-info

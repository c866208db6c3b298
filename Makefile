# The two commands: `make run` serves with demo data, `make test` runs the suite.
# Both create .venv and install the project first when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where `make run` listens: `make run PORT=8000`, `make run HOST=0.0.0.0 PORT=8000` (on the command
# line; a HOST or PORT in the environment, which some shells set, is not used).
HOST = 127.0.0.1
PORT = 5000
PG_SERVER_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
PG_TEST_DB ?= myapi_test
PYTEST_ARGS ?=

.PHONY: install run test test-pg lint fuzz clean browser

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/myapi db upgrade
	$(BIN)/myapi db seed --demo
	$(BIN)/myapi serve --bind $(HOST):$(PORT)

test: install browser
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(BIN)/python tools/pgdb.py check "$(PG_SERVER_URL)" \
		&& echo "note: this was the SQLite run; 'make test-pg' runs the suite on PostgreSQL too" \
		|| echo "note: PostgreSQL run NOT done (no server at $(PG_SERVER_URL)); SQLite run only"

# The same suite on a fresh PostgreSQL database (fails when the server is unreachable).
test-pg: install browser
	$(BIN)/python tools/pgdb.py recreate "$(PG_SERVER_URL)" $(PG_TEST_DB)
	MYAPI_TEST_DATABASE_URL="$$($(BIN)/python tools/pgdb.py url "$(PG_SERVER_URL)" $(PG_TEST_DB))" \
		$(BIN)/pytest $(PYTEST_ARGS)

# Debian's Chromium for tests/test_docs_browser.py, which drives /usr/bin/chromium with
# Playwright (never Playwright's own browser download, which cannot work offline).
# apt-get runs only when chromium is missing; without it the test is skipped (failed on CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
			|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)) ; } \
		|| echo "chromium is not installed (apt-get install -y chromium); tests/test_docs_browser.py will be skipped (and fail on CI)"

lint: install
	$(BIN)/ruff check myapi tests tools migrations setup.py

# The fuzzing gate (tools/fuzz.py): schemathesis against a live `myapi serve` on a
# fresh demo database, from the served /api/v1/openapi.json, anonymous, as a
# customer and as an admin; any failure fails. FUZZ_MAX_EXAMPLES, FUZZ_SEED tune it.
fuzz: install
	$(BIN)/python tools/fuzz.py

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .tox build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Benchmarks (benchmarks/run.py; results in benchmarks/RESULTS.md / RESULTS-quick.md).
# wrk comes from the OS packages: bench-tools installs it with apt-get when it
# can (root, Debian/Ubuntu); otherwise a clearly labelled Python generator is used.
BENCH_ARGS ?=

.PHONY: bench bench-quick bench-tools

bench-tools: install
	$(BIN)/pip install --quiet -r benchmarks/requirements.txt
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk)) ; } \
		|| echo "wrk is not installed (apt-get install -y wrk); the Python load generator will be used"

bench: bench-tools
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-quick: bench-tools
	$(BIN)/python benchmarks/run.py --quick $(BENCH_ARGS)

# CSV import/export of 100k products through the real server, SQLite and PostgreSQL
# (benchmarks/catalog_io.py; results in benchmarks/out/catalog_io-<database>.md).
bench-catalog: install
	$(BIN)/python benchmarks/catalog_io.py $(CATALOG_BENCH_ARGS)

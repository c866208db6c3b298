# The two commands: `make run` serves with demo data, `make test` runs the suite.
# Both create .venv and install the project first when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_SERVER_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
PG_TEST_DB ?= myapi_test
PYTEST_ARGS ?=

.PHONY: install run test test-pg lint clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/myapi db upgrade
	$(BIN)/myapi db seed --demo
	$(BIN)/myapi serve --bind 127.0.0.1:5000

test: install
	$(BIN)/pytest $(PYTEST_ARGS)
	@$(BIN)/python tests/pgdb.py check "$(PG_SERVER_URL)" \
		&& echo "note: this was the SQLite run; 'make test-pg' runs the suite on PostgreSQL too" \
		|| echo "note: PostgreSQL run NOT done (no server at $(PG_SERVER_URL)); SQLite run only"

# The same suite on a fresh PostgreSQL database (fails when the server is unreachable).
test-pg: install
	$(BIN)/python tests/pgdb.py recreate "$(PG_SERVER_URL)" $(PG_TEST_DB)
	MYAPI_TEST_DATABASE_URL="$$($(BIN)/python tests/pgdb.py url "$(PG_SERVER_URL)" $(PG_TEST_DB))" \
		$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check myapi tests migrations setup.py

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .tox build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

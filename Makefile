# Two entry points for a fresh machine (see README):
#   make run   - create .venv, build a demo data folder from fixtures/, run the demo job
#   make test  - create .venv with the test extras, install Chromium (make browser) and PostgreSQL
#                (make postgres), run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= reunite-data

.PHONY: run test venv test-venv lint demo clean browser postgres screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e .

test-venv: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

run: venv
	$(BIN)/python -m api.demo --data $(DATA)

# The reviewer UI tests drive Debian's Chromium through Playwright (which must not download its own).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium)

# The catalog tests also run on PostgreSQL: the suite starts Debian's server itself (tests/pg_server.py),
# so only the binaries are needed; `make run` needs no server.
postgres:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql)

test: test-venv browser postgres
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile

lint: test-venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache

# The README's screenshots (docs/screenshots/): the browser tests write them to test-artifacts/,
# tests/screenshots.py copies them over (256 colours).
screenshots: test-venv browser
	$(BIN)/python -m pytest -q tests/test_web_workbench.py tests/test_web_candidate.py
	$(BIN)/python -m tests.screenshots

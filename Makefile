# Both entry points create .venv when it is missing, so a fresh machine needs only python3 >= 3.11,
# the PostgreSQL server binaries and redis-server (`make deps` installs those on Debian).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests start their own servers on free ports in their own directories: one test process per core.
TEST_PROCESSES ?= auto

.PHONY: demo test deps lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

deps:
	@./.ci/system-deps

demo: deps $(STAMP)
	$(BIN)/pgmove demo

test: deps $(STAMP)
	$(BIN)/ruff check pgmove state handlers steps worker bot cli sandbox tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -x --durations=10 -n $(TEST_PROCESSES)

lint: $(STAMP)
	$(BIN)/ruff check pgmove state handlers steps worker bot cli sandbox tests bench

clean:
	rm -rf $(VENV) .pytest_cache

# The README's two commands: `make run` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCK := requirements.lock

.PHONY: run test lint typecheck bench clean lock

# The tested versions from the lock file first, then mlops itself on top of them, editable
# and without resolving again: every machine gets the same dependencies.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps -e '.[dev]'
	touch $(STAMP)

# Re-resolve the lock file after changing the dependencies in pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 -o $(LOCK)

run: $(STAMP)
	$(BIN)/mlops serve --host 127.0.0.1 --port 8000 --demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

# Removes the environment, the caches and the local service's data (its SQLite database,
# artifacts and admin key in .mlops): a fresh start.
clean:
	rm -rf $(VENV) .mlops .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info

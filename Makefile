# Set-up is part of every target: a fresh clone needs only Python 3.11, pip and gcc.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint bench install browser clean-venv run test-postgres test-api

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

# Every Python file of the repository (pyproject.toml excludes .venv and migrations).
lint: $(STAMP)
	$(PY) -m ruff check .

# The browser test's Chromium (Debian's package): the one install step, shared with .ci/run.
browser:
	@bash .ci/install-browser

test: $(STAMP) lint browser
	$(PY) -m pytest -q

# The same suite on PostgreSQL (pytest-django creates and drops the test database).
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/webapp
test-postgres: $(STAMP)
	DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest -q tests/webapp

# The API against its own OpenAPI schema (schemathesis on a live server; .ci/api-conformance).
test-api: $(STAMP)
	bash .ci/api-conformance

bench: $(STAMP)
	$(PY) bench/bench_classifier.py
	$(PY) bench/bench_gallery.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_worker.py
	$(PY) bench/bench_scene.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_wide_scene.py
	DATABASE_URL=$(POSTGRES_URL) $(PY) bench/bench_scale.py --images 100000

clean-venv:
	rm -rf $(VENV)

run: $(STAMP)
	$(PY) manage.py run_app

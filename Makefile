# Inferia: `make run` serves, `make test` tests. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8000
# Parallel test processes (pytest-xdist); each gets its own database and Redis db.
PYTEST_WORKERS ?= 2
# Extra pytest arguments: make test PYTEST_ARGS="-k invitation -x"
PYTEST_ARGS ?=

.PHONY: run test worker beat migrate lint format demo clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# The CLI and Python helper (clients/python): tests/clients runs it against a live server.
	$(PY) -m pip install --quiet -e './clients/python[keyring,openai]'
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py bootstrap_demo

run: demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	PORT=$(PORT) $(PY) manage.py serve --port $(PORT)

worker: $(STAMP)
	$(PY) -m celery -A inferia worker -l info --without-mingle --without-gossip

beat: $(STAMP)
	$(PY) -m celery -A inferia beat -l info

test: $(STAMP)
	@rc=0; $(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test: pytest collected no tests (exit 5): failing' >&2; fi; \
	exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache

# Two commands: `make run` (the product on embedded defaults) and `make test` (lint, types, tests).
# Both create .venv with the system's python3 when it is missing and (re)install the project when
# pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# The tests run in parallel (pytest-xdist): PYTEST_WORKERS processes, each with its own test database and
# Redis. Most tests wait on sockets and child processes, so a 2-CPU machine runs more workers than CPUs.
# PYTEST_WORKERS=0 runs them serially in one process; PYTEST_ARGS adds pytest options to both steps
# (e.g. PYTEST_ARGS="tests/telephony -x").
PYTEST_WORKERS ?= 4
PYTEST_ARGS    ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint typecheck pytest clean

help:
	@echo "make run    the demo: web on 127.0.0.1:8000, worker, beat, PBX simulator (ARI) on 127.0.0.1:8088,"
	@echo "           Stasis app, media worker (+ the local agent without OPENAI_API_KEY), and a seeded demo"
	@echo "           tenant with a running 50-contact campaign"
	@echo "make test   ruff, mypy and pytest (uses DATABASE_URL / REDIS_URL when set)"
	@echo "make pytest the tests only: in parallel (PYTEST_WORKERS=4), then the fault suite alone;"
	@echo "           PYTEST_WORKERS=0 runs them serially"
	@echo "make lint   ruff and mypy only"
	@echo "make clean  remove .venv and local state (var/)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files record which dependency set is installed; they are older than pyproject.toml after an edit.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# DEBUG=1 lets the local product run without a SECRET_KEY (a fixed development key is used).
# PHONE_TEST_PREFIXES=+1555 admits the demo campaign's fictional numbers (the simulator's plan).
run: export DEBUG ?= 1
run: export PHONE_TEST_PREFIXES ?= +1555
run: $(VENV)/.installed-run
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runlocal

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Two steps: everything but the fault suite in parallel, then the fault suite alone. The fault suite kills
# and restarts processes and servers on a timeline it judges calls against: it runs with the machine to
# itself (and prints its per-fault summary lines, which xdist workers cannot). Status 5 is "no test
# selected" (PYTEST_ARGS named tests of one step only).
pytest: $(VENV)/.installed-test
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not faults" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	$(BIN)/pytest -p no:xdist -m faults $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: lint pytest

clean:
	@# Stop the embedded Redis first, or its daemon outlives the deleted var/.
	-@[ -x $(BIN)/python ] && $(BIN)/python -c "from orchestrator.embedded_redis import stop; stop('var/redis')"
	rm -rf $(VENV) var

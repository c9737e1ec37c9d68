# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench chaos measure screenshots check-monitoring clean install stop

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt clients/python/pyproject.toml
	$(PY) -m pip install --disable-pip-version-check -q --upgrade pip
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack.launcher

# The suite starts the embedded servers when they are not running; it stops them again afterwards
# unless they were already up (a `make run` beside it) or external servers are in use.
test: $(STAMP)
	@before=$$($(PY) -m devstack.embedded status); \
	$(PY) -m pytest $(PYTEST_ARGS); code=$$?; \
	if [ -z "$$DATABASE_URL$$REDIS_URL" ] && ! echo "$$before" | grep -q '"postgres": true'; then \
		$(PY) -m devstack.embedded stop; fi; \
	exit $$code

# mypy's Django plugin imports the settings: server URLs keep them from starting the embedded servers
# (nothing connects to them while type checking), as a development run.
TYPECHECK_ENV := MC_DEV_RUN=1 DATABASE_URL=postgres://typecheck@127.0.0.1:1/typecheck REDIS_URL=redis://127.0.0.1:1/0

# Style, types, then the architecture: import-linter's contracts (pyproject.toml) and our own
# cycle, simulator and module-size check. The client SDK (clients/python) is type-checked on its own,
# strictly, with its own configuration: it is a separate package that imports nothing of the service.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TYPECHECK_ENV) $(VENV)/bin/mypy
	cd clients/python && $(CURDIR)/$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(PY) tools/check_structure.py
	$(TYPECHECK_ENV) $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every scenario; BENCH=throughput or BENCH=history runs one, BENCH_HISTORY=200000 seeds a smaller history.
bench: $(STAMP)
	$(PY) -m bench

# Faults injected into a stack of its own (.data/chaos, wiped first), every message checked against
# the simulator; prints a table, exits 1 on a finding. CHAOS_ARGS="--soak 1h" repeats the faults for
# an hour under steady load, CHAOS_ARGS="--only redis" runs the scenarios whose name holds "redis".
# The Done-when measurements that take minutes of real traffic (pytest marker `measure`), with their figures.
measure: $(STAMP)
	$(PY) -m pytest -m measure -s $(PYTEST_ARGS)

chaos: $(STAMP)
	$(PY) -m devstack.chaos $(CHAOS_ARGS)

# The staff dashboard in headless Chromium (Debian package `chromium`): the default run on a scratch
# folder, traffic through the simulator, a sign-in; fails on an empty chart, saves docs/screenshots/*.png.
screenshots: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { echo "chromium not found: apt-get install -y chromium"; exit 1; }
	$(PY) -m devstack.screenshots

# The Prometheus alert rules and the Grafana dashboard's queries (deploy/), with promtool from Debian's
# `prometheus` package, installed when missing; then the suite's checks of both.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
check-monitoring: $(STAMP)
	@command -v promtool >/dev/null 2>&1 || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }
	promtool check rules deploy/prometheus/alerts.yml
	$(PY) -m pytest tests/monitoring/test_deploy_monitoring.py -q

stop: $(STAMP)
	$(PY) -m devstack.embedded stop

clean:
	-@[ -x $(PY) ] && $(PY) -m devstack.embedded stop 2>/dev/null; true
	rm -rf .data $(VENV)

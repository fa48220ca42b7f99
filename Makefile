# A4C — the two commands of the quick start are `make up` and `make test`.
# Both bootstrap what they need: Debian packages (when missing and we are root)
# and the project's virtualenv in .venv.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The suite runs in parallel workers, one test file each at a time (module
# fixtures stay whole); each worker is a harness run of its own with its own
# dockerd and databases (the JVM servers are shared: tests/harness/shared_servers.py).
# Files go out longest first (tests/harness/ordering.py), so xdist's own
# reorder by test count is off. TEST_WORKERS=0 runs in one process. Four workers: at three
# the 2-core machine sat at 70 % CPU (much of the suite waits on Docker, JVMs and
# deadlines) and the run took 21 min, over the 20-minute budget; at five the CPU is the limit and
# the run took 16.5 min where four took 15 (same VM, 2026-12-06).
TEST_WORKERS ?= 4
APT_PACKAGES := docker.io busybox-static debootstrap chromium systemd iproute2 git wrk openssh-client openjdk-17-jre-headless maven prometheus

.PHONY: up test lint eslint bench release deps venv clean

up: venv
	$(VENV)/bin/a4c up $(ARGS)

test: deps venv
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

# Every linter the project keeps clean; tests/test_lint.py runs this target in
# the suite. LINT_DEPS lets that test use the venv it runs in.
LINT_DEPS ?= venv eslint
ESLINT_DIR := tools/eslint
ESLINT := $(ESLINT_DIR)/node_modules/.bin/eslint

lint: $(LINT_DEPS)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/yamllint --strict .
	$(ESLINT) --config $(ESLINT_DIR)/eslint.config.js --max-warnings 0 controlplane/web/static/js

# ESLint and its plugins, exactly as the lock file pins them.
eslint: $(ESLINT)

$(ESLINT): $(ESLINT_DIR)/package-lock.json
	cd $(ESLINT_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench: deps venv
	$(PY) -m bench $(BENCH)

# Offline-installable bundles, one per supported Python on this machine, in
# dist/release/ (packaging/release.py; docs/operations/rollout.md).
# RELEASE_ARGS passes options on, e.g. RELEASE_ARGS="--version 0.2.0".
release: venv
	$(PY) packaging/release.py $(RELEASE_ARGS)

# System packages the test harness drives for real (dockerd, a busybox root fs
# for the offline base image, debootstrap for systemd test hosts and
# openssh-client to reach them with Ansible, chromium for
# the dashboard's browser tests, prometheus for promtool and a real Prometheus
# in tests/monitoring). Installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*; touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artifacts .mypy_cache .ruff_cache $(ESLINT_DIR)/node_modules

# The two commands of the README's quick start:
#   make demo   - the simulated three-plane trading session, serving :8000-:8002
#   make test   - lint, type check and every test, installing what they need first
# and the developer's fast loop:
#   make check  - lint, type check and the unit tests; no builds, no servers
PYTHON ?= python3
VENV := .venv
LOCK := $(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK)
PIP_INSTALL := pip install --quiet --disable-pip-version-check
ARGS ?=

.PHONY: demo test check test-ranges test-pythons lint docs dashboards objectives proto system-deps collector

# The development venv: the package editable, with every extra the tests use (dev pulls in
# grpc, asyncio and dashboards) and NautilusTrader, at the locked versions.
$(STAMP): pyproject.toml constraints.txt
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/$(PIP_INSTALL) -c constraints.txt -e '.[dev,nautilus]'
	touch $@

# The demo's own venv: what a user installs (the runtime dependencies, locked), nothing else.
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed-$(LOCK)
$(DEMO_STAMP): pyproject.toml constraints.txt
	rm -f $(DEMO_VENV)/.installed-*
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/$(PIP_INSTALL) -c constraints.txt -e .
	touch $@

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/trading-telemetry demo $(ARGS)

# Debian's docker-compose (offline validation of docker-compose.yml) and busybox (the
# shell and awk of the Prometheus and Alertmanager images) for the integration tests.
# Prometheus and Alertmanager are not Debian's: `servers` builds the releases compose
# deploys. The tests start their own servers on free ports and never touch processes
# they did not start.
SYSTEM_TOOLS := docker-compose:docker-compose busybox:busybox
system-deps:
	@missing=$$(for t in $(SYSTEM_TOOLS); do command -v $${t%%:*} >/dev/null || echo $${t##*:}; done | sort -u); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Our Collector distribution, built with Go from otel_collector/builder-config.yaml
# (reused while the manifest is unchanged).
collector:
	bash otel_collector/build.sh

# The servers the tests run, built with Go from their modules (a few minutes each the
# first time, then reused by version): Prometheus and promtool, Alertmanager and amtool
# (prometheus/build.sh), Thanos (thanos/build.sh) and Jaeger v2 (jaeger/build.sh). The
# tests only look the builds up (`prometheus/build.sh NAME --cached`): without them they
# fail under CI=true and skip otherwise.
.PHONY: servers
servers:
	bash prometheus/build.sh prometheus
	bash prometheus/build.sh alertmanager
	bash thanos/build.sh
	bash jaeger/build.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP) system-deps collector servers lint
	$(VENV)/bin/pytest

# The loop while developing: lint, types and tests/unit without the tests marked
# integration (those start processes or run the benchmark scripts); it builds nothing,
# installs no system package and starts no server (under a minute on 2 cores with the
# venv there). `make test` runs everything.
check: $(STAMP) lint
	$(VENV)/bin/pytest -q -m "not integration" tests/unit

# The unit tests at both ends of the dependency ranges pyproject.toml declares, the extras'
# included: the lowest supported versions (.ci/lowest.txt) and the newest that install
# together (.ci/highest.txt), each in a fresh venv of its own (the extras named, as pip
# backtracks to an older set when it meets them only through dev); .ci/ends.py prints the
# versions and fails if one is not the end it should be. `make test` runs everything
# against the locked set.
test-ranges:
	@for end in lowest highest; do \
	  venv=.venv-$$end; \
	  rm -rf $$venv && $(PYTHON) -m venv $$venv && \
	  $$venv/bin/$(PIP_INSTALL) -c .ci/$$end.txt -e '.[dev,nautilus,grpc,asyncio]' && \
	  echo "== $$end end:" && \
	  $$venv/bin/python .ci/ends.py .ci/$$end.txt $$([ $$end = highest ] && echo --newest) && \
	  $$venv/bin/pytest -q -p no:cacheprovider tests/unit || exit 1; \
	done

# The unit tests on every supported Python version, each in a venv of its own with the
# locked set (.ci/python.sh: .venv-py/VERSION-HASH, reused while pyproject.toml and
# constraints.txt are unchanged; a missing interpreter fails). The venvs are built one after
# another, then the versions' tests run PY_JOBS at a time, each one's output printed whole.
PYTHONS ?= 3.10 3.11 3.12 3.13
PY_JOBS ?= 2
test-pythons:
	@for v in $(PYTHONS); do bash .ci/python.sh install $$v || exit 1; done
	@mkdir -p .venv-py/logs && rm -f .venv-py/logs/*
	@printf '%s\n' $(PYTHONS) | xargs -P $(PY_JOBS) -I{} sh -c \
	  'bash .ci/python.sh test {} >.venv-py/logs/{}.log 2>&1; echo $$? >.venv-py/logs/{}.status'
	@status=0; for v in $(PYTHONS); do \
	  cat .venv-py/logs/$$v.log; \
	  [ "$$(cat .venv-py/logs/$$v.status)" = 0 ] || { echo "test-pythons: Python $$v failed"; status=1; }; \
	done; exit $$status

docs: $(STAMP)
	$(VENV)/bin/python -m trading_telemetry._docs .

dashboards: $(STAMP)
	$(VENV)/bin/python -m trading_telemetry._dashboards grafana/dashboards

# The built-in objectives' burn-rate rules and their promtool tests (prometheus/rules/
# objectives.yml, prometheus/tests/objectives_test.yml); tests/unit/test_objectives.py fails
# when the committed ones differ. `trading-telemetry rules --out DIR` adds a desk's catalog.
objectives: $(STAMP)
	$(VENV)/bin/python -m trading_telemetry._objectives prometheus

# The Python classes of Prometheus' client_model (the reference decoder of the protobuf
# /metrics in the tests), regenerated from the vendored metrics.proto by the pinned
# grpcio-tools; tests/unit/test_protobuf.py fails when the committed ones differ.
proto: $(STAMP)
	$(VENV)/bin/python -m trading_telemetry._client_model._generate

# The two commands of the README's quick start:
#   make demo   - the simulated three-plane trading session, serving :8000-:8002
#   make test   - lint, type check and every test, installing what they need first
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
ARGS ?=

.PHONY: demo test check lint docs system-deps

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/trading-telemetry demo $(ARGS)

# Debian's Prometheus (and promtool) for the integration tests.
system-deps:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	@# Debian's package may start a service on :9090; the tests use their own instances.
	@pkill -x prometheus 2>/dev/null || true

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP) system-deps lint
	$(VENV)/bin/pytest

docs: $(STAMP)
	$(VENV)/bin/python -m trading_telemetry._docs README.md

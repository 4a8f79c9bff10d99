# gpumarket: every target sets itself up first (idempotently), so `make demo` and `make test`
# are the only two commands a fresh machine needs. Requires Python >= 3.11 and Node.js >= 20 + npm;
# bubblewrap (the job sandbox), chromium (the explorer's browser test) and postgresql (the server the
# relay's PostgreSQL store is tested against) are installed with apt-get when missing and running
# as root.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SLITHER_VENV := .venv-slither
HALMOS_VENV := .venv-halmos
HARDHAT := tools/hardhat/node_modules/.installed
# The chain-facing integration tests that `make test-hardhat` runs against the Hardhat node.
HARDHAT_TESTS := $(addprefix tests/integration/,test_devnet.py test_chain_tx.py test_open_lease.py \
  test_receipts_on_chain.py test_claims.py test_tokens_and_fees.py test_market_flow.py \
  test_matching_on_chain.py test_erc1271_orders.py)
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)

.PHONY: help setup bubblewrap chromium postgresql demo test bench lint typecheck forge-test solhint slither pytest build clean \
  prove test-hardhat

help:
	@echo "make demo    set up, then run the main job (a market round on an embedded devnet)"
	@echo "make test    set up, then lint, type-check, forge tests, solhint, slither, halmos proofs, pytest"
	@echo "make bench   set up, then run the benchmarks (figures in bench/results/)"
	@echo "make build   recompile contracts into market/artifacts (commit the result)"
	@echo "make prove   symbolic proofs of the money rules with halmos (also run by make test)"
	@echo "make test-hardhat  the chain integration tests against a Hardhat 2.x node instead of anvil"

setup: bubblewrap $(VENV)/.installed node_modules/.installed

# The provider runs every job under bubblewrap (docs/decisions/0015-job-sandbox.md).
bubblewrap:
	@command -v bwrap >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	else \
	  echo "error: bubblewrap (bwrap), the job sandbox, is missing: run 'sudo apt-get install -y bubblewrap'" >&2; exit 1; \
	fi

# The explorer is tested in a real headless browser (docs/decisions/0027-explorer.md).
chromium:
	@command -v chromium >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
	  echo "error: chromium, the browser the explorer's test drives, is missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; \
	fi

# The relay's PostgreSQL store is tested against a real server the tests start
# (tests/integration/pg_server.py finds Debian's binaries in /usr/lib/postgresql/<version>/bin).
postgresql:
	@command -v initdb >/dev/null && exit 0; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	else \
	  echo "error: PostgreSQL's server (initdb, postgres), which the relay store's tests start, is missing: run 'sudo apt-get install -y postgresql'" >&2; exit 1; \
	fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "error: Python >= 3.11 is required as '$(PYTHON)' (set PYTHON=...); install python3 and python3-venv" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { echo "error: could not create a virtual environment: install python3-venv" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { \
	  echo "error: Node.js >= 20 and npm are required: install them (Debian: apt-get install nodejs npm)" >&2; exit 1; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || { \
	  echo "error: Node.js >= 20 is required, found $$(node --version)" >&2; exit 1; }
	@npm ci --no-audit --no-fund --loglevel=error || { \
	  echo "error: 'npm ci' failed: check that the npm registry is reachable and package-lock.json is intact" >&2; exit 1; }
	@touch $@

$(SLITHER_VENV)/.installed: tools/slither-requirements.txt
	@# slither needs web3 < 8, so it lives in its own environment.
	$(PYTHON) -m venv $(SLITHER_VENV)
	$(SLITHER_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SLITHER_VENV)/bin/python -m pip install --quiet -r tools/slither-requirements.txt
	@touch $@

$(HALMOS_VENV)/.installed: tools/halmos-requirements.txt
	@# halmos pins its own solver and z3 versions: its own environment, like slither's.
	$(PYTHON) -m venv $(HALMOS_VENV)
	$(HALMOS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(HALMOS_VENV)/bin/python -m pip install --quiet -r tools/halmos-requirements.txt
	@touch $@

$(HARDHAT): tools/hardhat/package.json tools/hardhat/package-lock.json
	@npm ci --prefix tools/hardhat --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/gpumarket demo

lint: setup
	$(BIN)/ruff check market nodes tests bench
	$(BIN)/ruff format --check market nodes tests bench

typecheck: setup
	$(BIN)/mypy

forge-test: setup
	forge test

solhint: setup
	solhint --disc --max-warnings 0 'contracts/src/**/*.sol'

slither: setup $(SLITHER_VENV)/.installed
	$(SLITHER_VENV)/bin/slither . --filter-paths 'node_modules|contracts/test' \
	  --exclude-informational --exclude-low --exclude-optimization --fail-medium

# Most tests wait on anvil and daemons rather than compute: four workers share the cores.
PYTEST_WORKERS ?= 4

pytest: setup chromium postgresql
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15

test: lint typecheck solhint forge-test slither prove pytest

bench: setup
	$(BIN)/python -m bench

# halmos builds through forge with its own profile (foundry.toml [profile.halmos]) and proves the
# check_ tests in contracts/test/halmos (about 30 s of proving after a ~45 s build); results in
# docs/benchmarks.md. Part of `make test`: a property that fails, or any counterexample, fails it.
# halmos finds its solvers (yices, z3) through the active virtual environment: its own, even
# when the shell that runs make has another one activated.
prove: setup $(HALMOS_VENV)/.installed
	VIRTUAL_ENV=$(CURDIR)/$(HALMOS_VENV) PATH=$(CURDIR)/$(HALMOS_VENV)/bin:$$PATH \
	  FOUNDRY_PROFILE=halmos $(HALMOS_VENV)/bin/halmos --forge-build-out build/halmos/out \
	  --contract MarketProofs --statistics --no-status

test-hardhat: setup $(HARDHAT)
	GPUMARKET_EVM=hardhat $(BIN)/pytest $(HARDHAT_TESTS)

build: setup
	$(BIN)/python -m market.build

clean:
	rm -rf build .gpumarket .pytest_cache .mypy_cache .ruff_cache .hypothesis

# klp-harness: every target that needs the environment runs `setup` first; setup is
# idempotent (apt packages, .venv, kernel profiles, guest images, all cached).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILES ?= debian-6.1 debian-6.12 debian-7.3
KERNEL ?= debian-6.1
PYTEST_ARGS ?=
# One pytest worker more than CPUs: a guest spends much of a scenario idle, waiting for
# the kernel's transition retry (a 1 s timer), and another worker's guest can use the
# CPU meanwhile (conformance on debian-6.12: 2 workers 99-130 s, 3 workers 81-92 s).
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: setup host-packages venv demo test test-fast lint bench conformance fuzz clean

setup: host-packages venv
	$(BIN)/klp-harness setup $(PROFILES)

host-packages:
	./images/host-packages.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The demo needs one profile: only $(KERNEL) is set up (`run --kernel X` sets up X
# on first use).
DEMO ?= tests/scenarios/seeds/004_replace_drops_function.toml
# The demo needs one profile and no capacity measurement (`make setup` does both).
demo: host-packages venv
	$(BIN)/klp-harness setup --no-capacity $(KERNEL)
	$(BIN)/klp-harness run --kernel $(KERNEL) --show $(DEMO)

lint: venv
	$(BIN)/ruff check harness tests
	$(BIN)/ruff format --check harness tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test-fast: venv
	$(BIN)/pytest -q -m 'not vm and not kbuild'

test: setup lint
	$(BIN)/pytest -q -ra -n $(PYTEST_WORKERS) --dist worksteal --durations=15 $(PYTEST_ARGS)

conformance: setup
	mkdir -p results
	$(BIN)/klp-harness run --kernel all --keep-going --table --ktap \
		--junit results/conformance.xml tests/scenarios > results/conformance.ktap

FUZZ_BUDGET ?= 10m
FUZZ_SEED ?= 0
fuzz: setup
	$(BIN)/klp-harness fuzz --kernel $(KERNEL) --budget $(FUZZ_BUDGET) --seed $(FUZZ_SEED) --coverage

bench: setup
	$(BIN)/python -m harness.bench

clean:
	rm -rf $(VENV) results build

# Livepatches from the real build tools (docs/external-modules.md, "Fixtures, and the
# real tools' outputs"): a 7.3 tree built once and cached, klp-build and kpatch-build of
# each diff in images/livepatch-tools/diffs/, `check` of each on the tree's guest.
# Hours of CPU on 2 cores: its own CI job (docs/ci.md), not part of `test`.
.PHONY: livepatch-tools
livepatch-tools: host-packages venv
	$(BIN)/python images/livepatch-tools/recipe.py $(LIVEPATCH_TOOLS_STEPS)

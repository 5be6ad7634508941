# Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# The stamp names the interpreter's version: PYTHON=python3.13 make test after a 3.11 venv rebuilds it.
VERSION_OF = -c 'import sys; print("%d.%d" % sys.version_info[:2])'
PYTHON_VERSION := $(shell $(PYTHON) $(VERSION_OF) 2>/dev/null)
STAMP := $(VENV)/.installed-$(PYTHON_VERSION)

.PHONY: install lint test unit integration demo bench package layer release deploy clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON_VERSION)" || { echo "$(PYTHON) not found or does not run; set PYTHON=python3.x"; exit 1; }
	@if test -x $(PY) && [ "$$($(PY) $(VERSION_OF))" != "$(PYTHON_VERSION)" ]; then \
		echo "$(VENV) runs Python $$($(PY) $(VERSION_OF)), not $(PYTHON_VERSION): rebuilding it"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed*
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check forwarder bench tests scripts
	$(VENV)/bin/ruff format --check forwarder bench tests scripts
	$(VENV)/bin/mypy

# The SAM CLI checks the template (`sam validate --lint`) from a venv of its own: its pins are not ours.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
$(SAM_STAMP):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli>=1.170'
	@touch $(SAM_STAMP)

test: lint $(SAM_STAMP)
	SAM_CLI=$(abspath $(SAM_VENV))/bin/sam $(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) $(SAM_VENV) .demo build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

# One Lambda zip per architecture, dist/forwarder-<arch>.zip; the template's CodeUri picks the one
# its Architecture names. ARCHS=arm64 make package builds one.
ARCH ?= arm64
ARCHS ?= arm64 x86_64
package: $(STAMP) layer
	@for arch in $(ARCHS); do $(PY) scripts/package.py --arch $$arch --output dist/forwarder-$$arch.zip || exit 1; done

# The pyarrow layer for Parquet (Amazon Security Lake), dist/parquet-layer-<arch>.zip: the template's
# EnableParquet adds it to the function.
layer: $(STAMP)
	@for arch in $(ARCHS); do $(PY) scripts/package.py --arch $$arch --layer parquet || exit 1; done

# A release for users who will not build (docs/deploy.md, "Deploying without building"): into dist/,
# forwarder-<version>-<arch>.zip and parquet-layer-<version>-<arch>.zip for both architectures,
# template-sar.yaml (no Fn::ForEach, SAR metadata) and forwarder-<version>.sha256.
# make release REPOSITORY_URL=https://github.com/<owner>/<repo> SAR_AUTHOR=<publisher>
REPOSITORY_URL ?=
SAR_AUTHOR ?=
release: $(STAMP)
	$(PY) scripts/release.py $(if $(REPOSITORY_URL),--repository-url $(REPOSITORY_URL)) --author "$(SAR_AUTHOR)"

# Interactive first deployment; later ones reuse samconfig.toml. Never run by the tests.
# The variable turns on SAM CLI's own Fn::ForEach handling (off by default; older CLIs ignore it).
deploy: $(STAMP)
	$(MAKE) package ARCHS=$(ARCH)
	SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1 sam deploy --guided --template-file template.yaml --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
		--parameter-overrides Architecture=$(ARCH)

# Throughput, peak RSS and cold start beside the raw limit, and what processing costs and saves
# (in-process, 10 MB inputs; BENCH_PROCESSING_MB=0 skips it); writes docs/performance.md.
# BENCH_SIZES=10,100 make bench skips the 1 GB input; BENCH_ARGS=--profile adds a py-spy profile;
# BENCH_REPEAT=1 measures each once instead of the best of 3; BENCH_BASELINE=<checkout of an earlier
# commit> runs its forwarder too, beside this one, for a before/after in one run.
bench: $(STAMP)
	BENCH_SIZES=$${BENCH_SIZES:-10,100,1000} $(PY) -m bench $(BENCH_ARGS)

# Every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lint test unit integration demo bench package deploy clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; set PYTHON=python3.x"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check forwarder bench tests scripts
	$(VENV)/bin/ruff format --check forwarder bench tests scripts
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) .demo build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

# The Lambda deployment zip (dist/forwarder.zip, the template's CodeUri) for ARCH=arm64|x86_64.
ARCH ?= arm64
package: $(STAMP)
	$(PY) scripts/package.py --arch $(ARCH) --output dist/forwarder.zip

# Interactive first deployment; later ones reuse samconfig.toml. Never run by the tests.
# The variable turns on SAM CLI's own Fn::ForEach handling (off by default; older CLIs ignore it).
deploy: package
	SAM_CLI_ENABLE_LANGUAGE_EXTENSIONS=1 sam deploy --guided --template-file template.yaml --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
		--parameter-overrides Architecture=$(ARCH)

# Throughput, peak RSS and cold start beside the raw limit; writes docs/performance.md.
# BENCH_SIZES=10,100 make bench skips the 1 GB input; BENCH_ARGS=--profile adds a py-spy profile;
# BENCH_REPEAT=1 measures each once instead of the best of 3; BENCH_BASELINE=<checkout of an earlier
# commit> runs its forwarder too, beside this one, for a before/after in one run.
bench: $(STAMP)
	BENCH_SIZES=$${BENCH_SIZES:-10,100,1000} $(PY) -m bench $(BENCH_ARGS)

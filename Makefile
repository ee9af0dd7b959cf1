# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install the pinned
# requirements on first use (a stamp file makes later runs skip the install).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
REQS ?= requirements.txt

# The tests whose outcome depends on the kernels oneDNN picks for the CPU (test-isa reruns them capped at AVX2).
ISA_TESTS := tests/test_precision.py tests/test_fastpath.py tests/test_predict.py tests/test_families.py \
	tests/test_quantize.py tests/test_finetune.py tests/test_capability.py tests/test_backends.py

.PHONY: demo test test-fast test-isa sysinfo lint bench clean-demo

$(STAMP): $(REQS) requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r $(REQS)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	bash tools/demo.sh

test: $(STAMP)
	$(PY) -m pytest --durations=15 tests   # the slowest 15 listed: the suite must stay under 15 min on 2 cores

# The quick part of the suite: no training, no whole data sets, no processes started (a check while editing).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" tests

# The ISA-sensitive tests again with oneDNN capped at AVX2: an AVX-512 machine then runs an AVX2-only CPU's kernels.
test-isa: $(STAMP)
	DNNL_MAX_CPU_ISA=AVX2 $(PY) -m pytest $(ISA_TESTS)

sysinfo: $(STAMP)
	$(PY) -m resnet_toolkit.sysinfo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf demo

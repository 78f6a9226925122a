# attnviz: `make demo` and `make test` do all of the set-up on a fresh machine (Python 3.11).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= runs/founding-case
# TensorFlow 2.21's oneDNN kernels abort a training now and then on AVX-512 CPUs ("corrupted
# size vs. prev_size"); the project's own commands run without them (the same speed on the
# AMD EPYC here, slower on some Intel CPUs: docs/train.md).
export TF_ENABLE_ONEDNN_OPTS ?= 0

.PHONY: install demo test test-fast test-other-cpu lint docs bench stress clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# an older .venv held tensorflow-cpu: one TensorFlow distribution only (pyproject.toml)
	$(BIN)/python -m pip uninstall --quiet --yes tensorflow-cpu 2>/dev/null || true
	@# PYTHONWARNINGS: setuptools' build backend prints a screenful about editable installs
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: install
	$(BIN)/attnviz train --out $(DEMO) --epochs 15 --force
	$(BIN)/attnviz animate $(DEMO) -o $(DEMO)/attention.gif
	$(BIN)/attnviz score $(DEMO) --mask delimiter --mask prefix
	@echo "run directory: $(DEMO)   GIF: $(DEMO)/attention.gif"

# Then capture, the callback and training again on Keras' JAX backend: the same 1e-5 equality
# against each layer's own attention; tests/test_jax.py and the two processes joined at
# 127.0.0.1 of tests/test_processes.py train only there.
JAX_TESTS := tests/test_capture.py tests/test_capture_families.py \
             tests/test_keras_callback.py tests/test_jax.py tests/test_processes.py

test: install
	$(BIN)/python -m pytest -q --durations=15
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q --durations=5 $(JAX_TESTS)

# The suite as another processor runs it: oneDNN on and one thread, so trainings land on
# other digits than on this machine's (the docs check must still pass, docs/reliability.md).
test-other-cpu: install
	TF_ENABLE_ONEDNN_OPTS=1 TF_NUM_INTRAOP_THREADS=1 OMP_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -q --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check attnviz tests benchmarks

docs: install
	$(BIN)/python docs/build.py --fresh

bench: install
	$(BIN)/python -m benchmarks

stress: install
	ATTNVIZ_STRESS=1 $(BIN)/python -m pytest -q tests/test_reliability.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis

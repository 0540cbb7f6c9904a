# Two commands do all the setup on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25'
	# `all` holds every optional extra, `formats` (HEIC, AVIF, DICOM) included
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[all,dev]'
	# Animal-MNIST for benchmarks/train_accuracy.py: data files only (its declared dependencies pull TensorFlow)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'animal-mnist>=0.1'
	# tf-keras (Keras 2) for the test of a Keras-2-era SavedModel; --no-deps: it requires `tensorflow`,
	# the GPU-capable build, which would overwrite the tensorflow-cpu files the extra installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'tf-keras~=2.21.0'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/sightql demo --warehouse demo-warehouse

# The layer contracts of docs/architecture.md (pyproject.toml) first: an import that points up fails.
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow and not dask and not browser" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/sql_classify.py

clean:
	rm -rf demo-warehouse artifacts .pytest_cache

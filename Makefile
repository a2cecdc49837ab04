# Pneumonia detection in chest X-rays — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# Variables: DATA=PATH (an existing copy of the dataset, folder or Kaggle .zip), PROFILE=full|smoke,
# VGG16_WEIGHTS=imagenet|PATH|none (notebook 05's base weights; none = random init, labelled as such)
DATA ?=
VGG16_WEIGHTS ?=
PROFILE ?= full
STAMP := $(VENV)/.installed
NBVAL := $(CURDIR)/build/nbval

export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: help setup data split reproduce experiment bench app test test-nbval test-code test-data test-browser lab lock clean

## Show this help.
help:
	@awk 'BEGIN {FS = ":.*"} /^## / {doc = substr($$0, 4); next} /^[a-zA-Z_-]+:/ && doc {printf "  %-12s %s\n", $$1, doc; doc = ""} !/^## / {doc = ""}' $(MAKEFILE_LIST)
	@echo "  Variables: DATA=PATH (existing copy of the dataset), PROFILE=full|smoke (default full),"
	@echo "             VGG16_WEIGHTS=imagenet|PATH|none (notebook 05; default imagenet, none = random init)"

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

## Create .venv (Python 3.11) with the pinned dependencies and the package in editable mode.
setup: $(STAMP)

## Copy and verify the dataset into data/raw (DATA=PATH, else an existing copy, else Kaggle).
data: $(STAMP)
	$(BIN)/pneumonia data fetch $(if $(DATA),--source "$(DATA)")

## Carve the patient-grouped validation split into data/processed/splits.csv.
split: $(STAMP)
	$(BIN)/pneumonia data split

## Run every notebook in order with papermill; executed copies go to reports/notebooks/.
reproduce: $(STAMP)
	$(BIN)/pneumonia reproduce --profile $(PROFILE) $(if $(DATA),--data "$(DATA)") $(if $(VGG16_WEIGHTS),--vgg16-weights "$(VGG16_WEIGHTS)")

## Train a variant of notebook 04's CNN and judge it on validation: TAG=name SET="epochs=40" ARGS="--seeds 3 4 5" (TAG=published: as it is).
experiment: $(STAMP)
	@test -n "$(TAG)" || { echo "error: name the run, e.g. make experiment TAG=published" >&2; exit 1; }
	$(BIN)/pneumonia experiment $(TAG) $(if $(SET),--set $(SET)) $(ARGS)

## Time the input pipeline against the CNN's compute; writes reports/benchmarks.json and .md (needs notebook 01's data; training and prediction times come from the last make reproduce).
bench: $(STAMP)
	$(BIN)/pneumonia bench --profile $(PROFILE)

## Start the upload app on http://localhost:8501 (needs a trained model in models/).
app: $(STAMP)
	$(BIN)/pneumonia app

## Run all tests: pytest (code, data, notebooks; data tests need DATA=PATH, CI=true makes missing data fail), then nbval.
test: $(STAMP)
	PNEUMONIA_DATA="$(DATA)" $(BIN)/python -m pytest tests --ignore=tests/browser
	$(MAKE) --no-print-directory test-nbval

## Run every notebook cell under pytest --nbval-lax, with the smoke parameters, on synthetic data.
test-nbval: $(STAMP)
	rm -rf $(NBVAL) && mkdir -p $(NBVAL)
	$(BIN)/pneumonia data synthetic $(NBVAL)/source/chest_xray
	PNEUMONIA_WORKSPACE=$(NBVAL)/workspace $(BIN)/pneumonia reproduce --profile smoke --data $(NBVAL)/source/chest_xray --prepare-only $(NBVAL)/notebooks
	PNEUMONIA_WORKSPACE=$(NBVAL)/workspace $(BIN)/python -m pytest --nbval-lax --current-env -p no:cacheprovider $(NBVAL)/notebooks

## Run the fast tests on synthetic data only.
test-code: $(STAMP)
	$(BIN)/python -m pytest tests/code

## Run the real dataset's contract tests (DATA=PATH).
test-data: $(STAMP)
	PNEUMONIA_DATA="$(DATA)" $(BIN)/python -m pytest tests/data

## Drive the app in a real browser (installs Debian's chromium with apt and Playwright for Python).
test-browser: $(STAMP)
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || { echo "error: could not install chromium (apt-get install chromium, as root)" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev,browser]"
	$(BIN)/python -m pytest tests/browser

## Start JupyterLab on the notebooks.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

## Rewrite requirements.lock from the current .venv.
lock: $(STAMP)
	{ sed -n '1,2p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock.new && mv requirements.lock.new requirements.lock

## Remove .venv and caches (data/, models/ and reports/ are kept).
clean:
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

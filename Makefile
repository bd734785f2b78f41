# se-monai: `make demo` and `make test` set everything up themselves (virtual environment and installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data/icbm152
# CPU torch on this project's machines; GPU users install their own torch before `pip install -e .`.
export PIP_CONSTRAINT := $(CURDIR)/.ci/constraints.txt

.PHONY: setup demo test test-slow data train evaluate clean

$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/se-monai demo --output_dir out/demo

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

$(DATA)/dataset.json: | $(STAMP)
	$(BIN)/se-monai prepare-data $(DATA) --num_subjects 12 --seed 0

data: $(DATA)/dataset.json

# Trains bundle/models/model.pt (about 30 min on 2 CPU cores); see bundle/docs/README.md.
train: data
	$(BIN)/python -m monai.bundle run --config_file bundle/configs/train.json \
		--meta_file bundle/configs/metadata.json --logging_file bundle/configs/logging.conf \
		--bundle_root bundle --dataset_dir $(DATA)

evaluate: data
	$(BIN)/python -m monai.bundle run --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json']" \
		--meta_file bundle/configs/metadata.json --logging_file bundle/configs/logging.conf \
		--bundle_root bundle --dataset_dir $(DATA)

clean:
	rm -rf $(VENV) out bundle/eval .pytest_cache

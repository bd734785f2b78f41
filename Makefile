# se-monai: `make demo` and `make test` set everything up themselves (virtual environment and installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := data/icbm152_mixed_csf
# CPU torch on this project's machines; GPU users install their own torch before `pip install -e .`.
export PIP_CONSTRAINT := $(CURDIR)/.ci/constraints.txt

.PHONY: setup demo lint format test test-slow test-monailabel cuda-wheels experiment experiment-quick data train evaluate real-brains clean

$(STAMP): pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,dicom]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/se-monai demo --output_dir out/demo

# Ruff (configured in pyproject.toml): a lint or format finding fails `make test`, and so CI.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow

# MONAI Label 0.8.5 in its own environment: it imports torchvision, whose registry wheel needs the registry's own
# (CUDA) torch build, about 7 GB; find-links to the local CPU wheel is cleared from both the environment and pip's
# config file for these installs (docs/monailabel.md).
ML_VENV := .venv-monailabel
ML_PIP := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null PIP_CONSTRAINT=$(CURDIR)/.ci/constraints-monailabel.txt \
	$(ML_VENV)/bin/python -m pip install --quiet
$(ML_VENV)/.installed: pyproject.toml .ci/constraints-monailabel.txt
	$(PYTHON) -m venv $(ML_VENV)
	$(ML_PIP) torch==2.13.0 torchvision==0.28.0 monailabel==0.8.5
	$(ML_PIP) -e '.[test]'
	touch $@

# MONAI Label with the MONAI that `pip install monailabel==0.8.5` resolves (1.6.x), then with MONAI 1.5 put first on
# the path (a copy of that one package, so both versions are tested in one environment).
ML_MONAI15 := $(ML_VENV)/monai-1.5
$(ML_MONAI15)/.installed: $(ML_VENV)/.installed
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(ML_VENV)/bin/python -m pip install --quiet \
		--no-deps --target $(ML_MONAI15) monai==1.5.2
	touch $@

test-monailabel: $(ML_VENV)/.installed $(ML_MONAI15)/.installed
	$(ML_VENV)/bin/python -c "import monai; print('MONAI', monai.__version__)"
	$(ML_VENV)/bin/python -m pytest -m monailabel tests/test_monailabel.py
	PYTHONPATH=$(ML_MONAI15) $(ML_VENV)/bin/python -c "import monai; print('MONAI', monai.__version__)"
	PYTHONPATH=$(ML_MONAI15) $(ML_VENV)/bin/python -m pytest -m monailabel tests/test_monailabel.py

# Python 3.12 wheels of what a lent GPU machine lacks, packed to travel with the working tree (.ci/cuda_check.sh runs
# the CUDA tests and the bench there; docs/performance.md, "CUDA").
cuda-wheels: .cuda-wheels/wheels.tar.xz
.cuda-wheels/wheels.tar.xz: .ci/cuda-wheels.txt .ci/cuda_wheels.sh | $(STAMP)
	PYTHON=$(BIN)/python bash .ci/cuda_wheels.sh

# The scale-generalisation experiment (docs/results.md): about 2 hours on 2 CPU cores; resumable.
experiment: setup
	$(BIN)/se-monai experiment configs/scale_generalisation.json

experiment-quick: setup
	$(BIN)/se-monai experiment configs/scale_generalisation_quick.json

$(DATA)/dataset.json: | $(STAMP)
	$(BIN)/se-monai prepare-data $(DATA) --generator mixed --num_subjects 24 --t1_prob 1 --csf --seed 0

data: $(DATA)/dataset.json

# Trains a bundle of its own in out/icbm152_bundle (about 30 min on 2 CPU cores); the shipped bundle is never
# trained: replacing its weights is a deliberate copy of out/icbm152_bundle/models/model.pt (bundle/docs/README.md).
TRAINED := out/icbm152_bundle
train: data
	$(BIN)/se-monai train --dataset_dir $(DATA) --bundle_dir $(TRAINED)

# Dice of the shipped model on the real ICBM152 T1 (metrics in out/evaluate).
evaluate: data
	$(BIN)/se-monai evaluate --dataset_dir $(DATA) --output_dir out/evaluate

# Real brains nobody here synthesised (docs/results.md, "Real brains"): Colin27 and the INIA19 macaque template
# from Debian's mricron-data package, fetched from the package registry with apt-get (Debian/Ubuntu), not installed;
# pycortex's subject S1 from PyPI (below).
REAL := data/mricron
$(REAL)/usr/share/mricron/templates/ch2bet.nii.gz:
	mkdir -p $(REAL)
	cd $(REAL) && (apt-get download mricron-data || (echo "apt-get download mricron-data failed: run apt-get update first (Debian/Ubuntu)" && exit 1))
	dpkg-deb -x $(REAL)/mricron-data_*.deb $(REAL)

# Subject S1 of pycortex's example database (a FreeSurfer-processed T1 with its cortical surfaces), from the pycortex
# source distribution on PyPI (pip download, not installed; only its filestore/db/S1 and licence are unpacked).
PYCORTEX := data/pycortex
$(PYCORTEX)/pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz: | $(STAMP)
	mkdir -p $(PYCORTEX)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary pycortex pycortex==1.4.0 -d $(PYCORTEX)
	tar -xzf $(PYCORTEX)/pycortex-1.4.0.tar.gz -C $(PYCORTEX) pycortex-1.4.0/filestore/db/S1 pycortex-1.4.0/LICENSE
	touch $@

$(VENV)/.study: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,study]'
	touch $@

real-brains: $(VENV)/.study $(REAL)/usr/share/mricron/templates/ch2bet.nii.gz \
		$(PYCORTEX)/pycortex-1.4.0/filestore/db/S1/anatomicals/raw.nii.gz
	$(BIN)/python studies/real_brains_study.py

clean:
	rm -rf $(VENV) $(ML_VENV) out bundle/eval .pytest_cache .cuda-wheels

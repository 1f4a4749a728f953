# One-command entry points. `make run`: set up and run the default experiment;
# `make test`: set up and run the tests. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build of torch by default; on a GPU machine use e.g. TORCH="torch==2.13.0" from your CUDA index.
TORCH ?= torch==2.13.0
CORES ?= 2
# Optional extras: test (pytest), cluster (the SLURM executor plugin), docs (mkdocs), bm3d (the BM3D baseline of
# the denoising table; its licence is non-commercial: `make setup EXTRAS=test,cluster,docs` leaves it out
# and the report says BM3D is absent).
EXTRAS ?= test,cluster,bm3d,docs

# The default run's content before it was cut to a quarter of an hour: Stage III and AEVB, the
# lambda sweep and the classical curve (overlays of config.yaml; see its header).
FULL_OVERLAYS ?= configs/table3.yaml configs/lambda-sweep.yaml configs/classical-curve.yaml

.PHONY: setup run run-full test test-fast bench data docs report-open clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

run: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES)

run-full: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/snakemake --cores $(CORES) --configfile config.yaml $(FULL_OVERLAYS)

test: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pytest

test-fast: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/pytest -m "not slurm and not workflow"

# The standard denoising sets (Train400, Set12, BSD68; research-only licence) into data/denoising/,
# every file checked against the SHA-256 list inside the package. Needs the internet.
data: setup
	$(VENV)/bin/l2o fetch-data --dest data

# The documentation site from docs/ into site/ (warnings are errors); `mkdocs serve` to browse it live.
docs: setup
	$(VENV)/bin/mkdocs build --strict

bench: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m bench.run

clean:
	rm -rf results logs benchmarks .snakemake mlflow.db mlartifacts

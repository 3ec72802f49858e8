# The two commands of the README.  Each installs what it needs first (scripts/install.sh).
SHELL := /bin/bash
CORES ?= 2
PYTEST_ARGS ?=
ENV := source scripts/env.sh &&

.PHONY: install demo test lint clean-demo

install:
	@bash scripts/install.sh >/dev/null

## Regenerate every enabled table on the embedded demo corpus (results/tables/).
demo: install
	$(ENV) snakemake --cores $(CORES) --configfile config/demo.yaml

## Run the whole test suite (unit, bad input, end-to-end Snakemake, local Slurm).
test: install
	$(ENV) python -m pytest -ra $(PYTEST_ARGS)

lint: install
	$(ENV) snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf results

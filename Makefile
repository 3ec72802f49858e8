# The two commands of the README.  Each installs what it needs first (scripts/install.sh).
SHELL := /bin/bash
CORES ?= 2
PYTEST_ARGS ?=
ENV := source scripts/env.sh &&

.PHONY: install demo test test-fast test-slow lint clean-demo

install:
	@bash scripts/install.sh >/dev/null

## Regenerate every enabled table on the embedded demo corpus (results/tables/), build the HTML report
## (results/report.html: tables, confusion matrices, fusion) and print each table's headline cell.
demo: install
	$(ENV) snakemake --cores $(CORES) --configfile config/demo.yaml
	@$(ENV) out=$$(snakemake --configfile config/demo.yaml --report results/report.html 2>&1) || { echo "$$out"; exit 1; }
	@cat results/summary.txt
	@echo "Report (tables, confusion matrices, fusion results): results/report.html"

## Run the whole test suite (unit, bad input, end-to-end Snakemake, local Slurm).
test: install
	$(ENV) python -m pytest -ra $(PYTEST_ARGS)

## Everything but the end-to-end Snakemake runs and the Slurm tests: about a minute.
test-fast: install
	$(ENV) python -m pytest -ra -m "not slow and not slurm" $(PYTEST_ARGS)

## The rest of `make test`: end-to-end Snakemake runs (slow) and the local Slurm (slurm).
test-slow: install
	$(ENV) python -m pytest -ra -m "slow or slurm" $(PYTEST_ARGS)

## ruff and snakefmt (configured in pyproject.toml), then Snakemake's own linter.
lint: install
	$(ENV) ruff check . && snakefmt --check . && snakemake --lint --configfile config/demo.yaml

clean-demo:
	rm -rf results

# Two commands do all the set-up on a fresh clone: `make plan` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: plan test lint bench validate residuals clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The package's bytecode, brought up to date before each target (compileall skips files whose .pyc
# is current: ~0.05 s): every process (each test worker, each `planner` run) then skips compiling
# the package (~0.15 s each where PYTHONDONTWRITEBYTECODE is set, as on this machine), also after a
# pull or an edit, which left stale bytecode that every process recompiled before.
BYTECODE = $(BIN)/python -m compileall -q planner

plan: $(STAMP)
	@$(BYTECODE)
	$(BIN)/planner plan

bench: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m planner.ops.bench

# The calibration rows' residuals behind the bands, stored (planner/ops/residuals.py): after a model change
# (tests/ops/test_calibration_residuals.py fails while they are stale).
residuals: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m planner.ops.residuals

# Published measurements predicted, each row against its band (exit 1 if an unmarked row is outside it;
# known misses are listed with their reason, measurements/README.md "Bands").
validate: $(STAMP)
	@$(BYTECODE)
	$(BIN)/planner validate

# Both cores (pytest-xdist); `pytest` alone runs serially.
test: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m pytest -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check planner tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

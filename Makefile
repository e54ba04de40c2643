# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the project from its own files. Torch is pinned to the CPU-friendly release that this machine
# keeps on disk; an unpinned torch would pull a multi-GB download.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PINS   := torch==2.14.1 torchvision==0.29.1
EXTRAS ?= yolo,openvino,tflite,ssh,dev,docs
comma  := ,
STAMP  := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
PYTEST_ARGS ?=

.PHONY: install test test-all docs demo lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(PINS) -e ".[$(EXTRAS)]"
	@touch $@

test: docs
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: docs
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The guides in docs/, built strictly (a broken link or anchor fails) and offline into site/.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The demo's verdict is a measurement: exit 3 (over budget) is a result it reports, not a failure.
demo: install
	$(BIN)/edgeprune demo --out demo-out || test $$? -eq 3

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

clean:
	rm -rf $(VENV) demo-out site .pytest_cache

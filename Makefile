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
STUBS  := $(VENV)/stubs
TRT_STUBS := tensorrt-stubs==10.13.0.35.1
PYTEST_ARGS ?=

.PHONY: install test test-all docs demo lint typecheck clean

install: $(STAMP) $(STUBS)/.installed

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(PINS) -e ".[$(EXTRAS)]"
	@touch $@

# TensorRT's type stubs, for the type check of the TensorRT adapter. Installed beside the venv's
# packages, not among them: their `tensorrt` folder of .pyi files would import as an empty
# namespace package, as if TensorRT were installed. Their generated signatures have two syntax
# errors mypy cannot parse (a parameter named `in`; a parameter without a default after defaulted
# ones), which the sed mends.
$(STUBS)/.installed: | $(STAMP)
	$(BIN)/python -m pip install --no-deps --target $(STUBS) $(TRT_STUBS)
	sed -i -E 's/([(,] )in: /\1in_: /g; s/, channel_axis: int\) -> IScaleLayer/, channel_axis: int = ...) -> IScaleLayer/' \
		$(STUBS)/tensorrt_bindings/tensorrt.pyi
	@touch $@

typecheck: install
	MYPYPATH=$(STUBS) $(BIN)/python -m mypy

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

lint: install typecheck
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

clean:
	rm -rf $(VENV) demo-out site .pytest_cache

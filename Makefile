# Two commands on a fresh machine:  `make demo` (the CPU quickstart) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: demo test install bench clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml examples/pxp-cnn-backbone/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,ray]" -e examples/pxp-cnn-backbone
	touch $@

demo: install
	$(VENV)/bin/pxp run specs/quickstart.yaml

test: install
	$(PY) -m pytest -q

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info

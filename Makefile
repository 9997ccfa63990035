# Two commands on a fresh machine:  `make demo` (the CPU quickstart) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: demo test install bench clean
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $@

demo: install
	$(VENV)/bin/pxp run specs/quickstart.yaml

# Two test processes, one file each at a time (loadfile keeps a module's shared scene and cluster in one
# process): most tests wait on simulator start-up, subprocesses and Ray, so this halves the wall time on 2 cores.
test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info

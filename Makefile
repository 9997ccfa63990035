# Two commands on a fresh machine:  `make demo` (the CPU quickstart) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: demo test install bench clean
install: $(VENV)/.installed-dev

# The demo installs pxp alone; the tests add pytest and Ray (the extras cost the demo ≈ 11 s of its ten minutes).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,ray]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/pxp run specs/quickstart.yaml

# Two test processes, one file each at a time (loadfile keeps a module's shared scene and cluster in one
# process): most tests wait on simulator start-up, subprocesses and Ray, so this halves the wall time on 2 cores.
test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.installed-dev
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info

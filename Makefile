.POSIX:
# Development tasks. Needs only python3 (3.11), pip and make; uv is installed with pip
# when it is missing. Recipes run in bash.

SHELL = /bin/bash
PYTHON = python3
VENV = .venv
# PYTEST_ARGS (make variable or environment variable) is passed on to pytest by `make test`,
# which runs the suite in two passes. First all but SERIAL_TESTS, shared between TEST_WORKERS
# pytest processes (pytest-xdist, a test file's tests in one of them; 0: in this one process).
# Then SERIAL_TESTS in one process: the fault and HA tests, which kill and restart servers and
# databases under load and time their recovery (a second busy process upsets them), and the
# Schemathesis tests (all with one node id, of which pytest-xdist runs only the first). A pass
# that selects no test (exit status 5) is not a failure.
TEST_WORKERS = 2
SERIAL_TESTS = faults or ha or schema

# Sets the shell variable `uv` to a runnable uv: the one on PATH, else one installed with
# pip (run as "python3 -m uv" when pip put its script somewhere outside PATH).
FIND_UV = if command -v uv >/dev/null 2>&1; then uv=uv; else \
	$(PYTHON) -m pip install --quiet uv; \
	if command -v uv >/dev/null 2>&1; then uv=uv; else uv="$(PYTHON) -m uv"; fi; \
	fi

.PHONY: venv run test lint lock clean bench

venv: $(VENV)/.installed

# (Re)creates the environment when it is missing or not Python 3.11, then makes it match
# the lock files exactly and installs the project itself and the Python client
# (clients/python, whose only dependency, httpx, the dev lock has) in editable mode.
$(VENV)/.installed: requirements-dev.lock requirements.lock pyproject.toml clients/python/pyproject.toml
	set -e; $(FIND_UV); \
	if ! $(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		$$uv venv --clear $(VENV) --python $(PYTHON); \
	fi; \
	$$uv pip sync --python $(VENV)/bin/python requirements-dev.lock; \
	$$uv pip install --python $(VENV)/bin/python --no-deps -e . -e clients/python; \
	touch $@

run: venv
	$(VENV)/bin/wallet serve

test: venv
	$(VENV)/bin/pytest --numprocesses $(TEST_WORKERS) --dist loadfile -m "not ($(SERIAL_TESTS))" $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ]
	$(VENV)/bin/pytest -m "$(SERIAL_TESTS)" $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: venv
	$(VENV)/bin/ruff check src tests clients/python
	$(VENV)/bin/mypy src tests
	cd clients/python && $(CURDIR)/$(VENV)/bin/mypy src tests

# Benchmark (not part of `make test`; see docs/benchmarks.md). Installs wrk with apt when it is
# missing and the bench-only packages of requirements-bench.lock into the venv. BENCH_QUICK=1
# for a short check, BENCH_WORKERS=N (default 2), WALLET_DATABASE_URL to use that server.
bench: venv
	set -e; $(FIND_UV); \
	$$uv pip install --quiet --python $(VENV)/bin/python -r requirements-bench.lock
	if ! command -v wrk >/dev/null 2>&1; then \
		as_root=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$as_root apt-get -o DPkg::Lock::Timeout=300 update -qq; \
		$$as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk; \
	fi
	$(VENV)/bin/python -m bench

# Runtime dependencies first: requirements-dev.in includes requirements.lock.
lock:
	set -e; $(FIND_UV); \
	$$uv pip compile --quiet pyproject.toml --generate-hashes --python-version 3.11 --no-emit-index-url \
		-o requirements.lock; \
	$$uv pip compile --quiet requirements-dev.in --generate-hashes --python-version 3.11 --no-emit-index-url \
		-o requirements-dev.lock; \
	$$uv pip compile --quiet clients/python/pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--no-emit-index-url -o clients/python/requirements-test.lock

# Keeps .wallet-data (the local database).
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.wallet-data -prune -o -path ./.git -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +

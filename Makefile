# One command for each thing a developer does. Every target creates the virtual
# environment first if it is missing, so a fresh clone needs only `make run` or `make test`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
AUTHZ := $(VENV)/bin/authz
STAMP := $(VENV)/.installed-stamp

.PHONY: venv run test lint proto proto-check floors-check bench migrate clean policy-check dist

venv: $(STAMP)

# The server with its dev tools, and the client (its own distribution, clients/python), both editable.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" -e ./clients/python
	touch $(STAMP)

## Serve on the embedded SQLite database with the demo data (the worked example of docs/DOMAIN.md).
run: venv
	$(AUTHZ) serve --demo

## The whole test suite (PostgreSQL tests need the server of AUTHZ_TEST_POSTGRES_URL).
test: venv
	$(PY) -m pytest -q

## The policy folder alone: validate it, then run its YAML cases (also part of `make test`).
policy-check: venv
	$(AUTHZ) policy validate
	$(AUTHZ) policy test --min-coverage 100

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy authz clients/python/authz_client

## Regenerate authz/v1 and the client's copy, clients/python/authz_client/v1, from protos/ (never edit them by hand).
proto: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. protos/authz/v1/authz.proto
	$(PY) clients/python/generate_proto.py

## buf lint (STANDARD) and buf breaking against main's last commit; buf comes from .ci/buf's npm lockfile.
.PHONY: proto-lint
proto-lint:
	bash .ci/proto-lint

## Fails when either committed copy of the generated code does not match the proto.
proto-check: venv
	$(PY) -m pytest -q tests/unit/test_generated_code.py tests/unit/test_client_generated_code.py

## The lower bounds of the dependencies, installed all at once in a fresh environment, then a smoke test.
floors-check:
	bash .ci/floors-check

## The two wheels, server and client, in dist/.
dist: venv
	rm -rf dist build clients/python/build
	$(PY) -m build --wheel --no-isolation --outdir dist .
	$(PY) -m build --wheel --no-isolation --outdir dist clients/python

## The check path at 10k, 100k and 1M; the server is measured twice, with metrics and JSON logs off then on.
bench: venv
	$(AUTHZ) bench

migrate: venv
	$(AUTHZ) migrate

clean:
	rm -rf $(VENV) authz.db authz.db-* outbox .pytest_cache .mypy_cache .ruff_cache dist build clients/python/build

# canvas-bridge: the README's commands.
#   make demo    start a local Kafka, run the bridge, replay sample events, show the results, stop
#   make test    the whole test suite against a real local Kafka broker
#   make lint    ruff + mypy --strict
#   make bench   benchmarks (see benchmarks/; make bench-sqs: ingest-sqs against ElasticMQ)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-unit lint bench bench-sqs kafka-start kafka-stop sqs-start sqs-stop clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "canvas-bridge needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	scripts/kafka-local fetch >/dev/null
	scripts/sqs-local fetch >/dev/null
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bridge tests benchmarks scripts
	$(BIN)/mypy --strict bridge

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

bench-sqs: $(STAMP)
	$(BIN)/python benchmarks/sqs_bench.py

kafka-start:
	scripts/kafka-local start

kafka-stop:
	scripts/kafka-local stop

sqs-start:
	scripts/sqs-local start

sqs-stop:
	scripts/sqs-local stop

clean:
	scripts/kafka-local clean || true
	scripts/sqs-local clean || true
	rm -rf $(VENV) .cache build *.egg-info

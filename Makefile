# One-command set-up and the platform's entry points. Every target installs
# what it needs first, so `make demo` and `make test` work on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
JAVA_HOME ?= /usr/lib/jvm/java-17-openjdk-amd64
export JAVA_HOME
export PATH := $(JAVA_HOME)/bin:$(PATH)

VENV := .venv
FLINK_VENV := .venv-flink
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.9
JARS := build/jars
STAMP := build/stamps

.PHONY: setup test demo down bench bench-collector bench-speed bench-batch bench-serving lock airflow clean

setup: $(STAMP)/main-env $(STAMP)/flink-env $(STAMP)/jars $(STAMP)/browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(UV): | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP)/main-env: requirements/main.lock pyproject.toml | $(UV)
	$(UV) pip sync --quiet --python $(VENV)/bin/python requirements/main.lock
	$(UV) pip install --quiet --python $(VENV)/bin/python --no-deps -e .
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/flink-env: requirements/flink.lock pyproject.toml | $(UV)
	test -x $(FLINK_VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(FLINK_VENV)
	$(UV) pip sync --quiet --python $(FLINK_VENV)/bin/python requirements/flink.lock
	$(UV) pip install --quiet --python $(FLINK_VENV)/bin/python --no-deps -e .
	@mkdir -p $(STAMP) && touch $@

# JVM jars come from Maven Central through the committed descriptors in jars/.
$(STAMP)/jars: jars/kafka/pom.xml jars/flink/pom.xml jars/spark/pom.xml
	for layer in kafka flink spark; do \
	  rm -rf $(JARS)/$$layer; \
	  mvn --quiet --batch-mode -f jars/$$layer/pom.xml dependency:copy-dependencies \
	    -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(JARS)/$$layer || exit 1; \
	done
	@mkdir -p $(STAMP) && touch $@

# Debian's Chromium and ChromeDriver for the dashboard's browser test.
$(STAMP)/browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	@mkdir -p $(STAMP) && touch $@

# Recompute the lock files after editing requirements/*.in.
lock: | $(UV)
	$(UV) pip compile --quiet --python-version 3.11 requirements/main.in -o requirements/main.lock
	$(UV) pip compile --quiet --python-version 3.11 requirements/flink.in -o requirements/flink.lock

test: setup
	$(VENV)/bin/python -m pytest tests

demo: setup
	$(VENV)/bin/adclick demo $(if $(DATA),--data $(DATA))

down: setup
	$(VENV)/bin/adclick down

airflow: setup
	$(VENV)/bin/adclick airflow

bench: bench-collector bench-speed bench-batch bench-serving

bench-collector: setup
	$(VENV)/bin/python -m bench.collector

bench-speed: setup
	$(VENV)/bin/python -m bench.speed

bench-batch: setup
	$(VENV)/bin/python -m bench.batch

bench-serving: setup
	$(VENV)/bin/python -m bench.serving

clean:
	rm -rf build var

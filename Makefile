# The README's commands. `make test` works on a fresh machine: it installs what the tests need.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := iputils-ping iproute2

.PHONY: test demo bench deps venv lint images test-images clean

venv: $(BIN)/kube-vxlan-controller

# The controller and, beside it, the sandbox (its own distribution in sandbox/: a development tool).
$(BIN)/kube-vxlan-controller: pyproject.toml sandbox/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e ./sandbox
	touch $@

# Debian packages the tests and the demo use (ping inside pod namespaces). Only as root, only when missing.
deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "not root: skipping apt-get install of$$missing (root tests will skip)"; fi; \
	fi

lint: venv
	$(BIN)/lint-imports

# Both images from the one Dockerfile, tagged as deploy/*.yaml names them (and busybox for the example's
# app containers when none is there). As root it installs docker.io and starts dockerd when no engine
# answers; without registry access the bases come from Debian packages (tools/build-images).
images:
	tools/docker-engine
	tools/build-images

# For `make test`: the images when an engine can be had; otherwise the container tests skip, saying why.
test-images:
	@if tools/docker-engine; then tools/build-images; \
	else echo "no Docker engine: the container tests (tests/images, tests/docker) will skip"; fi

test: venv deps lint test-images
	$(BIN)/pytest

demo: venv deps
	$(BIN)/kube-vxlan-sandbox demo

# The README's figures: every scenario, contender (this controller) against the oracle (root; about 20 min
# on 2 cores, more when the machine is busy).
# Table on stdout; bench/out/bench.json and bench/out/bench.png.
bench: venv deps
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m bench --out bench/out

clean:
	rm -rf $(VENV) *.egg-info sandbox/*.egg-info .pytest_cache wheelhouse

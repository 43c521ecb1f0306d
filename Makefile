# The two quick-start commands: `make demo` and `make test`. Both install from this repository's files.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install install-test browser demo lint test test-gpu

install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e ".[test]"

# Headless Chromium and its driver from Debian, for the leaderboard's browser tests; OpenSSH's ssh-keygen
# (Debian's openssh-client), which signs and checks verification records.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; }
	@command -v ssh-keygen >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; }

demo: install
	oodbench demo

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test: install-test browser lint
	$(PYTHON) -m pytest -q -m "not gpu"

# the checks that need a CUDA device (run them on a GPU machine; they fail, never skip, without one)
test-gpu: install-test
	$(PYTHON) -m pytest -q -m gpu

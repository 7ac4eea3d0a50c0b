# The two commands a user needs: `sudo make bench` and `sudo make test`.
# Both run `setup` first; every step of it is idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages the harness drives: mnexec (mininet), ip/tc (iproute2), nft,
# ethtool (offloads off for the delay line), iperf3 (bandwidth fidelity), ping.
APT_PKGS := mininet iproute2 nftables ethtool iperf3 iputils-ping procps socat
# A run starts dozens of Python processes (stages, sensors, delay lines, Ray workers):
# each module is compiled once, when first imported, and its bytecode kept. pip does not
# compile the venv's ~13,600 modules at install (half of a fresh install's minute); an
# inherited PYTHONDONTWRITEBYTECODE would make every process compile what it imports.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup sys-deps venv test lint bench gate fuzz chaos clean-runs doctor images

setup: sys-deps venv images

sys-deps:
	@missing=""; for p in $(APT_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check harness topologies models tests hydra_plugins

test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m harness.bench

# The regression gate: the gate's rows x 6 seeds, each run twice, once by the baseline
# commit's code and once by this tree's, interleaved on this machine (about 9 minutes),
# then `python -m harness.gate` on the pairs. GATE_BASE names the baseline commit
# (default: the last commit that changed results/baselines/gate, whose figures are the
# fallback when that commit cannot run here); GATE_OVERRIDES go to every run of this
# tree, e.g. make gate GATE_OVERRIDES="technique.health_period_ms=250".
GATE_BASE ?=
GATE_OVERRIDES ?=
gate: setup
	@out=$$($(PY) -m harness.bench --gate --base=$(GATE_BASE) --seeds 6 --duration-s 5 \
	  --out results/gate $(GATE_OVERRIDES) | tail -1); \
	echo "gate bench: $$out"; \
	$(PY) -m harness.gate "$$out"

# Fuzzed configuration (tests/test_fuzz_config.py): 1,050 random override sets, validation
# only (the network is never touched), then 50 random valid networks with random fault
# schedules brought up and down, each checked to leave nothing behind.
fuzz: setup
	HX_FUZZ_EXAMPLES=1050 HX_FUZZ_NETWORKS=50 $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz_config.py

# Kill trials (harness/selftest/chaos.py): 50 runs killed with -9 at random moments (set-up,
# stage loading, mid-fault, teardown) on every backend present, each followed by
# `python -m harness.clean` and a before/after inventory of the machine. Exit 1 on leftovers.
CHAOS_TRIALS ?= 50
chaos: setup
	$(PY) -m harness.chaos --trials $(CHAOS_TRIALS)

doctor: setup
	$(PY) -m harness.doctor

# Remove leftovers of harness runs whose process is gone (never touches anything else).
clean-runs: venv
	$(PY) -m harness.clean

# The Docker backend's images (containers/README.md): installs and starts Docker if
# needed, builds what is missing. GPU=1 also builds the onnxruntime-gpu stage image.
images: venv
	bash containers/build.sh

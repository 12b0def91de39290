# The two set-up commands: `make demo` and `make test`.  Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench header clean bpf dpdk

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@# bytecode for the packages, also where PYTHONDONTWRITEBYTECODE is set: a strategy
	@# process's warm start (< 1 s to its first packet) must not recompile them every time
	$(PY) -m compileall -q shm parsers engine examples
	touch $@

demo: $(STAMP)
	$(VENV)/bin/hugering market

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) tools/bench_ring.py

# hugering's XDP program (engine/producers/afxdp.py also builds it on first use when missing)
BPF_SRC := engine/producers/xdp_filter.bpf.c
BPF_OBJ := engine/producers/xdp_filter.bpf.o
bpf: $(BPF_OBJ)
$(BPF_OBJ): $(BPF_SRC)
	clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c $< -o $@

# the DPDK producer, engine/producers/dpdk/ (meson + ninja against Debian's libdpdk-dev 22.11;
# engine/producers/dpdk.py also builds it on first use, and says which packages are missing)
dpdk: $(STAMP)
	$(PY) -m engine.producers.dpdk --build

header: $(STAMP)
	$(PY) -m shm.layout --write-header

clean:
	rm -rf $(VENV) build *.egg-info tools/reference/build $(BPF_OBJ) engine/producers/dpdk/build

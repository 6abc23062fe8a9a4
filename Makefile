# steerfeed — the two commands a newcomer needs are `make run` and `make test`.
# Each sets up what is missing first (scripts/setup.sh: the ONNX model, its tokenizer and
# the ONNX Runtime library, fetched with pip, checked by sha256, cached outside the checkout).

CARGO ?= cargo
RUN_ARGS ?= --demo
# The key `make run` starts the sidecar with (a development key: set your own for real use).
DEV_KEY ?= dev-key-0000000000000000

.PHONY: all setup build run cluster test test-console fuzz-api lint fmt bench bench-feed eval reader clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release -p steerfeed-cli

## Run the ranking sidecar on 127.0.0.1:8080 with the store in ./var/steerfeed; an empty
## store is first loaded with a seeded demo catalog whose captions the language model embeds
## (RUN_ARGS= to start empty). It prints the dev key and example curl commands.
run: build
	STEERFEED__SERVER__API_KEYS=$(DEV_KEY) ./target/release/steerfeed serve $(RUN_ARGS)

## Three sidecar replicas sharing one deployment on loopback: PostgreSQL (Debian's,
## installed when missing) and NATS JetStream (2.15.1, fetched by setup) started in
## target/cluster, the demo world loaded by the first replica; prints what to try.
## Ctrl-C stops everything (scripts/cluster.sh; REPLICAS=, BASE_PORT= tune it).
cluster: setup
	scripts/cluster.sh

## Formatting, lints, every test of the workspace (the shared backend's against throwaway
## PostgreSQL, NATS and Redis servers started on free loopback ports), the operator console in headless
## Chromium, then the schema fuzz of the API, both on the debug binary the tests just built
## (STEERFEED_SKIP_CONSOLE=1 and STEERFEED_SKIP_FUZZ=1 skip them, and say so).
test: setup lint
	$(CARGO) test --workspace --all-targets --features steerfeed-cli/shared
	$(CARGO) test --workspace --doc
	scripts/console_e2e.sh
	FUZZ_BUILD=0 scripts/fuzz_api.sh

## The console's browser test alone (installs Debian's chromium and the pinned
## playwright-core when missing); screenshots in target/console-e2e.
test-console: setup
	$(CARGO) build -p steerfeed-cli
	scripts/console_e2e.sh

## The schema fuzz alone: schemathesis (pinned with hashes in scripts/requirements-fuzz.txt,
## installed into $STEERFEED_CACHE) against the real binary on a free loopback port, a few
## minutes; what it checks is in scripts/fuzz_api.py. FUZZ_EXAMPLES, FUZZ_SEED and
## FUZZ_MAX_TIME tune it.
fuzz-api: setup
	scripts/fuzz_api.sh

## Formatting, clippy, and no module of a crate importing another in a circle.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --features steerfeed-cli/shared -- -D warnings
	scripts/check_module_cycles.py

fmt:
	$(CARGO) fmt --all

## Criterion benches (release).
bench: setup
	$(CARGO) bench --workspace

## The engine end to end: a seeded world of 100k videos / 10k users (10
## engagements each) loaded into a cached store
## (~/.cache/steerfeed/bench-feed/100000-10000-42-e10/, $STEERFEED_CACHE respected;
## the first run builds it, later runs reuse it), then ingest throughput and feed latency;
## one JSON object on stdout. FEED_ARGS adds options, e.g. FEED_ARGS="--threads 2 --fresh".
## The 1M-video run (the first build takes over an hour on 2 cores and ~15 GB of disk, hence
## 10 engagements per user instead of 40; later runs start from the cache):
##   ./target/release/steerfeed bench feed --videos 1000000 --users 100000 --seed 42 --events-per-user 10
FEED_ARGS ?=
bench-feed: build
	./target/release/steerfeed bench feed --videos 100000 --users 10000 --seed 42 --events-per-user 10 $(FEED_ARGS)

## The offline evaluation harness: the steering parser on labelled preferences, then
## `steerfeed eval report` (MicroLens-50k replay when $(SHARED) is beside the checkout, and
## the closed-loop simulations) into $(EVAL_OUT): JSON lines, report.md and PNG plots.
## EVAL_ARGS adds options, e.g. EVAL_ARGS="--skip-microlens --users 100".
SHARED ?= ../shared
EVAL_OUT ?= target/eval-report
EVAL_ARGS ?=
# Rebuilds the steering reader's corpus and refits its heads into data/reader/ (the
# binary includes the weights: build again afterwards).
reader: build
	python3 scripts/steer_corpus.py
	RUST_LOG=warn ./target/release/steerfeed prefs train

eval: build
	RUST_LOG=warn ./target/release/steerfeed prefs eval --jsonl crates/steer/tests/data/prefs-tune.jsonl
	RUST_LOG=warn ./target/release/steerfeed prefs eval --jsonl crates/steer/tests/data/prefs-holdout.jsonl
	RUST_LOG=warn ./target/release/steerfeed prefs eval --jsonl crates/steer/tests/data/prefs-blind.jsonl
	RUST_LOG=warn ./target/release/steerfeed prefs eval --jsonl data/reader/corpus.jsonl --split holdout
	@if [ -f $(SHARED)/data/steering/prefs-dev.jsonl ]; then \
	  RUST_LOG=warn ./target/release/steerfeed prefs eval --jsonl $(SHARED)/data/steering/prefs-dev.jsonl; \
	else echo "eval: $(SHARED)/data/steering/prefs-dev.jsonl not found; skipped" >&2; fi
	RUST_LOG=warn ./target/release/steerfeed eval report --out $(EVAL_OUT) \
	  --pairs $(SHARED)/data/microlens-50k/pairs.tsv --titles $(SHARED)/data/microlens-50k/titles.csv $(EVAL_ARGS)

clean:
	$(CARGO) clean

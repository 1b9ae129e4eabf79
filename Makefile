# ICN — every command a developer, an operator or CI needs.
# One cargo profile (release) serves binaries, tests, images and benchmarks, so the
# slow dependency build happens once per target directory.

CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target
NODES ?= 3
# Compose v2 (`docker compose`) where installed, else Debian's v1 (`docker-compose`).
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo 'docker compose' || echo docker-compose)
DATA ?= .data/localnet

.PHONY: help deps build run test test-lab test-compose bench images compose-up compose-down ci clean-data fmt lint fuzz

help:
	@echo "make run            start a local network of $(NODES) nodes x 5 services (Ctrl-C stops it)"
	@echo "make test           build and run the whole test suite (unit + multi-process integration)"
	@echo "make test-lab       the network-lab suite: nodes in network namespaces, partitions (needs root)"
	@echo "make test-compose   build the container image and run the docker compose smoke test"
	@echo "make bench          benchmarks beside their ceilings on this machine (results in target/bench/)"
	@echo "make fuzz           cargo-fuzz every network decoder (nightly, off CI; FUZZ_RUNS per target)"
	@echo "make images         build the icn/node:dev image from local binaries (no registry needed)"
	@echo "make compose-up     start the 3-node compose network; make compose-down stops it"
	@echo "make ci             what CI runs: test + test-lab + test-compose"
	@echo "make lint           clippy over every crate and target, warnings as errors (off CI: a newer clippy adds lints)"

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release --workspace --bins

run: build
	$(CARGO_TARGET_DIR)/release/icn-localnet --nodes $(NODES) --data $(DATA)

test: build
	$(CARGO) test --release --workspace --exclude icn-netlab --no-fail-fast
	# The ledger's integration tests again with its history in the store (a setting
	# that changes how it starts, stores and reads): about 20 s more.
	ICN__CREDIT__HISTORY_IN_STORE=true $(CARGO) test --release -p icn-ledger --no-fail-fast --tests

test-lab: build
	$(CARGO) test --release -p icn-netlab --no-fail-fast -- --nocapture

bench: build
	@scripts/install-bench-peers.sh
	$(CARGO_TARGET_DIR)/release/icn-bench --json $(CARGO_TARGET_DIR)/bench/bench.json

images: build
	deploy/docker/build-images.sh

test-compose: build
	tests/compose/smoke.sh

compose-up: images
	$(COMPOSE) up -d

compose-down:
	$(COMPOSE) down -v --remove-orphans

ci: test test-lab test-compose

# Off CI: libFuzzer (cargo-fuzz, nightly) over each network decoder, growing the corpora
# in fuzz/corpus/ that CI replays (testing/icn-fuzz-targets). Its own target directory:
# nightly builds must not share the stable one.
FUZZ_RUNS ?= 1000000
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
	cd fuzz && for t in netd_frame gossip_frame ledger_batch did_text; do \
	  CARGO_TARGET_DIR=$(CURDIR)/fuzz/target $(CARGO) +nightly fuzz run -O $$t corpus/$$t -- -runs=$(FUZZ_RUNS) -max_len=65536 || exit 1; \
	done

clean-data:
	rm -rf .data

fmt:
	$(CARGO) fmt --all

# Off CI, as its lints change with each Rust release and CI must not fail on a machine
# whose toolchain is newer than the code; clean on the toolchain of the last session.
lint:
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

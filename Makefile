# doclink — the two set-up commands are `make demo` and `make test`.
# Both start a throwaway PostgreSQL (unless DATABASE_URL is set) and the moto AWS
# emulator through scripts/stack.sh, and stop them again, also on failure.

CARGO ?= cargo

.PHONY: demo test bench bench-signing bench-pipeline lint fmt build

build:
	$(CARGO) build --release

demo:
	$(CARGO) build --release --bin doclink
	scripts/stack.sh scripts/demo.sh

test:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --tests --bins
	scripts/stack.sh $(CARGO) test --lib --bins --tests --no-fail-fast

bench: bench-signing bench-pipeline

bench-signing:
	$(CARGO) bench --bench signing

bench-pipeline:
	$(CARGO) build --release --bin doclink
	scripts/stack.sh scripts/bench-pipeline.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

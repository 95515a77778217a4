# doclink — the two set-up commands are `make demo` and `make test`.
# Both start a throwaway PostgreSQL (unless DATABASE_URL is set) and the moto AWS
# emulator through scripts/stack.sh, and stop them again, also on failure.

CARGO ?= cargo

.PHONY: demo test chaos mutants audit bench bench-signing bench-audit bench-pipeline bench-access lint lint-deploy fmt build letters

build:
	$(CARGO) build --release

# The demo profile (Cargo.toml): the dev profile without debug info, built in well
# under half the fat-LTO release build's time (README, "Build time").
demo:
	$(CARGO) build --profile demo --bin doclink
	scripts/stack.sh scripts/demo.sh

test:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --tests --bins
	scripts/stack.sh scripts/run-tests.sh
	scripts/lint-deploy.sh

# The reliability tests at full size; writes RELIABILITY.md.
chaos:
	$(CARGO) build --tests --bins
	scripts/stack.sh scripts/chaos.sh

# The mutation drill: cargo-mutants against the functions that carry the guarantees,
# each group against the tests that own it; writes MUTANTS.md and fails on a missed
# mutant that mutants-explained.txt does not explain. Not part of `make test`.
mutants:
	scripts/stack.sh scripts/mutants.sh

# Supply chain: `cargo deny check bans licenses sources` against deny.toml. Installs
# cargo-deny under CARGO_HOME on first use; needs no advisory database.
audit:
	scripts/audit.sh

bench: bench-signing bench-audit bench-pipeline bench-access

bench-signing:
	$(CARGO) bench --bench signing
	$(CARGO) bench --bench kms_signing

# `doclink links list` over 1,000,000 links in PostgreSQL.
bench-audit:
	scripts/stack.sh $(CARGO) bench --bench audit_queries

# CloudFront access logs (issue 21): a 10,000,000-line log file through the ingest
# into PostgreSQL: lines per second per core and peak RSS. BENCH_ACCESS_LINES=N for a
# quick trial (BENCHMARKS.md then says so).
bench-access:
	scripts/stack.sh $(CARGO) bench --bench access_log_ingest

bench-pipeline:
	$(CARGO) build --release --bin doclink
	$(CARGO) bench --bench letter_floor --no-run
	scripts/stack.sh scripts/bench-pipeline.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# The deployment files (deploy/): CloudFormation, edge function, Dockerfile,
# systemd unit, alert rules and dashboard, each through its linter.
lint-deploy:
	scripts/lint-deploy.sh

fmt:
	$(CARGO) fmt

# Every letter kind × locale rendered by `doclink preview` and screenshotted in
# headless Chromium (installed from Debian when missing) into docs/letters/.
letters:
	scripts/letters.sh

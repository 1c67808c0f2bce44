# The two commands a new user runs (see README.md). Each installs what it needs and is idempotent.
.PHONY: test run bench
test:
	@bash scripts/test.sh
run:
	@bash scripts/run.sh
# All benchmarks on committed code, each section of bench/RESULTS.md regenerated (about an hour).
bench:
	@bash scripts/bench.sh

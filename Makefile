# The two commands a new user runs (see README.md). Each installs what it needs and is idempotent.
.PHONY: test run
test:
	@bash scripts/test.sh
run:
	@bash scripts/run.sh

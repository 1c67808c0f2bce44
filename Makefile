# The two commands a new user runs (see README.md). Each installs what it needs and is idempotent.
.PHONY: test
test:
	@bash scripts/test.sh

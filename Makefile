.PHONY: deps test test-fast run bench bench-sla lint

PYTHON ?= python3

# everything the tests need on a fresh Debian machine (idempotent: quick when present)
deps:
	@command -v /usr/sbin/dovecot >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd; }
	@systemctl disable --now dovecot >/dev/null 2>&1 || true  # tests start their own
	$(PYTHON) -m pip install -q -e '.[test]'

# the whole suite: unit, integration (Dovecot, aiosmtpd, SQLite, PostgreSQL), crash test
test: deps
	$(PYTHON) -m pytest -q

# without the crash test
test-fast:
	$(PYTHON) -m pytest -q -m 'not slow'

# the daemon on the embedded default: Maildir inbox/outbox and SQLite under ./var
run:
	$(PYTHON) -m pip install -q -e . && maild run

lint:
	ruff check maild tests bench && ruff format --check maild tests bench

# ingestion benchmark: private Dovecot + aiosmtpd, floor vs maild, IDLE latency
bench:
	$(PYTHON) bench/bench_ingest.py

bench-sla:
	$(PYTHON) bench/bench_sla.py

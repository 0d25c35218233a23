.PHONY: bench bench-sla

# ingestion benchmark: private Dovecot + aiosmtpd, floor vs maild, IDLE latency
bench:
	python3 bench/bench_ingest.py

bench-sla:
	python3 bench/bench_sla.py

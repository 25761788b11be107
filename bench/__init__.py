"""Benchmarks at clinic-network scale (issue 9): ``python -m bench --scale small|full`` (``make bench``).

``bench.generate`` builds a synthetic network into its own PostgreSQL database with set-based SQL;
``bench.measure`` runs the five measurements and writes ``bench/results.json``. See BENCHMARKS.md.
"""

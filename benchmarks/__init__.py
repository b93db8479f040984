"""lipcert's benchmarks: `python -m benchmarks.harness` (make bench) and focused `python -m benchmarks.bench_*`.

They use lipcert's public API and share their helpers with the tests (tests/support.py).
"""

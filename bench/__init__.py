"""Benchmarks: ``bench/run`` (or ``make bench``) runs them; see docs/benchmarks.md."""

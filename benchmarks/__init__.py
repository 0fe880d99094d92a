"""Benchmarks run by `make bench`; see benchmarks/README.md."""

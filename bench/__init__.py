"""Benchmarks: run `.venv/bin/python bench/overhead.py` (or `make bench`)."""

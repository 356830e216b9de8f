"""Benchmarks and the local stand-ins they run against (see bench/graph_double.py)."""

"""Benchmarks: quality per unit of compute, speed and memory (not part of the package)."""

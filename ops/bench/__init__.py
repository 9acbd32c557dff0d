"""Benchmarks (`make bench`, `make soak`): measurements, never tests. Nothing here asserts a timing."""

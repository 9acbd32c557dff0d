"""Benchmarks (`make bench`, `make soak`, `make bench-reconcile`): measurements printed and written to
bench-results/, never tests. Nothing here asserts a timing."""

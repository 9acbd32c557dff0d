"""Benchmarks (`make bench`, `make soak`, `make bench-reconcile`): measurements printed and written to
bench-results/ (and `make bench`'s table to docs/benchmarks.md), never tests. Nothing here asserts a timing.

A top-level package of its own: it drives whole sites from outside, so it may import any package of ours
and none imports it (import-linter contracts in pyproject.toml).
"""

"""Benchmarks (``make bench-*``): measurements printed and written to bench-results/, never tests."""

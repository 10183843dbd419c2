"""Benchmarks. ``python -m benchmarks.cameras`` (``make bench``): cameras per 2 cores, hub vs. ultralytics.

See docs/performance.md for the method and the latest numbers.
"""

"""Benchmarks of the receive path against a bare Flask route (``python -m benchmarks``)."""

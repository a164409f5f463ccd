"""Benchmarks: ``python -m benchmarks SUITE [--quick]``; each suite prints one JSON object last."""

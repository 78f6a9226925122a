"""Benchmarks: `python -m benchmarks` runs every benchmarks/bench_*.py and prints a table.

Each module exposes `run() -> list[dict]`, one dict per measurement with the keys name,
value, unit, target (a number or None) and ok (bool or None). Results are reported, never
asserted: performance is judged by people and by ratios, not by flaky timed tests.
"""

"""Benchmark code, imported only by `minigan bench` and the scripts in benchmarks/."""

"""Benchmarks. Each module is runnable (``python -m bench.NAME``) and writes bench/results/NAME.json."""

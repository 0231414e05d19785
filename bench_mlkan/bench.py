"""Benchmark runner (placeholder until the bench issue lands)."""

from __future__ import annotations


def bench_main(argv: list[str]) -> int:
    print("no benchmarks yet")
    return 0


def run_main(argv: list[str]) -> int:
    print("not implemented yet")
    return 1

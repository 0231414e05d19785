"""Baseline recipes as data (installed as ``bench_mlkan.baselines``)."""

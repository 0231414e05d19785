from bench_mlkan.cli import entry

entry()

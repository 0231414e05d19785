"""Developer tools, apart from the benchmark: ``perf`` (``make perf``: kernel, PINN-step and
layer-cost timings into leaderboards/perf/), ``kernel_overhead`` (per-call cost of the
spline kernels), ``ddp_check`` (DDP equals single-process training, run as a subprocess)."""
